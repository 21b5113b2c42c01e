"""Conformance of batch normalization, LRN and the activations around them against TF."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tests.converters.from_tf.ops._conformance import (Case, check, normal, params,
                                                       uniform)

_TOL = {"rtol": 1e-4, "atol": 1e-4}
_BN_SHAPES = (((2, 4, 4, 3), (3,), (3,), (3,), (3,)),)
_BN_SAMPLE = (normal, uniform(0.5, 1.5), normal, normal, uniform(0.5, 1.5))


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
    Case("BiasAdd", tf.nn.bias_add, (((2, 3, 4), (4,)),)),
    Case("BiasAdd", lambda x, b: tf.nn.bias_add(x, b, data_format="NCHW"),
         (((2, 4, 3, 3), (4,)),), name="BiasAdd-NCHW"),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)
