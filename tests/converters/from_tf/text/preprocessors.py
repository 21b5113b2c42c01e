"""SavedModels built with tensorflow_text, as TF Hub's text models ship them.

A BERT preprocessor in the manner of ``bert_en_uncased_preprocess`` (uncased WordPiece,
``seq_length`` 128), a Fast-WordPiece one, regex and normalisation tokenizers, and a
classifier from strings to logits. Vocabularies are made here, from the test texts.
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow as tf
import tensorflow_text as text

SEQ_LENGTH = 128

#: Texts with what BERT preprocessing must handle: empty strings, accents and case,
#: CJK, emoji, punctuation, unknown words, and texts longer than SEQ_LENGTH.
TEXTS = [
    "Hello, world!",
    "",
    "Café déjà vu: naïve Ångström façade.",
    "中文字符 and 日本語のテキスト",
    "emoji 🙂👍🏽 in the middle",
    "the quick brown fox jumps over the lazy dog " * 20,
    "UPPER lower MiXeD unbelievable tokenization",
    "x\u200bzero-width\u00a0space\ttab\nnewline",
    "ßtraße ﬁnal Ⅻ ①",
]

#: Second segments, for two-segment packing (same count as TEXTS).
SECOND = ["a reply", "the other", "", "日本", "👍", "short", "fox " * 90, "tab", "ok"]


def make_vocab(path: pathlib.Path) -> list[str]:
    """A WordPiece vocabulary covering part of TEXTS (so some words split, some are UNK)."""
    words = ["hello", "world", "the", "quick", "brown", "fox", "over", "lazy", "dog",
             "cafe", "deja", "vu", "in", "middle", "upper", "lower", "mixed", "un",
             "token", "and", "a", "reply", "other", "short", "ok", "tab", "space",
             "zero", "width", "new", "line", "final", "strasse"]
    pieces = ["##s", "##ing", "##ization", "##believ", "##able", "##ed", "##ive",
              "##e", "##a", "##d", "##o", "##x", "##t", "##l", "##ine", "##ps", "##ump"]
    singles = list("abcdefghijklmnopqrstuvwxyz".replace("a", "")) + ["中", "文", "字", "日", "本", "の",
                                                      "!", ",", ".", ":", "-", "🙂"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + pieces + singles
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return vocab


class BertPreprocessor(tf.Module):
    """Strings to BERT inputs: ``tokenize``, ``bert_pack_inputs`` and the one-shot default.

    Args:
      vocab_file: the WordPiece vocabulary (an asset of the SavedModel).
      fast: use ``text.FastBertTokenizer`` (vocabulary compiled into the graph).
    """

    def __init__(self, vocab_file: pathlib.Path, vocab: list[str], fast: bool = False):
        super().__init__()
        if fast:
            self.tokenizer = text.FastBertTokenizer(
                vocab=vocab, lower_case_nfd_strip_accents=True, token_out_type=tf.int32)
        else:
            self.tokenizer = text.BertTokenizer(str(vocab_file), lower_case=True,
                                                token_out_type=tf.int32)
        self.trimmer = text.RoundRobinTrimmer(max_seq_length=SEQ_LENGTH - 3)
        self.cls, self.sep = vocab.index("[CLS]"), vocab.index("[SEP]")

    def _tokens(self, strings):
        tokens = self.tokenizer.tokenize(strings)
        # BertTokenizer gives [batch, words, pieces]; the fast one [batch, pieces].
        return tokens.merge_dims(-2, -1) if tokens.shape.rank == 3 else tokens

    def _pack(self, segments):
        trimmed = self.trimmer.trim(segments)
        ids, types = text.combine_segments(trimmed, self.cls, self.sep)
        word_ids, mask = text.pad_model_inputs(ids, SEQ_LENGTH)
        type_ids, _ = text.pad_model_inputs(types, SEQ_LENGTH)
        return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, strings):
        return self._pack([self._tokens(strings)])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(self, strings):
        tokens = self._tokens(strings)
        return {"token_ids": tokens.flat_values,
                "row_splits": tf.cast(tokens.row_splits, tf.int64)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                  tf.TensorSpec([None], tf.string)])
    def bert_pack_inputs(self, first, second):
        return self._pack([self._tokens(first), self._tokens(second)])


def save_preprocessor(root: pathlib.Path, fast: bool = False) -> pathlib.Path:
    """A BERT preprocessor SavedModel under ``root``; its path."""
    root.mkdir(parents=True, exist_ok=True)
    vocab_file = root / "vocab.txt"
    vocab = make_vocab(vocab_file)
    model = BertPreprocessor(vocab_file, vocab, fast)
    path = root / ("fast_preprocess" if fast else "preprocess")
    tf.saved_model.save(model, str(path), signatures={
        "serving_default": model.__call__, "tokenize": model.tokenize,
        "bert_pack_inputs": model.bert_pack_inputs})
    return path
