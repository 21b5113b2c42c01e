"""The names of the files in a module directory, decided here and nowhere else.

::

    jaxhub_module.json                         the manifest
    params/                                    Orbax checkpoint of the params tree
    functions/<variant>/<signature>.jaxexport  one serialized function
    functions/<variant>/vjp/<signature>.{forward,backward}.jaxexport
    functions/regularizer.jaxexport
    assets/<name>                              vocabularies and other files
    README.md                                  the model card, if any

``<variant>`` is ``inference`` or the variant's tags joined by ``+``.
"""

from __future__ import annotations

import os
import pathlib
from typing import AbstractSet, Iterator

MANIFEST_FILE = "jaxhub_module.json"
PARAMS_DIR = "params"
ASSETS_DIR = "assets"
README_FILE = "README.md"
REGULARIZER_FILE = "functions/regularizer.jaxexport"


def _variant_dir(tags: AbstractSet[str]) -> str:
    return f"functions/{'+'.join(sorted(tags)) or 'inference'}"


def function_file(tags: AbstractSet[str], signature: str) -> str:
    """The file of the function of ``signature`` in the variant with ``tags``."""
    return f"{_variant_dir(tags)}/{signature}.jaxexport"


def vjp_files(tags: AbstractSet[str], signature: str) -> tuple[str, str]:
    """The files of the forward and backward halves of a function's split VJP."""
    stem = f"{_variant_dir(tags)}/vjp/{signature}"
    return f"{stem}.forward.jaxexport", f"{stem}.backward.jaxexport"


def entries_below(root: pathlib.Path) -> Iterator[pathlib.Path]:
    """Everything below ``root``, without following symbolic links.

    Iterative: a hostile directory may nest deeper than Python recurses (``os.walk`` and
    ``Path.rglob`` recurse once per level before Python 3.12).
    """
    pending = [root]
    while pending:
        with os.scandir(pending.pop()) as listing:
            found = list(listing)
        for entry in found:
            yield pathlib.Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                pending.append(pathlib.Path(entry.path))


def asset_file(name: str) -> str:
    """Where asset ``name`` lives: a model card at the top, the rest under ``assets/``."""
    return README_FILE if name == README_FILE else f"{ASSETS_DIR}/{name}"
