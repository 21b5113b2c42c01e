"""Image resizing with TF's exact sampling grids.

Every ``Resize*`` op here is separable and linear in the image, with sampling positions
that depend on shapes only. So bilinear and bicubic resizing get a static interpolation
matrix per axis (built with numpy, following TF's ``align_corners`` /
``half_pixel_centers`` rules) and become two small matrix products: exact and
differentiable for free. Nearest-neighbor resizing is two gathers with static indices.
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from converters.from_tf.ops.registry import register
from converters.from_tf.values import as_jax


#: Entries of TF's precomputed cubic kernel table.
_TABLE_SIZE = 1024


def _scale(in_size: int, out_size: int, align_corners: bool) -> float:
    if align_corners and out_size > 1:
        return (in_size - 1) / (out_size - 1)
    return in_size / out_size


def _source(out_size: int, scale: float, half_pixel: bool) -> np.ndarray:
    """Continuous source coordinate of each output pixel (TF's "scaler")."""
    out = np.arange(out_size, dtype=np.float64)
    return (out + 0.5) * scale - 0.5 if half_pixel else out * scale


def _bilinear(in_size, out_size, align_corners, half_pixel) -> np.ndarray:
    src = _source(out_size, _scale(in_size, out_size, align_corners), half_pixel)
    low = np.floor(src)
    frac = src - low
    lo = np.clip(low, 0, in_size - 1).astype(int)
    hi = np.clip(np.ceil(src), 0, in_size - 1).astype(int)
    matrix = np.zeros((out_size, in_size))
    np.add.at(matrix, (np.arange(out_size), lo), 1 - frac)
    np.add.at(matrix, (np.arange(out_size), hi), frac)
    return matrix


def _nearest(in_size, out_size, align_corners, half_pixel) -> np.ndarray:
    """The source index of each output pixel."""
    scale = _scale(in_size, out_size, align_corners)
    out = np.arange(out_size, dtype=np.float64)
    if align_corners:
        src = np.floor(out * scale + 0.5)  # roundf: halves away from zero
    elif half_pixel:
        src = np.floor((out + 0.5) * scale)
    else:
        src = np.floor(out * scale)
    return np.clip(src, 0, in_size - 1).astype(np.int32)


def _cubic_weights(t: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic kernel at distance ``t`` (absolute)."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _bicubic(in_size, out_size, align_corners, half_pixel) -> np.ndarray:
    src = _source(out_size, _scale(in_size, out_size, align_corners), half_pixel)
    base = np.floor(src)
    # TF reads the kernel from a table of 1024 steps: round the fraction the same way.
    frac = np.rint((src - base) * _TABLE_SIZE) / _TABLE_SIZE
    matrix = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    # TF: Keys' a = -0.5 with half-pixel centers (taps outside the image dropped and the
    # rest renormalized); the legacy a = -0.75 kernel otherwise (edge taps repeated).
    a = -0.5 if half_pixel else -0.75
    for k in range(-1, 3):
        index = base + k
        weight = _cubic_weights(frac - k, a)
        inside = (index >= 0) & (index <= in_size - 1)
        if half_pixel:
            weight = np.where(inside, weight, 0.0)
        np.add.at(matrix, (rows, np.clip(index, 0, in_size - 1).astype(int)), weight)
    return matrix / matrix.sum(axis=1, keepdims=True) if half_pixel else matrix


_MATRICES = {
    "ResizeBilinear": _bilinear,
    "ResizeBicubic": _bicubic,
}


def _grids(node, images, size, kernel):
    out_h, out_w = (int(s) for s in np.asarray(size).reshape(2))
    in_h, in_w = images.shape[1:3]
    args = (node.attr("align_corners", False), node.attr("half_pixel_centers", False))
    return kernel(in_h, out_h, *args), kernel(in_w, out_w, *args)


@register(*_MATRICES)
def _resize_interpolated(node, images, size):
    # TF returns float32 for any input dtype.
    x = as_jax(images).astype(jnp.float32)
    rows, cols = _grids(node, x, size, _MATRICES[node.op])
    x = jnp.einsum("oh,nhwc->nowc", rows.astype(np.float32), x)
    return jnp.einsum("pw,nowc->nopc", cols.astype(np.float32), x)


@register("ResizeNearestNeighbor")
def _resize_nearest(node, images, size):
    # A gather keeps the dtype exact (integers too).
    x = as_jax(images)
    rows, cols = _grids(node, x, size, _nearest)
    return jnp.take(jnp.take(x, rows, axis=1), cols, axis=2)
