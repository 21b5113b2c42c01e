"""The record kept beside each cache entry: where it came from and every file it holds.

`entry.json` is written into the staging directory before the entry is renamed into
place, so its presence marks a complete entry, and its file list (sizes and sha256)
lets a later call notice files that were removed behind the cache's back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
from collections.abc import Iterable

MANIFEST_NAME = "entry.json"
_FORMAT = 1
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class FileRecord:
    """One file of an entry: path relative to the module directory (posix), size, sha256."""

    path: str
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a cache entry holds and where it came from.

    Attributes:
        kind: `"handle"` for resolved handles, `"derived"` for `cached_derivation`.
        source: The handle or derivation key the entry was made for.
        files: Every regular file of the module directory.
        archive_sha256: sha256 of the archive the files were unpacked from, if any.
        created: Seconds since the epoch when the entry was written.
    """

    kind: str
    source: str
    files: tuple[FileRecord, ...]
    archive_sha256: str | None = None
    created: float = dataclasses.field(default_factory=time.time)

    @property
    def size(self) -> int:
        """Total bytes of the module's files."""
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["format"] = _FORMAT
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if data.pop("format", None) != _FORMAT:
            raise ValueError("unknown cache entry format")
        data["files"] = tuple(FileRecord(**f) for f in data["files"])
        return cls(**data)


def read(path: pathlib.Path) -> Manifest | None:
    """Returns the manifest at `path`, or None when it is missing or unreadable."""
    try:
        return Manifest.from_json(path.read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write(path: pathlib.Path, manifest: Manifest) -> None:
    """Writes `manifest` to `path` and flushes it to disk."""
    with open(path, "w") as f:
        f.write(manifest.to_json())
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
    """Records every regular file under `root`, sorted by path.

    Raises:
        ValueError: `root` holds a symlink or a special file, which entries never do.
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
