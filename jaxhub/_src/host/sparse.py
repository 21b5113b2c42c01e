"""Sparse tensors in host stages: TF's sparse ops whose result sizes follow their inputs'
values, in numpy.

A sparse tensor reaches these ops as its parts: ``indices`` (``int64[n, rank]``),
``values`` (``[n]``) and ``dense_shape`` (``int64[rank]``). ``SparseFillEmptyRows``
(``tf.sparse.fill_empty_rows``) adds one entry per empty row; the set operations
(``tf.sets.intersection``, ``union``, ``difference``) compare the last dimension's
values group by group and return a sparse result as long as what they find. Each op
checks its inputs as TF's kernel does and fails with TF's reason where TF fails.

Examples:
  >>> from jaxhub._src.host.program import HostNode
  >>> node = HostNode("n", "DenseToDenseSetOperation", (), {"set_operation": "union"})
  >>> indices, values, shape = _dense_to_dense(node, np.array([[3, 1]]), np.array([[1, 2]]))
  >>> values.tolist(), shape.tolist()
  ([1, 2, 3], [1, 3])
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from jaxhub._src.host.limits import check_elements
from jaxhub._src.host.ops import register


@register("SparseFillEmptyRows")
def _sparse_fill_empty_rows(node, indices, values, dense_shape, default_value):
    # Entries by row, each row's in their input order; an empty row gets one entry at
    # column 0 with the default value. ``reverse_index_map`` says where each input went.
    indices, values = np.asarray(indices), np.asarray(values)
    dense_shape, default_value = np.asarray(dense_shape), np.asarray(default_value)
    if indices.ndim != 2 or values.ndim != 1 or dense_shape.ndim != 1 or \
            default_value.ndim != 0 or len(indices) != len(values):
        raise ValueError(f"indices of shape {indices.shape}, values of shape {values.shape}, "
                         f"dense_shape of shape {dense_shape.shape} and default_value of "
                         f"shape {default_value.shape}; TF takes [n, rank], [n], [rank], []")
    if dense_shape.size == 0:
        raise ValueError("dense_shape must not be empty")
    nrows = int(dense_shape[0])
    rows = indices[:, 0].astype(np.int64) if indices.shape[1] else np.zeros(0, np.int64)
    bad = (rows < 0) | (rows >= nrows)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"indices({i}, 0) = {rows[i]} is not a row of dense_shape[0] = "
                         f"{nrows}")
    check_elements(node, nrows + len(rows))
    counts = np.bincount(rows, minlength=nrows)
    empty = counts == 0
    slots = np.maximum(counts, 1)
    starts = np.cumsum(slots) - slots  # each row's first output entry
    order = np.argsort(rows, kind="stable")  # each row's entries in their input order
    positions = np.empty(len(rows), np.int64)
    positions[order] = starts[rows[order]] + np.arange(len(rows)) - np.repeat(
        np.cumsum(counts) - counts, counts)
    size = len(rows) + int(empty.sum())
    out_indices = np.zeros((size, indices.shape[1]), indices.dtype)
    out_values = np.empty(size, values.dtype)
    out_indices[positions] = indices
    out_values[positions] = values
    out_indices[starts[empty], 0] = np.flatnonzero(empty)
    out_values[starts[empty]] = default_value
    return out_indices, out_values, empty, positions


#: ``set_operation`` (lower-cased, as TF reads it) -> the result of two Python sets.
_SET_OPERATIONS = {"a-b": lambda a, b: a - b, "b-a": lambda a, b: b - a,
                   "intersection": lambda a, b: a & b, "union": lambda a, b: a | b}


def _set_operation(node):
    name = str(node.attrs["set_operation"]).lower()
    if name not in _SET_OPERATIONS:
        raise ValueError(f"set_operation {node.attrs['set_operation']!r} is not one of "
                         f"{sorted(_SET_OPERATIONS)}")
    return _SET_OPERATIONS[name]


def _items(values: np.ndarray) -> list:
    """Hashable Python items of ``values`` (bytes for strings)."""
    return [v if isinstance(v, bytes) else v.item() for v in values.reshape(-1)]


def _dense_groups(dense: np.ndarray) -> tuple[list[int], list[set]]:
    """The group shape (all but the last axis) and each group's set, row-major."""
    if dense.ndim < 2:
        raise ValueError(f"a set of rank {dense.ndim}; sets have rank 2 or more")
    rows = dense.reshape(-1, dense.shape[-1])
    return list(dense.shape[:-1]), [set(_items(row)) for row in rows]


def _sparse_runs(indices, values, shape, validate: bool
                 ) -> tuple[list[int], Iterator[tuple[tuple[int, ...], set]]]:
    """The group shape of a sparse set, and its groups (runs of entries with the same
    leading indices, in their order) with their sets. ``validate``: the indices must be in
    bounds and in row-major order without repeats, as TF's ``validate_indices``."""
    indices, values, shape = np.asarray(indices), np.asarray(values), np.asarray(shape)
    if shape.ndim != 1 or len(shape) < 2:
        raise ValueError(f"a sparse set of shape {shape.tolist()}; sets have rank 2 or more")
    if indices.ndim != 2 or indices.shape != (len(values), len(shape)) or values.ndim != 1:
        raise ValueError(f"sparse indices of shape {indices.shape} and values of shape "
                         f"{values.shape} for a shape of rank {len(shape)}")
    if np.any(shape < 0):
        raise ValueError(f"dense shape {shape.tolist()} has a negative size")
    bad = np.any((indices < 0) | (indices >= shape), axis=1)
    if bad.any():  # without validation TF checks each group's indices as it reads them
        i = int(np.argmax(bad))
        raise ValueError(f"index {indices[i].tolist()} is out of bounds for the set's "
                         f"shape {shape.tolist()}")
    if validate and len(indices) > 1:
        steps = np.diff(indices, axis=0)
        first = steps[np.arange(len(steps)), np.argmax(steps != 0, axis=1)]
        if np.any(first <= 0):
            i = int(np.argmax(first <= 0)) + 1
            how = "repeated" if first[i - 1] == 0 else "out of order"
            raise ValueError(f"index {indices[i].tolist()} is {how}: the set's indices must "
                             f"be in row-major order (tf.sparse.reorder)")

    def runs():
        items, keys = _items(values), [tuple(k) for k in indices[:, :-1].tolist()]
        start = 0
        for end in range(1, len(keys) + 1):
            if end == len(keys) or keys[end] != keys[start]:
                yield keys[start], set(items[start:end])
                start = end
    return [int(d) for d in shape[:-1]], runs()


def _same_groups(shape1: Sequence[int], shape2: Sequence[int]) -> list[int]:
    if list(shape1) != list(shape2):
        raise ValueError(f"the sets' leading dimensions differ: {list(shape1)} vs "
                         f"{list(shape2)}")
    return list(shape1)


def _sparse_result(node, group_shape: list[int], results, dtype) -> tuple:
    """The sparse tensor of the non-empty ``results`` ((group index, set) pairs in order),
    each set sorted along the last dimension, as long as the largest."""
    results = [(key, sorted(found)) for key, found in results if found]
    count = sum(len(found) for _, found in results)
    check_elements(node, count * (len(group_shape) + 1))
    indices = np.zeros((count, len(group_shape) + 1), np.int64)
    values = np.empty(count, dtype)
    row = 0
    for key, found in results:
        indices[row:row + len(found), :-1] = key
        indices[row:row + len(found), -1] = np.arange(len(found))
        values[row:row + len(found)] = found
        row += len(found)
    width = max((len(found) for _, found in results), default=0)
    return indices, values, np.asarray(group_shape + [width], np.int64)


def _group_keys(group_shape: list[int]) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in k) for k in np.ndindex(*group_shape)]


@register("DenseToDenseSetOperation", attrs=("set_operation", "validate_indices"))
def _dense_to_dense(node, set1, set2):
    operation = _set_operation(node)
    set1, set2 = np.asarray(set1), np.asarray(set2)
    shape1, groups1 = _dense_groups(set1)
    shape2, groups2 = _dense_groups(set2)
    group_shape = _same_groups(shape1, shape2)
    results = [(key, operation(a, b))
               for key, a, b in zip(_group_keys(group_shape), groups1, groups2)]
    return _sparse_result(node, group_shape, results, set1.dtype)


@register("DenseToSparseSetOperation", attrs=("set_operation", "validate_indices"))
def _dense_to_sparse(node, set1, set2_indices, set2_values, set2_shape):
    operation = _set_operation(node)
    set1 = np.asarray(set1)
    shape1, groups1 = _dense_groups(set1)
    shape2, runs = _sparse_runs(set2_indices, set2_values, set2_shape,
                                node.attrs.get("validate_indices", True))
    group_shape = _same_groups(shape1, shape2)
    # Set 2's groups in row-major order meet set 1's; one out of order is skipped, as TF.
    pending = next(runs, None)
    results = []
    for key, a in zip(_group_keys(group_shape), groups1):
        b = set()
        if pending is not None and pending[0] == key:
            b, pending = pending[1], next(runs, None)
        results.append((key, operation(a, b)))
    return _sparse_result(node, group_shape, results, set1.dtype)


@register("SparseToSparseSetOperation", attrs=("set_operation", "validate_indices"))
def _sparse_to_sparse(node, set1_indices, set1_values, set1_shape, set2_indices,
                      set2_values, set2_shape):
    operation = _set_operation(node)
    validate = node.attrs.get("validate_indices", True)
    shape1, runs1 = _sparse_runs(set1_indices, set1_values, set1_shape, validate)
    shape2, runs2 = _sparse_runs(set2_indices, set2_values, set2_shape, validate)
    group_shape = _same_groups(shape1, shape2)
    # Both sets' groups merged in row-major order; a group in one set only meets the empty
    # set.
    one, two = next(runs1, None), next(runs2, None)
    results = []
    while one is not None or two is not None:
        if two is None or (one is not None and one[0] < two[0]):
            results.append((one[0], operation(one[1], set())))
            one = next(runs1, None)
        elif one is None or two[0] < one[0]:
            results.append((two[0], operation(set(), two[1])))
            two = next(runs2, None)
        else:
            results.append((one[0], operation(one[1], two[1])))
            one, two = next(runs1, None), next(runs2, None)
    return _sparse_result(node, group_shape, results, np.asarray(set1_values).dtype)

