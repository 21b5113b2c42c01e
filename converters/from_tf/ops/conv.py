"""Convolutions and pooling, lowered for speed on XLA:CPU.

XLA:CPU runs generic convolutions far slower than TF's oneDNN kernels (see the measured
facts in the design notes, and ``benchmarks/PROFILE.md``). So the common cases of mobile
networks take other routes, each with a written-out gradient where autodiff's is slow:

* a convolution whose kernel spans an unpadded spatial axis (as wide as the input, as in
  audio front ends over all frequency bins) has that axis folded into the channels, left
  with size one, and takes the routes below as a 1×1 convolution or one over the other
  axes: XLA:CPU's gradient of it as a convolution misses the matrix product it is
  (hundreds of times slower, with a symbolic time axis, than the product's);
* a 1×1 convolution in channels-last layout is a matrix product over the channel axis
  (``dot_general``), after striding the input; its weight gradient is one 2-D product
  over the flattened leading axes (autodiff's three contracted axes make XLA:CPU
  transpose the cotangent and run a generic dot);
* a small depthwise convolution in channels-last layout is a sum of shifted, strided
  slices of the padded input, each multiplied by one tap of the kernel; its input
  gradient is the same kind of sum over the cotangent, one per stride phase, and its
  kernel gradient fused partial sums (autodiff's was a full-size pad per tap);
* a convolution whose output is smaller than its window (small feature maps, kernels
  as wide as an audio input's frequency axis, framed audio) is patches times the kernel
  matrix where XLA:CPU swaps its operands into a form no fast kernel handles (more taps
  than input positions) or its windows are strided; at stride 1 otherwise it runs as
  any other convolution forward, with the patches' gradient. Beyond 3×3 the patches are
  cut one axis at a time, from at most ``min(taps, outputs)`` slices per axis (one when
  the stride is at least the window) or one ``gather``, so the program stays small
  whatever the kernel's size;
* a convolution with few output channels (taps x outputs at most its input channels) is
  one product of the input with every tap's matrix, then a sum of shifted slices: XLA:CPU
  runs one-output-channel convolutions far below its speed;
* a convolution over few input channels (taps x inputs at most 32: audio front ends,
  grayscale and RGB stems) is one fused loop of broadcast multiply-adds, and so is its
  input gradient at stride 1: XLA:CPU's kernels are slowest there, 10-40 times; with
  symbolic spatial sizes too, at stride 1 (the stems of fully convolutional detectors);
  its result passes through a clamp that keeps it out of YNNPACK reduction fusions;
* a convolution over one input channel (audio front ends) is ``lax.conv_general_dilated``
  with written-out gradients: for the kernel, the taps' input slices stacked, times the
  cotangent (autodiff's swapped-axes convolution is 3 times slower on XLA:CPU); for the
  input, a conv to one channel, a tap projection as above;
* max pooling with large windows that do not overlap (a pool over a whole axis) is a
  reshape into windows and one ``max`` (``reduce_window``'s gradient is a scatter);
* a convolution without padding (``VALID``, static sizes) is given one cell of padding
  where no window reads it, or one more output row that is cut off: XLA:CPU's YNNPACK
  convolutions run 2-4 times slower with none (dilated convs that TF cut into phases
  by ``SpaceToBatchND`` around an unpadded conv, where :mod:`~jaxhub_tf.from_tf.atrous`
  cannot make them one dilated conv); its kernel gradient too; its input gradient (at
  stride 1, symbolic sizes too) pads the cotangent by all but one cell of the window,
  which its convolution keeps (padded by the whole window, YNNPACK does not take it);
* the kernel gradient of a convolution with at most 9 taps over at most 32 input
  channels, to 16 or more (unpadded, or over few inputs; static sizes), is one product of
  the patches with the cotangent: XLA:CPU's swapped convolution runs 2 times slower there;
* a 3-D convolution (channels last) is one 2-D convolution over the depth slices, taking
  the 2-D routes above, with the depth taps stacked in the output channels (then a sum
  of shifted depth slices) or, when narrower, in the input channels: XLA:CPU's 3-D
  convolutions are several times slower, and its 2-D ones over few channels too; a
  strided one's input gradient (a transposed 3-D convolution) is one stride-1
  convolution to all stride phases, interleaved;
* a convolution with symbolic spatial sizes (grouped and depthwise ones too, as
  ``feature_group_count``) is ``lax.conv_general_dilated`` on the input
  padded by ``lax.pad`` (``SAME`` paddings then depend on the sizes), with a written-out
  gradient that needs no symbolic padding; max and average pooling likewise pad, then
  ``reduce_window`` (the average's per-window counts are a ones-array pooled the same way);
* everything else (and channels-first layouts) is ``lax.conv_general_dilated``, grouped
  convolutions with ``feature_group_count``;
* the kernel gradient of a 2-D ungrouped convolution that none of the routes above
  writes out (padded or not, static or symbolic sizes; more than one tap along each
  axis) is the input's convolution with the cotangent stretched twofold along the width
  (:func:`_inflated_conv`): XLA:CPU runs it on its Eigen kernel then, not on YNNPACK,
  which is 2-5 times slower there.

Strided slices are ``lax`` slices, not ``jnp`` indexing, which a symbolic batch size
turns into gathers (and scatters in the gradient).

Transposed convolutions (``*BackpropInput``) are the VJP of the forward op with the same
attributes, so they share its lowering and its TF padding semantics exactly.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax, shape_tuple, with_size

#: Depthwise kernels with at most this many taps run as shifted multiply-adds.
MAX_SHIFTED_TAPS = 25

#: The platforms where written-out gradients take forms only XLA:CPU runs well (the
#: stretched kernel gradient, :func:`_per_platform`); elsewhere they are XLA's own
#: convolutions. Empty: nowhere (the tests run the other platforms' route on CPU).
TUNED_PLATFORMS: tuple[str, ...] = ("cpu",)

_DEFAULT_LAYOUT = {4: "NHWC", 5: "NDHWC"}


def _layout(node, rank: int) -> str:
    return node.attr("data_format", _DEFAULT_LAYOUT[rank])


def _channels_last(layout: str) -> bool:
    return not layout.startswith("NC")


def _spatial(layout: str, values: Sequence[int]) -> tuple[int, ...]:
    """The spatial entries of a per-axis attribute (strides, dilations, ksize)."""
    values = tuple(int(v) for v in values)
    return values[1:-1] if _channels_last(layout) else values[2:]


def _spatial_shape(layout: str, shape: Sequence) -> tuple:
    return tuple(shape[1:-1]) if _channels_last(layout) else tuple(shape[2:])


def _conv_pads(node, layout: str, in_spatial: Sequence[int], window: Sequence[int],
               strides: Sequence[int], dilations: Sequence[int]) -> list[tuple[int, int]]:
    """Explicit (low, high) padding per spatial axis, as TF pads ``SAME``/``VALID``."""
    padding = node.attr("padding")
    if padding == "EXPLICIT":
        pairs = [(int(lo), int(hi)) for lo, hi in
                 np.asarray(node.attr("explicit_paddings")).reshape(-1, 2)]
        return pairs[1:-1] if _channels_last(layout) else pairs[2:]
    dilated = [(k - 1) * d + 1 for k, d in zip(window, dilations)]
    return list(jax.lax.padtype_to_pads(in_spatial, dilated, strides, padding))


def _conv_geometry(node, x, kernel):
    """``(layout, strides, dilations, pads)`` of a convolution node on input ``x``."""
    layout = _layout(node, x.ndim)
    strides = _spatial(layout, node.attr("strides"))
    dilations = _spatial(layout, node.attr("dilations", [1] * x.ndim))
    window = kernel.shape[:-2]
    pads = _conv_pads(node, layout, _spatial_shape(layout, x.shape), window, strides,
                      dilations)
    return layout, strides, dilations, pads


def _strided(x, starts: Sequence[int], sizes: Sequence[int], strides: Sequence[int]):
    """``x[:, start:start + (size-1)*stride + 1:stride, ..., :]`` over the spatial axes.

    Written as ``lax`` slices: jnp indexing with steps becomes a gather (and its gradient
    a scatter) when the batch size is symbolic, as in exported modules.
    """
    for axis, (b, n, s) in enumerate(zip(starts, sizes, strides), start=1):
        if b or n != x.shape[axis] or s != 1:
            x = jax.lax.slice_in_dim(x, b, b + (n - 1) * s + 1, s, axis)
    return x


def _out_sizes(padded: Sequence[int], window: Sequence[int], strides: Sequence[int],
               dilations: Sequence[int]) -> list[int]:
    return [(n - (k - 1) * d - 1) // s + 1
            for n, k, s, d in zip(padded, window, strides, dilations)]


def _pad_spatial(x, pads):
    if not any(lo or hi for lo, hi in pads):
        return x
    return jnp.pad(x, [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)])


# -- convolutions ---------------------------------------------------------------------------


def _conv(node, x, kernel):
    x, kernel = as_jax(x), as_jax(kernel)
    layout, strides, dilations, pads = _conv_geometry(node, x, kernel)
    in_channels = x.shape[-1] if _channels_last(layout) else x.shape[1]
    if isinstance(in_channels, int) and not isinstance(kernel.shape[-2], (int, np.integer)):
        # XLA takes a static group count: a kernel whose input channels only a call
        # decides (a host stage's result) is taken ungrouped, which the call checks.
        kernel = with_size(kernel, -2, in_channels)
    groups = in_channels // kernel.shape[-2]
    spanned = _spanned_axes(_spatial_shape(layout, x.shape), kernel.shape[:-2], pads)
    if groups == 1 and spanned:
        x, kernel = _fold_spanned(x, kernel, layout, spanned)
        strides, dilations = ([1 if i in spanned else v for i, v in enumerate(values)]
                              for values in (strides, dilations))
    return _lowered_conv(x, kernel, layout, strides, dilations, pads, groups)


def _spanned_axes(sizes: Sequence, window: Sequence[int], pads) -> tuple[int, ...]:
    """The spatial axes (indices) that the kernel spans unpadded (``VALID``, or padding
    that adds nothing): one output along each, whatever the stride. Empty unless one of
    them has more than one tap."""
    spanned = tuple(i for i, (n, k, pad) in enumerate(zip(sizes, window, pads))
                    if isinstance(n, (int, np.integer)) and n == k and not any(pad))
    return spanned if any(window[i] > 1 for i in spanned) else ()


def _fold_spanned(x, kernel, layout: str, spanned: tuple[int, ...]):
    """``x`` and ``kernel`` with the ``spanned`` spatial axes folded into the channels and
    left as axes of size one: the same convolution, which contracts those axes in a
    matrix product instead of sliding a window along them.

    A window as large as its input (crema's 1×216 over 216 frequency bins, an audio
    front end's 7×561 over 561) is a matrix product over that axis, which XLA:CPU's
    convolution gradient does not see: crema's 1×216 1 -> 72 conv over [32, 128, 216],
    time symbolic (static sizes took the patches lowering), took 2.6 ms forward and
    4.5 s for its gradient, 20 ms folded (``benchmarks/PROFILE.md``). Folded, it is a
    1×1 conv (:func:`_pointwise`), or a conv over the other axes alone.
    """
    sizes, window = _spatial_shape(layout, x.shape), kernel.shape[:-2]
    k_in, k_out = kernel.shape[-2:]
    merged = int(np.prod([window[i] for i in spanned])) * k_in
    x_spatial = [1 if i in spanned else n for i, n in enumerate(sizes)]
    k_spatial = [1 if i in spanned else k for i, k in enumerate(window)]
    # The merged channel index runs over the spanned axes, then the channels (channels
    # last), or the channels, then the spanned axes (channels first): a kernel spanning
    # the axis next to the channels (crema's frequency axis) needs no transpose.
    n = len(spanned)
    if _channels_last(layout):
        x = jnp.moveaxis(x, [1 + i for i in spanned], range(x.ndim - 1 - n, x.ndim - 1))
        x = x.reshape(x.shape[0], *x_spatial, merged)
        kernel = jnp.moveaxis(kernel, spanned, range(kernel.ndim - 2 - n, kernel.ndim - 2))
    else:
        x = jnp.moveaxis(x, [2 + i for i in spanned], range(2, 2 + n))
        x = x.reshape(x.shape[0], merged, *x_spatial)
        kernel = jnp.moveaxis(kernel, spanned, range(kernel.ndim - 1 - n, kernel.ndim - 1))
    return x, kernel.reshape(*k_spatial, merged, k_out)


def _lowered_conv(x, kernel, layout: str, strides, dilations, pads, groups: int):
    """A convolution on the fastest path for its shapes and geometry."""
    pointwise = all(k == 1 for k in kernel.shape[:-2]) and not any(
        lo or hi for lo, hi in pads)
    if pointwise and groups == 1 and _channels_last(layout):
        return _pointwise(x, kernel, strides)
    if not _static(kernel.shape):  # a window that only a call decides: XLA's own conv
        return _xla_conv(x, kernel, _ConvDims(layout, tuple(strides), tuple(dilations),
                                              groups), pads)
    if not _static(_spatial_shape(layout, x.shape)):
        if _symbolic_few_inputs(kernel, layout, groups, tuple(strides), pads):
            return _broadcast_taps_conv(x, kernel, _window(strides, dilations, pads))
        return _symbolic_sized_conv(x, kernel, layout, strides, dilations, pads, groups)
    if groups == 1 and _channels_last(layout):
        if kernel.ndim == 5:
            return _depth_taps_conv(x, kernel, strides, dilations, pads)
        return _conv2d(x, kernel, strides, dilations, pads)
    return _xla_conv(x, kernel, _ConvDims(layout, tuple(strides), tuple(dilations), groups),
                     pads)


def _per_platform(tuned, portable, *args):
    """``tuned(*args)`` where the program runs on :data:`TUNED_PLATFORMS` (CPU),
    ``portable(*args)`` elsewhere.

    A module is exported for GPUs and TPUs too, whose compilers hand XLA's own
    convolutions to their libraries' kernels; cuDNN, for one, has no base-dilated
    convolution to take :func:`_inflated_conv`. Once a call fixes the platform, only its
    branch is compiled. Taken inside written-out VJPs only, where both branches read the
    same residuals: around a forward route, JAX keeps both branches' residuals, which a
    gradient outside ``jit`` then fills in (a face detector's step: 2-3 times slower).
    """
    if not TUNED_PLATFORMS:
        return portable(*args)
    if not all(_static(a.shape) for a in args):
        # Both branches' results must have one type: with symbolic sizes, the same
        # expression (their values agree, their forms need not), the portable one's,
        # which is quick to trace.
        tuned = _fitted(tuned, jax.eval_shape(portable, *args).shape)
    return jax.lax.platform_dependent(*args, default=portable,
                                      **dict.fromkeys(TUNED_PLATFORMS, tuned))


def _fitted(fn, shape):
    """``fn`` with its result fitted (:func:`_fit`) to ``shape`` where its form differs."""
    def fn_fitted(*args):
        y = fn(*args)
        differ = [(axis, n) for axis, n in enumerate(shape) if not n == y.shape[axis]]
        return _fit(y, differ) if differ else y
    return fn_fitted


def _conv2d(x, kernel, strides, dilations, pads):
    """A 2-D convolution (NHWC, static spatial sizes) on the fastest path for its shape."""
    padded = [n + lo + hi for n, (lo, hi) in zip(x.shape[1:3], pads)]
    out = _out_sizes(padded, kernel.shape[:2], strides, dilations)
    window = _window(strides, dilations, pads)
    if any(o < k for o, k in zip(out, kernel.shape[:2])):
        if _takes_patches(x.shape[1:3], kernel.shape[:2], strides, out):
            return _patches_conv(x, kernel, strides, dilations, pads, out)
        return _patches_grad_conv(x, kernel, window)
    return _windowed_conv2d(x, kernel, window)


def _windowed_conv2d(x, kernel, window: _Window):
    """A 2-D convolution (NHWC, static sizes) that XLA:CPU runs as it stands (its output
    not smaller than its window, or XLA keeps its operands in place): the fastest route
    for its channels."""
    strides, dilations, pads = window
    if _few_outputs(kernel):
        return _tap_projection_conv(x, kernel, window)
    if _few_inputs(kernel):
        return _broadcast_taps_conv(x, kernel, window)
    if kernel.shape[2] <= MAX_STACKED_CHANNELS:
        return _tap_gradient_conv(x, kernel, window)
    return _xla_conv(x, kernel, _ConvDims("NHWC", tuple(strides), tuple(dilations)), pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _patches_grad_conv(x, kernel, window: _Window):
    """A 2-D convolution whose output is smaller than its window that does not take the
    patches forward (:func:`_takes_patches`): :func:`_windowed_conv2d`'s value, and the
    patches' gradient, as before this route (autodiff of the windows and the product).

    The routes of :func:`_windowed_conv2d` differentiate some of these shapes slower:
    basic-pitch's 1×256 1 -> 36 over 427 samples, input and kernel gradients, took 118 ms
    against the patches' 33 (TF 34).
    """
    return _windowed_conv2d(x, kernel, window)


def _patches_grad_fwd(x, kernel, window: _Window):
    return _windowed_conv2d(x, kernel, window), (x, kernel)


def _patches_grad_bwd(window: _Window, residuals, dy):
    x, kernel = residuals
    out_sizes = dy.shape[1:3]

    def patches_conv(x, kernel):
        return _patches_conv(x, kernel, window.strides, window.dilations, window.pads,
                             out_sizes)
    return jax.vjp(patches_conv, x, kernel)[1](dy)


_patches_grad_conv.defvjp(_patches_grad_fwd, _patches_grad_bwd)


def _takes_patches(in_sizes, window, strides, out_sizes) -> bool:
    """Whether a 2-D conv runs as :func:`_patches_conv`: its output is smaller than the
    window along an axis, and either XLA:CPU would swap its operands (the window holds more
    taps than the input has positions) or the windows along such an axis are strided
    (framed audio, whose patches are little more than the input).

    At stride 1 with fewer taps than input positions, XLA's own convolution runs at full
    speed, and the patches copy the input once per tap along the short axis: musicnn's
    7×67 1 -> 204 over [32, 193, 96] (30 outputs along 96 bins) took 1,523 ms as patches
    against 850 ms as XLA's convolution (TF 1,602; ``benchmarks/PROFILE.md``).
    """
    short = [i for i, (o, k) in enumerate(zip(out_sizes, window)) if o < k]
    if not short:
        return False
    swapped = np.prod(window) > np.prod(in_sizes)
    return swapped or any(strides[i] > 1 for i in short)


def _symbolic_few_inputs(kernel, layout: str, groups: int, strides, pads) -> bool:
    """Whether a conv with symbolic spatial sizes still runs as
    :func:`_broadcast_taps_conv`: a 2-D NHWC one over few input channels, at stride 1 with
    paddings that do not depend on the sizes (``VALID``, explicit, ``SAME``).

    Its shifted slices take symbolic bounds; XLA:CPU's generic convolution of a
    fully convolutional detector's RGB stem (3x3 3 -> 10 over [32, 64, 40]) took 14 ms
    against 3.6 ms this way.
    """
    return (kernel.ndim == 4 and groups == 1 and _channels_last(layout) and strides == (1, 1)
            and _few_inputs(kernel) and _static([p for pair in pads for p in pair]))


def _window(strides, dilations, pads) -> _Window:
    return _Window(tuple(strides), tuple(dilations), tuple(tuple(p) for p in pads))


def _xla_conv(x, kernel, dims: _ConvDims, pads):
    """``lax.conv_general_dilated`` (static spatial sizes), unpadded ones through
    :func:`_unpadded_conv`, padded ones whose kernel gradient XLA:CPU runs slowly through
    :func:`_padded_conv`."""
    if not any(lo or hi for lo, hi in pads):
        return _unpadded_conv(x, kernel, dims)
    widths = [p for pair in pads for p in pair]
    if not (_static(kernel.shape) and _static(widths)):
        return _lax_padded_conv(x, kernel, dims._replace(border=tuple(map(tuple, pads))))
    dims = dims._replace(border=tuple((int(lo), int(hi)) for lo, hi in pads))
    if _eigen_kernel_grad(kernel.shape[:-2], dims):
        return _padded_conv(x, kernel, dims)
    return _lax_padded_conv(x, kernel, dims)


def _lax_padded_conv(x, kernel, dims: _ConvDims):
    spec = "HWIO" if kernel.ndim == 4 else "DHWIO"
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=dims.strides, padding=dims.border,
        rhs_dilation=dims.dilations, dimension_numbers=(dims.layout, spec, dims.layout),
        feature_group_count=dims.groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _padded_conv(x, kernel, dims: _ConvDims):
    """A convolution padded by ``dims.border`` (static sizes) whose kernel gradient is
    :func:`_padded_kernel_grad`'s; the input gradient is XLA's."""
    return _lax_padded_conv(x, kernel, dims)


def _padded_conv_fwd(x, kernel, dims: _ConvDims):
    return _padded_conv(x, kernel, dims), (x, kernel)


def _padded_conv_bwd(dims: _ConvDims, residuals, dy):
    x, kernel = residuals
    dx = jax.vjp(lambda x: _lax_padded_conv(x, kernel, dims), x)[1](dy)[0]
    return dx, _padded_kernel_grad(x, dy, kernel.shape[:-2], dims)


_padded_conv.defvjp(_padded_conv_fwd, _padded_conv_bwd)


def _depth_taps_conv(x, kernel, strides, dilations, pads):
    """A 3-D convolution (NDHWC, static spatial sizes) as one 2-D convolution
    (:func:`_conv2d`) over the depth slices, its depth taps stacked in the channels:
    the output's (:func:`_depth_stacked_outputs`), or the input's when those are no wider
    than the output (:func:`_depth_stacked_inputs`).

    XLA:CPU runs 3-D convolutions far slower than 2-D ones, and 2-D ones over few
    channels far below their speed on wide ones (3x3 8 -> 8: 26 GFLOP/s, 8 -> 24: 96,
    16 -> 48: 157; ``benchmarks/PROFILE.md``), so the taps go where they widen the
    narrow side. An undilated one takes :func:`_undilated_depth_taps_conv`'s gradient.
    """
    if dilations == (1, 1, 1):
        return _undilated_depth_taps_conv(x, kernel, _Window3(strides, tuple(map(tuple, pads))))
    return _depth_stacked_conv(x, kernel, strides, dilations, pads)


def _depth_stacked_conv(x, kernel, strides, dilations, pads):
    """:func:`_depth_taps_conv`'s forward pass.

    The outputs take the taps unless the stacked inputs are no wider than the output (a
    first layer over one channel): stacking narrow inputs interleaves narrow pieces,
    which XLA:CPU copies several times slower (8 -> 8 over 128^3: 260 ms to stack the
    inputs, 84 ms to sum the stacked outputs, under load).
    """
    kd, _, _, in_channels, out_channels = kernel.shape
    if kd * in_channels <= out_channels:
        return _depth_stacked_inputs(x, kernel, strides, dilations, pads)
    return _depth_stacked_outputs(x, kernel, strides, dilations, pads)


def _depth_stacked_inputs(x, kernel, strides, dilations, pads):
    """The 3-D conv as one 2-D conv of the input's depth taps side by side in the
    channels (``[N * out_d, H, W, kd * C]``)."""
    kd, kh, kw, in_channels, out_channels = kernel.shape
    (sd, *strides2), (dd, *dilations2), ((lo, hi), *pads2) = strides, dilations, pads
    out_d = _out_sizes([x.shape[1] + lo + hi], [kd], [sd], [dd])[0]
    taps = [_depth_tap_rows(x, i * dd - lo, sd, out_d) for i in range(kd)]
    stacked = taps[0] if kd == 1 else jnp.concatenate(taps, axis=-1)
    matrix = jnp.moveaxis(kernel, 0, 2).reshape(kh, kw, kd * in_channels, out_channels)
    y = _conv2d(stacked.reshape(x.shape[0] * out_d, *x.shape[2:4], kd * in_channels),
                matrix, strides2, dilations2, pads2)
    return y.reshape(x.shape[0], out_d, *y.shape[1:])


def _depth_tap_rows(x, start: int, stride: int, count: int):
    """Rows ``start + stride * o`` (``o < count``) of ``x``'s depth axis (1), zeros
    where they fall outside it: a slice, then a ``pad`` of its own (one padded copy
    of ``x`` read by every tap is a pass of its own on XLA:CPU, where these fuse into
    their consumer)."""
    depth = x.shape[1]
    first = min(count, max(0, -(-(-start) // stride)))  # first o with start + stride*o >= 0
    last = min(count, max(first, -(-(depth - start) // stride)))  # past the last inside
    if first == last:
        return jnp.zeros((x.shape[0], count, *x.shape[2:]), x.dtype)
    rows = jax.lax.slice_in_dim(x, start + stride * first,
                                start + stride * (last - 1) + 1, stride, 1)
    return _pad_axes(rows, [(0, 0), (first, count - last)] + [(0, 0)] * (x.ndim - 2), 0)


def _depth_stacked_outputs(x, kernel, strides, dilations, pads):
    """The 3-D conv as one 2-D conv of every depth slice to all depth taps' outputs side
    by side (``[N * D, H', W', kd * out]``), then the sum of their shifted depth slices;
    slab by slab (:func:`_depth_slabs_conv`) when :func:`_depth_slab_rows` gives slabs."""
    kd, kh, kw, in_channels, out_channels = kernel.shape
    (sd, *strides2), (dd, *dilations2), ((lo, hi), *pads2) = strides, dilations, pads
    n, depth = x.shape[:2]
    matrix = jnp.moveaxis(kernel, 0, 3).reshape(kh, kw, in_channels, kd * out_channels)
    rows = _depth_slab_rows(x, kernel.shape, strides, dilations, pads)
    if rows:
        return _depth_slabs_conv(x, matrix, out_channels, rows, strides2, pads2, (lo, hi))
    y = _conv2d(x.reshape(n * depth, *x.shape[2:]), matrix, strides2, dilations2, pads2)
    y = y.reshape(n, depth, *y.shape[1:3], kd, out_channels)
    out_d = _out_sizes([depth + lo + hi], [kd], [sd], [dd])[0]
    total = None
    for i in range(kd):
        term = _depth_tap_rows(jax.lax.index_in_dim(y, i, 4, keepdims=False), i * dd - lo,
                               sd, out_d)
        total = term if total is None else total + term
    return total


#: Stacked outputs (all depth taps' 2-D convs of a whole 3-D conv) of at least this many
#: bytes are computed slab by slab of depth rows of one example (:func:`_depth_slabs_conv`),
#: each slab's at most :data:`MAX_SLAB_BYTES` (or one depth row's).
MIN_SLABBED_BYTES = 16 << 20
MAX_SLAB_BYTES = 4 << 20


def _depth_slab_rows(x, kernel_shape, strides, dilations, pads) -> int:
    """Depth rows per slab of :func:`_depth_slabs_conv` for this undilated stride-1 3-D
    conv (a divisor of the depth), or 0 where its stacked outputs are few enough to
    leave in memory whole (a symbolic batch counts as one example), or where the depth
    padding exceeds the window's."""
    kd, _, _, _, out_channels = kernel_shape
    n, depth, *sizes, _ = x.shape
    if (kd == 1 or tuple(strides)[0] != 1 or tuple(dilations) != (1, 1, 1)
            or not all(0 <= pad <= kd - 1 for pad in pads[0])):
        return 0
    padded = [size + lo + hi for size, (lo, hi) in zip(sizes, pads[1:])]
    height, width = _out_sizes(padded, kernel_shape[1:3], strides[1:], (1, 1))
    row_bytes = height * width * kd * out_channels * x.dtype.itemsize
    if (n if isinstance(n, int) else 1) * depth * row_bytes < MIN_SLABBED_BYTES:
        return 0
    return max(r for r in range(1, depth + 1)
               if depth % r == 0 and (r == 1 or r * row_bytes <= MAX_SLAB_BYTES))


def _depth_slabs_conv(x, matrix, out_channels: int, rows: int, strides2, pads2,
                      depth_pads):
    """:func:`_depth_stacked_outputs` of an undilated stride-1 3-D conv as a loop over
    slabs of ``rows`` depth rows of one example each: a slab's stacked outputs (its 2-D
    conv with ``matrix``, ``[kh, kw, C, kd * out]``), their shifted sum added into the
    running total.

    XLA:CPU gives every call's temporaries fresh memory, so the stacked outputs of a
    whole 3-D conv (``kd`` times its output) cost page faults and a pass through memory
    (8 -> 8 over 96^3 at batch 1: 28,000 faults a call); a slab's stay in cache in one
    reused buffer (16 -> 8 over 96^3: 254 -> 94-143 ms, TF 177 ms;
    ``benchmarks/PROFILE.md``). Input row ``d``'s depth tap ``i`` adds to row
    ``d + kd - 1 - i`` of the total, whose rows from ``kd - 1 - lo`` on are the output's.
    A symbolic batch makes the loop's trip count symbolic (a ``while``).
    """
    (n, depth, *sizes, channels), (lo, hi) = x.shape, depth_pads
    kd, slabs = matrix.shape[-1] // out_channels, depth // rows
    height, width = _out_sizes([size + a + b for size, (a, b) in zip(sizes, pads2)],
                               matrix.shape[:2], strides2, (1, 1))

    def add_slab(slab, total):
        example, start = slab // slabs, slab % slabs * rows
        rows_x = jax.lax.dynamic_slice(x, (example, start, 0, 0, 0),
                                       (1, rows, *sizes, channels))
        y = _conv2d(rows_x.reshape(rows, *sizes, channels), matrix, strides2, (1, 1), pads2)
        y = y.reshape(1, rows, height, width, kd, out_channels)
        shifted = [_pad_axes(jax.lax.index_in_dim(y, i, 4, keepdims=False),
                             [(0, 0), (kd - 1 - i, i), (0, 0), (0, 0), (0, 0)], 0)
                   for i in range(kd)]
        corner = (example, start, 0, 0, 0)
        window = jax.lax.dynamic_slice(total, corner,
                                       (1, rows + kd - 1, height, width, out_channels))
        return jax.lax.dynamic_update_slice(total, window + sum(shifted), corner)

    total = jnp.zeros((n, depth + kd - 1, height, width, out_channels), x.dtype)
    total = jax.lax.fori_loop(0, n * slabs, add_slab, total)
    return jax.lax.slice_in_dim(total, kd - 1 - lo, depth + hi, axis=1)


class _Window3(NamedTuple):
    """The static geometry of an undilated 3-D convolution."""

    strides: tuple[int, int, int]
    pads: tuple[tuple[int, int], ...]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _undilated_depth_taps_conv(x, kernel, window: _Window3):
    """An undilated 3-D conv (:func:`_depth_stacked_conv`) whose input gradient (and so a
    transposed 3-D conv, ``Conv3DBackpropInputV2``) is a 3-D conv of the cotangent on
    the same path: at stride 1 with the flipped, transposed kernel, else one stride-1
    conv to every stride phase's outputs (:func:`_phased_input_grad`).

    Autodiff's input gradient of the strided 2-D convs is XLA's convolution with a
    dilated input, which XLA:CPU runs on its slow generic path; at stride 1, of the
    stacked outputs' sum, a cotangent stacked from narrow pieces (8 -> 8 over 64^3: TF's
    time / jaxhub's 0.47, 0.96 this way; ``benchmarks/PROFILE.md``). Those convs of the
    cotangent are this function's too, so differentiating an input gradient (a transposed
    conv's gradient) never differentiates :func:`_depth_slabs_conv`'s loop, whose trip
    count a symbolic batch leaves symbolic.
    """
    return _depth_stacked_conv(x, kernel, window.strides, (1, 1, 1), window.pads)


def _undilated_depth_taps_fwd(x, kernel, window: _Window3):
    return _undilated_depth_taps_conv(x, kernel, window), (x, kernel)


def _undilated_depth_taps_bwd(window: _Window3, residuals, dy):
    x, kernel = residuals
    window_shape = kernel.shape[:3]
    if window.strides == (1, 1, 1) and all(
            0 <= lo < k and 0 <= hi < k for k, (lo, hi) in zip(window_shape, window.pads)):
        flipped = jnp.swapaxes(jnp.flip(kernel, (0, 1, 2)), 3, 4)
        pads = [(k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(window_shape, window.pads)]
        dx = _undilated_depth_taps_conv(dy, flipped, _Window3((1, 1, 1), tuple(pads)))
    else:
        dx = _phased_input_grad(dy, kernel, window, x.shape)
    return dx, _depth_taps_kernel_grad(x, dy, kernel, window)


def _depth_taps_kernel_grad(x, dy, kernel, window: _Window3):
    """The kernel gradient of an undilated 3-D conv, one depth tap at a time: the 2-D
    conv's of that tap's input depth rows (:func:`_conv2d`'s VJP).

    Autodiff of the stacked outputs' conv is one kernel-gradient convolution to the
    stacked cotangent, which XLA:CPU runs slower (8 -> 8 over 64^3: 152 ms, 92 ms this
    way; TF 17 ms, ``benchmarks/PROFILE.md``).
    """
    (sd, *strides2), ((lo, _), *pads2) = window.strides, window.pads
    n, out_d = dy.shape[:2]
    rows_dy = dy.reshape(n * out_d, *dy.shape[2:])
    taps = []
    for i in range(kernel.shape[0]):
        rows = _depth_tap_rows(x, i - lo, sd, out_d).reshape(n * out_d, *x.shape[2:])
        _, pullback = jax.vjp(lambda k: _conv2d(rows, k, strides2, (1, 1), pads2), kernel[i])
        taps.append(pullback(rows_dy)[0])
    return jnp.stack(taps)


def _phased_input_grad(dy, kernel, window: _Window3, x_shape):
    """The input gradient of an undilated 3-D conv, per stride phase.

    Input position ``q = s*a + r`` (phase ``r``) gets ``dy[a - m] * kernel[s*m + r + lo]``
    for every whole ``m`` that gives a tap. So all phases are one stride-1 ``VALID``
    conv of ``dy`` (padded) with a kernel of those taps (zeros where a phase has none),
    its outputs the phases side by side, interleaved into the input's grid after.
    """
    *window_shape, in_channels, out_channels = kernel.shape
    plans = [_phase_taps(k, s, lo, n, o) for k, s, (lo, _), n, o in zip(
        window_shape, window.strides, window.pads, x_shape[1:4], dy.shape[1:4])]
    # Per axis: taps[j][r] is the kernel tap of window position j in phase r, or k (zero).
    index = np.ix_(*[np.asarray(taps).reshape(-1) for taps, _, _ in plans])
    gathered = jnp.pad(kernel, [(0, 1), (0, 1), (0, 1), (0, 0), (0, 0)])[index]
    shape = [d for taps, _, _ in plans for d in np.asarray(taps).shape]  # j0 r0 j1 r1 j2 r2
    gathered = gathered.reshape(*shape, in_channels, out_channels)
    # [j0, j1, j2, out (dy's channels), r0, r1, r2, in]: the phases' kernel.
    matrix = jnp.transpose(gathered, (0, 2, 4, 7, 1, 3, 5, 6))
    js = matrix.shape[:3]
    phases = int(np.prod(window.strides))
    matrix = matrix.reshape(*js, out_channels, phases * in_channels)
    dyp = _pad_axes(dy, [(0, 0)] + [pad for _, pad, _ in plans] + [(0, 0)], 0)
    y = _undilated_depth_taps_conv(dyp, matrix, _Window3((1, 1, 1), ((0, 0),) * 3))
    counts = [count for _, _, count in plans]
    y = y.reshape(dy.shape[0], *counts, *window.strides, in_channels)
    y = jnp.transpose(y, (0, 1, 4, 2, 5, 3, 6, 7))
    y = y.reshape(dy.shape[0], *[c * s for c, s in zip(counts, window.strides)], in_channels)
    return _strided(y, (0, 0, 0), x_shape[1:4], (1, 1, 1))


def _phase_taps(k: int, s: int, lo: int, size: int, out_size: int):
    """Along one axis of a strided conv's input gradient: ``(taps, pad, count)``, where
    ``taps[j][r]`` is the kernel tap that window position ``j`` reads in phase ``r`` (``k``
    where none), ``pad`` the cotangent's padding and ``count`` the rows per phase."""
    ms = [m for r in range(s) for m in range(-((r + lo) // s) - 1, k) if 0 <= s * m + r + lo < k]
    m_min, m_max = min(ms), max(ms)
    count = -(-size // s)
    taps = [[s * (m_max - j) + r + lo if 0 <= s * (m_max - j) + r + lo < k else k
             for r in range(s)] for j in range(m_max - m_min + 1)]
    return taps, (m_max, count - m_min - out_size), count


_undilated_depth_taps_conv.defvjp(_undilated_depth_taps_fwd, _undilated_depth_taps_bwd)


class _ConvDims(NamedTuple):
    """The static geometry of a (padded) convolution with symbolic spatial sizes.

    ``border``, when given, is padding (static ``(low, high)`` per spatial axis): the zero
    border that :func:`_symbolic_conv`'s input already holds (its kernel gradient then
    convolves the input's interior with that padding, :func:`_kernel_grad`), or
    :func:`_padded_conv`'s padding.
    """

    layout: str
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    groups: int = 1
    border: tuple[tuple[int, int], ...] = ()


def _symbolic_sized_conv(x, kernel, layout: str, strides, dilations, pads, groups: int):
    """A (grouped) convolution of ``x`` whose spatial sizes are symbolic."""
    x = _pad_symbolic(x, layout, pads, kernel.shape[:-2], strides, dilations)
    return _symbolic_conv(x, kernel, _ConvDims(layout, tuple(strides), tuple(dilations),
                                               groups, _zero_border(pads, strides)))


def _zero_border(pads, strides) -> tuple[tuple[int, int], ...]:
    """The zero border that :func:`_pad_symbolic` gives a conv's input, where the kernel
    gradient can take it as padding: static ``pads``, not all zero, at stride 1 (where
    the padded input is read whole, none of it cut); else ``()``."""
    widths = [p for pair in pads for p in pair]
    if not _static(widths) or not any(widths) or any(s != 1 for s in strides):
        return ()
    return tuple((int(lo), int(hi)) for lo, hi in pads)


def _pad_symbolic(x, layout: str, pads, window, strides, dilations):
    """``x`` padded by ``pads`` (widths that may depend on symbolic sizes, as ``SAME``
    with strides gives), then cut to the rows and columns its windows read."""
    first = 1 if _channels_last(layout) else 2
    widths = [(0, 0, 0)] * x.ndim
    for axis, (lo, hi) in enumerate(pads, start=first):
        widths[axis] = (lo, hi, 0)
    x = jax.lax.pad(x, np.zeros((), x.dtype), widths)
    padded = _spatial_shape(layout, x.shape)
    outs = _out_sizes(padded, window, strides, dilations)
    for axis, o, k, s, d in zip(range(first, x.ndim), outs, window, strides, dilations):
        x = jax.lax.slice_in_dim(x, 0, (o - 1) * s + (k - 1) * d + 1, 1, axis)
    return x


def _valid_conv(x, kernel, dims: _ConvDims, strides):
    spec = "HWIO" if kernel.ndim == 4 else "DHWIO"
    return _unpadded_conv_general(x, kernel, strides, dims.dilations,
                                  (dims.layout, spec, dims.layout),
                                  feature_group_count=dims.groups)


def _unpadded_conv_general(lhs, rhs, strides, rhs_dilation, dimension_numbers, **groups):
    """``lax.conv_general_dilated`` without padding, run with one cell of it.

    XLA:CPU's convolutions (YNNPACK) run 2 to 4 times slower when no axis is padded: an
    unpadded 1x11 32 -> 32 conv over [128, 1, 2535] (a dilated Conv1D after TF's
    ``SpaceToBatchND``) took 390 ms, 100 ms with one padded cell; 3x3 32 -> 64 over
    [32, 46, 46] 71 against 33 ms (``benchmarks/PROFILE.md``). So one axis gets a cell
    of padding at its end, where no window reads it (:func:`_free_padding`), or else
    one more output row that is cut off. With symbolic spatial sizes always the latter,
    at stride 1 (a fully convolutional detector's forward pass: 0.74-0.87 of its time),
    and none at other strides, where the cell need not add a row.
    """
    dims = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    sizes = [lhs.shape[axis] for axis in dims.lhs_spec[2:]]
    window = [rhs.shape[axis] for axis in dims.rhs_spec[2:]]

    def conv(strides, pads):
        return jax.lax.conv_general_dilated(lhs, rhs, strides, pads, rhs_dilation=rhs_dilation,
                                            dimension_numbers=dims, **groups)

    if not _static(sizes):
        if strides[0] != 1:
            return conv(strides, [(0, 0)] * len(sizes))
        # Sizes that cannot be compared: the cell is one more output row along the first
        # axis, cut back to the unpadded conv's size (``max(n - k + 1, 0)``).
        y = conv(strides, [(0, 1)] + [(0, 0)] * (len(sizes) - 1))
        axis = dims.out_spec[2]
        unpadded = jax.eval_shape(lambda: conv(strides, [(0, 0)] * len(sizes)))
        return _fit(y, [(axis, unpadded.shape[axis])])
    strides, pads, cut = _free_padding(sizes, window, strides, rhs_dilation)
    y = conv(strides, pads)
    if cut is not None:
        axis = dims.out_spec[2 + cut]
        y = jax.lax.slice_in_dim(y, 0, y.shape[axis] - 1, 1, axis)
    return y


def _free_padding(sizes, window, strides, dilations):
    """``(strides, pads, cut)`` of an unpadded convolution given one cell of padding
    (at the end of one spatial axis) and the same output.

    The cell is free on an axis whose last window stops short of a stride's slack (and
    on an axis of one output, whose stride is then free to widen); else the first axis
    gets it, and one more output row along it, to ``cut`` (that axis's index).
    """
    strides, pads = list(strides), [(0, 0)] * len(sizes)
    reach = [(k - 1) * d + 1 for k, d in zip(window, dilations)]
    for axis, (n, r, s) in enumerate(zip(sizes, reach, strides)):
        if n - r < s:  # one output: any stride from n - r + 2 on reads the same window
            strides[axis] = max(s, n - r + 2)
        if (n - r) % strides[axis] < strides[axis] - 1:
            pads[axis] = (0, 1)
            return tuple(strides), pads, None
    pads[0] = (0, 1)
    return tuple(strides), pads, 0


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _symbolic_conv(x, kernel, dims: _ConvDims):
    """A ``VALID`` convolution of ``x`` with symbolic spatial sizes.

    ``conv_general_dilated`` takes such sizes, but its transpose computes paddings from
    them (through the ``max(n - k + 1, 0)`` of its output sizes) that it then refuses. So
    the gradient is written out with static paddings, and ``lax.pad`` (which takes
    symbolic widths) fits each result to its primal's shape.
    """
    return _valid_conv(x, kernel, dims, dims.strides)


def _symbolic_conv_fwd(x, kernel, dims: _ConvDims):
    return _symbolic_conv(x, kernel, dims), (x, kernel)


def _symbolic_conv_bwd(dims: _ConvDims, residuals, dy):
    x, kernel = residuals
    n = len(dims.strides)
    first = 1 if _channels_last(dims.layout) else 2
    axes = range(first, first + n)
    window = kernel.shape[:n]
    zero = np.zeros((), dy.dtype)
    # Input gradient: dy spread by the strides and padded by the dilated window, against
    # the flipped kernel (inputs and outputs swapped); at stride 1 with a cell of padding
    # kept in the convolution. Rows that no window read (after the last) get zeros from
    # the fitting pad.
    if dims.strides == (1,) * n and _channels_last(dims.layout):
        dx = _unpadded_input_grad(x, kernel, dims, dy)
    else:
        spread = [(0, 0, 0)] * dy.ndim
        for axis, k, s, d in zip(axes, window, dims.strides, dims.dilations):
            spread[axis] = ((k - 1) * d, (k - 1) * d, s - 1)
        flipped = _transposed_kernel(jnp.flip(kernel, tuple(range(n))), dims.groups)
        dx = _valid_conv(jax.lax.pad(dy, zero, spread), flipped, dims, (1,) * n)
    dx = _fit(dx, zip(axes, (x.shape[axis] for axis in axes)))
    return dx, _kernel_grad(x, dy, window, dims)


def _kernel_grad(x, dy, window, dims: _ConvDims):
    """The kernel gradient of the unpadded convolution ``dims`` of ``x`` (which may have
    symbolic spatial sizes) with a kernel of spatial shape ``window``.

    When ``x`` holds a zero border (``dims.border``), its interior is convolved with that
    padding instead: XLA:CPU runs the padded convolution 1.3-1.5 times faster than the
    unpadded one with its cell of padding and extra output row (3x3 64 -> 64 over
    [8, 48, 64]: 48 against 72 ms; ``benchmarks/PROFILE.md`` section 20).
    """
    if dims.border:
        first = 1 if _channels_last(dims.layout) else 2
        widths = [(0, 0, 0)] * x.ndim
        for axis, (lo, hi) in enumerate(dims.border, start=first):
            widths[axis] = (-lo, -hi, 0)
        x = jax.lax.pad(x, np.zeros((), x.dtype), widths)
    return _padded_kernel_grad(x, dy, window, dims)


def _padded_kernel_grad(x, dy, window, dims: _ConvDims):
    """The kernel gradient of the convolution ``dims`` of ``x`` padded by ``dims.border``
    (none if empty): on CPU stretched (:func:`_inflated_conv`) where
    :func:`_eigen_kernel_grad` says, else as it is (unpadded, with
    :func:`_unpadded_conv_general`'s cell)."""
    # x correlated with dy, batch and channel axes swapped; the window positions step by
    # the dilations, dy's taps by the strides. Groups of x's channels (now its batch)
    # meet their groups of dy's channels: batch groups.
    swapped = dims.layout.replace("N", "_").replace("C", "N").replace("_", "C")
    conv_dims = (swapped, dims.layout.replace("N", "I").replace("C", "O"), swapped)
    first = 1 if _channels_last(dims.layout) else 2

    def as_it_is(x, dy):
        if dims.border:
            return jax.lax.conv_general_dilated(
                x, dy, dims.dilations, dims.border, rhs_dilation=dims.strides,
                dimension_numbers=conv_dims, batch_group_count=dims.groups)
        return _unpadded_conv_general(x, dy, dims.dilations, dims.strides, conv_dims,
                                      batch_group_count=dims.groups)

    def stretched(x, dy):
        return _inflated_conv(x, dy, dims.dilations,
                              dims.border or ((0, 0),) * len(window), dims.strides, conv_dims)

    if _eigen_kernel_grad(window, dims):
        dk = _per_platform(stretched, as_it_is, x, dy)
    else:
        dk = as_it_is(x, dy)
    dk = _fit(dk, zip(range(first, first + len(window)), window))
    # [.., x's channels at 'N', .., dy's channels at 'C', ..] -> [*window, in, out]
    return jnp.moveaxis(dk, (swapped.index("N"), swapped.index("C")), (-2, -1))


def _eigen_kernel_grad(window, dims: _ConvDims) -> bool:
    """Whether :func:`_padded_kernel_grad` runs as :func:`_inflated_conv`: 2-D, ungrouped,
    more than one tap along each axis.

    A Conv1D's (a 1xk kernel over one row) lost on Eigen at times: 1x11 dilated 4 32 -> 32
    over [4, 1, 10100] 21.8 against 27.8 ms, 1x41 dilated 25 69 against 93 ms, where 3x3
    ones won 2-3 times in the same run (``benchmarks/PROFILE.md`` section 20).
    """
    return len(window) == 2 and dims.groups == 1 and all(k > 1 for k in window)


def _inflated_conv(lhs, rhs, strides, pads, rhs_dilation, dimension_numbers):
    """``lax.conv_general_dilated`` with its last spatial axis stretched twofold: ``lhs``
    dilated by 2 (a base dilation), read at twice the stride, with the window's taps
    twice as far apart and twice the padding. The sums are the same, on even positions
    of the stretched axis, where the odd (zero) ones are never read.

    A kernel gradient is a convolution whose window is the whole cotangent. XLA:CPU runs
    it on YNNPACK, 2-5 times slower than on its Eigen kernel where the cotangent is large
    (3x3 64 -> 64 over [32, 48, 64]: 282 against 134 ms; TF 48 ms); YNNPACK declines base
    dilations, so stretched, it runs on Eigen (``benchmarks/PROFILE.md`` section 20).
    """
    *strides, stride = strides
    *pads, (lo, hi) = pads
    *rhs_dilation, rhs_step = rhs_dilation
    n = len(strides)
    return jax.lax.conv_general_dilated(
        lhs, rhs, (*strides, 2 * stride), (*pads, (2 * lo, 2 * hi)),
        lhs_dilation=(1,) * n + (2,), rhs_dilation=(*rhs_dilation, 2 * rhs_step),
        dimension_numbers=dimension_numbers)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _unpadded_conv(x, kernel, dims: _ConvDims):
    """A convolution without padding (static sizes), with :func:`_valid_conv`'s cell of
    padding in the forward pass and in the kernel gradient, which autodiff would run
    unpadded (for a dilated Conv1D, 4 times TF's time)."""
    return _valid_conv(x, kernel, dims, dims.strides)


def _unpadded_conv_fwd(x, kernel, dims: _ConvDims):
    return _unpadded_conv(x, kernel, dims), (x, kernel)


def _unpadded_conv_bwd(dims: _ConvDims, residuals, dy):
    x, kernel = residuals
    dx = _unpadded_input_grad(x, kernel, dims, dy)
    if (kernel.ndim == 4 and dims.layout == "NHWC" and dims.groups == 1
            and _takes_patches_kernel_grad(kernel.shape)):
        window = _Window(dims.strides, dims.dilations, ((0, 0), (0, 0)))
        return dx, _patches_kernel_grad(x, dy, kernel.shape, window)
    return dx, _kernel_grad(x, dy, kernel.shape[:-2], dims)


def _unpadded_input_grad(x, kernel, dims: _ConvDims, dy):
    """The input gradient of the unpadded convolution ``dims`` of ``x`` (channels last,
    stride 1; otherwise XLA's transpose).

    It is ``dy`` padded by the dilated window against the flipped kernel, a convolution
    that XLA:CPU's YNNPACK does not take when its padding spans the whole window (XLA
    folds a ``pad`` before it into it), so its slower generic kernel ran it. So all but
    one cell of that padding is a ``pad`` behind a barrier, and the convolution keeps the
    one cell (a face detector's gradient step at batch 32: 0.84-0.92 of its time,
    ``benchmarks/PROFILE.md``).
    """
    n = len(dims.strides)
    spec = "HWIO" if kernel.ndim == 4 else "DHWIO"
    conv_dims = (dims.layout, spec, dims.layout)
    if dims.strides != (1,) * n or not _channels_last(dims.layout):
        return jax.vjp(lambda x: jax.lax.conv_general_dilated(
            x, kernel, dims.strides, [(0, 0)] * n, rhs_dilation=dims.dilations,
            dimension_numbers=conv_dims, feature_group_count=dims.groups), x)[1](dy)[0]
    reach = [(k - 1) * d for k, d in zip(kernel.shape[:n], dims.dilations)]
    kept = [min(r, 1) for r in reach]
    widths = [(0, 0, 0)] + [(r - c, r - c, 0) for r, c in zip(reach, kept)] + [(0, 0, 0)]
    dyp = jax.lax.optimization_barrier(jax.lax.pad(dy, np.zeros((), dy.dtype), widths))
    flipped = _transposed_kernel(jnp.flip(kernel, tuple(range(n))), dims.groups)
    return jax.lax.conv_general_dilated(
        dyp, flipped, (1,) * n, [(c, c) for c in kept], rhs_dilation=dims.dilations,
        dimension_numbers=conv_dims, feature_group_count=dims.groups)


_unpadded_conv.defvjp(_unpadded_conv_fwd, _unpadded_conv_bwd)


def _transposed_kernel(kernel, groups: int):
    """``[*window, in / groups, out]`` -> ``[*window, out / groups, in]``: each group's
    inputs and outputs swapped, the groups kept in order."""
    *window, group_in, out = kernel.shape
    kernel = kernel.reshape(*window, group_in, groups, out // groups)
    kernel = jnp.swapaxes(kernel, -3, -1)  # [*window, out / groups, groups, in / groups]
    return kernel.reshape(*window, out // groups, groups * group_in)


def _fit(y, sizes):
    """``y`` padded (or cut) at the end of each ``(axis, size)`` to that size: equal in
    value, and a shape that is the wanted expression, not JAX's ``max(.., 0)`` of it."""
    widths = [(0, 0, 0)] * y.ndim
    for axis, size in sizes:
        widths[axis] = (0, size - y.shape[axis], 0)
    return jax.lax.pad(y, np.zeros((), y.dtype), widths)


_symbolic_conv.defvjp(_symbolic_conv_fwd, _symbolic_conv_bwd)


def _static(sizes: Sequence) -> bool:
    """Whether every size is a plain integer (not a symbolic dimension)."""
    return all(isinstance(n, (int, np.integer)) for n in sizes)


def _patches_conv(x, kernel, strides, dilations, pads, out_sizes):
    """A 2-D convolution (NHWC) as its patches times the kernel matrix.

    For an output smaller than the kernel window (small feature maps, or kernels as wide
    as the input, as in audio front ends), XLA:CPU swaps the convolution's operands into
    a form no fast kernel handles, hundreds of times slower. A kernel of up to
    :data:`MAX_TAP_SLICES` taps takes one slice per tap; a larger one has its patches cut
    one spatial axis at a time (see :func:`_axis_windows`), so that the program stays
    small whatever the kernel's size.
    """
    kh, kw, in_channels, out_channels = kernel.shape
    xp = _pad_spatial(x, pads)
    if kh * kw <= MAX_TAP_SLICES:
        # A small kernel (3x3 on a small map): its taps' slices side by side.
        patches = _tap_patches(xp, (kh, kw), out_sizes, strides, dilations)
    else:
        windows = _axis_windows(xp, 1, kh, strides[0], dilations[0], out_sizes[0])
        windows = _axis_windows(windows, 2, kw, strides[1], dilations[1], out_sizes[1])
        # [N, out_h, out_w, kh, kw, C]: the (kh, kw, C) axes are the kernel matrix's rows.
        patches = windows.reshape(windows.shape[:3] + (kh * kw * in_channels,))
    matrix = kernel.reshape(kh * kw * in_channels, out_channels)
    return jax.lax.dot_general(patches, matrix, (((3,), (0,)), ((), ())))


#: Kernels with at most this many taps take their patches as one slice per tap.
MAX_TAP_SLICES = 9


def _tap_patches(xp, window: Sequence[int], out_sizes, strides, dilations):
    """The patches of padded ``xp`` (NHWC), ``[N, out_h, out_w, kh * kw * C]``: each tap's
    strided slice, side by side along the channels (tap-major, as ``HWIO`` kernels)."""
    kh, kw = window
    return jnp.concatenate(
        [_strided(xp, (i * dilations[0], j * dilations[1]), out_sizes, strides)
         for i in range(kh) for j in range(kw)], axis=-1)


#: Windows along one axis that take more slices than this are one ``gather`` instead.
MAX_WINDOW_SLICES = 8


def _axis_windows(x, axis: int, k: int, s: int, d: int, count: int):
    """``x`` with ``axis`` cut into windows: ``count`` outputs along ``axis``, and a new
    window axis just before the last (channel) axis, ``y[.., o, .., i, c] = x[.., o*s + i*d,
    .., c]``.

    Built from the fewest slices of three equivalent forms: one strided slice per tap
    (``k``), one per output (``count``), or, undilated, a reshape of ``axis`` into rows
    of ``s`` and one slice per row that a window spans (``ceil(k / s)``: a single one
    when the stride is at least the window, as in framed audio). When even that takes
    more than :data:`MAX_WINDOW_SLICES`, one ``gather`` of constant indices: each slice
    costs about ten ops under a symbolic batch size, and hundreds of them took seconds
    to export and to compile, for no faster a program.
    """
    blocks = _blocks(k, s, d)
    if min(k, count, blocks) > MAX_WINDOW_SLICES:
        positions = np.arange(count)[:, None] * s + np.arange(k)[None, :] * d
        return jnp.moveaxis(jnp.take(x, positions, axis=axis), axis + 1, -2)
    if blocks < min(k, count):
        windows = _blocked_windows(x, axis, k, s, count, blocks)  # [.., o, k, ..., c]
        return jnp.moveaxis(windows, axis + 1, -2)
    if count < k:
        per_output = [jax.lax.slice_in_dim(x, o * s, o * s + (k - 1) * d + 1, d, axis)
                      for o in range(count)]
        return jnp.moveaxis(jnp.stack(per_output, axis=axis), axis + 1, -2)
    per_tap = [jax.lax.slice_in_dim(x, i * d, i * d + (count - 1) * s + 1, s, axis)
               for i in range(k)]
    return jnp.stack(per_tap, axis=-2)


def _blocks(k: int, s: int, d: int) -> int:
    """Rows of ``s`` that a window spans (undilated), or ``k`` when dilated."""
    return -(-k // s) if d == 1 else k


def _blocked_windows(x, axis: int, k: int, s: int, count: int, blocks: int):
    """The windows of :func:`_axis_windows` (undilated), window axis after ``axis``,
    through ``x`` reshaped into rows of ``s``.

    Position ``o*s + i`` is row ``o + i // s``, column ``i % s``: rows ``b .. b+count``
    side by side for ``b < blocks`` hold every window, and its first ``k`` columns are it.
    """
    rows = count + blocks - 1
    size = x.shape[axis]
    if size < rows * s:  # columns past the last window's end, never read
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, rows * s - size)
        x = jnp.pad(x, widths)
    x = jax.lax.slice_in_dim(x, 0, rows * s, 1, axis)
    x = x.reshape(x.shape[:axis] + (rows, s) + x.shape[axis + 1:])
    parts = [jax.lax.slice_in_dim(x, b, b + count, 1, axis) for b in range(blocks)]
    windows = parts[0] if blocks == 1 else jnp.concatenate(parts, axis=axis + 1)
    return jax.lax.slice_in_dim(windows, 0, k, 1, axis + 1)


def _few_outputs(kernel) -> bool:
    """Whether a (2-D, HWIO) kernel is best run as :func:`_tap_projection_conv`: more than
    one tap, and taps x output channels at most its input channels, so that the product
    with every tap's matrix is no wider than the input."""
    kh, kw, in_channels, out_channels = kernel.shape
    return kh * kw > 1 and kh * kw * out_channels <= in_channels


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _tap_projection_conv(x, kernel, window: _Window):
    """A 2-D convolution (NHWC) with few output channels: one matrix product of the padded
    input with every tap's ``[C, out]`` matrix side by side (``[.., taps * out]``), then the
    sum over taps of that product's shifted, strided slices.

    XLA:CPU runs convolutions with one or a few output channels (the heads of audio and
    segmentation models: 3×3 33 -> 1, 7×3 32 -> 1) far below its speed on wide ones; a
    matrix product whose result is no wider than the input, and one fused loop of adds,
    take half the time. The VJP is written out: autodiff of the slices would pad each one
    to the whole product's size (5 to 20 times slower than ``lax.conv``'s gradient); here
    the taps' cotangents are slices of one padded ``dy``, and both gradients are single
    matrix products.
    """
    return _tap_projection_fwd(x, kernel, window)[0]


def _tap_projection_fwd(x, kernel, window: _Window):
    kh, kw, in_channels, out_channels = kernel.shape
    xp = _pad_spatial(x, window.pads)
    matrix = jnp.moveaxis(kernel, 2, 0).reshape(in_channels, kh * kw * out_channels)
    projected = _channel_matmul(xp, matrix)  # [N, Hp, Wp, (kh, kw, out)]
    out_sizes = _out_sizes(xp.shape[1:3], (kh, kw), window.strides, window.dilations)
    total = None
    for tap, (i, j) in enumerate(itertools.product(range(kh), range(kw))):
        part = _strided(projected, (i * window.dilations[0], j * window.dilations[1]),
                        out_sizes, window.strides)
        part = jax.lax.slice_in_dim(part, tap * out_channels, (tap + 1) * out_channels, 1, 3)
        total = part if total is None else total + part
    return total, (xp, kernel)


def _tap_projection_bwd(window: _Window, residuals, dy):
    xp, kernel = residuals
    kh, kw, in_channels, out_channels = kernel.shape
    # The product's cotangent: tap (i, j) at padded position (i*d + h*s, j*d + w*s) gets
    # dy[h, w]. So dy, spread by the strides and padded by the dilated window once, gives
    # every tap's cotangent as one contiguous slice.
    zero = np.zeros((), dy.dtype)
    reach = [(k - 1) * d for k, d in zip((kh, kw), window.dilations)]
    widths = [(0, 0, 0)] + [
        (r, n - ((o - 1) * s + 1), s - 1)
        for r, n, o, s in zip(reach, xp.shape[1:3], dy.shape[1:3], window.strides)] + [(0, 0, 0)]
    spread = jax.lax.pad(dy, zero, widths)
    d0, d1 = window.dilations
    # Stacked along a new leading axis: contiguous copies (a stack along the channel axis
    # interleaves narrow pieces, several times slower).
    d_projected = jnp.stack(
        [_strided(spread, (reach[0] - i * d0, reach[1] - j * d1), xp.shape[1:3], (1, 1))
         for i in range(kh) for j in range(kw)]).reshape(kh * kw, -1, out_channels)
    rows = xp.reshape(-1, in_channels)
    dxp = jax.lax.dot_general(d_projected, kernel.reshape(kh * kw, in_channels, out_channels),
                              (((0, 2), (0, 2)), ((), ()))).reshape(xp.shape)
    dkernel = jax.lax.dot_general(d_projected, rows, (((1,), (0,)), ((), ())))  # [taps, out, C]
    in_sizes = [n - lo - hi for n, (lo, hi) in zip(xp.shape[1:3], window.pads)]
    dx = _strided(dxp, [lo for lo, _ in window.pads], in_sizes, (1, 1))
    return dx, jnp.swapaxes(dkernel, 1, 2).reshape(kernel.shape)


_tap_projection_conv.defvjp(_tap_projection_fwd, _tap_projection_bwd)


#: A convolution with at most this many products per output vector (taps x input
#: channels) runs as broadcast multiply-adds (:func:`_broadcast_taps_conv`).
MAX_BROADCAST_TERMS = 32


def _few_inputs(kernel) -> bool:
    """Whether a (2-D, HWIO) kernel is best run as :func:`_broadcast_taps_conv`: taps x
    input channels at most :data:`MAX_BROADCAST_TERMS` (a 1x5 or 3x3 conv over 1 to 4
    channels, a 1x3 over 8: audio front ends and grayscale or RGB stems)."""
    kh, kw, in_channels, _ = kernel.shape
    return kh * kw * in_channels <= MAX_BROADCAST_TERMS


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _broadcast_taps_conv(x, kernel, window: _Window):
    """A 2-D convolution (NHWC) over few input channels as one fused loop of
    multiply-adds: for every tap and input channel, that channel of a shifted, strided
    slice of the padded input times the tap's row of output weights (broadcast).

    XLA:CPU's convolution kernels run far below their speed when the input has few
    channels (1x5 1 -> 4 and 1x3 4 -> 4 over [32, 40, 256]: 16-22 ms against 0.2-0.6 ms
    this way, and TF's 0.8-4.4 ms; ``benchmarks/PROFILE.md``). The VJP is written out: the
    input gradient is the same kind of loop over the padded cotangent with the flipped,
    transposed kernel when that loop is as short (stride 1), else XLA's; the kernel
    gradient is :func:`_broadcast_taps_kernel_grad`'s.
    Autodiff of the loop would pad every slice to the input's size.
    """
    return _broadcast_taps_fwd(x, kernel, window)[0]


def _broadcast_taps_fwd(x, kernel, window: _Window):
    xp = _pad_spatial(x, window.pads)
    if _static(xp.shape[1:3]):
        out_sizes = _out_sizes(xp.shape[1:3], kernel.shape[:2], window.strides,
                               window.dilations)
        return (_broadcast_taps(xp, kernel, out_sizes, window.strides, window.dilations),
                (xp, kernel))
    # Symbolic sizes (stride 1): a slice of ``n - 2`` rows needs ``n >= 2``, which JAX
    # cannot prove. So every input position gets a whole window (zeros past the end), and
    # the rows and columns past the last true window are cut by a negative pad, to the
    # output sizes as ``lax.conv`` states them (``max(n - 2, 0)``).
    reach = [(k - 1) * d for k, d in zip(kernel.shape[:2], window.dilations)]
    ext = _pad_spatial(xp, [(0, r) for r in reach])
    y = _broadcast_taps(ext, kernel, xp.shape[1:3], (1, 1), window.dilations)
    valid = window._replace(pads=((0, 0), (0, 0)))
    out = jax.eval_shape(lambda xp, kernel: _lax_conv2d(xp, kernel, valid), xp, kernel)
    return _fit(y, zip((1, 2), out.shape[1:3])), (xp, kernel)


def _broadcast_taps(xp, kernel, out_sizes, strides, dilations):
    """``sum over taps (i, j) and channels c of patch(i, j)[.., c:c+1] * kernel[i, j, c]``."""
    kh, kw, in_channels, _ = kernel.shape
    # XLA fuses elementwise producers into their consumers, and would fuse this loop into
    # each of its consumers (batch norm, activation, pooling and their gradients) and
    # the input's producers into each of its taps, computing them many times over (3-4x
    # slower gradient steps). The barriers keep the input and the result in memory.
    xp = jax.lax.optimization_barrier(xp)
    total = None
    for i, j in itertools.product(range(kh), range(kw)):
        patch = _strided(xp, (i * dilations[0], j * dilations[1]), out_sizes, strides)
        for c in range(in_channels):
            term = jax.lax.slice_in_dim(patch, c, c + 1, 1, 3) * kernel[i, j, c]
            total = term if total is None else total + term
    return _outside_ynn_fusions(jax.lax.optimization_barrier(total))


def _outside_ynn_fusions(x):
    """``x`` (NaNs too) through an op that XLA:CPU's YNNPACK fusions do not take: a clamp
    to the infinities.

    XLA:CPU drops optimization barriers before fusing. A YNNPACK fusion rooted at a
    reduction (a max pool over a whole axis, a mean) then takes the multiply-adds of
    :func:`_broadcast_taps` in, but not their broadcasts, which it reads materialized at
    the result's size, one array per tap: 3×3 3 -> 32 on [32, 46, 46], then ReLU and a
    max over the width, 53.5 ms against 5.5 ms with the clamp (TF 5.0; musicnn's 32×1
    1 -> 51 then a max over 96 bins: 614 against 169 ms; ``benchmarks/PROFILE.md``).
    With the clamp the loop stays one loop fusion, which the YNNPACK fusion reads. Only
    the result passes through it: clamping the padded input too cost hed 4-6 %.
    """
    infinity = np.array(np.inf, x.dtype)
    return jax.lax.clamp(-infinity, x, infinity)


def _broadcast_taps_bwd(window: _Window, residuals, dy):
    xp, kernel = residuals
    kh, kw, _, out_channels = kernel.shape
    in_sizes = [n - lo - hi for n, (lo, hi) in zip(xp.shape[1:3], window.pads)]
    valid = window._replace(pads=((0, 0), (0, 0)))  # xp is padded already
    if (window.strides != (1, 1) or kh * kw * out_channels > MAX_BROADCAST_TERMS
            or not _static(xp.shape[1:3])):
        dxp, _ = _unpadded_conv2d_vjp(xp, kernel, valid, dy)
        return (_strided(dxp, [lo for lo, _ in window.pads], in_sizes, (1, 1)),
                _broadcast_taps_kernel_grad(xp, dy, kernel, valid))
    # Stride 1: input row h gets dy[h + lo - i*d] * tap i, so dy padded by the dilated
    # window less the forward's padding (negative widths crop), read with the flipped
    # taps in order, gives exactly the input's rows.
    zero = np.zeros((), dy.dtype)
    widths = [(0, 0, 0)] + [((k - 1) * d - lo, (k - 1) * d - hi, 0) for k, d, (lo, hi) in zip(
        (kh, kw), window.dilations, window.pads)] + [(0, 0, 0)]
    flipped = jnp.swapaxes(jnp.flip(kernel, (0, 1)), 2, 3)
    dx = _broadcast_taps(jax.lax.pad(dy, zero, widths), flipped, in_sizes, (1, 1),
                         window.dilations)
    return dx, _broadcast_taps_kernel_grad(xp, dy, kernel, valid)


def _broadcast_taps_kernel_grad(xp, dy, kernel, valid: _Window):
    """The kernel gradient of the unpadded conv ``valid`` of padded ``xp``: stacked taps'
    products over one input channel (measured faster there), patches times the cotangent
    (:func:`_patches_kernel_grad`), else XLA's backprop-filter convolution."""
    if kernel.shape[2] <= MAX_STACKED_CHANNELS and _static(dy.shape[1:3]):
        return _stacked_taps_kernel_grad(xp, dy, kernel.shape, valid)
    if _takes_patches_kernel_grad(kernel.shape) and _static(dy.shape[1:3]):
        return _patches_kernel_grad(xp, dy, kernel.shape, valid)
    return _unpadded_conv2d_vjp(xp, kernel, valid, dy)[1]


#: Kernels with at most this many taps and input channels, and at least this many output
#: channels, take :func:`_patches_kernel_grad`.
MAX_PATCHES_GRAD_TAPS = 9
MAX_PATCHES_GRAD_CHANNELS = 32
MIN_PATCHES_GRAD_OUTPUTS = 16


def _takes_patches_kernel_grad(kernel_shape) -> bool:
    """Whether a (2-D, HWIO) kernel's gradient is :func:`_patches_kernel_grad`: at most
    :data:`MAX_PATCHES_GRAD_TAPS` taps over at most :data:`MAX_PATCHES_GRAD_CHANNELS` input
    channels, to at least :data:`MIN_PATCHES_GRAD_OUTPUTS` (RGB stems and the narrow 3x3
    convs of small detectors).

    Measured at batch 32 (kernel gradient alone, ms, XLA's / patches; ``benchmarks/
    PROFILE.md`` section 18): 3x3 32 -> 64 on 23x23 16.6 / 7.9, 3x3 3 -> 32 on 48x48 4.1 /
    2.3, 3x3/2 3 -> 32 on 225x225 105 / 57, 1x3 8 -> 16 on 10x66 0.89 / 0.67. The others
    lose or tie: few outputs (1x3 4 -> 4 on 40x258 13.9 / 16.4, 1x5 4 -> 8 1.7 / 2.7), wider
    inputs (3x3 64 -> 64 on 10x10 1.6 / 3.2, on 30x30 73 / 73), longer kernels (1x11 32 ->
    32 over 10,140 steps, dilated: 385 / 744).
    """
    kh, kw, in_channels, out_channels = kernel_shape
    return (kh * kw <= MAX_PATCHES_GRAD_TAPS and in_channels <= MAX_PATCHES_GRAD_CHANNELS
            and out_channels >= MIN_PATCHES_GRAD_OUTPUTS)


def _patches_kernel_grad(xp, dy, kernel_shape, valid: _Window):
    """The kernel gradient of the unpadded conv ``valid`` of padded ``xp`` (NHWC, static
    sizes) as one matrix product: the patches (``[N*H*W, taps * C]``) times the flattened
    cotangent.

    XLA:CPU's kernel gradient is a convolution with batch and channels swapped, and the
    whole output as its window; on small maps with few channels it runs 2-3 times below
    the product's speed (whose patches copy as many elements as the taps times the input).
    """
    kh, kw, in_channels, out_channels = kernel_shape
    patches = _tap_patches(xp, (kh, kw), dy.shape[1:3], valid.strides, valid.dilations)
    dkernel = jax.lax.dot_general(patches.reshape(-1, kh * kw * in_channels),
                                  dy.reshape(-1, out_channels), (((0,), (0,)), ((), ())))
    return dkernel.reshape(kernel_shape)


def _unpadded_conv2d_vjp(xp, kernel, valid: _Window, dy):
    """``(dxp, dkernel)`` of the unpadded 2-D conv ``valid`` of ``xp``: XLA's transpose,
    or with symbolic sizes :func:`_symbolic_conv`'s (JAX's refuses them)."""
    if _static(xp.shape[1:3]):
        def conv(xp, kernel):
            return _lax_conv2d(xp, kernel, valid)
    else:
        def conv(xp, kernel):
            return _symbolic_conv(xp, kernel, _ConvDims("NHWC", valid.strides, valid.dilations))
    return jax.vjp(conv, xp, kernel)[1](dy)


_broadcast_taps_conv.defvjp(_broadcast_taps_fwd, _broadcast_taps_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _tap_gradient_conv(x, kernel, window: _Window):
    """A 2-D convolution (NHWC) over one input channel as ``lax.conv_general_dilated``,
    with its kernel gradient written out as one matrix product of the taps' input slices
    with the cotangent.

    Autodiff's kernel gradient is a convolution with batch and channel axes swapped and
    the whole output as its window. With one input channel (audio front ends: 7×38 and
    128×1 kernels over a mel spectrogram) XLA:CPU runs that form 3 to 7 times slower
    than these products (seconds per layer at batch 32). Each tap's strided slice of the
    padded input, channels first, is copied out contiguously and stacked along a new
    leading axis: ``[taps * C, N*H*W]`` times the flattened cotangent is a plain matrix
    product (see :data:`MAX_TAP_STACK` for its memory).
    """
    return _tap_gradient_fwd(x, kernel, window)[0]


def _lax_conv2d(x, kernel, window: _Window):
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=window.strides, padding=window.pads,
        rhs_dilation=window.dilations, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _tap_gradient_fwd(x, kernel, window: _Window):
    return _lax_conv2d(x, kernel, window), (x, kernel)


#: Convs with at most this many input channels take :func:`_tap_gradient_conv`'s kernel
#: gradient. Measured at batch 32 (kernel gradient alone, ms, autodiff's / stacked taps):
#: one channel 3×3 -> 128 on 187×96 156 / 44, 128×1 -> 51 923 / 307, 7×38 -> 204
#: 1957 / 752; three channels (image stems) 3×3 -> 32 37 / 47, 7×7/2 -> 64 212 / 240;
#: 128 channels 3×3 -> 128 about even, and the copies cost memory.
MAX_STACKED_CHANNELS = 1

#: The kernel gradient's stacked slices hold at most this many elements at a time (or
#: one tap's slice, if larger): taps beyond it form further groups, one product each.
MAX_TAP_STACK = 1 << 26


def _tap_gradient_bwd(window: _Window, residuals, dy):
    x, kernel = residuals
    if _projects_input_grad(kernel, window):
        dx = _projected_input_grad(dy, kernel, window)
    else:
        dx = jax.vjp(lambda x: _lax_conv2d(x, kernel, window), x)[1](dy)[0]
    return dx, _stacked_taps_kernel_grad(_pad_spatial(x, window.pads), dy, kernel.shape,
                                         window)


def _stacked_taps_kernel_grad(xp, dy, kernel_shape, window: _Window):
    """The kernel gradient of a conv of padded ``xp`` (NHWC) as one matrix product of the
    taps' input slices, stacked, with the cotangent ``dy`` (in groups of at most
    :data:`MAX_TAP_STACK` elements); see :func:`_tap_gradient_conv`."""
    kh, kw, in_channels, out_channels = kernel_shape
    (s0, s1), (d0, d1) = window.strides, window.dilations
    out_h, out_w = dy.shape[1:3]
    rows = dy.reshape(-1, out_channels)
    # Kernel rows per group: the group's stack holds rows x kw slices of dy's size.
    per_group = max(1, MAX_TAP_STACK // int(kw * out_h * out_w * in_channels *
                                            _known_size(dy.shape[0])))
    parts = []
    for start in range(0, kh, per_group):
        # Cut one axis at a time (kh + kw slices, not kh * kw: a 7x38 kernel's 266 slices
        # took seconds to compile), each stacked along a new leading axis: contiguous
        # copies (a stack along the channel axis interleaves narrow pieces, several times
        # slower). Channels then go before the positions, so that the product's operand
        # ``[taps * C, N*H*W]`` needs no transpose (one channel: no move at all).
        stack = jnp.stack([jax.lax.slice_in_dim(xp, i * d0, i * d0 + (out_h - 1) * s0 + 1,
                                                s0, 1)
                           for i in range(start, min(kh, start + per_group))])
        stack = jnp.stack([jax.lax.slice_in_dim(stack, j * d1, j * d1 + (out_w - 1) * s1 + 1,
                                                s1, 3) for j in range(kw)], axis=1)
        stack = jnp.moveaxis(stack, -1, 2)  # [rows, kw, C, N, out_h, out_w]
        parts.append(jax.lax.dot_general(stack.reshape(-1, rows.shape[0]), rows,
                                         (((1,), (0,)), ((), ()))))
    dkernel = parts[0] if len(parts) == 1 else jnp.concatenate(parts)  # [taps * in, out]
    return dkernel.reshape(kernel_shape)


_tap_gradient_conv.defvjp(_tap_gradient_fwd, _tap_gradient_bwd)

#: The input gradient of a one-channel conv is a tap projection when its product (one
#: column per tap) is at most this many times as wide as the cotangent and has at most
#: :data:`MAX_PROJECTED_TAPS` columns (the program has one slice per tap).
MAX_PROJECTION_WIDENING = 4
MAX_PROJECTED_TAPS = 128


def _projects_input_grad(kernel, window: _Window) -> bool:
    """Whether :func:`_projected_input_grad` applies: stride 1, paddings within the
    (dilated) window, and a product of bounded width."""
    kh, kw, in_channels, out_channels = kernel.shape
    reach = [(k - 1) * d for k, d in zip((kh, kw), window.dilations)]
    return (window.strides == (1, 1) and kh * kw <= MAX_PROJECTED_TAPS
            and kh * kw * in_channels <= MAX_PROJECTION_WIDENING * out_channels
            and all(0 <= lo <= r and 0 <= hi <= r for r, (lo, hi) in zip(reach, window.pads)))


def _projected_input_grad(dy, kernel, window: _Window):
    """The input gradient of a stride-1 conv over few input channels, as the forward conv
    of ``dy`` with the flipped, transposed kernel run as :func:`_tap_projection_conv` does
    (one product, then shifted sums).

    It is a convolution with few output channels, which XLA:CPU runs 2 to 2.5 times
    slower (128×1, 51 -> 1 channel on 187×96 at batch 32: 1140 against 562 ms).
    """
    kh, kw = kernel.shape[:2]
    reach = [(k - 1) * d for k, d in zip((kh, kw), window.dilations)]
    pads = tuple((r - lo, r - hi) for r, (lo, hi) in zip(reach, window.pads))
    flipped = jnp.swapaxes(jnp.flip(kernel, (0, 1)), 2, 3)
    return _tap_projection_fwd(dy, flipped, _Window((1, 1), window.dilations, pads))[0]


def _known_size(n) -> int:
    """A size for budgets: ``n``, or 32 where it is symbolic (a batch size)."""
    return int(n) if isinstance(n, (int, np.integer)) else 32


def _pointwise(x, kernel, strides):
    """A 1×1 convolution (channels last) as one matrix product over channels."""
    # Strided slices, not indexing: under a symbolic batch size jnp indexing becomes a gather.
    for axis, s in enumerate(strides, start=1):
        if s != 1:
            x = jax.lax.slice_in_dim(x, 0, x.shape[axis], s, axis)
    return _channel_matmul(x, kernel.reshape(kernel.shape[-2:]))


@jax.custom_vjp
def _channel_matmul(x, matrix):
    """``x @ matrix`` over the last axis of ``x``, whatever its leading axes."""
    return jax.lax.dot_general(x, matrix, (((x.ndim - 1,), (0,)), ((), ())))


def _channel_matmul_fwd(x, matrix):
    return _channel_matmul(x, matrix), (x, matrix)


def _channel_matmul_bwd(residuals, dy):
    x, matrix = residuals
    dx = jax.lax.dot_general(dy, matrix, (((dy.ndim - 1,), (1,)), ((), ())))
    # The matrix gradient as one 2-D product over the flattened leading axes: autodiff
    # contracts the three axes of [N, H, W, C] at once, for which XLA:CPU transposes the
    # cotangent and runs a generic dot (16 -> 96 channels on 32x48x48: 30 ms, now 6 ms).
    dm = jax.lax.dot_general(x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1]),
                             (((0,), (0,)), ((), ())))
    return dx, dm


_channel_matmul.defvjp(_channel_matmul_fwd, _channel_matmul_bwd)


def _depthwise(node, x, kernel):
    """``DepthwiseConv2dNative``: kernel ``[kh, kw, channels, multiplier]``."""
    x, kernel = as_jax(x), as_jax(kernel)
    layout, strides, dilations, pads = _conv_geometry(node, x, kernel)
    kh, kw, channels, multiplier = kernel.shape
    if not _static(_spatial_shape(layout, x.shape)):
        return _symbolic_sized_conv(x, kernel.reshape(kh, kw, 1, channels * multiplier),
                                    layout, strides, dilations, pads, channels)
    if _channels_last(layout) and kh * kw <= MAX_SHIFTED_TAPS:
        return _shifted_depthwise(x, kernel, strides, dilations, pads)
    return jax.lax.conv_general_dilated(
        x, kernel.reshape(kh, kw, 1, channels * multiplier), window_strides=strides,
        padding=pads, rhs_dilation=dilations, dimension_numbers=(layout, "HWIO", layout),
        feature_group_count=channels)


def _shifted_depthwise(x, kernel, strides, dilations, pads):
    """A depthwise convolution (NHWC) as one multiply-add per kernel tap."""
    kh, kw, channels, multiplier = kernel.shape
    if multiplier > 1:
        # Output channel c * multiplier + m reads input channel c, as in TF.
        x = jnp.repeat(x, multiplier, axis=-1)
    taps = kernel.reshape(kh, kw, channels * multiplier)
    window = _window(strides, dilations, pads)
    return _depthwise_taps(x, taps, window)


class _Window(NamedTuple):
    """The static geometry of a 2-D (or depthwise) convolution over its two spatial axes."""

    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _depthwise_taps(x, taps, window: _Window):
    """``sum over taps (i, j) of x_padded[:, i*d + s*h, j*d + s*w, :] * taps[i, j]``.

    Its VJP is written out: autodiff of the slices would transpose each tap into a
    full-size ``pad`` of the cotangent, and the kernel gradient into one reduction per tap.
    """
    return _depthwise_taps_fwd(x, taps, window)[0]


def _depthwise_taps_fwd(x, taps, window: _Window):
    xp = _pad_spatial(x, window.pads)
    out = _out_sizes(xp.shape[1:3], taps.shape[:2], window.strides, window.dilations)
    return _sum_of_taps(xp, taps, out, window.strides, window.dilations), (xp, taps)


def _depthwise_taps_bwd(window: _Window, residuals, dy):
    xp, taps = residuals
    in_sizes = [n - lo - hi for n, (lo, hi) in zip(xp.shape[1:3], window.pads)]
    return (_depthwise_input_grad(dy, taps, in_sizes, window),
            _depthwise_kernel_grad(xp, dy, taps.shape, window).astype(taps.dtype))


_depthwise_taps.defvjp(_depthwise_taps_fwd, _depthwise_taps_bwd)


def _sum_of_taps(xp, taps, out_sizes, strides, dilations):
    """One fused pass: each kernel tap multiplies a shifted, strided slice of ``xp``."""
    kh, kw, _ = taps.shape
    out = None
    for i in range(kh):
        for j in range(kw):
            patch = _strided(xp, (i * dilations[0], j * dilations[1]), out_sizes, strides)
            term = patch * taps[i, j]
            out = term if out is None else out + term
    return out


def _depthwise_input_grad(dy, taps, in_sizes, window: _Window):
    """The input gradient: shifted multiply-adds over ONE padded cotangent, per phase.

    Input row ``q + s*a`` (phase ``q`` of stride ``s``) receives ``dy[a + offset] * tap``
    from exactly the taps whose offset ``(q + lo - i*d) / s`` is whole. So each of the
    ``s0 * s1`` phases is a sum of contiguous slices of ``dy`` (padded once), and the
    phases interleave into the input's grid in the same fused loop: no per-tap transposes,
    and no work on the zeros that dilating ``dy`` by the strides would add.
    """
    kh, kw, channels = taps.shape
    plans = [_phase_plan(k, s, d, lo, n, o) for k, s, d, (lo, _), n, o in zip(
        (kh, kw), window.strides, window.dilations, window.pads, in_sizes, dy.shape[1:3])]
    (count0, pads0, phases0), (count1, pads1, phases1) = plans
    dyp = _pad_spatial(dy, (pads0, pads1))
    grid = []
    for taps0 in phases0:
        row = []
        for taps1 in phases1:
            total = None
            for i, start0 in taps0:
                for j, start1 in taps1:
                    term = _strided(dyp, (start0, start1), (count0, count1), (1, 1)) * taps[i, j]
                    total = term if total is None else total + term
            if total is None:  # no tap reaches this phase
                total = jnp.zeros((dy.shape[0], count0, count1, channels), dy.dtype)
            row.append(total)
        grid.append(row)
    dx = _interleave(grid)
    return _strided(dx, (0, 0), in_sizes, (1, 1))


def _phase_plan(k: int, s: int, d: int, lo: int, size: int, out_size: int):
    """Along one axis: rows per phase, the cotangent's padding, and per phase the
    ``(tap, start)`` pairs that read the padded cotangent from ``start``."""
    count = -(-size // s)
    phases = [[(i, (q + lo - i * d) // s) for i in range(k) if (q + lo - i * d) % s == 0]
              for q in range(s)]
    offsets = [offset for taps in phases for _, offset in taps] or [0]
    low = max(0, -min(offsets))
    high = max(0, count - 1 + max(offsets) - (out_size - 1))
    return count, (low, high), [[(i, offset + low) for i, offset in taps] for taps in phases]


def _interleave(grid):
    """``grid[q0][q1]`` of shape ``[N, A, B, C]`` -> ``[N, A*s0, B*s1, C]``, row
    ``q0 + s0*a`` from phase ``q0``: each phase spread out by an interior ``pad``, all
    added up in one fused loop."""
    s0, s1 = len(grid), len(grid[0])
    if s0 == 1 and s1 == 1:
        return grid[0][0]
    zero = np.zeros((), grid[0][0].dtype)
    total = None
    for q0, row in enumerate(grid):
        for q1, phase in enumerate(row):
            spread = jax.lax.pad(phase, zero, [(0, 0, 0), (q0, s0 - 1 - q0, s0 - 1),
                                               (q1, s1 - 1 - q1, s1 - 1), (0, 0, 0)])
            total = spread if total is None else total + spread
    return total


#: Output rows that one pass of the kernel gradient sums per tap (see below), as a budget
#: of taps x rows: the pass is a single loop fusion of that many multiply-adds.
_KERNEL_GRAD_UNROLL = 288


def _depthwise_kernel_grad(xp, dy, taps_shape, window: _Window):
    """The kernel gradient ``sum over n, h, w of xp[tap's slice] * dy`` for every tap.

    A reduction per tap of the product would have XLA:CPU copy each shifted slice out
    before reducing it. Instead, per tap, one fused loop adds up ``rows`` output rows
    spaced ``rows`` apart (a ``[N, out_h / rows, out_w, C]`` partial sum), and one plain
    reduction of all taps' partial sums, stacked, finishes the sum. ``rows`` divides
    ``out_h`` where a divisor near the budget exists; otherwise the output rows left over
    form a second, smaller stack.
    """
    kh, kw, channels = taps_shape
    out_h = dy.shape[1]
    rows = _rows_per_pass(out_h, _KERNEL_GRAD_UNROLL // (kh * kw))
    groups, left = divmod(out_h, rows)
    total = _tap_products(xp, dy, (kh, kw), range(rows), rows, groups, window)
    if left:
        rest = _tap_products(xp, dy, (kh, kw), range(groups * rows, out_h), out_h, 1, window)
        total = total + rest
    return total.reshape(kh, kw, channels)


def _rows_per_pass(out_h: int, budget: int) -> int:
    """At most ``budget`` rows (at least one): the largest divisor of ``out_h`` when it
    is more than half of that, so that no rows are left over."""
    most = max(1, min(out_h, budget))
    divisor = next(r for r in range(most, 0, -1) if out_h % r == 0)
    return divisor if 2 * divisor > most else most


def _tap_products(xp, dy, window_shape, first_rows, rows, groups, window: _Window):
    """``[taps, C]``: per tap, ``xp``'s slice times ``dy`` summed over output rows
    ``first + rows * g`` (``g < groups``, ``first`` in ``first_rows``), batch and columns.

    Each distinct slice is taken once: ``dy``'s rows are the same for every tap, and
    with stride 1 tap row ``i`` of output row ``r`` is tap row ``i + 1`` of row ``r - 1``.
    Under a symbolic batch every slice lowers to a dynamic slice and its shape
    arithmetic, so repeating them made a 3x3 kernel's gradient ~900 slices, not ~130.
    """
    (s0, s1), (d0, d1) = window.strides, window.dilations
    out_w = dy.shape[2]
    dy_rows = {r: _strided(dy, (r, 0), (groups, out_w), (rows, 1)) for r in first_rows}
    patches: dict[tuple[int, int], jax.Array] = {}
    sums = []
    for i in range(window_shape[0]):
        for j in range(window_shape[1]):
            total = None
            for r in first_rows:
                start = (r * s0 + i * d0, j * d1)
                if start not in patches:
                    patches[start] = _strided(xp, start, (groups, out_w), (rows * s0, s1))
                term = patches[start] * dy_rows[r]
                total = term if total is None else total + term
            sums.append(total)
    return jnp.sum(jnp.stack(sums, axis=3), axis=(0, 1, 2))


#: ``use_cudnn_on_gpu`` picks a kernel, not a result.
_CONV_ATTRS = ("strides", "padding", "explicit_paddings", "data_format", "dilations",
               "use_cudnn_on_gpu")

_FORWARD = {
    "Conv2D": _conv,
    "Conv3D": _conv,
    "DepthwiseConv2dNative": _depthwise,
}

_BACKPROP_INPUT = {
    "Conv2DBackpropInput": _conv,
    "Conv3DBackpropInputV2": _conv,
    "DepthwiseConv2dNativeBackpropInput": _depthwise,
}


@register(*_FORWARD, attrs=_CONV_ATTRS)
def _forward(node, x, kernel):
    return _FORWARD[node.op](node, x, kernel)


@register(*_BACKPROP_INPUT, attrs=_CONV_ATTRS)
def _backprop_input(node, input_sizes, kernel, out_backprop):
    """A transposed convolution: the input gradient of the forward op with these attrs."""
    forward = _BACKPROP_INPUT[node.op]
    dy = as_jax(out_backprop)
    zeros = jnp.zeros(shape_tuple(input_sizes), dy.dtype)
    _, vjp = jax.vjp(lambda x: forward(node, x, kernel), zeros)
    return vjp(dy)[0]


# -- pooling --------------------------------------------------------------------------------


#: Windows and strides span every axis in the layout's order, so any layout works;
#: ``EXPLICIT`` padding (and so ``explicit_paddings``) is not implemented for pools.
_POOL_LAYOUT = {"data_format": None, "padding": ("SAME", "VALID")}
_POOL_ATTRS = {"ksize": None, "strides": None, **_POOL_LAYOUT}


def _pool_window(node, x, window=None, strides=None):
    window = tuple(int(k) for k in (node.attr("ksize") if window is None else window))
    strides = tuple(int(s) for s in (node.attr("strides") if strides is None else strides))
    pads = list(jax.lax.padtype_to_pads(x.shape, window, strides, node.attr("padding")))
    return window, strides, pads


def _max_pool(node, x, window=None, strides=None):
    x = as_jax(x)
    window, strides, pads = _pool_window(node, x, window, strides)
    if not _static(x.shape[1:]):
        # Symbolic sizes: the shifted slices' bounds cannot be compared, and the padding
        # may depend on them, which ``reduce_window`` does not take but ``lax.pad`` does.
        x = _pad_axes(x, pads, _lowest(x.dtype))
        return jax.lax.reduce_window(x, _lowest(x.dtype), jax.lax.max, window, strides,
                                     "VALID")
    pads = tuple(tuple(p) for p in pads)
    if max(window) <= MAX_SHIFTED_TAPS:
        if _spatial_2d(x, window, strides):
            return _shifted_max_2d(x, window, strides, pads)
        if node.op == "MaxPool3D":
            return _shifted_max_3d(x, window, strides, pads)
        return _shifted_max(x, window, strides, pads)
    if all(k <= s for k, s in zip(window, strides)):
        return _tiled_max(x, window, strides, pads)
    return jax.lax.reduce_window(x, _lowest(x.dtype), jax.lax.max, window, strides, pads)


def _spatial_2d(x, window, strides) -> bool:
    """Whether a pool of 4-D ``x`` spans only axes 1 and 2 (NHWC's height and width)."""
    return x.ndim == 4 and window[0] == window[3] == strides[0] == strides[3] == 1


def _lowest(dtype) -> np.ndarray:
    """The identity of ``max`` for ``dtype``, as a concrete value.

    A concrete (numpy) init value also lets JAX see the max monoid in ``reduce_window``,
    which it differentiates.
    """
    if jnp.issubdtype(dtype, jnp.integer):
        return np.asarray(jnp.iinfo(dtype).min, dtype)
    return np.asarray(-np.inf, dtype)


def _pad_axes(x, pads, value):
    if not any(lo or hi for lo, hi in pads):
        return x
    return jax.lax.pad(x, np.asarray(value, x.dtype), [(lo, hi, 0) for lo, hi in pads])


def _tap(x, offsets, counts, strides):
    """The strided slice of (padded) ``x`` that window offset ``offsets`` reads."""
    for axis, (o, n, s) in enumerate(zip(offsets, counts, strides)):
        if n != x.shape[axis] or o or s != 1:
            x = jax.lax.slice_in_dim(x, o, o + (n - 1) * s + 1, s, axis)
    return x


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _shifted_max(x, window, strides, pads):
    """Max pooling as shifted, strided slices combined with ``maximum``, axis by axis.

    Max is separable, so a k×k window costs 2k comparisons per output; XLA:CPU runs that
    several times faster than ``reduce_window``.
    """
    x = _pad_axes(x, pads, _lowest(x.dtype))
    for axis, (k, s) in enumerate(zip(window, strides)):
        if k == 1 and s == 1:
            continue
        count = (x.shape[axis] - k) // s + 1
        out = None
        for i in range(k):
            part = jax.lax.slice_in_dim(x, i, i + (count - 1) * s + 1, s, axis)
            out = part if out is None else jnp.maximum(out, part)
        x = out
    return x


@_shifted_max.defjvp
def _shifted_max_jvp(window, strides, pads, primals, tangents):
    # As TF's MaxPoolGrad: each output's gradient goes to the first maximum of its window
    # (in row-major window order), not split between ties as jnp.maximum would.
    (x,), (tx,) = primals, tangents
    out = _shifted_max(x, window, strides, pads)
    xp = _pad_axes(x, pads, _lowest(x.dtype))
    tp = _pad_axes(tx, pads, 0)
    taken = jnp.zeros(out.shape, bool)
    t_out = jnp.zeros(out.shape, tx.dtype)
    for offsets in itertools.product(*(range(k) for k in window)):
        hit = (_tap(xp, offsets, out.shape, strides) == out) & ~taken
        taken = taken | hit
        t_out = t_out + jnp.where(hit, _tap(tp, offsets, out.shape, strides), 0)
    return out, t_out


#: TF's MaxPool3DGrad (its CPU kernel) gives a window's gradient to every input within
#: this (absolute) of the window's maximum, ties and near ties alike, where MaxPoolGrad
#: gives it to the first maximum only.
MAX_POOL_3D_GRAD_NEAR = 1e-5


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _shifted_max_3d(x, window, strides, pads):
    """:func:`_shifted_max` differentiated as TF's MaxPool3DGrad (see
    :data:`MAX_POOL_3D_GRAD_NEAR`): a 3D U-Net's pools over flat image regions tie."""
    return _shifted_max(x, window, strides, pads)


@_shifted_max_3d.defjvp
def _shifted_max_3d_jvp(window, strides, pads, primals, tangents):
    (x,), (tx,) = primals, tangents
    out = _shifted_max(x, window, strides, pads)
    xp = _pad_axes(x, pads, _lowest(x.dtype))
    tp = _pad_axes(tx, pads, 0)
    near = np.asarray(MAX_POOL_3D_GRAD_NEAR, x.dtype)
    t_out = jnp.zeros(out.shape, tx.dtype)
    for offsets in itertools.product(*(range(k) for k in window)):
        hit = jnp.abs(_tap(xp, offsets, out.shape, strides) - out) < near
        t_out = t_out + jnp.where(hit, _tap(tp, offsets, out.shape, strides), 0)
    return out, t_out


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _shifted_max_2d(x, window, strides, pads):
    """:func:`_shifted_max` over NHWC's height and width, with a written-out VJP.

    Autodiff of :func:`_shifted_max`'s JVP transposes every tap's slice into a ``pad`` of
    the cotangent to the input's full size (nine for a 3×3 pool, each as costly as the
    pool), then adds them up. Here the index of each window's winning tap is kept, and
    the input gradient is summed at the input's resolution from the cotangent where that
    tap won (:func:`_winners_gradient`).
    """
    return _shifted_max(x, window, strides, pads)


def _shifted_max_2d_fwd(x, window, strides, pads):
    out = _shifted_max(x, window, strides, pads)
    return out, (x, out)


def _shifted_max_2d_bwd(window, strides, pads, residuals, dy):
    x, out = residuals
    kh, kw = window[1:3]
    xp = _pad_axes(x, pads, _lowest(x.dtype))
    # As TF's MaxPoolGrad: each output's gradient goes to the first maximum of its window
    # (in row-major window order). Taps in reverse, so the first hit is written last.
    winner = jnp.full(out.shape, -1, np.int32)
    for tap in reversed(range(kh * kw)):
        hit = _tap(xp, (0, *divmod(tap, kw), 0), out.shape, strides) == out
        winner = jnp.where(hit, np.int32(tap), winner)
    return (_winners_gradient(winner, dy, (kh, kw), strides[1:3], pads[1:3], x.shape[1:3]),)


def _winners_gradient(winner, dy, window, strides, pads, in_sizes):
    """The input gradient of a 2-D max pool (NHWC) whose windows' winning taps are
    ``winner`` (-1 for none), at the input's resolution in one fused loop.

    Padded input row ``u`` is tap ``u % s + s*t`` of window ``u // s - t``, for each ``t <
    ceil(k / s)``. So each such shift of the cotangent and the winners, repeated ``s``
    times along the axis (a broadcast and a reshape), gives every input row its terms
    directly. (Summed per stride phase, then interleaved by interior pads, XLA:CPU wrote
    every phase out at the input's size first: 3x3/2 over [32, 46, 46, 32] took 7-15 ms
    against 2-3 ms; ``benchmarks/PROFILE.md`` section 18.)
    """
    shifts = [-(-k // s) for k, s in zip(window, strides)]
    widths = [(0, 0)] + [(t - 1, t) for t in shifts] + [(0, 0)]
    winner = jnp.pad(winner, widths, constant_values=-1)
    dy = jnp.pad(dy, widths)
    counts = [n - t + 1 for n, t in zip(dy.shape[1:3], shifts)]  # rows each shift reads
    # The tap index of each padded input row and column within its window's stride phase.
    phase0 = _phases((1, counts[0] * strides[0], 1, 1), 1, strides[0])
    phase1 = _phases((1, 1, counts[1] * strides[1], 1), 2, strides[1])
    total = None
    for t0, t1 in itertools.product(range(shifts[0]), range(shifts[1])):
        i, j = phase0 + strides[0] * t0, phase1 + strides[1] * t1
        start = (shifts[0] - 1 - t0, shifts[1] - 1 - t1)
        won = _repeated(_strided(winner, start, counts, (1, 1)), strides) == i * window[1] + j
        term = jnp.where(won & (i < window[0]) & (j < window[1]),
                         _repeated(_strided(dy, start, counts, (1, 1)), strides), 0)
        total = term if total is None else total + term
    # Padded row u is input row u - lo; rows past the last window's reach got no terms.
    return _strided(total, [lo for lo, _ in pads], in_sizes, (1, 1))


def _phases(shape, axis: int, stride: int):
    return jax.lax.broadcasted_iota(np.int32, shape, axis) % np.int32(stride)


def _repeated(x, strides):
    """``x`` (NHWC) with each row and column repeated ``strides`` times."""
    n, h, w, c = x.shape
    s0, s1 = strides
    x = jax.lax.broadcast_in_dim(x, (n, h, s0, w, s1, c), (0, 1, 3, 5))
    return x.reshape(n, h * s0, w * s1, c)


_shifted_max_2d.defvjp(_shifted_max_2d_fwd, _shifted_max_2d_bwd)


def _tiles(x, window, strides, pads, fill):
    """``x`` padded with ``fill``, each axis cut into ``[windows, window]``: ``y[.., o, i,
    ..] = x[.., o*s + i, ..]``, for windows that do not overlap (``k <= s``), as a reshape
    into rows of ``s`` cut to their first ``k`` cells. Unpooled axes get a window axis of 1.
    """
    x = _pad_axes(x, pads, fill)
    shape = []
    for axis, (n, k, s) in enumerate(zip(x.shape, window, strides)):
        if k == 1 and s == 1:  # not pooled (the batch, whose size may be symbolic)
            shape += [n, 1]
            continue
        count = (n - k) // s + 1
        # Rows of s cells; the last window's row may end past the input by s - k cells.
        x = jax.lax.slice_in_dim(x, 0, min(n, count * s), 1, axis)
        if x.shape[axis] < count * s:
            x = _pad_axes(x, [(0, count * s - x.shape[axis]) if a == axis else (0, 0)
                              for a in range(x.ndim)], fill)
        shape += [count, s]
    x = x.reshape(shape)
    for axis, k in enumerate(window):
        x = jax.lax.slice_in_dim(x, 0, k, 1, 2 * axis + 1)
    return x


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _tiled_max(x, window, strides, pads):
    """Max pooling with large windows that do not overlap (a pool over a whole axis, as
    audio models pool frequency): a reshape into windows and one ``max`` reduction.

    ``reduce_window``'s gradient is a ``select_and_scatter``, which XLA:CPU expands into
    a variadic ``reduce_window`` carrying each maximum's coordinates and a ``scatter``:
    seconds per pool at batch 32, where this gradient is a few elementwise passes.
    """
    tiles = _tiles(x, window, strides, pads, _lowest(x.dtype))
    return jnp.max(tiles, axis=tuple(range(1, 2 * x.ndim, 2)))


@_tiled_max.defjvp
def _tiled_max_jvp(window, strides, pads, primals, tangents):
    # As TF's MaxPoolGrad: each output's gradient goes to the first maximum of its window
    # in row-major window order, found as the smallest window position holding the max.
    (x,), (tx,) = primals, tangents
    out = _tiled_max(x, window, strides, pads)
    tiles = _tiles(x, window, strides, pads, _lowest(x.dtype))
    window_axes = tuple(range(1, 2 * x.ndim, 2))
    position = sum(jax.lax.broadcasted_iota(np.int32, tiles.shape, axis) * int(np.prod(
        window[i + 1:])) for i, axis in enumerate(window_axes))
    at_max = tiles == jnp.expand_dims(out, window_axes)
    first = jnp.min(jnp.where(at_max, position, np.int32(np.prod(window))), axis=window_axes,
                    keepdims=True)
    t_tiles = _tiles(tx, window, strides, pads, 0)
    return out, jnp.sum(jnp.where(position == first, t_tiles, 0), axis=window_axes)


@register("MaxPool", "MaxPool3D", attrs={**_POOL_ATTRS, "explicit_paddings": None})
def _max_pool_op(node, x):
    return _max_pool(node, x)


@register("MaxPoolV2", attrs=_POOL_LAYOUT)
def _max_pool_v2(node, x, ksize, strides):
    return _max_pool(node, x, np.asarray(ksize), np.asarray(strides))


@register("AvgPool", "AvgPool3D", attrs=_POOL_ATTRS)
def _avg_pool(node, x):
    x = as_jax(x)
    window, strides, pads = _pool_window(node, x)
    if not _static(x.shape[1:]):
        return _symbolic_avg_pool(x, window, strides, pads)
    if max(window) <= MAX_SHIFTED_TAPS:
        total = _shifted_window_sum(x, window, strides, pads)
    else:
        total = jax.lax.reduce_window(x, np.asarray(0, x.dtype), jax.lax.add, window,
                                      strides, pads)
    # TF averages over the cells inside the input only; the counts depend on shapes alone.
    return total / _window_counts(x.shape, window, strides, pads).astype(x.dtype)


def _symbolic_avg_pool(x, window, strides, pads):
    """Average pooling with symbolic sizes, as max pooling does it: ``lax.pad`` then a
    ``VALID`` window sum. The per-window counts, which depend on the sizes, are the same
    window sums of a ones-array shaped like ``x`` where pooling happens (1 elsewhere)."""
    def window_sum(a):
        a = _pad_axes(a, pads, 0)
        return jax.lax.reduce_window(a, np.asarray(0, a.dtype), jax.lax.add, window,
                                     strides, "VALID")

    ones = jnp.ones([n if k > 1 or lo or hi else 1
                     for n, k, (lo, hi) in zip(x.shape, window, pads)], x.dtype)
    return window_sum(x) / window_sum(ones)


def _shifted_window_sum(x, window, strides, pads):
    """Window sums as shifted, strided slices added up, one axis at a time.

    Sums are separable, so a k×k window costs 2k additions per output instead of a
    generic ``reduce_window`` loop, which XLA:CPU runs slowly.
    """
    for axis, (k, s, (lo, hi)) in enumerate(zip(window, strides, pads)):
        if k == 1 and s == 1 and lo == 0 and hi == 0:
            continue
        if lo or hi:
            widths = [(0, 0)] * x.ndim
            widths[axis] = (lo, hi)
            x = jnp.pad(x, widths)
        count = (x.shape[axis] - k) // s + 1
        total = None
        for i in range(k):
            part = jax.lax.slice_in_dim(x, i, i + (count - 1) * s + 1, s, axis)
            total = part if total is None else total + part
        x = total
    return x


def _window_counts(shape, window, strides, pads) -> np.ndarray:
    """How many input cells each pooling window covers, broadcastable to the output."""
    counts = np.ones((), np.int64)
    for axis, (n, k, s, (lo, hi)) in enumerate(zip(shape, window, strides, pads)):
        if k == 1 and lo == 0 and hi == 0:
            continue
        out = (int(n) + lo + hi - k) // s + 1
        starts = np.arange(out) * s - lo
        along = np.minimum(starts + k, int(n)) - np.maximum(starts, 0)
        counts = counts * along.reshape((-1,) + (1,) * (len(shape) - axis - 1))
    return counts.reshape((1,) * (len(shape) - counts.ndim) + counts.shape)

