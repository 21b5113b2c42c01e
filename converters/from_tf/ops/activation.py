"""Activations that ``ops/nn.py`` does not cover, computed as TF's kernels do.

``tf.nn.gelu`` and ``tf.nn.silu`` are not ops of their own: TF builds them from ``Erf``,
``Tanh``, ``Sigmoid`` and arithmetic, which other families implement.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from converters.from_tf.ops.registry import register


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
