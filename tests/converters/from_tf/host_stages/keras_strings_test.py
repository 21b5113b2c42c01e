"""``jaxhub.load`` of TF2 SavedModels whose signatures take strings (Keras 3 embeddings).

The models lower-case and split their strings, look the words up in a vocabulary table
with OOV buckets (or hash them), embed them with a Keras 3 ``Embedding`` and mean-pool:
outputs and gradients with respect to the embedding are compared with TensorFlow's. One
is a ``tf.Module`` saved with ``tf.saved_model.save``, one a ``keras.Model`` written with
Keras 3's ``ExportArchive``.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import tensorflow as tf

import jaxhub
from jaxhub_tf.from_tf.host_stages.split import HostStageUnsupportedError
from jaxhub_tf.from_tf.saved_model import load_saved_model

# The empty string is not last: embedding_lookup_sparse has as many rows as the last
# non-empty one.
STRINGS = ["The cat sat", "", "on THE mat", "dog", "the the cat dog bird"]
_VOCAB = "the\ncat\nsat\non\nmat\n"
_OOV_BUCKETS = 3
_HASH_BUCKETS = 5


def _vocabulary_table(vocab: pathlib.Path) -> tf.lookup.StaticVocabularyTable:
    init = tf.lookup.TextFileInitializer(
        str(vocab), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
        tf.lookup.TextFileIndex.LINE_NUMBER)
    return tf.lookup.StaticVocabularyTable(init, num_oov_buckets=_OOV_BUCKETS)


def _embedding(rows: int, seed: int) -> keras.layers.Embedding:
    layer = keras.layers.Embedding(
        rows, 6, embeddings_initializer=keras.initializers.RandomNormal(seed=seed))
    layer.build((None,))
    return layer


def _mean_pool(table: tf.Variable, ids: tf.RaggedTensor) -> tf.Tensor:
    return tf.nn.embedding_lookup_sparse(table, ids.to_sparse(), None, combiner="mean")


class _KerasText(tf.Module):
    """Vocabulary or hash ids, a Keras 3 embedding, mean-pooled per string."""

    def __init__(self, vocab: pathlib.Path):
        super().__init__()
        self.table = _vocabulary_table(vocab)
        self.embedding = _embedding(len(_VOCAB.split()) + _OOV_BUCKETS, seed=1)

    @property
    def weights(self) -> tf.Variable:
        return self.embedding.embeddings.value  # the tf.Variable behind Keras 3's variable

    def _pool(self, ids: tf.RaggedTensor) -> tf.Tensor:
        return _mean_pool(self.weights, ids)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text):
        tokens = tf.strings.split(tf.strings.lower(text))
        return self._pool(tf.ragged.map_flat_values(self.table.lookup, tokens))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                  tf.TensorSpec([None], tf.float32)])
    def hashed(self, text, scale):
        tokens = tf.strings.split(tf.strings.lower(text))
        ids = tf.ragged.map_flat_values(tf.strings.to_hash_bucket_fast, tokens,
                                        _HASH_BUCKETS)
        return {"pooled": self._pool(ids) * scale[:, None]}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("keras_text")
    vocab = root / "vocab.txt"
    vocab.write_text(_VOCAB)
    model = _KerasText(vocab)
    path = root / "saved_model"
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.__call__,
                                                      "hashed": model.hashed})
    module = jaxhub.load(path, cache_dir=root / "cache")  # converted, written, read back
    return model, module


def _embedding_path(module: jaxhub.Module) -> tuple[str, ...]:
    names = module.attachments["tf_variable_names"]
    (path,) = [p for p, name in names.items() if "embeddings" in name]
    return tuple(path.split("/"))


def _leaf(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _scale() -> np.ndarray:
    return np.linspace(0.5, 2.0, len(STRINGS)).astype(np.float32)


def _tf_value_and_grad(variable: tf.Variable, call, cts: np.ndarray):
    with tf.GradientTape() as tape:
        out = call()
        loss = tf.reduce_sum(out * cts)
    return out.numpy(), tf.convert_to_tensor(tape.gradient(loss, variable)).numpy()


def _jax_value_and_grad(module: jaxhub.Module, inputs, signature: str, cts: np.ndarray):
    path = _embedding_path(module)

    def loss(emb):
        params = jax.tree_util.tree_map(lambda x: x, module.params)
        _leaf(params, path[:-1])[path[-1]] = emb
        out = module.apply(params, inputs, signature=signature)
        return jnp.sum(out * cts), out

    emb = _leaf(module.params, path)
    (_, out), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(emb)
    return np.asarray(out), np.asarray(grad)


def test_signatures_show_string_inputs_and_ship_the_vocabulary(converted):
    _, module = converted
    assert module.signatures["serving_default"].inputs["text"].dtype == "string"
    assert module.signatures["default"].inputs["default"].dtype == "string"
    hashed = module.signatures["hashed"].inputs
    assert (hashed["text"].dtype, hashed["scale"].dtype) == ("string", "float32")
    assert module.assets["vocab.txt"].read_text() == _VOCAB
    assert module.variants == (frozenset(),)


@pytest.mark.parametrize("signature", ["serving_default", "default"])
def test_vocabulary_lookup_matches_tf(converted, signature):
    model, module = converted
    cts = np.random.default_rng(0).standard_normal((len(STRINGS), 6)).astype(np.float32)
    theirs, tf_grad = _tf_value_and_grad(model.weights, lambda: model(tf.constant(STRINGS)),
                                         cts)
    ours, grad = _jax_value_and_grad(module, STRINGS, signature, cts)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, tf_grad, rtol=1e-6, atol=1e-7)


def test_hashed_words_with_a_numeric_input_match_tf(converted):
    model, module = converted
    cts = np.random.default_rng(1).standard_normal((len(STRINGS), 6)).astype(np.float32)
    call = lambda: model.hashed(tf.constant(STRINGS), tf.constant(_scale()))["pooled"]
    theirs, tf_grad = _tf_value_and_grad(model.weights, call, cts)
    ours, grad = _jax_value_and_grad(module, {"text": STRINGS, "scale": _scale()},
                                     "hashed", cts)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, tf_grad, rtol=1e-6, atol=1e-7)


class _TextModel(keras.Model):
    """A Keras 3 model on strings: vocabulary ids, embedding, mean over the words."""

    def __init__(self, vocab: pathlib.Path):
        super().__init__(name="text_model")  # the class's name is not a valid TF scope
        self.table = _vocabulary_table(vocab)
        self.embedding = _embedding(len(_VOCAB.split()) + _OOV_BUCKETS, seed=3)

    def call(self, text):
        tokens = tf.strings.split(tf.strings.lower(text))
        ids = tf.ragged.map_flat_values(self.table.lookup, tokens)
        return _mean_pool(self.embedding.embeddings.value, ids)


def test_keras_model_export_archive_matches_tf(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text(_VOCAB)
    model = _TextModel(vocab)
    cts = np.random.default_rng(2).standard_normal((len(STRINGS), 6)).astype(np.float32)
    variable = model.embedding.embeddings.value
    # The first call also builds the model, which Keras requires before export.
    theirs, tf_grad = _tf_value_and_grad(variable, lambda: model(tf.constant(STRINGS)), cts)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(model.table)  # Keras tracks layers only; the table is a TF resource
    archive.add_endpoint("serve", model.call,
                         input_signature=[tf.TensorSpec([None], tf.string)])
    archive.write_out(str(tmp_path / "exported"))
    module = jaxhub.load(tmp_path / "exported", cache_dir=tmp_path / "cache")
    assert module.signatures["serve"].inputs["text"].dtype == "string"
    ours, grad = _jax_value_and_grad(module, STRINGS, "serve", cts)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, tf_grad, rtol=1e-6, atol=1e-7)


class _RaggedMean(tf.Module):
    """Mean-pooling a ragged embedding: TF broadcasts and tiles the ragged row lengths."""

    def __init__(self):
        super().__init__()
        self.embedding = keras.layers.Embedding(
            _HASH_BUCKETS, 4, embeddings_initializer=keras.initializers.RandomNormal(seed=2))
        self.embedding.build((None,))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text):
        ids = tf.strings.to_hash_bucket_fast(tf.strings.split(text), _HASH_BUCKETS)
        return tf.reduce_mean(tf.ragged.map_flat_values(self.embedding, ids), axis=1)


@pytest.mark.xfail(raises=HostStageUnsupportedError, strict=True,
                   reason="a ragged mean's segment count (UnsortedSegmentSum's "
                          "num_segments) is a host value, not a shape")
def test_ragged_mean_pooling(tmp_path):
    model = _RaggedMean()
    tf.saved_model.save(model, str(tmp_path / "sm"))
    module = load_saved_model(tmp_path / "sm")
    np.testing.assert_allclose(module(STRINGS), model(tf.constant(STRINGS)).numpy(),
                               rtol=1e-6, atol=1e-7)
