"""The built-in resolvers: local paths, ``file://`` URLs, and http(s) module archives.

Each resolver is a few lines: it names a source and hands a fetch step to
``cached_archive``, the one pipeline that downloads, checks, unpacks and caches.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import urllib.parse
import urllib.request
from collections.abc import Callable

from jaxhub._src.hub import archive, download
from jaxhub._src.hub.cache import Built, Cache, Entry, Staging, entry_key
from jaxhub._src.hub.config import Settings
from jaxhub._src.hub.errors import HandleError, IntegrityError, OfflineError
from jaxhub._src.hub.entry_record import file_sha256
from jaxhub._src.hub.registry import Request
from jaxhub._src.hub.urls import canonical_url, url_problem


@dataclasses.dataclass(frozen=True)
class Fetched:
    """An archive ready to unpack: its path and hex sha256."""

    path: pathlib.Path
    sha256: str


# Obtains an archive, downloading it to the given path if it has to; says where it is.
Fetch = Callable[[pathlib.Path], Fetched]

_TFHUB_FORMAT = "tf-hub-format"


class LocalPathResolver:
    """Local directories, and local .tar.gz/.tgz/.tar archives."""

    def is_supported(self, handle: str) -> bool:
        return True

    def resolve(self, handle: str, request: Request) -> pathlib.Path:
        return _resolve_local(pathlib.Path(handle).expanduser(), handle, request)


class FileUrlResolver:
    """file:// URLs of directories or archives."""

    def is_supported(self, handle: str) -> bool:
        return handle[:7].lower() == "file://"

    def resolve(self, handle: str, request: Request) -> pathlib.Path:
        parts = urllib.parse.urlsplit(handle)
        if parts.netloc not in ("", "localhost"):
            raise HandleError(f"{handle!r}: file:// URLs must name a local file")
        path = pathlib.Path(urllib.request.url2pathname(parts.path))
        return _resolve_local(path, handle, request)


class HttpArchiveResolver:
    """HTTP(S) URLs of .tar.gz/.tgz/.tar archives or of TF-Hub-style modules."""

    def is_supported(self, handle: str) -> bool:
        # A prefix test: malformed URLs are the resolver's to report, not the registry's.
        return handle[:8].lower().startswith(("http://", "https://"))

    def resolve(self, handle: str, request: Request) -> pathlib.Path:
        _check_url(handle)
        url = archive_url(handle)
        options = download.Options.from_settings(request.settings)

        def fetch(dest: pathlib.Path) -> Fetched:
            done = download.download(url, dest, options)
            return Fetched(done.path, done.sha256)

        # The entry is named by the handle without its credentials (jaxhub._src.hub.urls).
        source = canonical_url(handle, request.settings.secret_params)
        return cached_archive(source, fetch, request, network=True)


def _check_url(handle: str) -> None:
    # Reported before any work, naming the handle; nothing is retried.
    problem = url_problem(handle)
    if problem is not None:
        raise HandleError(f"{canonical_url(handle)!r} is not a valid URL: {problem}")


def archive_url(handle: str) -> str:
    """Returns the URL that answers with a tarball for ``handle``.

    URLs whose path ends like an archive are used as they are. Others follow the TF Hub
    convention: asked with ``?tf-hub-format=compressed``, the server answers with the
    module as a tar.gz.
    """
    parts = urllib.parse.urlsplit(handle)
    if archive.is_archive_name(parts.path):
        return handle
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if not any(name == _TFHUB_FORMAT for name, _ in query):
        query.append((_TFHUB_FORMAT, "compressed"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def cached_archive(source: str, fetch: Fetch, request: Request, *, network: bool,
                   key: str | None = None) -> pathlib.Path:
    """Returns the cached module unpacked from the archive that ``fetch`` obtains.

    The pipeline: look up the entry; else (unless offline) take the lock, fetch into a
    staging directory, check the sha256 pin, unpack safely, record the manifest, and
    rename the entry into place.

    Args:
      source: The handle, recorded in the entry and listed by ``jaxhub cache ls``; its
        canonical form for URLs (``jaxhub._src.hub.urls.canonical_url``), which holds no
        credentials.
      fetch: Obtains the archive, writing it to the path it is given if it must.
      request: Settings and the optional sha256 pin.
      network: Whether ``fetch`` uses the network (then offline mode forbids it).
      key: Cache key; derived from ``source`` when None.

    Returns:
      The module directory inside the cache.

    Raises:
      OfflineError: Offline mode is on and the entry is not cached.
      IntegrityError: The archive does not match the sha256 pin; nothing is cached.
      UnsafeArchiveError: The archive breaks a rule or a limit (``archive.Limits``).
      CacheLockError: Another process kept the entry locked too long.
      CacheWriteError: The cache's disk is full or refuses a name.
    """
    cache = Cache(request.settings.cache_dir, lock_timeout=request.settings.lock_timeout)
    key = key or entry_key("handle", source)
    accept = functools.partial(_matches_pin, request.sha256)
    if network and request.settings.offline:
        return _offline_entry(cache, key, source, request.sha256).module_dir
    build = functools.partial(_unpack, source, fetch, request)
    return cache.get_or_create(key, "handle", source, build, accept).module_dir


def _matches_pin(sha256: str | None, entry: Entry) -> bool:
    return sha256 is None or entry.manifest.archive_sha256 == sha256


def _unpack(source: str, fetch: Fetch, request: Request, staging: Staging) -> Built:
    # The build step of an archive entry: fetch, check the pin, unpack safely.
    fetched = fetch(staging.scratch("archive"))
    if request.sha256 is not None and fetched.sha256 != request.sha256:
        raise IntegrityError(f"{source}: archive sha256 is {fetched.sha256}, expected "
                             f"{request.sha256}; nothing was cached")
    files = archive.extract(fetched.path, staging.module_dir,
                            limits=archive_limits(request.settings), label=source)
    return Built(files=files, archive_sha256=fetched.sha256)


def archive_limits(settings: Settings) -> archive.Limits:
    """The limits on unpacking that ``settings`` ask for."""
    return archive.Limits(max_bytes=settings.max_archive_bytes,
                          max_expansion=settings.max_expansion,
                          max_members=settings.max_members,
                          min_free_bytes=settings.min_free_bytes)


def _offline_entry(cache: Cache, key: str, source: str, sha256: str | None) -> Entry:
    entry = cache.lookup(key)
    if entry is None:
        raise OfflineError(f"{source} is not in the cache at {cache.root} and offline "
                           "mode is on (JAXHUB_OFFLINE / offline=True)")
    if not _matches_pin(sha256, entry):
        raise IntegrityError(f"{source}: cached archive sha256 is "
                             f"{entry.manifest.archive_sha256}, expected {sha256}, "
                             "and offline mode forbids fetching it again")
    return entry


def _read_local(path: pathlib.Path, dest: pathlib.Path) -> Fetched:
    # A local archive is used in place; `dest` is not needed.
    try:
        return Fetched(path, file_sha256(path))
    except OSError as e:
        raise HandleError(f"cannot read {path}: {e.strerror}") from e


def _resolve_local(path: pathlib.Path, handle: str, request: Request) -> pathlib.Path:
    if path.is_dir():
        if request.sha256 is not None:
            raise IntegrityError(f"{path} is a directory; a sha256 pin applies to archives")
        return path.absolute()
    if path.is_file() and archive.is_archive_name(path.name):
        path = path.absolute()
        stat = path.stat()
        # The file's size and mtime are part of the key, so an edited archive is unpacked again.
        key = entry_key("handle", f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}")
        return cached_archive(str(path), functools.partial(_read_local, path), request,
                              network=False, key=key)
    raise HandleError(f"{handle!r} is neither a directory nor a "
                      f"{'/'.join(archive.ARCHIVE_SUFFIXES)} archive")
