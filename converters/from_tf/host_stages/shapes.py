"""The specs of a numeric host stage's results, read from the graph without running it.

A value-shaped op's result (``tf.range(start, limit)``, ``tf.unique(x)``) has a size that
only its inputs' values set: it gets a symbol of its own (``n1``, ``n2``, ...). Ranks and
static sizes come from the shapes TF recorded when it traced the graph
(``_output_shapes``); an unknown size that an op passes on from its input (an
elementwise op, ``Unique``'s index, ``DynamicPartition``'s inner axes) keeps that
input's symbol, so that a size of the signature's batch stays ``batch``. Two nodes that
compute the same thing from the same inputs share their symbols. Dtypes are TF's: an
``int64`` result stays ``int64`` for the device function (the 64-bit rule narrows it
when JAX's 64-bit types are off).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from jaxhub_tf.from_tf import graph
from jaxhub_tf.from_tf.reader import op_defs

Dim = int | str
Ref = tuple[str, int]

#: Ops whose results have their first input's shape.
_SAME_SHAPE = frozenset({
    "Identity", "StopGradient", "Snapshot", "Cast", "ZerosLike", "OnesLike", "Cumsum",
    "Neg", "Abs", "Sign", "LogicalNot", "Floor", "Ceil", "Round", "Square", "Sqrt", "Rsqrt",
    "Exp", "Log", "Sin", "Cos", "Tanh", "Sigmoid", "Reciprocal", "ReverseV2", "Roll",
    "MatrixSetDiagV2", "MatrixSetDiagV3",
    # string ops, element by element
    "StringToNumber", "AsString", "StringLower", "StringUpper", "StringStrip",
    "StaticRegexReplace", "StaticRegexFullMatch", "StringLength", "StringToHashBucketFast",
    "StringToHashBucket", "StringToHashBucketStrong"})

#: Elementwise ops of two or three inputs: their results have the broadcast shape.
_BROADCAST = frozenset({
    "Add", "AddV2", "Sub", "Mul", "Maximum", "Minimum", "Equal", "NotEqual", "Less",
    "LessEqual", "Greater", "GreaterEqual", "FloorMod", "FloorDiv", "LogicalAnd",
    "LogicalOr", "SelectV2", "RealDiv", "Div", "Pow", "SquaredDifference", "DivNoNan"})

#: Value-shaped ops whose results share one value-set size: output -> the output whose
#: size it has (``setdiff1d``'s values and positions; ``unique``'s values and counts).
_SAME_COUNT = {"ListDiff": {1: 0}, "UniqueWithCounts": {2: 0}, "NonMaxSuppressionV5": {1: 0},
               "CTCGreedyDecoder": {1: 0}, "SparseFillEmptyRows": {1: 0},
               "DenseToDenseSetOperation": {1: 0}, "DenseToSparseSetOperation": {1: 0},
               "SparseToSparseSetOperation": {1: 0}}


#: Ops whose results have their first input's rank plus this, each size a symbol of its own
#: (their static operands follow values: paddings, multiples, a permutation, a depth).
_RANK_CHANGE = {"Transpose": 0, "Tile": 0, "Pad": 0, "PadV2": 0, "MirrorPad": 0, "TopKV2": 0,
                "ConcatV2": 0, "SplitV": 0, "OneHot": 1, "ArgMax": -1, "ArgMin": -1,
                "ResizeBilinear": 0, "ResizeNearestNeighbor": 0, "CropAndResize": 0,
                "Conv2DBackpropInput": 0, "Conv3DBackpropInputV2": 0, "ExpandDims": 1,
                "Split": 0}

#: Ops whose results' rank is that of another input than the first: its position.
_RANK_OF = {"Split": 1, "Conv2DBackpropInput": 1, "Conv3DBackpropInputV2": 1}

#: Packing and unpacking diagonals: the rank change for one diagonal (none for a band).
_DIAGONALS = {"MatrixDiagV2": 1, "MatrixDiagV3": 1, "MatrixDiagPartV2": -1,
              "MatrixDiagPartV3": -1}

#: Reductions over an axis operand (input 1).
_REDUCTIONS = frozenset({"Sum", "Mean", "Max", "Min", "Prod", "All", "Any", "EuclideanNorm"})


#: Non-max suppressions that also return how many boxes they kept: that output (a scalar).
_COUNT_OUTPUT = {"NonMaxSuppressionV4": 1, "NonMaxSuppressionV5": 2}


class Specs:
    """Shapes and dtypes of the values of a graph's nodes, derived without running it.

    Args:
      nodes: the graph's nodes by name.
      args: the host stage's inputs: arg -> (dtype, shape; None for an unknown size).
    """

    def __init__(self, nodes: Mapping[str, graph.Node],
                 args: Mapping[str, tuple[np.dtype, list[int | None]]]):
        self._nodes, self._args = nodes, args
        self._symbols: dict[str, str] = {}
        self._keys: dict[str, str] = {}
        self._shapes: dict[Ref, list[Dim] | None] = {}

    def spec(self, ref: Ref) -> tuple[list[Dim], np.dtype] | None:
        """The shape and dtype of ``ref``, or None when the graph does not tell them."""
        shape, dtype = self.shape(ref), self.dtype(ref)
        return None if shape is None or dtype is None else (shape, dtype)

    def fresh(self, what: str) -> str:
        """A symbol of its own for the size ``what`` (one per distinct ``what``)."""
        return self._symbols.setdefault(what, f"n{len(self._symbols) + 1}")

    def dtype(self, ref: Ref) -> np.dtype | None:
        """TF's dtype of ``ref`` (from the op's definition and the node's attrs)."""
        source, index = ref
        if source in self._args:
            return self._args[source][0]
        node = self._nodes[source]
        op_def = op_defs.get(node.op)
        if op_def is None:
            return None
        start = 0
        for arg in op_def.output_arg:
            if arg.type_list_attr:
                types = node.attr(arg.type_list_attr)
                if index < start + len(types):
                    return np.dtype(types[index - start])
                start += len(types)
                continue
            count = int(node.attr(arg.number_attr)) if arg.number_attr else 1
            if index < start + count:
                return np.dtype(node.attr(arg.type_attr) if arg.type_attr
                                else graph.decode_dtype(arg.type))
            start += count
        return None

    def shape(self, ref: Ref) -> list[Dim] | None:
        """The shape of ``ref``: sizes, symbols for unknown ones; None for an unknown rank."""
        if ref not in self._shapes:
            self._shapes[ref] = self._shape(ref)
        return self._shapes[ref]

    def _shape(self, ref: Ref) -> list[Dim] | None:
        source, index = ref
        if source in self._args:
            return [d if d is not None else "batch" if axis == 0 else
                    self.fresh(f"{self._key(source)}/{axis}")
                    for axis, d in enumerate(self._args[source][1])]
        node = self._nodes[source]
        recorded = node.attr("_output_shapes", None)
        recorded = recorded[index] if recorded and index < len(recorded) else None
        derived = self._derived(node, index)
        if recorded is None:
            return derived
        if derived is None or len(derived) != len(recorded):
            derived = [self.fresh(f"{self._key(source)}:{index}/{axis}")
                       for axis in range(len(recorded))]
        return [d if d is not None else s for d, s in zip(recorded, derived)]

    def _derived(self, node: graph.Node, index: int) -> list[Dim] | None:
        """The shape of output ``index`` by the op's semantics, or None when unknown."""
        inputs = [self.shape(ref) for ref in node.inputs]
        count = f"{self._key(node.name)}:{_SAME_COUNT.get(node.op, {}).get(index, index)}"
        op = node.op
        if op in _SAME_SHAPE:
            return inputs[0]
        if op in _BROADCAST:
            return _broadcast(inputs, lambda axis: self.fresh(f"{count}/{axis}"))
        if op in ("Unique", "UniqueWithCounts") and index == 1:
            return inputs[0]
        if op in ("Range", "RaggedRange", "Unique", "UniqueWithCounts", "ListDiff",
                  "NonMaxSuppressionV2", "NonMaxSuppressionV3"):
            return [self.fresh(count)]
        if op in _COUNT_OUTPUT:
            return [] if index == _COUNT_OUTPUT[op] else [self.fresh(count)]
        if op == "Bincount":
            return [self.fresh(count)]
        if op == "DenseBincount" and inputs[0] is not None:  # counts by row of a matrix
            return [*inputs[0][:-1], self.fresh(count)]
        if op == "Where" and inputs[0] is not None:
            return [self.fresh(count), len(inputs[0])]
        if op == "DynamicPartition" and None not in inputs[:2]:
            return [self.fresh(count), *inputs[0][len(inputs[1]):]]
        if op == "CombinedNonMaxSuppression" and inputs[0] is not None:
            images, rows = inputs[0][0], self.fresh(f"{self._key(node.name)}:rows")
            return [[images, rows, 4], [images, rows], [images, rows], [images]][index]
        if op == "CTCGreedyDecoder":  # a sparse result: indices, values, shape, log probs
            batch = inputs[1][0] if inputs[1] is not None else self.fresh(f"{count}/batch")
            return [[self.fresh(count), 2], [self.fresh(count)], [2], [batch, 1]][index]
        if op == "SparseFillEmptyRows" and inputs[0] is not None:  # a row per empty row
            rows = self.fresh(f"{self._key(node.name)}:rows")
            return [[self.fresh(count), inputs[0][1]], [self.fresh(count)], [rows],
                    inputs[0][:1]][index]
        if op.endswith("SetOperation") and None not in inputs[:1]:  # a sparse result
            rank = inputs[0][-1] if op == "SparseToSparseSetOperation" else len(inputs[0])
            return [[self.fresh(count), rank], [self.fresh(count)], [rank]][index]
        if op == "Fill" and inputs[0] is not None and isinstance(inputs[0][0], int):
            return [self.fresh(f"{count}/{axis}") for axis in range(inputs[0][0])]
        rank = _rank(node, inputs)
        if rank is not None:
            return [self.fresh(f"{count}/{axis}") for axis in range(rank)]
        return None

    def _key(self, source: str) -> str:
        """What ``source`` computes, as text: equal for nodes that compute the same."""
        if source not in self._keys:
            if source in self._args:
                self._keys[source] = json.dumps(["arg", source])
            else:
                node = self._nodes[source]
                attrs = {k: _plain(node.attr(k)) for k in sorted(node.attrs)
                         if not k.startswith("_")}
                self._keys[source] = json.dumps(
                    [node.op, attrs, [[self._key(s), i] for s, i in node.inputs]])
        return self._keys[source]


def _broadcast(shapes: list[list[Dim] | None], fresh) -> list[Dim] | None:
    """NumPy's broadcast of ``shapes``; two different symbols on an axis make a fresh one
    (the device function checks that they agree)."""
    if any(s is None for s in shapes):
        return None
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0} - {1}
        static = [d for d in dims if isinstance(d, int)]
        if len(dims) <= 1:
            out.append(dims.pop() if dims else 1)
        else:
            out.append(static[0] if static else fresh(axis))
    return out


def _plain(value: Any) -> Any:
    """An attr value as JSON (arrays by their dtype, shape and bytes)."""
    if isinstance(value, np.ndarray):
        return [value.dtype.name, list(value.shape), value.tobytes().hex()]
    if isinstance(value, np.dtype):
        return value.name
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def _rank(node: graph.Node, inputs: list[list[Dim] | None]) -> int | None:
    """The rank of ``node``'s results when an operand whose values the graph does not
    know sets their sizes (a reshape's shape, a reduction's axes), or None."""
    op = node.op
    if op == "Reshape":
        shape = inputs[1]
        known = shape is not None and len(shape) == 1 and isinstance(shape[0], int)
        return shape[0] if known else None
    if op == "StridedSlice":
        return _sliced_rank(node, inputs[0], inputs[1])
    if op in _DIAGONALS:
        if None in (inputs[0], inputs[1]) or len(inputs[1]) > 1:
            return None
        # k: a scalar or one element, one diagonal (an axis fewer in the packed form);
        # two, a band (a two-element k of equal values is typed as a band of one).
        single = not inputs[1] or inputs[1][0] == 1
        return len(inputs[0]) + _DIAGONALS[op] * single
    if op in _RANK_CHANGE and inputs[_RANK_OF.get(op, 0)] is not None:
        return len(inputs[_RANK_OF.get(op, 0)]) + _RANK_CHANGE[op]
    if op not in _REDUCTIONS or None in (inputs[0], inputs[1]) or len(inputs[1]) > 1 or \
            not all(isinstance(d, int) for d in inputs[1]):
        return None
    # TF refuses repeated axes: each one removes a dimension, unless kept.
    axes = inputs[1][0] if inputs[1] else 1
    return len(inputs[0]) - (0 if node.attr("keep_dims", False) else axes)


def _sliced_rank(node: graph.Node, shape: list[Dim] | None, begin: list[Dim] | None
                 ) -> int | None:
    """The rank of a ``StridedSlice`` of an input of ``shape`` whose bounds or strides are
    computed (TF then records no rank): its masks' bits set it, for the spec's length
    (``begin``'s). A new axis adds one; a shrunk axis (neither new nor the ellipsis)
    removes one."""
    if shape is None or begin is None or len(begin) != 1 or not isinstance(begin[0], int):
        return None

    def bits(mask: str) -> list[int]:
        return [(int(node.attr(mask, 0)) >> i) & 1 for i in range(begin[0])]

    new, shrink = bits("new_axis_mask"), bits("shrink_axis_mask")
    ellipsis = bits("ellipsis_mask")
    return len(shape) + sum(new) - sum(s and not n and not e
                                       for s, n, e in zip(shrink, new, ellipsis))
