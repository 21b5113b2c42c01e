"""Conformance of sparse and ragged densification (SparseToDense, RaggedTensorToTensor)
against TF."""

from __future__ import annotations

import jax
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


SPARSE_CASES = [
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


def _splits(total: int):
    """Row splits of ``total`` values into ``shape[0] - 1`` rows, some empty."""
    def sample(rng, shape, dtype):
        cuts = np.sort(rng.integers(0, total + 1, shape[0] - 2))
        return np.concatenate([[0], cuts, [total]]).astype(dtype)
    return sample


def _rowids(nrows: int):
    """Sorted row ids in ``[0, nrows)`` (rows may be empty)."""
    return lambda rng, shape, dtype: np.sort(rng.integers(0, nrows, shape)).astype(dtype)


def _to_tensor(values, splits, shape, default=7.0):
    return tf.RaggedTensor.from_row_splits(values, splits).to_tensor(default, shape=shape)


def _of_rowids(values, rowids, nrows, shape, default):
    """The op as ``from_value_rowids(...).to_tensor`` emits it (without the row lengths
    that ``from_value_rowids`` also computes, sized by the row ids' values)."""
    return tf.raw_ops.RaggedTensorToTensor(
        shape=shape, values=values, default_value=default,
        row_partition_tensors=[nrows, rowids],
        row_partition_types=["FIRST_DIM_SIZE", "VALUE_ROWIDS"])


RAGGED_CASES = [
    # Splits from an input: the ragged dimension's size must be given.
    Case("RaggedTensorToTensor", lambda v, s: _to_tensor(v, s, [None, 4]), (((6,), (4,)),),
         dtypes=(("float32", "int64"), ("float32", "int32")), sample=(normal, _splits(6)),
         batched=False),
    # A smaller shape truncates rows and columns; a larger one pads.
    Case("RaggedTensorToTensor", lambda v, s: _to_tensor(v, s, [2, 2]), (((6,), (5,)),),
         dtypes=(("float32", "int64"),), sample=(normal, _splits(6)), batched=False,
         name="RaggedTensorToTensor-truncated"),
    Case("RaggedTensorToTensor", lambda v, s: _to_tensor(v, s, [5, 7, 2], 0.0),
         (((6, 2), (4,)),), dtypes=(("float32", "int64"),), sample=(normal, _splits(6)),
         batched=False, name="RaggedTensorToTensor-padded"),
    # Constant splits: every size is known, no shape needed.
    Case("RaggedTensorToTensor", lambda v: _to_tensor(v, [0, 2, 2, 5, 6], None),
         (((6, 3),),), batched=False, name="RaggedTensorToTensor-constant-splits"),
    # Two ragged dimensions (more inner rows, some empty, than values).
    Case("RaggedTensorToTensor", lambda v, s1, s2: tf.RaggedTensor.from_nested_row_splits(
        v, [s1, s2]).to_tensor(-1.0, shape=[None, 5, 3]), (((6,), (4,), (9,)),),
         dtypes=(("float32", "int64", "int64"),), sample=(normal, _splits(8), _splits(6)),
         batched=False, name="RaggedTensorToTensor-nested"),
    # Row ids (FIRST_DIM_SIZE, VALUE_ROWIDS), as from_value_rowids emits them.
    Case("RaggedTensorToTensor", lambda v, ids: _of_rowids(v, ids, 4, [-1, 6, 2], 0.5),
         (((6, 2), (6,)),),
         dtypes=(("float32", "int64"),), sample=(normal, _rowids(4)), batched=False,
         name="RaggedTensorToTensor-rowids"),
    # The values' rows from the input's batch: a symbolic number of values.
    Case("RaggedTensorToTensor", lambda v: _of_rowids(v, tf.range(tf.shape(v)[0]) // 2, 3,
                                                      [-1, 4, 2], 0.0),
         (((6, 2),),), name="RaggedTensorToTensor-of-batch"),
]


def _cells_of(shape):
    """Distinct sorted ``[n, len(shape)]`` indices into ``shape``, as int64."""
    def sample(rng, size, dtype):
        cells = np.sort(rng.permutation(int(np.prod(shape)))[: size[0]])
        return np.stack(np.unravel_index(cells, shape), axis=-1).astype(dtype)
    return sample


def _reshape(indices, shape, new_shape):
    result = tf.sparse.reshape(tf.SparseTensor(indices, tf.ones(tf.shape(indices)[:1]), shape),
                               new_shape)
    return result.indices, result.dense_shape


def _ragged_to_sparse(values, *splits):
    result = tf.RaggedTensor.from_nested_row_splits(values, splits).to_sparse()
    return result.indices, result.values, result.dense_shape


RESHAPE_CASES = [
    # Indices from an input, constant shapes: a static output shape, an inferred size.
    Case("SparseReshape", lambda i: _reshape(i, [2, 3, 4], [4, -1, 2]), (((5, 3),),),
         dtypes=("int64",), sample=_cells_of((2, 3, 4)), batched=False),
    # Every part from inputs (rank 3 to rank 2, rank 2 to rank 4).
    Case("SparseReshape", _reshape, (((5, 3), (3,), (2,)),), dtypes=("int64",),
         sample=(_cells_of((2, 3, 4)), lambda *_: np.array([2, 3, 4], np.int64),
                 lambda *_: np.array([-1, 6], np.int64)),
         batched=False, name="SparseReshape-traced-shapes"),
    Case("SparseReshape", lambda i, s: _reshape(i, s, [3, 1, 2, 2]), (((4, 2), (2,)),),
         dtypes=("int64",), sample=(_cells_of((6, 2)), lambda *_: np.array([6, 2], np.int64)),
         batched=False, name="SparseReshape-to-rank-4"),
    # No entries at all; the same shape again.
    Case("SparseReshape", lambda i: _reshape(i, [3, 4], [3, 4]), (((0, 2),),),
         dtypes=("int64",), sample=_cells_of((3, 4)), batched=False,
         name="SparseReshape-empty-same-shape"),
]

TO_SPARSE_CASES = [
    # Splits from an input: indices and shape traced; the values' gradient.
    Case("RaggedTensorToSparse", _ragged_to_sparse, (((6,), (4,)),),
         dtypes=(("float32", "int64"), ("float32", "int32")), sample=(normal, _splits(6)),
         batched=False),
    # Two ragged dimensions, values with a dimension of their own.
    Case("RaggedTensorToSparse", _ragged_to_sparse, (((6, 2), (4,), (9,)),),
         dtypes=(("float32", "int64", "int64"),), sample=(normal, _splits(8), _splits(6)),
         batched=False, name="RaggedTensorToSparse-nested"),
    # Constant splits: every result but the values static.
    Case("RaggedTensorToSparse", lambda v: _ragged_to_sparse(v, [0, 2, 2, 5, 6]),
         (((6,),),), batched=False, name="RaggedTensorToSparse-constant-splits"),
]
CASES = SPARSE_CASES + RAGGED_CASES + RESHAPE_CASES + TO_SPARSE_CASES


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)


class _Padder(tf.Module):
    """A SavedModel whose signatures take a ragged batch's components: four rows of any
    number of values, or any number of rows of seven values (inputs' unknown leading
    sizes are one batch size in jaxhub)."""

    def _pad(self, values, row_splits):
        return {"dense": _to_tensor(values, row_splits, [None, 5, 2], -1.0)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32),
                                  tf.TensorSpec([5], tf.int64)])
    def values(self, values, row_splits):
        return self._pad(values, row_splits)

    @tf.function(input_signature=[tf.TensorSpec([7, 2], tf.float32),
                                  tf.TensorSpec([None], tf.int64)])
    def rows(self, values, row_splits):
        return self._pad(values, row_splits)


@pytest.fixture(scope="module")
def padder(tmp_path_factory):
    import jaxhub
    path = str(tmp_path_factory.mktemp("padder"))
    module = _Padder()
    tf.saved_model.save(module, path, signatures={"values": module.values,
                                                  "rows": module.rows})
    return jaxhub.load(path), tf.saved_model.load(path)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("signature,sizes", [("values", ((7, 4), (3, 4))),
                                             ("rows", ((7, 4), (7, 2), (7, 6)))])
def test_ragged_to_tensor_in_a_saved_model_matches_tensorflow(padder, signature, sizes, jit):
    module, loaded = padder
    rng = np.random.default_rng(0)
    for total, rows in sizes:
        inputs = {"values": rng.standard_normal((total, 2)).astype(np.float32),
                  "row_splits": _splits(total)(rng, (rows + 1,), np.int64)}
        apply = lambda p, x: module.apply_device(  # noqa: E731
            p, x, signature=signature, as_dict=True)
        got = (jax.jit(apply) if jit else apply)(module.params, inputs)["dense"]
        expected = loaded.signatures[signature](
            **{k: tf.constant(v) for k, v in inputs.items()})["dense"]
        np.testing.assert_array_equal(got, expected)


def test_ragged_to_tensor_sized_by_its_longest_row_names_the_splits():
    case = Case("RaggedTensorToTensor", lambda v, s: _to_tensor(v, s, None))
    _, converted = convert(case, [(6,), (4,)], [np.float32, np.int64])
    with pytest.raises(Exception, match=r"needs its 'row_partition_tensors.*to_tensor\(shape"):
        jax.jit(converted)(np.zeros(6, np.float32), np.array([0, 1, 3, 6]))


@pytest.mark.parametrize("new_shape,problem", [
    ([5, -1], "the new shape does not hold as many dense elements"),
    ([-1, -1, 4], "only one output dimension may be -1"),
    ([3, 2, -3], "the new shape's sizes must be >= -1")])
def test_sparse_reshape_of_constant_shapes_that_do_not_fit_is_refused_as_tf(new_shape,
                                                                            problem):
    def reshape(indices):  # the raw op: tf.sparse.reshape refuses these while tracing
        return tf.raw_ops.SparseReshape(input_indices=indices, input_shape=[2, 3, 4],
                                        new_shape=new_shape)

    indices = np.array([[0, 1, 2]], np.int64)
    with pytest.raises(tf.errors.InvalidArgumentError):
        reshape(tf.constant(indices))
    with pytest.raises(Exception, match=rf"\(SparseReshape\): {problem}"):
        convert(Case("SparseReshape", reshape), [(1, 3)], [np.int64])[1](indices)
