"""Handles, downloads and the module cache.

``resolve`` turns a handle (path, ``file://`` or http(s) URL) into a local directory,
downloading and unpacking archives into a verified cache; ``pack`` makes such archives.
"""

from jaxhub._src.hub.archive import pack as pack
from jaxhub._src.hub.errors import ArchiveError as ArchiveError
from jaxhub._src.hub.errors import CacheLockError as CacheLockError
from jaxhub._src.hub.errors import CacheWriteError as CacheWriteError
from jaxhub._src.hub.errors import DownloadError as DownloadError
from jaxhub._src.hub.errors import HandleError as HandleError
from jaxhub._src.hub.errors import HubError as HubError
from jaxhub._src.hub.errors import IntegrityError as IntegrityError
from jaxhub._src.hub.errors import OfflineError as OfflineError
from jaxhub._src.hub.errors import SettingsError as SettingsError
from jaxhub._src.hub.errors import UnsafeArchiveError as UnsafeArchiveError
from jaxhub._src.hub.handles import cache_dir as cache_dir
from jaxhub._src.hub.handles import cached_derivation as cached_derivation
from jaxhub._src.hub.handles import cached_derivation_if_present as cached_derivation_if_present
from jaxhub._src.hub.handles import register_resolver as register_resolver
from jaxhub._src.hub.handles import resolve as resolve
from jaxhub._src.hub.registry import Request as Request
from jaxhub._src.hub.registry import Resolver as Resolver
