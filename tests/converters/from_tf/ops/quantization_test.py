"""Conformance of simulated-quantization ops (fake-quant, quantize-dequantize) against TF:
values and TF's straight-through gradients, including those of trained ranges."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.converters.from_tf.ops._conformance import Case, check, params, uniform


def _off_grid(rng, shape, dtype):
    """Floats in [-8, 8) away from the rounding ties of the grids below (TF and XLA may
    round a tie either way after different float steps)."""
    x = rng.uniform(-8, 8, shape)
    return (np.floor(x * 16) / 16 + 1 / 64).astype(dtype)


def _ranges(rng, shape, dtype):
    """Per-channel (min, max) pairs around zero: rows of [[-lo...], [hi...]]."""
    return np.stack([-rng.uniform(1, 5, shape[1:]), rng.uniform(1, 5, shape[1:])]).astype(dtype)


def _fake_quant_vars_per_channel(x, r):
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(x, r[0], r[1], num_bits=6)


CASES = [
    Case("FakeQuantWithMinMaxArgs", lambda x: tf.quantization.fake_quant_with_min_max_args(
        x, min=-3.0, max=5.0), (((4, 5),),), sample=_off_grid),
    Case("FakeQuantWithMinMaxArgs", lambda x: tf.quantization.fake_quant_with_min_max_args(
        x, min=0.5, max=6.0, num_bits=4, narrow_range=True), (((4, 5),),), sample=_off_grid,
        name="FakeQuantWithMinMaxArgs-narrow-nudged"),
    # The range is an input (a trained variable in a quantization-aware model): its
    # gradient collects what the clipped inputs would have received.
    Case("FakeQuantWithMinMaxVars", lambda x, lo, hi: tf.quantization.fake_quant_with_min_max_vars(
        x, lo, hi), (((4, 5), (), ()),), sample=(_off_grid, uniform(-4, -1), uniform(1, 4))),
    Case("FakeQuantWithMinMaxVarsPerChannel", _fake_quant_vars_per_channel,
         (((6, 3), (2, 3)),), sample=(_off_grid, _ranges)),
    Case("QuantizeAndDequantizeV2", lambda x: tf.quantization.quantize_and_dequantize(
        x, -4.0, 6.0, range_given=True), (((4, 5),),), sample=_off_grid),
    Case("QuantizeAndDequantizeV2", lambda x: tf.quantization.quantize_and_dequantize(
        x, 0.0, 0.0, signed_input=False, num_bits=4, round_mode="HALF_UP"),
        (((4, 5),),), sample=uniform(0, 8), name="QuantizeAndDequantizeV2-own-range-unsigned"),
    # Per channel (the last axis), each channel's own range.
    Case("QuantizeAndDequantizeV2", lambda x: tf.quantization.quantize_and_dequantize(
        x, [-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], axis=-1, num_bits=5), (((4, 3),),),
        sample=_off_grid, name="QuantizeAndDequantizeV2-per-channel-own-range"),
    Case("QuantizeAndDequantizeV3", lambda x: tf.raw_ops.QuantizeAndDequantizeV3(
        input=x, input_min=-4.0, input_max=6.0, num_bits=5), (((4, 5),),), sample=_off_grid),
    # V4's gradient stops outside [input_min, input_max].
    Case("QuantizeAndDequantizeV4", lambda x: tf.quantization.quantize_and_dequantize_v2(
        x, -3.0, 2.0, range_given=True), (((4, 5),),), sample=_off_grid),
    Case("QuantizeAndDequantizeV4", lambda x: tf.quantization.quantize_and_dequantize_v2(
        x, -1.5, 3.0, range_given=True, narrow_range=True, num_bits=3),
        (((4, 5),),), sample=_off_grid, name="QuantizeAndDequantizeV4-narrow"),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)
