"""TF2 SavedModels whose signatures take strings: tables as captured resources."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import jaxhub
from jaxhub_tf.from_tf.host_stages.split import HostStageUnsupportedError
from jaxhub_tf.from_tf.host_stages.string_functions import split_function
from jaxhub_tf.from_tf.interpreter import Interpreter
from jaxhub_tf.from_tf.values import Resource
from jaxhub._src.host import HostStage

STRINGS = ["A long sentence", "single word x", "zzz unknown words", "word word"]


class _TextModel(tf.Module):
    """Lower-case, split, vocabulary table with OOV buckets, sqrtn embedding."""

    def __init__(self, vocab: pathlib.Path):
        super().__init__()
        init = tf.lookup.TextFileInitializer(
            str(vocab), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER)
        self.table = tf.lookup.StaticVocabularyTable(init, num_oov_buckets=2)
        self.emb = tf.Variable(tf.random.stateless_normal([7, 4], seed=[1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, s):
        tokens = tf.compat.v1.string_split(tf.strings.lower(s), sep=" ")
        ids = self.table.lookup(tokens)
        return tf.nn.embedding_lookup_sparse(self.emb, ids, None, combiner="sqrtn")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf2_text")
    vocab = root / "vocab.txt"
    vocab.write_text("a\nlong\nsentence\nsingle\nword\n")
    model = _TextModel(vocab)
    tf.saved_model.save(model, str(root / "sm"), signatures={"serving_default": model.__call__})
    return root / "sm", model


def _split(path: pathlib.Path):
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    meta = proto.meta_graphs[0]
    interp = Interpreter(meta.graph_def.library)
    sig = meta.signature_def["serving_default"]
    caller = {n.name: n for n in meta.graph_def.node}[sig.outputs["output_0"].name.split(":")[0]]
    name = caller.attr["f"].func.name
    parts = split_function(interp, meta, path, name, ["s"])
    bound = list(meta.object_graph_def.concrete_functions[name].bound_inputs)
    variables = [Resource("emb") for p, node_id in enumerate(bound)
                 if p not in parts.inlined_captures]
    return interp, parts, variables


def test_string_signature_splits_and_matches_tf(saved):
    path, model = saved
    interp, parts, variables = _split(path)
    assert parts.assets == {"vocab.txt": path / "assets" / "vocab.txt"}
    assert len(variables) == 1  # the table and the default-value constant became nodes
    feeds = HostStage(parts.program, parts.assets).run({"s": STRINGS})
    host_args = [feeds[a] for a in parts.device.args[:len(feeds)]]
    evaluate = interp.as_function(parts.device)

    def embed(emb):
        return evaluate({"emb": emb}, host_args + variables)[0][0]

    theirs_model = tf.saved_model.load(str(path))
    theirs = theirs_model.signatures["serving_default"](s=tf.constant(STRINGS))["output_0"]
    emb = model.emb.numpy()
    np.testing.assert_allclose(jax.jit(embed)(emb), theirs.numpy(), rtol=1e-6, atol=1e-6)
    cts = np.random.default_rng(0).standard_normal(theirs.shape).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.constant(STRINGS)) * cts)
    tf_grad = tf.convert_to_tensor(tape.gradient(loss, model.emb)).numpy()
    grad = jax.jit(jax.grad(lambda e: jnp.sum(embed(e) * cts)))(emb)
    np.testing.assert_allclose(grad, tf_grad, rtol=1e-5, atol=1e-6)


def test_jaxhub_load_of_a_string_saved_model(saved, tmp_path):
    path, model = saved
    module = jaxhub.load(path, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(module(STRINGS, signature="serving_default"),
                               model(tf.constant(STRINGS)).numpy(), rtol=1e-6, atol=1e-6)


class _Numbers(tf.Module):
    """Numbers written as text: parsed, rescaled, written again (the stage's shapes come
    from the graph: probe text does not parse), hashed to rows of a variable."""

    def __init__(self):
        super().__init__()
        self.rows = tf.Variable(tf.random.stateless_normal([50, 3], seed=[3, 4]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, s):
        values = tf.strings.to_number(s) * 2.5
        text = tf.strings.as_string(values, precision=2, width=10, fill="0")
        ids = tf.strings.to_hash_bucket_fast(text, 50)
        return {"rows": tf.gather(self.rows, ids), "values": values, "ids": ids,
                "counts": tf.strings.to_number(s, tf.int64) * 3}


@pytest.fixture(scope="module")
def numbers(tmp_path_factory):
    root = tmp_path_factory.mktemp("numbers")
    model = _Numbers()
    tf.saved_model.save(model, str(root / "sm"), signatures=model.__call__)
    return model, jaxhub.load(root / "sm", cache_dir=root / "cache")


@pytest.mark.parametrize("texts", [["12", " -3 ", "0", "7"], ["+41"]])
def test_numbers_parsed_from_text_and_written_as_text_match_tf(numbers, texts):
    model, module = numbers
    theirs = {k: v.numpy() for k, v in model(tf.constant(texts)).items()}
    ours = module.apply(module.params, np.asarray(texts, object), as_dict=True)
    assert module.signatures["default"].outputs["rows"].shape == ("batch", 3)
    for key, want in theirs.items():
        np.testing.assert_allclose(np.asarray(ours[key]), want, rtol=1e-6, err_msg=key)


def test_text_that_is_no_number_fails_naming_the_op(numbers):
    model, module = numbers
    with pytest.raises(tf.errors.InvalidArgumentError):
        model(tf.constant(["12", "twelve"]))
    with pytest.raises(jaxhub.HostStageError,
                       match=r"signature 'default': host op '[^']*' \(StringToNumber\) "
                             r"failed: .*could not convert string b'twelve' to (float32|int64)"):
        module.apply(module.params, np.asarray(["12", "twelve"], object))


_WORDS = np.asarray([["Hello there", "wxyz"], ["", "π"]])


class _ShapedText(tf.Module):
    """String inputs of rank 2 and 0, with constant strings of their rank: the samples
    that find the stage's sizes take the inputs' shapes."""

    def __init__(self):
        super().__init__()
        self.rows = tf.Variable(tf.random.stateless_normal([20, 2], seed=[5, 6]))

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.string)])
    def table(self, x):
        ids = tf.strings.to_hash_bucket_fast(tf.concat([x, _WORDS], 0), 20)
        return {"rows": tf.gather(self.rows, ids)}

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def one(self, x):
        ids = tf.strings.to_hash_bucket_fast(tf.strings.join([x, "!"]), 20)
        return {"rows": tf.gather(self.rows, ids)}


@pytest.mark.parametrize("signature,text", [
    ("table", [["Hello world", "abc"], ["def", "♦♥♠♣"]]), ("table", [["x", "y"]]),
    ("one", "a word")])
def test_text_inputs_of_any_rank_with_constant_strings_match_tf(tmp_path, signature, text):
    model = _ShapedText()
    tf.saved_model.save(model, str(tmp_path / "sm"),
                        signatures={s: getattr(model, s) for s in ("table", "one")})
    module = jaxhub.load(tmp_path / "sm", cache_dir=tmp_path / "cache")
    theirs = getattr(model, signature)(tf.constant(text))["rows"].numpy()
    ours = module.apply(module.params, np.asarray(text, object), signature=signature)
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-6)


class _StringResults(tf.Module):
    """Signatures that return strings, which no device function can."""

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.string)])
    def joined(self, x):
        return {"text": tf.concat([x, _WORDS], 0)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def parsed(self, x):
        return {"text": tf.strings.as_string(tf.strings.to_number(x) * 2)}

    @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
    def picked(self, x):  # numbers in, constant strings out
        return {"text": tf.where(x > 0, ["yes", "YES"], ["no", "NO"])}


@pytest.mark.parametrize("signature", ["joined", "parsed", "picked"])
def test_a_string_result_is_refused_naming_it(tmp_path, signature):
    model = _StringResults()
    tf.saved_model.save(model, str(tmp_path), signatures={signature: getattr(model, signature)})
    with pytest.raises(HostStageUnsupportedError,
                       match=r"string result\(s\) \['[^']*'\] \(a signature returns numbers"):
        jaxhub.load(tmp_path, cache_dir=tmp_path / "cache")


class _ParsedScalar(tf.Module):
    """A scalar string input, parsed, in a signature and in a tf.function of the module."""

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def parse(self, s):
        return {"value": tf.strings.to_number(s) * 2.0}


@pytest.mark.parametrize("signature", ["serving_default", "parse"])
@pytest.mark.parametrize("text", ["123", "-1.5"])
def test_a_scalar_string_parsed_to_a_number_matches_tf(tmp_path, signature, text):
    model = _ParsedScalar()
    tf.saved_model.save(model, str(tmp_path / "sm"), signatures=model.parse)
    module = jaxhub.load(tmp_path / "sm", cache_dir=tmp_path / "cache")
    theirs = model.parse(tf.constant(text))["value"].numpy()
    ours = module.apply(module.params, {"s": np.asarray(text, object)}, signature=signature,
                        as_dict=True)
    np.testing.assert_allclose(np.asarray(ours["value"]), theirs)
