"""Conformance of activations against TF (the elementwise tables hold the simple ones)."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tests.converters.from_tf.ops._conformance import Case, check, nonzero, params

CASES = [
    Case("Elu", tf.keras.activations.elu, sample=nonzero),
    Case("Selu", tf.keras.activations.selu, sample=nonzero, rtol=1e-4),
    Case("LeakyRelu", lambda x: tf.nn.leaky_relu(x), sample=nonzero, name="LeakyRelu-default"),
    Case("Softplus", tf.keras.activations.softplus),
    Case("Softsign", tf.keras.activations.softsign),
    Case("Relu6", lambda x: tf.nn.relu6(x * 4)),
    Case("Softmax", lambda x: tf.nn.softmax(x, axis=0), name="Softmax-axis0", rtol=1e-4),
    Case("Relu6", tf.keras.activations.hard_sigmoid, name="HardSigmoid"),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)
