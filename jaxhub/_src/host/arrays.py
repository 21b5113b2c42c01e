"""numpy implementations of the array ops a host stage runs when one of their static
operands (paddings, ``k``, a depth, an axis, split sizes, diagonals) follows a signature's input
values, and of the elementwise math that computes such operands.

As the other host ops (:mod:`jaxhub._src.host.ops`), each matches TF's kernel, and refuses
what it refuses (negative paddings, ``k`` above the axis's size, an axis out of range)
with a ``ValueError`` that the host stage turns into a ``HostStageError`` naming the node.
Ops that size an array from values check it against the node's limits before allocating.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxhub._src.host.limits import check_elements
from jaxhub._src.host.ops import register


def _ints(value: Any) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _axis(axis: int, rank: int) -> int:
    """``axis`` in ``[0, rank)``; TF's range is ``[-rank, rank)``."""
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for a tensor of rank {rank}")
    return axis % rank


# -- pads ------------------------------------------------------------------------------------


def _paddings(node, x: np.ndarray, paddings: Any) -> list[tuple[int, int]]:
    """``paddings`` as ``(before, after)`` per axis, checked as TF checks them, and the
    padded array's size checked against the limits."""
    pairs = np.asarray(paddings)
    if pairs.shape != (x.ndim, 2):
        raise ValueError(f"paddings of shape {list(pairs.shape)} for a tensor of rank "
                         f"{x.ndim}; TF takes [{x.ndim}, 2]")
    pairs = [(int(a), int(b)) for a, b in pairs.tolist()]
    if any(a < 0 or b < 0 for a, b in pairs):
        raise ValueError(f"paddings {pairs} must be non-negative")
    check_elements(node, int(np.prod([d + a + b for d, (a, b) in zip(x.shape, pairs)],
                                     dtype=np.float64)))
    return pairs


@register("Pad", "PadV2")
def _pad(node, x, paddings, constant_values=0):
    x = np.asarray(x)
    return np.pad(x, _paddings(node, x, paddings),
                  constant_values=np.asarray(constant_values, x.dtype))


@register("MirrorPad", attrs={"mode": ("REFLECT", "SYMMETRIC")})
def _mirror_pad(node, x, paddings):
    # REFLECT leaves the edge out, so it pads at most size - 1; SYMMETRIC at most size.
    x = np.asarray(x)
    pairs = _paddings(node, x, paddings)
    reflect = node.attrs["mode"] == "REFLECT"
    for size, (before, after) in zip(x.shape, pairs):
        if max(before, after) > size - reflect:
            raise ValueError(f"paddings {pairs} must be at most the size {size} of their "
                             f"axis{' minus 1 in REFLECT mode' if reflect else ''}")
    return np.pad(x, pairs, mode="reflect" if reflect else "symmetric")


# -- selections ------------------------------------------------------------------------------


@register("TopKV2", attrs=("sorted", "index_type"))
def _top_k(node, x, k):
    # The k largest along the last axis, largest first; equal values in index order, as
    # TF's kernel (an unsorted top-k may take any order: sorted is one).
    x, k = np.asarray(x), int(np.asarray(k))
    if x.ndim < 1:
        raise ValueError("top-k of a scalar; TF takes rank 1 or more")
    if not 0 <= k <= x.shape[-1]:
        raise ValueError(f"k {k} must be in [0, {x.shape[-1]}] (the last axis's size)")
    size = x.shape[-1]
    # A stable ascending sort of the reversed axis, reversed: largest first, and among
    # equal values the lowest index first.
    order = size - 1 - np.flip(np.argsort(np.flip(x, -1), axis=-1, kind="stable"), -1)
    indices = order[..., :k]
    return (np.take_along_axis(x, indices, axis=-1),
            indices.astype(node.attrs.get("index_type", "int32")))


@register("OneHot", attrs=("axis",))
def _one_hot(node, indices, depth, on_value, off_value):
    indices, depth = np.asarray(indices), int(np.asarray(depth))
    if depth < 0:
        raise ValueError(f"depth {depth} must be non-negative")
    axis = int(node.attrs.get("axis", -1))
    if not -1 <= axis <= indices.ndim:
        raise ValueError(f"axis {axis} must be in [-1, {indices.ndim}]")
    check_elements(node, indices.size * depth)
    hot = indices[..., None] == np.arange(depth, dtype=indices.dtype)
    if axis != -1:
        hot = np.moveaxis(hot, -1, axis)
    on_value = np.asarray(on_value)
    return np.where(hot, on_value, np.asarray(off_value, on_value.dtype))


@register("ArgMax", "ArgMin", attrs=("output_type",))
def _arg_extremum(node, x, dimension):
    x = np.asarray(x)
    axis = _axis(int(np.asarray(dimension)), x.ndim)
    if x.shape[axis] == 0:
        raise ValueError(f"{node.op} along axis {axis} of size 0")
    found = (np.argmax if node.op == "ArgMax" else np.argmin)(x, axis=axis)
    return np.asarray(found, node.attrs.get("output_type", "int64"))


# -- reorderings and splits ------------------------------------------------------------------


@register("ReverseV2")
def _reverse(node, x, axis):
    x = np.asarray(x)
    axes = [_axis(a, x.ndim) for a in _ints(axis)]
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis {_ints(axis)} names an axis twice")
    return np.flip(x, tuple(axes)) if axes else x


@register("Roll")
def _roll(node, x, shift, axis):
    # Repeated axes add their shifts, as np.roll does.
    x = np.asarray(x)
    shifts, axes = _ints(shift), _ints(axis)
    if np.ndim(shift) > 1 or np.ndim(axis) > 1 or len(shifts) != len(axes):
        raise ValueError(f"shift {shifts} and axis {axes} must be scalars or vectors of "
                         f"one length")
    if not axes:
        return x
    return np.roll(x, shifts, axis=[_axis(a, x.ndim) for a in axes])


@register("Split", attrs=("num_split",))
def _split(node, split_dim, value):
    value = np.asarray(value)
    axis, count = _axis(int(np.asarray(split_dim)), value.ndim), int(node.attrs["num_split"])
    if value.shape[axis] % count:
        raise ValueError(f"axis {axis} of size {value.shape[axis]} does not split into "
                         f"{count} equal parts")
    return tuple(np.split(value, count, axis=axis))


@register("SplitV", attrs=("num_split",))
def _split_v(node, value, size_splits, split_dim):
    # One size may be -1: what the others leave.
    value = np.asarray(value)
    axis, sizes = _axis(int(np.asarray(split_dim)), value.ndim), _ints(size_splits)
    total = value.shape[axis]
    unknown = [i for i, s in enumerate(sizes) if s == -1]
    if len(unknown) > 1 or any(s < -1 for s in sizes):
        raise ValueError(f"size_splits {sizes}: sizes are >= 0, and at most one is -1")
    if unknown:
        sizes[unknown[0]] = total - (sum(sizes) + 1)
    if sum(sizes) != total or min(sizes, default=0) < 0:
        raise ValueError(f"size_splits {_ints(size_splits)} do not add up to the size "
                         f"{total} of axis {axis}")
    return tuple(np.split(value, np.cumsum(sizes)[:-1], axis=axis))


# -- elementwise math ------------------------------------------------------------------------


_UNARY = {"Neg": np.negative, "Abs": np.abs, "Square": np.square, "Sqrt": np.sqrt,
          "Rsqrt": lambda x: 1 / np.sqrt(x), "Exp": np.exp, "Log": np.log,
          "Sin": np.sin, "Cos": np.cos, "Tanh": np.tanh,
          "Sigmoid": lambda x: 1 / (1 + np.exp(-x)), "Floor": np.floor, "Ceil": np.ceil,
          "Round": np.round, "Sign": np.sign, "Reciprocal": lambda x: 1 / x,
          "LogicalNot": np.logical_not}


def _unary(fn):
    def op(node, x):
        x = np.asarray(x)
        with np.errstate(all="ignore"):  # inf and NaN as TF gives them
            return np.asarray(fn(x), x.dtype)
    return op


for _name, _fn in _UNARY.items():
    register(_name)(_unary(_fn))


def _divide(x, y):
    # Integers divide as C does (towards zero), floats as IEEE.
    if x.dtype.kind in "iu":
        if np.any(y == 0):
            raise ValueError("integer division by zero")
        floor = x // y
        return np.where((floor * y != x) & ((x < 0) != (y < 0)), floor + 1, floor)
    return np.true_divide(x, y)


_BINARY = {"RealDiv": _divide, "Div": _divide, "Pow": np.power,
           "SquaredDifference": lambda x, y: np.square(x - y),
           "DivNoNan": lambda x, y: np.where(y == 0, 0, np.true_divide(x, np.where(y == 0, 1, y)))}


def _binary(fn):
    def op(node, x, y):
        x, y = np.asarray(x), np.asarray(y)
        check_elements(node, int(np.prod(np.broadcast_shapes(x.shape, y.shape),
                                         dtype=np.float64)))
        with np.errstate(all="ignore"):
            return np.asarray(fn(x, y), x.dtype)
    return op


for _name, _fn in _BINARY.items():
    register(_name)(_binary(_fn))


# -- stitches --------------------------------------------------------------------------------


@register("DynamicStitch", "ParallelDynamicStitch", attrs=("N",))
def _dynamic_stitch(node, *args):
    # ``merged[indices[m][i]] = data[m][i]``, later ones winning; as many rows as the
    # largest index + 1.
    half = len(args) // 2
    indices = [np.asarray(i).astype(np.int64) for i in args[:half]]
    data = [np.asarray(d) for d in args[half:]]
    for i, d in zip(indices, data):
        if d.shape[:i.ndim] != i.shape:
            raise ValueError(f"data of shape {list(d.shape)} for indices of shape "
                             f"{list(i.shape)}; TF needs them to be a prefix of it")
        if i.size and i.min() < 0:
            raise ValueError(f"index {int(i.min())} is negative")
    size = max((int(i.max()) + 1 for i in indices if i.size), default=0)
    inner = data[0].shape[indices[0].ndim:]
    check_elements(node, size * int(np.prod(inner, dtype=np.float64)))
    out = np.zeros((size,) + inner, data[0].dtype)
    for i, d in zip(indices, data):
        out[i.reshape(-1)] = d.reshape((-1,) + inner)
    return out


# -- diagonals -------------------------------------------------------------------------------


def _diagonal_range(k: Any) -> tuple[int, int]:
    """``k``: one diagonal (a scalar or ``[d]``) or a range ``[lower, upper]``."""
    ks = _ints(k)
    if not 1 <= len(ks) <= 2 or ks[0] > ks[-1]:
        raise ValueError(f"k {ks} must be one diagonal or a range [lower, upper]")
    return ks[0], ks[-1]


def _diagonals(rows: int, cols: int, lower: int, upper: int, align: str):
    """Per diagonal ``d`` from ``upper`` down to ``lower``: its row in a packed
    ``[diagonals, length]`` array, the matrix's row and column indices along it, and their
    positions in that row. ``align`` places diagonals shorter than the longest one
    (``RIGHT_LEFT``: superdiagonals to the right, subdiagonals to the left)."""
    longest = min(rows + min(0, upper), cols - max(0, lower))
    right_super, right_sub = (part == "RIGHT" for part in align.split("_"))
    for j, d in enumerate(range(upper, lower - 1, -1)):
        length = max(min(rows + min(0, d), cols - max(0, d)), 0)
        shift = longest - length if (d >= 0 and right_super) or (d <= 0 and right_sub) else 0
        steps = np.arange(length)
        yield j, steps + max(0, -d), steps + max(0, d), steps + shift


def _align(node) -> str:
    # The V2 ops pack every diagonal to the left.
    return node.attrs.get("align", "RIGHT_LEFT") if node.op.endswith("V3") else "LEFT_LEFT"


@register("MatrixDiagV2", "MatrixDiagV3", attrs=("align",))
def _matrix_diag(node, diagonal, k, num_rows, num_cols, padding_value):
    diagonal = np.asarray(diagonal)
    lower, upper = _diagonal_range(k)
    if lower != upper:
        if diagonal.ndim < 2 or diagonal.shape[-2] != upper - lower + 1:
            raise ValueError(f"diagonal of shape {list(diagonal.shape)} for k [{lower}, "
                             f"{upper}]: TF needs {upper - lower + 1} rows of diagonals")
    else:
        diagonal = diagonal[..., None, :]
    longest = diagonal.shape[-1]
    min_rows, min_cols = longest - min(upper, 0), longest + max(lower, 0)
    rows, cols = int(np.asarray(num_rows)), int(np.asarray(num_cols))
    if rows == -1 and cols == -1:
        rows = cols = max(min_rows, min_cols)
    rows = min_rows if rows == -1 else rows
    cols = min_cols if cols == -1 else cols
    if rows < min_rows or cols < min_cols or (rows != min_rows and cols != min_cols):
        raise ValueError(f"num_rows {rows} and num_cols {cols} do not fit diagonals of "
                         f"length {longest} for k [{lower}, {upper}] (at least {min_rows} "
                         f"rows and {min_cols} columns, one of them exactly)")
    batch = diagonal.shape[:-2]
    check_elements(node, int(np.prod(batch + (rows, cols), dtype=np.float64)))
    out = np.full(batch + (rows, cols), np.asarray(padding_value, diagonal.dtype))
    for j, row, col, pos in _diagonals(rows, cols, lower, upper, _align(node)):
        out[..., row, col] = diagonal[..., j, pos]
    return out


@register("MatrixDiagPartV2", "MatrixDiagPartV3", attrs=("align",))
def _matrix_diag_part(node, x, k, padding_value):
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"diagonals of a tensor of rank {x.ndim}; TF takes rank 2 or more")
    lower, upper = _diagonal_range(k)
    rows, cols = x.shape[-2:]
    if not (-rows < lower <= cols or rows == 0) or not (-rows < upper <= cols or cols == 0):
        raise ValueError(f"k [{lower}, {upper}] is outside a {rows}x{cols} matrix")
    longest = min(rows + min(0, upper), cols - max(0, lower))
    out = np.full(x.shape[:-2] + (upper - lower + 1, longest),
                  np.asarray(padding_value, x.dtype))
    for j, row, col, pos in _diagonals(rows, cols, lower, upper, _align(node)):
        out[..., j, pos] = x[..., row, col]
    return out if lower != upper else out[..., 0, :]
