"""TF1 graph constructs: ref variables (``VariableV2``, ``Assign*``) and sparse segments.

Ref variables: a TF1 graph reads a ``VariableV2`` by using its ref output directly. The
TF1 Hub reader rewrites each such use into a ``ReadVariableOp`` of the variable (see
``converters/from_tf/tf1_hub.py``), so here ``VariableV2`` is just a handle, like
``VarHandleOp``, and ``Assign`` stores into the running context's state and returns the
new value (a ref assignment's output, used by UPDATE_OPS).

Sparse segments (``embedding_lookup_sparse``): the number of output rows is the largest
segment id plus one. When the ids come from a host stage, the host also feeds a zero-filled
array of that length as an extra input (the op's 4th), so the size is a shape, known to
``jax.export`` as a symbolic dimension.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import (Resource, TracedValueError, as_jax, is_static,
                                      static_ints)


@register("VariableV2", "Variable", attrs=("shape", "container", "shared_name"))
def _ref_variable(node):
    return Resource(node.attr("shared_name", "") or node.name)


def _current(node, handle: Resource):
    try:
        return node.ctx.state[handle.key]
    except KeyError:
        raise KeyError(f"variable {handle.key!r} has no value (not among the params)"
                       ) from None


# A new value replaces the old whatever its shape; there are no concurrent writers.
@register("Assign", "AssignAdd", "AssignSub", attrs=("validate_shape", "use_locking"))
def _ref_assign(node, handle, value):
    old = _current(node, handle)
    if node.op == "AssignAdd":
        value = old + value
    elif node.op == "AssignSub":
        value = old - value
    dtype = getattr(old, "dtype", None)
    new = np.asarray(value, dtype) if is_static(value, old) else as_jax(value, dtype)
    node.ctx.state[handle.key] = new
    return new


@register("L2Loss")
def _l2_loss(node, x):
    # TF1 regularizers (REGULARIZATION_LOSSES) are made of these.
    x = as_jax(x)
    return jnp.sum(x * x) / 2


# ``sparse_gradient`` picks how TF represents the gradient, not its value.
@register("SparseSegmentSqrtN", "SparseSegmentMean", "SparseSegmentSum",
          attrs=("sparse_gradient",))
def _sparse_segment(node, data, indices, segment_ids, size_carrier=None):
    if size_carrier is not None:
        num_segments = size_carrier.shape[0]
    elif is_static(segment_ids):
        ids = np.asarray(segment_ids)
        num_segments = int(ids.max()) + 1 if ids.size else 0
    else:
        raise TracedValueError(
            f"the output size depends on the segment ids' values; compute them in a host "
            f"stage or use {node.op}WithNumSegments", segment_ids)
    return _segment_reduce(node.op, data, indices, segment_ids, num_segments)


@register("SparseSegmentSqrtNWithNumSegments", "SparseSegmentMeanWithNumSegments",
          "SparseSegmentSumWithNumSegments", attrs=("sparse_gradient",))
def _sparse_segment_n(node, data, indices, segment_ids, num_segments):
    (num,) = static_ints(num_segments)
    op = node.op.replace("WithNumSegments", "")
    return _segment_reduce(op, data, indices, segment_ids, num)


def _segment_reduce(op: str, data, indices, segment_ids, num_segments):
    rows = jnp.take(as_jax(data), as_jax(indices), axis=0)
    segment_ids = as_jax(segment_ids)
    total = jax.ops.segment_sum(rows, segment_ids, num_segments=num_segments)
    if op == "SparseSegmentSum":
        return total
    counts = jax.ops.segment_sum(jnp.ones(segment_ids.shape, rows.dtype), segment_ids,
                                 num_segments=num_segments)
    counts = counts.reshape((-1,) + (1,) * (rows.ndim - 1))
    scale = jnp.sqrt(counts) if op == "SparseSegmentSqrtN" else counts
    # TF leaves empty segments at zero.
    return total / jnp.where(scale > 0, scale, 1)


# -- v1 conditionals (see converters/from_tf/tf1_control_flow.py) ---------------------------


@register("Switch", "RefSwitch")
def _switch(node, data, pred):
    # Both branches are computed; the cond's merges select (``_V1CondMerge``).
    return data, data


@register("_V1CondMerge")
def _cond_merge(node, if_false, if_true, pred):
    if is_static(pred):
        taken = bool(np.asarray(pred).reshape(()))
        return (if_true, np.asarray(1, np.int32)) if taken else (if_false,
                                                                  np.asarray(0, np.int32))
    pred = as_jax(pred).reshape(()).astype(bool)
    return (jnp.where(pred, as_jax(if_true), as_jax(if_false)),
            jnp.where(pred, 1, 0).astype(jnp.int32))
