"""TF's tensor-bundle checkpoints (``variables.index`` + ``variables.data-*``) without TF.

The index is an immutable sorted table (LevelDB's format): data blocks of
prefix-compressed key/value entries, an index block pointing at them, and a footer. Its
entry ``""`` is a ``BundleHeaderProto``; every other entry is a ``BundleEntryProto`` that
says where a tensor's bytes are (shard, offset, size) and their masked CRC-32C. Every
block's and every tensor's checksum is verified; sizes are checked against the files
before anything is allocated.

Examples:
  >>> reader = BundleReader("/tmp/saved/variables/variables")
  >>> reader.keys()
  ['_CHECKPOINTABLE_OBJECT_GRAPH', 'dense/kernel/.ATTRIBUTES/VARIABLE_VALUE', ...]
  >>> reader.get_tensor("dense/kernel/.ATTRIBUTES/VARIABLE_VALUE")
"""

from __future__ import annotations

import os
import pathlib
import struct

import google_crc32c
import numpy as np

from jaxhub_tf.from_tf.reader import files, protos, tensors
from jaxhub import ModuleFormatError

_FOOTER_SIZE = 48  # two block handles (varints, padded to 40 bytes) + 8-byte magic
_MAGIC = 0xDB4775248B80FB57
_TRAILER_SIZE = 5  # block type byte + masked crc32c
_MASK_DELTA = 0xA282EAD8


class CheckpointError(ModuleFormatError):
    """A checkpoint file is missing, truncated or corrupt; the message names the file."""


def masked_crc32c(data: bytes) -> int:
    """CRC-32C of ``data``, masked as LevelDB and TF store it next to the data."""
    return _mask(google_crc32c.value(data))


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class BundleReader:
    """Reads tensors from the checkpoint with prefix ``prefix`` (``.../variables``).

    Args:
      prefix: the checkpoint prefix: ``prefix.index`` and ``prefix.data-K-of-N`` exist.

    Raises:
      CheckpointError: the index is missing or corrupt.
    """

    def __init__(self, prefix: str | os.PathLike):
        self._prefix = pathlib.Path(prefix)
        self._index_path = self._prefix.with_name(self._prefix.name + ".index")
        try:
            data = files.read_regular(self._index_path)
        except OSError as e:
            raise CheckpointError(f"{self._index_path}: cannot read the checkpoint index "
                                  f"({e.strerror})") from e
        self._entries = {key: value for key, value in _read_table(data, self._index_path)}
        header = protos.BundleHeaderProto()
        try:
            header.ParseFromString(self._entries.pop(b"", b""))
        except Exception as e:
            raise CheckpointError(f"{self._index_path}: corrupt bundle header") from e
        if header.endianness != 0:
            raise CheckpointError(f"{self._index_path}: a big-endian checkpoint")
        self._num_shards = max(header.num_shards, 1)

    def keys(self) -> list[str]:
        """Every tensor's key, sorted."""
        return sorted(k.decode("utf-8", "surrogateescape") for k in self._entries)

    def has_tensor(self, key: str) -> bool:
        return key.encode("utf-8", "surrogateescape") in self._entries

    def get_tensor(self, key: str) -> np.ndarray:
        """The tensor stored under ``key`` (strings: an object array of ``bytes``).

        Raises:
          KeyError: no such key.
          CheckpointError: the data is truncated, its checksum does not match, or its
            shape and size disagree.
        """
        raw = self._entries.get(key.encode("utf-8", "surrogateescape"))
        if raw is None:
            raise KeyError(f"{self._index_path}: no tensor {key!r} in the checkpoint")
        entry = protos.BundleEntryProto()
        try:
            entry.ParseFromString(raw)
        except Exception as e:
            raise CheckpointError(f"{self._index_path}: corrupt entry for {key!r}") from e
        if entry.slices:
            raise CheckpointError(f"{self._index_path}: {key!r} is a partitioned "
                                  f"variable, which jaxhub does not read yet")
        what = f"{self._index_path}: tensor {key!r}"
        try:
            dtype = tensors.numpy_dtype(entry.dtype)
            if isinstance(dtype, str):
                raise CheckpointError(f"{what} is a {dtype}, which has no value to read")
            shape = tensors.shape_of(entry.shape, what)
            count = tensors.check_size(shape, 8 if dtype == object else dtype.itemsize,
                                       what)
        except tensors.TensorFormatError as e:
            raise CheckpointError(str(e)) from None
        data, shard = self._read(entry, key)
        if dtype == object:
            return _strings(data, count, entry.crc32c, f"{shard}: tensor {key!r}"
                            ).reshape(shape)
        if masked_crc32c(data) != entry.crc32c:
            raise CheckpointError(f"{shard}: checksum mismatch for tensor {key!r}: the "
                                  f"checkpoint is corrupt (download it again)")
        if len(data) != count * dtype.itemsize:
            raise CheckpointError(f"{what} has {len(data)} bytes for shape {list(shape)} "
                                  f"of {dtype}")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()

    def _read(self, entry, key: str) -> tuple[bytes, pathlib.Path]:
        """The bytes of ``entry`` and the shard they come from (checksum not verified)."""
        if not 0 <= entry.shard_id < self._num_shards:
            raise CheckpointError(f"{self._index_path}: {key!r} names shard "
                                  f"{entry.shard_id} of {self._num_shards}")
        shard = self._prefix.with_name(
            f"{self._prefix.name}.data-{entry.shard_id:05d}-of-{self._num_shards:05d}")
        try:
            with files.open_regular(shard) as f:
                available = os.fstat(f.fileno()).st_size - entry.offset
                if entry.offset < 0 or entry.size < 0 or entry.size > available:
                    raise CheckpointError(
                        f"{shard}: truncated: tensor {key!r} needs bytes "
                        f"{entry.offset}..{entry.offset + entry.size}, the file has "
                        f"{available + entry.offset}")
                f.seek(entry.offset)
                data = f.read(entry.size)
        except OSError as e:
            raise CheckpointError(f"{shard}: cannot read ({e.strerror})") from e
        return data, shard


def _strings(data: bytes, count: int, stored_crc: int, what: str) -> np.ndarray:
    """A string tensor from its bytes: ``count`` varint lengths, the masked CRC-32C of
    the lengths (each as a little-endian uint32, or uint64 past 2**32), then the strings.
    ``stored_crc`` (the entry's) covers those lengths, their checksum and the strings."""
    lengths, pos = [], 0
    try:
        for _ in range(count):
            length, pos = _varint(data, pos)
            lengths.append(length)
    except IndexError:
        raise CheckpointError(f"{what}: truncated string lengths") from None
    crc = google_crc32c.value(b"".join(
        struct.pack("<I" if n <= 0xFFFFFFFF else "<Q", n) for n in lengths))
    (stored,) = struct.unpack_from("<I", data, pos) if pos + 4 <= len(data) else (None,)
    if stored != _mask(crc) or _mask(google_crc32c.extend(crc, data[pos:])) != stored_crc:
        raise CheckpointError(f"{what}: checksum mismatch: the checkpoint is corrupt "
                              f"(download it again)")
    pos += 4
    if pos + sum(lengths) != len(data):
        raise CheckpointError(f"{what}: string lengths disagree with its size")
    out = np.empty(count, dtype=object)
    for i, length in enumerate(lengths):
        out[i] = data[pos:pos + length]
        pos += length
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def _read_table(data: bytes, path: pathlib.Path):
    """Yields ``(key, value)`` of every entry of the sorted table ``data``, in order."""
    if len(data) < _FOOTER_SIZE:
        raise CheckpointError(f"{path}: truncated checkpoint index ({len(data)} bytes)")
    footer = data[-_FOOTER_SIZE:]
    if struct.unpack("<Q", footer[-8:])[0] != _MAGIC:
        raise CheckpointError(f"{path}: not a checkpoint index (bad magic number)")
    try:
        _, pos = _block_handle(footer, 0)  # the metaindex: unused
        index_handle, _ = _block_handle(footer, pos)
        for _, handle in _block_entries(_block(data, index_handle, path), path):
            block_handle, _ = _block_handle(handle, 0)
            yield from _block_entries(_block(data, block_handle, path), path)
    except (IndexError, struct.error):
        raise CheckpointError(f"{path}: corrupt checkpoint index") from None


def _block_handle(data: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(data, pos)
    size, pos = _varint(data, pos)
    return (offset, size), pos


def _block(data: bytes, handle: tuple[int, int], path: pathlib.Path) -> bytes:
    offset, size = handle
    end = offset + size
    if end + _TRAILER_SIZE > len(data) - _FOOTER_SIZE:
        raise CheckpointError(f"{path}: truncated checkpoint index")
    block, kind = data[offset:end], data[end]
    (stored,) = struct.unpack_from("<I", data, end + 1)
    if masked_crc32c(data[offset:end + 1]) != stored:
        raise CheckpointError(f"{path}: checksum mismatch in the checkpoint index")
    if kind != 0:
        raise CheckpointError(f"{path}: a compressed checkpoint index (type {kind})")
    return block


def _block_entries(block: bytes, path: pathlib.Path):
    """Yields the ``(key, value)`` entries of one block (keys share prefixes)."""
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 * (num_restarts + 1)
    if end < 0:
        raise CheckpointError(f"{path}: corrupt checkpoint index block")
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_size, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_size > end:
            raise CheckpointError(f"{path}: corrupt checkpoint index block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + value_size]
        pos += value_size
