"""Random ops, drawn from the explicit PRNG key of the running context.

TF's stateful random ops (``RandomUniform``, ...) have no JAX counterpart: each gets a
fresh key split off the key the caller passes (a train variant's ``rng``), so the
converted function stays pure. Values differ from TF's, distributions do not.
"""

from __future__ import annotations

import jax

from converters.from_tf.ops.registry import register
from converters.from_tf.values import shape_tuple


@register("RandomUniform")
def _uniform(node, shape):
    key = node.ctx.next_key(node.op)
    return jax.random.uniform(key, shape_tuple(shape), node.attr("dtype"))


@register("RandomStandardNormal")
def _normal(node, shape):
    key = node.ctx.next_key(node.op)
    return jax.random.normal(key, shape_tuple(shape), node.attr("dtype"))


@register("TruncatedNormal")
def _truncated_normal(node, shape):
    key = node.ctx.next_key(node.op)
    return jax.random.truncated_normal(key, -2.0, 2.0, shape_tuple(shape), node.attr("dtype"))
