"""Sparse and ragged tensors whose results have static shapes: made dense
(``SparseToDense``, ``RaggedTensorToTensor``), reshaped (``SparseReshape``), ragged to
sparse (``RaggedTensorToSparse``).

The indices (or row partitions) may be computed from values: they only say where each
value goes. The output's shape must be static; when it depends on values, the host stage
(``jaxhub/_src/host``) runs the op instead, as it runs the sparse ops whose result sizes
always follow values (``SparseFillEmptyRows``, the set operations, ``RaggedGather``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import (TracedValueError, as_jax, check_value, has_symbolic,
                                      is_static, shape_tuple, static_ints, xnp)


def _scatter(shape: tuple, index: tuple, values, default) -> jax.Array:
    """``default`` everywhere in ``shape`` but at ``index``, which takes ``values``.

    Indices out of range (negative ones too, which jnp would count from the end) are
    dropped, as TF's kernels skip or refuse them.
    """
    values = as_jax(values)
    index = tuple(jnp.where(i < 0, size, i) for i, size in zip(index, shape))
    # A symbolic row count (``n - 1`` for ``n`` splits) may be 0 for jax.export, which then
    # refuses the gather of the gradient: one spare row keeps it at least 1.
    spare = int(not isinstance(shape[0], (int, np.integer)))
    dense = jnp.full((shape[0] + spare, *shape[1:]), as_jax(default), values.dtype)
    dense = dense.at[index].set(values, mode="drop")
    return dense[:shape[0]] if spare else dense


def _check_sparse_indices(node, index: np.ndarray, shape: tuple) -> None:
    """TF's checks of constant indices: in range, and (with ``validate_indices``) sorted in
    row-major order without repeats."""
    sizes = np.array([d if isinstance(d, (int, np.integer)) else np.iinfo(np.int64).max
                      for d in shape[:index.shape[1]]], np.int64)
    bad = np.any((index < 0) | (index >= sizes), axis=1)
    if bad.any():
        raise ValueError(f"TF node {node.name!r} (SparseToDense): index "
                         f"{index[bad][0].tolist()} is out of bounds for shape {list(shape)}")
    if node.attr("validate_indices", True) and len(index) > 1:
        steps = np.diff(index, axis=0)  # each row's first change from the previous > 0
        first = steps[np.arange(len(steps)), np.argmax(steps != 0, axis=1)]
        if np.any(first <= 0):
            raise ValueError(f"TF node {node.name!r} (SparseToDense): indices are not sorted "
                             f"in row-major order or repeat one; sort them (tf.sparse.reorder) "
                             f"or pass validate_indices=False")


@register("SparseToDense", attrs=("validate_indices",))
def _sparse_to_dense(node, indices, output_shape, values, default):
    """``indices`` is a scalar or vector (positions in a vector) or a ``[n, rank]`` matrix;
    ``values`` a ``[n]`` vector or one scalar for all. Of repeated indices (allowed with
    ``validate_indices=False``) the last value wins."""
    shape = shape_tuple(output_shape)
    depth = np.shape(indices)[1] if np.ndim(indices) == 2 else 1
    if is_static(indices):
        _check_sparse_indices(node, np.asarray(indices, np.int64).reshape(-1, depth), shape)
    rows = as_jax(indices).reshape(-1, depth)
    values = as_jax(values)
    if values.ndim:
        values = values.reshape(-1)
    return _scatter(shape, tuple(rows.T), values, default)


def _row_splits(node, partitions: tuple) -> list:
    """Row splits (static where the partitions are) from ``RaggedTensorToTensor``'s row
    partitions: ``ROW_SPLITS`` each, or ``FIRST_DIM_SIZE`` then ``VALUE_ROWIDS`` each."""
    types = list(node.attr("row_partition_types"))
    if all(kind == "ROW_SPLITS" for kind in types):
        return list(partitions)
    if types[0] != "FIRST_DIM_SIZE" or any(kind != "VALUE_ROWIDS" for kind in types[1:]):
        raise ValueError(f"TF node {node.name!r} (RaggedTensorToTensor): row partition types "
                         f"{types}: expected ROW_SPLITS, or FIRST_DIM_SIZE then VALUE_ROWIDS")
    nrows, splits = shape_tuple(partitions[0])[0], []  # a size: maybe symbolic
    for rowids in partitions[1:]:
        num = xnp(rowids) if isinstance(nrows, int) else jnp
        counts = (np.bincount(rowids, minlength=nrows)[:nrows] if num is np
                  else jnp.bincount(rowids, length=nrows))
        splits.append(num.concatenate([num.zeros(1, counts.dtype), num.cumsum(counts)]))
        nrows = np.shape(rowids)[0]
    return splits


def _dense_shape(node, shape, splits: list, values) -> tuple:
    """The output's shape: ``shape``'s sizes, with its ``-1``s (or all, for a scalar) the
    natural ones: the number of rows, each ragged dimension's longest row (known only from
    static splits), the values' own dimensions."""
    wanted = static_ints(shape)
    if np.ndim(shape) == 0:
        wanted = [-1] * (len(splits) + np.ndim(values))
    dims = [np.shape(splits[0])[0] - 1]
    for s in splits:
        if not is_static(s):
            dims.append(None)  # only a given size will do
        else:
            dims.append(int(np.max(np.diff(s), initial=0)))
    dims += list(np.shape(values)[1:])
    out = []
    for i, (size, natural) in enumerate(zip(wanted, dims)):
        if size >= 0 and i > len(splits) and size != natural:  # TF refuses it too
            raise ValueError(f"TF node {node.name!r} (RaggedTensorToTensor): shape "
                             f"{wanted} does not fit values of shape {list(np.shape(values))}")
        if size < 0 and natural is None:
            raise TracedValueError(
                f"dimension {i} of RaggedTensorToTensor's output is its longest row, a size "
                f"computed from the row partitions' values; give it in to_tensor(shape=...)",
                splits[i - 1])
        out.append(size if size >= 0 else natural)
    return tuple(out)


def _row_ids(splits: jax.Array, size) -> jax.Array:
    """Each of ``size`` positions' row: the number of row ends at or before it (a
    scatter and a sum, not a search, so that sizes may be symbolic; the last row's end is
    out of range)."""
    starts = jnp.zeros(size, splits.dtype).at[splits[1:]].add(1, mode="drop")
    return jnp.cumsum(starts)


@register("RaggedTensorToTensor", attrs=("row_partition_types",))
def _ragged_to_tensor(node, shape, values, default, *partitions):
    """Each value's position in the dense tensor, from the row splits innermost first (a
    value's row at one level is its position at the one above); positions beyond a smaller
    given shape are dropped (truncation), as TF does."""
    if len(partitions) != len(node.attr("row_partition_types")):
        raise ValueError(f"TF node {node.name!r} (RaggedTensorToTensor): one row partition "
                         f"tensor per row partition type")
    splits = _row_splits(node, partitions)
    dense = _dense_shape(node, shape, splits, values)
    # How many positions each level's splits partition: the rows of the level below.
    sizes = [np.shape(s)[0] - 1 for s in splits[1:]] + [np.shape(values)[0]]
    position, index = jnp.arange(sizes[-1]), []
    for s, size in reversed(list(zip(splits, sizes))):
        s = as_jax(s)
        row = _row_ids(s, size)[position]
        index.insert(0, position - s[row])
        position = row
    return _scatter(dense, (position, *index), values, default)


def _strides(num, shape):
    """Row-major strides of ``shape`` (a vector): the product of the sizes after each."""
    return num.concatenate([num.cumprod(shape[::-1])[::-1][1:], shape[:1] * 0 + 1])


@register("SparseReshape")
def _sparse_reshape(node, indices, input_shape, new_shape):
    """``tf.sparse.reshape``: each entry's row-major position in the input's shape, laid
    out in the new shape; one ``-1`` in ``new_shape`` takes the size that keeps the number
    of dense elements. The results' shapes are the inputs' (``[n, len(new_shape)]``), so
    indices and shapes may all be traced; TF's checks of the sizes are raised on static
    ones and kept as checks on traced ones."""
    if np.ndim(indices) != 2 or np.shape(indices)[1] != np.shape(input_shape)[0]:
        raise ValueError(f"TF node {node.name!r} (SparseReshape): indices of shape "
                         f"{list(np.shape(indices))} for a shape of "
                         f"{np.shape(input_shape)[0]} dimensions")
    static = is_static(input_shape, new_shape) and not has_symbolic(input_shape)
    num = np if static else jnp
    input_shape = np.asarray(input_shape, np.int64) if static else as_jax(input_shape)
    new_shape = np.asarray(new_shape, np.int64) if static else as_jax(new_shape)
    unknown = new_shape == -1
    check_value(node, num.sum(unknown) <= 1, "only one output dimension may be -1")
    check_value(node, num.all(new_shape >= -1), "the new shape's sizes must be >= -1")
    dense_size = num.prod(input_shape)
    product = num.prod(num.where(unknown, 1, new_shape))
    out_shape = num.where(unknown, dense_size // num.maximum(product, 1), new_shape)
    check_value(node, num.prod(out_shape) == dense_size,
                "the new shape does not hold as many dense elements as the input's shape")
    if static and is_static(indices):
        positions, shapes = np.asarray(indices, np.int64), np
    else:
        positions, shapes = as_jax(indices).astype(as_jax(out_shape).dtype), jnp
    linear = (positions * _strides(shapes, input_shape)).sum(axis=1)
    out_indices = (linear[:, None] // _strides(shapes, out_shape)) % shapes.maximum(out_shape, 1)
    return out_indices, out_shape


@register("RaggedTensorToSparse")
def _ragged_to_sparse(node, *args):
    """``RaggedTensor.to_sparse``: each value's row and position in every ragged dimension
    (then in its own dense dimensions), the values flattened, and the dense shape: the
    number of rows, each ragged dimension's longest row, the values' own sizes. Every
    result's shape follows the inputs' shapes, so the splits may be traced; the values'
    gradient is that of the flattened values, as TF's."""
    *splits, values = args
    n, inner = np.shape(values)[0], tuple(np.shape(values)[1:])
    num = xnp(*splits)
    splits = list(splits) if num is np else [as_jax(s) for s in splits]
    position, columns = num.arange(n), []
    sizes = [np.shape(s)[0] - 1 for s in splits[1:]] + [n]
    for s, size in reversed(list(zip(splits, sizes))):
        row = (np.searchsorted(s, position, side="right") - 1 if num is np
               else _row_ids(s, size)[position])
        columns.insert(0, position - s[row])
        position = row
    index = num.stack([position, *columns], axis=1)
    count = int(np.prod(inner))
    if inner:  # each value's own dense dimensions last
        grid = num.asarray(np.indices(inner).reshape(len(inner), -1).T)
        entry = num.arange(n * count)
        index = num.concatenate([index[entry // count], grid[entry % count]], axis=1)
    widths = [num.max(num.diff(s), initial=0) for s in splits]
    shape = num.stack([num.asarray(np.shape(splits[0])[0] - 1), *widths,
                       *(num.asarray(d) for d in inner)])
    if num is np:
        index, shape = index.astype(np.int64), shape.astype(np.int64)
    flat = np.asarray(values).reshape(-1) if is_static(values) else as_jax(values).reshape(-1)
    return index, flat, shape
