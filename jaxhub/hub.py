"""Handles, downloads and the module cache.

``resolve`` turns a handle (path, ``file://`` or http(s) URL) into a local directory,
downloading and unpacking archives into a verified cache; ``pack`` makes such archives;
``register_resolver`` adds support for more kinds of handles.
"""

from jaxhub._src.hub import ArchiveError as ArchiveError
from jaxhub._src.hub import CacheLockError as CacheLockError
from jaxhub._src.hub import CacheWriteError as CacheWriteError
from jaxhub._src.hub import DownloadError as DownloadError
from jaxhub._src.hub import HandleError as HandleError
from jaxhub._src.hub import HubError as HubError
from jaxhub._src.hub import IntegrityError as IntegrityError
from jaxhub._src.hub import OfflineError as OfflineError
from jaxhub._src.hub import Request as Request
from jaxhub._src.hub import Resolver as Resolver
from jaxhub._src.hub import SettingsError as SettingsError
from jaxhub._src.hub import UnsafeArchiveError as UnsafeArchiveError
from jaxhub._src.hub import cache_dir as cache_dir
from jaxhub._src.hub import cached_derivation as cached_derivation
from jaxhub._src.hub import pack as pack
from jaxhub._src.hub import register_resolver as register_resolver
from jaxhub._src.hub import resolve as resolve

__all__ = (
    "ArchiveError",
    "CacheLockError",
    "CacheWriteError",
    "DownloadError",
    "HandleError",
    "HubError",
    "IntegrityError",
    "OfflineError",
    "Request",
    "Resolver",
    "SettingsError",
    "UnsafeArchiveError",
    "cache_dir",
    "cached_derivation",
    "pack",
    "register_resolver",
    "resolve",
)
