"""Ops that move data around: constants and identities, shapes, reshaping, slicing,
stacking, gathers and scatters, padding, tiling, reversing, top-k, one-hot, and block
rearrangements.

Shape-valued results (``Shape``, ``Pack`` of dims, ``StridedSlice`` of a shape) stay
static numpy arrays, with symbolic dimensions as ``object`` entries, so that later
``Reshape``/``Fill`` see concrete sizes (see ``ops/__init__.py`` for the conventions).
Static inputs give static results wherever an op is used on shapes (``Tile``, ``Slice``,
``Pad``, ``ReverseV2``, ``BroadcastTo``, ``BroadcastArgs``, ``Where``, ...); indices,
sizes and paddings are static in any graph that runs under ``jit``.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import (TracedValueError, as_jax, check_value, has_symbolic,
                                      is_static, shape_tuple, static_ints, with_size,
                                      xnp)


_ints = static_ints


# -- constants and identities ---------------------------------------------------------------


@register("Const", attrs=("value",))
def _const(node):
    return node.attr("value")


# ``message`` (a text for errors) and ``shape`` (a check) do not change the value.
@register("Identity", "Snapshot", "EnsureShape", attrs=("shape",))
def _identity(node, x, *unused):
    return x


@register("PreventGradient", attrs=("message",))
def _prevent_gradient(node, x):
    """The identity whose gradient TF refuses: differentiating through it raises, so a
    function holding one is stored forward-only, naming the node and TF's reason."""
    reason = f"TF node {node.name!r} (PreventGradient): gradient explicitly disabled. " \
             f"Reason: {node.attr('message', '')}"
    if is_static(x) or not jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    return without_gradient(lambda value: value, reason)(x)


def without_gradient(fn, reason: str):
    """``fn``, whose gradient raises ``LookupError(reason)`` (TF's error for an op without
    one): a function differentiated through it is stored forward-only with that reason.
    ``fn`` itself is never differentiated; a gradient that reaches none of its results
    (all zero cotangents, as a custom gradient around it gives) is zero, not refused."""
    def call(*args):
        wrapped = jax.custom_vjp(fn)

        def forward(*primals):
            return wrapped(*(p.value for p in primals)), None

        def backward(unused, cotangents):
            zero = jax.custom_derivatives.SymbolicZero
            if all(isinstance(c, zero) for c in
                   jax.tree.leaves(cotangents, is_leaf=lambda c: isinstance(c, zero))):
                return (None,) * len(args)
            raise LookupError(reason)

        wrapped.defvjp(forward, backward, symbolic_zeros=True)
        return wrapped(*args)

    return call


class GraphAssertionError(ValueError):
    """A TF ``Assert`` whose condition is false on constants: the graph always fails."""


@register("Assert", attrs=("summarize",))
def _assert(node, condition, *data):
    """``tf.debugging.assert_*``: checked when the condition is static; if traced, dropped,
    or kept as a check when the context collects them (conversion with ``checks=True``).

    A traced condition cannot stop an exported function: a kept check becomes a result
    that the module hands to ``jax.experimental.checkify``. Keras layers assert on
    values they trust, hence dropped by default.
    """
    if is_static(condition):
        if not np.all(condition):
            shown = [np.asarray(d).reshape(-1)[:node.attr("summarize", 3)].tolist()
                     for d in data if is_static(d)]
            raise GraphAssertionError(
                f"TF node {node.name!r} (Assert): the condition is false on constant "
                f"inputs, so the graph always fails; its data: {shown}")
    elif node.ctx.checks is not None:
        node.ctx.checks.append((f"TF node {node.name!r} (Assert) failed",
                                jnp.all(as_jax(condition))))
    return []


@register("CheckNumerics", attrs=("message",))
def _check_numerics(node, x):
    """``tf.debugging.check_numerics``: the identity, failing on NaN or Inf values. As an
    ``Assert``: checked on constants; on traced values dropped, or kept as checks (one
    for NaN, one for Inf, with TF's messages) when the context collects them."""
    message = node.attr("message", "")
    if is_static(x):
        values = np.asarray(x)
        if np.issubdtype(values.dtype, np.inexact) and not np.all(np.isfinite(values)):
            raise GraphAssertionError(f"TF node {node.name!r} ({node.op}): {message} : "
                                      f"Tensor had NaN or Inf values on constant inputs")
    elif node.ctx.checks is not None:
        for kind, bad in (("NaN", jnp.isnan), ("Inf", jnp.isinf)):
            node.ctx.checks.append((f"TF node {node.name!r} ({node.op}) failed: {message} : "
                                    f"Tensor had {kind} values", ~jnp.any(bad(x))))
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


@register("PlaceholderWithDefault", attrs=("shape",))
def _placeholder_with_default(node, default):
    return default


# -- shapes and reshaping -------------------------------------------------------------------


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
    return xnp(x).reshape(x, _inferred_dims(np.shape(x), shape_tuple(shape)))


def _inferred_dims(old: tuple, new: tuple) -> tuple:
    """``new`` with its -1 replaced by the size it stands for, where a size is symbolic.

    JAX infers a -1 only where the other sizes divide the total evenly for every value of
    the symbols; a reshape of sizes (n1, n2) to (-1, 3) has the inferred size
    ``floordiv(n1*n2, 3)``, which JAX checks against the actual sizes when it is called
    (TF's kernel fails there too).
    """
    if -1 not in new or all(isinstance(d, (int, np.integer)) for d in old + new):
        return new
    total, known = 1, 1
    for d in old:
        total = total * d
    for d in new:
        known = known * (1 if isinstance(d, (int, np.integer)) and d == -1 else d)
    return tuple(total // known if isinstance(d, (int, np.integer)) and d == -1 else d
                 for d in new)


@register("Squeeze", attrs=("squeeze_dims",))
def _squeeze(node, x):
    """``tf.squeeze``: drops the axes given, or every axis of size 1.

    A size known only at run time (a free batch) is dropped when the axis is given, or,
    without axes, when TF recorded it dropped: the output shape TF recorded for the node
    when it traced the graph tells which free axes it kept. A kept one stays at any size,
    as the signature's output shape says (TF's kernel drops it where it is 1 at run
    time, against that shape). A dropped free axis must be 1 at run time, a check kept
    as for ``Assert`` (conversion with ``checks=True``).

    Raises:
      ValueError: no axis is given, an axis is free, and TF recorded no output shape
        that tells whether it is dropped.
    """
    shape = np.shape(x)
    axes = _squeezed_axes(node, shape)
    free = [a for a in axes if not isinstance(shape[a], (int, np.integer))]
    for axis in free:
        check_value(node, jnp.asarray(shape[axis]) == 1,
                    f"axis {axis} is squeezed, so its size must be 1")
        x = jax.lax.slice_in_dim(x, 0, 1, axis=axis)
    return xnp(x).squeeze(x, axis=tuple(sorted(axes)))


def _squeezed_axes(node, shape: tuple) -> set[int]:
    """The axes a ``Squeeze`` drops from an input of ``shape`` (see :func:`_squeeze`)."""
    given = {int(a) % len(shape) for a in node.attr("squeeze_dims", [])}
    if given:
        return given
    ones = {a for a, d in enumerate(shape) if isinstance(d, (int, np.integer)) and d == 1}
    free = [a for a, d in enumerate(shape) if not isinstance(d, (int, np.integer))]
    if not free:
        return ones
    recorded = (node.attr("_output_shapes", None) or [None])[0]
    # Which free axes TF dropped: the one choice whose kept sizes fit what it recorded.
    fits = [ones | set(dropped) for n in range(len(free) + 1)
            for dropped in itertools.combinations(free, n)
            if recorded is not None and _fits(shape, ones | set(dropped), recorded)]
    if len(fits) != 1:
        raise ValueError(
            f"squeezing every axis of size 1, with axes {free} of sizes known only at run "
            f"time (input shape {list(shape)}), and TF recorded "
            + ("no output shape" if recorded is None else f"an output shape "
               f"{list(recorded)} that fits {len(fits)} choices")
            + " that tells which it drops: name the axes to drop, tf.squeeze(x, axis=...)")
    return fits[0]


def _fits(shape: tuple, dropped: set[int], recorded: tuple) -> bool:
    """Whether ``shape`` without the axes ``dropped`` can be the ``recorded`` shape."""
    kept = [d for a, d in enumerate(shape) if a not in dropped]
    return len(kept) == len(recorded) and all(
        r is None or not isinstance(d, (int, np.integer)) or d == r
        for d, r in zip(kept, recorded))


@register("ExpandDims")
def _expand_dims(node, x, axis):
    return xnp(x).expand_dims(x, int(np.asarray(axis).reshape(())))


@register("Transpose")
def _transpose(node, x, perm):
    return xnp(x).transpose(x, tuple(int(p) for p in np.asarray(perm)))


@register("ConjugateTranspose")
def _conjugate_transpose(node, x, perm):
    return xnp(x).conj(_transpose(node, x, perm))


@register("Pack", attrs=("axis",))
def _pack(node, *xs):
    axis = node.attr("axis", 0)
    if is_static(*xs):
        return np.stack([np.asarray(x) for x in xs], axis=axis)
    return jnp.stack([as_jax(x) for x in xs], axis=axis)


@register("Unpack", attrs=("axis",))
def _unpack(node, x):
    axis = node.attr("axis", 0)
    m = xnp(x)
    return [m.squeeze(p, axis) for p in m.split(x, x.shape[axis], axis=axis)]


def _concatenate(xs, axis: int):
    if is_static(*xs):
        return np.concatenate([np.asarray(x) for x in xs], axis=axis)
    xs = [as_jax(x) for x in xs]
    axis = axis % xs[0].ndim
    for other in set(range(xs[0].ndim)) - {axis}:
        # A size that only a call decides (a host stage's) takes a static one beside it;
        # two symbols stay for jax.export to compare (the signature's are tied).
        size = next((x.shape[other] for x in xs if _is_int(x.shape[other])), None)
        if size is not None:
            xs = [x if _is_int(x.shape[other]) else with_size(x, other, size) for x in xs]
    return jnp.concatenate(xs, axis=axis)


def _is_int(dim) -> bool:
    return isinstance(dim, (int, np.integer))


@register("ConcatV2")
def _concat(node, *args):
    return _concatenate(args[:-1], int(np.asarray(args[-1])))


@register("Concat")
def _concat_v1(node, axis, *xs):
    # TF1's Concat takes the axis first.
    return _concatenate(xs, int(np.asarray(axis)))


# -- creating arrays ------------------------------------------------------------------------


@register("Fill")
def _fill(node, dims, value):
    shape = shape_tuple(dims)
    if is_static(value) and all(isinstance(d, int) for d in shape):
        return np.full(shape, value)
    if has_symbolic(value):  # a size the signature leaves free (each sequence's length)
        value = as_jax(value, node.attr("T"))
    return jnp.full(shape, value, dtype=np.asarray(value).dtype if is_static(value)
                    else value.dtype)


# ``init`` asks for zeros; without it the contents are undefined, and zeros are one choice.
@register("Empty", attrs=("init",))
def _empty(node, shape):
    return jnp.zeros(shape_tuple(shape), node.attr("dtype"))


@register("ZerosLike", "OnesLike")
def _zeros_like(node, x):
    fill = 0 if node.op == "ZerosLike" else 1
    return xnp(x).full_like(x, fill) if not has_symbolic(x) else np.full(x.shape, fill)


@register("Range")
def _range(node, start, limit, delta):
    if not is_static(start, limit, delta):
        raise TracedValueError(
            "Range with bounds computed from tensor values has a data-dependent length, "
            "which jit cannot trace: its bounds must come from shapes or constants",
            next(v for v in (start, limit, delta) if not is_static(v)))
    dtype = node.attr("Tidx")
    if has_symbolic(start) or has_symbolic(limit) or has_symbolic(delta):
        # Over a symbolic size (``tf.range(tf.shape(x)[0])`` with a free batch): an iota
        # of the symbolic length.
        first, last, step = (np.asarray(v).item() for v in (start, limit, delta))
        if not isinstance(step, (int, np.integer)) or step <= 0:
            raise NotImplementedError("Range over a symbolic size with a step other than "
                                      "a positive integer constant")
        count = (last - first + step - 1) // step
        return first + step * jax.lax.iota(dtype, count)
    return np.arange(start, limit, delta, dtype=dtype)


# -- splitting, gathers and strided slices --------------------------------------------------


@register("Split")
def _split(node, axis, x):
    return xnp(x).split(x, node.attr("num_split"), axis=int(np.asarray(axis)))


@register("SplitV")
def _split_v(node, x, sizes, axis):
    axis = int(np.asarray(axis))
    sizes = _ints(sizes)
    if -1 in sizes:  # at most one: the rest of the axis
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    bounds = np.cumsum(sizes)[:-1]
    return xnp(x).split(x, [int(b) for b in bounds], axis=axis)


@register("GatherV2", attrs=("batch_dims",))
def _gather(node, params, indices, axis):
    """``params`` indexed along ``axis``, per batch of the leading ``batch_dims`` axes.

    Out-of-range indices are clamped (TF's CPU kernel fails on them).
    """
    batch_dims = node.attr("batch_dims", 0)
    batch_dims += np.ndim(indices) if batch_dims < 0 else 0
    axis = int(np.asarray(axis)) % np.ndim(params)
    if batch_dims == 0 and is_static(params, indices):  # shapes with symbolic sizes too
        return np.asarray(np.take(params, indices, axis=axis))
    take = lambda p, i: jnp.take(p, i, axis=axis - batch_dims, mode="clip")
    params, indices = as_jax(params), as_jax(indices)
    for _ in range(batch_dims):
        take = jax.vmap(take)
    return take(params, indices)


# TF 1's gather (``tf.nn.embedding_lookup`` in TF 1 graphs): ``GatherV2`` along the first
# axis. ``validate_indices`` is deprecated: TF ignores it.
@register("Gather", attrs={"validate_indices": None})
def _gather_v1(node, params, indices):
    return _gather(node, params, indices, np.int32(0))


_MASKS = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")


@register("StridedSlice", attrs=_MASKS)
def _strided_slice(node, x, begin, end, strides):
    if not is_static(strides):
        raise TracedValueError("strides computed from tensor values give a data-dependent "
                               "size, which jit cannot trace", strides)
    index = _slice_index(node, begin, end, np.asarray(strides))
    if is_static(x) and not any(isinstance(i, jax.Array) for i in index):
        return np.asarray(np.asarray(x)[index])
    x, index = _take_steps(as_jax(x), index)
    return x[index]


def _take_steps(x, index: tuple) -> tuple[jax.Array, tuple]:
    """Applies the index's steps (``::2``, ``::-1``) with ``lax`` slices and reversals.

    Returns ``x`` with them applied and the index with those entries made plain ``:``.
    ``jnp`` indexing with a step turns into a gather (a scatter in the gradient) when any
    size of ``x`` is symbolic, as the batch size is in a module.
    """
    missing = x.ndim - sum(1 for i in index if i is not None and i is not Ellipsis)
    # By identity: ``in``/``index`` would compare a traced index with ``==``.
    at = next((k for k, item in enumerate(index) if item is Ellipsis), len(index))
    index = index[:at] + (slice(None),) * missing + index[at + 1:]
    axis, plain = 0, []
    for item in index:
        if isinstance(item, slice) and item.step not in (None, 1) and isinstance(
                x.shape[axis], int):
            start, stop, step = item.indices(x.shape[axis])
            if step < 0:  # the same elements, read forwards from the mirrored end
                x = jax.lax.rev(x, (axis,))
                start, stop, step = x.shape[axis] - 1 - start, x.shape[axis] - 1 - stop, -step
            x = jax.lax.slice_in_dim(x, start, max(start, stop), step, axis)
            item = slice(None)
        plain.append(item)
        axis += item is not None
    return x, tuple(plain)


def _slice_index(node, begin, end, strides) -> tuple:
    """The Python index that a StridedSlice's masks describe.

    ``begin`` may be traced where it gives single-element indices (``x[i]``, shrink axes)
    or is masked out: those keep the slice's size static. A traced bound of a slice would
    make the size data-dependent and is refused.
    """
    masks = {m: node.attr(m, 0) for m in _MASKS}

    def bound(values, i: int, what: str) -> int:
        if not is_static(values):
            raise TracedValueError(
                f"the {what} of slice entry {i} is computed from tensor values, so the "
                f"result's size is data-dependent, which jit cannot trace (only "
                f"single-element indices such as x[i] may be computed)", values)
        return int(np.asarray(values)[i])

    index = []
    for i in range(len(strides)):
        bit = 1 << i
        if masks["ellipsis_mask"] & bit:
            index.append(Ellipsis)
        elif masks["new_axis_mask"] & bit:
            index.append(None)
        elif masks["shrink_axis_mask"] & bit:
            index.append(int(np.asarray(begin)[i]) if is_static(begin) else as_jax(begin)[i])
        else:
            index.append(slice(None if masks["begin_mask"] & bit else bound(begin, i, "begin"),
                               None if masks["end_mask"] & bit else bound(end, i, "end"),
                               int(strides[i])))
    return tuple(index)

# -- gathers and scatters -------------------------------------------------------------------


def _nd_index(indices) -> tuple:
    """``indices[..., k]`` for each k: the index tuple of an ``*Nd`` op."""
    return tuple(jnp.moveaxis(as_jax(indices), -1, 0))


#: Out-of-range indices: jnp gathers clamp them (TF's "IGNORE" gives zeros instead);
#: jnp scatters drop their updates, as "IGNORE" does. In-range indices: all agree.
_GATHER_POLICIES = {"bad_indices_policy": ("", "DEFAULT", "ERROR")}
_SCATTER_POLICIES = ("bad_indices_policy",)


@register("GatherNd", attrs=_GATHER_POLICIES)
def _gather_nd(node, params, indices):
    return as_jax(params)[_nd_index(indices)]


@register("ScatterNd", attrs=_SCATTER_POLICIES)
def _scatter_nd(node, indices, updates, shape):
    updates = as_jax(updates)
    zeros = jnp.zeros(shape_tuple(shape), updates.dtype)
    return zeros.at[_nd_index(indices)].add(updates)  # duplicates accumulate, as in TF


_TENSOR_SCATTER = {
    "TensorScatterUpdate": lambda ref, u: ref.set(u),
    "TensorScatterAdd": lambda ref, u: ref.add(u),
    "TensorScatterSub": lambda ref, u: ref.add(-u),
    "TensorScatterMax": lambda ref, u: ref.max(u),
    "TensorScatterMin": lambda ref, u: ref.min(u),
}


@register(*_TENSOR_SCATTER, attrs=_SCATTER_POLICIES)
def _tensor_scatter(node, tensor, indices, updates):
    return _TENSOR_SCATTER[node.op](as_jax(tensor).at[_nd_index(indices)], as_jax(updates))


@register("DynamicStitch", "ParallelDynamicStitch")
def _dynamic_stitch(node, *args):
    """``merged[indices[m][i]] = data[m][i]``; of two equal indices the later one wins (TF
    says so for ``DynamicStitch``; the parallel op leaves it open). The indices are static:
    their largest decides the output's size. Rows no index names are zeros.
    """
    indices, data = args[:len(args) // 2], args[len(args) // 2:]
    flat = np.concatenate([np.reshape(static_ints(i), -1) for i in indices]).astype(int)
    trailing = tuple(np.shape(data[0])[np.ndim(indices[0]):])
    num = xnp(*data)
    rows = num.concatenate([num.reshape(d, (-1,) + trailing) for d in data]
                           + [num.zeros((1,) + trailing, data[0].dtype)])
    source = np.full(flat.max() + 1 if flat.size else 0, flat.size)  # the zero row
    source[flat] = np.arange(flat.size)  # numpy assigns repeated indices in order
    return rows[source]


@register("OneHot", attrs=("axis",))
def _one_hot(node, indices, depth, on_value, off_value):
    indices = as_jax(indices)
    hot = indices[..., None] == jnp.arange(int(np.asarray(depth)), dtype=indices.dtype)
    axis = node.attr("axis", -1)
    if axis != -1:
        hot = jnp.moveaxis(hot, -1, axis)
    return jnp.where(hot, as_jax(on_value), as_jax(off_value))


# -- shapes, tiles and pads -----------------------------------------------------------------


@register("Tile")
def _tile(node, x, multiples):
    return xnp(x).tile(x, _ints(multiples))


@register("BroadcastTo")
def _broadcast_to(node, x, shape):
    shape = shape_tuple(shape)
    if is_static(x) and all(isinstance(d, int) for d in shape):
        return np.broadcast_to(x, shape)
    return jnp.broadcast_to(as_jax(x), shape)  # a symbolic shape: numpy cannot


@register("BroadcastArgs")
def _broadcast_args(node, s0, s1):
    # By hand rather than np.broadcast_shapes, so that symbolic dimensions pass through.
    a, b = shape_tuple(s0), shape_tuple(s1)
    a, b = (1,) * (len(b) - len(a)) + a, (1,) * (len(a) - len(b)) + b
    dims = [y if isinstance(x, int) and x == 1 else x for x, y in zip(a, b)]
    if all(isinstance(d, int) for d in dims):
        return np.asarray(dims, dtype=np.asarray(s0).dtype)
    return np.asarray(dims, dtype=object)


def _pairs(paddings) -> list[tuple[int, int]]:
    return [tuple(p) for p in np.asarray(paddings).reshape(-1, 2).astype(int).tolist()]


@register("Pad", "PadV2")
def _pad(node, x, paddings, constant=0):
    if is_static(x, constant):
        return np.pad(np.asarray(x), _pairs(paddings), constant_values=constant)
    return jnp.pad(as_jax(x), _pairs(paddings), constant_values=as_jax(constant))


@register("MirrorPad", attrs=("mode",))
def _mirror_pad(node, x, paddings):
    mode = {"REFLECT": "reflect", "SYMMETRIC": "symmetric"}[node.attr("mode")]
    return xnp(x).pad(x, _pairs(paddings), mode=mode)


# -- slicing and reordering -----------------------------------------------------------------


@register("Slice")
def _slice(node, x, begin, size):
    if not is_static(begin):
        sizes = _ints(size)
        if any(s < 0 for s in sizes):
            raise NotImplementedError("Slice with a traced begin and a size of -1")
        return jax.lax.dynamic_slice(as_jax(x), list(as_jax(begin)), sizes)
    index = tuple(slice(b, None if s < 0 else b + s) for b, s in zip(_ints(begin), _ints(size)))
    return np.asarray(np.asarray(x)[index]) if is_static(x) else x[index]


@register("ReverseV2")
def _reverse(node, x, axis):
    return xnp(x).flip(x, tuple(_ints(axis)))


@register("ReverseSequence", attrs=("seq_dim", "batch_dim"))
def _reverse_sequence(node, x, seq_lengths):
    """Each example's first ``seq_lengths[b]`` steps reversed, the rest kept (the
    backward half of a TF 1 bidirectional RNN over padded sequences)."""
    seq_dim, batch_dim = node.attr("seq_dim") % np.ndim(x), node.attr("batch_dim") % np.ndim(x)
    lengths = xnp(seq_lengths).asarray(seq_lengths).astype(np.int64)
    steps = xnp(x).arange(np.shape(x)[seq_dim])  # jnp for a symbolic length
    # Source step of every (example, step): within the length, counted from its end.
    source = xnp(lengths, steps).where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    shape = [1] * np.ndim(x)
    shape[batch_dim], shape[seq_dim] = source.shape
    if batch_dim > seq_dim:
        source = source.T
    return xnp(x, source).take_along_axis(x, source.reshape(shape), axis=seq_dim)


@register("Roll")
def _roll(node, x, shift, axis):
    """The axes are static; the shifts may be computed from tensor values."""
    if is_static(shift):
        return xnp(x).roll(x, _ints(shift), axis=_ints(axis))
    shifts = jnp.reshape(as_jax(shift), (-1,))
    axes = _ints(axis)
    shifts = jnp.broadcast_to(shifts, (len(axes),))
    x = as_jax(x)
    for k, a in enumerate(axes):  # repeated axes add up, as in TF
        x = jnp.roll(x, shifts[k], axis=a)
    return x


@register("InvertPermutation")
def _invert_permutation(node, perm):
    perm = as_jax(perm)
    return jnp.zeros_like(perm).at[perm].set(jnp.arange(perm.shape[0], dtype=perm.dtype))


_INPLACE = {
    "InplaceUpdate": lambda ref, v: ref.set(v),
    "InplaceAdd": lambda ref, v: ref.add(v),
    "InplaceSub": lambda ref, v: ref.add(-v),
}


@register(*_INPLACE)
def _inplace(node, x, rows, v):
    """``x`` with the rows ``rows`` (of its first axis) replaced by, or added ``v``."""
    return _INPLACE[node.op](as_jax(x).at[as_jax(rows)], as_jax(v))


@register("LowerBound", "UpperBound")
def _search_sorted(node, sorted_inputs, values):
    """``tf.searchsorted``: row by row, where ``values`` would go into sorted rows."""
    side = "left" if node.op == "LowerBound" else "right"
    search = jax.vmap(lambda row, v: jnp.searchsorted(row, v, side=side))
    found = search(as_jax(sorted_inputs), as_jax(values))
    return found.astype(node.attr("out_type"))


@register("Where")
def _where(node, condition):
    if not is_static(condition):
        raise NotImplementedError(
            "Where with one argument (the indices of true entries) has a data-dependent "
            "shape, which jit cannot trace: it needs an input computed from constants")
    return np.argwhere(np.asarray(condition)).astype(np.int64)


# Unsorted top-k leaves the order to the kernel: sorted is one such order.
@register("TopKV2", attrs=("sorted",))
def _top_k(node, x, k):
    values, indices = jax.lax.top_k(as_jax(x), int(np.asarray(k)))
    return [values, indices.astype(node.attr("index_type", np.dtype(np.int32)))]


@register("LinSpace")
def _lin_space(node, start, stop, num):
    return jnp.linspace(as_jax(start), as_jax(stop), int(np.asarray(num)))


@register("Bitcast")
def _bitcast(node, x):
    # With 64-bit types off a 64-bit value is held in 32 bits: so is its bitcast.
    return jax.lax.bitcast_convert_type(as_jax(x),
                                        jax.dtypes.canonicalize_dtype(node.attr("type")))


# -- block rearrangements -------------------------------------------------------------------


_BLOCKS = {"block_size": None, "data_format": ("NHWC",)}


@register("DepthToSpace", attrs=_BLOCKS)
def _depth_to_space(node, x):
    x, bs = as_jax(x), node.attr("block_size")
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, bs, bs, c // (bs * bs)).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * bs, w * bs, c // (bs * bs))


@register("SpaceToDepth", attrs=_BLOCKS)
def _space_to_depth(node, x):
    x, bs = as_jax(x), node.attr("block_size")
    n, h, w, c = x.shape
    x = x.reshape(n, h // bs, bs, w // bs, bs, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // bs, w // bs, bs * bs * c)


@register("SpaceToBatchND")
def _space_to_batch(node, x, block_shape, paddings):
    x, blocks = as_jax(x), _ints(block_shape)
    m = len(blocks)
    pads = [(0, 0)] + _pairs(paddings) + [(0, 0)] * (x.ndim - 1 - m)
    x = jnp.pad(x, pads)
    batch, spatial, rest = x.shape[0], x.shape[1:1 + m], x.shape[1 + m:]
    split = [batch]
    for size, b in zip(spatial, blocks):
        split += [size // b, b]
    x = x.reshape(tuple(split) + tuple(rest))
    perm = ([2 + 2 * i for i in range(m)] + [0] + [1 + 2 * i for i in range(m)]
            + list(range(1 + 2 * m, x.ndim)))
    x = x.transpose(perm)
    return x.reshape((-1,) + tuple(s // b for s, b in zip(spatial, blocks)) + tuple(rest))


@register("BatchToSpaceND")
def _batch_to_space(node, x, block_shape, crops):
    x, blocks = as_jax(x), _ints(block_shape)
    m = len(blocks)
    spatial, rest = x.shape[1:1 + m], x.shape[1 + m:]
    x = x.reshape(tuple(blocks) + (-1,) + tuple(spatial) + tuple(rest))
    perm = [m] + [i for pair in ((m + 1 + i, i) for i in range(m)) for i in pair]
    x = x.transpose(perm + list(range(2 * m + 1, x.ndim)))
    x = x.reshape((-1,) + tuple(s * b for s, b in zip(spatial, blocks)) + tuple(rest))
    index = (slice(None),) + tuple(slice(lo, x.shape[1 + i] - hi)
                                   for i, (lo, hi) in enumerate(_pairs(crops)))
    return x[index]


