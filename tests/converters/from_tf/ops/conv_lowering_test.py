"""The convolution lowerings with written-out VJPs as modules use them: gradients under a
symbolic batch size, and the shape of the program the depthwise one produces (no gathers
or scatters, one padded cotangent)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from jax import export
from jax.extend.core import jaxprs_in_params

from jaxhub_tf.from_tf.interpreter import run_graph
from tests.converters.from_tf.ops._conformance import Case
from tests.converters.from_tf.ops.conv_test import CONV, DEPTHWISE

# Shifted depthwise convs, 1x1 convs (matrix products) and small-map convs (patches).
_LOWERED = ([case for case in DEPTHWISE
             if case.op == "DepthwiseConv2dNative" and case.name != "Depthwise-7x7"] +
            [case for case in CONV if case.name in {
                "Conv2D-1x1", "Conv2D-1x1-s2", "Conv2D-small-map", "Conv2D-small-map-s2"}])


def _params():
    return [pytest.param(case, shapes, id=f"{case.name or case.op}-" +
                         "_".join("x".join(map(str, s)) for s in shapes))
            for case in _LOWERED for shapes in case.shapes]


def _converted(case, x_shape, k_shape):
    """The converted op as ``f(x, kernel)``, traced from TF with an unknown batch size."""
    specs = [tf.TensorSpec((None,) + tuple(x_shape[1:]), tf.float32),
             tf.TensorSpec(k_shape, tf.float32)]
    concrete = tf.function(lambda x, k: case.fn(x, k)).get_concrete_function(*specs)
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    return concrete, lambda x, k: run({}, [x, k])[0][0]


def _loss(f, cotangent):
    return lambda x, k: jnp.sum(f(x, k) * cotangent)


@pytest.mark.parametrize("case,shapes", _params())
def test_gradients_with_symbolic_batch_match_tensorflow(case, shapes):
    """``jax.grad`` exported with a symbolic batch (as modules are) equals TF's gradients."""
    x_shape, k_shape = shapes
    batch = 3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + tuple(x_shape[1:])).astype(np.float32)
    k = rng.standard_normal(k_shape).astype(np.float32)
    concrete, f = _converted(case, x_shape, k_shape)
    y = concrete(tf.constant(x), tf.constant(k))
    cotangent = rng.standard_normal(y.shape[1:]).astype(np.float32)  # broadcast over batch

    tx, tk = tf.constant(x), tf.constant(k)
    with tf.GradientTape() as tape:
        tape.watch([tx, tk])
        loss = tf.reduce_sum(concrete(tx, tk) * cotangent)
    expected = tape.gradient(loss, [tx, tk])

    b, = export.symbolic_shape("b")
    grad = jax.jit(jax.grad(_loss(f, cotangent), argnums=(0, 1)))
    exported = export.export(grad)(jax.ShapeDtypeStruct((b,) + tuple(x_shape[1:]), np.float32),
                                   jax.ShapeDtypeStruct(k_shape, np.float32))
    got = exported.call(x, k)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g), e.numpy(), rtol=1e-4, atol=1e-4)


def _primitives(jaxpr) -> list[str]:
    names = []
    for eqn in jaxpr.eqns:
        names.append(eqn.primitive.name)
        for sub in jaxprs_in_params(eqn.params):
            names += _primitives(sub)
    return names


@pytest.mark.parametrize("strides,window", [(1, 3), (2, 3), (1, 5), (2, 5)])
def test_gradient_pads_the_cotangent_once_and_never_gathers(strides, window):
    """The VJP is written out: the taps' slices do not each transpose into a ``pad`` of the
    cotangent, and strided slices stay slices under a symbolic batch (no gather/scatter)."""
    x_shape, k_shape = (2, 12, 12, 4), (window, window, 4, 1)
    case = Case("DepthwiseConv2dNative", lambda x, k: tf.nn.depthwise_conv2d(
        x, k, [1, strides, strides, 1], "SAME"))
    _, f = _converted(case, x_shape, k_shape)
    b, = export.symbolic_shape("b")
    args = (jax.ShapeDtypeStruct((b,) + x_shape[1:], np.float32),
            jax.ShapeDtypeStruct(k_shape, np.float32))
    cotangent = np.ones((), np.float32)
    jaxpr = jax.make_jaxpr(jax.grad(_loss(f, cotangent), argnums=(0, 1)))(*args).jaxpr
    primitives = _primitives(jaxpr)
    # The input (forward) and the cotangent, once each; with strides, one interior pad per
    # phase puts the input gradient's phases back in place. None per tap.
    assert primitives.count("pad") <= 2 + (strides * strides if strides > 1 else 0), primitives
    assert not {"gather", "scatter", "scatter-add"} & set(primitives), primitives
