"""Splits a TF graph into a host stage (its string and table ops, and the ops whose output
shapes follow input values) and the device part.

A node runs on the host when it does not depend on a variable, a random op or a numeric
input, and it depends on a string input or is a string or table op itself (or the
initializer of such a table). Everything else stays in the device function, which takes
the host stage's numeric results as inputs (its *frontier*) and is exported as usual.

Sizes that the host stage decides (the number of tokens, of unique ids) become symbolic
dimensions of the device function's inputs. For a text stage, which of them are equal is
found by running the host stage on a few probe batches of different shapes: dimensions
whose sizes agree on every probe share one symbol. A numeric stage is typed from the graph
instead (:mod:`jaxhub_tf.from_tf.host_stages.shapes`), so that any valid input converts;
so is a text stage that parses numbers (``tf.strings.to_number``), which probe text is not.

A sparse-segment reduction whose segment ids come from the host (``embedding_lookup_sparse``)
has a number of output rows set by those values; the host stage then also feeds a
zero-filled array of that length (``size_of`` in the program), which the op reads its
size from (see ``ops/tf1.py``). When the ids follow the values of numeric inputs instead,
only what computes them moves to the host stage: the reduction stays on the device, so
that it may read params (an embedding table) and be differentiated. A random op whose
shape follows them stays on the device too (its key is the device function's): the host
stage computes the shape and feeds zeros of that shape, which the op reads it from.

Numeric signatures get a host stage too when an op's *output shape* follows its inputs'
values (``tf.range(n)``, one-argument ``tf.where``, ``tf.unique``, ``tf.boolean_mask``,
``x[:n]``, ``tf.math.bincount(x)``; not a non-max suppression padded to a constant size),
or when an op needs an operand while tracing that follows them (the interpreter's static
operands, :data:`jaxhub_tf.from_tf.interpreter.STATIC_OPERANDS`: the shape of
``tf.reshape``, the paddings of ``tf.pad``, the ``k`` of ``tf.math.top_k``, an axis):
a device function's shapes cannot depend on values. When such an op's inputs are
computed from the signature's inputs alone, through ops the host stage runs, that input
*cone* and the op move to the host stage, whose result reaches the device function with
a symbolic size. Only the cone moves: what follows the op stays on the device. Parts of
the cone that read only shapes and constants are computed on both sides, so that they
stay static on the device. When the cone reaches params, random numbers or ops the host
stage cannot run, the graph is refused, naming the op and what blocks it.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from jaxhub_tf.from_tf import graph
from jaxhub_tf.from_tf.host_stages import shapes
from jaxhub_tf.from_tf.interpreter import (SHAPE_OPS, STATIC_OPERANDS, StaticValueError,
                                            UnsupportedOpsError, reached_args,
                                            static_positions)
from jaxhub_tf.from_tf.ops import random as random_ops
from jaxhub import extend

#: Ops that work on strings or tables: they seed the host stage.
HOST_SEED_OPS = frozenset({
    "StringLower", "StringUpper", "StaticRegexReplace", "RegexReplace", "StringSplit",
    "StringSplitV2", "StringStrip", "StringToHashBucketFast", "StringToHashBucket",
    "StringToHashBucketStrong", "StringJoin", "StringLength", "Substr", "StringFormat",
    "AsString", "StringToNumber", "UnicodeDecode", "UnicodeEncode", "UnicodeTranscode",
    "HashTableV2", "MutableHashTableV2", "LookupTableFindV2", "LookupTableSizeV2",
    "LookupTableImportV2", "InitializeTableV2", "InitializeTableFromTextFileV2",
    "RegexFullMatch", "StaticRegexFullMatch", "ReduceJoin", "DecodeRaw", "StringNGrams",
    # tensorflow_text's ops (those on ids too: their models are constants, not params)
    "CaseFoldUTF8", "NormalizeUTF8", "NormalizeUTF8WithOffsetsMap", "RegexSplitWithOffsets",
    "WordpieceTokenizeWithOffsets", "FastWordpieceTokenizeWithOffsets",
    "TFText>FastWordpieceDetokenize", "FastBertNormalize", "WhitespaceTokenizeWithOffsets",
    "TFText>WhitespaceTokenizeWithOffsetsV2", "UnicodeScriptTokenizeWithOffsets",
    "TFText>RoundRobinTrim", "TFText>RoundRobinGenerateMasks",
    # tensorflow_text's SentencePiece ops (jaxhub/_src/host/sentencepiece.py)
    "SentencepieceOp", "SentencepieceTokenizeOp", "SentencepieceTokenizeWithOffsetsOp",
    "SentencepieceDetokenizeOp", "SentencepieceIdToStringOp", "SentencepieceStringToIdOp",
    "SentencepieceVocabSizeOp",
})

#: Host ops with string results besides the string ops themselves: output index -> string.
_STRING_OUTPUTS = {"StringSplit": {1}, "StringSplitV2": {1}, "RegexSplitWithOffsets": {0},
                   "WordpieceTokenizeWithOffsets": {0},
                   "FastWordpieceTokenizeWithOffsets": {0}, "FastBertNormalize": {0},
                   "TFText>WhitespaceTokenizeWithOffsetsV2": {0},
                   "NormalizeUTF8WithOffsetsMap": {0}}

#: Seed ops whose results are all numbers.
_NUMERIC_SEED_OPS = frozenset({
    "StringToHashBucketFast", "StringToHashBucket", "StringToHashBucketStrong",
    "LookupTableFindV2", "LookupTableSizeV2", "StringLength", "StringToNumber",
    "WhitespaceTokenizeWithOffsets", "UnicodeScriptTokenizeWithOffsets",
    "TFText>RoundRobinTrim", "TFText>RoundRobinGenerateMasks",
    "SentencepieceOp", "SentencepieceStringToIdOp", "SentencepieceVocabSizeOp",
})

#: Ops that refuse most text (they parse numbers): a stage with one cannot be probed.
_PARSE_OPS = frozenset({"StringToNumber"})

#: SentencePiece ops whose output 0 is a string only when their ``out_type`` says so.
_SENTENCEPIECE_TOKENIZERS = frozenset({"SentencepieceTokenizeOp",
                                       "SentencepieceTokenizeWithOffsetsOp"})

#: Ops whose results depend on params or randomness: never on the host.
_DEVICE_SEED_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable", "ReadVariableOp"}
                             ) | random_ops.KEYED_OPS

#: Ops that need the values of some inputs to trace (by position, negative from the end;
#: None: all): the interpreter's static operands, and ops that only the host stage runs.
VALUE_SHAPED_OPS: dict[str, tuple[int, ...] | None] = {
    **STATIC_OPERANDS,
    # A table lives in the host stage: a lookup of the signature's keys runs there.
    "LookupTableFindV2": (1,),
    # Its shape follows constants in most graphs, but only the host stage computes it.
    "CombinedNonMaxSuppression": None}

#: Non-max suppressions that can pad their result to ``max_output_size`` (input 2): padded,
#: only that input sets their shape, and a constant one leaves it static (a device op).
_PADDABLE_NMS = frozenset({"NonMaxSuppressionV4", "NonMaxSuppressionV5"})

#: Why a value-shaped op must run in the host stage, for messages (by op; default below).
_WHY_HOST = {"CombinedNonMaxSuppression": "has no device implementation",
             "LookupTableFindV2": "reads a table, which only the host stage holds"}
_VALUE_SHAPED = ("has an output shape set by the values of the signature's inputs, which a "
                 "device function cannot have")
_STATIC_OPERAND = ("needs a shape, size, axis or count while tracing that the values of the "
                   "signature's inputs set")


def shaped_by_values(fn: graph.Function) -> bool:
    """True when an op of ``fn`` has an output shape or a static operand that follows the
    values of its numeric args (``tf.range(n)``, ``x[:n]``, ``tf.reshape(x, shape)``): the
    function may need a host stage."""
    if not any(n.op in VALUE_SHAPED_OPS or n.op in _CARRIED
               or n.op in ("StridedSlice", "RaggedTensorToTensor") for n in fn.nodes.values()):
        return False
    order = _order(fn.nodes, [s for s, _ in fn.outputs] + list(fn.control_outputs))
    numeric = {a for a, d in zip(fn.args, fn.arg_dtypes) if _is_number(d)}
    return bool(_value_shaped(fn.nodes, order, numeric)[0])

#: Device ops whose output size is the largest of their segment ids plus one: the host
#: stage computes the ids and feeds that size (``size_of``); the op stays on the device.
SIZED_SEGMENT_OPS = frozenset({"SparseSegmentSqrtN", "SparseSegmentMean",
                               "SparseSegmentSum"})

#: The position of a sized segment op's segment ids.
_SEGMENT_IDS = 2

#: Device ops that draw random numbers of the shape their input 0 holds: when the values
#: of the signature's inputs set it, the host stage feeds zeros of that shape (int8), which
#: the op reads its shape from (see ``ops/random.py``).
SHAPE_CARRIED_OPS = frozenset({"RandomUniform", "RandomStandardNormal", "TruncatedNormal",
                               "RandomUniformInt"})

#: Device ops whose operand (at this position) the host stage computes when the values of
#: the signature's inputs set it, feeding the op what it needs to know its output shape.
_CARRIED = {**dict.fromkeys(SIZED_SEGMENT_OPS, _SEGMENT_IDS),
            **dict.fromkeys(SHAPE_CARRIED_OPS, 0)}


@dataclasses.dataclass
class Split:
    """A function split into a host stage and a device function.

    Attributes:
      program: the host stage as JSON (see :class:`jaxhub.extend.HostStage`), or None when the
        function needs none.
      device: the device part. Its args are the host stage's output names, then the
        original function's numeric args (all of them, without a host stage).
      sources: host stage output name -> the inputs (by the callers' names) its values
        are computed from, to name them in errors.
    """

    program: dict[str, Any] | None
    device: graph.Function
    sources: dict[str, list[str]] = dataclasses.field(default_factory=dict)


class HostStageUnsupportedError(UnsupportedOpsError):
    """String or table ops that the host stage cannot run; the message names them."""


def split(fn: graph.Function, *, table_initializers: Mapping[str, str] = {},
          assets: Mapping[str, str] = {}, input_names: Mapping[str, str] = {},
          host_args: frozenset[str] = frozenset(),
          input_shapes: Mapping[str, list] = {}) -> Split:
    """Splits ``fn`` into a host stage and a device function.

    Args:
      fn: the function, its args the signature's inputs.
      table_initializers: table node name -> the name of the node that initializes it.
      assets: const node name -> asset file name, for nodes holding an asset's path.
      input_names: arg -> the name callers give that input (the signature's key), for
        the host stage's inputs; default the arg's own name.
      host_args: numeric args that are host stage inputs too (a RaggedTensor's
        components: ragged ops run on the host), besides the string args.
      input_shapes: input name -> the shape of that host stage input (a scalar's ``[]``);
        default ``[None]``.

    Raises:
      HostStageUnsupportedError: a string or table op has no host implementation,
        strings would reach the device function, or an op whose output shape follows
        the inputs' values reads params or ops the host stage cannot run.
    """
    string_args = {a for a, d in zip(fn.args, fn.arg_dtypes) if d == np.dtype(object)}
    string_args |= set(host_args) & set(fn.args)  # the stage's inputs
    text = bool(string_args) or any(n.op in HOST_SEED_OPS for n in fn.nodes.values())
    if not text and not shaped_by_values(fn):
        return Split(None, fn)
    nodes = dict(fn.nodes)
    # Table initializers run on the host with their table.
    extra_roots = [init for table, init in table_initializers.items() if table in nodes]
    order = _order(nodes, [s for s, _ in fn.outputs] + list(fn.control_outputs) + extra_roots)
    numeric_inputs = {a for a, d in zip(fn.args, fn.arg_dtypes)
                      if (a in input_names or not input_names) and _is_number(d)}
    seeds, by_values = _value_shaped(nodes, order, numeric_inputs - string_args)
    if not text and not seeds:
        return Split(None, fn)
    # Numeric inputs are device values: what reads them runs on the device.
    device_dep: set[str] = set(fn.args) - string_args
    host: set[str] = set(string_args)
    for name in order:
        node = nodes[name]
        deps = [s for s, _ in node.inputs]
        if node.op in _DEVICE_SEED_OPS or any(d in device_dep for d in deps):
            device_dep.add(name)
        elif node.op in HOST_SEED_OPS or any(d in host for d in deps):
            host.add(name)
    # What host ops read from constants alone (a shape packed from constants) runs there
    # too: consumers come after their inputs in ``order``, so one backward pass suffices.
    # The device function keeps its own copy, so that those values stay static there.
    shared: set[str] = set()
    for name in reversed(order):
        if name in host:
            shared.update(d for d, _ in nodes[name].inputs
                          if d in nodes and d not in device_dep and d not in host
                          and nodes[d].op != "Const")
            host |= shared
    host |= {init for table, init in table_initializers.items() if table in host}
    cone, cone_inputs = _host_cones(nodes, [n for n in seeds if n not in host], host,
                                    numeric_inputs)
    host |= cone | cone_inputs
    # What only reads shapes and constants stays static on the device: both compute it.
    shared |= {n for n in cone - by_values if nodes[n].op != "Const"}
    string_args |= cone_inputs
    device_dep -= host
    _check_supported(nodes, host - string_args, fn, device_dep, shared)
    renamed = {a: input_names.get(a, a) for a in string_args}
    # A numeric stage's results are typed from the graph; a text stage's by probes, unless
    # it parses numbers, which probe text is not.
    from_graph = not text or any(nodes[n].op in _PARSE_OPS for n in host if n in nodes)
    specs = None if not from_graph else shapes.Specs(nodes, {
        a: (np.dtype(dtype), list(input_shapes.get(renamed[a], [None])))
        for a, dtype in zip(fn.args, fn.arg_dtypes) if a in renamed})
    return _build(fn, nodes, order, host, renamed, table_initializers, assets, shared,
                  input_shapes, specs, cone_inputs - set(host_args), input_names)


def _order(nodes: Mapping[str, graph.Node], roots: list[str]) -> list[str]:
    seen: set[str] = set()
    order: list[str] = []
    stack = [(r, False) for r in reversed(roots) if r in nodes]
    while stack:
        name, done = stack.pop()
        if done:
            order.append(name)
            continue
        if name in seen:
            continue
        seen.add(name)
        stack.append((name, True))
        node = nodes[name]
        for dep in [s for s, _ in node.inputs] + node.control_inputs:
            if dep in nodes and dep not in seen:
                stack.append((dep, False))
    return order


def _is_number(dtype: Any) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind in "biuf"


def _value_shaped(nodes: Mapping[str, graph.Node], order: list[str], inputs: set[str]
                  ) -> tuple[list[str], set[str]]:
    """The value-shaped ops (:data:`VALUE_SHAPED_OPS`) whose shape follows the values of
    ``inputs``, in ``order``; and every node whose values follow them.

    A shape op passes on the values' influence only when its input's shape follows them
    (``tf.shape(x)`` of an input is known to the device function, that of ``tf.where(x)``
    is not).
    """
    values, shaped, seeds = set(inputs), set(), []
    for name in order:
        node = nodes[name]
        deps = [s for s, _ in node.inputs]
        if any(d in (shaped if node.op in SHAPE_OPS else values) for d in deps):
            values.add(name)
        if any(deps[i] in values for i in _shaping_inputs(node, nodes) if i < len(deps)) or (
                node.op == "StridedSlice" and _slices_by_values(nodes, node, values)) or (
                node.op in _CARRIED and deps[_CARRIED[node.op]] in values):
            seeds.append(name)
            shaped.add(name)
        elif any(d in shaped for d in deps):
            shaped.add(name)
    return seeds, values


def _shaping_inputs(node: graph.Node, nodes: Mapping[str, graph.Node]) -> Sequence[int]:
    """The positions of the inputs of ``node`` whose values it needs to trace: they set
    its output shape (``tf.range(n)``, ``tf.reshape(x, shape)``) or an axis."""
    if node.op == "RaggedTensorToTensor":
        return _ragged_open_partitions(node, nodes)
    if node.op in _PADDABLE_NMS and node.attr("pad_to_max_output_size", False):
        return (2,)
    if node.op in STATIC_OPERANDS:
        return static_positions(node.op, len(node.inputs))
    positions = VALUE_SHAPED_OPS.get(node.op, ())
    return range(len(node.inputs)) if positions is None else positions


def _ragged_open_partitions(node: graph.Node,
                            nodes: Mapping[str, graph.Node]) -> Sequence[int]:
    """The input positions of RaggedTensorToTensor ``node``'s row partitions that set an
    output size its shape leaves open (a scalar or computed shape, or -1 there): the
    longest row, or the row count given as a value (``FIRST_DIM_SIZE``). Row splits set
    the row count by their length, a shape. Given every size, the device pads traced row
    partitions."""
    partitions = range(3, len(node.inputs))
    source = nodes.get(node.inputs[0][0])
    if source is None or source.op != "Const" or np.ndim(source.attr("value")) == 0:
        return partitions
    shape = np.asarray(source.attr("value"))
    # Partition k sets dimension k after a FIRST_DIM_SIZE, else dimension k + 1.
    offset = 0 if node.attr("row_partition_types")[0] == "FIRST_DIM_SIZE" else 1
    return [p for k, p in enumerate(partitions)
            if k + offset >= len(shape) or shape[k + offset] < 0]


def _reads_host(node: graph.Node, position: int, host: set[str]) -> bool:
    """True when input ``position`` of ``node`` is computed in the host stage ``host``."""
    return position < len(node.inputs) and node.inputs[position][0] in host


def _why_host(op: str) -> str:
    """Why a seed op runs in the host stage, for messages."""
    if op in _WHY_HOST:
        return _WHY_HOST[op]
    return _VALUE_SHAPED if VALUE_SHAPED_OPS.get(op, ()) is None else _STATIC_OPERAND


def _slices_by_values(nodes: Mapping[str, graph.Node], node: graph.Node,
                      values: set[str]) -> bool:
    """True when StridedSlice ``node`` has a slice bound or step that follows ``values``
    (``x[:n]``): its size does. Single-element indices (``x[i]``, shrink axes) and masked
    bounds keep the size static, as the device function computes them."""
    begin, end, strides = (ref[0] for ref in node.inputs[1:4])
    if strides in values:
        return True
    if begin not in values and end not in values:
        return False
    step_node = nodes.get(strides)
    if step_node is None or step_node.op != "Const":
        return True  # entries unknown: the device function could not slice by values
    masks = {m: int(node.attr(m, 0)) for m in ("begin_mask", "end_mask", "ellipsis_mask",
                                                "new_axis_mask", "shrink_axis_mask")}
    single = masks["ellipsis_mask"] | masks["new_axis_mask"] | masks["shrink_axis_mask"]
    for i in range(np.size(step_node.attr("value"))):
        bit = 1 << i
        if not single & bit and ((begin in values and not masks["begin_mask"] & bit)
                                 or (end in values and not masks["end_mask"] & bit)):
            return True
    return False


def _host_cones(nodes: Mapping[str, graph.Node], seeds: list[str], host: set[str],
                inputs: set[str]) -> tuple[set[str], set[str]]:
    """The nodes that compute ``seeds`` (themselves included, the nodes in ``host`` left
    out) and the signature ``inputs`` they read: what moves to the host stage.

    Raises:
      HostStageUnsupportedError: a seed's inputs come from params, random numbers or ops
        the host stage cannot run (named).
    """
    cone: set[str] = set()
    read: set[str] = set()
    blocked: dict[str, set[str]] = {}
    for seed in seeds:
        stack = _cone_roots(nodes[seed])
        while stack:
            name = stack.pop()
            if name in cone or name in host or name in read:
                continue
            if name in inputs:
                read.add(name)
                continue
            node = nodes.get(name)
            why = _why_not_on_host(node) if node is not None else "a captured value"
            if why:
                what = f"{node.op} {name!r}" if node is not None else repr(name)
                blocked.setdefault(seed, set()).add(f"{what} ({why})")
                continue
            cone.add(name)
            stack.extend(s for s, _ in node.inputs)
    if blocked:
        raise HostStageUnsupportedError("; ".join(
            f"{nodes[seed].op} node {seed!r} {_why_host(nodes[seed].op)}"
            f"; the host stage could compute it before the device function, but its inputs "
            f"also come from what only the device computes: {sorted(what)}. Compute them "
            f"from the signature's inputs with ops the host stage runs, or pass the result "
            f"as an input" for seed, what in sorted(blocked.items()))
            + f". The host stage runs: {extend.supported_host_ops()}")
    return cone, read


def _cone_roots(node: graph.Node) -> list[str]:
    """What a seed op needs the host stage to compute: itself, or for a sized segment op
    or a random op only the operand that sets its shape (:data:`_CARRIED`)."""
    if node.op in _CARRIED:
        return [node.inputs[_CARRIED[node.op]][0]]
    return [node.name]


def _why_not_on_host(node: graph.Node) -> str | None:
    """Why ``node`` cannot run in a host stage, or None when it can."""
    if node.op in _DEVICE_SEED_OPS:
        return "params or random numbers"
    if node.op == "Const":
        return None
    if not extend.has_host_op(node.op):
        return "no host implementation"
    return "; ".join(extend.host_op_attr_problems(node, node.attrs,
                                                  graph.implicit_attrs(node.op))) or None


def _check_supported(nodes, host: set[str], fn, device_dep: set[str],
                     shared: set[str] = frozenset()) -> None:
    missing = sorted({nodes[n].op for n in host
                      if nodes[n].op != "Const" and not extend.has_host_op(nodes[n].op)})
    strings_to_device = sorted({
        node.op for name, node in nodes.items() if name in device_dep
        and node.op not in _DEVICE_SEED_OPS and any(
            s in host and _is_string(nodes, fn, s, i) for s, i in node.inputs)})
    bad_attrs = sorted(
        f"{nodes[n].op} node {n!r}: {problem}" for n in host
        if extend.has_host_op(nodes[n].op)
        for problem in extend.host_op_attr_problems(nodes[n], nodes[n].attrs,
                                              graph.implicit_attrs(nodes[n].op)))
    host_sized = sorted({
        nodes[name].op for name in device_dep if name in nodes
        and any(_reads_host(nodes[name], i, host - shared)
                for i in _shaping_inputs(nodes[name], nodes))})
    string_outputs = _string_outputs(nodes, fn)
    if missing or strings_to_device or bad_attrs or host_sized or string_outputs:
        lines = []
        if missing:
            lines.append(f"string/table op(s) with no host implementation: {missing}")
        if bad_attrs:
            lines.append("attribute(s) the host stage does not handle: " + "; ".join(bad_attrs))
        if strings_to_device:
            lines.append(f"op(s) that mix strings with params: {strings_to_device}")
        if host_sized:
            lines.append(f"device op(s) whose output size the host stage computes (a shape "
                         f"must be static): {host_sized}")
        if string_outputs:
            lines.append(f"string result(s) {string_outputs} (a signature returns numbers: "
                         f"hash or look up strings to ids in the graph)")
        raise HostStageUnsupportedError(
            "this graph's string preprocessing cannot run in jaxhub: " + "; ".join(lines)
            + f". The host stage runs: {extend.supported_host_ops()}")


def _string_outputs(nodes, fn) -> list[str]:
    """The names of ``fn``'s results that are strings (by the op's type when the op is no
    string op itself: ``tf.concat`` of strings)."""
    dtypes = shapes.Specs(nodes, {})
    return [name for (source, index), name in zip(fn.outputs, fn.output_names)
            if _is_string(nodes, fn, source, index) or (
                source in nodes and dtypes.dtype((source, index)) == np.dtype(object))]


def _is_string(nodes, fn, source: str, index: int) -> bool:
    if source in fn.args:
        return fn.arg_dtypes[fn.args.index(source)] == np.dtype(object)
    node = nodes[source]
    if node.op in _SENTENCEPIECE_TOKENIZERS:
        return index == 0 and node.attr("out_type") == np.dtype(object)
    if node.op in _STRING_OUTPUTS:
        return index in _STRING_OUTPUTS[node.op]
    return node.op in HOST_SEED_OPS and node.op not in _NUMERIC_SEED_OPS


def _build(fn, nodes, order, host, string_args: Mapping[str, str], table_initializers,
           assets, shared: set[str] = frozenset(),
           input_shapes: Mapping[str, list] = {}, specs: shapes.Specs | None = None,
           passed: set[str] = frozenset(),
           input_names: Mapping[str, str] = {}) -> Split:
    """The host program and the device function; ``string_args`` maps arg -> input name,
    ``shared`` names host nodes of constants alone, which the device function computes too,
    ``input_shapes`` the inputs' shapes by name (default ``[None]``), ``specs`` the
    shapes of the graph's values, when they are known without running the stage.
    ``passed`` are numeric inputs of the stage: those the device function reads too reach
    it under their own names and specs, so that their unknown sizes are the signature's
    (related to the other inputs' only where the device function ties them).
    ``input_names`` maps the other args to input names, for :attr:`Split.sources`.
    """
    program_nodes, consts = [], set()
    for name in order:
        if name not in host or name in string_args:
            continue
        node = nodes[name]
        for dep, _ in node.inputs:
            if dep in nodes and nodes[dep].op == "Const" and dep not in consts and \
                    dep not in host:
                consts.add(dep)
                program_nodes.append(_const(nodes[dep], assets))
        program_nodes.append(_const(node, assets) if node.op == "Const" else
                             {"name": name, "op": node.op,
                              "inputs": [[string_args.get(s, s), i] for s, i in node.inputs],
                              "attrs": _json_attrs(node)})
    frontier: dict[tuple[str, int], str] = {}
    size_of: dict[str, list] = {}
    carriers: dict[str, tuple[str, int]] = {}  # zeros of a shape the host computes: its ref

    def feed(ref: tuple[str, int]) -> str:
        if ref not in frontier:
            frontier[ref] = (string_args[ref[0]] if ref[0] in passed
                             else f"host_{len(frontier)}")
        return frontier[ref]

    def on_host(ref: tuple[str, int]) -> bool:
        return ref[0] in host and ref[0] not in shared

    device_nodes = {}
    for name in order:
        if name in host and name not in shared:
            continue
        node = nodes[name]
        inputs = [(feed(ref), 0) if on_host(ref) else ref for ref in node.inputs]
        if node.op in SIZED_SEGMENT_OPS and on_host(node.inputs[_SEGMENT_IDS]):
            key = f"size_{len(size_of)}"
            ids, index = node.inputs[_SEGMENT_IDS]
            size_of[key] = [string_args.get(ids, ids), index]
            inputs.append((key, 0))
        if node.op in SHAPE_CARRIED_OPS and on_host(node.inputs[0]):
            carrier = f"{name}/shape_carrier"
            program_nodes += _zeros_of_shape(carrier, node.inputs[0], string_args)
            carriers[carrier] = node.inputs[0]
            inputs.append((feed((carrier, 0)), 0))
        device_nodes[name] = dataclasses.replace(node, inputs=inputs, _decoded={})
    outputs = [(feed(ref), 0) if on_host(ref) else ref for ref in fn.outputs]
    # Numeric args (inputs, captured handles) stay args of the device function, after the
    # host stage's results.
    args = list(frontier.values()) + list(size_of) + [a for a in fn.args
                                                      if a not in string_args]
    dtypes = dict(zip(fn.args, fn.arg_dtypes))
    program = {
        "inputs": {name: {"dtype": _dtype_name(dtypes[arg]),
                          "shape": list(input_shapes.get(name, [None]))}
                   for arg, name in sorted(string_args.items(), key=lambda kv: kv[1])},
        "nodes": program_nodes,
        "init": [init for table, init in table_initializers.items() if table in host],
        "outputs": {name: [string_args.get(ref[0], ref[0]), ref[1]]
                    for ref, name in frontier.items()},
        "size_of": size_of,
        # By output position here; the signature's keys once the caller names them.
        "reaches": _reaches(device_nodes, outputs, [*frontier.values(), *size_of]),
    }
    output_specs = (_output_specs(specs, frontier, size_of, carriers) if specs is not None
                    else None)
    if specs is not None and output_specs is None:
        _refuse_value_set_ranks(specs, nodes, frontier, fn.args, string_args)
    for ref, name in frontier.items():
        if output_specs is not None and ref[0] in passed:  # the input's own spec
            output_specs[name]["shape"] = list(input_shapes.get(name, [None]))
    if output_specs is not None:
        program["output_specs"] = output_specs
    device = graph.Function(fn.name, args, [None] * len(args), device_nodes, outputs,
                                fn.output_names,
                                [c for c in fn.control_outputs if c not in host])
    sources = {name: [input_names.get(fn.args[i], fn.args[i])
                      for i in reached_args(fn, [ref])] for ref, name in frontier.items()}
    return Split(program, device, sources)


def _reaches(nodes: Mapping[str, graph.Node], outputs: Sequence[tuple[str, int]],
             feeds: Sequence[str]) -> dict[str, list[int]]:
    """For each of the device function's ``feeds``, the positions of the ``outputs``
    computed from it (from its values or its shape), through the device ``nodes``.

    A call whose host stage returns an empty result runs the device function for the
    outputs that do not read it (see :meth:`jaxhub.Module.apply`).
    """
    reached = [graph.upstream(nodes, [name]) for name, _ in outputs]
    return {feed: [i for i, names in enumerate(reached) if feed in names] for feed in feeds}


def name_reaches(program: dict[str, Any], keys: Sequence[tuple[str, int]]) -> None:
    """Names the outputs in the host stage ``program``'s ``reaches`` (positions of the
    device function's outputs, see :func:`_reaches`) by the signature's output ``keys``
    (key, position); drops it when an output has no key of its own (a bare single
    output)."""
    named = {i: sorted(k for k, j in keys if j == i) for _, i in keys}
    if not all(i in named for reached in program["reaches"].values() for i in reached):
        del program["reaches"]
        return
    program["reaches"] = {feed: sorted({k for i in reached for k in named[i]})
                          for feed, reached in program["reaches"].items()}


def _output_specs(specs: shapes.Specs, frontier: Mapping[tuple[str, int], str],
                  size_of: Mapping[str, list], carriers: Mapping[str, tuple[str, int]] = {}
                  ) -> dict[str, dict[str, Any]] | None:
    """The specs of the stage's results, as :func:`device_input_specs` returns them; None
    when the graph does not record a result's rank (a slice with computed strides, a
    graph saved without shapes): those stages are probed. ``carriers`` are zeros of the
    shapes that refs hold (by name)."""
    out = {}
    for ref, name in frontier.items():
        spec = specs.spec(ref) if ref[0] not in carriers else _carrier_spec(
            specs, ref[0], carriers[ref[0]])
        if spec is None:
            return None
        out[name] = {"shape": spec[0], "dtype": _dtype_name(spec[1])}
    for key in size_of:  # zeros as long as the largest id + 1: a size of its own
        out[key] = {"shape": [specs.fresh(f"size_of/{key}")], "dtype": "int8"}
    return out


def _refuse_value_set_ranks(specs: shapes.Specs, nodes: Mapping[str, graph.Node],
                            frontier: Mapping[tuple[str, int], str], args: Sequence[str],
                            string_args: Mapping[str, str]) -> None:
    """Refuses a stage result whose rank the values of the signature's inputs set: a
    reshape's (or one computed from it) to a shape whose length is computed.

    Raises:
      HostStageUnsupportedError: naming the reshape, the inputs that set its rank and
        the fix.
    """
    for ref, name in frontier.items():
        if specs.spec(ref) is not None:
            continue
        reshape = next((nodes[n] for n in _ancestors(nodes, [ref[0]])
                        if n in nodes and nodes[n].op == "Reshape"
                        and _value_set_length(specs, nodes[n])), None)
        if reshape is None:
            continue
        shape = _ancestors(nodes, [reshape.inputs[1][0]])
        inputs = sorted(string_args.get(a, a) for a in shape if a in args)
        raise HostStageUnsupportedError(
            f"Reshape node {reshape.name!r} reshapes to a shape whose length the values of "
            f"the signature's inputs {inputs} set, so the rank of its result (and of the "
            f"host stage's result {name!r}, {ref[0]!r}, output {ref[1]}) follows them; a "
            f"device function's inputs and a signature's outputs need ranks: give it a "
            f"static rank (tf.ensure_shape, a shape of static length) and save the "
            f"SavedModel again")


def _value_set_length(specs: shapes.Specs, reshape: graph.Node) -> bool:
    """Whether the length of ``reshape``'s shape operand is a size that values set."""
    length = specs.shape(reshape.inputs[1])
    return length is not None and len(length) == 1 and isinstance(length[0], str)


def _ancestors(nodes: Mapping[str, graph.Node], names: Sequence[str]) -> list[str]:
    """``names`` and the nodes (or args) they are computed from, nearest first."""
    seen, order, pending = set(), [], list(names)
    while pending:
        name = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        if name in nodes:
            pending.extend(source for source, _ in nodes[name].inputs)
    return order


def _zeros_of_shape(name: str, shape: tuple[str, int], string_args: Mapping[str, str]
                    ) -> list[dict[str, Any]]:
    """Host program nodes computing ``name``: int8 zeros of the shape ``shape`` holds."""
    zero = {"name": f"{name}/zero", "op": "Const",
            "attrs": {"value": extend.encode_array(np.zeros((), np.int8))}}
    return [zero, {"name": name, "op": "Fill", "attrs": {},
                   "inputs": [[string_args.get(shape[0], shape[0]), shape[1]],
                              [zero["name"], 0]]}]


def _carrier_spec(specs: shapes.Specs, name: str, shape: tuple[str, int]
                  ) -> tuple[list, np.dtype] | None:
    """The spec of zeros of the shape ``shape`` holds: a size of its own per axis; None
    when the graph does not record how many axes (the shape's length)."""
    length = specs.shape(shape)
    if length is None or len(length) != 1 or not isinstance(length[0], int):
        return None
    return [specs.fresh(f"{name}/{axis}") for axis in range(length[0])], np.dtype(np.int8)


def _dtype_name(dtype: np.dtype) -> str:
    return "string" if dtype == np.dtype(object) else np.dtype(dtype).name


def _const(node: graph.Node, assets: Mapping[str, str]) -> dict[str, Any]:
    if node.name in assets:
        return {"name": node.name, "op": "Asset", "attrs": {"name": assets[node.name]}}
    return {"name": node.name, "op": "Const",
            "attrs": {"value": extend.encode_array(node.attr("value"))}}


def _json_attrs(node: graph.Node) -> dict[str, Any]:
    attrs = {}
    for key in node.attrs:
        if key.startswith("_"):
            continue
        value = node.attr(key)
        if isinstance(value, np.dtype):
            value = "string" if value == np.dtype(object) else value.name
        elif isinstance(value, np.ndarray):
            value = extend.encode_array(value)
        elif isinstance(value, tuple) or value is None:
            value = None if value is None else list(value)
        attrs[key] = value
    return attrs


def explaining_host_sizes(run: Callable, program: Mapping[str, Any],
                          specs: Mapping[str, Any],
                          sources: Mapping[str, Sequence[str]] = {}) -> Callable:
    """``run`` (a device function of the host stage ``program``, whose inputs have the
    specs ``specs``), failing with what sets the host stage's sizes that its error names.

    Those sizes are symbols that only the stage's run decides: a device op that needs one
    equal to another size, or a divisor of one, cannot be traced. A
    :class:`StaticValueError` names the signature's inputs behind a host stage result
    (``sources``, :attr:`Split.sources`) instead of the result.
    """
    origins = {}
    for key, spec in specs.items():
        source = program["outputs"].get(key) or program.get("size_of", {}).get(key)
        for axis, dim in enumerate(spec.shape if source else ()):
            if isinstance(dim, str) and dim != "batch":
                origins.setdefault(dim, f"{dim} is axis {axis} of the host stage's result "
                                        f"{key!r} ({source[0]!r}, output {source[1]})")

    def explained(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        except StaticValueError as e:
            e.name_sources(sources)
            raise
        except Exception as e:  # noqa: BLE001  (any op's error: named, then re-raised)
            named = [text for dim, text in origins.items()
                     if re.search(rf"\b{re.escape(dim)}\b", str(e))]
            if not named:
                raise
            first_line = str(e).split("\n")[0].rstrip(".")
            raise HostStageUnsupportedError(
                f"{first_line}. {'; '.join(named)}: a size that the values of the "
                f"signature's inputs set, which the device function cannot compare with "
                f"other sizes. Give it a static size in the graph (tf.ensure_shape) and "
                f"save the SavedModel again") from e

    explained.draws_random = getattr(run, "draws_random", False)
    return explained


def stage_shape(spec: Any) -> list[int | None]:
    """The shape of a host stage input for a signature input of spec ``spec`` (a
    :class:`jaxhub.TensorSpec`): its sizes, None for each unknown one."""
    return [d if isinstance(d, int) else None for d in spec.shape]


def device_input_specs(program: Mapping[str, Any], assets: Mapping[str, pathlib.Path]
                       ) -> dict[str, Any]:
    """Specs of the device function's inputs, with symbolic sizes shared where they agree.

    A numeric stage records them (``output_specs``, read from the graph). A text stage
    runs the host stage on probe batches of different sizes, token counts and repeats;
    each axis gets the tuple of its sizes over the probes, and equal tuples share one
    symbol (``"batch"`` for the one that follows the number of input strings). A leading
    axis is always symbolic (token and id counts vary with the text even where the probes
    happen to agree); a later axis of constant size is fixed (``[n, 2]`` indices).
    """
    import jaxhub
    if "output_specs" in program:
        return {name: jaxhub.TensorSpec(spec["shape"], spec["dtype"])
                for name, spec in program["output_specs"].items()}
    stage = extend.HostStage(program, assets)
    try:
        runs = [stage.run(_probe_inputs(stage.input_specs, batch)) for batch in _PROBES]
    except extend.HostStageError as e:
        numeric = all(spec["dtype"] != "string" for spec in stage.input_specs.values())
        raise HostStageUnsupportedError(
            (_UNTYPED if numeric else "") +
            f"the host stage fails on the sample inputs that find its sizes: {e}") from None
    symbols: dict[tuple[int, ...], str] = {tuple(len(b) for b in _PROBES): "batch"}
    specs = {}
    for name in list(program["outputs"]) + list(program.get("size_of", {})):
        first = runs[0][name]
        dims = []
        for axis in range(first.ndim):
            sizes = tuple(r[name].shape[axis] for r in runs)
            if axis > 0 and len(set(sizes)) == 1:
                dims.append(sizes[0])
            else:
                dims.append(symbols.setdefault(sizes, f"n{len(symbols)}"))
        specs[name] = jaxhub.TensorSpec(dims, first.dtype)
    return specs


#: Why a numeric stage is probed, for messages: the graph left a result's rank unknown.
_UNTYPED = ("the graph records no rank for a result of the host stage (its rank follows the "
            "values of the signature's inputs, as that of a reshape to a shape of computed "
            "length does; a device function's inputs need ranks): give it a static rank "
            "(tf.ensure_shape, a shape of static length) and save the SavedModel again; ")


#: Probe batches: growing, with repeated and distinct words, an empty string, punctuation.
_PROBES = [
    [b"a"],
    [b"the of", b"a a a"],
    [b"x y z w", b"x", b"q q", b"long sentence."],
    [b"one two three", b"", b"word", b"a b c d e f", b"tok"],
    [b"Hello, World!", b"hello world", b"r s t u v w x y", b"single-word", b"m", b"n n n n"],
    [b"http://example-url.com", b"1 2 3 4 5 6 7 8 9", b"A", b"B b", b"c C c", b"d", b"e f"],
]


#: The smallest probe value of a scalar integer host input: above the few tokens that
#: packing adds (``[CLS]``, ``[SEP]``), so that the probes keep some text.
_SCALAR_PROBE = 16


def _probe_inputs(specs: Mapping[str, Mapping[str, Any]], batch: list[bytes]
                  ) -> dict[str, np.ndarray]:
    """The host stage's inputs for one probe batch: the strings themselves, or, for the
    components of a ragged input (``x.values``, ``x.row_splits.0``, ...; see
    :class:`jaxhub.Ragged`), the ids of its bytes: rows, then words, then bytes."""
    inputs = {}
    for name, spec in specs.items():
        if spec["dtype"] == "string":
            inputs[name] = _text_probe(batch, spec["shape"])
            continue
        if spec["shape"] == [] and np.dtype(spec["dtype"]).kind in "iu":
            # A scalar that sets a size (BERT packing's ``seq_length``): a value per probe,
            # so that the sizes it sets become symbolic.
            inputs[name] = np.asarray(_SCALAR_PROBE + 4 * len(batch), spec["dtype"])
            continue
        base, level = extend.ragged_component(name)
        if base is None:  # the input of an op whose shape follows values (split())
            inputs[name] = _numeric_probe(spec, len(batch))
            continue
        depth = sum(extend.ragged_component(k)[0] == base and k != f"{base}.values"
                    for k in specs)
        if not depth:
            raise HostStageUnsupportedError(
                f"host stage input {name!r}: numbers that are not a ragged tensor's "
                f"components cannot be probed for their sizes")
        value = _ragged_probe(batch, depth)[depth if level is None else level]
        inputs[name] = value.astype(spec["dtype"])
    return inputs


def _text_probe(batch: list[bytes], shape: list[int | None]) -> np.ndarray:
    """The probe's texts in an array of the input's ``shape``, repeated as they fill it
    (a scalar input takes the first). Unknown sizes vary with the probe: the batch's on
    axis 0, one more per later axis, so that each follows a symbol of its own."""
    dims = [len(batch) + axis if d is None else int(d) for axis, d in enumerate(shape)]
    flat = np.empty(int(np.prod(dims)), dtype=object)
    flat[:] = [batch[i % len(batch)] for i in range(flat.size)]
    return flat.reshape(dims)


def _numeric_probe(spec: Mapping[str, Any], batch: int) -> np.ndarray:
    """Small numbers for a numeric host input, their unknown sizes ``batch``: different
    for each probe, so that sizes that follow the values get symbols of their own.
    Integers are 0 or 1 (valid indices, partitions, counts), floats of either sign."""
    dtype = np.dtype(spec["dtype"])
    if spec["shape"] == []:
        return np.asarray(_SCALAR_PROBE + 4 * batch, dtype)
    shape = [batch if d is None else int(d) for d in spec["shape"]]
    low = -2 if dtype.kind == "f" else 0
    high = 6 if dtype.kind == "f" else 2
    return np.random.default_rng(batch).integers(low, high, shape).astype(dtype)


def _ragged_probe(batch: list[bytes], depth: int) -> list[np.ndarray]:
    """Row splits (outermost first) and flat values of a ragged probe of rank
    ``depth + 1``: texts -> words -> bytes, or texts -> bytes for ``depth`` 1."""
    words = [t.split() for t in batch]
    if depth == 1:
        pieces = [b"".join(w) for w in words]
        splits = [np.cumsum([0] + [len(p) for p in pieces])]
    else:
        flat_words = [w for row in words for w in row]
        splits = [np.cumsum([0] + [len(row) for row in words]),
                  np.cumsum([0] + [len(w) for w in flat_words])]
        pieces = flat_words
        for _ in range(depth - 2):  # deeper levels: one element per item
            splits.append(np.arange(splits[-1][-1] + 1))
    values = np.frombuffer(b"".join(pieces), np.uint8).astype(np.int64) % 5 + 1
    return splits + [values]
