"""TF1 Hub modules (``tfhub_module.pb`` beside ``saved_model.pb``) as jaxhub modules.

What becomes what:

* Each MetaGraphDef is a variant: tags ``[]`` the inference variant, ``["train"]`` the
  ``{"train"}`` one. Every signature of a MetaGraphDef becomes a jaxhub signature with the
  same input and output names.
* Dense inputs keep their shapes (a leading unknown size is the shared ``batch``). A
  sparse input ``x`` (``SparseTensor``) becomes three inputs ``x.indices`` (int32
  ``[n, rank]``), ``x.values`` (``[n]``) and ``x.dense_shape`` (int32 ``[rank]``).
  ``PlaceholderWithDefault`` inputs are ordinary inputs (pass the default explicitly).
* Variables (``VariableV2`` and resource variables) become params named after the variable
  (``dense1/kernel`` -> ``{"dense1": {"kernel": ...}}``); TRAINABLE_VARIABLES gives the
  trainable mask; the sum of REGULARIZATION_LOSSES is the module's regularizer.
* In the train variant, the assignments of UPDATE_OPS (batch-norm moving statistics) are
  returned as state, and random ops draw from the variant's ``rng``; an inference
  signature with random ops takes an ``rng`` too.
* String and table ops (TABLE_INITIALIZERS, vocabulary files from the assets) run in a
  host stage before the device function (see :mod:`jaxhub_tf.from_tf.host_stages.split`); the
  vocabulary files are the module's assets.
* Module attachments (``hub.attach_message``) are kept, base64-encoded, under the
  attachment ``"tf_hub_attachments"``; an ``ImageModuleInfo`` also gives ``"image_size"``
  (``[height, width]``), as ``hub.get_expected_image_size`` reads it.
* v1 control flow (``Switch``/``Merge``/``Enter``/``Exit``/``NextIteration``) is rewritten
  into the functional form first (see :mod:`jaxhub_tf.from_tf.tf1.control_flow`), and ref
  variables (``VariableV2``) are read through explicit ``ReadVariableOp`` nodes.

Examples:
  >>> module = load_tf1_hub_module("/tmp/nnlm")
  >>> module(["A long sentence.", "single-word"]).shape
  (2, 128)
"""

from __future__ import annotations

import base64
import dataclasses
import os
import pathlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

import jaxhub
from jaxhub import extend
from jaxhub_tf.formats import TF1_MODULE_DEF_FILE
from jaxhub_tf.from_tf.graph import Function, Node, decode_dtype, decode_shape, function_from_graph_def
from jaxhub_tf.from_tf import clamps
from jaxhub_tf.from_tf.tf1 import control_flow
from jaxhub_tf.from_tf.host_stages import split
from jaxhub_tf.from_tf.interpreter import Interpreter
from jaxhub_tf.from_tf.ops import random as random_ops
from jaxhub_tf.from_tf.reader import bundle, files, protos

#: ``ModuleDef.FORMAT_V3``, the only TF1 Hub format version there is.
_FORMAT_V3 = 3
_ATTACHMENTS = "hub_module_attachments"
# TF1 collection keys (tf.compat.v1.GraphKeys).
_TRAINABLE_VARIABLES = "trainable_variables"
_GLOBAL_VARIABLES = "variables"
_REGULARIZATION_LOSSES = "regularization_losses"
_UPDATE_OPS = "update_ops"
_TABLE_INITIALIZERS = "table_initializer"
_IMAGE_MODULE_INFO = "image_module_info"
_REF_ASSIGN_OPS = frozenset({"Assign", "AssignAdd", "AssignSub"})
_REF_VARIABLE_OPS = frozenset({"VariableV2", "Variable"})


@files.names_source
def load_tf1_hub_module(path: str | os.PathLike, *, gradients: bool = True) -> jaxhub.Module:
    """Converts the TF1 Hub module in directory ``path`` to a jaxhub module (in memory).

    Args:
      path: the module directory (``tfhub_module.pb``, ``saved_model.pb``,
        ``variables/``, ``assets/``).
      gradients: export the functions' gradients (``jaxhub.create_module``'s option;
        ``jaxhub.load`` converts without them until a gradient is asked for).

    Returns:
      The module: a variant per MetaGraphDef, a signature per signature of each.

    Raises:
      ValueError: not a TF1 Hub module, or a ModuleDef format other than V3.
      UnsupportedOpsError: ops with no JAX (or host) implementation, all listed.
    """
    path = pathlib.Path(path)
    _check_module_def(path)
    hub_module = _HubModule(path)
    signatures, variants = {}, {}
    for tags, graph in hub_module.graphs.items():
        for name in sorted(graph.meta.signature_def):
            fn, specs = graph.signature(name)
            if tags:
                variants.setdefault(tags, {})[name] = fn
            else:
                signatures[name] = (fn, specs)
    if not signatures:
        raise ValueError(f"{path}: the module has no inference (tags=[]) graph with "
                         f"signatures")
    inference = hub_module.graphs[frozenset()]
    attachments = {**inference.attachments(), "tf_variable_names": hub_module.tf_names}
    stages = {}
    for tags, graph in hub_module.graphs.items():
        stages.update(graph.host_stages)
    if stages:
        attachments[extend.HOST_STAGES_ATTACHMENT] = stages
    return jaxhub.create_module(
        hub_module.params, signatures=signatures,
        variants={tags: fns for tags, fns in variants.items()} or None,
        with_rng=random_ops.keyed_signatures(signatures),
        trainable=hub_module.trainable, regularizer=inference.regularizer(),
        attachments=attachments, assets=hub_module.assets,
        origin={"format": "TF1 Hub module", "source": str(path)}, gradients=gradients)


@files.names_source
def convert_tf1_hub_module(src: str | os.PathLike, dst: str | os.PathLike, *,
                           gradients: bool = True) -> jaxhub.Module:
    """Converts the TF1 Hub module in ``src`` and writes it as a jaxhub module to ``dst``
    (without gradients when ``gradients`` is False).

    Returns:
      The converted module; ``jaxhub.load(dst)`` reads it without TensorFlow.
    """
    module = load_tf1_hub_module(src, gradients=gradients)
    module.export(dst)
    return module


def _check_module_def(path: pathlib.Path) -> None:
    try:
        data = files.read_regular(path / TF1_MODULE_DEF_FILE)
    except OSError as e:
        raise jaxhub.ModuleFormatError(f"{path / TF1_MODULE_DEF_FILE}: cannot read the "
                                       f"ModuleDef ({e.strerror})") from e
    try:
        fields = _proto_fields(data)
    except (IndexError, ValueError):
        raise jaxhub.ModuleFormatError(f"{path / TF1_MODULE_DEF_FILE}: not a TF Hub "
                                       f"ModuleDef (truncated or corrupt)") from None
    fmt = fields.get(1, [0])[0]
    if fmt != _FORMAT_V3:
        raise jaxhub.ModuleFormatError(f"{path / TF1_MODULE_DEF_FILE}: ModuleDef format {fmt}; only the TF1 "
                         f"Hub format V3 exists")
    features = [f.decode() for f in fields.get(2, [])]
    if features:
        raise ValueError(f"{path}: the module requires features {features}, which no "
                         f"reader supports")


def _proto_fields(data: bytes) -> dict[int, list[Any]]:
    """A protobuf message's fields by number (varints as ints, the rest as bytes).

    Enough for the three tiny TF Hub messages (ModuleDef, ModuleAttachment,
    ImageModuleInfo), whose Python classes left tensorflow_hub in 0.16.
    """
    fields: dict[int, list[Any]] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        value, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value: Any = varint()
        elif wire == 2:
            size = varint()
            value, pos = data[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated protobuf message")
        fields.setdefault(number, []).append(value)
    return fields


@dataclasses.dataclass
class _Variable:
    key: str  # the state key its handle names (shared_name or node name)
    op_name: str
    path: tuple[str, ...]
    trainable: bool


class _HubModule:
    """The parsed module: one :class:`_Graph` per tag set, variables, assets."""

    def __init__(self, path: pathlib.Path):
        proto = files.read_saved_model(path)
        checkpoint = path / "variables" / "variables"
        # A module without variables may come without a checkpoint.
        reader = (bundle.BundleReader(checkpoint)
                  if checkpoint.with_suffix(".index").is_file() else None)
        self.variables: dict[str, _Variable] = {}
        values: dict[tuple[str, ...], np.ndarray] = {}
        self.assets: dict[str, pathlib.Path] = {}
        self.graphs: dict[frozenset[str], _Graph] = {}
        for meta in proto.meta_graphs:
            tags = frozenset(meta.meta_info_def.tags)
            if tags in self.graphs:
                raise jaxhub.ModuleFormatError(
                    f"{path}: two MetaGraphDefs with tags {sorted(tags)}")
            for var in _variables(meta):
                if var.op_name not in self.variables:
                    if reader is None:  # lost, or never packed
                        raise jaxhub.ModuleFormatError(
                            f"{checkpoint}.index is missing, yet the module has variable "
                            f"{var.op_name!r}; the module is incomplete, fetch it again")
                    self.variables[var.op_name] = var
                    values[var.path] = np.asarray(reader.get_tensor(var.op_name))
            assets = _asset_map(meta)
            for name in assets.values():
                self.assets[name] = files.asset_file(path, name)
            self.graphs[tags] = _Graph(meta, self, assets)
        self.params = extend.unflatten(values.items())
        self.trainable = extend.unflatten((v.path, v.trainable)
                                            for v in self.variables.values())
        self.tf_names = {"/".join(v.path): v.op_name for v in self.variables.values()}

    def state(self, params: Mapping[str, Any]) -> dict[str, Any]:
        flat = dict(extend.flatten(params))
        return {v.key: flat[v.path] for v in self.variables.values()}

    def updates(self, updates: Mapping[str, Any]) -> dict[str, Any]:
        by_key = {v.key: v for v in self.variables.values()}
        return extend.unflatten((by_key[k].path, v) for k, v in updates.items())


def _variables(meta: protos.MetaGraphDef) -> list[_Variable]:
    nodes = {n.name: n for n in meta.graph_def.node}
    trainable = set()
    for proto in _collection_bytes(meta, _TRAINABLE_VARIABLES):
        trainable.add(_var_op_name(proto))
    result = []
    for proto in _collection_bytes(meta, _GLOBAL_VARIABLES):
        op_name = _var_op_name(proto)
        node = nodes[op_name]
        shared = node.attr["shared_name"].s.decode() if "shared_name" in node.attr else ""
        path = tuple(op_name.split("/"))
        result.append(_Variable(shared or op_name, op_name, path, op_name in trainable))
    return result


def _collection_bytes(meta, key: str) -> list[bytes]:
    if key not in meta.collection_def:
        return []
    return list(meta.collection_def[key].bytes_list.value)


def _collection_nodes(meta, key: str) -> list[str]:
    if key not in meta.collection_def:
        return []
    return [v.split(":")[0].lstrip("^") for v in meta.collection_def[key].node_list.value]


def _var_op_name(proto: bytes) -> str:
    var = protos.VariableDef()
    var.ParseFromString(proto)
    return var.variable_name.split(":")[0]


def _asset_map(meta) -> dict[str, str]:
    """Const node holding an asset's path -> the asset's file name."""
    result = {}
    if "saved_model_assets" in meta.collection_def:
        for item in meta.collection_def["saved_model_assets"].any_list.value:
            asset = protos.AssetFileDef.FromString(item.value)  # an Any
            result[asset.tensor_info.name.split(":")[0]] = asset.filename
    for asset in meta.asset_file_def:
        result[asset.tensor_info.name.split(":")[0]] = asset.filename
    return result


class _Graph:
    """One MetaGraphDef: its signatures as JAX functions of (params, inputs)."""

    def __init__(self, meta: protos.MetaGraphDef, module: _HubModule,
                 assets: Mapping[str, str]):
        self.meta = meta
        self._module = module
        self._assets = assets
        self._graph_def = meta.graph_def
        self._interp = Interpreter(meta.graph_def.library)
        # Any tagged graph is a variant: it takes an rng and returns state (UPDATE_OPS).
        self._train = bool(meta.meta_info_def.tags)
        self.host_stages: dict[str, Any] = {}
        self._tables = _table_initializers(meta, self._graph_def)

    def attachments(self) -> dict[str, Any]:
        raw = {}
        for value in _collection_bytes(self.meta, _ATTACHMENTS):
            fields = _proto_fields(value)
            key = fields[1][0].decode()
            raw[key] = fields.get(2, [b""])[0]
        result: dict[str, Any] = {}
        if raw:
            result["tf_hub_attachments"] = {k: base64.b64encode(v).decode()
                                            for k, v in raw.items()}
        if _IMAGE_MODULE_INFO in raw:
            size = _proto_fields(raw[_IMAGE_MODULE_INFO]).get(1)
            if size:
                hw = _proto_fields(size[0])
                result["image_size"] = [hw.get(1, [0])[0], hw.get(2, [0])[0]]
        return result

    def regularizer(self) -> Callable[[Any], Any] | None:
        losses = _collection_nodes(self.meta, _REGULARIZATION_LOSSES)
        if not losses:
            return None
        fn = self._prepare(function_from_graph_def(
            self._graph_def, [], [f"{n}:0" for n in losses]))
        evaluate = self._interp.as_function(fn)

        def regularizer(params):
            outs, _ = evaluate(self._module.state(params), [])
            return sum(outs[1:], outs[0])

        return regularizer

    def _prepare(self, fn: Function) -> Function:
        """Ref variables read explicitly, v1 control flow in functional form, pinned integer
        clamps folded (:func:`clamps.fold`)."""
        return clamps.fold(control_flow.functionalize(_with_ref_reads(fn), self._interp))

    def signature(self, name: str):
        """``(fn, input specs)``: ``fn(params, inputs, rng=None)`` (``rng`` used only when
        ``fn.draws_random``) or, in the train variant, ``fn(params, inputs, rng) ->
        (outputs, state)``."""
        sig = self.meta.signature_def[name]
        feeds, specs = _inputs(sig)
        outputs = {key: t.name for key, t in sorted(sig.outputs.items())}
        if any(t.WhichOneof("encoding") != "name" for t in sig.outputs.values()):
            raise NotImplementedError(f"signature {name!r}: sparse outputs")
        fn = function_from_graph_def(self._graph_def, list(feeds.values()),
                                               list(outputs.values()))
        if self._train:
            fn.control_outputs = _runnable(fn, _collection_nodes(
                self.meta, _UPDATE_OPS))
        fn = self._prepare(fn)
        by_key = specs if isinstance(specs, Mapping) else {"default": specs}
        # Numeric inputs that the host stage may take keep their shapes (unknown: None).
        shapes = {k: split.stage_shape(s) for k, s in by_key.items() if s is not None}
        parts = split.split(fn, table_initializers=self._tables, assets=self._assets,
                            input_names={t.split(":")[0]: k for k, t in feeds.items()},
                            input_shapes=shapes)
        arg_keys = list(feeds)
        if parts.program is not None:
            self.host_stages[name] = parts.program
            # Device inputs: the host stage's results, then the numeric inputs.
            by_arg = {tensor.split(":")[0]: key for key, tensor in feeds.items()}
            arg_keys = [by_arg.get(a, a) for a in parts.device.args]
            numeric = {} if not isinstance(specs, Mapping) else {
                k: s for k, s in specs.items() if s is not None and k in arg_keys}
            specs = {**split.device_input_specs(parts.program, self._module.assets),
                     **numeric}
        evaluate = self._interp.as_function(parts.device)
        if parts.program is not None:
            evaluate = split.explaining_host_sizes(evaluate, parts.program, specs,
                                                   parts.sources)
        module, out_keys = self._module, list(outputs)
        if parts.program is not None:
            split.name_reaches(parts.program, [(k, i) for i, k in enumerate(out_keys)])

        def run(params, inputs, rng=None):
            inputs = _as_dict(inputs, arg_keys)
            outs, updates = evaluate(module.state(params), [inputs[k] for k in arg_keys], rng)
            return dict(zip(out_keys, outs)), module.updates(updates)

        if self._train:
            return run, specs

        def infer(params, inputs, rng=None):  # rng: passed when the graph draws
            return run(params, inputs, rng)[0]

        draws = random_ops.draws_random(self._interp, parts.device)
        return random_ops.drawing(infer, draws), specs


def _as_dict(inputs: Any, keys: Sequence[str]) -> dict[str, Any]:
    return dict(inputs) if isinstance(inputs, Mapping) else {keys[0]: inputs}


def _inputs(sig) -> tuple[dict[str, str], dict[str, jaxhub.TensorSpec]]:
    """Input key -> fed tensor name, and the specs (sparse inputs as three dense ones)."""
    feeds, specs = {}, {}
    for key, info in sorted(sig.inputs.items()):
        dtype = decode_dtype(info.dtype)
        shape = decode_shape(info.tensor_shape)
        if info.WhichOneof("encoding") == "coo_sparse":
            coo = info.coo_sparse
            rank = len(shape) if shape is not None else None
            feeds[f"{key}.indices"] = coo.indices_tensor_name
            feeds[f"{key}.values"] = coo.values_tensor_name
            feeds[f"{key}.dense_shape"] = coo.dense_shape_tensor_name
            specs[f"{key}.indices"] = jaxhub.TensorSpec([f"{key}_nnz", rank], "int32")
            specs[f"{key}.values"] = jaxhub.TensorSpec([f"{key}_nnz"], dtype)
            specs[f"{key}.dense_shape"] = jaxhub.TensorSpec([rank], "int32")
            continue
        if shape is None:
            raise NotImplementedError(f"input {key!r} has unknown rank")
        feeds[key] = info.name
        # A string input has no device spec: the host stage's outputs replace it.
        specs[key] = None if dtype == np.dtype(object) else jaxhub.TensorSpec(list(shape),
                                                                              dtype)
    if len(specs) == 1 and "default" in specs:
        return feeds, specs["default"]
    return feeds, specs


def _runnable(fn: Function, names: Sequence[str]) -> list[str]:
    """The nodes of ``names`` that the function's args can feed: an update op of another
    signature (batch statistics of an input this one lacks) is not this signature's."""
    runnable = []
    for name in names:
        stack, seen, ok = [name], set(), True
        while stack and ok:
            current = stack.pop()
            if current in seen or current not in fn.nodes:
                continue
            seen.add(current)
            node = fn.nodes[current]
            ok = node.op != "Placeholder"
            stack.extend([s for s, _ in node.inputs] + node.control_inputs)
        if ok:
            runnable.append(name)
    return runnable


def _with_ref_reads(fn: Function) -> Function:
    """Reads of ref variables made explicit: a ``ReadVariableOp`` per variable used as a
    value (a TF1 graph passes the ref itself), so ``VariableV2`` can be a handle."""
    refs = {name for name, node in fn.nodes.items() if node.op in _REF_VARIABLE_OPS}
    if not refs:
        return fn
    nodes = dict(fn.nodes)
    for name, node in fn.nodes.items():
        inputs = []
        for i, (src, index) in enumerate(node.inputs):
            is_handle_slot = node.op in _REF_ASSIGN_OPS and i == 0
            if src in refs and not is_handle_slot:
                read = f"{src}/_jaxhub_read"
                nodes.setdefault(read, Node(read, "ReadVariableOp", [(src, 0)],
                                                      [], {}))
                src = read
            inputs.append((src, index))
        nodes[name] = dataclasses.replace(node, inputs=inputs)
    return dataclasses.replace(fn, nodes=nodes)


def _table_initializers(meta, graph_def) -> dict[str, str]:
    """Table node -> its initializer node (TABLE_INITIALIZERS)."""
    nodes = {n.name: n for n in graph_def.node}
    result = {}
    for init in _collection_nodes(meta, _TABLE_INITIALIZERS):
        node = nodes.get(init)
        if node is not None and node.input:
            result[node.input[0].split(":")[0]] = init
    return result
