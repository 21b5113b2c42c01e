"""SavedModels built with tensorflow_text, as TF Hub's text models ship them.

A BERT preprocessor in the manner of ``bert_en_uncased_preprocess`` (uncased WordPiece,
``seq_length`` 128), a Fast-WordPiece one, regex and normalisation tokenizers, and a
classifier from strings to logits. Vocabularies are made here, from the test texts.
"""

from __future__ import annotations

import pathlib

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


class TinyEncoder(tf.Module):
    """A BERT-shaped encoder, small: embeddings, one masked self-attention block, a
    pooler. Takes BERT inputs; returns ``pooled_output`` (also as ``default``, as TF Hub's
    encoders) and ``sequence_output``."""

    def __init__(self, vocab_size: int, width: int = 16, seed: int = 0):
        super().__init__()
        init = tf.random.stateless_normal

        def var(name, shape, scale=0.2):
            return tf.Variable(init(shape, seed=[seed, len(name)]) * scale, name=name)

        self.word_embeddings = var("word_embeddings", [vocab_size, width])
        self.type_embeddings = var("type_embeddings", [2, width])
        self.position_embeddings = var("position_embeddings", [SEQ_LENGTH, width])
        self.query, self.key, self.value = (var(n, [width, width]) for n in ("query", "key",
                                                                             "value"))
        self.ffn = var("ffn", [width, width])
        self.pooler = var("pooler", [width, width])
        self.pooler_bias = tf.Variable(tf.zeros([width]), name="pooler_bias")

    def encode(self, word_ids, mask, type_ids):
        h = (tf.gather(self.word_embeddings, word_ids) + tf.gather(self.type_embeddings, type_ids)
             + self.position_embeddings[None])
        h = (h - tf.reduce_mean(h, -1, keepdims=True)) * tf.math.rsqrt(
            tf.math.reduce_variance(h, -1, keepdims=True) + 1e-6)
        q, k, v = h @ self.query, h @ self.key, h @ self.value
        scores = tf.einsum("bqd,bkd->bqk", q, k) / 4.0
        scores += (1.0 - tf.cast(mask[:, None, :], tf.float32)) * -1e4
        h = h + tf.einsum("bqk,bkd->bqd", tf.nn.softmax(scores, -1), v)
        h = h + tf.nn.gelu(h @ self.ffn)
        pooled = tf.tanh(h[:, 0] @ self.pooler + self.pooler_bias)
        return {"pooled_output": pooled, "sequence_output": h, "default": pooled}

    @tf.function(input_signature=[tf.TensorSpec([None, SEQ_LENGTH], tf.int32)] * 3)
    def __call__(self, input_word_ids, input_mask, input_type_ids):
        return self.encode(input_word_ids, input_mask, input_type_ids)


class Classifier(tf.Module):
    """Strings to logits in one SavedModel: BERT preprocessing, the encoder, a head."""

    def __init__(self, preprocessor: BertPreprocessor, encoder: TinyEncoder, classes: int = 3):
        super().__init__()
        self.preprocessor, self.encoder = preprocessor, encoder
        self.head = tf.Variable(tf.random.stateless_normal([16, classes], seed=[7, 7]) * 0.3,
                                name="head")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, strings):
        inputs = self.preprocessor._pack([self.preprocessor._tokens(strings)])
        pooled = self.encoder.encode(inputs["input_word_ids"], inputs["input_mask"],
                                     inputs["input_type_ids"])["pooled_output"]
        return {"logits": pooled @ self.head}


def save_encoder(root: pathlib.Path, vocab_size: int) -> tuple[pathlib.Path, TinyEncoder]:
    encoder = TinyEncoder(vocab_size)
    path = root / "encoder"
    tf.saved_model.save(encoder, str(path), signatures={"serving_default": encoder.__call__})
    return path, encoder


def save_classifier(root: pathlib.Path) -> tuple[pathlib.Path, Classifier]:
    root.mkdir(parents=True, exist_ok=True)
    vocab_file = root / "vocab.txt"
    vocab = make_vocab(vocab_file)
    model = Classifier(BertPreprocessor(vocab_file, vocab), TinyEncoder(len(vocab), seed=3))
    path = root / "classifier"
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.__call__})
    return path, model


class HubStylePreprocessor(tf.Module):
    """Shaped like TF Hub's ``bert_en_uncased_preprocess``: ``tokenize`` and
    ``bert_pack_inputs`` are tf.functions of the root object, not signatures.

    ``tokenize`` returns a RaggedTensor ``[batch, words, wordpieces]``;
    ``bert_pack_inputs(segments, seq_length)`` takes a list of such RaggedTensors, one per
    segment, and a scalar ``seq_length`` tensor, the length of its outputs. As TF Hub's, it
    has no input signature: :func:`save_hub_style_preprocessor` traces it for 1 and 2
    segments, giving it two concrete functions.
    """

    def __init__(self, vocab_file: pathlib.Path, vocab: list[str]):
        super().__init__()
        self.tokenizer = text.BertTokenizer(str(vocab_file), lower_case=True,
                                            token_out_type=tf.int32)
        self.cls, self.sep = vocab.index("[CLS]"), vocab.index("[SEP]")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(self, strings):
        return self.tokenizer.tokenize(strings)

    def _pack(self, segments, seq_length):
        # [batch, words, wordpieces] (tokenize's) or [batch, tokens]
        segments = [s.merge_dims(-2, -1) if s.ragged_rank == 2 else s for s in segments]
        trimmed = text.RoundRobinTrimmer(max_seq_length=seq_length - 1 - len(segments)
                                         ).trim(segments)
        ids, types = text.combine_segments(trimmed, self.cls, self.sep)
        word_ids, mask = text.pad_model_inputs(ids, seq_length)
        type_ids, _ = text.pad_model_inputs(types, seq_length)
        return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}

    @tf.function
    def bert_pack_inputs(self, segments, seq_length):
        return self._pack(segments, seq_length)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, strings):
        return self._pack([self.tokenize(strings)], SEQ_LENGTH)


def save_hub_style_preprocessor(root: pathlib.Path, ragged_ranks: tuple[int, ...] = (2,)
                                ) -> pathlib.Path:
    """A :class:`HubStylePreprocessor` SavedModel under ``root`` (no explicit
    signatures: ``serving_default`` comes from ``__call__``); its path.

    ``bert_pack_inputs`` is traced for lists of 1 and 2 segments of each of
    ``ragged_ranks`` (TF Hub's has 1 and 2), with ``seq_length`` a scalar int32 tensor."""
    root.mkdir(parents=True, exist_ok=True)
    vocab_file = root / "vocab.txt"
    model = HubStylePreprocessor(vocab_file, make_vocab(vocab_file))
    for rank in ragged_ranks:
        segment = tf.RaggedTensorSpec([None] * (rank + 1), tf.int32)
        for count in (1, 2):
            model.bert_pack_inputs.get_concrete_function(
                [segment] * count, seq_length=tf.TensorSpec([], tf.int32))
    path = root / "hub_style_preprocess"
    tf.saved_model.save(model, str(path))
    return path


class DictInputEncoder(TinyEncoder):
    """:class:`TinyEncoder` called as TF Hub's BERT encoders are: ``__call__`` takes one
    dict of the three BERT inputs (a Keras model with dict inputs, saved with
    ``tf.saved_model.save``)."""

    @tf.function(input_signature=[{
        name: tf.TensorSpec([None, SEQ_LENGTH], tf.int32)
        for name in ("input_word_ids", "input_mask", "input_type_ids")}])
    def __call__(self, inputs):
        return self.encode(inputs["input_word_ids"], inputs["input_mask"],
                           inputs["input_type_ids"])


def save_dict_input_encoder(root: pathlib.Path, vocab_size: int
                            ) -> tuple[pathlib.Path, DictInputEncoder]:
    """A :class:`DictInputEncoder` SavedModel under ``root`` (no signatures given)."""
    encoder = DictInputEncoder(vocab_size)
    path = root / "dict_input_encoder"
    tf.saved_model.save(encoder, str(path))
    return path, encoder
