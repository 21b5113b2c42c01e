"""The on-disk cache: one directory per entry, made complete by a single rename.

Layout under the cache root::

    entries/<key>/module/       the module directory handed to callers
    entries/<key>/entry.json    manifest; present only in complete entries
    tmp/<key>~<pid>-<random>/   staging directories, renamed into entries/ when done
    locks/<key>.lock            one lock per key

Atomicity comes from the rename, not from the lock: a reader either sees a complete
entry or none. The lock only keeps processes from downloading the same thing twice, and
it is an OS-level lock (`filelock`, `flock` on POSIX) that the kernel drops when its
holder dies, so a killed download never blocks the next one (TF Hub's hand-made lock
files made survivors wait for minutes: tensorflow/hub#55, #326, #579).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pathlib
import re
import shutil
import uuid
from collections.abc import Callable, Iterator

import filelock

from jaxhub.hub import manifest as manifest_lib
from jaxhub.hub.manifest import FileRecord, Manifest

_log = logging.getLogger(__name__)

MODULE_DIR = "module"
_SEP = "~"  # never produced by `entry_key`, so staging names split unambiguously
_WAIT_NOTICE_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class Entry:
    """A complete cache entry."""

    key: str
    path: pathlib.Path
    manifest: Manifest

    @property
    def module_dir(self) -> pathlib.Path:
        return self.path / MODULE_DIR


@dataclasses.dataclass(frozen=True)
class Listing:
    """One directory under `entries/`, complete or not (for `jaxhub cache ls`)."""

    key: str
    path: pathlib.Path
    manifest: Manifest | None
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
    """Returns the directory name of the entry for `source`: readable slug plus hash."""
    digest = hashlib.sha256(f"{kind}\0{source}".encode()).hexdigest()[:20]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source.split("://", 1)[-1])[-60:].strip("._-")
    return f"{slug}--{digest}" if slug else digest


class Cache:
    """A cache rooted at one directory. Cheap to create; holds no open resources.

    Args:
        root: The cache directory; created on first write.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = pathlib.Path(root)
        self._entries = self.root / "entries"
        self._staging = self.root / "tmp"
        self._locks = self.root / "locks"

    def lookup(self, key: str) -> Entry | None:
        """Returns the entry for `key` if it is complete and none of its files is missing."""
        path = self._entries / key
        found = manifest_lib.read(path / manifest_lib.MANIFEST_NAME)
        if found is None:
            return None
        problems = manifest_lib.missing_files(path / MODULE_DIR, found.files)
        if problems:
            _log.warning("Cache entry %s is damaged (%s); it will be fetched again.",
                         path, "; ".join(problems[:3]))
            return None
        return Entry(key, path, found)

    def get_or_create(self, key: str, kind: str, source: str, build: Build,
                      accept: Accept = lambda entry: True) -> Entry:
        """Returns the entry for `key`, building it under the lock if needed.

        Args:
            key: Entry key, from `entry_key(kind, source)`.
            kind: Recorded in the manifest (`"handle"` or `"derived"`).
            source: Recorded in the manifest; the handle or derivation key.
            build: Fills a staging directory; any exception leaves nothing behind.
            accept: Whether an existing entry is good enough (e.g. matches a sha256 pin).

        Returns:
            A complete entry.
        """
        entry = self.lookup(key)
        if entry is not None and accept(entry):
            return entry
        with self.lock(key):
            # Another process may have finished the entry while we waited for the lock.
            entry = self.lookup(key)
            if entry is not None and accept(entry):
                return entry
            return self._create(key, kind, source, build)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Holds the lock of `key`, saying so in the log if another process has it."""
        self._locks.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self._locks / f"{key}.lock")
        try:
            lock.acquire(timeout=_WAIT_NOTICE_SECONDS)
        except filelock.Timeout:
            _log.warning("Waiting for another process working on %s (lock %s).",
                         key, lock.lock_file)
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def remove(self, key: str) -> bool:
        """Deletes the entry for `key`; returns whether there was one."""
        path = self._entries / key
        with self.lock(key):
            if not path.exists():
                return False
            self._discard(key, path)
            return True

    def listing(self) -> list[Listing]:
        """Every directory under `entries/`, with its problems (cheap check)."""
        result = []
        for path in sorted(_children(self._entries)):
            found = manifest_lib.read(path / manifest_lib.MANIFEST_NAME)
            if found is None:
                problems = ("no manifest: incomplete entry",)
            else:
                problems = tuple(manifest_lib.missing_files(path / MODULE_DIR, found.files))
            result.append(Listing(path.name, path, found, problems))
        return result

    def verify(self, key: str) -> list[str]:
        """Hashes every file of the entry; returns the problems found (empty when sound)."""
        path = self._entries / key
        found = manifest_lib.read(path / manifest_lib.MANIFEST_NAME)
        if found is None:
            return ["no manifest: incomplete entry"]
        return manifest_lib.corrupt_files(path / MODULE_DIR, found.files)

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

    def _create(self, key: str, kind: str, source: str, build: Build) -> Entry:
        self._drop_orphans(key)
        staging = Staging(self._staging / f"{key}{_SEP}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        staging.module_dir.mkdir(parents=True)
        try:
            built = build(staging)
            for scratch in staging.path.glob("scratch-*"):
                scratch.unlink()
            files = built.files if built.files is not None else manifest_lib.scan(
                staging.module_dir)
            record = Manifest(kind=kind, source=source, files=files,
                              archive_sha256=built.archive_sha256)
            manifest_lib.write(staging.path / manifest_lib.MANIFEST_NAME, record)
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


def _children(path: pathlib.Path) -> list[pathlib.Path]:
    try:
        return list(path.iterdir())
    except FileNotFoundError:
        return []
