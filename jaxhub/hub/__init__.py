"""Handles, downloads and the module cache.

`resolve` turns a handle (path, `file://` or http(s) URL) into a local directory,
downloading and unpacking archives into a verified cache; `pack` makes such archives.
"""

from jaxhub.hub.archive import pack as pack
from jaxhub.hub.errors import ArchiveError as ArchiveError
from jaxhub.hub.errors import CacheLockError as CacheLockError
from jaxhub.hub.errors import CacheWriteError as CacheWriteError
from jaxhub.hub.errors import DownloadError as DownloadError
from jaxhub.hub.errors import HandleError as HandleError
from jaxhub.hub.errors import HubError as HubError
from jaxhub.hub.errors import IntegrityError as IntegrityError
from jaxhub.hub.errors import OfflineError as OfflineError
from jaxhub.hub.errors import SettingsError as SettingsError
from jaxhub.hub.errors import UnsafeArchiveError as UnsafeArchiveError
from jaxhub.hub.handles import cache_dir as cache_dir
from jaxhub.hub.handles import cached_derivation as cached_derivation
from jaxhub.hub.handles import register_resolver as register_resolver
from jaxhub.hub.handles import resolve as resolve
from jaxhub.hub.registry import Request as Request
from jaxhub.hub.registry import Resolver as Resolver
