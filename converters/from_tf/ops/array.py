"""Constants, shapes, reshaping, slicing, stacking: ops that move data around.

Shape-valued results (``Shape``, ``Pack`` of dims, ``StridedSlice`` of a shape) stay
static numpy arrays, with symbolic dimensions as ``object`` entries, so that later
``Reshape``/``Fill`` see concrete sizes (see ``ops/__init__.py`` for the conventions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from converters.from_tf.ops.registry import register
from converters.from_tf.values import as_jax, has_symbolic, is_static, shape_tuple, xnp


@register("Const")
def _const(node):
    return node.attr("value")


@register("Identity", "Snapshot", "PreventGradient", "EnsureShape", "CheckNumerics")
def _identity(node, x, *unused):
    return x


@register("IdentityN")
def _identity_n(node, *xs):
    return list(xs)


@register("StopGradient")
def _stop_gradient(node, x):
    return x if is_static(x) else jax.lax.stop_gradient(x)


@register("NoOp")
def _no_op(node, *unused):
    return []


@register("Shape")
def _shape(node, x):
    return _dims_array(np.shape(x) if is_static(x) else x.shape, node.attr("out_type"))


@register("Size")
def _size(node, x):
    size = 1
    for d in (np.shape(x) if is_static(x) else x.shape):
        size = size * d
    return _dims_array([size], node.attr("out_type")).reshape(())


@register("Rank")
def _rank(node, x):
    return np.asarray(np.ndim(x), np.int32)


def _dims_array(dims, dtype) -> np.ndarray:
    """A static shape vector: ints as ``dtype``, or an object array if any is symbolic."""
    if all(isinstance(d, (int, np.integer)) for d in dims):
        return np.asarray(dims, dtype=dtype)
    return np.asarray(list(dims), dtype=object)


@register("Reshape")
def _reshape(node, x, shape):
    return xnp(x).reshape(x, shape_tuple(shape))


@register("Squeeze")
def _squeeze(node, x):
    axes = tuple(node.attr("squeeze_dims", [])) or None
    return xnp(x).squeeze(x, axis=axes)


@register("ExpandDims")
def _expand_dims(node, x, axis):
    return xnp(x).expand_dims(x, int(np.asarray(axis).reshape(())))


@register("Transpose")
def _transpose(node, x, perm):
    return xnp(x).transpose(x, tuple(int(p) for p in np.asarray(perm)))


@register("Pack")
def _pack(node, *xs):
    axis = node.attr("axis", 0)
    if is_static(*xs):
        return np.stack([np.asarray(x) for x in xs], axis=axis)
    return jnp.stack([as_jax(x) for x in xs], axis=axis)


@register("Unpack")
def _unpack(node, x):
    axis = node.attr("axis", 0)
    m = xnp(x)
    return [m.squeeze(p, axis) for p in m.split(x, x.shape[axis], axis=axis)]


@register("ConcatV2")
def _concat(node, *args):
    xs, axis = args[:-1], int(np.asarray(args[-1]))
    if is_static(*xs):
        return np.concatenate([np.asarray(x) for x in xs], axis=axis)
    return jnp.concatenate([as_jax(x) for x in xs], axis=axis)


@register("Fill")
def _fill(node, dims, value):
    shape = shape_tuple(dims)
    if is_static(value) and all(isinstance(d, int) for d in shape):
        return np.full(shape, value)
    return jnp.full(shape, value, dtype=np.asarray(value).dtype if is_static(value)
                    else value.dtype)


@register("ZerosLike", "OnesLike")
def _zeros_like(node, x):
    fill = 0 if node.op == "ZerosLike" else 1
    return xnp(x).full_like(x, fill) if not has_symbolic(x) else np.full(x.shape, fill)


@register("Range")
def _range(node, start, limit, delta):
    dtype = node.attr("Tidx")
    if is_static(start, limit, delta):
        return np.arange(start, limit, delta, dtype=dtype)
    return jnp.arange(start, limit, delta, dtype=dtype)


@register("Split")
def _split(node, axis, x):
    return xnp(x).split(x, node.attr("num_split"), axis=int(np.asarray(axis)))


@register("SplitV")
def _split_v(node, x, sizes, axis):
    bounds = np.cumsum(np.asarray(sizes))[:-1]
    return xnp(x).split(x, [int(b) for b in bounds], axis=int(np.asarray(axis)))


@register("GatherV2")
def _gather(node, params, indices, axis):
    axis = int(np.asarray(axis))
    if node.attr("batch_dims", 0):
        raise NotImplementedError("GatherV2 with batch_dims")
    if is_static(params, indices):
        return np.take(params, indices, axis=axis)
    return jnp.take(as_jax(params), as_jax(indices), axis=axis, mode="clip")


@register("StridedSlice")
def _strided_slice(node, x, begin, end, strides):
    if not is_static(begin, end, strides):
        raise NotImplementedError("StridedSlice with traced bounds")
    index = _slice_index(node, np.asarray(begin), np.asarray(end), np.asarray(strides))
    if is_static(x):
        return np.asarray(np.asarray(x)[index])
    return x[index]


def _slice_index(node, begin, end, strides) -> tuple:
    """The Python index that a StridedSlice's masks describe."""
    masks = {m: node.attr(m, 0) for m in ("begin_mask", "end_mask", "ellipsis_mask",
                                          "new_axis_mask", "shrink_axis_mask")}
    index = []
    for i in range(len(begin)):
        bit = 1 << i
        if masks["ellipsis_mask"] & bit:
            index.append(Ellipsis)
        elif masks["new_axis_mask"] & bit:
            index.append(None)
        elif masks["shrink_axis_mask"] & bit:
            index.append(int(begin[i]))
        else:
            index.append(slice(None if masks["begin_mask"] & bit else int(begin[i]),
                               None if masks["end_mask"] & bit else int(end[i]),
                               int(strides[i])))
    return tuple(index)
