"""Text modules: the host stage (strings, tables) and the device function against TF."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

import jaxhub
from jaxhub_tf.from_tf.host_stages import split
from jaxhub_tf.from_tf.tf1.hub_module import load_tf1_hub_module
from jaxhub._src.host import HostStage

from ._session import REPO_ROOT, flat_params

v1 = tf.compat.v1

README = ["A long sentence.", "single-word", "http://example-url.com"]
MORE = ["The quick brown fox", "Unknown words: zebra, Quokka!", "a a a long long",
        "", "Ünïcödé ßtraße", "tabs\tand  double  spaces"]


def test_readme_example_gives_tf_numbers(converted, tf_session):
    embed = converted("text")
    ours = embed(README)
    theirs = tf_session("text").run("default", {"default": README})["default"]
    assert ours.shape == (3, 8)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_ids_with_oov_buckets_and_sparse_indices_match_tf(converted, tf_session):
    ours = converted("text")(MORE, signature="tokens", as_dict=True)
    theirs = tf_session("text").run("tokens", {"default": MORE})
    np.testing.assert_array_equal(ours["ids"], theirs["ids"])
    np.testing.assert_array_equal(ours["indices"], theirs["indices"])
    assert (np.asarray(ours["ids"]) >= 14).any()  # some words fell into OOV buckets


def test_embedding_gradient_matches_tf(converted, tf_session):
    embed, sess = converted("text"), tf_session("text")
    strings = README + MORE[:3]
    theirs = sess.run("default", {"default": strings})["default"]
    cts = np.random.default_rng(0).standard_normal(theirs.shape).astype(np.float32)
    tf_grads, _ = sess.grads("default", {"default": strings}, {"default": cts})
    grad = jax.jit(jax.grad(lambda p: jnp.sum(embed.apply(p, strings) * cts)))
    ours = flat_params(grad(embed.params))
    np.testing.assert_allclose(ours["embeddings"], tf_grads["embeddings"], rtol=1e-5,
                               atol=1e-6)


def test_vocabulary_is_an_asset_and_the_host_stage_is_data(converted):
    embed = converted("text")
    assert embed.assets["vocab.txt"].read_text().split("\n")[:3] == ["<unk>", "a", "long"]
    stages = embed.attachments[jaxhub.extend.HOST_STAGES_ATTACHMENT]
    assert set(stages) == {"default", "tokens"}
    ops = {node["op"] for node in stages["default"]["nodes"]}
    assert {"StringLower", "StaticRegexReplace", "StringSplit", "LookupTableFindV2",
            "StringToHashBucketFast", "Asset"} <= ops


def test_exported_text_module_runs_without_tensorflow(converted, tmp_path, tf_session):
    path = converted("text").export(tmp_path / "text")
    script = textwrap.dedent(f"""
        import sys, json
        sys.modules["tensorflow"] = None  # importing TensorFlow now fails
        import jaxhub
        embed = jaxhub.load({str(path)!r})
        print(json.dumps(embed({README!r}).tolist()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    ours = np.asarray(__import__("json").loads(out.stdout.strip().splitlines()[-1]))
    theirs = tf_session("text").run("default", {"default": README})["default"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


# -- host ops one by one, against TF's kernels ----------------------------------------------


def _host_vs_tf(build, inputs):
    """Runs ``build(placeholder)`` in TF and as a host stage made from the same graph."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.string, [None], name="x")
        outputs = build(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        with v1.Session() as sess:
            theirs = sess.run(outputs, {x: inputs})
    from jaxhub_tf.from_tf.graph import function_from_graph_def
    fn = function_from_graph_def(graph.as_graph_def(), ["x:0"], [t.name for t in outputs])
    parts = split.split(fn)
    feeds = HostStage(parts.program).run({"x": np.asarray(inputs, object)})
    return [feeds[source] for source, _ in parts.device.outputs], theirs


@pytest.mark.parametrize("name,build", [
    ("hash_bucket", lambda x: tf.strings.to_hash_bucket_fast(x, 1000)),
    ("hash_bucket_big", lambda x: tf.strings.to_hash_bucket_fast(x, 2 ** 62)),
    ("split_v1", lambda x: v1.string_split(x, sep=" ,").indices),
    ("split_v1_chars", lambda x: v1.string_split(x, sep="").indices),
    ("split_v2_whitespace", lambda x: tf.raw_ops.StringSplitV2(input=x, sep="")[0]),
    ("split_v2_sep", lambda x: tf.raw_ops.StringSplitV2(input=x, sep=", ", maxsplit=1)[0]),
    ("ragged_split_to_sparse", lambda x: [tf.strings.split(x).to_sparse().indices,
                                          tf.strings.split(x).to_sparse().dense_shape]),
    ("ragged_row_lengths", lambda x: tf.strings.split(x).row_lengths()),
    ("substr_join_length", lambda x: tf.strings.length(tf.strings.join(
        [tf.strings.substr(x, 0, 3), x], separator="|"), unit="UTF8_CHAR")),
    ("lower_then_hash", lambda x: tf.strings.to_hash_bucket_fast(
        tf.strings.regex_replace(tf.strings.lower(x), r"([a-z]+)o", r"<\1>"), 97)),
])
def test_host_ops_match_tf_kernels(name, build):
    strings = README + MORE + ["x" * 200, "ab, cd ,ef", "  lead", "trail  "]
    ours, theirs = _host_vs_tf(build, strings)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b).astype(np.asarray(a).dtype))


def _write_tf1_hub_module(path, build, with_scale: bool = False) -> None:
    """A minimal TF1 Hub module: a SavedModel with a "default" signature, plus ModuleDef.

    With ``with_scale``, the signature also takes a float input ``scale`` [batch].
    """
    with tf.Graph().as_default(), v1.Session() as sess:
        x = v1.placeholder(tf.string, [None], name="x")
        inputs = {"text": x}
        if with_scale:
            scale = v1.placeholder(tf.float32, [None], name="scale_in")
            inputs["scale"] = scale
            y = tf.cast(build(x), tf.float32) * scale
        else:
            y = build(x)
        builder = v1.saved_model.Builder(str(path))
        signature = v1.saved_model.signature_def_utils.predict_signature_def(inputs,
                                                                            {"default": y})
        builder.add_meta_graph_and_variables(sess, [], {"default": signature})
        builder.save()
    (path / "tfhub_module.pb").write_bytes(b"\x08\x03")  # ModuleDef{format: FORMAT_V3}


def test_unsupported_string_ops_are_named(tmp_path):
    _write_tf1_hub_module(tmp_path / "m", lambda x: tf.strings.to_hash_bucket_fast(
        tf.strings.as_string(tf.strings.to_number(tf.strings.reduce_join(x, keepdims=True))),
        10))
    with pytest.raises(split.HostStageUnsupportedError) as info:
        load_tf1_hub_module(tmp_path / "m")
    # Only the op without a host implementation: the host stage parses and formats numbers.
    assert "no host implementation: ['ReduceJoin']" in str(info.value)


def test_minimal_hub_module_with_hashing_loads_through_jaxhub_load(tmp_path):
    _write_tf1_hub_module(tmp_path / "m", lambda x: tf.strings.to_hash_bucket_fast(
        tf.strings.lower(x), 50))
    module = jaxhub.load(tmp_path / "m", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(
        module(README), tf.strings.to_hash_bucket_fast(tf.strings.lower(README), 50))


def test_signature_mixing_strings_and_numbers(tmp_path):
    _write_tf1_hub_module(tmp_path / "m", lambda x: tf.strings.to_hash_bucket_fast(x, 7),
                          with_scale=True)
    module = load_tf1_hub_module(tmp_path / "m")
    scale = np.linspace(0.5, 1.5, 3).astype(np.float32)
    ours = module({"text": README, "scale": scale})
    expected = tf.cast(tf.strings.to_hash_bucket_fast(README, 7), tf.float32) * scale
    np.testing.assert_allclose(ours, expected)
    grad = jax.grad(lambda s: jnp.sum(module({"text": README, "scale": s})))(scale)
    np.testing.assert_allclose(grad, tf.cast(tf.strings.to_hash_bucket_fast(README, 7),
                                             tf.float32))
