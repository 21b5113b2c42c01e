"""Conformance of array ops (shapes, slicing, gathers, scatters, padding, ...) against TF."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from jax.experimental import checkify

import jaxhub
from jaxhub_tf.from_tf.saved_model import convert_saved_model
from tests.converters.from_tf.ops._conformance import (Case, check, convert, distinct,
                                                       integers, normal, params)

_IDX = "int32"


def _indices_nd(rng, shape, dtype):
    """Valid indices into the leading axes of a (4, 3, ...) tensor (last axis: depth)."""
    bounds = np.array([4, 3])[: shape[-1]]
    return (rng.integers(0, 1 << 16, shape) % bounds).astype(dtype)


def _unique_rows(rng, shape, dtype):
    """Distinct index rows into a (4, 3) grid (scatters whose updates must not collide)."""
    cells = rng.permutation(12)[: shape[0]]
    return np.stack([cells // 3, cells % 3], axis=-1).astype(dtype)


def _after_no_op(x):
    """``x`` doubled, computed after a ``NoOp`` (a control input: no value flows)."""
    with tf.control_dependencies([tf.no_op()]):
        return x * 2.0


def _asserting(x):
    """``x`` doubled after the checks Keras layers make (``tf.debugging.assert_*``)."""
    tf.debugging.assert_equal(tf.shape(x)[-1], 3, message="three channels")
    tf.debugging.assert_rank(x, 2)
    return x * 2.0


CASES = [
    Case("Reshape", lambda x: tf.reshape(x, [-1, 2]), (((2, 3),), ((4, 1, 2),)), batched=False),
    Case("Reshape", lambda x: tf.reshape(x, tf.concat([tf.shape(x)[:1], [-1]], 0)),
         (((2, 3, 2),),), name="Reshape-dynamic"),
    Case("Squeeze", lambda x: tf.squeeze(x, axis=1), (((2, 1, 3),),)),
    Case("Squeeze", lambda x: tf.squeeze(x), (((2, 1, 3),),), name="Squeeze-all-ones",
         symbolic_xfail="without axes, a free batch is squeezed as TF recorded the output "
                        "shape, and this graph records none (the SavedModel tests below)"),
    Case("ExpandDims", lambda x: tf.expand_dims(x, -1), (((2, 3),),)),
    Case("Transpose", lambda x: tf.transpose(x, [2, 0, 1]), (((2, 3, 4),),)),
    Case("Pack", lambda x, y: tf.stack([x, y], axis=1), (((2, 3), (2, 3)),)),
    Case("Unpack", lambda x: tf.unstack(x, axis=1), (((2, 3, 2),),)),
    Case("ConcatV2", lambda x, y: tf.concat([x, y], -1), (((2, 3), (2, 2)),)),
    Case("Concat", lambda x, y: tf.raw_ops.Concat(concat_dim=0, values=[x, y]),
         (((2, 3), (1, 3)),)),
    Case("Split", lambda x: tf.split(x, 2, axis=1), (((3, 4),),)),
    Case("SplitV", lambda x: tf.split(x, [1, 3], axis=1), (((3, 4),),)),
    Case("Fill", lambda x: x + tf.fill(tf.shape(x), 2.0), (((2, 3),),)),
    # each row's length, as TF 1's dynamic_rnn is fed: symbolic when the batch is
    Case("Fill", lambda x: x * tf.cast(tf.fill([tf.shape(x)[0]], tf.shape(x)[0]),
                                       tf.float32)[:, None], (((3, 2),),),
         name="Fill-of-a-size"),
    Case("ZerosLike", lambda x: tf.raw_ops.ZerosLike(x=x) + x, (((2, 3),),)),
    Case("OnesLike", lambda x: tf.raw_ops.OnesLike(x=x) * x, (((2, 3),),)),
    Case("Range", lambda x: x * tf.cast(tf.range(tf.shape(x)[-1]), tf.float32),
         (((2, 3),),)),
    Case("Range", lambda x: x * tf.cast(tf.range(1, tf.shape(x)[0] + 1, 2), tf.float32)[
        :, None][:1], (((3, 4),),), name="Range-of-batch"),
    Case("Shape", lambda x: x * tf.cast(tf.raw_ops.Shape(input=x)[0], tf.float32),
         (((2, 3),),), name="Shape-of-batch"),
    Case("Shape", lambda x: tf.raw_ops.Shape(input=x), (((2, 3),),), batched=False),
    Case("Size", lambda x: tf.raw_ops.Size(input=x), (((2, 3),),), batched=False),
    Case("Rank", lambda x: tf.raw_ops.Rank(input=x), (((2, 3),),)),
    Case("StridedSlice", lambda x: x[1:, ::2], (((4, 5),),)),
    Case("StridedSlice", lambda x: x[..., tf.newaxis, -1], (((3, 4, 5),),),
         name="StridedSlice-ellipsis-newaxis-shrink"),
    Case("StridedSlice", lambda x: x[::-1, 1:-1], (((4, 5),),), name="StridedSlice-reverse"),
    # An index computed from tensor values (a loop counter, an argmax): size still static.
    Case("StridedSlice", lambda x, i: x[:, i, ..., ::-1], (((4, 5, 3), ()),), (("float32", "int32"),),
         (normal, integers(-5, 5)), name="StridedSlice-traced-index"),
    Case("Slice", lambda x: tf.slice(x, [1, 0], [2, -1]), (((4, 5),),)),
    Case("GatherV2", lambda x, i: tf.gather(x, i, axis=1), (((3, 5), (4,)),),
         dtypes=(("float32", _IDX),), sample=(normal, integers(0, 5))),
    Case("Gather", lambda x, i: tf.raw_ops.Gather(params=x, indices=i), (((5, 3), (2, 4)),),
         dtypes=(("float32", _IDX), ("float32", "int64")), sample=(normal, integers(0, 5)),
         batched=False),
    Case("GatherNd", tf.gather_nd, (((4, 3, 2), (5, 2)), ((4, 3), (2, 2, 1))),
         dtypes=(("float32", _IDX),), sample=(normal, _indices_nd), batched=False),
    Case("ScatterNd", lambda i, u: tf.scatter_nd(i, u, [4, 3, 2]), (((5, 2), (5, 2)),),
         dtypes=((_IDX, "float32"),), sample=(_indices_nd, normal), batched=False),
    Case("TensorScatterUpdate", tf.tensor_scatter_nd_update, (((4, 3), (3, 2), (3,)),),
         dtypes=(("float32", _IDX, "float32"),), sample=(normal, _unique_rows, normal),
         batched=False),
    Case("TensorScatterAdd", tf.tensor_scatter_nd_add, (((4, 3), (5, 2), (5,)),),
         dtypes=(("float32", _IDX, "float32"),), sample=(normal, _indices_nd, normal),
         batched=False),
    Case("TensorScatterSub", tf.tensor_scatter_nd_sub, (((4, 3), (5, 2), (5,)),),
         dtypes=(("float32", _IDX, "float32"),), sample=(normal, _indices_nd, normal),
         batched=False),
    Case("TensorScatterMax", tf.tensor_scatter_nd_max, (((4, 3), (3, 2), (3,)),),
         dtypes=(("float32", _IDX, "float32"),), sample=(normal, _unique_rows, normal),
         batched=False, grad=False),
    Case("TensorScatterMin", tf.tensor_scatter_nd_min, (((4, 3), (3, 2), (3,)),),
         dtypes=(("float32", _IDX, "float32"),), sample=(normal, _unique_rows, normal),
         batched=False, grad=False),
    Case("OneHot", lambda i: tf.one_hot(i, 4, on_value=2.0, off_value=-1.0, axis=0),
         (((3, 2),),), dtypes=(_IDX,), sample=integers(-1, 5), name="OneHot-axis0"),
    Case("Tile", lambda x: tf.tile(x, [2, 1, 3]), (((2, 1, 3),),)),
    Case("BroadcastTo", lambda x: tf.broadcast_to(x, [4, 2, 3]), (((2, 1),),), batched=False),
    Case("BroadcastArgs", lambda x, y: tf.broadcast_to(
        x, tf.broadcast_dynamic_shape(tf.shape(x), tf.shape(y))) + y, (((2, 1), (3, 1, 4)),)),
    Case("Pad", lambda x: tf.pad(x, [[1, 0], [2, 1]]), (((2, 3),),)),
    Case("PadV2", lambda x: tf.pad(x, [[1, 0], [2, 1]], constant_values=3.0), (((2, 3),),)),
    Case("MirrorPad", lambda x: tf.pad(x, [[0, 0], [1, 1], [2, 0]], mode="REFLECT"),
         (((2, 3, 4),),)),
    Case("MirrorPad", lambda x: tf.pad(x, [[1, 2], [0, 1]], mode="SYMMETRIC"), (((3, 4),),),
         name="MirrorPad-symmetric", batched=False),
    Case("ReverseV2", lambda x: tf.reverse(x, [0, -1]), (((2, 3, 4),),)),
    Case("Roll", lambda x: tf.roll(x, [1, -2], [0, 1]), (((3, 4),),)),
    # Lengths 0 and the full length included; batch-major, then time-major (TF 1 RNNs).
    Case("ReverseSequence", lambda x: tf.reverse_sequence(x, [3, 0, 4], seq_axis=1,
                                                          batch_axis=0), (((3, 4, 2),),),
         batched=False),
    Case("ReverseSequence", lambda x: tf.reverse_sequence(x, [2, 5], seq_axis=0,
                                                          batch_axis=1), (((5, 2, 3),),),
         name="ReverseSequence-time-major", batched=False),
    Case("ReverseSequence", lambda x, n: tf.reverse_sequence(x, n, seq_axis=2, batch_axis=0),
         (((3, 2, 4), (3,)),), dtypes=(("float32", "int32"),),
         sample=(normal, integers(0, 5)), name="ReverseSequence-traced-lengths"),
    Case("ReverseSequence", lambda x, n: tf.reverse_sequence(x, n, seq_axis=0, batch_axis=2),
         (((5, 2, 3), (3,)),), (("float32", "int64"),), (normal, integers(0, 6)),
         name="ReverseSequence-batch-last-int64"),
    Case("Roll", lambda x, s: tf.roll(x, s, [2, 1, 2]), (((2, 3, 4), (3,)),),
         (("float32", "int32"),), (normal, integers(-9, 9)), name="Roll-traced-shifts"),
    Case("InvertPermutation", lambda x: tf.transpose(x, tf.math.invert_permutation(
        [2, 0, 1])), (((2, 3, 4),),)),
    Case("Where", lambda x: x * tf.cast(tf.size(tf.where([True, False, True])), tf.float32),
         (((2, 3),),)),
    Case("TopKV2", lambda x: tf.math.top_k(x, 3), (((2, 6),), ((3, 4, 5),)), sample=distinct),
    Case("TopKV2", lambda x: tf.sort(x, direction="DESCENDING"), (((3, 5),),),
         sample=distinct, name="Sort"),
    Case("TopKV2", lambda x: tf.argsort(x), (((3, 5),),), sample=distinct, name="Argsort"),
    Case("LinSpace", lambda a, b: tf.raw_ops.LinSpace(start=a, stop=b, num=5), (((), ()),),
         grad=False),  # TF registers no gradient for LinSpace
    Case("Bitcast", lambda x: tf.bitcast(x, tf.int32), (((2, 3),),)),
    Case("DepthToSpace", lambda x: tf.nn.depth_to_space(x, 2), (((2, 3, 2, 8),),)),
    Case("SpaceToDepth", lambda x: tf.nn.space_to_depth(x, 2), (((2, 4, 6, 3),),)),
    Case("SpaceToBatchND", lambda x: tf.space_to_batch(x, [2, 2], [[0, 1], [1, 1]]),
         (((2, 5, 4, 3),),)),
    Case("BatchToSpaceND", lambda x: tf.batch_to_space(x, [2, 2], [[0, 1], [1, 1]]),
         (((8, 3, 3, 2),),), batched=False),
    Case("PlaceholderWithDefault", lambda x: tf.raw_ops.PlaceholderWithDefault(
        input=x, shape=[None, 3]) * 2.0, (((2, 3),),)),
    Case("Identity", tf.identity, (((2, 3),),)),
    Case("IdentityN", lambda x, y: tf.raw_ops.IdentityN(input=[x, y]), (((2,), (3,)),)),
    Case("StopGradient", lambda x: x * tf.stop_gradient(x), (((2, 3),),)),
    Case("Const", lambda x: x + tf.constant([1.0, 2.0, 3.0]), (((2, 3),),)),
    Case("EnsureShape", lambda x: tf.ensure_shape(x, [None, 3]), (((2, 3),),)),
    Case("CheckNumerics", lambda x: tf.debugging.check_numerics(x, "x"), (((2, 3),),)),
    # TF registers no gradient for Snapshot and refuses one for PreventGradient.
    Case("Snapshot", lambda x: tf.raw_ops.Snapshot(input=x), (((2, 3),),), grad=False),
    Case("PreventGradient", lambda x: tf.raw_ops.PreventGradient(input=x), (((2, 3),),),
         grad=False),
    Case("NoOp", _after_no_op, (((2, 3),),)),
    Case("Assert", _asserting, (((2, 3),),)),
    Case("ConjugateTranspose", lambda x: tf.raw_ops.ConjugateTranspose(x=x, perm=[1, 2, 0]),
         (((2, 3, 4),),)),
    Case("Empty", lambda x: x + tf.raw_ops.Empty(shape=tf.shape(x), dtype=tf.float32,
                                                  init=True), (((2, 3),),)),
    # TF registers no gradient for the Inplace* ops.
    Case("InplaceUpdate", lambda x, v: tf.raw_ops.InplaceUpdate(x=x, i=[2, 0], v=v),
         (((4, 3), (2, 3)),), batched=False, grad=False),
    Case("InplaceAdd", lambda x, v: tf.raw_ops.InplaceAdd(x=x, i=[1, 3], v=v),
         (((4, 3), (2, 3)),), batched=False, grad=False),
    Case("InplaceSub", lambda x, v: tf.raw_ops.InplaceSub(x=x, i=[0], v=v),
         (((4, 3), (1, 3)),), batched=False, grad=False),
    Case("LowerBound", lambda s, v: tf.searchsorted(tf.sort(s), v), (((3, 5), (3, 4)),),
         grad=False),
    Case("UpperBound", lambda s, v: tf.searchsorted(tf.sort(s), tf.round(v), side="right"),
         (((3, 5), (3, 4)),), grad=False),
    Case("GatherV2", lambda x, i: tf.gather(x, i, axis=2, batch_dims=1),
         (((3, 2, 5), (3, 4)),), dtypes=(("float32", _IDX),), sample=(normal, integers(0, 5)),
         name="GatherV2-batch_dims"),
    Case("GatherV2", lambda x: tf.reshape(x, [tf.gather(tf.shape(x), 0), -1]),
         (((2, 3, 4),),), name="GatherV2-of-a-shape"),  # a symbolic batch stays static
    Case("GatherV2", lambda x, i: tf.gather(x, i, axis=-1, batch_dims=-1),
         (((3, 2, 5), (3, 2, 4)),), dtypes=(("float32", _IDX),),
         sample=(normal, integers(0, 5)), name="GatherV2-batch_dims-negative"),
    Case("SplitV", lambda x: tf.split(x, [1, -1, 2], axis=1), (((3, 6),),), name="SplitV-rest"),
    Case("InvertPermutation", lambda p: tf.math.invert_permutation(p), (((5,),),),
         dtypes=(_IDX,), sample=lambda rng, s, d: rng.permutation(s[0]).astype(d),
         batched=False, name="InvertPermutation-traced"),
    Case("Range", lambda x: x[:, :1] * tf.cast(tf.range(
        tf.reduce_sum(tf.constant([1, 2])), 9, tf.constant(2)), tf.float32), (((2, 3),),),
         name="Range-of-computed-bounds"),
    Case("Where", lambda x: tf.gather_nd(x, tf.where(tf.constant([[True, False], [False, True]]))),
         (((2, 2),),), batched=False, name="Where-indices"),
    Case("Cumsum", lambda x: tf.reshape(x, tf.math.cumsum([2, 1, 2])[1:]), (((3, 5),),),
         batched=False, name="Cumsum-of-a-shape"),
    Case("GatherNd", lambda x: tf.reshape(x, tf.gather_nd(tf.constant([[5, 3], [3, 5]]), [1])),
         (((3, 5),),), batched=False, name="GatherNd-of-a-shape"),
    Case("ScatterNd", lambda x: tf.reshape(x, tf.scatter_nd([[1], [0]], [3, 5], [2])),
         (((3, 5),),), batched=False, name="ScatterNd-of-a-shape"),
    Case("Cumprod", lambda x: tf.reshape(x, tf.math.cumprod([3, 5])[1:]), (((3, 5),),),
         batched=False, name="Cumprod-of-a-shape"),
    # Constant indices: they decide the output's size. Rows 1..2 of the second data tensor
    # are a [2, 2] block of indices; row 6 is never named (zeros).
    Case("DynamicStitch", lambda a, b: tf.dynamic_stitch([[0, 4, 2], [[1, 3], [5, 7]]], [a, b]),
         (((3, 2), (2, 2, 2)),), batched=False),
    # Of equal indices the later wins. TF's gradient reaches the overwritten entry too
    # (a gather of the output's): values only.
    Case("DynamicStitch", lambda a, b: tf.dynamic_stitch([[0, 4, 2], [[1, 3], [5, 4]]], [a, b]),
         (((3, 2), (2, 2, 2)),), batched=False, grad=False, name="DynamicStitch-repeated"),
    Case("ParallelDynamicStitch", lambda a, b: tf.raw_ops.ParallelDynamicStitch(
        indices=[[0, 2], [3, 1]], data=[a, b]), (((2, 3), (2, 3)),), batched=False),
    Case("Conv2D", lambda x, k: tf.nn.atrous_conv2d(x, k, 2, "SAME"),
         (((1, 8, 8, 2), (3, 3, 2, 3)),), name="Atrous-conv", rtol=1e-4, atol=1e-4),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)


def test_strided_slices_of_a_symbolic_batch_are_slices_not_gathers():
    """Steps (``::2``, ``::-1``) become lax slices and reversals: ``jnp`` indexing would
    gather (and scatter in the gradient) once the batch size is symbolic."""
    import jax
    import jax.numpy as jnp
    from jax import export

    from jaxhub_tf.from_tf.interpreter import run_graph
    fn = tf.function(lambda x: x[:, ::2, ..., 4:0:-2])
    concrete = fn.get_concrete_function(tf.TensorSpec((None, 5, 3, 6), tf.float32))
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    converted = lambda x: run({}, [x])[0][0]  # noqa: E731
    (batch,) = export.symbolic_shape("batch")
    jaxpr = jax.make_jaxpr(jax.grad(lambda x: jnp.sum(converted(x))))(
        jax.ShapeDtypeStruct((batch, 5, 3, 6), jnp.float32))
    primitives = {eqn.primitive.name for eqn in jaxpr.jaxpr.eqns}
    assert not primitives & {"gather", "scatter", "scatter-add", "scatter_add"}, primitives
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 6)).astype(np.float32)
    np.testing.assert_array_equal(converted(jnp.asarray(x)), concrete(tf.constant(x)))


def test_an_assert_false_on_constants_fails_naming_the_node():
    def checked(x):
        tf.raw_ops.Assert(condition=tf.equal(tf.shape(x)[-1], 4), data=[tf.shape(x)],
                          name="four_channels")
        return x * 2.0

    case = Case("Assert", checked)
    _, converted = convert(case, [(2, 3)], [np.float32])
    with pytest.raises(Exception, match="four_channels") as error:
        converted(np.zeros((2, 3), np.float32))
    assert "condition is false on constant inputs" in str(error.value)
    assert "[2, 3]" in str(error.value)  # the data TF would print


# -- Squeeze without axes over a free batch ---------------------------------------------


class _Squeezes(tf.Module):
    """``tf.squeeze`` without axes drops what is 1 at run time; where a size is free (the
    batch), the output shape TF recorded (here by ``set_shape``) says what the model
    drops."""

    @tf.function(input_signature=[tf.TensorSpec([None, 1, 4], tf.float32)])
    def kept(self, x):
        y = tf.squeeze(x)
        y.set_shape([None, 4])
        return tf.tanh(y)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def dropped(self, x):
        y = tf.squeeze(x)
        y.set_shape([4])
        return tf.tanh(y)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def given(self, x):
        return tf.tanh(tf.squeeze(x, axis=0))


@pytest.fixture(scope="module")
def squeezes(tmp_path_factory):
    root = tmp_path_factory.mktemp("squeezes")
    model = _Squeezes()
    tf.saved_model.save(model, str(root / "saved"), signatures={
        "kept": model.kept, "dropped": model.dropped, "given": model.given})
    convert_saved_model(root / "saved", root / "converted", checks=True)
    return model, jaxhub.load(root / "converted")


def _batch(size: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(size).standard_normal((size, *shape)).astype(np.float32)


def _assert_grad_matches_tf(fn, module, signature, x):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(fn(xt) ** 2)
    grad = jax.grad(lambda v: jnp.sum(module(v, signature=signature) ** 2))(x)
    np.testing.assert_allclose(grad, tape.gradient(loss, xt).numpy(), rtol=1e-5, atol=1e-6)


def test_squeeze_keeps_a_free_batch_that_tf_recorded_kept(squeezes):
    model, module = squeezes
    x = _batch(3, 1, 4)
    np.testing.assert_allclose(module(x, signature="kept"), model.kept(x).numpy(), rtol=1e-6)
    _assert_grad_matches_tf(model.kept, module, "kept", x)
    # At batch 1 TF's kernel drops the batch too, against the shape it recorded; the
    # module keeps its signature's shape, with TF's values.
    x = _batch(1, 1, 4)
    assert model.kept(x).shape == (4,) and module(x, signature="kept").shape == (1, 4)
    np.testing.assert_allclose(module(x, signature="kept")[0], model.kept(x).numpy(),
                               rtol=1e-6)


def test_squeeze_drops_a_free_batch_that_tf_recorded_dropped(squeezes):
    model, module = squeezes
    x = _batch(1, 4)
    assert module(x, signature="dropped").shape == model.dropped(x).shape == (4,)
    np.testing.assert_allclose(module(x, signature="dropped"), model.dropped(x).numpy(),
                               rtol=1e-6)
    _assert_grad_matches_tf(model.dropped, module, "dropped", x)
    # A batch of 3 is not the shape TF recorded: the check fails, naming the node.
    with pytest.raises(checkify.JaxRuntimeError,
                       match=r"Squeeze\) failed: axis 0 is squeezed, so its size must be 1"):
        module(_batch(3, 4), signature="dropped")


def test_squeeze_of_a_free_axis_given_runs_where_tf_runs(squeezes):
    model, module = squeezes
    x = _batch(1, 4)
    np.testing.assert_allclose(module(x, signature="given"), model.given(x).numpy(),
                               rtol=1e-6)
    _assert_grad_matches_tf(model.given, module, "given", x)
    with pytest.raises(tf.errors.InvalidArgumentError, match="squeeze"):
        model.given(_batch(3, 4))
    with pytest.raises(checkify.JaxRuntimeError, match="axis 0 is squeezed"):
        module(_batch(3, 4), signature="given")


def test_squeeze_of_a_free_batch_without_a_recorded_shape_is_refused(tmp_path):
    class Unrecorded(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1, 4], tf.float32)])
        def __call__(self, x):
            return tf.squeeze(x, name="logits")

    tf.saved_model.save(Unrecorded(), str(tmp_path / "saved"))
    with pytest.raises(Exception, match=r"'logits' \(Squeeze\)") as error:
        convert_saved_model(tmp_path / "saved", tmp_path / "converted")
    assert "tf.squeeze(x, axis=...)" in str(error.value)
    assert "no output shape" in str(error.value)
