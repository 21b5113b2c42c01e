"""Neural-network ops: activations, bias and softmax.

Convolutions and pooling live in ``ops/conv.py``; ``BiasAdd`` follows the node's
``data_format`` (``NHWC`` or ``NCHW``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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

