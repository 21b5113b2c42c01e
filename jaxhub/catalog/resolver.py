"""Resolves `<repo>/<org>/<model>/<N>` and `.../latest` URLs through a repository's index.

The index says which archive a handle means and what its sha256 is; the archive is then
fetched, checked against that sha256 and cached by the ordinary http(s) / file://
resolvers. A URL of the same shape that is not a jaxhub repository (a TF Hub handle such
as `https://tfhub.dev/google/nnlm-en-dim128/2`) is handed to those resolvers unchanged.
"""

from __future__ import annotations

import dataclasses
import pathlib
import urllib.parse

from jaxhub.catalog import index as index_lib
from jaxhub.catalog import layout
from jaxhub.hub.errors import OfflineError
from jaxhub.hub.registry import Request
from jaxhub.hub.resolvers import FileUrlResolver, HttpArchiveResolver

_SCHEMES = ("http", "https", "file")


class RepositoryResolver:
    """<repo>/<org>/<model>/<N> and .../latest URLs of a jaxhub module repository."""

    def is_supported(self, handle: str) -> bool:
        scheme = urllib.parse.urlsplit(handle).scheme.lower()
        return scheme in _SCHEMES and layout.split_handle(handle) is not None

    def resolve(self, handle: str, request: Request) -> pathlib.Path:
        root, name, version = layout.split_handle(handle)
        if request.settings.offline and not handle[:7].lower() == "file://":
            return _resolve_offline(handle, request, root, name, version)
        try:
            index = index_lib.fetch(root, request.settings)
        except index_lib.NotARepositoryError:
            return _fallback(handle, request)
        record = index_lib.version_record(index, name, version, root)
        archive = urllib.parse.urljoin(root, layout.archive_path(name, record["version"]))
        # A pin given by the caller wins: it guards against a tampered index as well.
        pinned = dataclasses.replace(request, sha256=request.sha256 or record["sha256"])
        return pinned.resolve(archive)


def _resolve_offline(handle: str, request: Request, root: str, name: str,
                     version: str) -> pathlib.Path:
    # The index cannot be read offline; a numbered version's archive URL is known anyway.
    if version != layout.LATEST:
        try:
            return request.resolve(urllib.parse.urljoin(root, layout.archive_path(name, version)))
        except OfflineError:
            pass
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
