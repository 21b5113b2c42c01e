"""tensorflow_text's ops in host stages: normalisation, splitting, WordPiece, trimming.

The ops of ``text.BertTokenizer``, ``text.FastBertTokenizer``, ``text.RegexSplitter``,
``text.WhitespaceTokenizer``, ``text.RoundRobinTrimmer`` and ``text.WaterfallTrimmer``,
with tensorflow_text's results: the same tokens, ids and byte offsets. They follow the
kernels' documented semantics (the greedy longest-match-first WordPiece of
``wordpiece_tokenizer.cc``, RE2's ``FindAndConsume`` loop of ``regex_split.cc``, the
trimmers' allocation), written on numpy, RE2 and :mod:`unicodedata`: a module that uses
them runs without TensorFlow or tensorflow_text.

Text is UTF-8. A string that is not (a byte sequence no character starts) is refused
with its position; TF's kernels would carry it on or replace it, differently per op.
Unicode data is Python's (:data:`unicodedata.unidata_version`); TF's ICU may be of
another Unicode version, which matters only for characters assigned in between.

The fast ops (``FastWordpieceTokenizeWithOffsets``, ``FastBertNormalize``) carry their
vocabulary and normaliser as a flatbuffer model in a constant:
:mod:`jaxhub._src.host.text_models` reads those.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import re2

from jaxhub._src.host.limits import check_elements
from jaxhub._src.host.ops import _compile, _strings, register
from jaxhub._src.host.ragged import splits_from_lengths

_FORMS = ("NFC", "NFD", "NFKC", "NFKD")


def decode(text: bytes) -> str:
    """``text`` as a str.

    Raises:
      ValueError: ``text`` is not UTF-8 (the message gives the byte offset).
    """
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"the string {text[:40]!r}{'...' if len(text) > 40 else ''} is "
                         f"not UTF-8 (byte {e.start}: {text[e.start:e.start + 1]!r}); "
                         f"text ops take UTF-8 text") from None


def _map_text(x: Any, fn: Callable[[str], str]) -> np.ndarray:
    """``fn`` over every string of ``x`` (bytes in, bytes out, UTF-8)."""
    arr = _strings(x)
    out = np.empty(arr.shape, dtype=object)
    flat = out.reshape(-1)
    for i, s in enumerate(arr.reshape(-1)):
        flat[i] = fn(decode(s)).encode("utf-8")
    return out


def _ragged_strings(rows: Sequence[Sequence[bytes]]) -> np.ndarray:
    values = np.empty(sum(map(len, rows)), dtype=object)
    values[:] = [t for row in rows for t in row]
    return values


# -- normalisation -------------------------------------------------------------------------


#: Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt), which
#: NFKC_Casefold deletes.
_DEFAULT_IGNORABLE = re2.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")


def nfkc_casefold(text: str) -> str:
    """ICU's NFKC_Casefold: compatibility forms, full case folding, default ignorables
    deleted ("ß" -> "ss", "ﬁ" -> "fi", "Ⅻ" -> "xii", U+200B -> "", U+00A0 -> " ").

    Built from Unicode's closure of the two (``NFKC(casefold(NFKD(casefold(NFD(x)))))``,
    its definition of a compatibility caseless match), with the ignorables removed.
    """
    if text.isascii():
        return text.lower()  # the same, and the common case
    text = _DEFAULT_IGNORABLE.sub("", text)
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFD", text).casefold())
    return unicodedata.normalize("NFKC", folded.casefold())


@register("CaseFoldUTF8")
def _case_fold(node, x):
    # tensorflow_text folds with ICU's NFKC_Casefold normaliser, not plain case folding.
    return _map_text(x, nfkc_casefold)


@register("NormalizeUTF8", attrs={"normalization_form": _FORMS})
def _normalize(node, x):
    form = node.attrs["normalization_form"]
    return _map_text(x, functools.partial(unicodedata.normalize, form))


# -- splitting -----------------------------------------------------------------------------


def regex_split(text: bytes, delim, keep) -> tuple[list[bytes], list[int], list[int]]:
    """``text`` split where ``delim`` matches, as tensorflow_text's ``RegexSplit``.

    RE2's ``FindAndConsume`` loop: the delimiter is the pattern's first group; the text
    between delimiters is a token when not empty, and a delimiter that ``keep`` matches
    in full is a token too. Offsets are bytes.

    Args:
      text: UTF-8 bytes.
      delim: the compiled delimiter pattern (with a group).
      keep: the compiled pattern of delimiters to keep, or None.

    Returns:
      ``(tokens, begin offsets, end offsets)``.
    """
    tokens, begins, ends = [], [], []

    def add(start: int, end: int) -> None:
        tokens.append(text[start:end])
        begins.append(start)
        ends.append(end)

    pos = last_end = 0
    while delim.groups and pos <= len(text):
        match = delim.search(text, pos)
        if match is None:
            break
        start, end = match.span(1)
        if start > last_end:
            add(last_end, start)
        # The delimiter alone is the text the keep pattern must match in full.
        if keep is not None and start >= 0 and keep.fullmatch(text[start:end]):
            add(start, end)
        if match.end() == pos:  # an empty match consumes nothing: TF's loop would not end
            break
        pos = last_end = match.end()
    if last_end < len(text):
        add(last_end, len(text))
    return tokens, begins, ends


def _scalar_bytes(x) -> bytes:
    return bytes(np.asarray(x, dtype=object).reshape(-1)[0])


@register("RegexSplitWithOffsets")
def _regex_split_with_offsets(node, x, delim_pattern, keep_pattern):
    delim = _compile(_scalar_bytes(delim_pattern))
    keep_text = _scalar_bytes(keep_pattern)
    keep = _compile(keep_text) if keep_text else None
    rows, begins, ends = [], [], []
    for s in _strings(x).reshape(-1):
        decode(s)
        tokens, b, e = regex_split(s, delim, keep)
        rows.append(tokens)
        begins += b
        ends += e
    check_elements(node, len(begins))
    return (_ragged_strings(rows), np.asarray(begins, np.int64), np.asarray(ends, np.int64),
            splits_from_lengths(np.fromiter(map(len, rows), np.int64, len(rows))))


# -- WordPiece -----------------------------------------------------------------------------


def _char_ends(word: str) -> list[int]:
    """The byte offset after each character of ``word`` (UTF-8)."""
    ends, total = [], 0
    for ch in word:
        total += len(ch.encode("utf-8"))
        ends.append(total)
    return ends


class WordPiece:
    """Greedy longest-match-first WordPiece, as tensorflow_text's ``WordpieceTokenize``.

    Args:
      contains: whether a piece (bytes, with the suffix indicator inside a word) is in the
        vocabulary.
      suffix_indicator: prepended to pieces that do not start a word (``"##"``).
      max_bytes_per_word: longer words are one unknown piece.
      max_chars_per_token: the longest piece tried, in characters (0: no limit).
      unknown_token: the piece of a word that cannot be split; None keeps the word.
      split_unknown_characters: an unknown character is a piece of its own instead of
        making the whole word unknown.
    """

    def __init__(self, contains: Callable[[bytes], bool], suffix_indicator: bytes,
                 max_bytes_per_word: int, max_chars_per_token: int = 0,
                 unknown_token: bytes | None = b"[UNK]",
                 split_unknown_characters: bool = False):
        self.contains = contains
        self.suffix = suffix_indicator
        self.max_bytes = max_bytes_per_word
        self.max_chars = max_chars_per_token
        self.unknown = unknown_token
        self.split_unknown = split_unknown_characters
        self._known: dict[bytes, tuple[tuple[bytes, int, int], ...]] = {}

    def tokenize(self, word: bytes) -> tuple[tuple[bytes, int, int], ...]:
        """The pieces of ``word``, each ``(piece, begin byte, end byte)``."""
        if word not in self._known:  # words repeat: each is split once
            self._known[word] = self._split(word)
        return self._known[word]

    def _split(self, word: bytes) -> tuple[tuple[bytes, int, int], ...]:
        if len(word) > self.max_bytes:
            # TF's kernel ends the unknown piece at the length of the unknown token.
            if self.unknown is not None:
                return ((self.unknown, 0, len(self.unknown)),)
            return ((word, 0, len(word)),)
        ends = _char_ends(decode(word))
        pieces, start, i = [], 0, 0  # ends[i] is the end of the first character from start
        while start < len(word):
            last = min(len(ends), i + self.max_chars) if self.max_chars > 0 else len(ends)
            for j in range(last - 1, i - 1, -1):
                piece = word[start:ends[j]]
                if self.contains(piece if start == 0 else self.suffix + piece):
                    break
            else:
                if not self.split_unknown:
                    return ((self.unknown if self.unknown is not None else word, 0,
                             len(word)),)
                j = i  # one unknown character
                piece = self.unknown if self.unknown is not None else word[start:ends[i]]
            pieces.append((piece if start == 0 else self.suffix + piece, start, ends[j]))
            start, i = ends[j], j + 1
        return tuple(pieces)

    def run(self, words: Iterable[bytes]) -> tuple[list[list[bytes]], list[int], list[int]]:
        """The pieces of each word, and their begin and end offsets (flat)."""
        rows, begins, ends = [], [], []
        for word in words:
            pieces = self.tokenize(word)
            rows.append([p for p, _, _ in pieces])
            begins += [b for _, b, _ in pieces]
            ends += [e for _, _, e in pieces]
        return rows, begins, ends


@register("WordpieceTokenizeWithOffsets",
          attrs={"suffix_indicator": None, "max_bytes_per_word": None,
                 "max_chars_per_token": None, "use_unknown_token": None,
                 "unknown_token": None, "split_unknown_characters": None,
                 "output_row_partition_type": ("row_lengths", "row_splits")})
def _wordpiece(node, words, table):
    attrs = node.attrs
    vocab = table.data

    def contains(piece: bytes) -> bool:
        # TF's lookup default is -1: a key mapped to -1 counts as missing, as there.
        return vocab.get(piece, -1) != -1

    tokenizer = WordPiece(
        contains, attrs.get("suffix_indicator", "##").encode("utf-8"),
        int(attrs.get("max_bytes_per_word", 100)), int(attrs.get("max_chars_per_token", 0)),
        attrs.get("unknown_token", "[UNK]").encode("utf-8")
        if attrs.get("use_unknown_token", True) else None,
        bool(attrs.get("split_unknown_characters", False)))
    rows, begins, ends = tokenizer.run(_strings(words).reshape(-1))
    check_elements(node, len(begins))
    lengths = np.fromiter(map(len, rows), np.int64, len(rows))
    partition = lengths if attrs.get("output_row_partition_type", "row_lengths") == \
        "row_lengths" else splits_from_lengths(lengths)
    return (_ragged_strings(rows), partition, np.asarray(begins, np.int64),
            np.asarray(ends, np.int64))


# -- trimming ------------------------------------------------------------------------------


def round_robin_budget(sizes: Sequence[int], budget: int) -> list[int]:
    """How many items of each segment a round-robin trimmer keeps, as tensorflow_text.

    Segments that fit are kept whole, smallest first, while every segment left could
    still get as many; the rest get an even share, and what remains goes one each to
    the segments still short, in order.
    """
    used = [0] * len(sizes)
    left = max(budget, 0)
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    filled = 0
    for i in order:
        if sizes[i] * (len(sizes) - filled) > left:
            break
        used[i] = sizes[i]
        left -= sizes[i]
        filled += 1
    if filled < len(sizes):
        share = left // (len(sizes) - filled)
        for i in order[filled:]:
            used[i] = share
            left -= share
    for i in range(len(sizes)):
        if left <= 0:
            break
        if used[i] < sizes[i]:
            used[i] += 1
            left -= 1
    return used


@register("TFText>RoundRobinTrim")
def _round_robin_trim(node, max_length, *args):
    n = len(args) // 2
    values = [np.asarray(v) for v in args[:n]]
    splits = [np.asarray(s) for s in args[n:]]
    budget = int(np.asarray(max_length))
    kept: list[list[np.ndarray]] = [[] for _ in range(n)]
    lengths = np.zeros((n, len(splits[0]) - 1), np.int64)
    for row in range(len(splits[0]) - 1):
        sizes = [int(s[row + 1] - s[row]) for s in splits]
        for k, used in enumerate(round_robin_budget(sizes, budget)):
            start = int(splits[k][row])
            kept[k].append(values[k][start:start + used])
            lengths[k, row] = used
    out_values = [np.concatenate(parts) if parts else values[k][:0]
                  for k, parts in enumerate(kept)]
    out_splits = [splits_from_lengths(lengths[k], splits[k].dtype) for k in range(n)]
    return (*out_values, *out_splits)
