"""Dilated convolutions that TF stored as ``SpaceToBatchND`` → conv → ``BatchToSpaceND``,
made single dilated convolutions again.

``tf.nn.convolution`` (Keras ``Conv1D``/``Conv2D``/``DepthwiseConv2D`` with a
``dilation_rate``, ``tf.nn.atrous_conv2d``) cuts the input into ``block``² phases
(``SpaceToBatchND``), runs an unpadded, undilated conv on each, and interleaves the
results again (``BatchToSpaceND``). On XLA:CPU that trio is several times slower than one
padded convolution with ``rhs_dilation`` (a 1x11 32 -> 32 conv, dilation 4, over 10,100
positions: 613 against 100 ms; ``benchmarks/PROFILE.md``), so :func:`fuse` rewrites it.

The arithmetic, per blocked axis with block ``b``, ``paddings`` ``(p0, p1)`` and
``crops`` ``(c0, c1)``: phase ``r`` holds ``padded[j*b + r]``, its conv output
``sum_t w[t] * padded[(j + t)*b + r]``; interleaved, position ``i = j*b + r`` is
``sum_t w[t] * padded[i + t*b]``, a conv with dilation ``b`` over the padded input, whose
crops cut ``c0`` positions before and ``c1`` after. That is the dilated conv of the input
padded by ``(p0 - c0, p1 - c1)``; TF's extra padding to a multiple of ``b`` is in both
``p1`` and ``c1``, so it cancels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxhub_tf.from_tf import graph
from jaxhub_tf.from_tf.reader import protos

_CONVS = ("Conv2D", "DepthwiseConv2dNative")


def fuse(fn: graph.Function) -> graph.Function:
    """``fn`` with each ``SpaceToBatchND`` → ``VALID`` stride-1 conv → ``BatchToSpaceND``
    trio (with the same constant blocks, each tensor read only by the next op) as one
    dilated conv with explicit padding; ``fn`` itself when it has none.

    Conv1D's trio has ``ExpandDims`` and ``Squeeze`` around its ``Conv2D``; they stay, now
    around the dilated conv. Anything else (other readers of the phases, strides, a
    ``SAME`` or dilated inner conv, blocks or paddings computed at run time) is left to
    the op-by-op lowering.
    """
    if not any(n.op == "BatchToSpaceND" for n in fn.nodes.values()):
        return fn
    readers = _reader_counts(fn)
    nodes = dict(fn.nodes)
    for node in fn.nodes.values():
        if node.op == "BatchToSpaceND":
            _fuse_at(fn, nodes, node, readers)
    return dataclasses.replace(fn, nodes=nodes) if nodes != fn.nodes else fn


def _reader_counts(fn: graph.Function) -> dict[str, int]:
    """How many data inputs (and function outputs) read each node."""
    counts: dict[str, int] = {}
    for ref in [r for n in fn.nodes.values() for r in n.inputs] + list(fn.outputs):
        counts[ref[0]] = counts.get(ref[0], 0) + 1
    return counts


def _fuse_at(fn: graph.Function, nodes: dict[str, graph.Node], b2s: graph.Node,
             readers: dict[str, int]) -> None:
    """Rewrites the trio ending at ``b2s`` in ``nodes``, if it is one."""
    chain = _producers(fn, b2s, readers)
    if chain is None:
        return
    s2b, expand, conv, squeeze = chain
    blocks, paddings = _const(fn, s2b.inputs[1]), _const(fn, s2b.inputs[2])
    blocks_after, crops = _const(fn, b2s.inputs[1]), _const(fn, b2s.inputs[2])
    if any(v is None for v in (blocks, paddings, blocks_after, crops)) or not np.array_equal(
            blocks, blocks_after):
        return
    axes = _conv_axes(fn, len(blocks), expand, squeeze)
    if axes is None:
        return
    dilations, pads = [1, 1, 1, 1], [0] * 8
    for axis, b, (p0, p1), (c0, c1) in zip(axes, blocks.reshape(-1),
                                            paddings.reshape(-1, 2), crops.reshape(-1, 2)):
        if p0 < c0 or p1 < c1:
            return  # crops into the input itself: not a padding
        dilations[axis], pads[2 * axis:2 * axis + 2] = int(b), [int(p0 - c0), int(p1 - c1)]
    source = s2b.inputs[0]
    if expand is not None:
        nodes[expand.name] = dataclasses.replace(expand, inputs=[source, *expand.inputs[1:]],
                                                 _decoded={})
        source = (expand.name, 0)
    attrs = {**conv.attrs, "dilations": _ints(dilations), "explicit_paddings": _ints(pads),
             "padding": protos.AttrValue(s=b"EXPLICIT")}
    nodes[conv.name] = graph.Node(conv.name, conv.op, [source, conv.inputs[1]],
                                  conv.control_inputs + s2b.control_inputs, attrs)
    result = (squeeze or conv).name
    kept = {k: v for k, v in b2s.attrs.items() if k == "T"}
    nodes[b2s.name] = graph.Node(b2s.name, "Identity", [(result, 0)], b2s.control_inputs,
                                 kept)


def _producers(fn: graph.Function, b2s: graph.Node, readers: dict[str, int]):
    """``(SpaceToBatchND, ExpandDims or None, conv, Squeeze or None)`` feeding ``b2s``,
    each read only by the next, the conv ``VALID``, stride 1, undilated, channels last;
    else None."""

    def only_reader(ref, *ops):
        node = fn.nodes.get(ref[0])
        ok = node is not None and ref[1] == 0 and node.op in ops and readers[node.name] == 1
        return node if ok else None

    squeeze = only_reader(b2s.inputs[0], "Squeeze")
    conv = only_reader(squeeze.inputs[0] if squeeze else b2s.inputs[0], *_CONVS)
    if conv is None:
        return None
    expand = only_reader(conv.inputs[0], "ExpandDims") if squeeze else None
    s2b = only_reader((expand or conv).inputs[0], "SpaceToBatchND")
    unit = [1, 1, 1, 1]
    if (s2b is None or (squeeze is None) != (expand is None)
            or conv.attr("padding") != "VALID" or list(conv.attr("strides")) != unit
            or list(conv.attr("dilations", unit)) != unit
            or conv.attr("data_format", "NHWC") != "NHWC"):
        return None
    return s2b, expand, conv, squeeze


def _conv_axes(fn: graph.Function, n_blocks: int, expand: graph.Node | None,
               squeeze: graph.Node | None) -> list[int] | None:
    """The conv's axis (1 or 2) for each blocked axis; None if a block is elsewhere."""
    axes = list(range(1, 1 + n_blocks))  # SpaceToBatchND blocks the axes after the batch
    if expand is not None:
        # Conv1D: a rank-3 input gets an axis for the Conv2D, squeezed away after it.
        dim = _const(fn, expand.inputs[1])
        if dim is None or dim.size != 1:
            return None
        dim = int(dim.reshape(-1)[0]) % 4
        squeezed = [int(d) % 4 for d in squeeze.attr("squeeze_dims", [])]
        if squeezed != [dim] or dim == 0:
            return None
        axes = [a + (a >= dim) for a in axes]
    return axes if all(a in (1, 2) for a in axes) else None


def _const(fn: graph.Function, ref: tuple[str, int]) -> np.ndarray | None:
    """The value of a ``Const`` node's output (through ``Identity`` nodes), else None."""
    name, _ = fn.resolve_identity(ref)
    node = fn.nodes.get(name)
    return np.asarray(node.attr("value")).astype(np.int64) if (
        node is not None and node.op == "Const") else None


def _ints(values) -> protos.AttrValue:
    value = protos.AttrValue()
    value.list.i.extend(int(v) for v in values)
    return value
