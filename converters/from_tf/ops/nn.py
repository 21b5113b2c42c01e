"""Neural-network ops: activations, bias, softmax, convolutions and pooling.

Image ops follow the node's ``data_format`` (``NHWC`` or ``NCHW``); window sizes and
strides in TF attributes are given per axis of that layout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from converters.from_tf.ops.registry import register


@register("Relu")
def _relu(node, x):
    return jax.nn.relu(x)


@register("Relu6")
def _relu6(node, x):
    return jnp.clip(x, 0, 6)


@register("Softmax")
def _softmax(node, logits):
    return jax.nn.softmax(logits, axis=-1)


@register("LogSoftmax")
def _log_softmax(node, logits):
    return jax.nn.log_softmax(logits, axis=-1)


@register("BiasAdd")
def _bias_add(node, x, bias):
    if node.attr("data_format", "NHWC").startswith("NC"):
        return x + bias.reshape((-1,) + (1,) * (x.ndim - 2))
    return x + bias


def _spatial(node, values):
    """The spatial entries of a per-axis attribute, in the node's layout."""
    if node.attr("data_format", "NHWC").startswith("NC"):
        return tuple(values[2:])
    return tuple(values[1:-1])


def _padding(node, rank: int):
    padding = node.attr("padding")
    if padding != "EXPLICIT":
        return padding
    pairs = np.asarray(node.attr("explicit_paddings")).reshape(-1, 2)
    spatial = pairs[2:] if node.attr("data_format", "NHWC").startswith("NC") else pairs[1:-1]
    return [tuple(int(p) for p in pair) for pair in spatial[:rank]]


@register("Conv2D")
def _conv2d(node, x, kernel):
    layout = node.attr("data_format", "NHWC")
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=_spatial(node, node.attr("strides")),
        padding=_padding(node, 2), rhs_dilation=_spatial(node, node.attr("dilations")),
        dimension_numbers=(layout, "HWIO", layout))


def _pool(node, x, init, reducer):
    ksize, strides = node.attr("ksize"), node.attr("strides")
    return jax.lax.reduce_window(x, init, reducer, tuple(ksize), tuple(strides),
                                 node.attr("padding"))


@register("MaxPool")
def _max_pool(node, x):
    return _pool(node, x, -jnp.inf, jax.lax.max)


@register("AvgPool")
def _avg_pool(node, x):
    total = _pool(node, x, 0.0, jax.lax.add)
    # SAME padding averages over the cells inside the image only, as TF does.
    counts = _pool(node, jnp.ones_like(x), 0.0, jax.lax.add)
    return total / counts
