"""Host stages for TF2 SavedModel functions that take strings (tables as captured resources).

In a TF2 SavedModel a signature's function reaches its string ops through nested calls
(``signature_wrapper`` -> ``StatefulPartitionedCall`` -> ``__inference___call__``), and a
lookup table is a captured *resource*: an object of the object graph whose
``_create_resource`` function makes the ``HashTableV2`` and whose ``_initialize`` function
fills it (``InitializeTableFromTextFileV2`` on a captured asset). A tensorflow_text
SentencePiece model is a captured resource too, made by a ``SentencepieceOp`` that holds
the model proto in an attribute. :func:`split_function` inlines the calls, turns each
captured table into its creation and initialization nodes (each SentencePiece model into
a ``SentencepieceOp`` reading the proto as a module asset), and splits the result with
:func:`jaxhub_tf.from_tf.host_stages.split.split`.

The SavedModel reader uses it for signatures with string inputs: it binds the captured
variables as usual (tables and constants become nodes of the split graph), and calls the
device function with ``host stage results + numeric inputs + captured variables`` (see
:class:`StringFunction`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from typing import Any, Mapping, Sequence

from jaxhub_tf.from_tf import graph
from jaxhub_tf.from_tf.host_stages import split
from jaxhub_tf.from_tf.reader import files

_CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})


@dataclasses.dataclass
class StringFunction:
    """A SavedModel function split into a host stage and a device function.

    Attributes:
      program: the host stage (JSON; see :class:`jaxhub.extend.HostStage`).
      device: the device function. Its args: the host stage's results (names in
        ``program["outputs"]`` and ``program["size_of"]``), then the numeric user inputs
        (by their arg names in ``user_args``), then the captured variables.
      user_args: arg name -> signature input key, for the numeric user inputs.
      inlined_captures: positions, among the concrete function's bound inputs, of the
        captured tables and constants, which became nodes: the device function does
        not take them (it takes the captured variables only).
      assets: asset file name -> path (or the bytes of a SentencePiece model, which the
        graph holds in an attribute), the files the host stage reads.
      sources: host stage result -> the signature inputs it is computed from
        (:attr:`~jaxhub_tf.from_tf.host_stages.split.Split.sources`).
    """

    program: dict[str, Any]
    device: graph.Function
    user_args: dict[str, str]
    inlined_captures: list[int]
    assets: dict[str, pathlib.Path | bytes]
    sources: dict[str, list[str]]


def split_function(interp, meta, saved_model_dir: pathlib.Path, function_name: str,
                   input_keys: Sequence[str], host_keys: frozenset[str] = frozenset(),
                   input_shapes: Mapping[str, list] = {}) -> StringFunction | None:
    """Splits the concrete function ``function_name`` when it takes strings.

    Args:
      interp: the interpreter of the SavedModel's function library.
      meta: the SavedModel's MetaGraphDef (object graph, asset file defs).
      saved_model_dir: the SavedModel directory (its ``assets/``).
      function_name: the concrete function a signature calls.
      input_keys: the signature's input keys, in the order of the function's user args.
      host_keys: numeric inputs (by key) the host stage takes too: ragged components,
        scalars that set sizes.
      input_shapes: input key -> its shape, for host stage inputs other than ``[None]``.

    Returns:
      The split, or None when the function takes no strings and uses no tables.

    Raises:
      HostStageUnsupportedError: string or table ops the host stage cannot run (named).
      NotImplementedError: a captured resource that is not a text-file table.
    """
    objects = meta.object_graph_def
    fn = _inline_calls(interp, interp.function(function_name))
    bound = list(objects.concrete_functions[function_name].bound_inputs)
    n_user = len(fn.args) - len(bound)
    nodes = dict(fn.nodes)
    tables, assets, asset_files, inlined = {}, {}, {}, []
    top = {n.name: n for n in meta.graph_def.node}
    for position, node_id in enumerate(bound):
        obj = objects.nodes[node_id]
        arg = fn.args[n_user + position]
        kind = obj.WhichOneof("kind")
        if kind == "constant":  # known values: constants of the graph, host or device
            const = top[obj.constant.operation]
            nodes[arg] = graph.Node(arg, "Const", [], [], const.attr)
        elif kind == "resource" and _sentencepiece_creator(interp, objects, obj):
            creator = _sentencepiece_creator(interp, objects, obj)
            _add_sentencepiece(creator, arg, nodes, assets, asset_files)
        elif kind == "resource":
            init_name, asset_name = _add_table(interp, meta, obj, arg, nodes)
            tables[arg] = init_name
            if asset_name is not None:
                assets[f"{arg}/_asset"] = asset_name
                asset_files[asset_name] = files.asset_file(saved_model_dir, asset_name)
        else:
            continue
        inlined.append(position)
    for node in list(nodes.values()):  # a tokenizer made inside the function itself
        if node.op == "SentencepieceOp" and "model" in node.attrs:
            _add_sentencepiece(node, node.name, nodes, assets, asset_files)
    inlined_args = {fn.args[n_user + p] for p in inlined}
    keep = [i for i, a in enumerate(fn.args) if a not in inlined_args]
    flat = dataclasses.replace(fn, args=[fn.args[i] for i in keep],
                               arg_dtypes=[fn.arg_dtypes[i] for i in keep], nodes=nodes)
    user = dict(zip(fn.args[:n_user], input_keys))
    parts = split.split(flat, table_initializers=tables, assets=assets, input_names=user,
                        host_args=frozenset(a for a, k in user.items() if k in host_keys),
                        input_shapes=input_shapes)
    if parts.program is None:
        return None
    numeric_user = {a: k for a, k in user.items() if a in parts.device.args}
    return StringFunction(parts.program, parts.device, numeric_user, inlined, asset_files,
                          parts.sources)


def _child_function(objects, obj, name: str) -> str:
    """The concrete function behind the child ``name`` (a ``function`` object)."""
    child = next(c.node_id for c in obj.children if c.local_name == name)
    return objects.nodes[child].function.concrete_functions[0]


def _sentencepiece_creator(interp, objects, obj) -> graph.Node | None:
    """The ``SentencepieceOp`` that makes resource ``obj`` (a tensorflow_text
    ``SentencepieceTokenizer``'s model), or None for another resource."""
    creator = interp.function(_child_function(objects, obj, "_create_resource"))
    return next((n for n in creator.nodes.values() if n.op == "SentencepieceOp"), None)


def _add_sentencepiece(creator: graph.Node, name: str, nodes: dict,
                       assets: dict[str, str], asset_files: dict[str, Any]) -> None:
    """Makes node ``name`` a ``SentencepieceOp`` that reads the model proto of ``creator``
    from an asset, which it adds to ``assets`` (node -> asset) and ``asset_files``.

    The model proto is the op's ``model`` attribute (often hundreds of kilobytes); in the
    host stage it becomes a module asset, read, size- and hash-checked at load like a
    vocabulary file, instead of a string inside the program's JSON. The asset is named by
    the proto's hash, so signatures that share a model share its file.
    """
    proto = creator.attrs["model"].s if "model" in creator.attrs else b""
    asset_name = f"sentencepiece/{hashlib.sha256(proto).hexdigest()[:16]}.model"
    asset_node = f"{name}/_asset"
    nodes[asset_node] = graph.Node(asset_node, "Const", [], [], {})
    attrs = {k: v for k, v in creator.attrs.items() if k != "model"}
    nodes[name] = graph.Node(name, "SentencepieceOp", [(asset_node, 0)], [], attrs)
    assets[asset_node] = asset_name
    asset_files[asset_name] = proto


#: Ops that fill a table: from a vocabulary file, or from tensors (constants).
_TABLE_INITIALIZERS = frozenset({"InitializeTableFromTextFileV2", "InitializeTableV2",
                                 "LookupTableImportV2"})


def _add_table(interp, meta, obj, arg: str, nodes: dict) -> tuple[str, str | None]:
    """Adds the table behind capture ``arg`` (named ``arg``) and its initializer: from a
    vocabulary file (``TextFileInitializer``) or from constant keys and values
    (``KeyValueTensorInitializer``).

    Returns:
      ``(initializer node name, asset file name or None)``.
    """
    objects = meta.object_graph_def
    creator = interp.function(_child_function(objects, obj, "_create_resource"))
    table = next((n for n in creator.nodes.values() if n.op == "HashTableV2"), None)
    if table is None:
        ops = sorted({n.op for n in creator.nodes.values()})
        raise NotImplementedError(f"captured resource {arg!r} is not a HashTableV2 "
                                  f"(its creator runs {ops})")
    nodes[arg] = dataclasses.replace(table, name=arg, inputs=[], control_inputs=[],
                                     _decoded={})
    init_fn_name = _child_function(objects, obj, "_initialize")
    init_fn = interp.function(init_fn_name)
    init_bound = list(objects.concrete_functions[init_fn_name].bound_inputs)
    top = {n.name: n for n in meta.graph_def.node}
    prefix = f"{arg}/_init/"
    rename: dict[str, str] = {}
    asset_name = None
    for init_arg, node_id in zip(init_fn.args[len(init_fn.args) - len(init_bound):],
                                 init_bound):
        bound = objects.nodes[node_id]
        kind = bound.WhichOneof("kind")
        if kind == "asset":
            index = bound.asset.asset_file_def_index
            asset_name, rename[init_arg] = meta.asset_file_def[index].filename, f"{arg}/_asset"
            nodes[rename[init_arg]] = graph.Node(rename[init_arg], "Const", [], [], {})
        elif kind == "resource":
            rename[init_arg] = arg
        elif kind == "constant":  # a KeyValueTensorInitializer's keys and values
            rename[init_arg] = prefix + init_arg
            nodes[rename[init_arg]] = graph.Node(rename[init_arg], "Const", [], [],
                                                 top[bound.constant.operation].attr)
    if arg not in rename.values():
        raise NotImplementedError(f"table {arg!r}: its initializer does not take the table")
    init_name = None
    for node in init_fn.nodes.values():
        inputs = [(rename.get(s, prefix + s), i) for s, i in node.inputs]
        nodes[prefix + node.name] = dataclasses.replace(node, name=prefix + node.name,
                                                        inputs=inputs, control_inputs=[],
                                                        _decoded={})
        if node.op in _TABLE_INITIALIZERS:
            init_name = prefix + node.name
    if init_name is None:
        ops = sorted({n.op for n in init_fn.nodes.values()})
        raise NotImplementedError(f"table {arg!r}: its initializer runs {ops}, none of "
                                  f"{sorted(_TABLE_INITIALIZERS)}")
    return init_name, asset_name


#: Ops that fill a table made in the function, from tensors (constants).
_TABLE_FILLS = _TABLE_INITIALIZERS - {"InitializeTableFromTextFileV2"}


def _inline_calls(interp, fn: graph.Function) -> graph.Function:
    """``fn`` with every call to a library function replaced by the callee's nodes."""
    nodes: dict[str, graph.Node] = {}
    outputs_of: dict[str, list[tuple[str, int]]] = {}  # call node -> its result refs

    def add(function: graph.Function, prefix: str, arg_refs: Mapping[str, tuple]):
        def ref(r: tuple[str, int]) -> tuple[str, int]:
            source, index = r
            if source in arg_refs:
                return arg_refs[source]
            if prefix + source in outputs_of:
                return outputs_of[prefix + source][index]
            return prefix + source, index

        for node in _calls_first(function):
            callee = _callee(interp, node)
            if callee is None:
                # Only the order of table fills matters to a host stage: a lookup after
                # the fill of a table made in the function reaches it (it runs at load).
                fills = [prefix + c for c in node.control_inputs
                         if c in function.nodes and function.nodes[c].op in _TABLE_FILLS]
                nodes[prefix + node.name] = dataclasses.replace(
                    node, name=prefix + node.name, inputs=[ref(r) for r in node.inputs],
                    control_inputs=fills, _decoded={})
                continue
            sub = interp.function(callee)
            inner_prefix = f"{prefix}{node.name}/"
            add(sub, inner_prefix, {a: ref(r) for a, r in zip(sub.args, node.inputs)})
            outputs_of[prefix + node.name] = [
                arg_refs_or(inner_prefix, sub, r, node, ref) for r in sub.outputs]
        return ref

    def arg_refs_or(inner_prefix, sub, r, call_node, outer_ref):
        source, index = r
        if source in sub.args:  # a callee returning its argument unchanged
            return outer_ref(call_node.inputs[sub.args.index(source)])
        if inner_prefix + source in outputs_of:
            return outputs_of[inner_prefix + source][index]
        return inner_prefix + source, index

    top = add(fn, "", {a: (a, 0) for a in fn.args})
    return dataclasses.replace(fn, nodes=nodes, outputs=[top(r) for r in fn.outputs],
                               control_outputs=[])


def _callee(interp, node: graph.Node) -> str | None:
    if node.op in _CALL_OPS:
        return node.attr("f")
    return node.op if interp.is_function(node.op) else None


def _calls_first(function: graph.Function) -> list[graph.Node]:
    """The nodes in dependency order, so a call's inputs are placed before it."""
    order, seen = [], set()
    for root in function.nodes:
        stack = [(root, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                order.append(function.nodes[name])
                continue
            if name in seen or name not in function.nodes:
                continue
            seen.add(name)
            stack.append((name, True))
            stack.extend((s, False) for s, _ in reversed(function.nodes[name].inputs))
    return order
