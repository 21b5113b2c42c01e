"""numpy implementations of the array ops a host stage runs when one of their static
operands (paddings, ``k``, a depth, an axis, split sizes, diagonals, image or input
sizes) follows a signature's input values, and of the elementwise math that computes such
operands.

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


# -- images ----------------------------------------------------------------------------------


def _image_size(node, images: np.ndarray, size: Any) -> tuple[int, int]:
    out = _ints(size)
    if images.ndim != 4 or len(out) != 2 or min(out) <= 0:
        raise ValueError(f"images of shape {list(images.shape)} resized to {out}; TF takes "
                         f"[batch, height, width, channels] and two sizes > 0")
    check_elements(node, images.shape[0] * out[0] * out[1] * images.shape[3])
    return out[0], out[1]


def _source_positions(node, in_size: int, out_size: int, nearest: bool) -> np.ndarray:
    """Where each output row (or column) samples the input, in float32 as TF's kernels:
    with ``align_corners`` the corners' centres meet, with ``half_pixel_centers`` the
    pixels' centres (nearest neighbours do not shift by half a pixel back)."""
    align = node.attrs.get("align_corners", False)
    half = node.attrs.get("half_pixel_centers", False)
    scale = np.float32((in_size - 1) / (out_size - 1) if align and out_size > 1
                       else in_size / out_size)
    steps = np.arange(out_size, dtype=np.float32)
    if not half:
        return steps * scale
    return (steps + np.float32(0.5)) * scale - np.float32(0 if nearest else 0.5)


def _lerp_weights(source: np.ndarray, in_size: int):
    floor = np.floor(source)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(source), in_size - 1).astype(np.int64)
    return lower, upper, (source - floor).astype(np.float32)


@register("ResizeBilinear", attrs=("align_corners", "half_pixel_centers"))
def _resize_bilinear(node, images, size):
    images = np.asarray(images)
    height, width = _image_size(node, images, size)
    top, bottom, y_lerp = _lerp_weights(_source_positions(node, images.shape[1], height,
                                                          False), images.shape[1])
    left, right, x_lerp = _lerp_weights(_source_positions(node, images.shape[2], width,
                                                          False), images.shape[2])
    x = images.astype(np.float32)
    x_lerp = x_lerp[None, None, :, None]
    upper = x[:, top][:, :, left] + (x[:, top][:, :, right] - x[:, top][:, :, left]) * x_lerp
    lower = (x[:, bottom][:, :, left]
             + (x[:, bottom][:, :, right] - x[:, bottom][:, :, left]) * x_lerp)
    return upper + (lower - upper) * y_lerp[None, :, None, None]


def _nearest(node, source: np.ndarray, in_size: int) -> np.ndarray:
    # TF rounds halves away from zero (roundf) with align_corners, else floors.
    if node.attrs.get("align_corners", False):
        index = np.floor(np.abs(source) + np.float32(0.5)) * np.sign(source)
    else:
        index = np.floor(source)
    index = np.minimum(index, in_size - 1)
    if node.attrs.get("half_pixel_centers", False):
        index = np.maximum(index, 0)
    return index.astype(np.int64)


@register("ResizeNearestNeighbor", attrs=("align_corners", "half_pixel_centers"))
def _resize_nearest(node, images, size):
    images = np.asarray(images)
    height, width = _image_size(node, images, size)
    rows = _nearest(node, _source_positions(node, images.shape[1], height, True),
                    images.shape[1])
    cols = _nearest(node, _source_positions(node, images.shape[2], width, True),
                    images.shape[2])
    return images[:, rows][:, :, cols]


def _crop_positions(start: np.float32, end: np.float32, size: int, crop: int) -> np.ndarray:
    """Where a crop's rows (or columns) sample the image, in float32 as TF's kernel."""
    if crop > 1:
        scale = (end - start) * np.float32(size - 1) / np.float32(crop - 1)
        return start * np.float32(size - 1) + np.arange(crop, dtype=np.float32) * scale
    return np.full(crop, np.float32(0.5) * (start + end) * np.float32(size - 1), np.float32)


@register("CropAndResize", attrs={"method": ("bilinear", "nearest"),
                                  "extrapolation_value": None})
def _crop_and_resize(node, image, boxes, box_ind, crop_size):
    # Each box (normalised [y1, x1, y2, x2]) of its image, sampled at crop_size points;
    # points outside the image take the extrapolation value.
    image = np.asarray(image).astype(np.float32)
    boxes, box_ind = np.asarray(boxes, np.float32), np.asarray(box_ind).reshape(-1)
    crop = _ints(crop_size)
    if image.ndim != 4 or boxes.shape != (len(box_ind), 4) or len(crop) != 2 or \
            min(crop) <= 0:
        raise ValueError(f"image {list(image.shape)}, boxes {list(boxes.shape)}, box_ind "
                         f"{list(box_ind.shape)}, crop_size {crop}; TF takes [batch, height, "
                         f"width, depth], [n, 4], [n] and two sizes > 0")
    if np.any((box_ind < 0) | (box_ind >= image.shape[0])):
        raise ValueError(f"box_ind {box_ind.tolist()} outside [0, {image.shape[0]})")
    check_elements(node, len(boxes) * crop[0] * crop[1] * image.shape[3])
    _, height, width, depth = image.shape
    fill = np.float32(node.attrs.get("extrapolation_value", 0.0))
    out = np.empty((len(boxes), crop[0], crop[1], depth), np.float32)
    for n, (y1, x1, y2, x2) in enumerate(boxes):
        ys = _crop_positions(y1, y2, height, crop[0])
        xs = _crop_positions(x1, x2, width, crop[1])
        inside = ((ys >= 0) & (ys <= height - 1))[:, None] & \
            ((xs >= 0) & (xs <= width - 1))[None, :]
        ys_in, xs_in = np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)
        picture = image[box_ind[n]]
        if node.attrs.get("method", "bilinear") == "nearest":
            rows = np.floor(ys_in + np.float32(0.5)).astype(np.int64)
            cols = np.floor(xs_in + np.float32(0.5)).astype(np.int64)
            values = picture[rows][:, cols]
        else:
            top, bottom = np.floor(ys_in).astype(np.int64), np.ceil(ys_in).astype(np.int64)
            left, right = np.floor(xs_in).astype(np.int64), np.ceil(xs_in).astype(np.int64)
            y_lerp = (ys_in - np.floor(ys_in))[:, None, None]
            x_lerp = (xs_in - np.floor(xs_in))[None, :, None]
            upper = picture[top][:, left] + (picture[top][:, right] - picture[top][:, left]) \
                * x_lerp
            lower = picture[bottom][:, left] + (picture[bottom][:, right]
                                                - picture[bottom][:, left]) * x_lerp
            values = upper + (lower - upper) * y_lerp
        out[n] = np.where(inside[:, :, None], values, fill)
    return out


# -- transposed convolutions -----------------------------------------------------------------


def _before_paddings(node, in_sizes, kernel, out_sizes, strides, dilations) -> list[int]:
    """The padding before each spatial axis of the forward convolution."""
    padding = node.attrs.get("padding", "VALID")
    if padding == "VALID":
        return [0] * len(kernel)
    if padding == "EXPLICIT":
        pairs = node.attrs.get("explicit_paddings", [])
        return [int(pairs[2 * (axis + 1)]) for axis in range(len(kernel))]
    return [max((o - 1) * s + (k - 1) * d + 1 - i, 0) // 2  # SAME
            for i, k, o, s, d in zip(in_sizes, kernel, out_sizes, strides, dilations)]


@register("Conv2DBackpropInput", "Conv3DBackpropInputV2",
          attrs={"strides": None, "padding": None, "dilations": None,
                 "explicit_paddings": None, "use_cudnn_on_gpu": None,
                 "data_format": ("NHWC", "NDHWC")})
def _conv_backprop_input(node, input_sizes, kernel, out_backprop):
    # The gradient of a convolution with respect to its input (a transposed convolution):
    # each output position spreads its channels through the kernel back onto the input.
    kernel, dy = np.asarray(kernel), np.asarray(out_backprop)
    spatial = kernel.ndim - 2
    sizes = _ints(input_sizes)
    if len(sizes) == spatial:  # the spatial sizes alone
        sizes = [dy.shape[0], *sizes, kernel.shape[-2]]
    if len(sizes) != spatial + 2 or dy.ndim != spatial + 2 or min(sizes) < 0:
        raise ValueError(f"input_sizes {sizes} for a kernel of shape {list(kernel.shape)} "
                         f"and out_backprop of shape {list(dy.shape)}")
    strides = [int(s) for s in node.attrs.get("strides", [1] * (spatial + 2))[1:-1]]
    dilations = [int(d) for d in node.attrs.get("dilations", [1] * (spatial + 2))[1:-1]]
    in_sizes, out_sizes = sizes[1:-1], list(dy.shape[1:-1])
    before = _before_paddings(node, in_sizes, kernel.shape[:spatial], out_sizes, strides,
                              dilations)
    check_elements(node, int(np.prod(sizes, dtype=np.float64)))
    dx = np.zeros(sizes, np.result_type(dy, kernel))
    for offset in np.ndindex(*kernel.shape[:spatial]):
        positions = [np.arange(o) * s - b + k * d for o, s, b, k, d in
                     zip(out_sizes, strides, before, offset, dilations)]
        inside = [(p >= 0) & (p < i) for p, i in zip(positions, in_sizes)]
        spread = dy[(slice(None), *np.ix_(*inside), slice(None))] @ kernel[offset].T
        dx[(slice(None), *np.ix_(*[p[m] for p, m in zip(positions, inside)]),
            slice(None))] += spread
    return dx


# -- blocks ----------------------------------------------------------------------------------


def _blocks(x: np.ndarray, block_shape: Any, pairs: Any, what: str):
    block = _ints(block_shape)
    pairs = np.asarray(pairs).reshape(-1, 2).astype(np.int64)
    if len(block) != len(pairs) or not 1 <= len(block) < x.ndim or min(block) < 1 or \
            pairs.min(initial=0) < 0:
        raise ValueError(f"block_shape {block} and {what} {pairs.tolist()} for a tensor of "
                         f"rank {x.ndim}: sizes >= 1 and {what} >= 0, one per spatial axis")
    return block, pairs


@register("SpaceToBatchND")
def _space_to_batch(node, x, block_shape, paddings):
    # Pad the spatial axes, cut each into blocks, and move the blocks' offsets to the batch.
    x = np.asarray(x)
    block, pairs = _blocks(x, block_shape, paddings, "paddings")
    n = len(block)
    x = np.pad(x, [(0, 0), *map(tuple, pairs.tolist())] + [(0, 0)] * (x.ndim - n - 1))
    if any(size % b for size, b in zip(x.shape[1:n + 1], block)):
        raise ValueError(f"padded spatial sizes {list(x.shape[1:n + 1])} are not multiples "
                         f"of block_shape {block}")
    split = [x.shape[0]] + [d for size, b in zip(x.shape[1:n + 1], block)
                            for d in (size // b, b)] + list(x.shape[n + 1:])
    order = [2 + 2 * i for i in range(n)] + [0] + [1 + 2 * i for i in range(n)] + \
        list(range(2 * n + 1, len(split)))
    x = x.reshape(split).transpose(order)
    return x.reshape([-1] + list(x.shape[n + 1:]))


@register("BatchToSpaceND")
def _batch_to_space(node, x, block_shape, crops):
    # The inverse: the batch's block offsets go back into the spatial axes, then crop.
    x = np.asarray(x)
    block, pairs = _blocks(x, block_shape, crops, "crops")
    n, count = len(block), int(np.prod(block))
    if x.shape[0] % count:
        raise ValueError(f"batch {x.shape[0]} is not a multiple of the block size {count}")
    x = x.reshape(block + [x.shape[0] // count] + list(x.shape[1:]))
    order = [n] + [d for i in range(n) for d in (n + 1 + i, i)] + \
        list(range(2 * n + 1, x.ndim))
    x = x.transpose(order)
    x = x.reshape([x.shape[0]] + [x.shape[1 + 2 * i] * b for i, b in enumerate(block)]
                  + list(x.shape[2 * n + 1:]))
    sizes = x.shape[1:n + 1]
    if any(a + b > size for (a, b), size in zip(pairs.tolist(), sizes)):
        raise ValueError(f"crops {pairs.tolist()} are larger than the sizes {list(sizes)}")
    return x[(slice(None), *(slice(a, size - b) for (a, b), size in zip(pairs.tolist(),
                                                                          sizes)))]


@register("MatrixSetDiagV2", "MatrixSetDiagV3", attrs=("align",))
def _matrix_set_diag(node, x, diagonal, k):
    x, diagonal = np.asarray(x), np.asarray(diagonal)
    lower, upper = _diagonal_range(k)
    packed = diagonal if lower != upper else diagonal[..., None, :]
    rows, cols = x.shape[-2:]
    longest = min(rows + min(0, upper), cols - max(0, lower))
    if packed.shape != x.shape[:-2] + (upper - lower + 1, longest):
        raise ValueError(f"diagonal of shape {list(diagonal.shape)} for k [{lower}, {upper}] "
                         f"of an input of shape {list(x.shape)}")
    out = x.copy()
    for j, row, col, pos in _diagonals(rows, cols, lower, upper, _align(node)):
        out[..., row, col] = packed[..., j, pos]
    return out


# -- scatters and segments -------------------------------------------------------------------


@register("ScatterNd", attrs={"bad_indices_policy": ("", "DEFAULT", "ERROR")})
def _scatter_nd(node, indices, updates, shape):
    # Repeated indices add up; one outside the shape is an error, as on TF's CPU.
    indices, updates, shape = np.asarray(indices), np.asarray(updates), _ints(shape)
    depth = indices.shape[-1] if indices.ndim else 0
    rows = indices.reshape(-1, depth).astype(np.int64)
    if np.any((rows < 0) | (rows >= np.asarray(shape[:depth], np.int64))):
        raise ValueError(f"an index of {rows.tolist()} is outside the shape {shape}")
    check_elements(node, int(np.prod(shape, dtype=np.float64)))
    out = np.zeros(shape, updates.dtype)
    np.add.at(out, tuple(rows.T), updates.reshape((len(rows),) + tuple(shape[depth:])))
    return out


_SEGMENT_REDUCTIONS = {"SegmentSum": (np.add, 0), "SegmentProd": (np.multiply, 1),
                       "SegmentMax": (np.maximum, None), "SegmentMin": (np.minimum, None),
                       "SegmentMean": (np.add, 0)}


@register(*_SEGMENT_REDUCTIONS)
def _segment(node, data, segment_ids):
    # Sorted segment ids; as many segments as the largest id + 1, the empty ones 0.
    data, ids = np.asarray(data), np.asarray(segment_ids).astype(np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or np.any(np.diff(ids) < 0)):
        raise ValueError("segment ids must be sorted and non-negative")
    if len(ids) != len(data):
        raise ValueError(f"{len(ids)} segment ids for {len(data)} rows")
    count = int(ids.max()) + 1 if ids.size else 0
    check_elements(node, count * int(np.prod(data.shape[1:], dtype=np.float64)))
    combine, identity = _SEGMENT_REDUCTIONS[node.op]
    if identity is None:  # the extremes start at the first row of each segment
        out = np.zeros((count,) + data.shape[1:], data.dtype)
        filled = np.zeros(count, bool)
        for i, row in zip(ids, data):
            out[i] = combine(out[i], row) if filled[i] else row
            filled[i] = True
        return out
    out = np.full((count,) + data.shape[1:], identity, data.dtype)
    combine.at(out, ids, data)
    if node.op == "SegmentMean":
        sizes = np.bincount(ids, minlength=count).reshape((count,) + (1,) * (data.ndim - 1))
        out = (out / np.maximum(sizes, 1)).astype(data.dtype)
    return out


@register("SparseToDense", attrs=("validate_indices",))
def _sparse_to_dense(node, indices, output_shape, values, default_value):
    # ``indices``: a scalar or vector (positions of a vector), or [n, rank]; ``values``: one
    # per index, or one for all. The other entries are ``default_value``.
    shape = _ints(output_shape)
    indices = np.asarray(indices).astype(np.int64)
    rows = indices.reshape(-1, 1) if indices.ndim < 2 else indices
    if rows.shape[1] != len(shape) or np.any((rows < 0) | (rows >= np.asarray(shape))):
        raise ValueError(f"indices {rows.tolist()} do not index a tensor of shape {shape}")
    check_elements(node, int(np.prod(shape, dtype=np.float64)))
    values = np.asarray(values)
    out = np.full(shape, np.asarray(default_value, values.dtype))
    out[tuple(rows.T)] = values
    return out
