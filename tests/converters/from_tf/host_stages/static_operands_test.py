"""Host stages for ops whose static operands follow the signature's input values.

A shape, paddings, a ``k``, a depth, multiples, a permutation, an axis or split sizes
that a TF2 SavedModel computes from its inputs' values cannot be known while JAX traces
(the interpreter's ``STATIC_OPERANDS``): the op and the ops computing its inputs from the
signature's inputs run in a host stage; what follows (here a product with a variable)
stays in the device function. Outputs are compared with TF on several inputs through
``apply`` and through ``preprocess`` + ``jax.jit(apply_device)``. (A ragged tensor's
dense form is such an op when its longest row sets the shape.) A sparse-segment
reduction's ids move alone: the host stage feeds their count, and the reduction (of params,
say) stays on the device. When such an operand comes from params, the graph is refused,
naming the op and what blocks it.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

import jaxhub
from tests.converters.from_tf.host_stages._outputs import (
    assert_matches_tf, assert_outputs_match, saved_and_loaded, signature_arrays)
from jaxhub_tf.from_tf.host_stages.split import HostStageUnsupportedError
from jaxhub_tf.from_tf.saved_model import load_saved_model

_X = tf.TensorSpec([None, 3], tf.float32)
_INT = tf.TensorSpec([], tf.int32)
_INTS = tf.TensorSpec([None], tf.int32)


class _StaticOperands(tf.Module):
    """One signature per op whose static operand is an input (or computed from one)."""

    def __init__(self):
        super().__init__()
        self.scale = tf.Variable(1.5, name="scale")

    @tf.function(input_signature=[_X, tf.TensorSpec([3], tf.int32)])
    def reshaped(self, x, shape):
        return {"y": tf.reshape(x, shape) * self.scale}

    @tf.function(input_signature=[_X, tf.TensorSpec([2, 2], tf.int32)])
    def padded(self, x, paddings):
        return {"constant": tf.pad(x, paddings, constant_values=-1.0) * self.scale,
                "reflect": tf.pad(x, paddings, mode="REFLECT") * self.scale,
                "symmetric": tf.pad(x, paddings, mode="SYMMETRIC") * self.scale}

    @tf.function(input_signature=[_X, _INT])
    def top_k(self, x, k):
        values, indices = tf.math.top_k(x, k + 1)  # computed from the input
        return {"values": values * self.scale, "indices": indices}

    @tf.function(input_signature=[_INTS, _INT])
    def one_hot(self, indices, depth):
        return {"y": tf.one_hot(indices, depth, on_value=2.0, off_value=-1.0) * self.scale}

    @tf.function(input_signature=[_X, tf.TensorSpec([2], tf.int32)])
    def tiled(self, x, multiples):
        return {"y": tf.tile(x, multiples) * self.scale}

    @tf.function(input_signature=[tf.TensorSpec([2, 3, 4], tf.float32),
                                  tf.TensorSpec([3], tf.int32)])
    def transposed(self, x, perm):
        return {"y": tf.transpose(x, perm) * self.scale}

    @tf.function(input_signature=[_X, _INT])
    def by_axis(self, x, axis):
        return {"sum": tf.reduce_sum(x, axis) * self.scale,
                "reversed": tf.reverse(x, [axis]) * self.scale,
                "argmax": tf.argmax(x, axis),
                "concat": tf.concat([x, x], axis) * self.scale}

    @tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float32),
                                  tf.TensorSpec([2], tf.int32)])
    def diagonals(self, d, k):
        band = tf.linalg.diag(d, k=k, num_rows=-1, num_cols=-1)
        return {"band": band * self.scale,
                "part": tf.linalg.diag_part(band, k=k) * self.scale}

    @tf.function(input_signature=[_X, tf.TensorSpec([2], tf.int32)])
    def split_by_sizes(self, x, sizes):
        first, second = tf.split(x, sizes, axis=1)
        return {"first": first * self.scale, "second": second * self.scale}

    @tf.function(input_signature=[_INT])
    def eye(self, n):
        # Ones of a computed length (host) packed into a matrix on the device, square and
        # wide (a diagonal set into zeros of a computed shape).
        return {"square": tf.eye(n) * self.scale, "wide": tf.eye(n, n + 2, dtype=tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), _INTS, _INTS, _INT])
    def to_tensor(self, values, splits, rowids, nrows):
        # The longest row (and a row count given as a value) sets the dense shape.
        by_splits = tf.RaggedTensor.from_row_splits(values, splits)
        by_ids = tf.RaggedTensor.from_value_rowids(values, rowids, nrows)
        return {"splits": by_splits.to_tensor(default_value=7.0) * self.scale,
                "rowids": by_ids.to_tensor() * self.scale,
                # Given the dense shape, on the device: it reads the values and the splits,
                # whose lengths are unrelated, as the host stage does.
                "given": by_splits.to_tensor(shape=[None, 2]) * self.scale}

    @tf.function(input_signature=[_X, _INTS, _INTS])
    def segments(self, data, indices, segment_ids):
        # As many rows as the largest segment id + 1.
        return {"sum": tf.sparse.segment_sum(data, indices, segment_ids) * self.scale,
                "mean": tf.sparse.segment_mean(data, indices, segment_ids),
                "sqrt_n": tf.sparse.segment_sqrt_n(data, indices, segment_ids)}

    @tf.function(input_signature=[_X, tf.TensorSpec([2, 2], tf.int32)])
    def reshaped_inferred(self, x, paddings):
        # A -1 over two sizes the paddings set: their product over 3, checked when called.
        return {"y": tf.reshape(tf.pad(x, paddings), [-1, 3]) * self.scale}

    @tf.function(input_signature=[tf.TensorSpec([2, 4], tf.float32), _INT, _INT])
    def concat_sliced(self, x, start, step):
        # Columns of a slice that the inputs set (no rank recorded: a computed stride),
        # beside two of a static slice: the concatenation needs the two equal, which only
        # the call tells.
        return {"y": tf.concat([x[:, :2], x[:, start::step]], axis=0) * self.scale}

    @tf.function(input_signature=[tf.TensorSpec([3, 4], tf.float32), _INT, _INT])
    def sliced_masks(self, x, start, step):
        # Computed bounds and strides with a new axis, a shrunk one and an ellipsis: the
        # masks set the ranks.
        return {"new_and_shrunk": x[tf.newaxis, start::step, 1] * self.scale,
                "ellipsis": x[..., start::step] * self.scale}

    @tf.function(input_signature=[tf.TensorSpec([2, 10, 3], tf.float32),
                                  tf.TensorSpec([4, 3, 5], tf.float32),
                                  tf.TensorSpec([3, 2], tf.int32)])
    def conv_padded_kernel(self, x, kernel, paddings):
        # A kernel whose window, input and output channels the paddings set.
        return {"y": tf.nn.conv1d(x, tf.pad(kernel, paddings), 1, "VALID") * self.scale}


_RNG = np.random.default_rng(0)
_ROWS = _RNG.standard_normal([4, 3])

#: signature -> inputs to compare on.
CASES = {
    "reshaped": [{"x": _ROWS, "shape": [3, 4, 1]}, {"x": _ROWS, "shape": [2, -1, 2]},
                 {"x": _ROWS[:1], "shape": [1, 3, 1]}],
    "padded": [{"x": _ROWS, "paddings": [[1, 2], [0, 2]]},
               {"x": _ROWS[:2], "paddings": [[0, 0], [1, 1]]}],
    "top_k": [{"x": [[3, 1, 3], [0, 5, 0]], "k": 1}, {"x": _ROWS, "k": 2},
              {"x": _ROWS, "k": -1}],
    "one_hot": [{"indices": [0, 2, 5, -1], "depth": 4}, {"indices": [1], "depth": 2}],
    "tiled": [{"x": _ROWS[:2], "multiples": [2, 3]}, {"x": _ROWS, "multiples": [1, 1]}],
    "transposed": [{"x": _RNG.standard_normal([2, 3, 4]), "perm": [2, 0, 1]},
                   {"x": _RNG.standard_normal([2, 3, 4]), "perm": [0, 1, 2]}],
    "by_axis": [{"x": _ROWS, "axis": 0}, {"x": _ROWS, "axis": 1}, {"x": _ROWS, "axis": -1}],
    "diagonals": [{"d": [[1, 2, 3], [4, 5, 6]], "k": [0, 1]},
                  {"d": [[1, 2, 3], [4, 5, 6]], "k": [-2, -1]}],
    "split_by_sizes": [{"x": _ROWS, "sizes": [1, 2]}, {"x": _ROWS[:1], "sizes": [2, 1]}],
    "eye": [{"n": 3}, {"n": 1}],
    "to_tensor": [{"values": [1, 2, 3, 4, 5], "splits": [0, 2, 2, 5], "rowids": [0, 0, 2, 2, 3],
                   "nrows": 5},
                  {"values": [4], "splits": [0, 1], "rowids": [1], "nrows": 2}],
    "segments": [{"data": _ROWS, "indices": [2, 0, 1, 3, 3], "segment_ids": [0, 0, 1, 3, 3]},
                 {"data": _ROWS[:2], "indices": [1], "segment_ids": [0]}],
    "reshaped_inferred": [{"x": _ROWS, "paddings": [[1, 0], [0, 0]]},
                          {"x": _ROWS, "paddings": [[0, 0], [1, 2]]}],
    "concat_sliced": [{"x": _ROWS.reshape(2, 6)[:, :4], "start": 1, "step": -1},
                      {"x": _ROWS.reshape(2, 6)[:, :4], "start": 0, "step": 3}],
    "sliced_masks": [{"x": _ROWS.T, "start": 2, "step": -1},
                     {"x": _ROWS.T, "start": 0, "step": 2}],
    "conv_padded_kernel": [
        {"x": _RNG.standard_normal([2, 10, 3]), "kernel": _RNG.standard_normal([4, 3, 5]),
         "paddings": np.zeros([3, 2])},
        {"x": _RNG.standard_normal([2, 10, 3]), "kernel": _RNG.standard_normal([4, 3, 5]),
         "paddings": [[1, 2], [0, 0], [0, 1]]}],
}


def _arrays(signature: str, inputs: dict) -> dict[str, np.ndarray]:
    return signature_arrays(_StaticOperands, signature, inputs)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return saved_and_loaded(_StaticOperands(), CASES,
                            tmp_path_factory.mktemp("static_operands"))


@pytest.mark.parametrize("signature,index", [(s, i) for s, cases in CASES.items()
                                             for i in range(len(cases))])
def test_outputs_match_tf_through_apply_and_jitted_apply_device(saved, signature, index):
    model, module = saved
    assert module.has_host_stage(signature)
    assert_matches_tf(model, module, signature, _arrays(signature, CASES[signature][index]))


def test_what_follows_the_op_stays_on_the_device(saved):
    # The host stage hands over the padded array; the product with the variable is the
    # device function's.
    _, module = saved
    arrays = _arrays("padded", CASES["padded"][0])
    feeds = module.preprocess(arrays, signature="padded")
    padded = tf.pad(arrays["x"], arrays["paddings"], constant_values=-1.0).numpy()
    assert any(np.array_equal(v, padded) for v in feeds.values())


class _FromParams(tf.Module):
    """Paddings computed from a variable: only the device knows them."""

    def __init__(self):
        super().__init__()
        self.extra = tf.Variable(1)

    @tf.function(input_signature=[_X, _INT])
    def __call__(self, x, n):
        return tf.pad(x, [[0, n + self.extra], [0, 0]])


def test_paddings_computed_from_params_are_refused_naming_the_op(tmp_path):
    model = _FromParams()
    tf.saved_model.save(model, str(tmp_path), signatures=model.__call__)
    with pytest.raises(HostStageUnsupportedError,
                       match=r"Pad node '[^']*' needs a shape, size, axis or count while "
                             r"tracing that the values of the signature's inputs set; .*"
                             r"ReadVariableOp '[^']*' \(params or random numbers\)"):
        load_saved_model(tmp_path)


class _Embeddings(tf.Module):
    """A sparse-segment reduction of a table (params) by segment ids computed from an
    input: only the ids move to the host stage."""

    def __init__(self):
        super().__init__()
        self.table = tf.Variable(np.arange(15, dtype=np.float32).reshape(5, 3) / 7)

    # The signature names the ids otherwise than the function's argument.
    @tf.function(input_signature=[_INTS, tf.TensorSpec([None], tf.int32, name="segments")])
    def __call__(self, ids, rows):
        return {"y": tf.sparse.segment_mean(self.table, ids, rows // 2),
                "sum": tf.sparse.segment_sum(self.table, ids, rows)}


def test_segment_ids_from_inputs_leave_the_reduction_of_params_on_the_device(tmp_path):
    model = _Embeddings()
    tf.saved_model.save(model, str(tmp_path / "sm"), signatures=model.__call__)
    module = jaxhub.load(tmp_path / "sm", cache_dir=tmp_path / "cache")
    ids, rows = np.array([4, 0, 2, 2], np.int32), np.array([0, 1, 4, 5], np.int32)
    with tf.GradientTape() as tape:
        theirs = {k: v for k, v in model(ids, rows).items()}
        loss = tf.reduce_sum(theirs["y"] * theirs["y"])
    want_grad = tf.convert_to_tensor(tape.gradient(loss, model.table)).numpy()
    theirs = {k: v.numpy() for k, v in theirs.items()}
    arrays = {"ids": ids, "segments": rows}
    assert_outputs_match(module.apply(module.params, arrays, as_dict=True), theirs)
    feeds = module.preprocess(arrays)
    device = jax.jit(lambda params: module.apply_device(params, feeds, as_dict=True))
    assert_outputs_match(device(module.params), theirs)
    # The device function reads the table: its gradient is TF's.
    grads = jax.grad(lambda params: jnp.sum(device(params)["y"] ** 2))(module.params)
    np.testing.assert_allclose(jax.tree.leaves(grads)[0], want_grad, rtol=1e-5)


class _Draws(tf.Module):
    """Random numbers of a shape computed from an input: the host stage computes the
    shape, the device function draws (with the caller's key)."""

    @tf.function(input_signature=[tf.TensorSpec([2], tf.int32), _INT])
    def draw(self, shape, high):
        return {"normal": tf.random.normal(shape + 1),
                "uniform": tf.random.uniform(tf.reverse(shape, [0])),
                "ints": tf.random.uniform(shape, maxval=high, dtype=tf.int32)}


@pytest.mark.parametrize("shape,high", [([300, 2], 3), ([1, 5], 1)])
def test_random_draws_of_a_shape_computed_from_inputs_have_tfs_shapes(tmp_path, shape, high):
    model = _Draws()
    tf.saved_model.save(model, str(tmp_path / "sm"), signatures=model.draw)
    module = jaxhub.load(tmp_path / "sm", cache_dir=tmp_path / "cache")
    arrays = {"shape": np.array(shape, np.int32), "high": np.array(high, np.int32)}
    theirs = {k: v.numpy() for k, v in model.draw(**arrays).items()}
    key = jax.random.key(3)
    feeds = module.preprocess(arrays, signature="draw")
    device = jax.jit(lambda feeds, key: module.apply_device(
        module.params, feeds, signature="draw", rng=key, as_dict=True))
    for ours in (module.apply(module.params, arrays, signature="draw", rng=key, as_dict=True),
                 device(feeds, key)):
        for name, want in theirs.items():
            got = np.asarray(ours[name])
            assert got.shape == want.shape, name
            assert got.dtype == jax.dtypes.canonicalize_dtype(want.dtype), name
        assert set(np.unique(ours["ints"])) <= set(range(high))
        assert 0 <= np.min(ours["uniform"]) and np.max(ours["uniform"]) < 1
        if np.size(ours["normal"]) > 500:  # standard normal
            assert abs(np.mean(ours["normal"])) < 0.2 and 0.8 < np.std(ours["normal"]) < 1.2


class _RankFromValues(tf.Module):
    """A reshape to a shape whose length the paddings' values set: no rank to export."""

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32), tf.TensorSpec([3], tf.int32),
                                  tf.TensorSpec([1, 2], tf.int32)])
    def __call__(self, x, shape, paddings):
        return tf.squeeze(tf.reshape(x, tf.pad(shape, paddings, constant_values=1)))


def test_a_rank_set_by_input_values_is_refused_naming_the_fix(tmp_path):
    model = _RankFromValues()
    tf.saved_model.save(model, str(tmp_path), signatures=model.__call__)
    with pytest.raises(HostStageUnsupportedError,
                       match=r"Reshape node '[^']*Reshape' reshapes to a shape whose "
                             r"length the values of the signature's inputs "
                             r"\['paddings', 'shape'\] set, so the rank of its result .* "
                             r"follows them.*tf\.ensure_shape"):
        load_saved_model(tmp_path)


class _SizeFromValues(tf.Module):
    """A slice whose size the input ``n`` sets, added to one of size 3: the device function
    cannot know the two agree."""

    @tf.function(input_signature=[tf.TensorSpec([6], tf.float32), _INT])
    def __call__(self, x, n):
        return x[:3] + x[n:]


def test_a_size_set_by_input_values_that_must_match_another_is_refused_naming_it(tmp_path):
    model = _SizeFromValues()
    tf.saved_model.save(model, str(tmp_path), signatures=model.__call__)
    with pytest.raises(HostStageUnsupportedError,
                       match=r"TF node '[^']*' \(AddV2\) failed: .*n\d+ is axis 0 of the host "
                             r"stage's result 'host_\d+' \('[^']*strided_slice[^']*', output 0\)"
                             r": a size that the values of the signature's inputs set.*"
                             r"tf\.ensure_shape"):
        jaxhub.load(tmp_path, cache_dir=tmp_path / "cache")


def test_sizes_that_must_agree_and_only_a_call_decides_are_checked_when_called(saved):
    # As TF's kernels refuse them: a remainder for the -1, slices of unequal widths
    # concatenated, a kernel whose input channels are not the input's.
    model, module = saved
    for signature, inputs in [
            ("reshaped_inferred", {"x": _ROWS, "paddings": [[0, 0], [0, 1]]}),
            ("concat_sliced", {"x": _ROWS.reshape(2, 6)[:, :4], "start": 2, "step": -1}),
            ("conv_padded_kernel", {"x": _RNG.standard_normal([2, 10, 3]),
                                    "kernel": _RNG.standard_normal([4, 3, 5]),
                                    "paddings": [[0, 0], [0, 1], [0, 0]]})]:
        arrays = _arrays(signature, inputs)
        with pytest.raises(tf.errors.InvalidArgumentError):
            getattr(model, signature)(**arrays)
        with pytest.raises(ValueError, match="Error refining shapes"):
            module.apply(module.params, arrays, signature=signature)
