"""Image ops: resizing with TF's exact sampling grids, crops of boxes (``CropAndResize``),
colour (HSV conversions, hue, saturation and contrast adjustments), patches, and
non-max suppression padded to its static maximum size.

Every ``Resize*`` op here is separable and linear in the image, with sampling positions
that depend on shapes only. So each axis gets static taps (source indices and weights,
built with numpy following TF's ``align_corners`` / ``half_pixel_centers`` rules): one tap
for nearest neighbor, two for bilinear, four for bicubic. The resize is then a weighted
sum of gathers per axis: exact, cheap (linear in the output size, unlike interpolation
matrices) and differentiable for free.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import ANY, register
from jaxhub_tf.from_tf.values import as_jax, is_static, shape_tuple, static_ints


#: Entries of TF's precomputed cubic kernel table.
_TABLE_SIZE = 1024


# The taps are numpy arrays for static sizes. A symbolic size (an image size a signature
# leaves free) gets them computed on the device instead (``xp`` is ``jax.numpy``, the
# sizes traced scalars), in float32 as TF's kernels compute them.


def _scale(in_size, out_size, align_corners: bool, xp=np):
    if not align_corners:
        return in_size / out_size
    if xp is np:
        return (in_size - 1) / (out_size - 1) if out_size > 1 else in_size / out_size
    return xp.where(out_size > 1, (in_size - 1) / xp.maximum(out_size - 1, 1),
                    in_size / out_size)


def _source(out, scale, half_pixel: bool):
    """Continuous source coordinate of each output pixel ``out`` (TF's "scaler")."""
    return (out + 0.5) * scale - 0.5 if half_pixel else out * scale


def _bilinear(out, in_size, out_size, align_corners, half_pixel, xp=np) -> list[tuple]:
    src = _source(out, _scale(in_size, out_size, align_corners, xp), half_pixel)
    low = xp.floor(src)
    frac = src - low
    lo = xp.clip(low, 0, in_size - 1).astype(np.int32)
    hi = xp.clip(xp.ceil(src), 0, in_size - 1).astype(np.int32)
    return [(lo, 1 - frac), (hi, frac)]


def _nearest(out, in_size, out_size, align_corners, half_pixel, xp=np) -> list[tuple]:
    scale = _scale(in_size, out_size, align_corners, xp)
    if align_corners:
        src = xp.floor(out * scale + 0.5)  # roundf: halves away from zero
    elif half_pixel:
        src = xp.floor((out + 0.5) * scale)
    else:
        src = xp.floor(out * scale)
    return [(xp.clip(src, 0, in_size - 1).astype(np.int32), None)]


def _cubic_weights(t, a: float, xp=np):
    """Keys' cubic kernel at distance ``t`` (absolute)."""
    t = xp.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return xp.where(t <= 1, near, xp.where(t < 2, far, 0.0))


def _bicubic(out, in_size, out_size, align_corners, half_pixel, xp=np) -> list[tuple]:
    src = _source(out, _scale(in_size, out_size, align_corners, xp), half_pixel)
    base = xp.floor(src)
    # TF reads the kernel from a table of 1024 steps: round the fraction the same way.
    frac = xp.rint((src - base) * _TABLE_SIZE) / _TABLE_SIZE
    # TF: Keys' a = -0.5 with half-pixel centers (taps outside the image dropped and the
    # rest renormalized); the legacy a = -0.75 kernel otherwise (edge taps repeated).
    a = -0.5 if half_pixel else -0.75
    taps = []
    for k in range(-1, 3):
        index = base + k
        weight = _cubic_weights(frac - k, a, xp)
        if half_pixel:
            weight = xp.where((index >= 0) & (index <= in_size - 1), weight, 0.0)
        taps.append((xp.clip(index, 0, in_size - 1).astype(np.int32), weight))
    if half_pixel:
        total = sum(w for _, w in taps)
        taps = [(i, w / total) for i, w in taps]
    return taps


def _taps(kernel, in_size, out_size, *args) -> list[tuple]:
    """``kernel``'s taps from ``in_size`` pixels to ``out_size`` (ints or symbolic)."""
    if isinstance(in_size, int) and isinstance(out_size, int):
        return kernel(np.arange(out_size, dtype=np.float64), in_size, out_size, *args)
    size = lambda d: jnp.asarray(d, jnp.float32)  # a symbolic size as a traced value
    return kernel(jax.lax.iota(jnp.float32, out_size), size(in_size), size(out_size),
                  *args, xp=jnp)


_KERNELS = {
    "ResizeBilinear": _bilinear,
    "ResizeNearestNeighbor": _nearest,
    "ResizeBicubic": _bicubic,
}


def _resample(x, axis: int, taps: list[tuple]):
    """``sum_k weight_k * x[index_k]`` along ``axis`` (one gather per tap)."""
    out = None
    for index, weight in taps:
        term = jnp.take(x, index, axis=axis)
        if weight is not None:
            shape = (-1,) + (1,) * (x.ndim - axis - 1)
            term = term * weight.astype(np.float32).reshape(shape)
        out = term if out is None else out + term
    return out


def _separable(x, size, kernel, *args):
    """``x`` (NHWC) resized to ``size`` with ``kernel``'s taps (see :func:`_taps`)."""
    out_h, out_w = shape_tuple(size)
    in_h, in_w = x.shape[1:3]
    x = _resample(x, 1, _taps(kernel, in_h, out_h, *args))
    return _resample(x, 2, _taps(kernel, in_w, out_w, *args))


@register(*_KERNELS, attrs=("align_corners", "half_pixel_centers"))
def _resize(node, images, size):
    if node.attr("align_corners", False) and node.attr("half_pixel_centers", False):
        # TF's kernels refuse the pair when they run; refused here when converting.
        raise ValueError("align_corners and half_pixel_centers cannot both be true (TF "
                         "refuses them at run time): set half_pixel_centers=False")
    x = as_jax(images)
    if node.op != "ResizeNearestNeighbor":
        x = x.astype(jnp.float32)  # TF interpolates to float32 from any dtype
    return _separable(x, size, _KERNELS[node.op], node.attr("align_corners", False),
                      node.attr("half_pixel_centers", False))


def _area(out, in_size, out_size, align_corners: bool, xp=np) -> list[tuple]:
    """Box-filter taps: each output pixel averages the source cells its box
    ``[o * scale, (o + 1) * scale)`` covers, weighted by the covered fraction (TF's
    ``ResizeArea``, cells past the edge read the last row)."""
    if xp is not np:
        raise NotImplementedError(
            "ResizeArea from or to a size the signature leaves free: its number of taps "
            "depends on the sizes; give the image sizes in the signature")
    scale = _scale(in_size, out_size, align_corners)
    start = out * scale
    end = start + scale
    first = np.floor(start).astype(np.int64)
    n_taps = int(np.max(np.ceil(end).astype(np.int64) - first))
    taps = []
    for k in range(n_taps):
        cell = first + k
        covered = np.minimum(cell + 1, end) - np.maximum(cell, start)
        weight = np.clip(covered, 0, None) / scale
        taps.append((np.minimum(cell, in_size - 1).astype(np.int32), weight))
    return taps


@register("ResizeArea", attrs=("align_corners",))
def _resize_area(node, images, size):
    x = as_jax(images).astype(jnp.float32)  # float32 from any dtype, as TF
    return _separable(x, size, _area, node.attr("align_corners", False))


@register("CropAndResize", attrs={"method": ("bilinear", "nearest"), "extrapolation_value": ANY})
def _crop_and_resize(node, images, boxes, box_index, crop_size):
    """Crops of ``boxes`` (normalized ``[y1, x1, y2, x2]``, computed from tensor values)
    resampled to ``crop_size``: TF's sampling positions, and its fill value outside the
    image. Differentiable in the image and in the boxes."""
    x = as_jax(images).astype(jnp.float32)
    boxes = as_jax(boxes).astype(jnp.float32)
    crop_h, crop_w = shape_tuple(crop_size)  # static: it is the output shape
    in_y = _crop_positions(boxes[:, 0], boxes[:, 2], x.shape[1], crop_h)  # [boxes, crop_h]
    in_x = _crop_positions(boxes[:, 1], boxes[:, 3], x.shape[2], crop_w)  # [boxes, crop_w]
    image = as_jax(box_index).astype(jnp.int32)[:, None, None]

    def read(y, x_):  # [boxes, crop_h, crop_w, channels]
        y = jnp.clip(y, 0, x.shape[1] - 1).astype(jnp.int32)[:, :, None]
        x_ = jnp.clip(x_, 0, x.shape[2] - 1).astype(jnp.int32)[:, None, :]
        return x[image, y, x_]

    if node.attr("method", "bilinear") == "nearest":
        # TF rounds halves away from zero (roundf); positions outside are masked below.
        out = read(jnp.floor(in_y + 0.5), jnp.floor(in_x + 0.5))
    else:
        top, left = jnp.floor(in_y), jnp.floor(in_x)
        dy, dx = (in_y - top)[:, :, None, None], (in_x - left)[:, None, :, None]
        upper = read(top, left) + (read(top, jnp.ceil(in_x)) - read(top, left)) * dx
        lower = read(jnp.ceil(in_y), left) + (
            read(jnp.ceil(in_y), jnp.ceil(in_x)) - read(jnp.ceil(in_y), left)) * dx
        out = upper + (lower - upper) * dy
    inside_y = (in_y >= 0) & (in_y <= x.shape[1] - 1)
    inside_x = (in_x >= 0) & (in_x <= x.shape[2] - 1)
    inside = (inside_y[:, :, None] & inside_x[:, None, :])[..., None]
    return jnp.where(inside, out, jnp.float32(node.attr("extrapolation_value", 0.0)))


def _crop_positions(start, end, size: int, crop: int):
    """Source coordinates of a crop's pixels along one axis, per box (TF's formula)."""
    if crop > 1:
        step = (end - start) * (size - 1) / (crop - 1)
        return start[:, None] * (size - 1) + jnp.arange(crop, dtype=jnp.float32) * step[:, None]
    return (0.5 * (start + end) * (size - 1))[:, None]


# -- colour ---------------------------------------------------------------------------------


def _rgb_to_hsv(rgb):
    """Hue, saturation and value in [0, 1] (the last axis: red, green, blue)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = jnp.max(rgb, axis=-1)
    chroma = value - jnp.min(rgb, axis=-1)
    safe = jnp.where(chroma > 0, chroma, 1)
    hue = jnp.where(value == r, (g - b) / safe,
                    jnp.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe)) / 6
    hue = jnp.where(chroma > 0, jnp.where(hue < 0, hue + 1, hue), 0)
    saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1), 0)
    return hue, saturation, value


def _hsv_to_rgb(hue, saturation, value):
    """The inverse of :func:`_rgb_to_hsv`: each channel from its distance to the hue."""
    channels = []
    for n in (5.0, 3.0, 1.0):  # red, green, blue
        k = jnp.mod(n + hue * 6, 6)
        channels.append(value - value * saturation * jnp.clip(jnp.minimum(k, 4 - k), 0, 1))
    return jnp.stack(channels, axis=-1)


@register("RGBToHSV")
def _rgb_to_hsv_op(node, images):
    return jnp.stack(_rgb_to_hsv(as_jax(images)), axis=-1)


@register("HSVToRGB")
def _hsv_to_rgb_op(node, images):
    images = as_jax(images)
    return _hsv_to_rgb(images[..., 0], images[..., 1], images[..., 2])


@register("AdjustHue")
def _adjust_hue(node, images, delta):
    images = as_jax(images)
    hue, saturation, value = _rgb_to_hsv(images.astype(jnp.float32))
    hue = jnp.mod(hue + as_jax(delta, jnp.float32), 1.0)
    return _hsv_to_rgb(hue, saturation, value).astype(images.dtype)


@register("AdjustSaturation")
def _adjust_saturation(node, images, scale):
    images = as_jax(images)
    hue, saturation, value = _rgb_to_hsv(images.astype(jnp.float32))
    saturation = jnp.clip(saturation * as_jax(scale, jnp.float32), 0.0, 1.0)
    return _hsv_to_rgb(hue, saturation, value).astype(images.dtype)


@register("AdjustContrastv2")
def _adjust_contrast(node, images, contrast_factor):
    """Each channel's deviation from its mean over the image scaled by the factor."""
    images = as_jax(images)
    x = images.astype(jnp.float32)
    mean = jnp.mean(x, axis=(-3, -2), keepdims=True)
    return ((x - mean) * as_jax(contrast_factor, jnp.float32) + mean).astype(images.dtype)



# -- patches --------------------------------------------------------------------------------


@register("ExtractImagePatches",
          attrs={"ksizes": ANY, "strides": ANY, "rates": ANY, "padding": ("SAME", "VALID")})
def _extract_image_patches(node, images):
    """Each (dilated) window's pixels as one feature vector, in TF's (row, col, channel)
    order; one patches convolution, so differentiable like one."""
    x = as_jax(images)
    (_, k_rows, k_cols, _), (_, s_rows, s_cols, _), (_, r_rows, r_cols, _) = (
        node.attr(k) for k in ("ksizes", "strides", "rates"))
    patches = jax.lax.conv_general_dilated_patches(
        x, (k_rows, k_cols), (s_rows, s_cols), node.attr("padding"),
        rhs_dilation=(r_rows, r_cols), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST)
    # JAX orders each patch (channel, row, col); TF (row, col, channel).
    n, rows, cols, _ = patches.shape
    patches = patches.reshape(n, rows, cols, x.shape[-1], k_rows * k_cols)
    return jnp.swapaxes(patches, -1, -2).reshape(n, rows, cols, -1)


# Unpadded, the number of boxes kept depends on the scores: a host stage runs those, on
# signature inputs. On the device, only the padded ops convert (boxes computed by the model).
@register("NonMaxSuppressionV4", attrs={"pad_to_max_output_size": (True,)})
def _non_max_suppression_v4(node, boxes, scores, max_output_size, iou_threshold,
                            score_threshold):
    indices, _, valid = _non_max_suppression(boxes, scores, max_output_size, iou_threshold,
                                             score_threshold)
    return indices, valid


@register("NonMaxSuppressionV5", attrs={"pad_to_max_output_size": (True,)})
def _non_max_suppression_v5(node, boxes, scores, max_output_size, iou_threshold,
                            score_threshold, soft_nms_sigma):
    if not is_static(soft_nms_sigma) or np.any(np.asarray(soft_nms_sigma) != 0):
        raise NotImplementedError("soft non-max suppression (a soft_nms_sigma other than a "
                                  "constant 0)")
    return _non_max_suppression(boxes, scores, max_output_size, iou_threshold,
                                score_threshold)


def _non_max_suppression(boxes, scores, max_output_size, iou_threshold, score_threshold):
    """TF's greedy non-max suppression, padded: ``(indices, scores, count)``.

    Boxes are visited by decreasing score (the lower index first among equal ones); one is
    kept when its score is above ``score_threshold``, fewer than ``max_output_size`` are
    kept, and its IoU with every kept box is at most ``iou_threshold``. The kept boxes'
    indices, in that order, are padded with 0 (their scores with 0) to ``max_output_size``.
    """
    (size,) = static_ints(max_output_size)
    boxes, scores = as_jax(boxes), as_jax(scores)
    corners = jnp.concatenate([jnp.minimum(boxes[:, :2], boxes[:, 2:]),
                               jnp.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    order = jnp.argsort(-scores, stable=True)

    def visit(i, state):
        kept, count = state
        k = order[i]
        overlaps = _iou(corners[k], corners) > iou_threshold
        keep = (scores[k] > score_threshold) & (count < size) & ~jnp.any(kept & overlaps)
        return kept.at[k].set(keep), count + keep.astype(count.dtype)

    kept, count = jax.lax.fori_loop(0, scores.shape[0], visit,
                                    (jnp.zeros(scores.shape, bool), jnp.int32(0)))
    (picked,) = jnp.nonzero(kept[order], size=size, fill_value=0)
    valid = jnp.arange(size) < count
    indices = jnp.where(valid, order[picked], 0).astype(jnp.int32)
    return indices, jnp.where(valid, scores[indices], 0), count


def _iou(box, boxes):
    """TF's IoU of ``box`` with each of ``boxes`` (``[ymin, xmin, ymax, xmax]``); 0 when
    either has no area."""
    area = jnp.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    box_area = jnp.prod(box[2:] - box[:2])
    extent = jnp.minimum(box[2:], boxes[:, 2:]) - jnp.maximum(box[:2], boxes[:, :2])
    inter = jnp.prod(jnp.maximum(extent, 0), axis=1)
    union = box_area + area - inter
    return jnp.where((area > 0) & (box_area > 0), inter / jnp.where(union > 0, union, 1), 0)
