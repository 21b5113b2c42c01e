"""Safe extraction of module archives, and packing a module directory into one.

Extraction accepts only regular files and directories with relative names that stay
inside the destination; anything else (absolute paths, `..`, symlinks, hard links,
devices, FIFOs) or more bytes than allowed rejects the whole archive. Packing writes a
reproducible tar.gz (sorted names, zero timestamps and owners), so the same directory
always gives the same sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import tarfile
import uuid
import zlib
from collections.abc import Iterator

from jaxhub.hub.errors import ArchiveError, UnsafeArchiveError
from jaxhub.hub.manifest import FileRecord, file_sha256

_CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive_name(name: str) -> bool:
    """Whether a file name or URL path ends like a module archive."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def extract(archive: pathlib.Path, dest: pathlib.Path, *,
            max_bytes: int) -> tuple[FileRecord, ...]:
    """Unpacks a tar (optionally gzip-compressed) archive into the existing directory `dest`.

    Members are read in one streaming pass and checked before anything is written; the
    first unsafe member aborts. Callers extract into a staging directory that they
    delete on failure, so a refused archive leaves nothing behind.

    Args:
        archive: Path of the archive.
        dest: Existing, empty directory to unpack into.
        max_bytes: Largest total size of the unpacked files.

    Returns:
        A record (path, size, sha256) of every file written, sorted by path.

    Raises:
        UnsafeArchiveError: A member is not allowed, or the archive is too large.
        ArchiveError: The file is not a readable tar archive.
    """
    records = []
    budget = max_bytes
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                rel = safe_member_name(member)
                if rel is None:
                    continue
                target = dest.joinpath(*rel.split("/"))
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                budget -= member.size
                if budget < 0:
                    raise UnsafeArchiveError(
                        f"{archive.name}: unpacks to more than {max_bytes} bytes (at "
                        f"{member.name!r}); raise JAXHUB_MAX_ARCHIVE_BYTES if it is genuine")
                records.append(_write_member(tar, member, rel, target))
    except (FileExistsError, NotADirectoryError) as e:
        raise UnsafeArchiveError(
            f"{archive.name}: member {e.filename} clashes with an earlier one") from e
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ArchiveError(f"{archive.name} is not a readable tar archive: {e}") from e
    return tuple(sorted(records, key=lambda r: r.path))


def safe_member_name(member: tarfile.TarInfo) -> str | None:
    """Returns the member's normalized relative name, or None for the archive root.

    Raises:
        UnsafeArchiveError: The member is not a plain file or directory, or its name is
            absolute or climbs out of the destination.
    """
    name = member.name
    if not (member.isfile() or member.isdir()):
        kind = "link" if (member.issym() or member.islnk()) else "special file"
        raise UnsafeArchiveError(f"refusing {kind} {name!r} in archive")
    if "\0" in name or "\\" in name:
        raise UnsafeArchiveError(f"refusing member with unusual characters {name!r}")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"refusing absolute path {name!r} in archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"refusing path {name!r} that leaves the archive root")
    return "/".join(parts) or None


def pack(src_dir: str | os.PathLike, out_path: str | os.PathLike) -> str:
    """Packs the contents of a module directory into a reproducible tar.gz.

    Files sit at the archive root (`saved_model.pb`, not `mymodule/saved_model.pb`), as
    `jaxhub.resolve` and `tensorflow_hub.resolve` expect. The output appears atomically.

    Args:
        src_dir: Directory to pack; may hold only regular files and directories.
        out_path: Archive to write, conventionally ending in `.tar.gz`.

    Returns:
        The hex sha256 of the archive, to publish with it (`jaxhub.resolve(url, sha256=...)`).

    Raises:
        ValueError: `src_dir` is not a directory or holds a symlink or special file.

    Examples:
        >>> digest = pack("exported/my_module", "my_module.tar.gz")  # doctest: +SKIP
    """
    src = pathlib.Path(src_dir)
    if not src.is_dir():
        raise ValueError(f"{src} is not a directory")
    out = pathlib.Path(out_path)
    partial = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(partial, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                               compresslevel=6) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for path in _packable(src, exclude={partial, out.absolute()}):
                        _add(tar, path, path.relative_to(src).as_posix())
        digest = file_sha256(partial)
        os.replace(partial, out)
        return digest
    finally:
        partial.unlink(missing_ok=True)


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str,
                  target: pathlib.Path) -> FileRecord:
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    digest = hashlib.sha256()
    # "x" refuses to overwrite, so a duplicate name cannot replace an earlier file.
    with open(target, "xb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
    return FileRecord(rel, member.size, digest.hexdigest())


def _packable(src: pathlib.Path, exclude: set[pathlib.Path]) -> Iterator[pathlib.Path]:
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()  # os.walk descends in this order
        for name in dirnames + sorted(filenames):
            path = pathlib.Path(dirpath, name)
            if path.absolute() in exclude:  # the archive itself, when written inside src
                continue
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise ValueError(f"{path}: only regular files and directories can be packed")
            yield path


def _add(tar: tarfile.TarFile, path: pathlib.Path, name: str) -> None:
    # Fixed times, owners and modes make the archive depend on the contents only.
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        return
    info.size = path.stat().st_size
    info.mode = 0o644
    with open(path, "rb") as f:
        tar.addfile(info, f)
