"""The host stage's ragged ops give what TF's kernels give, on the same row splits."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from jaxhub._src.host import ops as host_ops
from jaxhub._src.host.limits import HostLimits, HostStageError
from jaxhub._src.host.program import HostNode


def run(op: str, *inputs, **attrs):
    """The host op ``op`` on numpy ``inputs``; a tuple of results."""
    result = host_ops.lookup(op)(HostNode("n", op, (), attrs), *inputs)
    return result if isinstance(result, tuple) else (result,)


def assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        b = np.asarray(b)
        assert np.asarray(a).shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), b)


#: A ragged tensor [3, (2, 0, 3), (…)] with two ragged dimensions, values int32.
OUTER = np.array([0, 2, 2, 5], np.int64)
INNER = np.array([0, 1, 3, 3, 4, 7], np.int64)
VALUES = np.arange(7, dtype=np.int32) * 10


@pytest.mark.parametrize("indices", [[2, 0, 0, 1], [], [[0, 2], [1, 1], [2, 0]]])
def test_ragged_gather_matches_tf(indices):
    indices = np.asarray(indices, np.int64).reshape(np.shape(indices))
    out_rank = 2 + max(indices.ndim - 1, 0)
    theirs = tf.raw_ops.RaggedGather(params_nested_splits=[OUTER, INNER],
                                     params_dense_values=VALUES, indices=indices,
                                     OUTPUT_RAGGED_RANK=out_rank)
    assert_same(run("RaggedGather", OUTER, INNER, VALUES, indices),
                [*theirs.output_nested_splits, theirs.output_dense_values])


@pytest.mark.parametrize("index", [3, -1])
def test_ragged_gather_refuses_an_index_outside_the_rows_as_tf(index):
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.raw_ops.RaggedGather(params_nested_splits=[OUTER], params_dense_values=VALUES[:5],
                                indices=np.array([index]), OUTPUT_RAGGED_RANK=1)
    with pytest.raises(ValueError, match=f"index {index} is out of range for 3 rows"):
        run("RaggedGather", OUTER, VALUES[:5], np.array([index]))


@pytest.mark.parametrize("starts,limits,deltas", [
    ([0, 5, 3], [4, 5, 10], [1, 2, 3]), (2, [7, 3, 9], 2), ([10, 4], [0, 9], [-3, 2]),
    ([0.5, 1.0], [2.0, 3.5], [0.5, 0.75])])
def test_ragged_range_matches_tf(starts, limits, deltas):
    dtype = np.float32 if isinstance(np.asarray(starts).flat[0], float) else np.int32
    args = [np.asarray(v, dtype) for v in (starts, limits, deltas)]
    theirs = tf.ragged.range(*args, row_splits_dtype=tf.int64)
    assert_same(run("RaggedRange", *args), [theirs.row_splits, theirs.flat_values])


@pytest.mark.parametrize("shape", [-1, [-1, -1, -1], [2, 5, 2], [4, 1, 4], [3, -1, 1]])
def test_ragged_to_tensor_pads_and_truncates_as_tf(shape):
    shape = np.asarray(shape, np.int64)
    theirs = tf.raw_ops.RaggedTensorToTensor(
        shape=shape, values=VALUES, default_value=np.int32(-1),
        row_partition_tensors=[OUTER, INNER], row_partition_types=["ROW_SPLITS"] * 2)
    ours = run("RaggedTensorToTensor", shape, VALUES, np.int32(-1), OUTER, INNER,
               row_partition_types=["ROW_SPLITS", "ROW_SPLITS"])
    assert_same(ours, [theirs])


def test_ragged_to_tensor_reads_row_ids_and_inner_dense_dimensions():
    values = np.arange(12, dtype=np.float32).reshape(6, 2)
    rowids = np.array([0, 0, 2, 2, 2, 4], np.int64)
    nrows = np.int64(5)
    shape = np.asarray([-1, 4, 2], np.int64)
    theirs = tf.raw_ops.RaggedTensorToTensor(
        shape=shape, values=values, default_value=np.float32(0.5),
        row_partition_tensors=[nrows, rowids],
        row_partition_types=["FIRST_DIM_SIZE", "VALUE_ROWIDS"])
    ours = run("RaggedTensorToTensor", shape, values, np.float32(0.5), nrows, rowids,
               row_partition_types=["FIRST_DIM_SIZE", "VALUE_ROWIDS"])
    assert_same(ours, [theirs])


def test_ragged_to_sparse_matches_tf():
    theirs = tf.raw_ops.RaggedTensorToSparse(rt_nested_splits=[OUTER, INNER],
                                             rt_dense_values=VALUES)
    assert_same(run("RaggedTensorToSparse", OUTER, INNER, VALUES),
                [theirs.sparse_indices, theirs.sparse_values, theirs.sparse_dense_shape])


def test_tile_and_transpose_match_tf():
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert_same(run("Tile", x, np.array([2, 1])), [tf.tile(x, [2, 1])])
    assert_same(run("Transpose", x, np.array([1, 0])), [tf.transpose(x)])


def test_a_ragged_op_checks_its_size_before_allocating():
    node = HostNode("big", "RaggedRange", (), {}, HostLimits(max_elements=100))
    with pytest.raises(HostStageError, match="would make 1,000 elements"):
        host_ops.lookup("RaggedRange")(node, np.int32(0), np.int32(1000), np.int32(1))
