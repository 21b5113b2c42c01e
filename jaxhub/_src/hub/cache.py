"""The on-disk cache: one directory per entry, made complete by a single rename.

Layout under the cache root::

    entries/<key>/module/       the module directory handed to callers
    entries/<key>/entry.json    summary checked on every hit; present only in complete entries
    entries/<key>/files.json    every file's size and sha256, for ``verify``
    tmp/<key>~<pid>-<random>/   staging directories, renamed into entries/ when done
    locks/<key>.lock            one lock per key

Atomicity comes from the rename, not from the lock: a reader either sees a complete
entry or none. The lock only keeps processes from downloading the same thing twice, and
it is an OS-level lock (``filelock``, ``flock`` on POSIX) that the kernel drops when its
holder dies, so a killed download never blocks the next one (TF Hub's hand-made lock
files made survivors wait for minutes: tensorflow/hub#55, #326, #579). A waiter says
which process holds the lock and how far its download got, and gives up after
``lock_timeout`` seconds rather than waiting forever behind a live but stuck process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import pathlib
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator

import filelock

from jaxhub._src.hub import entry_record
from jaxhub._src.hub.errors import CacheLockError, CacheWriteError, HubError
from jaxhub._src.hub.entry_record import FileRecord, EntryRecord
from jaxhub._src.units import format_bytes

_log = logging.getLogger(__name__)

MODULE_DIR = "module"
_SEP = "~"  # never produced by `entry_key`, so staging names split unambiguously
_WAIT_NOTICE_SECONDS = 2.0  # first "waiting" notice; then one every _WAIT_REPEAT_SECONDS
_WAIT_REPEAT_SECONDS = 30.0
# Errors of the cache's own disk that a user can fix, and how.
_WRITE_FIXES = {
    errno.ENOSPC: "free some disk space or move the cache (JAXHUB_CACHE_DIR)",
    errno.EDQUOT: "free some of your disk quota or move the cache (JAXHUB_CACHE_DIR)",
    errno.EFBIG: "move the cache (JAXHUB_CACHE_DIR) to a file system without this limit",
    errno.ENAMETOOLONG: "use a shorter cache path (JAXHUB_CACHE_DIR)",
    errno.EROFS: "point JAXHUB_CACHE_DIR at a writable directory",
    errno.EACCES: "point JAXHUB_CACHE_DIR at a directory you may write to",
    errno.EPERM: "point JAXHUB_CACHE_DIR at a directory you may write to",
    errno.ENOTDIR: "point JAXHUB_CACHE_DIR at a directory (a file is in the way)",
}


@dataclasses.dataclass(frozen=True)
class Entry:
    """A complete cache entry."""

    key: str
    path: pathlib.Path
    manifest: EntryRecord

    @property
    def module_dir(self) -> pathlib.Path:
        return self.path / MODULE_DIR


@dataclasses.dataclass(frozen=True)
class Listing:
    """One directory under ``entries/``, complete or not (for ``jaxhub cache ls``)."""

    key: str
    path: pathlib.Path
    manifest: EntryRecord | None
    problems: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Staging:
    """A private directory in which one entry is built before being renamed into place."""

    path: pathlib.Path

    @property
    def module_dir(self) -> pathlib.Path:
        return self.path / MODULE_DIR

    def scratch(self, name: str) -> pathlib.Path:
        """A path for temporary files (e.g. a download) that do not become part of the entry."""
        return self.path / f"scratch-{name}"


@dataclasses.dataclass(frozen=True)
class Built:
    """What a build step reports: files it already hashed, and the archive it unpacked."""

    files: tuple[FileRecord, ...] | None = None
    archive_sha256: str | None = None


Build = Callable[[Staging], Built]
Accept = Callable[[Entry], bool]


def entry_key(kind: str, source: str) -> str:
    """Returns the directory name of the entry for ``source``: readable slug plus hash."""
    digest = hashlib.sha256(f"{kind}\0{source}".encode()).hexdigest()[:20]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source.split("://", 1)[-1])[-60:].strip("._-")
    return f"{slug}--{digest}" if slug else digest


class Cache:
    """A cache rooted at one directory. Cheap to create; holds no open resources.

    Args:
      root: The cache directory; created on first write.
      lock_timeout: Seconds to wait for another process's lock before giving up.
    """

    def __init__(self, root: str | os.PathLike, *, lock_timeout: float = 7200.0):
        self.root = pathlib.Path(root)
        self.lock_timeout = lock_timeout
        self._entries = self.root / "entries"
        self._staging = self.root / "tmp"
        self._locks = self.root / "locks"

    def lookup(self, key: str) -> Entry | None:
        """Returns the entry for ``key`` if it is complete and not damaged (cheap check)."""
        path = self._entries / key
        found = entry_record.read(path)
        if found is None:
            return None
        problems = self._check(path, found)
        if problems:
            _log.warning("Cache entry %s is damaged (%s); it will be fetched again.",
                         path, "; ".join(problems[:3]))
            return None
        return Entry(key, path, found)

    def get_or_create(self, key: str, kind: str, source: str, build: Build,
                      accept: Accept = lambda entry: True, *,
                      origin: str | None = None) -> Entry:
        """Returns the entry for ``key``, building it under the lock if needed.

        Args:
          key: Entry key, from ``entry_key(kind, source)``.
          kind: Recorded in the manifest (``"handle"`` or ``"derived"``).
          source: Recorded in the manifest; the canonical handle or derivation key.
          build: Fills a staging directory; any exception leaves nothing behind.
          accept: Whether an existing entry is good enough (e.g. matches a sha256 pin).
          origin: Recorded in the manifest: what a derived entry was computed from.

        Returns:
          A complete entry.

        Raises:
          CacheLockError: Another process held the lock for ``lock_timeout`` seconds.
          CacheWriteError: The cache's disk is full, refuses a name, or is not writable.
        """
        entry = self.lookup(key)
        if entry is not None and accept(entry):
            return entry
        with _cache_writes(source, self.root), self.lock(key, source):
            # Another process may have finished the entry while we waited for the lock.
            entry = self.lookup(key)
            if entry is not None and accept(entry):
                return entry
            return self._create(key, kind, source, build, origin)

    @contextlib.contextmanager
    def lock(self, key: str, label: str | None = None) -> Iterator[None]:
        """Holds the lock of ``key``; while another process has it, says who and waits.

        Args:
          key: The entry's key.
          label: How messages name the entry (its handle); the key when None.

        Raises:
          CacheLockError: The lock stayed taken for ``lock_timeout`` seconds.
        """
        self._locks.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self._locks / f"{key}.lock")
        self._acquire(lock, key, label or key)
        try:
            yield
        finally:
            lock.release()

    def remove(self, key: str) -> bool:
        """Deletes the entry for ``key``; returns whether there was one."""
        path = self._entries / key
        with self.lock(key):
            if not path.exists():
                return False
            self._discard(key, path)
            return True

    def listing(self) -> list[Listing]:
        """Every directory under ``entries/``, with its problems (the cheap check of a hit)."""
        result = []
        for path in sorted(_children(self._entries)):
            found = entry_record.read(path)
            problems = (("no manifest: incomplete entry",) if found is None
                        else tuple(self._check(path, found)))
            result.append(Listing(path.name, path, found, problems))
        return result

    def verify(self, key: str) -> list[str]:
        """Hashes every file of the entry; returns the problems found (empty when sound)."""
        path = self._entries / key
        files = entry_record.read_files(path)
        if entry_record.read(path) is None or files is None:
            return ["no manifest: incomplete entry"]
        return entry_record.corrupt_files(path / MODULE_DIR, files)

    def prune(self) -> list[pathlib.Path]:
        """Removes what no live process owns: staging dirs, broken entries, idle locks.

        Returns:
          The paths removed.
        """
        removed = []
        for path in _children(self._staging):
            key = path.name.split(_SEP, 1)[0]
            if self._try_locked(key, lambda: shutil.rmtree(path, ignore_errors=True)):
                removed.append(path)
        for item in self.listing():
            if item.problems and self._try_locked(
                    item.key, lambda: self._discard(item.key, item.path)):
                removed.append(item.path)
        for path in _children(self._locks):
            # Unlinking while holding the lock is safe: filelock re-checks the inode a
            # waiter locked and retries if it was unlinked meanwhile.
            if path.suffix == ".lock" and self._try_locked(path.stem, path.unlink):
                removed.append(path)
        return removed

    def _check(self, path: pathlib.Path, found: EntryRecord) -> list[str]:
        # The cheap check: sampled files and directory times. Changed times alone may
        # mean a copied or touched cache rather than a purge, so the full list of sizes
        # decides; if it is intact, the new times are recorded and later hits stay cheap.
        module = path / MODULE_DIR
        damaged, changed = entry_record.quick_check(module, found)
        if damaged or not changed:
            return damaged
        files = entry_record.read_files(path)
        if files is None:
            return ["files.json: missing or unreadable"]
        problems = entry_record.missing_files(module, files)
        if problems:
            return problems
        with contextlib.suppress(OSError):  # a read-only cache stays usable, only slower
            entry_record.rewrite(path, found.restamped(module))
        return []

    def _acquire(self, lock: filelock.FileLock, key: str, label: str) -> None:
        give_up = time.monotonic() + self.lock_timeout
        wait = _WAIT_NOTICE_SECONDS
        while True:
            try:
                lock.acquire(timeout=max(0.0, min(wait, give_up - time.monotonic())))
                return
            except filelock.Timeout:
                pass
            holder = self._holder(key)
            if time.monotonic() >= give_up:
                raise CacheLockError(
                    f"Gave up after {self.lock_timeout:g}s waiting for {holder}, which is "
                    f"working on {label} (lock {lock.lock_file}). Wait for it or stop it "
                    "(its lock is freed the moment it exits), or raise JAXHUB_LOCK_TIMEOUT.")
            _log.warning("Waiting for %s working on %s (lock %s; giving up after %gs, "
                         "JAXHUB_LOCK_TIMEOUT).", holder, label, lock.lock_file,
                         self.lock_timeout)
            wait = _WAIT_REPEAT_SECONDS

    def _holder(self, key: str) -> str:
        # Who holds the lock, read from its staging directory (named <key>~<pid>-<random>),
        # with the size of its download so far. A holder that is removing or pruning has
        # no staging directory.
        for path in self._staging.glob(f"{key}{_SEP}*"):
            pid = path.name.split(_SEP, 1)[1].split("-", 1)[0]
            if not pid.isdigit():
                continue
            try:
                got = sum(p.stat().st_size for p in path.glob("scratch-*"))
            except OSError:
                got = 0
            return f"another process (pid {pid}, {format_bytes(got)} downloaded so far)"
        return "another process"

    def _create(self, key: str, kind: str, source: str, build: Build,
                origin: str | None) -> Entry:
        self._drop_orphans(key)
        staging = Staging(self._staging / f"{key}{_SEP}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        staging.module_dir.mkdir(parents=True)
        try:
            built = build(staging)
            for scratch in staging.path.glob("scratch-*"):
                scratch.unlink()
            files = built.files if built.files is not None else entry_record.scan(
                staging.module_dir)
            record = EntryRecord.describe(staging.module_dir, files, kind=kind, source=source,
                                       archive_sha256=built.archive_sha256, origin=origin)
            entry_record.write(staging.path, record, files)
            target = self._entries / key
            if target.exists():
                self._discard(key, target)
            self._entries.mkdir(parents=True, exist_ok=True)
            os.rename(staging.path, target)
            return Entry(key, target, record)
        finally:
            # Only our own staging directory; after a successful rename it is gone.
            shutil.rmtree(staging.path, ignore_errors=True)

    def _drop_orphans(self, key: str) -> None:
        # Called with the lock held, so any staging dir of this key belongs to a dead process.
        for path in self._staging.glob(f"{key}{_SEP}*"):  # keys hold no glob characters
            shutil.rmtree(path, ignore_errors=True)

    def _discard(self, key: str, path: pathlib.Path) -> None:
        # Rename first so the entry disappears at once, then delete at leisure.
        self._staging.mkdir(parents=True, exist_ok=True)
        doomed = self._staging / f"{key}{_SEP}discard-{uuid.uuid4().hex[:8]}"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def _try_locked(self, key: str, action: Callable[[], object]) -> bool:
        self._locks.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self._locks / f"{key}.lock")
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        try:
            action()
            return True
        finally:
            lock.release()


@contextlib.contextmanager
def _cache_writes(source: str, root: pathlib.Path) -> Iterator[None]:
    """Turns the cache disk's errors that a user can fix into a ``CacheWriteError``."""
    try:
        yield
    except HubError:
        raise
    except OSError as e:
        fix = _WRITE_FIXES.get(e.errno)
        outside = e.filename is not None and root.absolute() not in pathlib.Path(
            os.fsdecode(e.filename)).absolute().parents
        if fix is None or outside:  # not the cache's disk (e.g. a converter's input)
            raise
        raise CacheWriteError(f"Caching {source} in {root} failed: {e.strerror}; {fix}.") from e


def _children(path: pathlib.Path) -> list[pathlib.Path]:
    try:
        return list(path.iterdir())
    except FileNotFoundError:
        return []
