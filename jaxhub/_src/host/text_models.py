"""The models tensorflow_text's fast ops carry in a constant: flatbuffers over a trie.

``text.FastWordpieceTokenizer`` and ``text.FastBertNormalizer`` compile their
vocabulary and normalisation table into a flatbuffer (a ``uint8`` constant of the
graph) holding a darts-clone double-array trie. This module reads the fields the host
ops need, without the flatbuffers package: a table is a vtable of field offsets, a
vector a length then its items.

* ``FastWordpieceTokenizerConfig``: the trie of the vocabulary (a value per token: its
  id, byte length and whether it is a suffix piece; suffix pieces hang below the node
  ``trie_suffix_root``), the suffix indicator, the unknown token and its id, the longest
  word, whether it also splits words itself (``end_to_end``), and the vocabulary as
  strings when built for detokenization.
* ``FastBertNormalizerModel``: a trie from a character's UTF-8 bytes to its normalised
  form in a string pool (a value with bit 30 set: the form differs; low 6 bits: its
  length; bits 6-29: its offset).
"""

from __future__ import annotations

import dataclasses
import struct
import weakref
from typing import Any, Callable, TypeVar

import numpy as np

_Model = TypeVar("_Model")


class _Table:
    """A flatbuffer table: fields by index (their vtable slot)."""

    def __init__(self, buf: bytes, what: str):
        self.buf, self.what = buf, what
        try:
            self.pos = struct.unpack_from("<I", buf, 0)[0]
            vtable = self.pos - struct.unpack_from("<i", buf, self.pos)[0]
            size = struct.unpack_from("<H", buf, vtable)[0]
            self.slots = struct.unpack_from(f"<{(size - 4) // 2}H", buf, vtable + 4)
        except struct.error:
            self._bad("too short for a flatbuffer")

    def _bad(self, problem: str):
        raise ValueError(f"the {self.what} constant is not a valid model: {problem}")

    def _at(self, field: int) -> int | None:
        offset = self.slots[field] if field < len(self.slots) else 0
        return self.pos + offset if offset else None

    def scalar(self, field: int, fmt: str, default: Any) -> Any:
        at = self._at(field)
        return default if at is None else struct.unpack_from("<" + fmt, self.buf, at)[0]

    def vector(self, field: int, dtype: str) -> np.ndarray:
        at = self._at(field)
        if at is None:
            return np.zeros(0, dtype)
        start = at + struct.unpack_from("<I", self.buf, at)[0]
        count = struct.unpack_from("<I", self.buf, start)[0]
        if start + 4 + count * np.dtype(dtype).itemsize > len(self.buf):
            self._bad(f"field {field} runs past the end")
        return np.frombuffer(self.buf, dtype, count, start + 4)

    def string(self, field: int) -> bytes:
        return self.vector(field, "u1").tobytes()

    def strings(self, field: int) -> list[bytes]:
        """A vector of strings (each item an offset to a length-prefixed string)."""
        at = self._at(field)
        if at is None:
            return []
        start = at + struct.unpack_from("<I", self.buf, at)[0]
        count = struct.unpack_from("<I", self.buf, start)[0]
        out = []
        for i in range(count):
            item = start + 4 + 4 * i
            pos = item + struct.unpack_from("<I", self.buf, item)[0]
            length = struct.unpack_from("<I", self.buf, pos)[0]
            out.append(self.buf[pos + 4:pos + 4 + length])
        return out


class DartsTrie:
    """A darts-clone double-array trie: exact lookups of byte strings.

    Args:
      units: the trie array (``uint32``).
    """

    def __init__(self, units: np.ndarray):
        self.units = units.tolist()  # Python ints: faster to index one at a time

    @staticmethod
    def _offset(unit: int) -> int:
        return (unit >> 10) << ((unit & 0x200) >> 6)

    def walk(self, key: bytes, node: int = 0) -> int | None:
        """The node reached from ``node`` along ``key``, or None."""
        units, size = self.units, len(self.units)
        if node >= size:
            return None
        unit = units[node]
        for byte in key:
            node ^= self._offset(unit) ^ byte
            if node >= size:
                return None
            unit = units[node]
            if unit & 0x800000FF != byte:
                return None
        return node

    def value(self, node: int | None) -> int | None:
        """The value stored at ``node`` (the end of a key), or None."""
        if node is None or node >= len(self.units):
            return None
        unit = self.units[node]
        if not unit & 0x100:
            return None
        leaf = node ^ self._offset(unit)
        return self.units[leaf] & 0x7FFFFFFF if leaf < len(self.units) else None


@dataclasses.dataclass
class FastWordpieceModel:
    """The fields of ``FastWordpieceTokenizerConfig`` that tokenizing needs."""

    trie: DartsTrie
    suffix_root: int
    max_bytes_per_token: int
    suffix_indicator: bytes
    unk_token: bytes
    unk_token_id: int
    end_to_end: bool
    vocab: list[bytes]
    vocab_is_suffix: list[bool]
    #: The host op's tokenizer over this model, made on first use.
    tokenizer: Any = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, buf: bytes) -> "FastWordpieceModel":
        table = _Table(buf, "FastWordpieceTokenizer")
        return cls(DartsTrie(table.vector(0, "<u4")), table.scalar(3, "I", 0),
                   table.scalar(4, "i", 0), table.string(5), table.string(6),
                   table.scalar(7, "i", 0), bool(table.scalar(10, "B", 0)),
                   table.strings(12), [bool(b) for b in table.vector(13, "u1")])

    def token_id(self, piece: bytes, suffix: bool) -> int | None:
        """The id of vocabulary token ``piece`` (after the suffix indicator when
        ``suffix``), or None.

        A word that starts with the suffix indicator matches a suffix token whole, as in
        the vocabulary's text. In end-to-end mode the trie also maps punctuation missing
        from the vocabulary to the unknown token's id.
        """
        value = self.trie.value(self.trie.walk(piece, self.suffix_root if suffix else 0))
        return None if value is None else (value & 0x3FFFFF00) >> 8


@dataclasses.dataclass
class FastBertNormalizerModel:
    """``FastBertNormalizerModel``: each character's normalised form, where it differs."""

    trie: DartsTrie
    zero: int
    pool: bytes
    _forms: dict[Any, Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, buf: bytes) -> "FastBertNormalizerModel":
        table = _Table(buf, "FastBertNormalizer")
        return cls(DartsTrie(table.vector(1, "<u4")), table.scalar(2, "i", 0),
                   table.vector(3, "u1").tobytes())

    def normalized(self, char: bytes) -> bytes | None:
        """The normalised form of one character (UTF-8), or None when it is unchanged."""
        if char not in self._forms:
            self._forms[char] = self._lookup(char)
        return self._forms[char]

    def ascii_table(self) -> tuple[bytes, bytes] | None:
        """``bytes.translate`` arguments that normalise ASCII text (a table and the bytes
        to delete), or None when an ASCII character becomes several."""
        if "ascii" not in self._forms:
            table, delete = bytearray(range(256)), bytearray()
            for code in range(128):
                form = self.normalized(bytes([code]))
                if form is None:
                    continue
                if len(form) > 1:
                    self._forms["ascii"] = None
                    return None
                if form:
                    table[code] = form[0]
                else:
                    delete.append(code)
            self._forms["ascii"] = (bytes(table), bytes(delete))
        return self._forms["ascii"]

    def _lookup(self, char: bytes) -> bytes | None:
        data = self.zero if char == b"\0" else self.trie.value(self.trie.walk(char)) or 0
        if not data & 0x40000000:
            return None
        offset = (data & 0x3FFFFFC0) >> 6
        return self.pool[offset:offset + (data & 0x3F)]


_PARSED: dict[int, tuple[Any, Any]] = {}


def parsed(array: np.ndarray, parse: Callable[[bytes], _Model]) -> _Model:
    """The model in the constant ``array``, parsed once per array (a stage's constants
    live as long as the stage; the cache holds them weakly)."""
    key = id(array)
    entry = _PARSED.get(key)
    if entry is not None and entry[0]() is array:
        return entry[1]
    model = parse(np.asarray(array, np.uint8).tobytes())
    try:
        ref = weakref.ref(array)
    except TypeError:  # not a weak-referenceable array: parse on every call
        return model
    _PARSED[key] = (ref, model)
    weakref.finalize(array, _PARSED.pop, key, None)
    return model
