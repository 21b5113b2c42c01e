"""Integer clamps whose bounds pin the result, folded to the bound.

``tf.math.bincount(ids, minlength=n, maxlength=n)`` (which
``tf.RaggedTensor.from_value_rowids(values, ids, nrows=n)`` runs to count its rows) sizes
its result ``Minimum(n, Maximum(n, max(ids) + 1))``: always ``n``, but read op by op it
follows the values of ``ids``, so the count would need a host stage (or fail to trace)
although ``n`` is a shape. :func:`fold` rewrites such a clamp into ``n`` broadcast to the
clamp's shape, so that the host-stage split and the interpreter both see a static (or
symbolic) size.

A clamp is pinned when its lower bound is at least its upper bound: ``Minimum(hi,
Maximum(lo, x))`` and ``Maximum(lo, Minimum(hi, x))`` (operands in either order), and
``ClipByValue(x, lo, hi)``, where ``lo`` and ``hi`` are one tensor (through ``Identity``
nodes) or constants with ``lo >= hi``. The result is then ``hi`` (``lo`` for the second
form). Only integer clamps are folded: at ``x == lo == hi`` TF's float gradient reaches
``x``, the folded value's does not.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxhub_tf.from_tf import graph
from jaxhub_tf.from_tf.reader import protos

Ref = tuple[str, int]

_INT32 = protos.AttrValue(type=protos.DATA_TYPES.index("DT_INT32"))

#: The inner op of a two-op clamp, by outer op.
_INNER = {"Minimum": "Maximum", "Maximum": "Minimum"}


def fold(fn: graph.Function) -> graph.Function:
    """``fn`` with each pinned integer clamp (see the module's doc) replaced by its bound
    broadcast to the clamp's shape; ``fn`` itself when it has none."""
    nodes = dict(fn.nodes)
    for node in fn.nodes.values():
        pinned = _pinned(fn, node)
        if pinned is not None:
            bound, like = pinned
            shape = f"{node.name}/pinned_shape"
            nodes[shape] = graph.Node(shape, "Shape", [like], [], {
                "T": protos.AttrValue(type=node.attrs["T"].type),
                "out_type": _INT32})
            nodes[node.name] = graph.Node(node.name, "BroadcastTo", [bound, (shape, 0)],
                                          node.control_inputs, {
                                              "T": node.attrs["T"],
                                              "Tidx": _INT32})
    return dataclasses.replace(fn, nodes=nodes) if nodes != fn.nodes else fn


def _pinned(fn: graph.Function, node: graph.Node) -> tuple[Ref, Ref] | None:
    """``(the bound the clamp equals, a tensor of the clamp's shape)``, or None."""
    if "T" not in node.attrs or not _is_integer(node.attr("T")):
        return None
    if node.op == "ClipByValue":
        x, lo, hi = node.inputs
        return (hi, x) if _at_least(fn, lo, hi) else None
    if node.op not in _INNER:
        return None
    for bound, other in (node.inputs, node.inputs[::-1]):
        inner = fn.nodes.get(fn.resolve_identity(other)[0])
        if inner is None or inner.op != _INNER[node.op]:
            continue
        for inner_bound in inner.inputs:
            lo, hi = (inner_bound, bound) if node.op == "Minimum" else (bound, inner_bound)
            if _at_least(fn, lo, hi):
                return bound, other
    return None


def _at_least(fn: graph.Function, lo: Ref, hi: Ref) -> bool:
    """Whether tensor ``lo`` is at least ``hi`` everywhere, by the graph alone."""
    lo, hi = fn.resolve_identity(lo), fn.resolve_identity(hi)
    if lo == hi:
        return True
    values = [_constant(fn, ref) for ref in (lo, hi)]
    if any(v is None for v in values):
        return False
    try:
        return bool(np.all(values[0] >= values[1]))
    except ValueError:  # shapes that do not broadcast: the graph fails elsewhere
        return False


def _constant(fn: graph.Function, ref: Ref) -> np.ndarray | None:
    node = fn.nodes.get(ref[0])
    return node.attr("value") if node is not None and node.op == "Const" else None


def _is_integer(dtype) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind in "iu"
