"""Writing (and corrupting) the files TF writes, to feed the reader hostile input."""

from __future__ import annotations

import pathlib
import struct

from jaxhub_tf.from_tf.reader import bundle, protos


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def write_index(path: pathlib.Path, entries: dict[bytes, bytes]) -> None:
    """A checkpoint index (sorted table): one data block holding ``entries``."""
    out = bytearray()

    def block(items: list[tuple[bytes, bytes]]) -> bytes:
        start = len(out)
        body = b"".join(varint(0) + varint(len(k)) + varint(len(v)) + k + v
                        for k, v in items) + struct.pack("<II", 0, 1)
        out.extend(body)
        out.extend(b"\0" + struct.pack("<I", bundle.masked_crc32c(body + b"\0")))
        return varint(start) + varint(len(body))

    items = sorted(entries.items())
    data_handle = block(items)
    meta_handle = block([])
    index_handle = block([(items[-1][0], data_handle)])
    footer = meta_handle + index_handle
    out.extend(footer + b"\0" * (40 - len(footer)) + struct.pack("<Q", 0xDB4775248B80FB57))
    path.write_bytes(bytes(out))


def header() -> bytes:
    return protos.BundleHeaderProto(num_shards=1).SerializeToString()
