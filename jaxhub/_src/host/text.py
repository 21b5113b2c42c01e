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
import re
import unicodedata
import weakref
from typing import Any, Callable, Sequence

import numpy as np
import re2

from jaxhub._src.host import text_models
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


def regex_split(text: bytes, delim, keep: Callable[[bytes], bool] | None
                ) -> tuple[list[bytes], list[int], list[int]]:
    """``text`` split where ``delim`` matches, as tensorflow_text's ``RegexSplit``.

    RE2's ``FindAndConsume`` loop: the delimiter is the pattern's first group; the text
    between delimiters is a token when not empty, and a delimiter that ``keep`` accepts
    is a token too. Offsets are bytes; a NUL byte ends the text.

    Args:
      text: UTF-8 bytes.
      delim: the compiled delimiter pattern (with a group).
      keep: whether to keep a delimiter (the keep pattern matches it in full), or None.

    Returns:
      ``(tokens, begin offsets, end offsets)``.
    """
    tokens, begins, ends = [], [], []
    # TF's kernel reads the text up to its first NUL byte (a C string): so does this.
    text = text.split(b"\0", 1)[0]
    pos = last_end = 0
    search, size, has_group = _span_search(delim), len(text), delim.groups > 0
    # RE2's FindAndConsume needs the group it fills: without one, nothing matches.
    while has_group and pos <= size:
        spans = search(text, pos, size)
        if spans is None:
            break
        (_, whole_end), (start, end) = spans
        if start > last_end:
            tokens.append(text[last_end:start])
            begins.append(last_end)
            ends.append(start)
        if keep is not None and start >= 0 and keep(text[start:end]):
            tokens.append(text[start:end])
            begins.append(start)
            ends.append(end)
        if whole_end == pos:  # an empty match consumes nothing: TF's loop would not end
            break
        pos = last_end = whole_end
    if last_end < size:
        tokens.append(text[last_end:])
        begins.append(last_end)
        ends.append(size)
    return tokens, begins, ends


def _span_search(delim) -> Callable[[bytes, int, int], tuple | None]:
    """``search(text, pos, end) -> (whole match span, group 1 span) or None``.

    The RE2 binding's ``Match`` of its compiled ``RE2`` object returns the spans at once;
    its ``search`` wraps each match in a generator and a ``Match`` object, which was half
    of a BERT preprocessor's host time (one search per word). The public ``search`` is
    the fallback where the binding differs.
    """
    regexp = getattr(delim, "_regexp", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if regexp is None or anchor is None or not hasattr(regexp, "Match"):
        def search(text: bytes, pos: int, end: int) -> tuple | None:
            match = delim.search(text, pos, end)
            return None if match is None else (match.span(), match.span(1))
        return search
    match = regexp.Match

    def search(text: bytes, pos: int, end: int) -> tuple | None:
        spans = match(anchor, text, pos, end)
        return None if spans[0] == (-1, -1) else spans[:2]
    return search


def _keeper(pattern: bytes) -> Callable[[bytes], bool] | None:
    """Whether ``pattern`` matches a delimiter in full (the delimiter alone is the text,
    as in TF), remembered per delimiter: they repeat."""
    if not pattern:
        return None
    compiled, known = _compile(pattern), {}

    def keep(delimiter: bytes) -> bool:
        if delimiter not in known:
            known[delimiter] = compiled.fullmatch(delimiter) is not None
        return known[delimiter]
    return keep


def _scalar_bytes(x) -> bytes:
    return bytes(np.asarray(x, dtype=object).reshape(-1)[0])


@register("RegexSplitWithOffsets")
def _regex_split_with_offsets(node, x, delim_pattern, keep_pattern):
    delim = _compile(_scalar_bytes(delim_pattern))
    keep = _keeper(_scalar_bytes(keep_pattern))
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
      lookup: ``lookup(piece, is_suffix)``: the id of a piece (bytes, without the suffix
        indicator), or None when the vocabulary lacks it.
      suffix_indicator: prepended to pieces that do not start a word (``"##"``).
      max_bytes_per_word: longer words are one unknown piece.
      max_chars_per_token: the longest piece tried, in characters (0: no limit).
      unknown_token: the piece of a word that cannot be split; None keeps the word.
      unknown_id: the id of ``unknown_token``.
      split_unknown_characters: an unknown character is a piece of its own instead of
        making the whole word unknown.
    """

    def __init__(self, lookup: Callable[[bytes, bool], int | None], suffix_indicator: bytes,
                 max_bytes_per_word: int, max_chars_per_token: int = 0,
                 unknown_token: bytes | None = b"[UNK]", unknown_id: int = -1,
                 split_unknown_characters: bool = False):
        self.lookup = lookup
        self.suffix = suffix_indicator
        self.max_bytes = max_bytes_per_word
        self.max_chars = max_chars_per_token
        self.unknown, self.unknown_id = unknown_token, unknown_id
        self.split_unknown = split_unknown_characters
        self._known: dict[bytes, tuple[Piece, ...]] = {}

    def tokenize(self, word: bytes) -> tuple[Piece, ...]:
        """The pieces of ``word``: ``(piece, id, begin byte, end byte)`` each."""
        pieces = self._known.get(word)
        if pieces is None:  # words repeat: each is split once (up to a bound on memory)
            if len(self._known) >= _KNOWN_WORDS:
                self._known.clear()
            pieces = self._known[word] = self._split(word)
        return pieces

    def _unknown_word(self, word: bytes, end: int) -> tuple[Piece, ...]:
        if self.unknown is None:
            return ((word, self.unknown_id, 0, len(word)),)
        return ((self.unknown, self.unknown_id, 0, end),)

    def _split(self, word: bytes) -> tuple[Piece, ...]:
        if len(word) > self.max_bytes:
            # TF's kernel ends the unknown piece at the length of the unknown token.
            return self._unknown_word(word, len(self.unknown or b""))
        ends = list(range(1, len(word) + 1)) if word.isascii() else \
            _char_ends(decode(word))
        pieces, start, i = [], 0, 0  # ends[i] is the end of the first character from start
        while start < len(word):
            last = min(len(ends), i + self.max_chars) if self.max_chars > 0 else len(ends)
            for j in range(last - 1, i - 1, -1):
                token_id = self.lookup(word[start:ends[j]], start > 0)
                if token_id is not None:
                    piece = word[start:ends[j]]
                    break
            else:
                if not self.split_unknown:
                    return self._unknown_word(word, len(word))
                j, token_id = i, self.unknown_id  # one unknown character
                piece = self.unknown if self.unknown is not None else word[start:ends[i]]
            pieces.append((piece if start == 0 else self.suffix + piece, token_id, start,
                           ends[j]))
            start, i = ends[j], j + 1
        return tuple(pieces)


#: How many words a tokenizer remembers the pieces of.
_KNOWN_WORDS = 1 << 17

#: Tokenizers by the table they read, then their settings: kept while the table lives,
#: so that the words they know carry over from call to call.
_TOKENIZERS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _tokenizer(table: Any, settings: tuple, make: Callable[[], WordPiece]) -> WordPiece:
    """The tokenizer of ``table`` with ``settings``; ``make`` must not hold ``table``."""
    known = _TOKENIZERS.setdefault(table, {})
    if settings not in known:
        known[settings] = make()
    return known[settings]


#: A word piece: its text (with the suffix indicator inside a word), id, byte span.
Piece = tuple[bytes, int, int, int]


@register("WordpieceTokenizeWithOffsets",
          attrs={"suffix_indicator": None, "max_bytes_per_word": None,
                 "max_chars_per_token": None, "use_unknown_token": None,
                 "unknown_token": None, "split_unknown_characters": None,
                 "output_row_partition_type": ("row_lengths", "row_splits")})
def _wordpiece(node, words, table):
    attrs = node.attrs
    vocab = table.data
    suffix = attrs.get("suffix_indicator", "##").encode("utf-8")

    def lookup(piece: bytes, is_suffix: bool) -> int | None:
        # TF's lookup default is -1: a key mapped to -1 counts as missing, as there.
        found = vocab.get(suffix + piece if is_suffix else piece, -1)
        return None if found == -1 else int(found)

    settings = (suffix, int(attrs.get("max_bytes_per_word", 100)),
                int(attrs.get("max_chars_per_token", 0)),
                attrs.get("unknown_token", "[UNK]").encode("utf-8")
                if attrs.get("use_unknown_token", True) else None,
                bool(attrs.get("split_unknown_characters", False)))
    tokenizer = _tokenizer(table, settings, lambda: WordPiece(
        lookup, *settings[:4], split_unknown_characters=settings[4]))
    pieces = [tokenizer.tokenize(w) for w in _strings(words).reshape(-1)]
    flat = [p for row in pieces for p in row]
    check_elements(node, len(flat))
    lengths = np.fromiter(map(len, pieces), np.int64, len(pieces))
    partition = lengths if attrs.get("output_row_partition_type", "row_lengths") == \
        "row_lengths" else splits_from_lengths(lengths)
    return (_ragged_strings([[p[0] for p in flat]]), partition,
            np.asarray([p[2] for p in flat], np.int64),
            np.asarray([p[3] for p in flat], np.int64))


#: Unicode's White_Space characters (ICU's ``u_isUWhiteSpace``).
_WHITE_SPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
                         "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f"
                         "\u205f\u3000")


#: ASCII text's words for :func:`bert_words`: a punctuation character, or a run of
#: neither punctuation nor white space.
_ASCII_WORDS = re.compile(rb"[!-/:-@\[-`{-~]|[^\t\n\x0b\x0c\r !-/:-@\[-`{-~]+")


def bert_words(text: bytes) -> list[tuple[int, int]]:
    """The byte spans of ``text``'s words: split at white space, each punctuation
    character a word (the end-to-end mode of the fast WordPiece tokenizer)."""
    if text.isascii():
        return [m.span() for m in _ASCII_WORDS.finditer(text)]
    decode(text)
    return [m.span() for m in _UNICODE_WORDS.finditer(text)]


#: Unicode text's words for :func:`bert_words`: BERT's punctuation (ASCII symbols, RE2's
#: ``\pP``, CJK ideographs) and the code points of :data:`_WHITE_SPACE` (RE2's ``\s`` is
#: ASCII only).
_PUNCTUATION = ("!-/:-@\\[-`{-~\\pP\\x{4E00}-\\x{9FFF}\\x{3400}-\\x{4DBF}\\x{20000}-\\x{2A6DF}"
                "\\x{2A700}-\\x{2B73F}\\x{2B740}-\\x{2B81F}\\x{2B820}-\\x{2CEAF}"
                "\\x{F900}-\\x{FAFF}\\x{2F800}-\\x{2FA1F}")
_SPACE = "".join(f"\\x{{{ord(c):X}}}" for c in sorted(_WHITE_SPACE))
_UNICODE_WORDS = re2.compile(f"[{_PUNCTUATION}]|[^{_PUNCTUATION}{_SPACE}]+".encode())


@register("FastWordpieceTokenizeWithOffsets")
def _fast_wordpiece(node, strings, model):
    wp = text_models.parsed(model, text_models.FastWordpieceModel.parse)
    if wp.tokenizer is None:  # kept with the parsed model: the words it knows carry over
        wp.tokenizer = WordPiece(wp.token_id, wp.suffix_indicator, wp.max_bytes_per_token,
                                 unknown_token=wp.unk_token, unknown_id=wp.unk_token_id)
    tokenizer = wp.tokenizer
    rows = []
    for s in _strings(strings).reshape(-1):
        spans = bert_words(s) if wp.end_to_end else ([(0, len(s))] if s else [])
        rows.append([(wp.unk_token if token_id == wp.unk_token_id else piece, token_id,
                      start + b, start + e)
                     for start, end in spans
                     for piece, token_id, b, e in _fast_pieces(tokenizer, s[start:end])])
    flat = [p for row in rows for p in row]
    check_elements(node, len(flat))
    return (_ragged_strings([[p[0] for p in flat]]),
            np.asarray([p[1] for p in flat], np.int64),
            splits_from_lengths(np.fromiter(map(len, rows), np.int64, len(rows))),
            np.asarray([p[2] for p in flat], np.int64),
            np.asarray([p[3] for p in flat], np.int64))


@register("TFText>FastWordpieceDetokenize")
def _fast_wordpiece_detokenize(node, ids, row_splits, model):
    wp = text_models.parsed(model, text_models.FastWordpieceModel.parse)
    if not wp.vocab:
        raise ValueError("the FastWordpieceTokenizer model was built without "
                         "support_detokenization: it holds no vocabulary to detokenize")
    ids, row_splits = np.asarray(ids).reshape(-1), np.asarray(row_splits).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= len(wp.vocab)):
        raise ValueError(f"token id {int(ids.max() if ids.max() >= len(wp.vocab) else ids.min())}"
                         f" is outside the vocabulary of {len(wp.vocab)} tokens")
    out = np.empty(max(len(row_splits) - 1, 0), dtype=object)
    for row in range(len(out)):
        words: list[bytes] = []
        for token_id in ids[row_splits[row]:row_splits[row + 1]].tolist():
            token = wp.vocab[token_id]
            if not wp.vocab_is_suffix[token_id]:
                words.append(token)
            elif words:  # a suffix piece continues the word before it
                words[-1] += token
            else:  # a row that starts with one shows its suffix indicator
                words.append(wp.suffix_indicator + token)
        out[row] = b" ".join(words)
    return out


def _fast_pieces(tokenizer: WordPiece, word: bytes) -> tuple[Piece, ...]:
    pieces = tokenizer.tokenize(word)
    if len(word) > tokenizer.max_bytes:  # the fast kernel spans the whole word
        return ((tokenizer.unknown, tokenizer.unknown_id, 0, len(word)),)
    return pieces


@register("FastBertNormalize", attrs=("get_offsets",))
def _fast_bert_normalize(node, strings, model):
    normalizer = text_models.parsed(model, text_models.FastBertNormalizerModel.parse)
    with_offsets = bool(node.attrs.get("get_offsets", False))
    out, offsets, splits = [], [], [0]
    for s in _strings(strings).reshape(-1):
        text, mapping = _fast_normalize(normalizer, s, with_offsets)
        out.append(text)
        if with_offsets:
            offsets += mapping
            splits.append(len(offsets))
    if not with_offsets:
        splits = [0] * (len(out) + 1)
    values = np.empty(len(out), dtype=object)
    values[:] = out
    return values, np.asarray(offsets, np.int64), np.asarray(splits, np.int64)


_ASCII_RUNS = re.compile(r"[\x00-\x7f]+|.", re.DOTALL)


def _fast_normalize(normalizer, text: bytes, with_offsets: bool = True
                    ) -> tuple[bytes, list[int]]:
    """``text`` normalised character by character, and where each output byte (and the
    end) comes from in ``text`` (when ``with_offsets``)."""
    table = normalizer.ascii_table()
    if not with_offsets and table is not None:
        if text.isascii():
            return text.translate(*table), []
        out = bytearray()
        for run in _ASCII_RUNS.findall(decode(text)):  # ASCII runs at once, others alone
            if run.isascii():
                out += run.encode("ascii").translate(*table)
            else:
                raw = run.encode("utf-8")
                form = normalizer.normalized(raw)
                out += raw if form is None else form
        return bytes(out), []
    out, mapping, pos = bytearray(), [], 0
    for char in decode(text):
        raw = char.encode("utf-8")
        form = normalizer.normalized(raw)
        if form is None:
            out += raw
            mapping.extend(range(pos, pos + len(raw)))
        else:  # every byte of a changed character maps to the character's start
            out += form
            mapping.extend([pos] * len(form))
        pos += len(raw)
    mapping.append(pos)
    return bytes(out), mapping


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


@register("TFText>RoundRobinTrim", attrs=("N", "T", "Tsplits"))
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


# -- white space -----------------------------------------------------------------------------


def _whitespace_bitmap(config: bytes) -> Callable[[str], bool]:
    """Whether a character is white space, by the tokenizer's bitmap (a bit per code point,
    low bit first; code points past its end are not white space)."""
    def is_space(char: str) -> bool:
        cp = ord(char)
        return cp >> 3 < len(config) and bool(config[cp >> 3] >> (cp & 7) & 1)
    return is_space


def split_on(text: bytes, is_space: Callable[[str], bool]) -> list[tuple[int, int]]:
    """The byte spans of the runs of ``text`` without white space.

    As tensorflow_text's ``WhitespaceTokenizer``, a token that a multi-byte white space
    character ends takes all of that character's bytes but the last (``"a\xa0b"`` gives
    ``b"a\xc2"``).
    """
    spans, start, pos = [], None, 0
    for char in decode(text):
        width = len(char.encode("utf-8"))
        if is_space(char):
            if start is not None:
                spans.append((start, pos + width - 1))
                start = None
        elif start is None:
            start = pos
        pos += width
    if start is not None:
        spans.append((start, pos))
    return spans


@register("TFText>WhitespaceTokenizeWithOffsetsV2")
def _whitespace_tokenize(node, strings, config):
    is_space = functools.lru_cache(maxsize=4096)(_whitespace_bitmap(_scalar_bytes(config)))
    rows, begins, ends = [], [], []
    for s in _strings(strings).reshape(-1):
        spans = split_on(s, is_space)
        rows.append([s[b:e] for b, e in spans])
        begins += [b for b, _ in spans]
        ends += [e for _, e in spans]
    check_elements(node, len(begins))
    return (_ragged_strings(rows),
            splits_from_lengths(np.fromiter(map(len, rows), np.int64, len(rows))),
            np.asarray(begins, np.int64), np.asarray(ends, np.int64))
