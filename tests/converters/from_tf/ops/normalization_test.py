"""Conformance of batch normalization, LRN and the activations around them against TF."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow as tf

from tests.converters.from_tf.ops._conformance import (Case, assert_vjp_matches_tf, check,
                                                       convert, normal, params, uniform)

_TOL = {"rtol": 1e-4, "atol": 1e-4}
_BN_SHAPES = (((2, 4, 4, 3), (3,), (3,), (3,), (3,)),)
_BN_SAMPLE = (normal, uniform(0.5, 1.5), normal, normal, uniform(0.5, 1.5))


def _far_from_zero(rng, shape, dtype):
    """Means near 1000 with standard deviations near 0.01 (activations to match)."""
    return (1000 + 0.01 * normal(rng, shape, dtype)).astype(dtype)


def _masked(rng, shape, dtype):
    """Attention scores with about a third masked out by -1e9, as Keras masks them."""
    x = normal(rng, shape, dtype)
    return np.where(rng.random(shape) < 0.3, -1e9, x).astype(dtype)


def _fused(op="FusedBatchNormV3", training=False, layout="NHWC", factor=1.0):
    def fn(x, scale, offset, mean, var):
        outputs = getattr(tf.raw_ops, op)(
            x=x, scale=scale, offset=offset, mean=mean, variance=var, epsilon=1e-3,
            data_format=layout, is_training=training,
            **({"exponential_avg_factor": factor} if op != "FusedBatchNorm" else {}))
        return outputs[:3]
    return fn


CASES = [
    Case("FusedBatchNormV3", _fused(), _BN_SHAPES, sample=_BN_SAMPLE, name="BN-inference",
         **_TOL),
    # Folding a mean of 1000 into the shift cancels to about 1e-3 of the output.
    Case("FusedBatchNormV3", _fused(), _BN_SHAPES,
         sample=(_far_from_zero, uniform(0.5, 1.5), normal, _far_from_zero,
                 uniform(1e-4, 2e-4)), name="BN-inference-large-mean", **_TOL),
    Case("FusedBatchNormV3", _fused(training=True), _BN_SHAPES, sample=_BN_SAMPLE,
         name="BN-training", **_TOL),
    Case("FusedBatchNormV3", _fused(training=True, factor=0.1), _BN_SHAPES, sample=_BN_SAMPLE,
         name="BN-training-momentum", grad=False, **_TOL),
    Case("FusedBatchNormV3", _fused(layout="NCHW"), (((2, 3, 4, 4), (3,), (3,), (3,), (3,)),),
         sample=_BN_SAMPLE, name="BN-NCHW", **_TOL),
    Case("FusedBatchNormV3", _fused(), _BN_SHAPES, sample=_BN_SAMPLE, name="BN-half",
         dtypes=(("float16", "float32", "float32", "float32", "float32"),), grad=False),
    Case("FusedBatchNormV2", _fused("FusedBatchNormV2", True), _BN_SHAPES, sample=_BN_SAMPLE,
         **_TOL),
    Case("FusedBatchNorm", _fused("FusedBatchNorm"), _BN_SHAPES, sample=_BN_SAMPLE, **_TOL),
    Case("LRN", lambda x: tf.nn.local_response_normalization(x, 2, 1.0, 0.5, 0.75),
         (((2, 3, 3, 7),),), **_TOL),
    Case("Rsqrt", lambda x, g, b: tf.nn.batch_normalization(
        x, *tf.nn.moments(x, [0, 1, 2]), b, g, 1e-3), (((2, 4, 4, 3), (3,), (3,)),),
         name="Moments-BN", **_TOL),
    Case("Softmax", lambda x: tf.nn.softmax(x), (((2, 5),), ((2, 3, 4),)), **_TOL),
    Case("LogSoftmax", lambda x: tf.nn.log_softmax(x), (((2, 5),), ((2, 3, 4),)), **_TOL),
    # Written-out gradients: large logits, masked attention scores, half precision.
    Case("Softmax", lambda x: tf.nn.softmax(x), (((2, 3, 8),),), ("float32", "float16"),
         uniform(-40, 40), name="Softmax-large", **_TOL),
    Case("Softmax", lambda x: tf.nn.softmax(x), (((2, 2, 4, 4),),), sample=_masked,
         name="Softmax-masked", **_TOL),
    Case("LogSoftmax", lambda x: tf.nn.log_softmax(x), (((2, 3, 8),),),
         ("float32", "float16"), uniform(-40, 40), name="LogSoftmax-large", **_TOL),
    Case("BiasAdd", tf.nn.bias_add, (((2, 3, 4), (4,)),)),
    Case("BiasAdd", lambda x, b: tf.nn.bias_add(x, b, data_format="NCHW"),
         (((2, 4, 3, 3), (4,)),), name="BiasAdd-NCHW"),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)


@pytest.mark.parametrize("fn,op", [(tf.nn.softmax, "Softmax"),
                                   (tf.nn.log_softmax, "LogSoftmax")],
                         ids=["softmax", "log_softmax"])
def test_softmax_gradient_keeps_only_the_output(fn, op):
    """The VJP of (log-)softmax keeps its output and nothing else (no exponentials or sums
    of the forward pass), and still equals TF's gradient."""
    concrete, converted = convert(Case(op, fn), [(3, 4, 6)], [np.dtype("float32")])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 6)).astype(np.float32)
    y, vjp_fn = jax.vjp(lambda x: converted(x)[0], x)
    (residual,) = jax.tree.leaves(vjp_fn)
    np.testing.assert_array_equal(residual, y)
    cotangent = rng.standard_normal((3, 4, 6)).astype(np.float32)
    assert_vjp_matches_tf(concrete, vjp_fn, x, cotangent)
