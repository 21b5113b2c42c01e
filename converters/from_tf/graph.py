"""TF graphs as the interpreter sees them: nodes with decoded attributes, wired by index.

A ``GraphDef`` names a node's inputs ``"node:k"``; a ``FunctionDef`` names them
``"node:output_arg:k"`` and its arguments by bare name. Both are normalized here to one
form, :class:`Function`: a list of :class:`Node` whose inputs are ``(source, index)`` pairs,
where ``source`` is a node name or an argument name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from jaxhub_tf.from_tf.reader import op_defs, tensors
from jaxhub_tf.from_tf.reader.protos import AttrValue, FunctionDef, GraphDef

_MISSING = object()
_LIST_FIELDS = ("s", "i", "f", "b", "type", "shape", "tensor", "func")


def decode_dtype(enum: int) -> Any:
    """A TF ``DataType`` enum as a ``numpy.dtype`` (strings: object; resources: a name)."""
    return tensors.numpy_dtype(enum)


def decode_shape(proto) -> tuple[int | None, ...] | None:
    """A ``TensorShapeProto`` as a tuple, ``None`` for unknown sizes (``None`` if no rank)."""
    if proto.unknown_rank:
        return None
    return tuple(None if d.size < 0 else int(d.size) for d in proto.dim)


def decode_attr(value: AttrValue) -> Any:
    """An ``AttrValue`` as Python/numpy (see :class:`registry.Node`)."""
    kind = value.WhichOneof("value")
    if kind == "list":
        for field in _LIST_FIELDS:
            entries = getattr(value.list, field)
            if entries:
                return [_decode_value(field, e) for e in entries]
        return []
    if kind == "placeholder":
        raise ValueError(f"attribute placeholder {value.placeholder!r} was never bound")
    if kind is None:
        return None
    return _decode_value(kind, getattr(value, kind))


def _decode_value(kind: str, value: Any) -> Any:
    """One value of an ``AttrValue`` (or of its list) held in field ``kind``."""
    if kind == "s":
        return value.decode("utf-8", errors="surrogateescape")
    if kind == "type":
        return decode_dtype(value)
    if kind == "shape":
        return decode_shape(value)
    if kind == "tensor":
        return tensors.to_numpy(value)
    if kind == "func":
        return value.name
    return value  # i, f, b


@dataclasses.dataclass(eq=False)
class Node:
    """One TF node: the :class:`registry.Node` protocol, plus its wiring.

    Attributes:
      name: the node's name.
      op: the TF op name (or a library function's name, for a direct call).
      inputs: data inputs, as ``(source, output index)``; ``source`` is a node or an
        argument of the enclosing function.
      control_inputs: names of nodes that must run first.
    """

    name: str
    op: str
    inputs: list[tuple[str, int]]
    control_inputs: list[str]
    attrs: Mapping[str, AttrValue]
    _decoded: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def attr(self, key: str, default: Any = _MISSING) -> Any:
        """The attribute ``key``, decoded; ``default`` (or KeyError) when absent."""
        if key not in self._decoded:
            # SavedModels strip attributes left at their default: the OpDef has those.
            value = self.attrs[key] if key in self.attrs else _default_attr(self.op, key)
            if value is None:
                if default is _MISSING:
                    raise KeyError(f"node {self.name!r} ({self.op}) has no attribute {key!r}")
                return default
            self._decoded[key] = decode_attr(value)
        return self._decoded[key]

    def has_attr(self, key: str) -> bool:
        return key in self.attrs or _default_attr(self.op, key) is not None


def implicit_attrs(op: str) -> frozenset[str]:
    """The attributes of TF op ``op`` that only describe its arguments.

    Those are the OpDef's ``type``/``list(type)`` attributes (``T``, ``Tidx``, ``DstT``;
    the values carry their dtypes) and the counts of its list arguments (``N``): an op
    implementation need not declare them. Empty for an op TF does not know.
    """
    op_def = op_defs.get(op)
    if op_def is None:
        return frozenset()
    if id(op_def) not in _IMPLICIT:  # the entry keeps op_def alive, so its id stays its own
        args = list(op_def.input_arg) + list(op_def.output_arg)
        counts = {a.number_attr for a in args} | {a.type_list_attr for a in args}
        _IMPLICIT[id(op_def)] = (op_def, frozenset(
            a.name for a in op_def.attr
            if a.type in ("type", "list(type)") or a.name in counts))
    return _IMPLICIT[id(op_def)][1]


_IMPLICIT: dict[int, tuple[Any, frozenset[str]]] = {}


def _default_attr(op: str, key: str) -> AttrValue | None:
    op_def = op_defs.get(op)
    for attr in op_def.attr if op_def is not None else ():
        if attr.name == key and attr.HasField("default_value"):
            return attr.default_value
    return None


@dataclasses.dataclass(eq=False)
class Function:
    """A graph to evaluate: arguments in, nodes, outputs.

    Attributes:
      name: the function's name (``""`` for a bare GraphDef).
      args: argument names, in call order.
      arg_dtypes: their dtypes, decoded.
      nodes: every node, by name, in the order of the proto.
      outputs: the function's results as ``(source, index)``.
      output_names: the names of the results (a FunctionDef's output args).
      control_outputs: nodes that must run even though no output depends on them.
    """

    name: str
    args: list[str]
    arg_dtypes: list[Any]
    nodes: dict[str, Node]
    outputs: list[tuple[str, int]]
    output_names: list[str]
    control_outputs: list[str]

    def resolve_identity(self, ref: tuple[str, int]) -> tuple[str, int]:
        """Follows ``Identity`` nodes back from ``ref`` (to see loop-invariant values)."""
        while ref[0] in self.nodes and self.nodes[ref[0]].op == "Identity":
            ref = self.nodes[ref[0]].inputs[0]
        return ref


def upstream(nodes: Mapping[str, Node], names: Iterable[str],
             stop_ops: frozenset[str] = frozenset()) -> set[str]:
    """``names`` and every name they are computed from, walking back through the inputs
    of ``nodes`` (names that are no node, such as function args, end a path); a node whose
    op is in ``stop_ops`` is reached but its inputs are not."""
    seen, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in nodes and nodes[name].op not in stop_ops:
            pending.extend(source for source, _ in nodes[name].inputs)
    return seen


def parse_ref(ref: str) -> tuple[str, int] | None:
    """``"node:3"`` -> ``("node", 3)``; ``"node"`` -> ``("node", 0)``; control -> None."""
    if ref.startswith("^"):
        return None
    name, _, index = ref.partition(":")
    return name, int(index) if index else 0


def function_from_graph_def(graph_def: GraphDef, inputs: Iterable[str] = (),
                            outputs: Iterable[str] = ()) -> Function:
    """A GraphDef as a :class:`Function` from tensors ``inputs`` to tensors ``outputs``.

    Args:
      graph_def: the graph.
      inputs: tensor names (``"x:0"``) that become the arguments, replacing their nodes.
      outputs: tensor names to return.
    """
    nodes = {}
    for proto in graph_def.node:
        refs = [parse_ref(r) for r in proto.input]
        nodes[proto.name] = Node(proto.name, proto.op, [r for r in refs if r is not None],
                                 [r[1:] for r in proto.input if r.startswith("^")],
                                 proto.attr)
    args, arg_dtypes = [], []
    for tensor in inputs:
        name, index = parse_ref(tensor)
        if index != 0:
            raise ValueError(f"graph input {tensor!r} is not a node's first output")
        args.append(name)
        arg_dtypes.append(nodes[name].attr("dtype", None))
        del nodes[name]
    outs = [parse_ref(t) for t in outputs]
    return Function("", args, arg_dtypes, nodes, outs, [t for t in outputs], [])


def function_from_function_def(fdef: FunctionDef,
                               library: Mapping[str, FunctionDef]) -> Function:
    """A FunctionDef as a :class:`Function`; ``library`` resolves calls by function name."""
    args = [a.name for a in fdef.signature.input_arg]
    arg_dtypes = [decode_dtype(a.type) for a in fdef.signature.input_arg]
    out_ranges = {}  # node -> output arg name -> first flat index
    for proto in fdef.node_def:
        out_ranges[proto.name] = _output_offsets(proto, library)
    arg_set = set(args)

    def resolve(ref: str) -> tuple[str, int]:
        parts = ref.split(":")
        if len(parts) == 1:
            if parts[0] not in arg_set:
                raise ValueError(f"function {fdef.signature.name}: unknown input {ref!r}")
            return parts[0], 0
        node, arg, index = parts
        return node, out_ranges[node][arg] + int(index)

    nodes = {}
    for proto in fdef.node_def:
        data = [resolve(r) for r in proto.input if not r.startswith("^")]
        control = [r[1:] for r in proto.input if r.startswith("^")]
        nodes[proto.name] = Node(proto.name, proto.op, data, control, proto.attr)
    names = [a.name for a in fdef.signature.output_arg]
    outputs = [resolve(fdef.ret[n]) for n in names]
    control_outputs = [fdef.control_ret[n] for n in fdef.signature.control_output]
    return Function(fdef.signature.name, args, arg_dtypes, nodes, outputs, names,
                    control_outputs)


def _output_offsets(proto, library: Mapping[str, FunctionDef]) -> dict[str, int]:
    """Where each named output list of ``proto`` starts among its flat outputs."""
    if proto.op in library:
        return {a.name: i for i, a in enumerate(library[proto.op].signature.output_arg)}
    op_def = op_defs.get(proto.op)
    if op_def is None:
        return {}  # unknown op: reported by the interpreter's coverage check
    offsets, start = {}, 0
    for arg in op_def.output_arg:
        offsets[arg.name] = start
        if arg.number_attr:
            start += _node_attr(proto, op_def, arg.number_attr).i
        elif arg.type_list_attr:
            start += len(_node_attr(proto, op_def, arg.type_list_attr).list.type)
        else:
            start += 1
    return offsets


def _node_attr(proto, op_def, name: str) -> AttrValue:
    if name in proto.attr:
        return proto.attr[name]
    for attr in op_def.attr:  # an attribute left at its default
        if attr.name == name:
            return attr.default_value
    raise KeyError(f"node {proto.name!r} ({proto.op}) lacks attribute {name!r}")
