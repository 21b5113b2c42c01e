"""Neural-network ops: activations, softmax and bias, computed as TF's kernels do.

Convolutions and pooling live in ``ops/conv.py``. ``tf.nn.gelu`` and ``tf.nn.silu`` are
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

from jaxhub_tf.from_tf.ops.registry import register


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
