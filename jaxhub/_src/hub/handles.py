"""The public entry points: resolve a handle, add a resolver, cache a derived directory."""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Callable

from jaxhub._src.hub import entry_record
from jaxhub._src.hub.cache import MODULE_DIR, Built, Cache, entry_key
from jaxhub._src.hub.config import Settings, default_cache_dir
from jaxhub._src.hub.errors import HandleError
from jaxhub._src.hub.registry import Registry, Request, Resolver
from jaxhub._src.hub.resolvers import FileUrlResolver, HttpArchiveResolver, LocalPathResolver
from jaxhub._src.hub.urls import canonical_url

# Oldest first: the local-path resolver is asked last and catches everything.
_REGISTRY = Registry((LocalPathResolver(), FileUrlResolver(), HttpArchiveResolver()))


def resolve(
    handle: str | os.PathLike,
    *,
    sha256: str | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> pathlib.Path:
    """Returns a local directory holding the module named by ``handle``.

    Local directories are returned as they are. Archives (``.tar.gz``, ``.tgz``, ``.tar``),
    local or at ``file://`` / ``http(s)://`` URLs, are unpacked once into the cache; other
    http(s) URLs are fetched TF-Hub-style with ``?tf-hub-format=compressed``. Concurrent
    calls, in threads or processes, download once.

    Args:
      handle: A path, a ``file://`` URL, an http(s) URL, or any handle a registered
        resolver supports.
      sha256: Expected hex sha256 of the archive. A download that does not match is
        refused and nothing is cached; a cached entry that does not match is fetched
        again.
      offline: Never use the network; serve from the cache or raise ``OfflineError``.
        Defaults to ``JAXHUB_OFFLINE``.
      cache_dir: Cache root. Defaults to ``cache_dir()``.
      progress: Show a download progress bar. Defaults to on when stderr is a terminal
        and ``JAXHUB_DISABLE_PROGRESS`` is not set.

    Returns:
      Absolute path of the module directory. Treat directories in the cache as read-only.

    Raises:
      HandleError: No resolver can resolve the handle, or ``sha256`` is malformed.
      DownloadError: The download failed (HTTP error, refused connection, timeout, too
        slow, past its deadline, too many retries, an https -> http redirect).
      OfflineError: Offline and not cached.
      IntegrityError: The archive does not match ``sha256``.
      ArchiveError: What was fetched is not a tar archive (e.g. an HTML page).
      UnsafeArchiveError: The archive holds links, absolute or escaping paths, special
        files, or breaks a limit (bytes, expansion ratio, members, free disk space).
      CacheLockError: Another process held the entry's lock for ``JAXHUB_LOCK_TIMEOUT``.
      CacheWriteError: The cache's disk is full, refuses a name or is not writable.
      SettingsError: An environment variable has an invalid value.

      All are ``HubError``s; messages name the handle (without credentials) and the fix.
      Limits and their variables: docs/cache.md, "Security limits".

    Examples:
      >>> module = jaxhub.create_module(
      ...     {"w": jnp.ones(2)},
      ...     signatures={"default": (lambda p, x: x * p["w"], jaxhub.TensorSpec([None, 2]))})
      >>> digest = jaxhub.pack(module.export("encoder"), "encoder.tar.gz")
      >>> url = pathlib.Path("encoder.tar.gz").absolute().as_uri()  # or an http(s) URL
      >>> path = resolve(url, sha256=digest)
      >>> (path / "jaxhub_module.json").exists()
      True
    """
    settings = Settings.from_env(cache_dir=cache_dir, offline=offline, progress=progress)
    request = Request(settings=settings, sha256=_normalize_sha256(sha256), registry=_REGISTRY)
    return request.resolve(os.fspath(handle))


def register_resolver(resolver: Resolver) -> None:
    """Adds a resolver, asked before all those registered earlier (and the built-ins).

    Args:
      resolver: An object with ``is_supported(handle) -> bool`` (syntax only, no I/O) and
        ``resolve(handle, request) -> pathlib.Path``; see ``jaxhub.hub.Resolver``.

    Raises:
      TypeError: ``resolver`` lacks one of the two methods.
    """
    _REGISTRY.add(resolver)


def cache_dir() -> pathlib.Path:
    """Returns the cache root: ``JAXHUB_CACHE_DIR``, else ``TFHUB_CACHE_DIR``, else a user dir.

    The user directory is ``~/.cache/jaxhub`` (``$XDG_CACHE_HOME/jaxhub``), never /tmp.
    """
    return default_cache_dir()


def cached_derivation(key: str, build: Callable[[pathlib.Path], None], *,
                      cache_dir: str | os.PathLike | None = None,
                      origin: str | os.PathLike | None = None) -> pathlib.Path:
    """Returns a cached directory made by ``build``, building it once per ``key``.

    For results computed from a module, such as a converted TF module: if the entry for
    ``key`` is complete it is returned at once; otherwise, under the key's lock,
    ``build(tmp_dir)`` writes into a fresh empty directory which is then renamed into
    place. A build that raises leaves nothing behind.

    Args:
      key: Identifies the result; include everything it depends on (source entry,
        converter version).
      build: Writes the result into the directory it is given.
      cache_dir: Cache root. Defaults to ``cache_dir()``.
      origin: What the result is computed from: a directory or a handle.
        ``jaxhub cache ls`` names the entry by it, and ``jaxhub cache rm ORIGIN``
        removes it. A directory inside the cache stands for the handle it was
        downloaded from.

    Returns:
      Absolute path of the directory.

    Raises:
      CacheLockError: Another process kept the entry locked for ``JAXHUB_LOCK_TIMEOUT``.
      CacheWriteError: The cache's disk is full or refuses a name.

    Examples:
      >>> def build(out):
      ...     _ = (out / "converted.json").write_text("{}")
      >>> path = cached_derivation("tf2jax:v1:abc123", build)
      >>> sorted(p.name for p in path.iterdir())
      ['converted.json']
      >>> cached_derivation("tf2jax:v1:abc123", build) == path   # built once
      True
    """
    settings = Settings.from_env(cache_dir=cache_dir)
    cache = Cache(settings.cache_dir, lock_timeout=settings.lock_timeout)

    def _build(staging) -> Built:
        build(staging.module_dir)
        return Built()

    named = None if origin is None else derivation_origin(origin, settings)
    entry = cache.get_or_create(entry_key("derived", key), "derived", key, _build,
                                origin=named)
    return entry.module_dir


def cached_derivation_if_present(key: str, *, cache_dir: str | os.PathLike | None = None
                                 ) -> pathlib.Path | None:
    """The directory :func:`cached_derivation` keeps for ``key`` if it is complete, else
    None (nothing is built).

    Examples:
      >>> cached_derivation_if_present("tf2jax:v1:never-built") is None
      True
    """
    settings = Settings.from_env(cache_dir=cache_dir)
    entry = Cache(settings.cache_dir).lookup(entry_key("derived", key))
    return None if entry is None else entry.module_dir


def derivation_origin(origin: str | os.PathLike, settings: Settings) -> str:
    """How an entry derived from ``origin`` names it: an absolute path, or a handle.

    A module directory inside the cache is named by the handle of its entry, so the
    derived entry is listed and removed together with the download it came from.
    """
    text = os.fspath(origin)
    path = pathlib.Path(text).expanduser()
    if "://" in text and not text.lower().startswith("file://"):
        return canonical_url(text, settings.secret_params)  # a handle already
    path = path.absolute()
    entries = settings.cache_dir / "entries"
    if path.name == MODULE_DIR and path.parent.parent == entries:
        found = entry_record.read(path.parent)
        if found is not None:
            return found.source
    return str(path)


def _normalize_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise HandleError(f"sha256={sha256!r} is not 64 hexadecimal digits (the value "
                          "`jaxhub pack` prints, optionally prefixed by 'sha256:')")
    return digest
