"""Fast Fourier transforms (``tf.signal``): complex FFTs over the innermost 1–3 axes,
and real FFTs with TF's ``fft_length`` (the input is cropped or zero-padded to it).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax

_COMPLEX = {
    "FFT": (jnp.fft.fftn, 1), "FFT2D": (jnp.fft.fftn, 2), "FFT3D": (jnp.fft.fftn, 3),
    "IFFT": (jnp.fft.ifftn, 1), "IFFT2D": (jnp.fft.ifftn, 2), "IFFT3D": (jnp.fft.ifftn, 3),
}

_REAL = {
    "RFFT": (jnp.fft.rfftn, 1), "RFFT2D": (jnp.fft.rfftn, 2), "RFFT3D": (jnp.fft.rfftn, 3),
    "IRFFT": (jnp.fft.irfftn, 1), "IRFFT2D": (jnp.fft.irfftn, 2),
    "IRFFT3D": (jnp.fft.irfftn, 3),
}


def _axes(rank: int) -> tuple[int, ...]:
    return tuple(range(-rank, 0))


@register(*_COMPLEX)
def _fft(node, x):
    fn, rank = _COMPLEX[node.op]
    return fn(as_jax(x), axes=_axes(rank))


@register(*_REAL)
def _real_fft(node, x, fft_length):
    fn, rank = _REAL[node.op]
    lengths = [int(n) for n in np.asarray(fft_length).reshape(-1)]
    out = fn(as_jax(x), s=lengths, axes=_axes(rank))
    if node.op.startswith("IRFFT"):
        return out.astype(node.attr("Treal", np.dtype(np.float32)))
    return out.astype(node.attr("Tcomplex", np.dtype(np.complex64)))
