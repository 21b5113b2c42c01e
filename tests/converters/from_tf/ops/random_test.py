"""Random ops: TF's shapes and dtypes, determinism in the seed, and the right distributions.

Values cannot match TF's (TF draws with Philox, JAX with its own PRNG), so these tests
check what a caller relies on instead, on large samples.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow as tf

from jaxhub_tf.from_tf.interpreter import run_graph

_N = (200, 100)


def _convert(fn, *specs):
    concrete = tf.function(fn).get_concrete_function(*specs)
    graph_def = concrete.graph.as_graph_def()
    ops = {n.op for n in graph_def.node}
    run = run_graph(graph_def, [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    return concrete, ops, jax.jit(lambda args, rng=None: run({}, args, rng)[0])


_SEED = tf.TensorSpec([2], tf.int32)

# (op the graph must use, TF function of a seed, check of a sample)
STATELESS = [
    ("StatelessRandomUniformV2", lambda s: tf.random.stateless_uniform(_N, s),
     lambda x: (x.min() >= 0) & (x.max() < 1) & (abs(x.mean() - 0.5) < 0.01)),
    ("StatelessRandomNormalV2", lambda s: tf.random.stateless_normal(_N, s),
     lambda x: (abs(x.mean()) < 0.02) & (abs(x.std() - 1) < 0.02)),
    ("StatelessTruncatedNormalV2", lambda s: tf.random.stateless_truncated_normal(_N, s),
     lambda x: (abs(x).max() <= 2) & (abs(x.std() - 0.88) < 0.02)),
    ("StatelessRandomUniformIntV2", lambda s: tf.random.stateless_uniform(
        _N, s, minval=-3, maxval=4, dtype=tf.int32),
     lambda x: (x.min() == -3) & (x.max() == 3) & (abs(x.mean()) < 0.05)),
    ("StatelessRandomUniform", lambda s: tf.raw_ops.StatelessRandomUniform(
        shape=_N, seed=s), lambda x: (x.min() >= 0) & (x.max() < 1)),
    ("StatelessRandomNormal", lambda s: tf.raw_ops.StatelessRandomNormal(shape=_N, seed=s),
     lambda x: abs(x.std() - 1) < 0.02),
    ("StatelessTruncatedNormal", lambda s: tf.raw_ops.StatelessTruncatedNormal(
        shape=_N, seed=s), lambda x: abs(x).max() <= 2),
    ("StatelessRandomUniformInt", lambda s: tf.raw_ops.StatelessRandomUniformInt(
        shape=_N, seed=s, minval=0, maxval=5), lambda x: (x.min() == 0) & (x.max() == 4)),
    ("StatelessRandomUniformFullIntV2", lambda s: tf.random.stateless_uniform(
        _N, s, minval=None, maxval=None, dtype=tf.int32),
     lambda x: (x.min() < -2**30) & (x.max() > 2**30) & (abs(x.mean()) < 2**31 * 0.01)),
    ("StatelessMultinomial", lambda s: tf.random.stateless_categorical(
        tf.math.log([[0.2, 0.8], [0.9, 0.1]]), 5000, s),
     lambda x: (abs(x[0].mean() - 0.8) < 0.03) & (abs(x[1].mean() - 0.1) < 0.03)),
    ("StatelessRandomGetKeyCounterAlg", lambda s: tf.raw_ops.StatelessRandomUniformV2(
        shape=_N, **dict(zip(("key", "counter", "alg"),
                             tf.raw_ops.StatelessRandomGetKeyCounterAlg(seed=s)))),
     lambda x: (x.min() >= 0) & (x.max() < 1)),
    ("StatelessRandomGetAlg", lambda s: tf.raw_ops.StatelessRandomNormalV2(
        shape=_N, key=tf.raw_ops.StatelessRandomGetKeyCounter(seed=s)[0],
        counter=tf.raw_ops.StatelessRandomGetKeyCounter(seed=s)[1],
        alg=tf.raw_ops.StatelessRandomGetAlg()), lambda x: abs(x.mean()) < 0.02),
]

STATEFUL = [
    ("RandomUniform", lambda x: x + tf.random.uniform(_N),
     lambda x: (x.min() >= 0) & (x.max() < 1)),
    ("RandomStandardNormal", lambda x: x + tf.random.normal(_N),
     lambda x: abs(x.std() - 1) < 0.02),
    ("TruncatedNormal", lambda x: x + tf.random.truncated_normal(_N),
     lambda x: abs(x).max() <= 2),
    ("RandomUniformInt", lambda x: x + tf.cast(tf.random.uniform(_N, -2, 3, tf.int32),
                                               tf.float32),
     lambda x: (x.min() == -2) & (x.max() == 2)),
    ("Multinomial", lambda x: x + tf.cast(tf.random.categorical(
        tf.math.log([[0.2, 0.8]] * _N[0]), _N[1], dtype=tf.int32), tf.float32),
     lambda x: (x.min() == 0) & (x.max() == 1) & (abs(x.mean() - 0.8) < 0.01)),
    # Each column a permutation of 0..199: sorted back, it is the column exactly.
    ("RandomShuffle", lambda x: x + tf.random.shuffle(
        tf.tile(tf.range(_N[0], dtype=tf.float32)[:, None], [1, _N[1]])),
     lambda x: np.all(np.sort(x, axis=0) == np.arange(_N[0])[:, None])
     & np.any(x != np.arange(_N[0])[:, None])),
]

OPS = [op for op, _, _ in STATELESS + STATEFUL] + ["StatelessRandomGetKeyCounter"]


@pytest.mark.parametrize("op,fn,ok", STATELESS, ids=[c[0] for c in STATELESS])
def test_stateless_is_a_function_of_the_seed(op, fn, ok):
    concrete, ops, converted = _convert(fn, _SEED)
    assert op in ops
    seed_a, seed_b = np.array([1, 2], np.int32), np.array([3, 4], np.int32)
    a, = converted([seed_a])
    expected = concrete(tf.constant(seed_a))
    assert a.shape == tuple(expected.shape)
    assert np.dtype(a.dtype) == jax.dtypes.canonicalize_dtype(expected.dtype.as_numpy_dtype)
    np.testing.assert_array_equal(converted([seed_a])[0], a)
    assert np.any(np.asarray(converted([seed_b])[0]) != np.asarray(a))
    assert ok(np.asarray(a, np.float64))


@pytest.mark.parametrize("op,fn,ok", STATEFUL, ids=[c[0] for c in STATEFUL])
def test_stateful_draws_from_the_callers_key(op, fn, ok):
    concrete, ops, converted = _convert(fn, tf.TensorSpec([], tf.float32))
    assert op in ops
    zero = np.float32(0)
    a, = converted([zero], jax.random.key(0))
    assert a.shape == _N and a.dtype == np.float32
    np.testing.assert_array_equal(converted([zero], jax.random.key(0))[0], a)
    assert np.any(np.asarray(converted([zero], jax.random.key(1))[0]) != np.asarray(a))
    assert ok(np.asarray(a, np.float64))
    with pytest.raises(Exception, match="RNG key"):
        converted([zero])
