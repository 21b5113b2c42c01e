"""3×3 stride-1 convolutions as Winograd F(2×2, 3×3), for XLA:CPU.

XLA:CPU's direct 3×3 convolution kernels are slower than oneDNN's (``benchmarks/
PROFILE.md``). Winograd's minimal filtering (Lavin & Gray, 2015) computes each 2×2 output
tile from a 4×4 input tile with 16 multiplies per channel pair instead of 36: the input
tiles and the kernel are transformed by small constant matrices, 16 batched matrix
products over the channels (which XLA:CPU runs as fast dots) replace the 9 taps, and an
output transform folds each product back into a tile. Autodiff's gradient of this
lowering would be a scatter of padded views, so the input gradient is written out: the
cotangent convolved with the flipped kernel, Winograd again.

An experiment for the benchmarks (``benchmarks/conv_lowerings.py``, ``native.py``): the
converter does not use it, because a converted module's batch is symbolic and this
lowering wins only at large batches (``benchmarks/PROFILE.md``, section 8).
:func:`suits` says where it applies. Numerically it differs from a direct convolution by float rounding only (the
transforms' constants are 0, ±1 and ±½).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# F(2x2, 3x3) kernel transform G (4x3); the input (B^T) and output (A^T) transforms are
# written out below as adds and subtracts.
_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)


#: The smallest output height and width where F(2x2, 3x3) beat XLA:CPU's direct kernel
#: (ResNet50's 3x3 convs at batch 32: faster at 56, 28 and 14, slower at 7; PROFILE.md).
MIN_OUTPUT_SIZE = 14


def suits(kernel_shape: Sequence[int], strides: Sequence[int],
          dilations: Sequence[int], data_format: str, output_hw: Sequence[int],
          groups: int = 1) -> bool:
    """Whether :func:`conv3x3` computes this convolution, and faster than XLA:CPU does.

    Args:
      kernel_shape: HWIO.
      strides, dilations: the two spatial ones.
      data_format: ``"NHWC"`` only.
      output_hw: the output's height and width: at least :data:`MIN_OUTPUT_SIZE`.
      groups: feature groups; only 1.
    """
    return (tuple(kernel_shape[:2]) == (3, 3) and tuple(strides) == (1, 1)
            and tuple(dilations) == (1, 1) and data_format == "NHWC" and groups == 1
            and min(output_hw) >= MIN_OUTPUT_SIZE)


def _input_transform(d0, d1, d2, d3):
    """B^T of F(2x2, 3x3) along one tile axis, on the tile's four strided views."""
    return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


Padding = tuple[tuple[int, int], tuple[int, int]]
SAME: Padding = ((1, 1), (1, 1))


def conv3x3(x, kernel, padding: Padding = SAME):
    """A 3×3, stride-1 convolution in NHWC/HWIO as Winograd F(2×2, 3×3).

    Its input gradient is Winograd too (the cotangent convolved with the flipped kernel);
    its kernel gradient is XLA's (autodiff of ``lax.conv_general_dilated``). Autodiff
    through the tile views instead would turn every strided view into a padded
    scatter of the cotangent.

    Args:
      x: f32[N, H, W, C]; N may be symbolic.
      kernel: f32[3, 3, C, D].
      padding: ``((top, bottom), (left, right))``, each at most 2; the default is
        ``SAME``.

    Returns:
      f32[N, H', W', D] with H' = H + top + bottom - 2 (W' alike), equal to
      ``lax.conv_general_dilated(x, kernel, (1, 1), padding)`` up to float rounding.
    """
    padding = tuple(tuple(int(p) for p in pair) for pair in padding)
    if max(max(pair) for pair in padding) > 2:
        return _winograd(x, kernel, padding)  # no flipped-kernel form; autodiff's VJP
    return _conv3x3(x, kernel, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv3x3(x, kernel, padding):
    return _winograd(x, kernel, padding)


def _conv3x3_fwd(x, kernel, padding):
    return _winograd(x, kernel, padding), (x, kernel)


def _conv3x3_bwd(padding, residuals, cotangent):
    x, kernel = residuals
    flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
    dx = _winograd(cotangent, flipped, tuple((2 - a, 2 - b) for a, b in padding))
    _, kernel_vjp = jax.vjp(lambda k: jax.lax.conv_general_dilated(
        x, k, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")), kernel)
    return dx, kernel_vjp(cotangent)[0]


_conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


def _winograd(x, kernel, padding):
    """The forward pass of :func:`conv3x3`."""
    n, h, w, c = x.shape
    (top, bottom), (left, right) = padding
    oh, ow = h + top + bottom - 2, w + left + right - 2
    th, tw = -(-oh // 2), -(-ow // 2)  # 2x2 output tiles; odd sizes get one spare row
    xp = jnp.pad(x, ((0, 0), (top, 2 * th + 2 - h - top), (left, 2 * tw + 2 - w - left),
                     (0, 0)))
    rows = _input_transform(*(xp[:, i:i + 2 * th:2] for i in range(4)))
    tiles = [t for r in rows
             for t in _input_transform(*(r[:, :, j:j + 2 * tw:2] for j in range(4)))]
    v = jnp.stack(tiles).reshape(16, -1, c)
    u = jnp.einsum("ai,ijcd,bj->abcd", _G, kernel, _G).reshape(16, c, kernel.shape[-1])
    m = jnp.einsum("tpc,tcd->tpd", v, u).reshape(4, 4, n, th, tw, -1)
    # A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] on both tile axes.
    m = jnp.stack([m[0] + m[1] + m[2], m[1] - m[2] - m[3]])
    m = jnp.stack([m[:, 0] + m[:, 1] + m[:, 2], m[:, 1] - m[:, 2] - m[:, 3]], axis=1)
    y = m.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * th, 2 * tw, -1)
    return y[:, :oh, :ow]
