"""The host stage's tensorflow_text ops give what tensorflow_text's kernels give."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as text
from tensorflow_text.python.ops.fast_bert_normalizer import gen_fast_bert_normalizer
from tensorflow_text.python.ops.fast_wordpiece_tokenizer import \
    gen_fast_wordpiece_tokenizer

from jaxhub._src.host import ops as host_ops
from jaxhub._src.host import text as host_text
from jaxhub._src.host.program import HostNode
from tests.converters.from_tf.text.preprocessors import SECOND, TEXTS

#: The test texts, and the cases of each op: suffix indicators, long words, a lone
#: combining mark, full-width forms, ligatures, Hangul, zero-width joiners.
STRINGS = TEXTS + SECOND + [
    "##s ## #x", "a" * 120, "abc" * 40, "\x00\x01 x\x7f", "hello," * 3, "\u0301alone",
    "ＦＵＬＬ　ｗｉｄｔｈ", "ﬀ ﬃ ǅ ẞ İ", "한국어 텍스트", "👩\u200d👩\u200d👧 ok", "  lead and trail  "]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "the", "quick", "fox", "un",
         "##believ", "##able", "##s", "a", "##a", "abc", "##abc", "##b", "##c", ",", "!",
         "中", "文", "ok", "x", "##x", "t", "##e", "##x", "##t", "caf", "##e", "🙂"]
VOCAB = list(dict.fromkeys(VOCAB))  # each token once


def run(op: str, *inputs, **attrs):
    result = host_ops.lookup(op)(HostNode("n", op, (), attrs), *inputs)
    return result if isinstance(result, tuple) else (result,)


def as_bytes(strings) -> np.ndarray:
    out = np.empty(len(strings), dtype=object)
    out[:] = [s.encode("utf-8") if isinstance(s, str) else s for s in strings]
    return out


def assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        b = np.asarray(b)
        assert np.asarray(a).shape == b.shape, f"result {i}: {np.shape(a)} vs {b.shape}"
        assert np.asarray(a).tolist() == b.tolist(), f"result {i} differs"


def ragged_parts(rt) -> list[np.ndarray]:
    return [rt.flat_values.numpy(), *[s.numpy() for s in rt.nested_row_splits]]


def test_case_fold_is_nfkc_casefold_as_tf():
    assert_same(run("CaseFoldUTF8", as_bytes(STRINGS)), [text.case_fold_utf8(STRINGS)])


@pytest.mark.parametrize("form", ["NFC", "NFD", "NFKC", "NFKD"])
def test_normalize_matches_tf(form):
    assert_same(run("NormalizeUTF8", as_bytes(STRINGS), normalization_form=form),
                [text.normalize_utf8(STRINGS, form)])


@pytest.mark.parametrize("delim,keep", [
    (r"\s+", ""), (r"\s+|[[:punct:]]", r"[[:punct:]]"), (r"(\p{Han})|\s", r"\p{Han}"),
    (r"x", "x")])
def test_regex_split_matches_tf(delim, keep):
    tokens, begins, ends = text.regex_split_with_offsets(STRINGS, delim, keep)
    wrapped = [np.asarray(f"({delim})".encode(), object), np.asarray(keep.encode(), object)]
    if keep:  # the Python API wraps the keep pattern too
        wrapped[1] = np.asarray(f"({keep})".encode(), object)
    ours = run("RegexSplitWithOffsets", as_bytes(STRINGS), *wrapped)
    assert_same(ours, [tokens.flat_values, begins.flat_values, ends.flat_values,
                       tokens.row_splits])


class _PublicApiOnly:
    """A compiled pattern offering only the RE2 binding's public API (``search``,
    ``groups``): the path taken where the binding's internals differ."""

    def __init__(self, compiled):
        self.search, self.groups = compiled.search, compiled.groups


@pytest.mark.parametrize("delim,keep", [(r"(\s+|[[:punct:]])", r"[[:punct:]]"),
                                        (r"((\p{Han})|\s)", r"\p{Han}"), (r"(x*)", "")])
def test_regex_split_through_the_public_api_gives_the_same_tokens(delim, keep):
    compiled = host_ops._compile(delim.encode())
    keeper = host_text._keeper(f"({keep})".encode() if keep else b"")
    for string in as_bytes(STRINGS).tolist():
        assert host_text.regex_split(string, _PublicApiOnly(compiled), keeper) == \
            host_text.regex_split(string, compiled, keeper)


def _table(vocab):
    table = host_ops.Table("string", "int64")
    table.data = {t.encode("utf-8"): i for i, t in enumerate(vocab)}
    return table


WORDS = [w for s in STRINGS for w in text.case_fold_utf8(s).numpy().decode().split()] + \
    ["", "##s", "ababc", "unbelievable", "xyz", "a" * 30]


@pytest.mark.parametrize("options", [
    {}, {"max_bytes_per_word": 8}, {"max_chars_per_token": 2},
    {"split_unknown_characters": True}, {"unknown_token": None},
    {"unknown_token": None, "split_unknown_characters": True},
    {"suffix_indicator": "##", "max_bytes_per_word": 3, "unknown_token": None}])
def test_wordpiece_matches_tf(options):
    init = tf.lookup.KeyValueTensorInitializer(VOCAB, tf.range(len(VOCAB), dtype=tf.int64))
    tokenizer = text.WordpieceTokenizer(tf.lookup.StaticHashTable(init, -1),
                                        token_out_type=tf.string, **options)
    pieces, starts, ends = tokenizer.tokenize_with_offsets(WORDS)
    attrs = {"suffix_indicator": options.get("suffix_indicator", "##"),
             "max_bytes_per_word": options.get("max_bytes_per_word", 100),
             "max_chars_per_token": options.get("max_chars_per_token", 0),
             "use_unknown_token": options.get("unknown_token", "[UNK]") is not None,
             "unknown_token": options.get("unknown_token") or "[UNK]",
             "split_unknown_characters": options.get("split_unknown_characters", False),
             "output_row_partition_type": "row_splits"}
    ours = run("WordpieceTokenizeWithOffsets", as_bytes(WORDS), _table(VOCAB), **attrs)
    assert_same(ours, [pieces.flat_values, pieces.row_splits, starts.flat_values,
                       ends.flat_values])


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("offsets", [True, False])
def test_fast_bert_normalize_matches_tf(lower, offsets):
    model = text.FastBertNormalizer(lower_case_nfd_strip_accents=lower)._model.numpy()
    theirs = gen_fast_bert_normalizer.fast_bert_normalize(
        input_values=STRINGS, fast_bert_normalizer_model=model, get_offsets=offsets)
    assert_same(run("FastBertNormalize", as_bytes(STRINGS), model, get_offsets=offsets),
                theirs)


@pytest.mark.parametrize("end_to_end", [True, False])
@pytest.mark.parametrize("max_bytes", [100, 6])
def test_fast_wordpiece_matches_tf(end_to_end, max_bytes):
    tokenizer = text.FastWordpieceTokenizer(vocab=VOCAB, no_pretokenization=not end_to_end,
                                            max_bytes_per_word=max_bytes)
    model = tokenizer._model.numpy()
    normalized = text.FastBertNormalizer(True).normalize(STRINGS).numpy()
    inputs = normalized if end_to_end else as_bytes(WORDS)
    theirs = gen_fast_wordpiece_tokenizer.fast_wordpiece_tokenize_with_offsets(
        input_values=inputs, wp_model=model)
    assert_same(run("FastWordpieceTokenizeWithOffsets", inputs, model), theirs)


def test_whitespace_tokenizer_matches_tf_offsets_included():
    tokenizer = text.WhitespaceTokenizer()
    tokens, starts, ends = tokenizer.tokenize_with_offsets(STRINGS)
    ours = run("TFText>WhitespaceTokenizeWithOffsetsV2", as_bytes(STRINGS),
               np.asarray(tokenizer._config, object))
    assert_same(ours, [tokens.flat_values, tokens.row_splits, starts.flat_values,
                       ends.flat_values])


@pytest.mark.parametrize("budget", [0, 1, 5, 9, 40])
def test_round_robin_trim_matches_tf(budget):
    segments = [tf.ragged.constant([[1, 2, 3], [], [4] * 9, [5, 6]]),
                tf.ragged.constant([[7] * 6, [8], [9, 9], []]),
                tf.ragged.constant([[1], [2] * 4, [3] * 5, [4]])]
    theirs = text.RoundRobinTrimmer(budget).trim(segments)
    args = [s.flat_values.numpy() for s in segments] + [s.row_splits.numpy()
                                                        for s in segments]
    ours = run("TFText>RoundRobinTrim", np.int32(budget), *args)
    assert_same(ours, [t.flat_values for t in theirs] + [t.row_splits for t in theirs])


@pytest.mark.parametrize("op,args", [
    ("CaseFoldUTF8", ()), ("NormalizeUTF8", ()),
    ("RegexSplitWithOffsets", (np.asarray(b"(\\s)", object), np.asarray(b"", object)))])
def test_bytes_that_are_not_utf8_are_refused_with_their_position(op, args):
    attrs = {"normalization_form": "NFC"} if op == "NormalizeUTF8" else {}
    with pytest.raises(ValueError, match=r"is not UTF-8 \(byte 3: b'\\xff'\)"):
        run(op, as_bytes([b"ok", b"abc\xff"]), *args, **attrs)


def test_a_fast_model_that_is_not_a_flatbuffer_is_refused_by_name():
    with pytest.raises(ValueError, match="FastWordpieceTokenizer constant is not a valid"):
        run("FastWordpieceTokenizeWithOffsets", as_bytes(["x"]), np.zeros(2, np.uint8))


def test_fast_wordpiece_detokenize_matches_tf():
    tokenizer = text.FastWordpieceTokenizer(vocab=VOCAB, support_detokenization=True,
                                            no_pretokenization=True)
    rows = [[4, 12, 13, 14], [], [12, 1, 15, 16, 17], [len(VOCAB) - 1], [9, 10, 11]]
    ids = tf.ragged.constant(rows, tf.int64)
    ours = run("TFText>FastWordpieceDetokenize", ids.flat_values.numpy(),
               ids.row_splits.numpy(), tokenizer._model.numpy())
    assert_same(ours, [tokenizer.detokenize(ids)])
