"""The host stage's sparse ops give what TF's kernels give: ``SparseFillEmptyRows``, the
set operations (``DenseToDenseSetOperation``, ``DenseToSparseSetOperation``,
``SparseToSparseSetOperation``), and tables filled from tensors (``InitializeTableV2``,
``LookupTableImportV2``); they refuse what TF refuses."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from jaxhub._src.host import ops as host_ops
from jaxhub._src.host.program import HostNode
from tests.host.ops_test import assert_same, run

#: (indices, values, dense_shape): sorted, unsorted with repeated rows, all rows empty, no
#: rows at all, rank 3.
FILL_CASES = [
    ([[0, 1], [2, 0], [2, 2], [4, 1]], [1.5, 2.5, 3.5, 4.5], [6, 3]),
    ([[3, 1], [0, 2], [3, 0], [1, 1], [0, 0]], [1, 2, 3, 4, 5], [5, 4]),
    (np.zeros((0, 2)), [], [3, 4]),
    (np.zeros((0, 2)), [], [0, 4]),
    ([[1, 0, 2], [1, 1, 0]], [7, 8], [3, 2, 3]),
]


@pytest.mark.parametrize("indices,values,shape", FILL_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_sparse_fill_empty_rows_matches_tf(indices, values, shape, dtype):
    indices = np.asarray(indices, np.int64).reshape(-1, len(shape))
    values, shape = np.asarray(values, dtype), np.asarray(shape, np.int64)
    default = dtype(-1)
    theirs = tf.raw_ops.SparseFillEmptyRows(indices=indices, values=values,
                                            dense_shape=shape, default_value=default)
    assert_same(run("SparseFillEmptyRows", indices, values, shape, default),
                [t.numpy() for t in theirs])


@pytest.mark.parametrize("indices,shape", [([[0, 0], [5, 1]], [5, 2]), ([[-1, 0]], [3, 2]),
                                           ([[0, 0]], [0, 2])])
def test_sparse_fill_empty_rows_refuses_rows_outside_the_shape_as_tf(indices, shape):
    args = [np.asarray(indices, np.int64), np.ones(len(indices), np.float32),
            np.asarray(shape, np.int64), np.float32(0)]
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.raw_ops.SparseFillEmptyRows(indices=args[0], values=args[1], dense_shape=args[2],
                                       default_value=args[3])
    with pytest.raises(ValueError, match=r"indices\(\d, 0\) = -?\d is not a row"):
        run("SparseFillEmptyRows", *args)


SETS = [np.array([[10, 2, 30, 2, 5], [10, 9, 1, 9, 3]]),
        np.array([[4, 5, 10, 8, 9], [1, 4, 1, 1, 5]])]
OPERATIONS = ["a-b", "b-a", "intersection", "union"]


def _sparse(dense: np.ndarray, keep: np.ndarray):
    """The entries of ``dense`` where ``keep``, as sparse parts (row-major order)."""
    indices = np.argwhere(keep).astype(np.int64)
    return indices, dense[keep], np.asarray(dense.shape, np.int64)


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, object])
def test_dense_to_dense_set_operations_match_tf(operation, dtype):
    a, b = (s.astype(dtype) if dtype is not object else
            np.vectorize(lambda v: str(v).encode(), otypes=[object])(s) for s in SETS)
    theirs = tf.raw_ops.DenseToDenseSetOperation(set1=a, set2=b, set_operation=operation)
    assert_same(run("DenseToDenseSetOperation", a, b, set_operation=operation),
                [t.numpy() for t in theirs])


def test_dense_to_dense_set_operation_of_rank_3_with_empty_results_matches_tf():
    a = np.array([[[1, 1], [2, 3]], [[4, 4], [5, 6]]], np.int32)
    b = np.array([[[1, 2], [2, 3]], [[7, 7], [5, 6]]], np.int32)
    theirs = tf.raw_ops.DenseToDenseSetOperation(set1=a, set2=b, set_operation="a-b")
    assert_same(run("DenseToDenseSetOperation", a, b, set_operation="a-b"),
                [t.numpy() for t in theirs])


@pytest.mark.parametrize("operation", OPERATIONS)
def test_dense_to_sparse_and_sparse_to_sparse_set_operations_match_tf(operation):
    rng = np.random.default_rng(0)
    a, b = (s.astype(np.int64) for s in SETS)
    b_parts = _sparse(b, rng.random(b.shape) < 0.5)
    a_parts = _sparse(a, np.array([[True] * 5, [False] * 5]))  # row 1 missing from set 1
    theirs = tf.raw_ops.DenseToSparseSetOperation(
        set1=a, set2_indices=b_parts[0], set2_values=b_parts[1], set2_shape=b_parts[2],
        set_operation=operation)
    assert_same(run("DenseToSparseSetOperation", a, *b_parts, set_operation=operation),
                [t.numpy() for t in theirs])
    theirs = tf.raw_ops.SparseToSparseSetOperation(
        set1_indices=a_parts[0], set1_values=a_parts[1], set1_shape=a_parts[2],
        set2_indices=b_parts[0], set2_values=b_parts[1], set2_shape=b_parts[2],
        set_operation=operation)
    assert_same(run("SparseToSparseSetOperation", *a_parts, *b_parts,
                    set_operation=operation), [t.numpy() for t in theirs])


def test_set_operations_refuse_what_tf_refuses():
    a, b = SETS[0], SETS[1][:1]
    with pytest.raises(tf.errors.InvalidArgumentError):  # leading dimensions differ
        tf.raw_ops.DenseToDenseSetOperation(set1=a, set2=b, set_operation="union")
    with pytest.raises(ValueError, match=r"leading dimensions differ: \[2\] vs \[1\]"):
        run("DenseToDenseSetOperation", a, b, set_operation="union")
    unsorted = (np.array([[1, 0], [0, 1]], np.int64), np.array([3, 4]),
                np.array([2, 2], np.int64))
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.raw_ops.DenseToSparseSetOperation(set1=a[:, :2], set2_indices=unsorted[0],
                                             set2_values=unsorted[1], set2_shape=unsorted[2],
                                             set_operation="union")
    with pytest.raises(ValueError, match=r"index \[0, 1\] is out of order"):
        run("DenseToSparseSetOperation", a[:, :2], *unsorted, set_operation="union")
    outside = (np.array([[0, 0], [2, 1]], np.int64), np.array([3, 4]),
               np.array([2, 2], np.int64))
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.raw_ops.DenseToSparseSetOperation(set1=a[:, :2], set2_indices=outside[0],
                                             set2_values=outside[1], set2_shape=outside[2],
                                             set_operation="union")
    with pytest.raises(ValueError, match=r"index \[2, 1\] is out of bounds"):
        run("DenseToSparseSetOperation", a[:, :2], *outside, set_operation="union")


def test_set_operations_without_validation_group_runs_of_unsorted_indices_as_tf():
    # Set 2's row 1 comes before its row 0: TF skips the group it cannot match in order.
    a = np.array([[1, 2], [3, 4]], np.int64)
    parts = (np.array([[1, 0], [0, 1]], np.int64), np.array([3, 2]), np.array([2, 2], np.int64))
    theirs = tf.raw_ops.DenseToSparseSetOperation(
        set1=a, set2_indices=parts[0], set2_values=parts[1], set2_shape=parts[2],
        set_operation="intersection", validate_indices=False)
    assert_same(run("DenseToSparseSetOperation", a, *parts, set_operation="intersection",
                    validate_indices=False), [t.numpy() for t in theirs])


def _table(op: str, key_dtype: str, value_dtype: str):
    return host_ops.lookup(op)(HostNode("t", op, (), {"key_dtype": key_dtype,
                                                       "value_dtype": value_dtype}))


@pytest.mark.parametrize("init", ["InitializeTableV2", "LookupTableImportV2"])
def test_tables_filled_from_tensors_look_up_as_tf(init):
    keys, values = np.array([1, 5, 7, 5], np.int64), np.array([10.0, 50.0, 70.0, 50.0],
                                                              np.float32)
    query = np.array([[5, 2], [7, 1]], np.int64)
    table = _table("HashTableV2" if init == "InitializeTableV2" else "MutableHashTableV2",
                   "int64", "float32")
    run(init, table, keys, values)
    if init == "InitializeTableV2":
        theirs = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values),
                                           -1.0)
    else:
        theirs = tf.lookup.experimental.MutableHashTable(tf.int64, tf.float32, -1.0)
        theirs.insert(keys, values)
    assert_same(run("LookupTableFindV2", table, query, np.float32(-1)),
                [theirs.lookup(tf.constant(query)).numpy()])
    assert_same(run("LookupTableSizeV2", table), [theirs.size().numpy()])


def test_a_key_initialized_with_two_values_is_refused_as_tf():
    keys, values = np.array([b"a", b"a"], object), np.array([1, 2], np.int64)
    with pytest.raises(tf.errors.FailedPreconditionError):
        tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), -1)
    with pytest.raises(ValueError, match=r"key b'a' has the values 1 and 2"):
        run("InitializeTableV2", _table("HashTableV2", "string", "int64"), keys, values)
