"""Ragged tensors in host stages: TF's ragged ops on row splits, in numpy.

A TF ragged tensor reaches a graph's ops as its parts: ``flat_values`` and one
``row_splits`` vector per ragged dimension (outer first; ``splits[i]`` holds
``nrows + 1`` offsets into the next level). These ops take and return those parts, as
TF's kernels do, so text graphs (tokenizers, ``combine_segments``, ``pad_model_inputs``,
trimmers) run unchanged. Every op checks the size of what it makes before allocating.

Examples:
  >>> ragged_indices([np.array([0, 2, 3])], 3).tolist()
  [[0, 0], [0, 1], [1, 0]]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from jaxhub._src.host.limits import check_elements
from jaxhub._src.host.ops import register


def ragged_indices(splits: Sequence[np.ndarray], n_values: int) -> np.ndarray:
    """The index of each of ``n_values`` values along the row and every ragged dimension.

    Args:
      splits: the row splits, outermost first.
      n_values: how many values the innermost splits partition.

    Returns:
      ``int64[n_values, 1 + len(splits)]``: row, then the position in each ragged dimension.
    """
    positions = np.arange(n_values, dtype=np.int64)
    columns = []
    for split in reversed([np.asarray(s, np.int64) for s in splits]):
        row = np.searchsorted(split, positions, side="right") - 1
        columns.insert(0, positions - split[row])
        positions = row
    columns.insert(0, positions)
    return np.stack(columns, axis=1) if columns else np.zeros((n_values, 0), np.int64)


def splits_from_lengths(lengths: np.ndarray, dtype: Any = np.int64) -> np.ndarray:
    """Row splits (``[0, l0, l0 + l1, ...]``) of rows of ``lengths``."""
    out = np.zeros(len(lengths) + 1, dtype)
    np.cumsum(lengths, out=out[1:])
    return out


def _widths(splits: Sequence[np.ndarray]) -> list[int]:
    """The number of rows, then the longest row of each ragged dimension."""
    return [len(splits[0]) - 1] + [int(np.max(np.diff(s))) if len(s) > 1 else 0
                                   for s in splits]


def _gather_rows(splits: Sequence[np.ndarray], rows: np.ndarray
                 ) -> tuple[list[np.ndarray], np.ndarray]:
    """The rows ``rows`` of a ragged tensor: the new splits, and which values they keep."""
    out_splits = []
    for split in splits:
        split = np.asarray(split)
        starts, ends = split[rows], split[rows + 1]
        lengths = ends - starts
        out_splits.append(splits_from_lengths(lengths, split.dtype))
        total = int(lengths.sum())
        # The positions of the kept items of the next level: each row's run start..end.
        rows = np.repeat(starts - out_splits[-1][:-1], lengths) + np.arange(total)
    return out_splits, rows


# Dtype and count attributes: the arrays carry them (``Tsplits`` sets the dtype of new splits).
@register("RaggedGather", attrs=("Tvalues", "Tindices", "Tsplits", "PARAMS_RAGGED_RANK",
                                 "OUTPUT_RAGGED_RANK"))
def _ragged_gather(node, *args):
    *splits, values, indices = args
    indices = np.asarray(indices)
    flat = indices.reshape(-1).astype(np.int64)
    nrows = len(splits[0]) - 1
    if flat.size and (flat.min() < 0 or flat.max() >= nrows):  # TF refuses them too
        bad = flat[(flat < 0) | (flat >= nrows)][0]
        raise ValueError(f"index {bad} is out of range for {nrows} rows")
    new_splits, kept = _gather_rows(splits, flat)
    check_elements(node, len(kept))
    # Each outer dimension of ``indices`` becomes a uniform ragged dimension.
    outer = []
    for axis in range(indices.ndim - 1):
        count = int(np.prod(indices.shape[:axis + 1]))
        step = indices.shape[axis + 1]
        outer.append(np.arange(count + 1, dtype=np.int64) * step)
    out_splits = [s.astype(np.asarray(splits[0]).dtype) for s in outer + new_splits]
    return (*out_splits, np.asarray(values)[kept])


@register("RaggedRange", attrs=("T", "Tsplits"))
def _ragged_range(node, starts, limits, deltas):
    # Each of them a scalar or a vector: scalars repeat for every row.
    starts, limits, deltas = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v)) for v in (starts, limits, deltas)))
    if np.any(deltas == 0):
        raise ValueError("RaggedRange with a delta of 0")
    if starts.dtype.kind == "f":
        sizes = np.ceil((limits - starts) / deltas)
    else:  # exact integer arithmetic: ceil((limit - start) / delta)
        sizes = -((starts - limits) // deltas)
    sizes = np.maximum(sizes, 0).astype(np.int64)
    check_elements(node, int(sizes.sum()))
    splits = splits_from_lengths(sizes, node.attrs.get("Tsplits", "int64"))
    values = np.repeat(starts, sizes) + np.repeat(deltas, sizes) * (
        np.arange(int(sizes.sum())) - np.repeat(splits[:-1], sizes))
    return splits, values.astype(starts.dtype)


def _partitions_to_splits(types: Sequence[str], tensors: Sequence[np.ndarray]
                          ) -> list[np.ndarray]:
    """Row splits from ``RaggedTensorToTensor``'s row partitions (splits or row ids)."""
    types = list(types)
    if types and types[0] == "FIRST_DIM_SIZE":
        nrows, splits = int(np.asarray(tensors[0])), []
        for kind, tensor in zip(types[1:], tensors[1:]):
            if kind != "VALUE_ROWIDS":
                raise ValueError(f"row partition {kind!r} after FIRST_DIM_SIZE")
            rowids = np.asarray(tensor, np.int64)
            splits.append(splits_from_lengths(np.bincount(rowids, minlength=nrows)[:nrows]))
            nrows = len(rowids)
        return splits
    if any(kind != "ROW_SPLITS" for kind in types):
        raise ValueError(f"row partition types {types}: expected ROW_SPLITS, or "
                         f"FIRST_DIM_SIZE then VALUE_ROWIDS")
    return [np.asarray(t, np.int64) for t in tensors]


@register("RaggedTensorToTensor", attrs=("row_partition_types", "T", "Tindex", "Tshape",
                                         "num_row_partition_tensors"))
def _ragged_to_tensor(node, shape, values, default, *partitions):
    values = np.asarray(values)
    splits = _partitions_to_splits(node.attrs["row_partition_types"], partitions)
    natural = _widths(splits) + list(values.shape[1:])
    shape = np.asarray(shape)
    # A shape of rank 0 (or -1s) leaves every (or that) dimension at its natural size;
    # a smaller size truncates, a larger one pads with the default.
    wanted = natural if shape.ndim == 0 else [
        n if int(s) < 0 else int(s) for s, n in zip(shape.reshape(-1).tolist(), natural)]
    if wanted[len(splits) + 1:] != natural[len(splits) + 1:]:  # as TF, which refuses it
        raise ValueError(f"shape {wanted} does not fit values of shape {list(values.shape)}")
    check_elements(node, int(np.prod(wanted, dtype=np.float64)))
    out = np.empty(wanted, values.dtype)
    out[...] = np.asarray(default, values.dtype)
    index = ragged_indices(splits, len(values))
    keep = np.all(index < np.asarray(wanted[:len(splits) + 1]), axis=1)
    index = index[keep]
    out[tuple(index.T)] = values[keep]
    return out


@register("RaggedTensorToSparse")
def _ragged_to_sparse(node, *args):
    *splits, values = args
    values = np.asarray(values)
    index = ragged_indices(splits, len(values))
    if values.ndim > 1:  # each value's own dense dimensions come last
        inner = np.indices(values.shape[1:]).reshape(values.ndim - 1, -1).T
        index = np.concatenate([np.repeat(index, len(inner), axis=0),
                                np.tile(inner, (len(values), 1))], axis=1)
        values = values.reshape(-1)
    shape = np.asarray(_widths(splits) + list(np.shape(args[-1])[1:]), np.int64)
    return index.astype(np.int64), values, shape


@register("Tile")
def _tile(node, x, multiples):
    x = np.asarray(x)
    multiples = [int(m) for m in np.asarray(multiples).reshape(-1)]
    check_elements(node, int(np.prod(np.multiply(x.shape, multiples), dtype=np.float64)))
    return np.tile(x, multiples)


@register("Transpose")
def _transpose(node, x, perm):
    return np.transpose(np.asarray(x), [int(p) for p in np.asarray(perm).reshape(-1)])


# -- dense ops of ragged graphs (trimmers, ngrams) -------------------------------------------


@register("BroadcastTo")
def _broadcast_to(node, x, shape):
    shape = [int(d) for d in np.asarray(shape).reshape(-1)]
    check_elements(node, int(np.prod(shape, dtype=np.float64)))
    return np.broadcast_to(np.asarray(x), shape).copy()


@register("Unpack", attrs=("num", "axis"))
def _unpack(node, x):
    x = np.asarray(x)
    axis = int(node.attrs.get("axis", 0))
    return tuple(np.moveaxis(x, axis, 0))


# An index out of range fails (the policies that skip it are not implemented).
@register("TensorScatterUpdate", attrs={"bad_indices_policy": ("", "DEFAULT", "ERROR")})
def _tensor_scatter_update(node, x, indices, updates):
    out = np.array(x, copy=True)
    indices = np.asarray(indices)
    updates = np.asarray(updates)
    depth = indices.shape[-1]
    flat_indices = indices.reshape(-1, depth)
    flat_updates = updates.reshape((len(flat_indices),) + out.shape[depth:])
    for index, update in zip(flat_indices, flat_updates):  # later updates win, as on CPU
        out[tuple(index)] = update
    return out


@register("UnsortedSegmentSum")
def _unsorted_segment_sum(node, data, segment_ids, num_segments):
    data, ids = np.asarray(data), np.asarray(segment_ids)
    n = int(np.asarray(num_segments))
    check_elements(node, n * int(np.prod(data.shape[ids.ndim:], dtype=np.float64)))
    out = np.zeros((n,) + data.shape[ids.ndim:], data.dtype)
    keep = (ids >= 0) & (ids < n)  # TF drops ids outside [0, n)
    np.add.at(out, ids[keep], data[keep])
    return out
