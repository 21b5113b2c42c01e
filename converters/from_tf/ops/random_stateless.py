"""Stateless random ops: values that are a pure function of a seed tensor.

TF derives its stateless streams from the seed with Philox; JAX's bits differ, so values
differ from TF's while the distributions, shapes, dtypes and the determinism do not: the
same seed gives the same values, a different seed different ones. The seed, key and counter
tensors of the ``*V2`` ops are folded into a JAX key; ``StatelessRandomGetKeyCounter``
hands the seed's words on as the "key" and zeros as the "counter".

Keras layers draw dropout masks this way, from a seed variable that each training call
advances, so a converted train variant is deterministic given its parameters and state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax, is_static, shape_tuple

#: TF's id of the Philox algorithm, reported by ``StatelessRandomGetAlg``.
_PHILOX = 1


def _words(value) -> jax.Array:
    """The 32-bit words of an integer seed/key/counter tensor (high words of int64 too)."""
    if is_static(value):
        flat = np.asarray(value).astype(np.uint64).reshape(-1)
        return jnp.asarray(np.concatenate([flat & 0xFFFFFFFF, flat >> 32]).astype(np.uint32))
    return as_jax(value).reshape(-1).astype(jnp.uint32)


def _key(*tensors) -> jax.Array:
    key = jax.random.key(0)
    for word in jnp.concatenate([_words(t) for t in tensors]):
        key = jax.random.fold_in(key, word)
    return key


def _sample(node, key, shape, extra=()):
    shape = shape_tuple(shape)
    dtype = node.attr("dtype")
    op = node.op.removesuffix("V2")
    if op == "StatelessRandomUniform":
        return jax.random.uniform(key, shape, dtype)
    if op == "StatelessRandomNormal":
        return jax.random.normal(key, shape, dtype)
    if op == "StatelessTruncatedNormal":
        return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)
    if op == "StatelessRandomUniformInt":
        low, high = extra
        return jax.random.randint(key, shape, as_jax(low), as_jax(high), dtype)
    raise NotImplementedError(node.op)


@register("StatelessRandomUniform", "StatelessRandomNormal", "StatelessTruncatedNormal")
def _stateless_v1(node, shape, seed):
    return _sample(node, _key(seed), shape)


@register("StatelessRandomUniformInt")
def _stateless_uniform_int(node, shape, seed, low, high):
    return _sample(node, _key(seed), shape, (low, high))


@register("StatelessRandomUniformV2", "StatelessRandomNormalV2",
          "StatelessTruncatedNormalV2")
def _stateless_v2(node, shape, key, counter, alg):
    return _sample(node, _key(key, counter), shape)


@register("StatelessRandomUniformIntV2")
def _stateless_uniform_int_v2(node, shape, key, counter, alg, low, high):
    return _sample(node, _key(key, counter), shape, (low, high))


@register("StatelessRandomUniformFullIntV2")
def _stateless_full_int(node, shape, key, counter, alg):
    """Integers over the whole range of ``dtype``: its bits, drawn uniformly."""
    dtype = np.dtype(node.attr("dtype"))
    unsigned = np.dtype(f"uint{dtype.itemsize * 8}")
    bits = jax.random.bits(_key(key, counter), shape_tuple(shape), unsigned)
    return jax.lax.bitcast_convert_type(bits, dtype) if dtype != unsigned else bits


@register("StatelessRandomGetKeyCounter")
def _get_key_counter(node, seed):
    return [_words(seed), jnp.zeros((2,), jnp.uint32)]


@register("StatelessRandomGetKeyCounterAlg")
def _get_key_counter_alg(node, seed):
    return _get_key_counter(node, seed) + [np.asarray(_PHILOX, np.int32)]


@register("StatelessRandomGetAlg")
def _get_alg(node):
    return np.asarray(_PHILOX, np.int32)


@register("StatelessMultinomial")
def _stateless_multinomial(node, logits, num_samples, seed):
    logits = as_jax(logits)
    n = int(np.asarray(num_samples))
    samples = jax.random.categorical(_key(seed), logits[:, None, :], axis=-1,
                                     shape=(logits.shape[0], n))
    return samples.astype(jax.dtypes.canonicalize_dtype(
        node.attr("output_dtype", np.dtype(np.int64))))
