"""Safe extraction of module archives, and packing a module directory into one.

Extraction accepts only regular files and directories with relative names that stay
inside the destination; anything else (absolute paths, ``..``, symlinks, hard links,
devices, FIFOs) rejects the whole archive, and so does a decompression bomb: more members,
more bytes, a larger expansion over the archive's own size, or less free disk space than
the ``Limits`` allow. Each member's size is read from its header and checked before its
data is written, and free space is checked again while writing. Packing writes a
reproducible tar.gz (sorted names, zero timestamps and owners), so the same directory
always gives the same sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import dataclasses
import os
import pathlib
import shutil
import tarfile
import uuid
import zlib
from collections.abc import Iterator

from jaxhub._src.hub.errors import ArchiveError, UnsafeArchiveError
from jaxhub._src.hub.entry_record import FileRecord, file_sha256

_CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# Any archive may unpack to this much, whatever its expansion ratio: small modules with a
# few zero-initialised tensors compress far better than the ratio allows.
EXPANSION_FLOOR_BYTES = 64 * 2**20
# While writing, free disk space is checked again after this many bytes.
_FREE_SPACE_RECHECK_BYTES = 64 * 2**20
_NAME_MAX = 255  # bytes in one path component on common file systems
# Deepest member: modules nest a few directories; thousands would overflow the recursion
# of pathlib's mkdir, os.walk and shutil.rmtree (a bare RecursionError, a staging
# directory left behind).
MAX_MEMBER_DEPTH = 100
# Largest extended header (a PAX record set, a GNU long name): tarfile reads one whole
# into memory before it yields the member, so without a bound a few KiB of gzip holding
# one header of zeros would cost gigabytes. Real ones hold a name and a few fields.
MAX_EXTENDED_HEADER_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Limits:
    """What an archive may unpack to.

    Attributes:
      max_bytes: Largest total size of the unpacked files (``JAXHUB_MAX_ARCHIVE_BYTES``).
      max_expansion: Largest ratio of unpacked bytes to archive bytes, above
        ``EXPANSION_FLOOR_BYTES`` (``JAXHUB_MAX_EXPANSION_RATIO``).
      max_members: Most files and directories (``JAXHUB_MAX_ARCHIVE_MEMBERS``).
      min_free_bytes: Disk space that must stay free after unpacking
        (``JAXHUB_MIN_FREE_BYTES``).
    """

    max_bytes: int = 64 * 2**30
    max_expansion: float = 100.0
    max_members: int = 20_000
    min_free_bytes: int = 128 * 2**20

    def byte_budget(self, archive_size: int) -> tuple[int, str]:
        """The most bytes an archive of ``archive_size`` bytes may unpack to, and why."""
        by_ratio = max(EXPANSION_FLOOR_BYTES, int(self.max_expansion * archive_size))
        if by_ratio < self.max_bytes:
            return by_ratio, (f"{self.max_expansion:g} times its own {archive_size} bytes; "
                              "raise JAXHUB_MAX_EXPANSION_RATIO if it is genuine")
        return self.max_bytes, "raise JAXHUB_MAX_ARCHIVE_BYTES if it is genuine"


def is_archive_name(name: str) -> bool:
    """Whether a file name or URL path ends like a module archive."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def extract(archive: pathlib.Path, dest: pathlib.Path, *, limits: Limits = Limits(),
            label: str | None = None) -> tuple[FileRecord, ...]:
    """Unpacks a tar (optionally gzip-compressed) archive into the existing directory ``dest``.

    Members are read in one streaming pass and each is checked before it is written; the
    first unsafe member aborts. Callers extract into a staging directory that they
    delete on failure, so a refused archive leaves nothing behind.

    Args:
      archive: Path of the archive.
      dest: Existing, empty directory to unpack into.
      limits: Bounds on members, bytes, expansion and free disk space.
      label: How messages name the archive (the handle it came from); its file name
        when None.

    Returns:
      A record (path, size, sha256) of every file written, sorted by path.

    Raises:
      UnsafeArchiveError: A member is not allowed, or a limit is exceeded.
      ArchiveError: The file is not a readable tar archive.
    """
    label = label or archive.name
    state = _Progress(dest, limits, *limits.byte_budget(archive.stat().st_size))
    try:
        with tarfile.open(archive, mode="r|*", tarinfo=_BoundedTarInfo) as tar:
            for member in tar:
                state.member = member.name
                record = _extract_member(tar, member, dest, state)
                if record is not None:
                    state.records.append(record)
    except UnsafeArchiveError as e:
        raise UnsafeArchiveError(f"{label}: {e}") from e
    except (FileExistsError, NotADirectoryError) as e:
        raise UnsafeArchiveError(
            f"{label}: member {state.member!r} clashes with an earlier one") from e
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ArchiveError(f"{label} is not a readable tar archive ({e}){_guess(archive)}") from e
    return tuple(sorted(state.records, key=lambda r: r.path))


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header that refuses, before reading them, the parts tarfile would hold in
    memory whole: an extended header over ``MAX_EXTENDED_HEADER_BYTES``, and the maps of
    sparse files (old GNU and PAX 1.0 sparse maps grow with the data, without bound)."""

    def _proc_member(self, tarfile_):
        if self.type in _EXTENDED_HEADERS and self.size > MAX_EXTENDED_HEADER_BYTES:
            raise UnsafeArchiveError(
                f"refusing an extended header of {self.size} bytes (at {self.name!r}), "
                f"more than the {MAX_EXTENDED_HEADER_BYTES} a name and its fields need")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise UnsafeArchiveError(f"refusing sparse file {self.name!r} in archive")
        return super()._proc_member(tarfile_)

    def _proc_gnusparse_10(self, next_, pax_headers, tarfile_):
        raise UnsafeArchiveError(f"refusing sparse file {next_.name!r} in archive")


_EXTENDED_HEADERS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                     tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


@dataclasses.dataclass
class _Progress:
    """What extraction has used up so far."""

    dest: pathlib.Path
    limits: Limits
    budget: int
    why: str
    members: int = 0
    written: int = 0
    member: str = ""
    records: list[FileRecord] = dataclasses.field(default_factory=list)

    def admit(self, member: tarfile.TarInfo) -> None:
        """Checks the member's header against every limit before anything is written."""
        self.members += 1
        if self.members > self.limits.max_members:
            raise UnsafeArchiveError(
                f"holds more than {self.limits.max_members} members (at {member.name!r}); "
                "raise JAXHUB_MAX_ARCHIVE_MEMBERS if it is genuine")
        if member.isdir():
            return
        if self.written + member.size > self.budget:
            raise UnsafeArchiveError(
                f"unpacks to more than {self.budget} bytes (at {member.name!r}), the limit "
                f"for it: {self.why}")
        self.check_free_space(member.size)

    def check_free_space(self, needed: int) -> None:
        free = shutil.disk_usage(self.dest).free
        if free - needed < self.limits.min_free_bytes:
            raise UnsafeArchiveError(
                f"unpacking {self.member!r} ({needed} bytes) would leave less than "
                f"{self.limits.min_free_bytes} bytes free on the disk of {self.dest} "
                f"({free} free); free some space, move the cache (JAXHUB_CACHE_DIR) or "
                "lower JAXHUB_MIN_FREE_BYTES")


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: pathlib.Path,
                    state: _Progress) -> FileRecord | None:
    rel = safe_member_name(member)
    state.admit(member)
    if rel is None:
        return None
    target = dest.joinpath(*rel.split("/"))
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return None
    return _write_member(tar, member, rel, target, state)


def _guess(archive: pathlib.Path) -> str:
    # What a file that is not an archive most likely is, as a hint for the user.
    with open(archive, "rb") as f:
        head = f.read(512).lstrip().lower()
    if not head:
        return ": it is empty"
    if head.startswith(b"pk\x03\x04"):  # lowered above
        return (": it is a zip archive; jaxhub reads tar archives (.tar.gz, .tgz, .tar): "
                "unzip it and pack the directory with `jaxhub pack DIR OUT.tar.gz`")
    if head.startswith(b"<"):  # <!DOCTYPE html>, <html>, <?xml ...>
        return (": it is an HTML or XML page, not an archive; check that the URL names a "
                ".tar.gz (a TF-Hub-style server must answer ?tf-hub-format=compressed "
                "with a tarball)")
    return ""


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
    if member.sparse is not None:  # holes that unpack to zeros: nothing jaxhub packs
        raise UnsafeArchiveError(f"refusing sparse file {name!r} in archive")
    if "\0" in name or "\\" in name:
        raise UnsafeArchiveError(f"refusing member with unusual characters {name!r}")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"refusing absolute path {name!r} in archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"refusing path {name!r} that leaves the archive root")
    if any(len(p.encode("utf-8", "surrogateescape")) > _NAME_MAX for p in parts):
        raise UnsafeArchiveError(f"refusing member {name[:80]!r}...: a name component is "
                                 f"longer than {_NAME_MAX} bytes")
    if len(parts) > MAX_MEMBER_DEPTH:
        raise UnsafeArchiveError(f"refusing member {name[:80]!r}...: nested {len(parts)} "
                                 f"directories deep, more than {MAX_MEMBER_DEPTH}")
    return "/".join(parts) or None


def pack(src_dir: str | os.PathLike, out_path: str | os.PathLike) -> str:
    """Packs the contents of a module directory into a reproducible tar.gz.

    Files sit at the archive root (``saved_model.pb``, not ``mymodule/saved_model.pb``), as
    ``jaxhub.resolve`` and ``tensorflow_hub.resolve`` expect. The output appears atomically.

    Args:
      src_dir: Directory to pack; may hold only regular files and directories.
      out_path: Archive to write, conventionally ending in ``.tar.gz``.

    Returns:
      The hex sha256 of the archive, to publish with it (``jaxhub.resolve(url, sha256=...)``).

    Raises:
      ValueError: ``src_dir`` is not a directory or holds a symlink or special file.

    Examples:
      >>> module = jaxhub.create_module(
      ...     {"w": jnp.ones(2)},
      ...     signatures={"default": (lambda p, x: x * p["w"], jaxhub.TensorSpec([None, 2]))})
      >>> digest = pack(module.export("my_module"), "my_module.tar.gz")
      >>> len(digest)
      64
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
                  target: pathlib.Path, state: _Progress) -> FileRecord:
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    digest = hashlib.sha256()
    unchecked = 0
    # "x" refuses to overwrite, so a duplicate name cannot replace an earlier file.
    with open(target, "xb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            state.written += len(chunk)
            unchecked += len(chunk)
            if unchecked >= _FREE_SPACE_RECHECK_BYTES:
                # Other processes write to the same disk meanwhile.
                state.check_free_space(member.size - (out.tell()))
                unchecked = 0
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
