"""Settings of the hub client, read from the environment once per call.

Only ``Settings.from_env`` reads environment variables; everything below it receives a
``Settings`` value, so resolvers and the cache stay pure functions of their arguments.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import sys
from collections.abc import Mapping

from jaxhub._src.hub.errors import SettingsError

# Environment variables, in one place so the docs and the code cannot drift apart.
ENV_CACHE_DIR = "JAXHUB_CACHE_DIR"
ENV_TFHUB_CACHE_DIR = "TFHUB_CACHE_DIR"
ENV_OFFLINE = "JAXHUB_OFFLINE"
ENV_DISABLE_PROGRESS = "JAXHUB_DISABLE_PROGRESS"
ENV_TIMEOUT = "JAXHUB_DOWNLOAD_TIMEOUT"
ENV_RETRIES = "JAXHUB_DOWNLOAD_RETRIES"
ENV_MAX_ARCHIVE_BYTES = "JAXHUB_MAX_ARCHIVE_BYTES"
ENV_DEADLINE = "JAXHUB_DOWNLOAD_DEADLINE"
ENV_MIN_RATE = "JAXHUB_DOWNLOAD_MIN_RATE"
ENV_MAX_EXPANSION = "JAXHUB_MAX_EXPANSION_RATIO"
ENV_MAX_MEMBERS = "JAXHUB_MAX_ARCHIVE_MEMBERS"
ENV_MIN_FREE_BYTES = "JAXHUB_MIN_FREE_BYTES"
ENV_LOCK_TIMEOUT = "JAXHUB_LOCK_TIMEOUT"
ENV_ALLOW_INSECURE_REDIRECTS = "JAXHUB_ALLOW_INSECURE_REDIRECTS"
ENV_SECRET_PARAMS = "JAXHUB_URL_SECRET_PARAMS"

_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclasses.dataclass(frozen=True)
class Settings:
    """How handles are resolved: where the cache lives and how downloads behave.

    Attributes:
      cache_dir: Root of the cache.
      offline: Never touch the network; serve from the cache or fail.
      progress: Show a progress bar while downloading.
      timeout: Seconds to wait for a connection or for the next bytes of a body; also
        the window over which ``min_rate`` is measured.
      retries: Extra attempts after a transient failure (5xx, reset, dropped body).
      backoff: Seconds before the first retry; doubled for each further one.
      deadline: Seconds one download may take in all, retries included.
      min_rate: Bytes per second a body must average over each ``timeout`` window
        (0 turns the check off).
      max_archive_bytes: Largest archive accepted, both downloaded and unpacked.
      max_expansion: Largest ratio of unpacked bytes to archive bytes (beyond a
        floor of ``archive.EXPANSION_FLOOR_BYTES``).
      max_members: Most members (files and directories) an archive may hold.
      min_free_bytes: Disk space that downloading and unpacking must leave free.
      lock_timeout: Seconds to wait for another process's lock on an entry.
      allow_insecure_redirects: Follow a redirect from https to http.
      secret_params: Extra URL query parameters (lowercase) that carry credentials,
        besides the built-in ones (``jaxhub._src.hub.urls``).
    """

    cache_dir: pathlib.Path
    offline: bool = False
    progress: bool = False
    timeout: float = 60.0
    retries: int = 4
    backoff: float = 0.5
    deadline: float = 7200.0
    min_rate: float = 1024.0
    max_archive_bytes: int = 64 * 2**30
    max_expansion: float = 100.0
    max_members: int = 20_000
    min_free_bytes: int = 128 * 2**20
    lock_timeout: float = 7200.0
    allow_insecure_redirects: bool = False
    secret_params: tuple[str, ...] = ()

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        offline: bool | None = None,
        progress: bool | None = None,
    ) -> Settings:
        """Builds settings from explicit arguments, falling back to the environment.

        Args:
          env: Environment to read; ``os.environ`` when None.
          cache_dir: Overrides ``JAXHUB_CACHE_DIR`` / ``TFHUB_CACHE_DIR``.
          offline: Overrides ``JAXHUB_OFFLINE``.
          progress: Overrides the default, which is on when stderr is a terminal and
            ``JAXHUB_DISABLE_PROGRESS`` is not set.

        Returns:
          The settings.

        Raises:
          SettingsError: A numeric environment variable does not parse or is out of
            range; the message names the variable and what it accepts.
        """
        env = os.environ if env is None else env
        if offline is None:
            offline = _flag(env, ENV_OFFLINE)
        if progress is None:
            progress = sys.stderr.isatty() and not _flag(env, ENV_DISABLE_PROGRESS)
        return cls(
            cache_dir=(pathlib.Path(cache_dir) if cache_dir is not None
                       else default_cache_dir(env)).expanduser().absolute(),
            offline=offline,
            progress=progress,
            timeout=_number(env, ENV_TIMEOUT, float, cls.timeout, positive=True),
            retries=_number(env, ENV_RETRIES, int, cls.retries),
            deadline=_number(env, ENV_DEADLINE, float, cls.deadline, positive=True),
            min_rate=_number(env, ENV_MIN_RATE, float, cls.min_rate),
            max_archive_bytes=_number(env, ENV_MAX_ARCHIVE_BYTES, int, cls.max_archive_bytes,
                                      positive=True),
            max_expansion=_number(env, ENV_MAX_EXPANSION, float, cls.max_expansion,
                                  positive=True),
            max_members=_number(env, ENV_MAX_MEMBERS, int, cls.max_members, positive=True),
            min_free_bytes=_number(env, ENV_MIN_FREE_BYTES, int, cls.min_free_bytes),
            lock_timeout=_number(env, ENV_LOCK_TIMEOUT, float, cls.lock_timeout, positive=True),
            allow_insecure_redirects=_flag(env, ENV_ALLOW_INSECURE_REDIRECTS),
            secret_params=tuple(sorted({name.strip().lower() for name in env.get(
                ENV_SECRET_PARAMS, "").split(",") if name.strip()})),
        )


def default_cache_dir(env: Mapping[str, str] | None = None) -> pathlib.Path:
    """Returns the cache root: ``JAXHUB_CACHE_DIR``, else ``TFHUB_CACHE_DIR``, else a user dir.

    The user directory is ``$XDG_CACHE_HOME/jaxhub`` (``~/.cache/jaxhub``), or
    ``%LOCALAPPDATA%\\jaxhub`` on Windows. It is never under /tmp, which systems purge
    behind a cache's back (tensorflow/hub#575, #646, #850, #896).

    Args:
      env: Environment to read; ``os.environ`` when None.

    Returns:
      An absolute path (it may not exist yet).
    """
    env = os.environ if env is None else env
    for name in (ENV_CACHE_DIR, ENV_TFHUB_CACHE_DIR):
        if env.get(name):
            return pathlib.Path(env[name]).expanduser().absolute()
    if sys.platform == "win32" and env.get("LOCALAPPDATA"):
        return pathlib.Path(env["LOCALAPPDATA"]) / "jaxhub"
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base).absolute() / "jaxhub"


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in _TRUE


def _number(env: Mapping[str, str], name: str, kind: type, default, *,
            positive: bool = False):
    # Zero and negative values are refused where they make no sense (a zero timeout makes
    # every connect fail with "Operation now in progress"), and so are NaN and infinity.
    text = env.get(name, "").strip()
    if not text:
        return default
    bound = "a number > 0" if positive else "a number >= 0"
    if kind is int:
        bound = bound.replace("a number", "a whole number")
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not valid: expected {bound} "
                            f"(default {default:g})") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise SettingsError(f"{name}={text!r} is out of range: expected {bound} "
                            f"(default {default:g})")
    return value
