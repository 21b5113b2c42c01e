"""Conformance of convolutions and pooling against TF, on every lowering path."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.converters.from_tf.ops._conformance import Case, check, distinct, params

_TOL = {"rtol": 1e-4, "atol": 1e-4}


def _conv2d(strides=1, padding="SAME", dilations=1):
    return lambda x, k: tf.nn.conv2d(x, k, strides, padding, dilations=dilations)


def _undilated(k: tf.Tensor, rate: int) -> tf.Tensor:
    """``k`` with ``rate - 1`` zeros between its taps: the dense kernel a dilated one is."""
    kh, kw, c_in, c_out = k.shape
    taps = tf.pad(k[:, None, :, None], [[0, 0], [0, rate - 1], [0, 0], [0, rate - 1],
                                        [0, 0], [0, 0]])
    dense = tf.reshape(taps, [kh * rate, kw * rate, c_in, c_out])
    return dense[:(kh - 1) * rate + 1, :(kw - 1) * rate + 1]


def _dilated_as_dense(padding="SAME", rate=2):
    """A stride-1 dilated ``conv2d`` as a dense one (same effective size and padding)."""
    return lambda x, k: tf.nn.conv2d(x, _undilated(k, rate), 1, padding)


def _grouped_as_convs(x, k):
    """A grouped ``conv2d`` (stride 1, SAME) as one convolution per group, concatenated."""
    per_group, c_out = k.shape[2], k.shape[3]
    groups = x.shape[-1] // per_group
    size = c_out // groups
    return tf.concat([tf.nn.conv2d(x[..., g * per_group:(g + 1) * per_group],
                                   k[..., g * size:(g + 1) * size], 1, "SAME")
                      for g in range(groups)], axis=-1)


def _depthwise(strides=1, padding="SAME", dilations=(1, 1)):
    return lambda x, k: tf.nn.depthwise_conv2d(x, k, [1, strides, strides, 1], padding,
                                               dilations=dilations)


# Depthwise convolutions up to 5x5 run as shifted multiply-adds with a hand-written VJP
# (strides, dilations, paddings, multipliers, odd sizes, and output heights that the
# kernel gradient's row groups do not divide); larger kernels as grouped convolutions.
DEPTHWISE = [
    Case("DepthwiseConv2dNative", _depthwise(), (((2, 7, 7, 4), (3, 3, 4, 1)),
                                                 ((1, 6, 5, 3), (3, 3, 3, 2))), **_TOL),
    Case("DepthwiseConv2dNative", _depthwise(2), (((2, 8, 8, 4), (3, 3, 4, 1)),
                                                  ((1, 9, 9, 2), (5, 5, 2, 1)),
                                                  ((2, 9, 7, 3), (3, 3, 3, 2))),
         name="Depthwise-s2", **_TOL),
    Case("DepthwiseConv2dNative", _depthwise(2, "VALID"), (((2, 9, 8, 3), (3, 3, 3, 1)),
                                                           ((1, 10, 11, 2), (3, 3, 2, 2))),
         name="Depthwise-s2-valid", **_TOL),
    Case("DepthwiseConv2dNative", _depthwise(3), (((1, 10, 11, 2), (3, 3, 2, 1)),),
         name="Depthwise-s3", **_TOL),
    Case("DepthwiseConv2dNative", _depthwise(1, "VALID", (2, 2)),
         (((1, 9, 9, 2), (3, 3, 2, 1)),), name="Depthwise-dilated", **_TOL),
    Case("DepthwiseConv2dNative", _depthwise(1, "SAME", (2, 3)),
         (((2, 9, 10, 2), (3, 3, 2, 2)),), name="Depthwise-dilated-same", **_TOL),
    Case("DepthwiseConv2dNative", _depthwise(1, [[0, 0], [1, 2], [0, 1], [0, 0]]),
         (((1, 6, 7, 3), (3, 3, 3, 1)),), name="Depthwise-explicit", **_TOL),
    Case("DepthwiseConv2dNative", _depthwise(2, [[0, 0], [3, 0], [0, 4], [0, 0]]),
         (((2, 7, 6, 2), (3, 3, 2, 2)),), name="Depthwise-explicit-wide-s2", **_TOL),
    Case("DepthwiseConv2dNative", _depthwise(2), (((1, 9, 8, 3), (2, 4, 3, 1)),),
         name="Depthwise-2x4-s2", **_TOL),
    # The kernel gradient sums rows in passes: 37 and 13 rows leave some over, 48 rows
    # are two passes of 24.
    Case("DepthwiseConv2dNative", _depthwise(), (((1, 37, 6, 2), (3, 3, 2, 1)),
                                                 ((2, 13, 5, 2), (5, 5, 2, 1)),
                                                 ((1, 48, 5, 2), (3, 3, 2, 1))),
         name="Depthwise-tall", **_TOL),
    Case("DepthwiseConv2dNative", _depthwise(), (((1, 12, 12, 2), (7, 7, 2, 1)),),
         name="Depthwise-7x7", **_TOL),
    Case("DepthwiseConv2dNativeBackpropInput", lambda dy, k:
         tf.compat.v1.nn.depthwise_conv2d_native_backprop_input([1, 6, 6, 2], k, dy,
                                                                 [1, 2, 2, 1], "SAME"),
         (((1, 3, 3, 2), (3, 3, 2, 1)),), batched=False, **_TOL),
]

# TF computes the gradients of dilated and grouped Conv2D only with oneDNN; the cases give
# an equivalent formulation whose gradient every TF CPU build has (grad_reference).
CONV = [
    Case("Conv2D", _conv2d(), (((2, 7, 7, 3), (3, 3, 3, 4)), ((1, 8, 6, 2), (2, 3, 2, 3))),
         name="Conv2D-same", **_TOL),
    Case("Conv2D", _conv2d(2, "VALID"), (((2, 9, 8, 3), (3, 3, 3, 4)),), name="Conv2D-valid-s2",
         **_TOL),
    # Padded, over more inputs than multiply-adds take: XLA's conv, with the kernel
    # gradient stretched along the width (_padded_conv).
    Case("Conv2D", _conv2d(), (((2, 7, 6, 8), (3, 3, 8, 6)), ((1, 5, 9, 9), (2, 2, 9, 4))),
         name="Conv2D-same-wide", **_TOL),
    Case("Conv2D", _conv2d(2), (((2, 9, 8, 8), (3, 3, 8, 16)), ((1, 10, 7, 12), (3, 3, 12, 5))),
         name="Conv2D-same-wide-s2", **_TOL),
    Case("Conv2D", _conv2d(1, "SAME", 2), (((1, 9, 10, 8), (3, 3, 8, 6)),),
         name="Conv2D-dilated-wide", grad_reference=_dilated_as_dense(), **_TOL),
    Case("Conv2D", _conv2d(1, [[0, 0], [2, 0], [1, 3], [0, 0]]),
         (((2, 6, 5, 10), (3, 3, 10, 4)),), name="Conv2D-explicit-wide", **_TOL),
    Case("Conv2D", _conv2d(1, "SAME", 2), (((1, 9, 9, 2), (3, 3, 2, 3)),),
         name="Conv2D-dilated", grad_reference=_dilated_as_dense(), **_TOL),
    Case("Conv2D", _conv2d(1, [[0, 0], [1, 2], [0, 1], [0, 0]]),
         (((1, 6, 6, 2), (3, 3, 2, 3)),), name="Conv2D-explicit", **_TOL),
    # One input channel and kernels tall or wide (audio front ends: 128x1 over time,
    # 7x38 over time and frequency): the kernel gradient's stacked taps.
    Case("Conv2D", _conv2d(), (((2, 24, 5, 1), (8, 1, 1, 3)),), name="Conv2D-one-channel",
         **_TOL),
    Case("Conv2D", _conv2d(1, "VALID"), (((2, 12, 16, 1), (3, 6, 1, 5)),),
         name="Conv2D-one-channel-valid", **_TOL),
    Case("Conv2D", _conv2d(1, "SAME", 2), (((1, 10, 9, 1), (3, 3, 1, 4)),),
         name="Conv2D-one-channel-dilated", grad_reference=_dilated_as_dense(), **_TOL),
    Case("Conv2D", _conv2d(2), (((2, 11, 9, 1), (3, 3, 1, 4)),), name="Conv2D-one-channel-s2",
         **_TOL),
    Case("Conv2D", _conv2d(), (((2, 5, 5, 8), (1, 1, 8, 6)),), name="Conv2D-1x1", **_TOL),
    Case("Conv2D", _conv2d(2), (((2, 7, 7, 4), (1, 1, 4, 6)),), name="Conv2D-1x1-s2", **_TOL),
    Case("Conv2D", _conv2d(), (((1, 6, 6, 8), (3, 3, 2, 4)),), name="Conv2D-grouped",
         grad_reference=_grouped_as_convs, **_TOL),
    # Outputs smaller than the window run as patches times the kernel matrix.
    Case("Conv2D", _conv2d(), (((2, 2, 2, 8), (3, 3, 8, 4)), ((1, 1, 3, 4), (3, 3, 4, 5))),
         name="Conv2D-small-map", **_TOL),
    Case("Conv2D", _conv2d(2), (((1, 3, 4, 4), (3, 3, 4, 5)),), name="Conv2D-small-map-s2",
         **_TOL),
    Case("Conv2D", _conv2d(1, "SAME", 2), (((1, 3, 3, 2), (2, 3, 2, 3)),),
         name="Conv2D-small-map-dilated", grad_reference=_dilated_as_dense(), **_TOL),
    # Windows gathered axis by axis: per output when the kernel spans the axis, in rows of
    # the stride when windows do not overlap (framed audio) or overlap little, per tap.
    Case("Conv2D", _conv2d(1, "VALID"), (((2, 5, 9, 2), (3, 9, 2, 4)),),
         name="Conv2D-kernel-spans-axis", **_TOL),
    Case("Conv2D", _conv2d([1, 8], "VALID"), (((2, 1, 43, 1), (1, 8, 1, 3)),
                                               ((1, 2, 37, 2), (2, 5, 2, 3))),
         name="Conv2D-framed", **_TOL),
    Case("Conv2D", _conv2d([1, 4]), (((1, 2, 30, 2), (3, 6, 2, 3)),),
         name="Conv2D-overlapping-frames", **_TOL),
    Case("Conv2D", _conv2d(1, "VALID", 2), (((1, 5, 12, 2), (2, 5, 2, 3)),),
         name="Conv2D-kernel-spans-axis-dilated", grad_reference=_dilated_as_dense("VALID"),
         **_TOL),
    # A kernel that spans an unpadded axis (crema's 1x216 over 216 frequency bins) folds
    # that axis into the channels: a conv over the other axis, or a matrix product when
    # it spans both (or the one axis of a Conv1D); strides along it change nothing.
    Case("Conv2D", _conv2d(1, "VALID"), (((2, 7, 24, 1), (1, 24, 1, 6)),
                                         ((2, 9, 5, 2), (9, 3, 2, 4)),
                                         ((2, 4, 6, 3), (4, 6, 3, 5))),
         name="Conv2D-spanned-axes", **_TOL),
    Case("Conv2D", _conv2d([2, 3], [[0, 0], [1, 1], [0, 0], [0, 0]]),
         (((2, 7, 12, 2), (3, 12, 2, 4)),), name="Conv2D-spanned-axis-strided", **_TOL),
    Case("Conv2D", lambda x, k, b: tf.nn.bias_add(tf.nn.conv2d(x, k, 1, "VALID"), b),
         (((3, 6, 16, 1), (2, 16, 1, 8), (8,)),), name="Conv2D-spanned-axis-bias", **_TOL),
    Case("Conv2D", lambda x, k: tf.nn.conv1d(x, k, 4, "VALID"), (((2, 16, 3), (16, 3, 5)),),
         name="Conv1D-spanned", **_TOL),
    Case("Conv3D", lambda x, k: tf.nn.conv3d(x, k, [1, 1, 1, 1, 1], "VALID"),
         (((1, 3, 4, 5, 2), (2, 4, 5, 2, 3)),), name="Conv3D-spanned-axes", **_TOL),
    # Taps x outputs at most the input channels: one product with every tap, shifted sums.
    Case("Conv2D", _conv2d(), (((2, 7, 6, 10), (3, 3, 10, 1)), ((1, 9, 5, 12), (3, 2, 12, 2)),
                               ((1, 12, 6, 21), (7, 3, 21, 1))),
         name="Conv2D-few-outputs", **_TOL),
    Case("Conv2D", _conv2d(2, "VALID"), (((2, 9, 8, 9), (3, 3, 9, 1)),),
         name="Conv2D-few-outputs-s2", **_TOL),
    Case("Conv2D", _conv2d([1, 3], [[0, 0], [1, 2], [0, 1], [0, 0]]),
         (((1, 8, 10, 9), (3, 3, 9, 1)),), name="Conv2D-few-outputs-explicit", **_TOL),
    Case("Conv2D", _conv2d(1, "SAME", 2), (((1, 9, 9, 9), (3, 3, 9, 1)),),
         name="Conv2D-few-outputs-dilated", grad_reference=_dilated_as_dense(), **_TOL),
    # Taps x inputs at most 32: broadcast multiply-adds; input gradient the same at stride
    # 1 (when taps x outputs are at most 32 too), else XLA's. Wider ones stay convolutions.
    Case("Conv2D", _conv2d(), (((2, 9, 17, 1), (1, 5, 1, 4)), ((1, 8, 7, 4), (1, 3, 4, 4)),
                               ((2, 7, 9, 3), (3, 3, 3, 6)), ((2, 7, 9, 3), (3, 3, 3, 16))),
         name="Conv2D-few-inputs", **_TOL),
    Case("Conv2D", _conv2d(1, "VALID"), (((2, 9, 8, 1), (3, 3, 1, 8)),),
         name="Conv2D-few-inputs-valid", **_TOL),
    Case("Conv2D", _conv2d(1, [[0, 0], [3, 0], [1, 2], [0, 0]]),
         (((1, 6, 7, 2), (2, 3, 2, 3)),), name="Conv2D-few-inputs-explicit-wide", **_TOL),
    Case("Conv2D", _conv2d([2, 1]), (((2, 9, 8, 2), (3, 3, 2, 3)),
                                     ((2, 9, 8, 3), (3, 3, 3, 16))),
         name="Conv2D-few-inputs-s2", **_TOL),
    Case("Conv2D", _conv2d(1, "SAME", 2), (((1, 6, 11, 2), (2, 3, 2, 3)),),
         name="Conv2D-few-inputs-dilated", grad_reference=_dilated_as_dense(), **_TOL),
    Case("Conv2D", _conv2d(), (((2, 6, 5, 8), (3, 3, 8, 6)),), name="Conv2D-wide", **_TOL),
    Case("Conv2D", lambda x, k: tf.nn.conv1d(x, k, 16, "VALID"), (((2, 70, 1), (32, 1, 6)),),
         name="Conv1D-framed", **_TOL),
    # Outputs smaller than the window at stride 1, fewer taps than input positions (an
    # audio front end's 7x67 over 96 bins): XLA's convolution forward, the patches'
    # gradient; with more windows and taps than MAX_WINDOW_SLICES one gather cuts them.
    Case("Conv2D", _conv2d(1, "VALID"), (((2, 12, 24, 1), (3, 15, 1, 4)),
                                         ((2, 1, 21, 8), (1, 12, 8, 6))),
         name="Conv2D-overlapping-windows", **_TOL),
    Case("Conv2D", lambda x, k: tf.nn.conv1d(x, k, 1, "VALID"),
         (((2, 40, 2), (30, 2, 3)), ((1, 40, 1), (24, 1, 4))), name="Conv1D-long-window",
         **_TOL),
    Case("Conv2D", lambda x, k: tf.nn.conv1d(x, k, 2, "SAME"), (((2, 9, 3), (3, 3, 4)),),
         name="Conv1D", **_TOL),
    Case("Conv3D", lambda x, k: tf.nn.conv3d(x, k, [1, 1, 2, 1, 1], "SAME"),
         (((1, 4, 5, 5, 2), (2, 3, 3, 2, 3)),), **_TOL),
    # Unpadded convs run with a cell of padding where no window reads it, or with one
    # more output row cut off: VALID at stride 1 (the extra row), a Conv1D (its height of
    # one output takes a wider stride), a dilated Conv1D as Keras runs it (TF's
    # SpaceToBatchND, an unpadded conv, BatchToSpaceND), and in 3-D.
    Case("Conv2D", _conv2d(1, "VALID"), (((2, 7, 8, 6), (3, 3, 6, 5)),), name="Conv2D-valid",
         **_TOL),
    # Their kernel gradient is patches times the cotangent up to 9 taps over 32 input
    # channels to 16 or more (strided and dilated too), XLA's swapped convolution beyond.
    Case("Conv2D", _conv2d(2, "VALID"), (((2, 9, 8, 6), (3, 3, 6, 16)),),
         name="Conv2D-valid-narrow-s2", **_TOL),
    Case("Conv2D", _conv2d(1, "VALID", 2), (((2, 9, 10, 6), (3, 3, 6, 16)),),
         name="Conv2D-valid-narrow-dilated", grad_reference=_dilated_as_dense("VALID"),
         **_TOL),
    Case("Conv2D", _conv2d(1, "VALID"), (((2, 6, 7, 33), (3, 3, 33, 4)),
                                         ((1, 5, 24, 4), (1, 10, 4, 6))),
         name="Conv2D-valid-wide", **_TOL),
    Case("Conv2D", lambda x, k: tf.nn.conv1d(x, k, 1, "VALID"), (((2, 20, 8), (5, 8, 6)),),
         name="Conv1D-valid", **_TOL),
    Case("Conv2D", lambda x, k: tf.nn.convolution(x, k, padding="SAME", dilations=3),
         (((2, 31, 8), (5, 8, 6)),), name="Conv1D-dilated", **_TOL),
    Case("Conv3D", lambda x, k: tf.nn.conv3d(x, k, [1, 1, 1, 1, 1], "VALID"),
         (((1, 4, 5, 5, 2), (2, 3, 3, 2, 3)),), name="Conv3D-valid", **_TOL),
    # 3-D convs run as 2-D ones per depth tap, each on its own 2-D path (one input
    # channel: multiply-adds), strided in depth too.
    Case("Conv3D", lambda x, k: tf.nn.conv3d(x, k, [1, 2, 2, 1, 1], "SAME"),
         (((2, 7, 6, 5, 3), (3, 3, 3, 3, 4)), ((1, 5, 6, 6, 1), (3, 3, 3, 1, 4))),
         name="Conv3D-s2", **_TOL),
    # One 2-D conv with the depth taps stacked in the channels: the outputs' (taps x
    # inputs wider than the outputs, a 3D U-Net's 8 -> 8), or the inputs' (a first layer
    # over one channel; a kernel of one depth tap); strided ones (any axis, SAME and
    # VALID, odd sizes) take the input gradient per stride phase.
    Case("Conv3D", lambda x, k: tf.nn.conv3d(x, k, [1, 1, 1, 1, 1], "SAME"),
         (((2, 5, 6, 7, 8), (3, 3, 3, 8, 4)), ((2, 6, 5, 4, 1), (3, 3, 3, 1, 8)),
          ((2, 4, 5, 5, 3), (1, 3, 3, 3, 4)), ((1, 6, 5, 5, 2), (5, 3, 1, 2, 3))),
         name="Conv3D-depth-stacked", **_TOL),
    Case("Conv3D", lambda x, k: tf.nn.conv3d(x, k, [1, 2, 2, 2, 1], "SAME"),
         (((2, 7, 6, 5, 4), (3, 3, 3, 4, 2)), ((1, 8, 8, 8, 2), (3, 3, 3, 2, 6))),
         name="Conv3D-s2-every-axis", **_TOL),
    Case("Conv3D", lambda x, k: tf.nn.conv3d(x, k, [1, 2, 3, 2, 1], "VALID"),
         (((3, 7, 8, 6, 3), (2, 2, 3, 3, 4)), ((1, 6, 6, 6, 2), (3, 3, 3, 2, 2))),
         name="Conv3D-strided-valid", **_TOL),
    Case("Conv2DBackpropInput", lambda dy, k: tf.nn.conv2d_transpose(
        dy, k, [2, 8, 8, 3], 2, "SAME"), (((2, 4, 4, 5), (3, 3, 3, 5)),), batched=False,
         **_TOL),
    # Its forward conv has few outputs (9 taps x 1 <= 9 channels): the tap projection's VJP.
    Case("Conv2DBackpropInput", lambda dy, k: tf.nn.conv2d_transpose(
        dy, k, [2, 8, 8, 9], 2, "SAME"), (((2, 4, 4, 1), (3, 3, 9, 1)),), batched=False,
         name="Conv2DBackpropInput-few-outputs", **_TOL),
    Case("Conv2DBackpropInput", lambda dy, k: tf.nn.conv2d_transpose(
        dy, k, tf.stack([tf.shape(dy)[0], 8, 8, 3]), 2, "SAME"),
         (((2, 4, 4, 5), (3, 3, 3, 5)),), name="Conv2DTranspose-dynamic-batch", **_TOL),
    Case("Conv2DBackpropInput", lambda dy, k: tf.nn.conv2d_transpose(
        dy, k, [1, 7, 7, 2], 1, "VALID"), (((1, 5, 5, 4), (3, 3, 2, 4)),),
         name="Conv2DTranspose-valid", batched=False, **_TOL),
    Case("Conv3DBackpropInputV2", lambda dy, k: tf.nn.conv3d_transpose(
        dy, k, [1, 4, 6, 6, 2], [1, 1, 2, 2, 1], "SAME"), (((1, 4, 3, 3, 3), (2, 3, 3, 2, 3)),),
         batched=False, **_TOL),
    # A 3D U-Net's decoder (deepbrain's 3x3x3 stride 2 SAME, 16 -> 8 channels): one
    # stride-1 conv of the cotangent to all eight stride phases, interleaved; odd sizes
    # (a phase one row short), VALID 2x2x2, and a batch the graph reads from the input.
    Case("Conv3DBackpropInputV2", lambda dy, k: tf.nn.conv3d_transpose(
        dy, k, [2, 8, 6, 4, 3], 2, "SAME"), (((2, 4, 3, 2, 5), (3, 3, 3, 3, 5)),),
         name="Conv3DTranspose-s2", batched=False, **_TOL),
    Case("Conv3DBackpropInputV2", lambda dy, k: tf.nn.conv3d_transpose(
        dy, k, [1, 7, 5, 6, 2], 2, "SAME"), (((1, 4, 3, 3, 4), (3, 3, 3, 2, 4)),),
         name="Conv3DTranspose-s2-odd", batched=False, **_TOL),
    Case("Conv3DBackpropInputV2", lambda dy, k: tf.nn.conv3d_transpose(
        dy, k, [2, 6, 6, 4, 3], [1, 2, 2, 2, 1], "VALID"), (((2, 3, 3, 2, 4), (2, 2, 2, 3, 4)),),
         name="Conv3DTranspose-s2-valid", batched=False, **_TOL),
    Case("Conv3DBackpropInputV2", lambda dy, k: tf.nn.conv3d_transpose(
        dy, k, tf.stack([tf.shape(dy)[0], 8, 6, 6, 2]), 2, "SAME"),
         (((2, 4, 3, 3, 4), (3, 3, 3, 2, 4)),), name="Conv3DTranspose-dynamic-batch", **_TOL),
]

# A dilated conv as tf.nn.convolution (and so Keras Conv1D/Conv2D/DepthwiseConv2D with a
# dilation_rate) stores it: SpaceToBatchND, an unpadded conv, BatchToSpaceND, converted
# as one dilated conv. Odd and even lengths: TF pads odd ones to a multiple of the block
# and crops the extra again.
def _convolution(padding: str, rate: int):
    return lambda x, k: tf.nn.convolution(x, k, padding=padding, dilations=rate)


def _depthwise_atrous(padding: str, rate: int):
    return lambda x, k: tf.nn.depthwise_conv2d(x, k, [1, 1, 1, 1], padding,
                                               dilations=(rate, rate))


def phases_read_twice(x, k):
    """A trio whose phases another op reads too: converted op by op."""
    phases = tf.space_to_batch_nd(x, [1, 2], [[0, 0], [2, 2]])
    y = tf.nn.conv2d(phases, k, 1, "VALID")
    return tf.batch_to_space(y, [1, 2], [[0, 0], [0, 1]]), tf.reduce_sum(phases, axis=-1)


DILATED = [
    *(Case("SpaceToBatchND", _convolution(padding, rate),
           (((2, 31, 8), (5, 8, 6)), ((2, 32, 3), (3, 3, 4))),
           name=f"Conv1D-atrous-{padding.lower()}-{rate}", **_TOL)
      for rate in (2, 3, 4) for padding in ("SAME", "VALID")),
    *(Case("SpaceToBatchND", _convolution(padding, rate),
           (((2, 11, 10, 3), (3, 3, 3, 4)), ((1, 12, 13, 2), (3, 2, 2, 3))),
           name=f"Conv2D-atrous-{padding.lower()}-{rate}", **_TOL)
      for rate in (2, 3) for padding in ("SAME", "VALID")),
    *(Case("SpaceToBatchND", _depthwise_atrous(padding, 2),
           (((2, 11, 10, 3), (3, 3, 3, 2)), ((1, 12, 13, 2), (3, 3, 2, 1))),
           name=f"Depthwise-atrous-{padding.lower()}", **_TOL)
      for padding in ("SAME", "VALID")),
    Case("SpaceToBatchND", phases_read_twice, (((2, 5, 12, 8), (3, 3, 8, 6)),),
         name="Atrous-phases-read-twice", **_TOL),
]


def _three_values(rng, shape, dtype):
    """Floats from {0, 1, 2}: most pooling windows hold ties."""
    return rng.integers(0, 3, shape).astype(dtype)


def _near_one(rng, shape, dtype):
    """Floats in [1, 1 + 8e-6): each window's inputs are within 1e-5 of its max."""
    return (1 + (distinct(rng, shape, np.float64) + 0.5) * 8e-6).astype(dtype)


POOL = [
    Case("MaxPool", lambda x: tf.nn.max_pool2d(x, 3, 2, "SAME"),
         (((2, 7, 7, 3),), ((1, 8, 8, 2),)), sample=distinct),
    Case("MaxPool", lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"), (((2, 6, 7, 3),),),
         dtypes=("float32", "int32"), sample=distinct, name="MaxPool-valid"),
    Case("MaxPool", lambda x: tf.nn.max_pool2d(tf.nn.relu(x - 1.0), 3, 2, "SAME"),
         (((2, 7, 7, 3),),), name="MaxPool-ties"),  # gradients go to the first maximum
    Case("MaxPool", lambda x: tf.nn.max_pool2d(tf.nn.relu(x - 1.0), [2, 3], [2, 1], "VALID"),
         (((2, 6, 7, 3),),), name="MaxPool-ties-valid"),
    # Windows beyond the shifted path that do not overlap: a reshape into windows. A pool
    # over a whole axis (as audio models pool frequency), ties on the ReLU's zeros, SAME
    # padding, and a stride past the window (cells no window reads).
    Case("MaxPool", lambda x: tf.nn.max_pool2d(x, [1, 40], [1, 40], "VALID"),
         (((2, 5, 40, 3),),), sample=distinct, name="MaxPool-whole-axis"),
    Case("MaxPool", lambda x: tf.nn.max_pool2d(tf.nn.relu(x - 1.0), [2, 30], [2, 30], "VALID"),
         (((2, 4, 61, 3),),), name="MaxPool-large-ties"),
    Case("MaxPool", lambda x: tf.nn.max_pool2d(x, [3, 27], [3, 27], "SAME"),
         (((2, 7, 60, 2),),), sample=distinct, name="MaxPool-large-same"),
    Case("MaxPool", lambda x: tf.nn.max_pool2d(x, [1, 26], [2, 31], "VALID"),
         (((1, 5, 90, 2),),), sample=distinct, name="MaxPool-large-gaps"),
    Case("AvgPool", lambda x: tf.nn.avg_pool2d(x, 3, 2, "SAME"),
         (((2, 7, 7, 3),), ((1, 8, 8, 2),)), **_TOL),
    Case("AvgPool", lambda x: tf.nn.avg_pool2d(x, [2, 3], [1, 2], "VALID"), (((2, 6, 7, 3),),),
         name="AvgPool-valid", **_TOL),
    Case("MaxPool3D", lambda x: tf.nn.max_pool3d(x, 2, 2, "SAME"), (((1, 5, 4, 4, 2),),),
         sample=distinct),
    # MaxPool3DGrad gives a window's gradient to every input within 1e-5 of its maximum
    Case("MaxPool3D", lambda x: tf.nn.max_pool3d(x, 2, 2, "SAME"), (((2, 5, 4, 4, 2),),),
         sample=_three_values, name="MaxPool3D-ties"),
    Case("MaxPool3D", lambda x: tf.nn.max_pool3d(x, [2, 3, 2], [1, 2, 2], "VALID"),
         (((1, 5, 6, 4, 2),),), sample=_near_one, name="MaxPool3D-near-ties"),
    Case("AvgPool3D", lambda x: tf.nn.avg_pool3d(x, 3, 2, "SAME"), (((1, 5, 4, 4, 2),),),
         **_TOL),
    Case("MaxPoolV2", lambda x: tf.raw_ops.MaxPoolV2(input=x, ksize=[1, 3, 3, 1],
                                                      strides=[1, 2, 2, 1], padding="SAME"),
         (((2, 7, 7, 3),),), sample=distinct),
    Case("Mean", lambda x: tf.reduce_mean(x, axis=[1, 2]), (((2, 5, 5, 3),),),
         name="GlobalAvgPool"),
]

CASES = DEPTHWISE + CONV + DILATED + POOL


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)
