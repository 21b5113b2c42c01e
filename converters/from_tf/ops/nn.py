"""Neural-network ops: activations, softmax, bias and max pooling with its argmax, computed
as TF's kernels do.

Convolutions and pooling live in ``ops/conv.py``, but for ``MaxPoolWithArgmax``, whose
indices no convolution lowering needs. ``tf.nn.gelu`` and ``tf.nn.silu`` are
not ops of their own: TF builds them from ``Erf``, ``Tanh``, ``Sigmoid`` and arithmetic,
which ``ops/elementwise.py`` implements.

``Softmax`` and ``LogSoftmax`` carry their textbook gradients, computed from the output
alone: autodiff through max, exp, sum and divide kept the exponentials and the reciprocal
of the sums, and XLA:CPU wrote the reciprocal out broadcast to the full
``[batch, heads, query, key]`` shape in every attention layer of a fine-tuning step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import ANY, register
from jaxhub_tf.from_tf.values import as_jax


@register("Relu")
def _relu(node, x):
    return jax.nn.relu(x)


@register("Relu6")
def _relu6(node, x):
    return jnp.clip(x, 0, 6)


@register("Elu")
def _elu(node, x):
    return jax.nn.elu(x)


@register("Selu")
def _selu(node, x):
    return jax.nn.selu(x)


@register("LeakyRelu", attrs=("alpha",))
def _leaky_relu(node, x):
    return jax.nn.leaky_relu(x, node.attr("alpha", 0.2))


@register("Softplus")
def _softplus(node, x):
    return jax.nn.softplus(x)


@register("Softsign")
def _softsign(node, x):
    return x / (1 + jnp.abs(x))


def _keeping_output(forward, backward):
    """``forward`` with a VJP that keeps only its output: ``backward(output, cotangent)``."""
    fn = jax.custom_vjp(forward)
    fn.defvjp(lambda x: (forward(x),) * 2, lambda y, cotangent: (backward(y, cotangent),))
    return fn


_softmax_last = _keeping_output(
    lambda logits: jax.nn.softmax(logits, axis=-1),
    lambda probs, g: probs * (g - jnp.sum(g * probs, axis=-1, keepdims=True)))

_log_softmax_last = _keeping_output(
    lambda logits: jax.nn.log_softmax(logits, axis=-1),
    lambda log_probs, g: g - jnp.exp(log_probs) * jnp.sum(g, axis=-1, keepdims=True))


@register("Softmax")
def _softmax(node, logits):
    return _softmax_last(logits)


@register("LogSoftmax")
def _log_softmax(node, logits):
    return _log_softmax_last(logits)


@register("BiasAdd", attrs=("data_format",))
def _bias_add(node, x, bias):
    # data_format NHWC puts channels last; NCHW (and NCDHW) right after the batch.
    if node.attr("data_format", "NHWC").startswith("NC"):
        return x + bias.reshape((-1,) + (1,) * (x.ndim - 2))
    return x + bias


@register("MaxPoolWithArgmax", attrs={"ksize": ANY, "strides": ANY,
                                      "padding": ("SAME", "VALID"),
                                      "include_batch_in_index": ANY})
def _max_pool_with_argmax(node, x):
    """Max pooling (NHWC) and where each maximum is, as TF's flat index into the input:
    ``(y * width + x) * channels + c``, with ``include_batch_in_index`` also
    ``+ b * height * width * channels``.

    The window is scanned in row-major order, keeping the first of equal maxima; padding
    is never picked. Each maximum is selected along with its index, so its gradient goes to
    the picked element, as TF's does.
    """
    x = as_jax(x)
    (_, kh, kw, _), (_, sh, sw, _) = node.attr("ksize"), node.attr("strides")
    _, height, width, channels = x.shape
    dtype = jax.dtypes.canonicalize_dtype(node.attr("Targmax", np.dtype(np.int64)))
    iota = [jax.lax.broadcasted_iota(dtype, x.shape, axis) for axis in range(4)]
    index = (iota[1] * width + iota[2]) * channels + iota[3]
    if node.attr("include_batch_in_index", False):
        index = index + iota[0] * (height * width * channels)
    pads = [(0, 0), _same_pads(height, kh, sh), _same_pads(width, kw, sw), (0, 0)]
    if node.attr("padding") == "VALID":
        pads = [(0, 0)] * 4
    lowest = -jnp.inf if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.iinfo(x.dtype).min
    x = jnp.pad(x, pads, constant_values=lowest)
    index = jnp.pad(index, pads)
    out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    best = best_index = None
    for dy in range(kh):
        for dx in range(kw):
            value, at = (_window_corner(v, dy, dx, out_h, out_w, sh, sw) for v in (x, index))
            if best is None:
                best, best_index = value, at
            else:
                take = value > best
                best, best_index = jnp.where(take, value, best), jnp.where(take, at, best_index)
    return best, best_index


def _same_pads(size: int, window: int, stride: int) -> tuple[int, int]:
    """TF's SAME padding of one axis: (before, after), the extra one after."""
    total = max((-(-size // stride) - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _window_corner(x, dy: int, dx: int, out_h: int, out_w: int, sh: int, sw: int):
    """The element at offset ``(dy, dx)`` of every pooling window: ``[n, out_h, out_w, c]``."""
    x = jax.lax.slice_in_dim(x, dy, dy + (out_h - 1) * sh + 1, sh, axis=1)
    return jax.lax.slice_in_dim(x, dx, dx + (out_w - 1) * sw + 1, sw, axis=2)
