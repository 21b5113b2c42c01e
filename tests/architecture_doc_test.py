"""docs/architecture.md's package table matches the tree, and pyproject installs it all."""

from __future__ import annotations

import pathlib
import re
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _table_paths() -> list[str]:
    text = (REPO / "docs/architecture.md").read_text()
    section = text.split("## Packages", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)


def _packages(folder: str) -> set[str]:
    """Every package directory below ``folder`` (``__init__.py`` or ``__main__.py``)."""
    return {f"{p.parent.relative_to(REPO).as_posix()}/"
            for p in (REPO / folder).rglob("__*__.py") if "__pycache__" not in p.parts}


def test_every_path_in_the_table_exists():
    paths = _table_paths()
    assert len(paths) > 20
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing


def test_every_package_is_in_the_table():
    listed = set(_table_paths())
    packages = _packages("jaxhub") | _packages("converters") | _packages("benchmarks")
    assert not packages - listed, sorted(packages - listed)


def test_pyproject_installs_every_package_under_a_jaxhub_name():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    assert mapping == {"jaxhub": "jaxhub", "jaxhub_tf": "converters"}
    installed = set(config["packages"])
    expected = set()
    for name, folder in mapping.items():
        for package in _packages(folder):
            rel = package.rstrip("/").removeprefix(folder).strip("/")
            expected.add(".".join(filter(None, [name, *rel.split("/")])))
    # A folder of data files (the catalog's static files) is listed as a package too, so
    # that setuptools installs it without warning about an unlisted importable folder.
    expected |= set(config["package-data"])
    assert installed == expected
    assert all(p.split(".")[0].startswith("jaxhub") for p in installed)
