"""Integer clamps whose bounds pin the result are that bound, known while tracing."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow as tf
from jax import export

from jaxhub_tf.from_tf import clamps, graph
from jaxhub_tf.from_tf.interpreter import run_graph
from jaxhub_tf.from_tf.reader import protos


def _pinned_by_one_size(x):
    n = tf.shape(x)[0]
    return tf.minimum(n, tf.maximum(tf.reduce_max(x) + 1, n))


def _clipped_to_one_size(x):
    n = tf.shape(x)[0]
    return tf.clip_by_value(tf.reduce_max(x), n, n)


def _pinned_by_constants(x):
    return tf.maximum(tf.constant(4), tf.minimum(tf.reduce_max(x), tf.constant(2)))


@pytest.mark.parametrize("size", [_pinned_by_one_size, _clipped_to_one_size,
                                  _pinned_by_constants])
def test_a_pinned_clamp_sizes_an_array_under_a_symbolic_batch(size):
    """``tf.zeros([size])`` traces only when the size is known: not from values."""
    def fn(x):
        return tf.zeros(tf.reshape(size(x), [1])) + 1.0

    concrete = tf.function(fn).get_concrete_function(tf.TensorSpec([None], tf.int32))
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    b, = export.symbolic_shape("b")
    exported = export.export(jax.jit(lambda x: run({}, [x])[0]))(
        jax.ShapeDtypeStruct((b,), np.int32))
    for x in (np.array([0, 7, 2], np.int32), np.array([1], np.int32)):
        np.testing.assert_array_equal(exported.call(x)[0], concrete(tf.constant(x))[0].numpy())


def _function(fn, spec) -> graph.Function:
    concrete = tf.function(fn).get_concrete_function(spec)
    graph_def = protos.GraphDef.FromString(concrete.graph.as_graph_def().SerializeToString())
    return graph.function_from_graph_def(graph_def, [t.name for t in concrete.inputs],
                                         [t.name for t in concrete.outputs])


def test_float_clamps_and_open_ones_are_left_alone():
    """A float clamp's gradient at the bound reaches its input in TF; ``[lo, hi]`` with
    ``lo < hi`` does not pin anything."""
    floats = _function(lambda y: tf.minimum(1.0, tf.maximum(1.0, y)), tf.TensorSpec([3]))
    assert clamps.fold(floats) is floats
    open_range = _function(lambda x: tf.clip_by_value(x, 0, 5), tf.TensorSpec([3], tf.int32))
    assert clamps.fold(open_range) is open_range
