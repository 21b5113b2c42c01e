"""Conformance of activations (the elementwise tables hold the simple ones) and the other
ops of ``ops/nn.py`` against TF."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tests.converters.from_tf.ops._conformance import Case, check, distinct, nonzero, params


def _max_pool_with_argmax(ksize, strides, padding, include_batch_in_index=False) -> Case:
    return Case("MaxPoolWithArgmax", lambda x: tf.nn.max_pool_with_argmax(
        x, ksize, strides, padding, include_batch_in_index=include_batch_in_index),
        (((2, 7, 5, 3),),), ("float32", "float64"), distinct,
        name=f"MaxPoolWithArgmax-{ksize}-{strides}-{padding}-{include_batch_in_index}")

CASES = [
    Case("Elu", tf.keras.activations.elu, sample=nonzero),
    Case("Selu", tf.keras.activations.selu, sample=nonzero, rtol=1e-4),
    Case("LeakyRelu", lambda x: tf.nn.leaky_relu(x), sample=nonzero, name="LeakyRelu-default"),
    Case("Softplus", tf.keras.activations.softplus),
    Case("Softsign", tf.keras.activations.softsign),
    Case("Relu6", lambda x: tf.nn.relu6(x * 4)),
    Case("Softmax", lambda x: tf.nn.softmax(x, axis=0), name="Softmax-axis0", rtol=1e-4),
    Case("Relu6", tf.keras.activations.hard_sigmoid, name="HardSigmoid"),
    _max_pool_with_argmax(2, 2, "VALID"),
    _max_pool_with_argmax(3, (1, 2), "SAME"),
    _max_pool_with_argmax(4, 1, "SAME", include_batch_in_index=True),
    _max_pool_with_argmax((2, 3), (2, 1), "VALID", include_batch_in_index=True),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)
