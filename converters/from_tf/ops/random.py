"""Random ops, drawn from the explicit PRNG key of the running context.

TF's stateful random ops (``RandomUniform``, ...) have no JAX counterpart: each gets a
fresh key split off the key the caller passes (a train variant's ``rng``), so the
converted function stays pure. Values differ from TF's, distributions do not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import UnknowableError, as_jax, is_static, shape_tuple

#: The numbers come from the caller's JAX key, so TF's op seeds do not pick them.
_SEEDS = ("seed", "seed2")

#: The ops that need the caller's key: a function that may run one takes ``rng``.
#: (``RngReadAndSkip`` draws from the key when there is one and otherwise reads its
#: generator's state, as TF does.)
KEYED_OPS = frozenset({"RandomUniform", "RandomStandardNormal", "TruncatedNormal",
                       "RandomUniformInt", "Multinomial", "RandomShuffle"})


@register("RandomUniform", attrs=_SEEDS, fold=False)
def _uniform(node, shape):
    key = node.ctx.next_key(node.op)
    return jax.random.uniform(key, shape_tuple(shape), node.attr("dtype"))


@register("RandomStandardNormal", attrs=_SEEDS, fold=False)
def _normal(node, shape):
    key = node.ctx.next_key(node.op)
    return jax.random.normal(key, shape_tuple(shape), node.attr("dtype"))


@register("TruncatedNormal", attrs=_SEEDS, fold=False)
def _truncated_normal(node, shape):
    key = node.ctx.next_key(node.op)
    return jax.random.truncated_normal(key, -2.0, 2.0, shape_tuple(shape), node.attr("dtype"))


@register("RandomUniformInt", attrs=_SEEDS, fold=False)
def _uniform_int(node, shape, minval, maxval):
    key = node.ctx.next_key(node.op)
    return jax.random.randint(key, shape_tuple(shape), as_jax(minval), as_jax(maxval),
                              np.asarray(minval).dtype if is_static(minval) else minval.dtype)


@register("Multinomial", attrs=_SEEDS + ("output_dtype",), fold=False)
def _multinomial(node, logits, num_samples):
    """``tf.random.categorical``: ``num_samples`` class indices per row of logits."""
    logits = as_jax(logits)
    samples = jax.random.categorical(node.ctx.next_key(node.op), logits[:, None, :], axis=-1,
                                     shape=(logits.shape[0], int(np.asarray(num_samples))))
    return samples.astype(jax.dtypes.canonicalize_dtype(node.attr("output_dtype")))


@register("RandomShuffle", attrs=_SEEDS, fold=False)
def _random_shuffle(node, x):
    """A random permutation of ``x`` along its first axis."""
    return jax.random.permutation(node.ctx.next_key(node.op), as_jax(x), axis=0)


#: How far ``RngReadAndSkip`` moves a Philox counter per unit of ``delta``.
_COUNTER_STEPS = 256


@register("RngReadAndSkip", fold=False)
def _rng_read_and_skip(node, handle, alg, delta):
    """A ``tf.random.Generator`` step: returns its state, advances the stored counter.

    With an RNG key (a train variant), the returned state is drawn from that key, so the
    caller's key decides every random number; the stored state still advances as in TF,
    and the assignment comes back as state.
    """
    if node.ctx.partial:
        raise UnknowableError(node.op)
    state = node.ctx.state[handle.key]
    dtype = np.asarray(state).dtype if is_static(state) else state.dtype
    if node.ctx.rng is None:
        drawn = state
    else:
        drawn = jax.random.bits(node.ctx.next_key(node.op), np.shape(state), jnp.uint32)
        drawn = drawn.astype(dtype)
    # TF's Philox kernel moves the counter 256 steps per number asked for (measured:
    # uniform([3]) adds 768); the carry into the counter's high word is not modelled.
    step = as_jax(delta).astype(dtype) * _COUNTER_STEPS
    advanced = as_jax(state).at[0].add(step)
    node.ctx.state[handle.key] = advanced
    return drawn
