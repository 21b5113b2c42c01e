"""Conformance of sparse and ragged densification (SparseToDense, RaggedTensorToTensor)
against TF."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.converters.from_tf.ops._conformance import Case, check, convert, normal, params


def _sorted_cells(rng, shape, dtype):
    """Distinct ``[n, 2]`` indices into a (4, 3) grid in row-major order (as TF's
    ``validate_indices`` requires)."""
    cells = np.sort(rng.permutation(12)[: shape[0]])
    return np.stack([cells // 3, cells % 3], axis=-1).astype(dtype)


def _sorted_positions(rng, shape, dtype):
    """Distinct increasing positions in a vector of 6."""
    return np.sort(rng.permutation(6)[: shape[0]]).astype(dtype)


def _to_dense(indices, values, default, shape=(4, 3), validate=True):
    return tf.raw_ops.SparseToDense(sparse_indices=indices, output_shape=shape,
                                    sparse_values=values, default_value=default,
                                    validate_indices=validate)


CASES = [
    # Indices and values from inputs; TF's gradient reaches the values and the default.
    Case("SparseToDense", _to_dense, (((5, 2), (5,), ()),),
         dtypes=(("int32", "float32", "float32"), ("int64", "float32", "float32")),
         sample=(_sorted_cells, normal, normal), batched=False),
    # Positions in a vector: TF's gradient (a GatherNd of vector indices) fails to build.
    Case("SparseToDense", lambda i, v, d: _to_dense(i, v, d, [6]), (((3,), (3,), ()),),
         dtypes=(("int32", "float32", "float32"),), sample=(_sorted_positions, normal, normal),
         grad=False, batched=False, name="SparseToDense-vector"),
    # One value for every index: TF has no gradient for the broadcast scalar.
    Case("SparseToDense", _to_dense, (((5, 2), (), ()),),
         dtypes=(("int32", "int32", "int32"),), sample=(_sorted_cells, normal, normal),
         batched=False, name="SparseToDense-scalar-value"),
    # The output's shape from the input's: a symbolic batch.
    Case("SparseToDense", lambda x, v: x + _to_dense([[0, 1], [1, 2]], v, 0.5, tf.shape(x)),
         (((4, 3), (2,)),), name="SparseToDense-shape-of-input"),
    # tf.sparse.to_dense of a SparseTensor built from inputs.
    Case("SparseToDense", lambda i, v: tf.sparse.to_dense(tf.sparse.SparseTensor(
        tf.cast(i, tf.int64), v, [4, 3])), (((5, 2), (5,)),),
         dtypes=(("int64", "float32"),), sample=(_sorted_cells, normal), batched=False,
         name="SparseToDense-of-SparseTensor"),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)


def test_sparse_to_dense_of_unsorted_constant_indices_is_refused_as_tf_does():
    case = Case("SparseToDense", lambda v: _to_dense([[1, 0], [0, 2]], v, 0.0))
    with pytest.raises(Exception, match="not sorted .* validate_indices=False"):
        convert(case, [(2,)], [np.float32])[1](np.ones(2, np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError):
        _to_dense(tf.constant([[1, 0], [0, 2]]), tf.ones(2), 0.0)


def test_sparse_to_dense_of_constant_indices_out_of_bounds_names_the_node():
    case = Case("SparseToDense", lambda v: _to_dense([[0, 0], [4, 2]], v, 0.0))
    with pytest.raises(Exception, match=r"\[4, 2\] is out of bounds"):
        convert(case, [(2,)], [np.float32])[1](np.ones(2, np.float32))


def test_sparse_to_dense_without_validation_keeps_the_last_of_repeated_indices():
    case = Case("SparseToDense", lambda v: _to_dense([[1, 0], [0, 2], [1, 0]], v, 0.0,
                                                     validate=False))
    concrete, converted = convert(case, [(3,)], [np.float32])
    values = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_array_equal(converted(values)[0], concrete(tf.constant(values)))
