"""The record kept beside each cache entry: where it came from and every file it holds.

Two files sit beside an entry's ``module/`` directory, written into the staging directory
before the entry is renamed into place:

- ``files.json``: every file with its size and sha256, for ``jaxhub cache verify``;
- ``entry.json``: a small summary read on every cache hit: source, totals, the
  modification times of the module's directories, and the sizes of a bounded sample of
  its files (all of them when there are few).

A cache hit reads only ``entry.json`` and runs ``quick_check``: one ``stat`` per directory
and per sampled file. Removing, adding or renaming any file changes its directory's
modification time, so purges are caught however many files an entry holds; a file
rewritten in place is caught if it is sampled, and otherwise by ``jaxhub cache verify``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
import uuid
from collections.abc import Iterable

RECORD_NAME = "entry.json"
FILES_NAME = "files.json"
_FORMAT = 2
_LEGACY_FORMAT = 1  # entry.json held the whole file list and no directory times
_CHUNK = 1 << 20
# Files whose size every cache hit checks: all of them up to this many, else the largest.
SAMPLE_FILES = 64


@dataclasses.dataclass(frozen=True)
class FileRecord:
    """One file of an entry: path relative to the module directory (posix), size, sha256."""

    path: str
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class DirStamp:
    """A directory of the module (posix path, "" for the root) and its mtime in ns."""

    path: str
    mtime_ns: int


@dataclasses.dataclass(frozen=True)
class EntryRecord:
    """What a cache entry holds and where it came from (the summary in ``entry.json``).

    Attributes:
      kind: ``"handle"`` for resolved handles, ``"derived"`` for ``cached_derivation``.
      source: The canonical handle or derivation key the entry was made for.
      file_count: Number of files in the module directory.
      size: Total bytes of those files.
      sample: Files whose presence and size every cache hit checks.
      directories: Every directory of the module with its modification time; None for
        entries written before directory times were recorded (then ``sample`` holds
        every file).
      archive_sha256: sha256 of the archive the files were unpacked from, if any.
      origin: What a derived entry was computed from (a path, or the handle of the
        cache entry it was computed from), if known.
      created: Seconds since the epoch when the entry was written.
    """

    kind: str
    source: str
    file_count: int
    size: int
    sample: tuple[FileRecord, ...]
    directories: tuple[DirStamp, ...] | None
    archive_sha256: str | None = None
    origin: str | None = None
    created: float = dataclasses.field(default_factory=time.time)

    @classmethod
    def describe(cls, root: pathlib.Path, files: tuple[FileRecord, ...], **fields) -> EntryRecord:
        """Summarises the finished module directory ``root`` holding ``files``."""
        largest = sorted(files, key=lambda f: (-f.size, f.path))[:SAMPLE_FILES]
        return cls(file_count=len(files), size=sum(f.size for f in files),
                   sample=tuple(sorted(largest, key=lambda f: f.path)),
                   directories=directory_stamps(root), **fields)

    def restamped(self, root: pathlib.Path) -> EntryRecord:
        """The same summary with the directory times ``root`` has now."""
        return dataclasses.replace(self, directories=directory_stamps(root))

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["format"] = _FORMAT
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> EntryRecord:
        data = json.loads(text)
        version = data.pop("format", None)
        if version == _LEGACY_FORMAT:
            files = tuple(FileRecord(**f) for f in data.pop("files"))
            return cls(file_count=len(files), size=sum(f.size for f in files), sample=files,
                       directories=None, **data)
        if version != _FORMAT:
            raise ValueError("unknown cache entry format")
        data["sample"] = tuple(FileRecord(**f) for f in data["sample"])
        data["directories"] = tuple(DirStamp(**d) for d in data["directories"])
        return cls(**data)


def read(entry: pathlib.Path) -> EntryRecord | None:
    """Returns the summary of the entry directory ``entry``, or None when missing or unreadable."""
    try:
        return EntryRecord.from_json((entry / RECORD_NAME).read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return None


def read_files(entry: pathlib.Path) -> tuple[FileRecord, ...] | None:
    """Returns every file record of the entry directory ``entry``, or None when unreadable."""
    try:
        if not (entry / FILES_NAME).exists():  # written before the list had its own file
            data = json.loads((entry / RECORD_NAME).read_text())
            return tuple(FileRecord(**f) for f in data["files"])
        return tuple(FileRecord(**f) for f in json.loads((entry / FILES_NAME).read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write(entry: pathlib.Path, manifest: EntryRecord, files: tuple[FileRecord, ...]) -> None:
    """Writes the file list and the summary of an entry being built in ``entry``."""
    _write_synced(entry / FILES_NAME,
                  json.dumps([dataclasses.asdict(f) for f in files], separators=(",", ":")))
    _write_synced(entry / RECORD_NAME, manifest.to_json())


def rewrite(entry: pathlib.Path, manifest: EntryRecord) -> None:
    """Replaces the summary of a live entry atomically (readers see the old or the new one)."""
    tmp = entry / f".{RECORD_NAME}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write_synced(tmp, manifest.to_json())
        os.replace(tmp, entry / RECORD_NAME)
    finally:
        tmp.unlink(missing_ok=True)


def directory_stamps(root: pathlib.Path) -> tuple[DirStamp, ...]:
    """Every directory under ``root`` (itself included) with its modification time."""
    stamps = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        rel = pathlib.Path(dirpath).relative_to(root).as_posix()
        stamps.append(DirStamp("" if rel == "." else rel, os.stat(dirpath).st_mtime_ns))
    return tuple(stamps)


def changed_directories(root: pathlib.Path, stamps: Iterable[DirStamp]) -> list[str]:
    """Directories that are gone or were modified (a file added, removed or renamed)."""
    problems = []
    for stamp in stamps:
        try:
            mtime = os.stat(root / stamp.path).st_mtime_ns
        except OSError:
            problems.append(f"{stamp.path or '.'}/: missing")
            continue
        if mtime != stamp.mtime_ns:
            problems.append(f"{stamp.path or '.'}/: modified since the entry was written")
    return problems


def quick_check(root: pathlib.Path, manifest: EntryRecord) -> tuple[list[str], list[str]]:
    """The check of every cache hit: its cost depends on directories, not on files.

    Args:
      root: The entry's module directory.
      manifest: The entry's summary.

    Returns:
      Problems with sampled files (the entry is damaged), and directories whose times
      changed (the entry may be damaged, or merely copied or touched: ``missing_files``
      over the full list tells).
    """
    changed = ([] if manifest.directories is None
               else changed_directories(root, manifest.directories))
    return missing_files(root, manifest.sample), changed


def _write_synced(path: pathlib.Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def file_sha256(path: pathlib.Path) -> str:
    """Returns the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def scan(root: pathlib.Path) -> tuple[FileRecord, ...]:
    """Records every regular file under ``root``, sorted by path.

    Raises:
      ValueError: ``root`` holds a symlink or a special file, which entries never do.
    """
    records = []
    for path in sorted(_walk(root)):
        rel = path.relative_to(root).as_posix()
        records.append(FileRecord(rel, path.stat().st_size, file_sha256(path)))
    return tuple(records)


def missing_files(root: pathlib.Path, files: Iterable[FileRecord]) -> list[str]:
    """Cheap check (one stat per file): paths that are gone or changed size."""
    problems = []
    for record in files:
        try:
            size = (root / record.path).stat().st_size
        except OSError:
            problems.append(f"{record.path}: missing")
            continue
        if size != record.size:
            problems.append(f"{record.path}: {size} bytes, expected {record.size}")
    return problems


def corrupt_files(root: pathlib.Path, files: Iterable[FileRecord]) -> list[str]:
    """Full check (hashes every byte): paths that are gone, changed size or changed content."""
    files = tuple(files)
    problems = missing_files(root, files)
    bad = {p.split(":", 1)[0] for p in problems}
    for record in files:
        if record.path not in bad and file_sha256(root / record.path) != record.sha256:
            problems.append(f"{record.path}: sha256 differs")
    return problems


def _walk(root: pathlib.Path) -> Iterable[pathlib.Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = pathlib.Path(dirpath, name)
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise ValueError(f"{path}: only regular files and directories are allowed")
            if path.is_file():
                yield path
