"""``index.json``: every module of a repository with all its versions, and reading it back.

The index is derived data: ``publish`` rebuilds it from the ``<N>.json`` records after every
change, so it can always be made again from the repository's files. Each module entry
holds its versions' records (without model cards and attachments, which can be large
and stay in ``<N>.json``) and a ``search_text`` that both ``jaxhub search`` and the catalog's
search box match against.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

from jaxhub._src.catalog import layout
from jaxhub._src.catalog.metadata import RECORD_FORMAT
from jaxhub._src.hub import download
from jaxhub._src.hub.config import Settings
from jaxhub._src.hub.errors import DownloadError, HandleError, OfflineError

INDEX_FORMAT = "jaxhub.repository"
INDEX_FORMAT_VERSION = 1
# Statuses meaning "nothing here": buckets answer 403 for missing keys they will not list.
_ABSENT_STATUSES = frozenset({403, 404, 410})
# Fields of a version record kept out of the index: they can be large, and only the
# version's own page shows them.
_RECORD_ONLY = ("model_card", "attachments")


class NotARepositoryError(HandleError):
    """The location holds no readable jaxhub repository index."""


def build(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Builds the index from version records (as ``metadata.describe`` writes them).

    Args:
      records: One record per published version, in any order.

    Returns:
      The index: modules sorted by name, each with ``latest`` (the highest version),
      ``versions`` (version number as a string -> record without model card and
      attachments) and
      ``search_text``.
    """
    by_name: dict[str, dict[int, dict[str, Any]]] = {}
    for record in records:
        summary = {k: v for k, v in record.items() if k not in _RECORD_ONLY}
        by_name.setdefault(record["name"], {})[int(record["version"])] = summary
    modules = []
    for name, versions in sorted(by_name.items()):
        latest = max(versions)
        modules.append({
            "name": name,
            "latest": latest,
            "versions": {str(v): versions[v] for v in sorted(versions)},
            "search_text": search_text(versions[latest]),
        })
    return {"format": INDEX_FORMAT, "format_version": INDEX_FORMAT_VERSION,
            "modules": modules}


def search_text(record: dict[str, Any]) -> str:
    """The lowercase text a query is matched against: name, task, license, description
    and signature names of a version."""
    fields = [record["name"], record["task"], record["license"], record["description"],
              *record["signatures"]]
    return " ".join(str(f) for f in fields if f).lower()


def parse(text: str, source: str) -> dict[str, Any]:
    """Parses and checks an index.

    Args:
      text: Contents of ``index.json``.
      source: Where it came from, for error messages.

    Raises:
      NotARepositoryError: Not JSON, or not a jaxhub repository index.
      ValueError: An index in a newer format than this jaxhub reads.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise NotARepositoryError(f"{source} is not a jaxhub repository index") from None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise NotARepositoryError(f"{source} is not a jaxhub repository index")
    version = data.get("format_version")
    if not isinstance(version, int) or version > INDEX_FORMAT_VERSION:
        raise ValueError(f"{source} has repository format version {version!r}; this jaxhub "
                         f"reads up to {INDEX_FORMAT_VERSION}: pip install -U jaxhub")
    return data


def module_entry(index: dict[str, Any], name: str, repository: str) -> dict[str, Any]:
    """Returns the index entry of module ``name``.

    Raises:
      HandleError: The repository has no such module; the message lists those it has.
    """
    for entry in index["modules"]:
        if entry["name"] == name:
            return entry
    names = [entry["name"] for entry in index["modules"]]
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    raise HandleError(f"repository {repository} has no module {name!r}; it has: "
                      f"{shown or 'no modules'}")


def version_record(index: dict[str, Any], name: str, version: str,
                   repository: str) -> dict[str, Any]:
    """Returns the record of ``name`` at ``version`` (a number, or "latest").

    Raises:
      HandleError: No such module or version; the message lists the versions that exist.
    """
    entry = module_entry(index, name, repository)
    key = str(entry["latest"]) if version == layout.LATEST else str(int(version))
    if key not in entry["versions"]:
        raise HandleError(
            f"{name} has no version {version} in repository {repository}; versions that "
            f"exist: {', '.join(entry['versions'])} (latest: {entry['latest']})")
    return entry["versions"][key]


def read_records(repo: pathlib.Path) -> list[dict[str, Any]]:
    """Reads every version record ``<org>/<model>/<N>.json`` of a repository.

    Raises:
      ValueError: A record is unreadable or does not match its place in the layout.
    """
    records = []
    for path in sorted(repo.glob("*/*/*.json")):
        if not path.stem.isdigit():
            continue  # latest.json
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: unreadable version record: {e}") from e
        expected = path.parent.relative_to(repo).as_posix()
        if (not isinstance(record, dict) or record.get("format") != RECORD_FORMAT
                or record.get("name") != expected or str(record.get("version")) != path.stem):
            raise ValueError(f"{path} is not the version record of {expected} {path.stem}")
        records.append(record)
    return records


def read_local(root: pathlib.Path) -> dict[str, Any]:
    """Reads the index of the repository in directory ``root``.

    Raises:
      NotARepositoryError: There is no readable index.
    """
    path = root / layout.INDEX_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise NotARepositoryError(f"{root} holds no {layout.INDEX_FILE}: not a jaxhub "
                                  "repository (jaxhub publish creates one)") from None
    return parse(text, str(path))


def fetch(repository: str, settings: Settings) -> dict[str, Any]:
    """Reads the index of the repository at a URL (http, https, file) or local path.

    The index is always read afresh (never from the cache) so ``latest`` is current.

    Args:
      repository: The repository root, such as ``http://host/models/``.
      settings: Timeouts and retries for downloads.

    Returns:
      The parsed index.

    Raises:
      NotARepositoryError: Nothing is there, or it is not a jaxhub index.
      DownloadError: The server could not be reached or failed.
      OfflineError: The repository is on the network and offline mode is on.
    """
    scheme = urllib.parse.urlsplit(repository).scheme.lower()
    if scheme == "file":
        path = urllib.request.url2pathname(urllib.parse.urlsplit(repository).path)
        return read_local(pathlib.Path(path))
    if scheme not in ("http", "https"):
        return read_local(pathlib.Path(repository).expanduser())
    url = urllib.parse.urljoin(repository.rstrip("/") + "/", layout.INDEX_FILE)
    if settings.offline:
        raise OfflineError(f"reading {url} needs the network and offline mode is on "
                           "(JAXHUB_OFFLINE / offline=True)")
    options = download.Options(timeout=settings.timeout, retries=settings.retries,
                               backoff=settings.backoff, progress=False,
                               max_bytes=settings.max_archive_bytes)
    with tempfile.TemporaryDirectory(prefix="jaxhub-index-") as tmp:
        try:
            done = download.download(url, pathlib.Path(tmp, layout.INDEX_FILE), options)
        except DownloadError as e:
            cause = e.__cause__
            if isinstance(cause, urllib.error.HTTPError) and cause.code in _ABSENT_STATUSES:
                raise NotARepositoryError(f"no repository index at {url} "
                                          f"(HTTP {cause.code})") from e
            raise
        return parse(done.path.read_text(encoding="utf-8", errors="replace"), url)
