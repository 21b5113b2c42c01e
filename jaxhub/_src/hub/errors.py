"""Errors raised while resolving handles, downloading and caching modules.

Each error subclasses the builtin a caller would naturally catch (``OSError`` for I/O
trouble, ``ValueError`` for bad input or data), so generic handlers keep working.
"""

from __future__ import annotations


class HubError(Exception):
    """Base class of every error raised by ``jaxhub.hub``."""


class HandleError(HubError, ValueError):
    """No resolver could turn a handle into a local directory."""


class DownloadError(HubError, OSError):
    """A download failed for good: HTTP 4xx, too many transient failures, or a timeout."""


class OfflineError(HubError, OSError):
    """Offline mode is on and the handle is not in the cache."""


class IntegrityError(HubError, ValueError):
    """Downloaded or cached bytes do not match what was expected (a sha256 pin, a manifest)."""


class ArchiveError(HubError, ValueError):
    """A file that should be a tar archive is not one."""


class UnsafeArchiveError(ArchiveError):
    """An archive holds a member that extraction refuses (traversal, link, device, too big)."""


class SettingsError(HubError, ValueError):
    """An environment variable or argument that configures the hub has an invalid value."""


class CacheLockError(HubError, TimeoutError):
    """Another live process held an entry's lock for longer than ``JAXHUB_LOCK_TIMEOUT``."""


class CacheWriteError(HubError, OSError):
    """The cache could not be written: the disk is full, a name is too long, no permission."""
