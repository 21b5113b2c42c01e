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

from converters.from_tf.ops.registry import register


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


@register("LeakyRelu")
def _leaky_relu(node, x):
    return jax.nn.leaky_relu(x, node.attr("alpha", 0.2))


@register("Softplus")
def _softplus(node, x):
    return jax.nn.softplus(x)


@register("Softsign")
def _softsign(node, x):
    return x / (1 + jnp.abs(x))


@jax.custom_vjp
def _softmax_last(logits):
    return jax.nn.softmax(logits, axis=-1)


def _softmax_forward(logits):
    probs = jax.nn.softmax(logits, axis=-1)
    return probs, probs


def _softmax_backward(probs, cotangent):
    return (probs * (cotangent - jnp.sum(cotangent * probs, axis=-1, keepdims=True)),)


_softmax_last.defvjp(_softmax_forward, _softmax_backward)


@jax.custom_vjp
def _log_softmax_last(logits):
    return jax.nn.log_softmax(logits, axis=-1)


def _log_softmax_forward(logits):
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return log_probs, log_probs


def _log_softmax_backward(log_probs, cotangent):
    return (cotangent - jnp.exp(log_probs) * jnp.sum(cotangent, axis=-1, keepdims=True),)


_log_softmax_last.defvjp(_log_softmax_forward, _log_softmax_backward)


@register("Softmax")
def _softmax(node, logits):
    return _softmax_last(logits)


@register("LogSoftmax")
def _log_softmax(node, logits):
    return _log_softmax_last(logits)


@register("BiasAdd")
def _bias_add(node, x, bias):
    # data_format NHWC puts channels last; NCHW (and NCDHW) right after the batch.
    if node.attr("data_format", "NHWC").startswith("NC"):
        return x + bias.reshape((-1,) + (1,) * (x.ndim - 2))
    return x + bias
