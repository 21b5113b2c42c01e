"""Batch normalization (``FusedBatchNorm*``) and local response normalization.

Inference centres, scales and shifts, in TF's order: ``(x - mean) * factor + offset``.
Folding the mean into the shift (``x * factor + (offset - mean * factor)``) saves one
subtraction that XLA fuses anyway, but cancels when the mean is large against the spread,
and rounds away from TF's values otherwise. Training normalizes with the batch's biased
variance and returns the unbiased one, blended into the running statistics by
``exponential_avg_factor``, as TF's kernel does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax


def _channel_shape(layout: str, ndim: int) -> tuple[int, ...]:
    """How a per-channel vector broadcasts against the activations."""
    if layout.startswith("NC"):
        return (-1,) + (1,) * (ndim - 2)
    return (-1,)


@register("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3",
          attrs=("epsilon", "exponential_avg_factor", "data_format", "is_training"))
def _fused_batch_norm(node, x, scale, offset, mean, variance):
    x = as_jax(x)
    layout = node.attr("data_format", "NHWC")
    epsilon = node.attr("epsilon", 1e-4)
    # Half-precision activations are normalized in the statistics' precision (float32).
    compute = jnp.result_type(scale)
    xc = x.astype(compute)
    # TF's gradient of these ops flows from ``y`` only, and never into the running mean
    # and variance: the statistics are inputs and outputs without gradients.
    mean, variance = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(variance)
    if node.attr("is_training", True):
        y, mean_out, var_out = _batch_statistics_norm(node, xc, scale, offset, mean,
                                                     variance, layout, epsilon)
    else:
        y, mean_out, var_out = _inference_norm(xc, scale, offset, mean, variance, layout,
                                               epsilon)
    mean_out, var_out = jax.lax.stop_gradient(mean_out), jax.lax.stop_gradient(var_out)
    outputs = [y.astype(x.dtype), mean_out, var_out, mean_out, var_out]
    return outputs + [jnp.zeros((0,), compute)] if node.op == "FusedBatchNormV3" else outputs


def _inference_norm(x, scale, offset, mean, variance, layout, epsilon):
    # Centred first: ``x - mean`` is exact where x is close to the mean, and the result
    # rounds as TF's kernel does far more often (on musicnn's input, 2.3 times fewer
    # values differ from TF's in the last bit), which matters where a following max
    # compares values TF computes as exactly equal.
    factor = scale * jax.lax.rsqrt(variance + epsilon)
    shape = _channel_shape(layout, x.ndim)
    y = (x - mean.reshape(shape)) * factor.reshape(shape) + offset.reshape(shape)
    return y, mean, variance


def _batch_statistics_norm(node, x, scale, offset, mean, variance, layout, epsilon):
    channel_axis = 1 if layout.startswith("NC") else x.ndim - 1
    axes = tuple(a for a in range(x.ndim) if a != channel_axis)
    shape = _channel_shape(layout, x.ndim)
    batch_mean = jnp.mean(x, axis=axes)
    batch_var = jnp.mean(jnp.square(x - batch_mean.reshape(shape)), axis=axes)
    factor = scale * jax.lax.rsqrt(batch_var + epsilon)
    y = (x - batch_mean.reshape(shape)) * factor.reshape(shape) + offset.reshape(shape)
    # With a symbolic batch the count is a dimension expression: Python cannot compare it
    # with 1, so the guard against a single element is computed as a value.
    count = jnp.asarray(x.size // batch_mean.size, batch_var.dtype)
    unbiased = batch_var * (count / jnp.maximum(count - 1, 1))
    blend = node.attr("exponential_avg_factor", 1.0)
    if blend != 1.0:
        batch_mean = (1 - blend) * mean + blend * batch_mean
        unbiased = (1 - blend) * variance + blend * unbiased
    return y, batch_mean, unbiased


@register("LRN", attrs=("depth_radius", "bias", "alpha", "beta"))
def _lrn(node, x):
    """Local response normalization across the last (depth) axis."""
    x = as_jax(x)
    radius = node.attr("depth_radius", 5)
    squares = jax.lax.reduce_window(
        jnp.square(x), np.asarray(0, x.dtype), jax.lax.add, (1,) * (x.ndim - 1)
        + (2 * radius + 1,), (1,) * x.ndim, [(0, 0)] * (x.ndim - 1) + [(radius, radius)])
    denom = node.attr("bias", 1.0) + node.attr("alpha", 1.0) * squares
    return x * denom ** -node.attr("beta", 0.5)
