"""Sparse and ragged tensors made dense: ``SparseToDense`` and ``RaggedTensorToTensor``
scatter their values into a default-filled array of a static shape.

The indices (or row partitions) may be computed from values: they only say where each
value goes. The output's shape must be static; when it depends on values, the host stage
(``jaxhub/_src/host``) runs the op instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax, is_static, shape_tuple


def _scatter(shape: tuple, index: tuple, values, default) -> jax.Array:
    """``default`` everywhere in ``shape`` but at ``index``, which takes ``values``.

    Indices out of range (negative ones too, which jnp would count from the end) are
    dropped, as TF's kernels skip or refuse them.
    """
    values = as_jax(values)
    index = tuple(jnp.where(i < 0, size, i) for i, size in zip(index, shape))
    dense = jnp.full(shape, as_jax(default), values.dtype)
    return dense.at[index].set(values, mode="drop")


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
