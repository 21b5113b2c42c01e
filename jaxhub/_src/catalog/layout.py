"""Where things live in a module repository, a directory any static web server can host.

Layout under the repository root::

    index.json                  every module and version (what ``jaxhub search`` reads)
    index.html                  the catalog's index page (``jaxhub catalog build``)
    _catalog/                   the catalog's stylesheet, scripts and embedded index data
    <org>/<model>/<N>.tar.gz    version N of the module, packed by ``jaxhub.hub.pack``
    <org>/<model>/<N>.json      what version N is: signatures, specs, sizes, sha256, card
    <org>/<model>/latest.json   the ``latest`` alias: a copy of the newest ``<N>.json``
    <org>/<model>/<N>/index.html        the catalog page of version N
    <org>/<model>/latest/index.html     forwards to the newest version's page

A module's handle is its version's URL without a suffix, ``<repo>/<org>/<model>/<N>`` or
``<repo>/<org>/<model>/latest``; in a browser the same URL shows the version's page.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import urllib.parse
import uuid
from typing import Any

INDEX_FILE = "index.json"
SITE_DIR = "_catalog"
LATEST = "latest"
ARCHIVE_SUFFIX = ".tar.gz"

# Each half of a name starts with a letter or digit, so no name can be "..", hidden, or
# collide with the catalog's own files.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")


def check_name(name: str) -> str:
    """Returns ``name`` if it is a valid ``org/model`` name.

    Raises:
      ValueError: It is not two parts of letters, digits, ``.``, ``_`` and ``-``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"module name {name!r} must look like 'org/model': two parts of "
                         "letters, digits, '.', '_' and '-', each starting with a letter "
                         "or digit")
    return name


def check_version(version: int | str) -> int:
    """Returns ``version`` as an int if it is a positive integer.

    Raises:
      ValueError: It is not a positive integer.
    """
    text = str(version)
    if isinstance(version, bool) or not _VERSION.match(text):
        raise ValueError(f"version {version!r} must be a positive integer (1, 2, ...)")
    return int(text)


def archive_path(name: str, version: int) -> str:
    """Path of a version's archive relative to the repository root (posix)."""
    return f"{name}/{version}{ARCHIVE_SUFFIX}"


def record_path(name: str, version: int | str) -> str:
    """Path of a version's metadata, or of the ``latest`` alias, relative to the root."""
    return f"{name}/{version}.json"


def page_path(name: str, version: int | str) -> str:
    """Path of a version's catalog page (or the ``latest`` one) relative to the root."""
    return f"{name}/{version}/index.html"


def split_handle(url: str) -> tuple[str, str, str] | None:
    """Splits a repository handle into (repository URL, ``org/model``, version or "latest").

    Syntax only, no I/O. The repository URL ends with a slash.

    Args:
      url: A URL such as ``http://host/models/org/model/3`` (a trailing slash is allowed).

    Returns:
      The three parts, or None when the URL's path does not end in
      ``<org>/<model>/<N>`` or ``<org>/<model>/latest``.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.query or parts.fragment:
        return None
    segments = parts.path.rstrip("/").split("/")
    if len(segments) < 4:  # "", org, model, version
        return None
    org, model, version = segments[-3:]
    name = f"{org}/{model}"
    if not _NAME.match(name) or not (version == LATEST or _VERSION.match(version)):
        return None
    root_path = "/".join(segments[:-3]) + "/"
    return urllib.parse.urlunsplit(parts._replace(path=root_path)), name, version


def write_json(path: pathlib.Path, data: Any) -> None:
    """Writes ``data`` as JSON to ``path`` atomically (a unique temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(data, indent=1) + "\n")


def write_text(path: pathlib.Path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically, so a web server never serves half a file."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
