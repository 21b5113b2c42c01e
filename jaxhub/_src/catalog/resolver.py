"""Resolves ``<repo>/<org>/<model>/<N>`` and ``.../latest`` URLs through a repository's index.

The index says which archive a handle means and what its sha256 is; the archive is then
fetched, checked against that sha256 and cached by the ordinary http(s) / file://
resolvers. A URL of the same shape that is not a jaxhub repository (a TF Hub handle such
as ``https://tfhub.dev/google/nnlm-en-dim128/2``) is handed to those resolvers unchanged.
"""

from __future__ import annotations

import dataclasses
import pathlib
import urllib.parse

from jaxhub._src.catalog.index import NotARepositoryError, fetch, version_record
from jaxhub._src.catalog import layout
from jaxhub._src.hub.errors import IntegrityError, OfflineError
from jaxhub._src.hub.registry import Request
from jaxhub._src.hub.resolvers import FileUrlResolver, HttpArchiveResolver

_SCHEMES = ("http", "https", "file")


class RepositoryResolver:
    """<repo>/<org>/<model>/<N> and .../latest URLs of a jaxhub module repository."""

    def is_supported(self, handle: str) -> bool:
        scheme = urllib.parse.urlsplit(handle).scheme.lower()
        return scheme in _SCHEMES and layout.split_handle(handle) is not None

    def resolve(self, handle: str, request: Request) -> pathlib.Path:
        root, name, version = layout.split_handle(handle)
        remote = handle[:7].lower() != "file://"
        if remote and version != layout.LATEST:
            # A numbered version never changes, so a cached copy needs no index (and no
            # network): it was checked against the index's sha256 when it was fetched.
            cached = _cached(urllib.parse.urljoin(root, layout.archive_path(name, version)),
                             request)
            if cached is not None:
                return cached
        if remote and request.settings.offline:
            return _offline_fallback(handle, request, version)
        try:
            index = fetch(root, request.settings)
        except NotARepositoryError:
            return _fallback(handle, request)
        record = version_record(index, name, version, root)
        archive = urllib.parse.urljoin(root, layout.archive_path(name, record["version"]))
        # A pin given by the caller wins: it guards against a tampered index as well.
        pinned = dataclasses.replace(request, sha256=request.sha256 or record["sha256"])
        return pinned.resolve(archive)


def _cached(archive: str, request: Request) -> pathlib.Path | None:
    """The cache entry of ``archive`` if there is one (matching the caller's pin), else None."""
    settings = dataclasses.replace(request.settings, offline=True)
    try:
        return dataclasses.replace(request, settings=settings).resolve(archive)
    except (OfflineError, IntegrityError):
        return None


def _offline_fallback(handle: str, request: Request, version: str) -> pathlib.Path:
    # Not cached under the repository's archive URL: perhaps it is a TF Hub handle that
    # was cached as such.
    try:
        return _fallback(handle, request)
    except OfflineError as e:
        hint = (" ('latest' needs the repository's index: pin a version number)"
                if version == layout.LATEST else "")
        raise OfflineError(f"{e}{hint}") from e


def _fallback(handle: str, request: Request) -> pathlib.Path:
    if urllib.parse.urlsplit(handle).scheme.lower() == "file":
        return FileUrlResolver().resolve(handle, request)
    return HttpArchiveResolver().resolve(handle, request)
