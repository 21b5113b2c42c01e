"""Unknown sizes of a SavedModel's inputs: unrelated ones take any sizes, as in TF; tied
ones share a symbol and must agree.

Each case is a tf.function saved as a SavedModel, converted with ``jaxhub.load`` and
called with two sets of sizes that differ between its unrelated inputs; outputs (and
gradients with respect to float inputs) are compared with TF's, eagerly, under ``jit``
and, for a batch of calls, under ``vmap``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from jax.experimental import jax2tf

import jaxhub
from tests.converters.from_tf._helpers import as_dict, jax_outputs_and_grads, tf_reference

T = tf.TensorSpec


@dataclasses.dataclass(frozen=True)
class Case:
    """A function of several inputs, the symbols its converted inputs get, and inputs
    for sizes (one dict of sizes per call)."""

    fn: Callable
    specs: list
    symbols: dict[str, tuple]
    make: Callable[[np.random.Generator, dict], dict[str, np.ndarray]]
    sizes: tuple[dict, ...]


def _ragged(values, row_splits):
    rt = tf.RaggedTensor.from_row_splits(values, row_splits, validate=False)
    return {"lengths": rt.row_lengths(), "dense": rt.to_tensor(shape=[None, 3, 2]),
            "doubled": rt.values * 2.0}


def _ragged_inputs(rng, n):
    cuts = np.sort(rng.integers(0, n["values"] + 1, n["rows"] - 1))
    return {"values": rng.normal(size=(n["values"], 2)).astype(np.float32),
            "row_splits": np.concatenate([[0], cuts, [n["values"]]]).astype(np.int64)}


def _row_ids(values, rowids, queries):
    """``from_value_rowids`` counts its rows with ``bincount(minlength=n, maxlength=n)``."""
    nrows = tf.shape(queries, out_type=tf.int64)[0]
    rt = tf.RaggedTensor.from_value_rowids(values, rowids, nrows, validate=False)
    return {"lengths": rt.row_lengths(),
            "dense": rt.to_tensor(shape=[None, 3, 2]) + queries[:, None, :2]}


def _row_ids_inputs(rng, n):
    return {"values": rng.normal(size=(n["values"], 2)).astype(np.float32),
            "rowids": np.sort(rng.integers(0, n["rows"], n["values"])).astype(np.int64),
            "queries": rng.normal(size=(n["rows"], 4)).astype(np.float32)}


def _sparse(indices, values, dense_shape, x):
    dense = tf.sparse.to_dense(tf.SparseTensor(indices, values, tf.constant([4, 8], tf.int64)))
    return {"dense": dense, "scores": tf.matmul(dense, x, transpose_b=True), "x2": x * 2.0,
            "shape": tf.cast(dense_shape, tf.float32)}


def _sparse_inputs(rng, n):
    flat = np.sort(rng.choice(32, n["entries"], replace=False))
    return {"indices": np.stack([flat // 8, flat % 8], 1).astype(np.int64),
            "values": rng.normal(size=n["entries"]).astype(np.float32),
            "dense_shape": np.array([4, 8], np.int64),
            "x": rng.normal(size=(n["batch"], 8)).astype(np.float32)}


def _attention(q, k, v):
    return {"out": tf.matmul(tf.nn.softmax(tf.matmul(q, k, transpose_b=True)), v)}


def _attention_inputs(rng, n):
    return {"q": rng.normal(size=(n["q"], 8)).astype(np.float32),
            "k": rng.normal(size=(n["k"], 8)).astype(np.float32),
            "v": rng.normal(size=(n["k"], 8)).astype(np.float32)}


def _concat(a, b):
    return {"out": tf.concat([a, b], 0) * 2.0}


def _concat_inputs(rng, n):
    return {"a": rng.normal(size=(n["a"], 3)).astype(np.float32),
            "b": rng.normal(size=(n["b"], 3)).astype(np.float32)}


CASES = {
    "ragged_values_and_row_splits": Case(
        _ragged, [T([None, 2], tf.float32, "values"), T([None], tf.int64, "row_splits")],
        {"values": ("n_values", 2), "row_splits": ("batch",)}, _ragged_inputs,
        ({"values": 5, "rows": 3}, {"values": 2, "rows": 4})),
    "ragged_from_value_rowids": Case(
        _row_ids, [T([None, 2], tf.float32, "values"), T([None], tf.int64, "rowids"),
                   T([None, 4], tf.float32, "queries")],
        {"queries": ("batch", 4), "rowids": ("n_rowids",), "values": ("n_values", 2)},
        _row_ids_inputs, ({"values": 5, "rows": 3}, {"values": 2, "rows": 4})),
    "sparse_beside_a_dense_batch": Case(
        _sparse, [T([None, 2], tf.int64, "indices"), T([None], tf.float32, "values"),
                  T([2], tf.int64, "dense_shape"), T([None, 8], tf.float32, "x")],
        {"dense_shape": (2,), "indices": ("batch", 2), "values": ("batch",),
         "x": ("n_x", 8)},
        _sparse_inputs, ({"entries": 5, "batch": 3}, {"entries": 2, "batch": 6})),
    "queries_and_keys": Case(
        _attention, [T([None, 8], tf.float32, "q"), T([None, 8], tf.float32, "k"),
                     T([None, 8], tf.float32, "v")],
        {"k": ("batch", 8), "q": ("n_q", 8), "v": ("batch", 8)}, _attention_inputs,
        ({"q": 3, "k": 5}, {"q": 4, "k": 1})),
    "concat_along_the_unknown_axis": Case(
        _concat, [T([None, 3], tf.float32, "a"), T([None, 3], tf.float32, "b")],
        {"a": ("batch", 3), "b": ("n_b", 3)}, _concat_inputs,
        ({"a": 2, "b": 5}, {"a": 4, "b": 1})),
}


def save(path, fn, specs) -> str:
    module = tf.Module()
    module.f = tf.function(fn, input_signature=specs)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.f})
    return str(path)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    """``(case, TF's function, the converted module)``."""
    case = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    path = save(root / "saved_model", case.fn, case.specs)
    return case, tf.saved_model.load(path).signatures["serving_default"], jaxhub.load(path)


def _float_inputs(inputs):
    return {k for k, v in inputs.items() if np.issubdtype(v.dtype, np.floating)}


def test_unrelated_sizes_get_symbols_of_their_own(case):
    case, _, module = case
    specs = module.signatures["serving_default"].inputs
    assert {k: s.shape for k, s in specs.items()} == case.symbols


def _assert_matches(tf_fn, module, inputs, *, atol=1e-6, grad_rtol=1e-5):
    """Outputs and input gradients of ``module``'s serving signature against those of
    ``tf_fn``, jitted or not."""
    ref = tf_reference(lambda xs: tf_fn(**xs), inputs, [])
    for jit in (False, True):
        outputs, _, input_grads = jax_outputs_and_grads(
            module, inputs, ref["cotangents"], signature="serving_default", jit=jit)
        assert sorted(outputs) == sorted(ref["outputs"])
        for k, expected in ref["outputs"].items():
            assert outputs[k].shape == expected.shape, k
            np.testing.assert_allclose(outputs[k], expected, rtol=1e-5, atol=atol,
                                       err_msg=f"{k} (jit={jit})")
        for k in _float_inputs(inputs):
            np.testing.assert_allclose(input_grads[k], ref["input_grads"][k], rtol=grad_rtol,
                                       atol=atol, err_msg=f"d/d{k} (jit={jit})")


@pytest.mark.parametrize("call", [0, 1])
def test_any_sizes_give_tf_values_and_gradients(case, call):
    case, tf_fn, module = case
    inputs = case.make(np.random.default_rng(call), case.sizes[call])
    _assert_matches(tf_fn, module, inputs, atol=1e-5, grad_rtol=1e-4)


def test_vmap_over_calls_of_the_same_sizes_gives_tf_values(case):
    case, tf_fn, module = case
    calls = [case.make(np.random.default_rng(seed), case.sizes[0]) for seed in range(3)]
    stacked = {k: np.stack([c[k] for c in calls]) for k in calls[0]}
    got = jax.jit(jax.vmap(lambda xs: module(xs, signature="serving_default",
                                             as_dict=True)))(stacked)
    for i, inputs in enumerate(calls):
        expected = as_dict(tf_fn(**{k: tf.constant(v) for k, v in inputs.items()}))
        for k, value in expected.items():
            np.testing.assert_allclose(got[k][i], value, rtol=1e-5, atol=1e-5, err_msg=k)


def test_queries_alone_are_mapped_over_keys_held_fixed(tmp_path):
    """vmap over the queries only: each query's row attends to the same keys."""
    case = CASES["queries_and_keys"]
    module = jaxhub.load(save(tmp_path / "saved_model", case.fn, case.specs))
    inputs = case.make(np.random.default_rng(0), {"q": 3, "k": 5})
    queries = np.random.default_rng(1).normal(size=(4, 3, 8)).astype(np.float32)
    got = jax.vmap(lambda q: module({**inputs, "q": q}, signature="serving_default"))(queries)
    for i, q in enumerate(queries):
        expected = _attention(tf.constant(q), tf.constant(inputs["k"]), tf.constant(inputs["v"]))
        np.testing.assert_allclose(got[i], expected["out"].numpy(), rtol=1e-5, atol=1e-5)


def test_a_second_image_beside_non_max_suppression_has_its_own_batch(tmp_path):
    """NMS's boxes and scores are tied (their host stage); the image input is not."""
    def nms(boxes, scores, image):
        kept = tf.image.non_max_suppression(boxes, scores, 10, iou_threshold=0.5)
        return {"kept": tf.gather(boxes, kept), "pooled": tf.reduce_sum(image * image, 1)}

    specs = [T([None, 4], tf.float32, "boxes"), T([None], tf.float32, "scores"),
             T([None, 8], tf.float32, "image")]
    path = save(tmp_path / "saved_model", nms, specs)
    tf_fn, module = tf.saved_model.load(path).signatures["serving_default"], jaxhub.load(path)
    rng = np.random.default_rng(0)
    for boxes, images in ((6, 2), (3, 5)):
        corners = rng.uniform(0, 1, (boxes, 2)).astype(np.float32)
        inputs = {"boxes": np.concatenate([corners, corners + 0.3], 1),
                  "scores": rng.uniform(size=boxes).astype(np.float32),
                  "image": rng.normal(size=(images, 8)).astype(np.float32)}
        expected = as_dict(tf_fn(**{k: tf.constant(v) for k, v in inputs.items()}))
        got = module(inputs, signature="serving_default", as_dict=True)
        for k, value in expected.items():
            np.testing.assert_allclose(got[k], value, rtol=1e-6, err_msg=k)
        # The device part, jitted, and its gradient with respect to the image.
        feeds = module.preprocess(inputs, signature="serving_default")
        device = jax.jit(lambda p, f: module.apply_device(p, f, signature="serving_default",
                                                          as_dict=True))
        np.testing.assert_allclose(device(module.params, feeds)["pooled"], expected["pooled"],
                                   rtol=1e-6)
        grad = jax.grad(lambda image: jnp.sum(module.apply_device(
            module.params, {**feeds, "image": image}, signature="serving_default",
            as_dict=True)["pooled"]))(feeds["image"])
        np.testing.assert_allclose(grad, 2 * inputs["image"], rtol=1e-6)


TIED = {
    "added": (lambda x, y: {"out": x + y}, [3, 3]),
    "concatenated_along_axis_1": (lambda x, y: {"out": tf.concat([x, y], 1)}, [3, 2]),
    "multiplied_as_matrices": (lambda x, y: {"out": tf.matmul(x, y, transpose_a=True)},
                               [3, 2]),
}


@pytest.mark.parametrize("name", sorted(TIED))
def test_tied_sizes_share_the_batch_and_must_agree(tmp_path, name):
    fn, widths = TIED[name]
    specs = [T([None, widths[0]], tf.float32, "x"), T([None, widths[1]], tf.float32, "y")]
    path = save(tmp_path / "saved_model", fn, specs)
    tf_fn, module = tf.saved_model.load(path).signatures["serving_default"], jaxhub.load(path)
    signature = module.signatures["serving_default"]
    assert [s.shape[0] for s in signature.inputs.values()] == ["batch", "batch"]
    rng = np.random.default_rng(0)
    for batch in (2, 5):
        inputs = {"x": rng.normal(size=(batch, widths[0])).astype(np.float32),
                  "y": rng.normal(size=(batch, widths[1])).astype(np.float32)}
        expected = tf_fn(**{k: tf.constant(v) for k, v in inputs.items()})["out"].numpy()
        got = jax.jit(lambda xs: module(xs, signature="serving_default"))(inputs)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    mismatched = {"x": np.ones((2, widths[0]), np.float32),
                  "y": np.ones((3, widths[1]), np.float32)}
    with pytest.raises(jaxhub.SignatureError, match=r"signature 'serving_default': input 'y' "
                       r"has batch=3 on axis 0, but input 'x' has batch=2"):
        module(mismatched, signature="serving_default")


def test_bert_like_inputs_tie_their_batch_and_their_length(tmp_path):
    """Word ids, mask and type ids ([None, None] each) are tied on both axes."""
    import tf_keras as keras

    names = ["input_word_ids", "input_mask", "input_type_ids"]
    ids, mask, types = (keras.Input([None], dtype=tf.int32, name=n) for n in names)
    x = keras.layers.Embedding(50, 16)(ids) + keras.layers.Embedding(2, 16)(types)
    attended = keras.layers.MultiHeadAttention(2, 8)(
        x, x, attention_mask=tf.cast(mask[:, None, :], bool))
    x = keras.layers.LayerNormalization()(x + attended)
    model = keras.Model(dict(zip(names, (ids, mask, types))), {"seq": x, "pooled": x[:, 0]})
    tf.saved_model.save(model, str(tmp_path / "saved_model"))
    module = jaxhub.load(str(tmp_path / "saved_model"))
    for name in ("default", "serving_default"):
        shapes = {s.shape for s in module.signatures[name].inputs.values()}
        assert shapes == {("batch", "d1")}, name
    rng = np.random.default_rng(0)
    for batch, length in ((2, 5), (3, 2)):
        inputs = {"input_word_ids": rng.integers(0, 50, (batch, length), np.int32),
                  "input_mask": rng.integers(0, 2, (batch, length), np.int32),
                  "input_type_ids": rng.integers(0, 2, (batch, length), np.int32)}
        inputs["input_mask"][:, 0] = 1
        expected = as_dict(model(inputs))
        got = jax.jit(lambda xs: module(xs, as_dict=True))(inputs)
        for k, value in expected.items():
            np.testing.assert_allclose(got[k], value, rtol=1e-4, atol=1e-5, err_msg=k)
    with pytest.raises(jaxhub.SignatureError, match=r"has d1=2 on axis 1, but input "
                       r"'input_mask' has d1=4"):
        module({**inputs, "input_mask": np.ones((3, 4), np.int32)})


# -- SavedModels written with jax2tf: the sizes the StableHLO module itself follows --------


def _jax2tf_save(path, fn, polymorphic_shapes, specs) -> str:
    return save(path, jax2tf.convert(fn, polymorphic_shapes=polymorphic_shapes), specs)


def _assert_matches_tf(path, module, inputs):
    """Outputs and input gradients of the converted signature against TF's, jitted or not."""
    _assert_matches(tf.saved_model.load(path).signatures["serving_default"], module, inputs)


def test_jax2tf_outputs_follow_two_unrelated_sizes(tmp_path):
    """An outer product (m, n), a concatenation (m + n) and every other element ((n + 1)
    // 2) of two vectors of any lengths: the outputs are expressed in both inputs'
    symbols."""
    def fn(a, b):
        return {"outer": a[:, None] * b[None, :], "joined": jnp.concatenate([a, b * 2.0]),
                "every_other": b[::2] * 3.0}

    path = _jax2tf_save(tmp_path / "saved_model", fn, ["(m,)", "(n,)"],
                        [T([None], tf.float32, "a"), T([None], tf.float32, "b")])
    module = jaxhub.load(path)
    signature = module.signatures["serving_default"]
    (m,), (n,) = signature.inputs["a"].shape, signature.inputs["b"].shape
    assert m != n
    assert signature.outputs["outer"].shape == (m, n)
    rng = np.random.default_rng(0)
    for sizes in ((3, 5), (4, 1)):
        inputs = {k: rng.normal(size=s).astype(np.float32) for k, s in zip("ab", sizes)}
        _assert_matches_tf(path, module, inputs)


def test_jax2tf_module_that_ties_two_inputs_sizes_ties_their_symbols(tmp_path):
    """``broadcast_to(x, y.shape)`` exported for x (b, 4) and y (2, b, 4): TF's signature
    leaves both sizes unknown, the module ties them, and so does the converted signature."""
    def fn(x, y):
        return {"broadcast": jnp.broadcast_to(x, y.shape), "sum": x + y}

    path = _jax2tf_save(tmp_path / "saved_model", fn, ["(b, 4)", "(2, b, 4)"],
                        [T([None, 4], tf.float32, "x"), T([2, None, 4], tf.float32, "y")])
    module = jaxhub.load(path)
    inputs = module.signatures["serving_default"].inputs
    assert inputs["x"].shape[0] == inputs["y"].shape[1] == "batch"
    rng = np.random.default_rng(1)
    for b in (3, 1):
        _assert_matches_tf(path, module, {"x": rng.normal(size=(b, 4)).astype(np.float32),
                                          "y": rng.normal(size=(2, b, 4)).astype(np.float32)})
    with pytest.raises(jaxhub.SignatureError, match="input 'y' has batch=2"):
        module({"x": np.ones((3, 4), np.float32), "y": np.ones((2, 2, 4), np.float32)},
               signature="serving_default")


def test_jax2tf_module_taking_unknown_sizes_that_tf_knew(tmp_path):
    """Exported for (B, d*128) and saved for TF's [1, None]: the module's main takes
    tensor<?x?>, the converted call follows it and solves B = 1 and d from the input."""
    def fn(x):
        return {"tiled": jnp.tile(x * x, 2).reshape((2, *x.shape))}

    path = _jax2tf_save(tmp_path / "saved_model", fn, ["(B, d*128)"],
                        [T([1, None], tf.float32, "x")])
    module = jaxhub.load(path)
    rng = np.random.default_rng(2)
    for d in (1, 3):
        _assert_matches_tf(path, module, {"x": rng.normal(size=(1, 128 * d)).astype(np.float32)})


def test_jax2tf_output_size_that_cannot_be_read_is_refused(tmp_path):
    """Every other column, flattened: ``b * ((h + 1) // 2)``, neither a polynomial nor a
    floor division of one, is refused naming the node rather than guessed."""
    path = _jax2tf_save(tmp_path / "saved_model", lambda x: {"odd": x[:, ::2].reshape(-1)},
                        ["(b, h)"], [T([None, None], tf.float32, "x")])
    with pytest.raises(RuntimeError, match=r"TF node 'XlaCallModule' \(XlaCallModule\) "
                       r"failed: .*neither a polynomial .* \(\(b, h\)\)"):
        jaxhub.load(path, cache_dir=tmp_path / "cache")
