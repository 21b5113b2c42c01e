"""Runs the ```python blocks of a Markdown file as one script, exactly as printed.

Usage: ``python scripts/run_readme.py README.md``. The blocks share one namespace, in
order, and keep their line numbers, so a traceback points at the Markdown file's line.
"""

from __future__ import annotations

import pathlib
import re
import sys

_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_source(markdown: str) -> str:
    """The ```python blocks of ``markdown``, other lines blanked to keep line numbers.

    Examples:
      >>> python_source("text\\n```python\\nx = 1\\n```\\n")
      '\\n\\nx = 1\\n'
    """
    lines = [""] * markdown.count("\n")
    for match in _BLOCK.finditer(markdown):
        first = markdown.count("\n", 0, match.start(1))
        for i, line in enumerate(match.group(1).splitlines()):
            lines[first + i] = line
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit(f"usage: {argv[0]} FILE.md")
    path = pathlib.Path(argv[1])
    source = python_source(path.read_text())
    if not source.strip():
        sys.exit(f"{path} has no ```python block")
    exec(compile(source, str(path), "exec"), {"__name__": "__main__"})


if __name__ == "__main__":
    main(sys.argv)
