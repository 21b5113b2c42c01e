"""Simulated quantization: fake-quant and quantize-dequantize ops, as quantization-aware
training leaves them in a graph.

Each op rounds its input to a grid of ``2**num_bits`` levels and maps it back to floats.
Gradients follow TF's rules, not the rounding's (which is zero almost everywhere):
fake-quant passes the gradient where the input lies in the (nudged) range and gives the
range's variables the rest; ``QuantizeAndDequantizeV2``/``V3`` pass it through unchanged,
``V4`` only inside the range. Per-channel quantize-dequantize (``axis``) takes each
channel's own range (TF 2.21's kernels refuse a given per-channel range).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import ANY, register
from jaxhub_tf.from_tf.values import as_jax

_FAKE_QUANT_ATTRS = ("num_bits", "narrow_range")


def _nudged(low, high, num_bits: int, narrow_range: bool):
    """TF's nudged range and step: the grid keeps 0.0 exactly representable."""
    quant_min, quant_max = float(narrow_range), float((1 << num_bits) - 1)
    scale = (high - low) / (quant_max - quant_min)
    # TF rounds the zero point half away from zero (it is never negative once clipped).
    zero_point = jnp.clip(jnp.floor(quant_min - low / scale + 0.5), quant_min, quant_max)
    return (quant_min - zero_point) * scale, (quant_max - zero_point) * scale, scale


def _fake_quant_value(x, low, high, num_bits: int, narrow_range: bool):
    nudged_low, nudged_high, scale = _nudged(low, high, num_bits, narrow_range)
    shifted = jnp.clip(x, nudged_low, nudged_high) - nudged_low
    return jnp.floor(shifted * (1.0 / scale) + 0.5) * scale + nudged_low


def _fake_quant_fwd(x, low, high, num_bits, narrow_range):
    nudged_low, nudged_high, _ = _nudged(low, high, num_bits, narrow_range)
    out = _fake_quant_value(x, low, high, num_bits, narrow_range)
    return out, (x, low, nudged_low, nudged_high)


def _fake_quant_bwd(num_bits, narrow_range, residuals, g):
    x, low, nudged_low, nudged_high = residuals
    below, above = x < nudged_low, x > nudged_high
    # Per-channel ranges (shape [d]) sum over every axis but the last.
    axes = tuple(range(x.ndim - np.ndim(low)))
    grad_low = jnp.sum(jnp.where(below, g, 0), axis=axes).astype(low.dtype)
    grad_high = jnp.sum(jnp.where(above, g, 0), axis=axes).astype(low.dtype)
    return jnp.where(below | above, 0, g), grad_low, grad_high


_fake_quant = jax.custom_vjp(_fake_quant_value, nondiff_argnums=(3, 4))
_fake_quant.defvjp(_fake_quant_fwd, _fake_quant_bwd)


@register("FakeQuantWithMinMaxArgs", attrs=("min", "max") + _FAKE_QUANT_ATTRS)
def _fake_quant_args(node, x):
    x = as_jax(x)
    low, high = (jnp.asarray(node.attr(k), x.dtype) for k in ("min", "max"))
    return _fake_quant(x, low, high, node.attr("num_bits"), node.attr("narrow_range"))


@register("FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel",
          attrs=_FAKE_QUANT_ATTRS)
def _fake_quant_vars(node, x, low, high):
    x = as_jax(x)
    return _fake_quant(x, as_jax(low, x.dtype), as_jax(high, x.dtype), node.attr("num_bits"),
                       node.attr("narrow_range"))


# -- quantize and dequantize ----------------------------------------------------------------

_QDQ_ATTRS = {**{k: ANY for k in ("signed_input", "num_bits", "range_given", "narrow_range",
                                   "axis")},
              "round_mode": ("HALF_TO_EVEN", "HALF_UP")}


def _quantize_dequantize(node, x, low, high, num_bits):
    """The values TF's QuantizeAndDequantize kernels compute (gradient not defined)."""
    axis = node.attr("axis", -1)
    if axis != -1:  # per channel along ``axis``: each channel's own range
        if node.attr("range_given"):  # TF 2.21's kernels refuse it: nothing to match
            raise NotImplementedError(f"{node.op} {node.name!r}: per-channel quantization "
                                      f"(axis={axis}) with a given range")
        others = tuple(a for a in range(x.ndim) if a != axis)
        low, high = jnp.min(x, others, keepdims=True), jnp.max(x, others, keepdims=True)
    elif not node.attr("range_given"):  # the input's own range
        low, high = jnp.min(x), jnp.max(x)
    signed = node.attr("signed_input")
    q_min = -(1 << (num_bits - 1)) + int(node.attr("narrow_range")) if signed else 0
    q_max = (1 << (num_bits - 1)) - 1 if signed else (1 << num_bits) - 1
    huge = jnp.finfo(x.dtype).max
    # The larger of the two sides' scales that keeps 0 fixed; the other side follows.
    from_min = jnp.where(q_min * low > 0, q_min / jnp.where(low == 0, 1, low), huge)
    from_max = jnp.where(q_max * high > 0, q_max / jnp.where(high == 0, 1, high), huge)
    use_min = from_min < from_max
    scale = jnp.where(use_min, from_min, from_max)
    inverse = jnp.where(use_min, low / (q_min or 1), high / q_max)
    low, high = jnp.where(use_min, low, q_min * inverse), jnp.where(use_min, q_max * inverse, high)
    if node.attr("range_given"):
        x = jnp.clip(x, low, high)
    scaled = x * scale
    rounded = jnp.round(scaled) if node.attr("round_mode", "HALF_TO_EVEN") == "HALF_TO_EVEN" \
        else jnp.floor(scaled + 0.5)
    return (rounded * inverse).astype(x.dtype)


def _straight_through(x, quantized):
    """``quantized``'s values with the identity's gradient."""
    return x + jax.lax.stop_gradient(quantized - x)


@register("QuantizeAndDequantizeV2", attrs=_QDQ_ATTRS)
def _qdq_v2(node, x, low, high):
    x = as_jax(x)
    return _straight_through(x, _quantize_dequantize(node, x, as_jax(low, x.dtype),
                                                     as_jax(high, x.dtype), node.attr("num_bits")))


# V3 takes num_bits as an input and always rounds half to even.
@register("QuantizeAndDequantizeV3", attrs={k: v for k, v in _QDQ_ATTRS.items()
                                            if k not in ("num_bits", "round_mode")})
def _qdq_v3(node, x, low, high, num_bits):
    x = as_jax(x)
    return _straight_through(x, _quantize_dequantize(node, x, as_jax(low, x.dtype),
                                                     as_jax(high, x.dtype), int(num_bits)))


@register("QuantizeAndDequantizeV4", attrs=_QDQ_ATTRS)
def _qdq_v4(node, x, low, high):
    """V2's values; the gradient passes only where the input is in [input_min, input_max]."""
    x = as_jax(x)
    low, high = as_jax(low, x.dtype), as_jax(high, x.dtype)
    quantized = _quantize_dequantize(node, x, low, high, node.attr("num_bits"))
    if node.attr("axis", -1) != -1:  # TF's gradient reads the ranges per channel
        shape = [1] * x.ndim
        shape[node.attr("axis")] = -1
        low, high = jnp.reshape(low, shape), jnp.reshape(high, shape)
    inside = (x >= low) & (x <= high)
    return jnp.where(inside, x, jax.lax.stop_gradient(x)) + jax.lax.stop_gradient(quantized - x)
