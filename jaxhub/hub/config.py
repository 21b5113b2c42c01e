"""Settings of the hub client, read from the environment once per call.

Only `Settings.from_env` reads environment variables; everything below it receives a
`Settings` value, so resolvers and the cache stay pure functions of their arguments.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from collections.abc import Mapping

# Environment variables, in one place so the docs and the code cannot drift apart.
ENV_CACHE_DIR = "JAXHUB_CACHE_DIR"
ENV_TFHUB_CACHE_DIR = "TFHUB_CACHE_DIR"
ENV_OFFLINE = "JAXHUB_OFFLINE"
ENV_DISABLE_PROGRESS = "JAXHUB_DISABLE_PROGRESS"
ENV_TIMEOUT = "JAXHUB_DOWNLOAD_TIMEOUT"
ENV_RETRIES = "JAXHUB_DOWNLOAD_RETRIES"
ENV_MAX_ARCHIVE_BYTES = "JAXHUB_MAX_ARCHIVE_BYTES"

_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclasses.dataclass(frozen=True)
class Settings:
    """How handles are resolved: where the cache lives and how downloads behave.

    Attributes:
        cache_dir: Root of the cache.
        offline: Never touch the network; serve from the cache or fail.
        progress: Show a progress bar while downloading.
        timeout: Seconds to wait for a connection or for the next bytes of a body.
        retries: Extra attempts after a transient failure (5xx, reset, dropped body).
        backoff: Seconds before the first retry; doubled for each further one.
        max_archive_bytes: Largest archive accepted, both downloaded and unpacked.
    """

    cache_dir: pathlib.Path
    offline: bool = False
    progress: bool = False
    timeout: float = 60.0
    retries: int = 4
    backoff: float = 0.5
    max_archive_bytes: int = 64 * 2**30

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
            env: Environment to read; `os.environ` when None.
            cache_dir: Overrides `JAXHUB_CACHE_DIR` / `TFHUB_CACHE_DIR`.
            offline: Overrides `JAXHUB_OFFLINE`.
            progress: Overrides the default, which is on when stderr is a terminal and
                `JAXHUB_DISABLE_PROGRESS` is not set.

        Returns:
            The settings.

        Raises:
            ValueError: A numeric environment variable does not parse.
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
            timeout=_number(env, ENV_TIMEOUT, float, cls.timeout),
            retries=_number(env, ENV_RETRIES, int, cls.retries),
            max_archive_bytes=_number(env, ENV_MAX_ARCHIVE_BYTES, int, cls.max_archive_bytes),
        )


def default_cache_dir(env: Mapping[str, str] | None = None) -> pathlib.Path:
    """Returns the cache root: `JAXHUB_CACHE_DIR`, else `TFHUB_CACHE_DIR`, else a user dir.

    The user directory is `$XDG_CACHE_HOME/jaxhub` (`~/.cache/jaxhub`), or
    `%LOCALAPPDATA%\\jaxhub` on Windows. It is never under /tmp, which systems purge
    behind a cache's back (tensorflow/hub#575, #646, #850, #896).

    Args:
        env: Environment to read; `os.environ` when None.

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


def _number(env: Mapping[str, str], name: str, kind: type, default):
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a valid {kind.__name__}") from None
