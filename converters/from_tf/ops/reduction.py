"""Reductions: ``Sum``/``Mean``/``Max``/..., arg-extrema, scans, norms, segments, bin counts.

The axis of every op here is an input tensor, static in any graph that runs under ``jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax, is_static, shape_tuple, static_ints


def _axis(value) -> int:
    (axis,) = static_ints(value)
    return axis


def _axes(value) -> tuple[int, ...]:
    """The axes of a reduction: a scalar or a vector input."""
    return tuple(static_ints(value))


def _reduce(np_fn, jnp_fn):
    """A ``Sum``-like op: numpy on a static input (shape arithmetic), else JAX."""

    def impl(node, x, axis):
        keep = node.attr("keep_dims", False)
        if is_static(x):
            return np.asarray(np_fn(np.asarray(x), axis=_axes(axis), keepdims=keep))
        return jnp_fn(x, axis=_axes(axis), keepdims=keep)

    return impl


_REDUCTIONS = {
    "Sum": (np.sum, jnp.sum),
    "Mean": (np.mean, jnp.mean),
    "Max": (np.max, jnp.max),
    "Min": (np.min, jnp.min),
    "Prod": (np.prod, jnp.prod),
    "All": (np.all, jnp.all),
    "Any": (np.any, jnp.any),
}

for _name, (_np_fn, _jnp_fn) in _REDUCTIONS.items():
    register(_name, attrs=("keep_dims",))(_reduce(_np_fn, _jnp_fn))


@register("ArgMax", "ArgMin")
def _arg_extremum(node, x, dimension):
    # int64 indices are int32 in JAX unless x64 is enabled: ask for what JAX can give.
    dtype = jax.dtypes.canonicalize_dtype(node.attr("output_type", np.dtype(np.int64)))
    axis = _axis(dimension)
    if is_static(x):
        fn = np.argmax if node.op == "ArgMax" else np.argmin
        return np.asarray(fn(x, axis=axis)).astype(dtype)
    fn = jnp.argmax if node.op == "ArgMax" else jnp.argmin
    return fn(x, axis=axis).astype(dtype)


def _scan(x, axis: int, exclusive: bool, reverse: bool, combine, identity):
    """An inclusive/exclusive, forward/reverse scan along ``axis``."""
    if reverse:
        x = jnp.flip(x, axis)
    out = combine(x, axis)
    if exclusive:
        pad = [(0, 0)] * x.ndim
        pad[axis] = (1, 0)
        out = jnp.pad(jax.lax.slice_in_dim(out, 0, x.shape[axis] - 1, axis=axis), pad,
                      constant_values=identity)
    return jnp.flip(out, axis) if reverse else out


_SCANS = {
    "Cumsum": (lambda x, a: jnp.cumsum(x, axis=a), 0),
    "Cumprod": (lambda x, a: jnp.cumprod(x, axis=a), 1),
    "CumulativeLogsumexp": (lambda x, a: jax.lax.cumlogsumexp(x, axis=a), -np.inf),
}


@register(*_SCANS, attrs=("exclusive", "reverse"))
def _cumulative(node, x, axis):
    combine, identity = _SCANS[node.op]
    x = as_jax(x)
    return _scan(x, _axis(axis) % x.ndim, node.attr("exclusive", False),
                 node.attr("reverse", False), combine, identity)


@register("EuclideanNorm", attrs=("keep_dims",))
def _euclidean_norm(node, x, axis):
    return jnp.sqrt(jnp.sum(jnp.square(as_jax(x)), axis=_axes(axis),
                            keepdims=node.attr("keep_dims", False)))


_SEGMENT = {
    "UnsortedSegmentSum": jax.ops.segment_sum,
    "UnsortedSegmentMax": jax.ops.segment_max,
    "UnsortedSegmentMin": jax.ops.segment_min,
}


@register("UnsortedSegmentProd")
def _unsorted_segment_prod(node, data, segment_ids, num_segments):
    return _segment_prod(data, segment_ids, int(np.asarray(num_segments)))


def _segment_prod(data, segment_ids, num_segments: int):
    # jax.ops.segment_prod has no gradient for repeated ids; a masked product over a
    # [segments, items] grid has one (the grid is small where products are used).
    data, ids = as_jax(data), as_jax(segment_ids)
    data = data.reshape((-1,) + data.shape[ids.ndim:])
    member = ids.reshape(-1)[None, :] == jnp.arange(num_segments)[:, None]
    member = member.reshape(member.shape + (1,) * (data.ndim - 1))
    return jnp.prod(jnp.where(member, data[None], jnp.ones_like(data[None])), axis=1)


@register(*_SEGMENT)
def _unsorted_segment(node, data, segment_ids, num_segments):
    data, ids = as_jax(data), as_jax(segment_ids)
    # Segment ids may index several leading axes; fold them into one.
    data = data.reshape((-1,) + data.shape[ids.ndim:])
    out = _SEGMENT[node.op](data, ids.reshape(-1), int(np.asarray(num_segments)))
    if node.op in ("UnsortedSegmentMax", "UnsortedSegmentMin") and not jnp.issubdtype(
            out.dtype, jnp.integer):
        # TF fills empty segments with the dtype's lowest/highest finite value, not -inf/inf.
        info = jnp.finfo(out.dtype)
        out = jnp.clip(out, info.min, info.max)
    return out


@register("Bincount")
def _bincount(node, arr, size, weights):
    return _count_bins(arr, size, weights, binary=False)


@register("DenseBincount", attrs=("binary_output",))
def _dense_bincount(node, x, size, weights):
    return _count_bins(x, size, weights, node.attr("binary_output", False))


def _count_bins(x, size, weights, binary: bool):
    """How often each value ``0 .. size - 1`` occurs along ``x``'s last axis, or the sum
    of its ``weights`` (an empty ``weights``: counts), or with ``binary`` whether it occurs.
    Values outside the range are not counted. The size is static (or symbolic): it is
    the output's.
    """
    (num,) = shape_tuple(size)
    x = as_jax(x)
    hot = x[..., None] == jnp.arange(num, dtype=x.dtype)
    dtype = jax.dtypes.canonicalize_dtype(weights.dtype)
    if binary or np.size(weights) == 0:
        return jnp.any(hot, axis=-2).astype(dtype) if binary else jnp.sum(hot, -2, dtype)
    return jnp.sum(jnp.where(hot, as_jax(weights)[..., None], 0), axis=-2).astype(dtype)


_SORTED_SEGMENT = {"SegmentSum": jax.ops.segment_sum, "SegmentMean": jax.ops.segment_sum,
                   "SegmentMax": jax.ops.segment_max, "SegmentMin": jax.ops.segment_min}


@register("SegmentProd", *_SORTED_SEGMENT)
def _segment(node, data, segment_ids):
    """The reductions of sorted segments. The ids are static: the largest decides the
    output's size. An empty segment gives 0 (1 for the product), as in TF."""
    ids = np.asarray(static_ints(segment_ids), np.int64)
    num = int(ids.max()) + 1 if ids.size else 0
    if node.op == "SegmentProd":
        return _segment_prod(data, ids, num)
    data = as_jax(data)
    out = _SORTED_SEGMENT[node.op](data, ids, num, indices_are_sorted=True)
    counts = np.bincount(ids, minlength=num).reshape((num,) + (1,) * (data.ndim - 1))
    if node.op == "SegmentMean":
        return out / np.maximum(counts, 1).astype(out.dtype)
    return jnp.where(counts > 0, out, jnp.zeros_like(out))
