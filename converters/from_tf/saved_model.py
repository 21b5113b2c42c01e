"""TF2 SavedModels (``tf.saved_model.save``, Keras ``model.export``) as jaxhub modules.

What becomes what:

* Every serving signature (``signature_def``) becomes a jaxhub signature of the same name,
  with the same input and output names; unknown sizes stay symbolic (the leading one is
  the shared ``batch``).
* A reusable SavedModel's ``__call__(inputs, training)`` becomes the ``"default"``
  signature (taking a dict by input name when ``__call__`` takes several tensors, as a
  Keras model with several inputs does, or one dict of tensors, as TF Hub's encoders):
  its ``training=False`` function is the inference variant, its ``training=True``
  function the ``{"train"}`` variant, which takes an RNG key and returns the variables it
  assigned (batch-norm statistics) as state.
* The root's other tf.functions (TF Hub's ``tokenize`` and ``bert_pack_inputs``) become
  signatures named after them, one per concrete function when there are several
  (``bert_pack_inputs_1``, ``bert_pack_inputs_2``: by the lengths of their list
  arguments); a ``RaggedTensor`` input or output is a :class:`jaxhub.Ragged` in calls,
  one component per input or output. A scalar integer input of such a function with a
  host stage (``seq_length``) is a host stage input: the sizes it sets are the host's.
* The root's ``regularization_losses`` (tf-keras weight regularizers) become the module's
  regularizer, ``module.regularization_loss(params)``.
* Variables become params, named after the TF variable (``dense/kernel:0`` ->
  ``{"dense": {"kernel": ...}}``) with their trainable flags; the attachment
  ``"tf_variable_names"`` maps each param path back to its TF name.
* A signature (or ``__call__``) that takes strings is split into a host stage (string and
  table ops, run with numpy; see :class:`jaxhub.extend.HostStage`) and a device function, as for TF1
  text modules: captured lookup tables become host tables, their vocabulary files the
  module's assets (see :mod:`jaxhub_tf.from_tf.host_stages.string_functions`). Such a ``__call__``
  gets no ``{"train"}`` variant.
* A signature (or ``__call__``) whose ops have output shapes set by its inputs' values
  (``tf.range(n)``, ``tf.where(x)``, ``tf.unique``) runs them in a host stage, with the
  ops they read (see :mod:`jaxhub_tf.from_tf.host_stages.split`); such a ``__call__`` gets
  no ``{"train"}`` variant either.
* A SavedModel without ``__call__`` (Keras 3 ``model.export``) gets neither ``"default"``
  nor ``{"train"}``; the manifest's ``origin["notes"]`` says so (``jaxhub inspect``).

Examples:
  >>> module = load_saved_model("/tmp/my_saved_model")
  >>> module(x, signature="serving_default")
  >>> convert_saved_model("/tmp/my_saved_model", "/tmp/my_jaxhub_module")
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import warnings
from typing import Any, Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

import jaxhub
from jaxhub import extend
from jaxhub_tf.from_tf import graph
from jaxhub_tf.formats import SAVED_MODEL_FILES
from jaxhub_tf.from_tf.host_stages import split
from jaxhub_tf.from_tf.host_stages import string_functions
from jaxhub_tf.from_tf.ops import random as random_ops
from jaxhub_tf.from_tf.ops import xla as xla_ops
from jaxhub_tf.from_tf.interpreter import Interpreter, UnsupportedOpsError
from jaxhub_tf.from_tf.reader import bundle, files, protos
from jaxhub_tf.from_tf.reader import structure as structure_lib
from jaxhub_tf.from_tf.values import Resource

_INIT_OP_KEY = "__saved_model_init_op"
#: What the manifest's ``origin["notes"]`` (shown by ``jaxhub inspect``) says when the
#: SavedModel lacks what the ``default`` signature or its train variant is made from.
_NO_DEFAULT = ("no 'default' signature and no train variant: the SavedModel has no "
               "usable root __call__ (Keras 3 model.export saves only serving signatures); "
               "save the model with tf.saved_model.save to get them")
_NO_TRAIN = ("no train variant: the root __call__ has no training=True function (call the "
             "model with training=True once before saving)")
_CKPT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_UNCLEAN = re.compile(r"[^A-Za-z0-9_.\-]")


@files.names_source
def load_saved_model(path: str | os.PathLike, *, checks: bool = False,
                     gradients: bool = True, **unused: Any) -> jaxhub.Module:
    """Converts the SavedModel in directory ``path`` to a jaxhub module (in memory).

    Args:
      path: the SavedModel directory.
      checks: keep the ``Assert`` nodes (``tf.debugging.assert_*``) of serving signatures
        that test traced values, as checks for ``jax.experimental.checkify`` (see
        docs/converters.md); by default they are dropped.
      gradients: export the functions' gradients (``jaxhub.create_module``'s option;
        ``jaxhub.load`` converts without them until a gradient is asked for).

    Returns:
      A module with one signature per serving signature, plus ``"default"`` (with a
      ``{"train"}`` variant) for a SavedModel with ``__call__``.

    Raises:
      UnsupportedOpsError: some ops have no JAX implementation (all are listed).
      ValueError: the SavedModel has neither signatures nor ``__call__``.
    """
    saved = _SavedModel(pathlib.Path(path), checks)
    signatures, variants = {}, {}
    for name in saved.signature_names():
        signatures[name] = saved.signature(name)
    call = saved.call_functions()
    notes = []
    if call is None:
        notes.append(_NO_DEFAULT)
    else:
        inference, train = call
        signatures["default"] = inference
        if train is not None:
            variants["train"] = train
        else:
            notes.append(_NO_TRAIN)
    attribute_functions = saved.attribute_functions(taken=set(signatures))
    signatures.update(attribute_functions)
    if not signatures:
        raise ValueError(f"{path}: the SavedModel has no signatures and no __call__")
    regularizer = saved.regularizer()
    saved.check_supported()
    attachments: dict[str, Any] = {"tf_variable_names": saved.tf_names}
    if saved.host_stages:
        attachments[extend.HOST_STAGES_ATTACHMENT] = saved.host_stages
    # Any signature may draw random numbers (from the caller's rng). Serving signatures
    # may assign variables (returned as state); see docs/converters.md. A serving
    # signature named "default" gave way to __call__, whose inference function returns
    # outputs only. The root's other tf.functions are called as serving signatures are.
    serving = (set(saved.signature_names()) - ({"default"} if call is not None else set())
               | set(attribute_functions))
    return jaxhub.create_module(
        saved.params, signatures=signatures, variants=variants or None,
        with_rng=random_ops.keyed_signatures(signatures), with_state=serving,
        with_checks=serving if checks else (),
        trainable=saved.trainable, regularizer=regularizer,
        platforms=saved.platforms(), attachments=attachments,
        assets=saved.assets or None,
        origin={"format": "TF2 SavedModel", "source": str(path),
                **({"notes": notes} if notes else {})},
        gradients=gradients)


@files.names_source
def convert_saved_model(src: str | os.PathLike, dst: str | os.PathLike, *,
                        checks: bool = False, gradients: bool = True) -> jaxhub.Module:
    """Converts the SavedModel in ``src`` and writes it as a jaxhub module to ``dst``.

    ``checks`` keeps traced ``Assert`` nodes as checks; ``gradients=False`` writes the
    module without gradients (see :func:`load_saved_model`).

    Returns:
      The converted module (also readable later with ``jaxhub.load(dst)``, without
      TensorFlow).

    Examples:
      >>> convert_saved_model("/tmp/keras_export", "/tmp/jaxhub_module")
    """
    module = load_saved_model(src, checks=checks, gradients=gradients)
    module.export(dst)
    return module


@dataclasses.dataclass
class _Variable:
    key: str  # the state key its handles name
    path: tuple[str, ...]
    tf_name: str
    value: np.ndarray
    trainable: bool


class _SavedModel:
    """One parsed SavedModel: its graph, object graph, variables and functions."""

    def __init__(self, path: pathlib.Path, checks: bool = False):
        meta = files.read_saved_model(path).meta_graphs[0]
        self._path = path
        self._checks = checks  # keep traced Asserts of serving signatures
        self._meta = meta
        self._objects = meta.object_graph_def
        self._interp = Interpreter(meta.graph_def.library, self._gradient_captures(),
                                   self._gradient_outputs())
        self._top = {n.name: n for n in meta.graph_def.node}
        self._checkpoint, self._stored = _checkpointed_variables(path, self._objects)
        # Only variables that a converted function captures become params (a Keras export
        # also saves second copies of its variables that no function uses).
        self._variables: dict[int, _Variable] = {}
        self._names = _ParamNames()
        self._used: list[graph.Function] = []  # the graphs converted so far
        self._signatures: dict[tuple, tuple[str, tuple]] = {}  # see signature()
        self.host_stages: dict[str, Any] = {}  # signature name -> host stage program
        self.assets: dict[str, pathlib.Path] = {}  # files the host stages read

    @property
    def params(self) -> dict[str, Any]:
        return extend.unflatten((v.path, v.value) for v in self._variables.values())

    @property
    def trainable(self) -> dict[str, Any]:
        return extend.unflatten((v.path, v.trainable) for v in self._variables.values())

    @property
    def tf_names(self) -> dict[str, str]:
        """Param path (``a/b``) -> the TF variable's name."""
        return {"/".join(v.path): v.tf_name for v in self._variables.values()}

    def _variable(self, node_id: int) -> _Variable | None:
        if node_id not in self._variables and node_id in self._stored:
            tf_name, key, trainable = self._stored.pop(node_id)
            value = self._checkpoint.get_tensor(key)
            if value.dtype == object:  # string variables cannot be params
                return None
            self._variables[node_id] = _Variable(f"var{node_id}", self._names.make(tf_name),
                                                 tf_name, value, trainable)
        return self._variables.get(node_id)

    def _gradient_captures(self) -> dict[str, list[str]]:
        """Custom-gradient function -> the forward tensors it captures, in order."""
        captures = {}
        for grad in self._meta.graph_def.library.registered_gradients:
            concrete = self._objects.concrete_functions.get(grad.gradient_func)
            if concrete is None:
                continue
            captures[grad.gradient_func] = [
                self._objects.nodes[i].captured_tensor.name for i in concrete.bound_inputs]
        return captures

    def _gradient_outputs(self) -> dict[str, list[int]]:
        """Custom-gradient function -> the ``IdentityN`` input of each of its outputs.

        The saved function returns only the gradients that are not None; its output
        signature keeps a None in the place of each dropped one.
        """
        positions = {}
        for grad in self._meta.graph_def.library.registered_gradients:
            concrete = self._objects.concrete_functions.get(grad.gradient_func)
            if concrete is None or not concrete.HasField("output_signature"):
                continue
            structure = structure_lib.decode(concrete.output_signature)
            positions[grad.gradient_func] = [
                i for i, spec in enumerate(structure_lib.flatten(structure))
                if spec is not None]
        return positions

    def check_supported(self) -> None:
        """One error for every unsupported op of every function converted so far."""
        self._interp.check_supported(*self._used)

    def platforms(self) -> tuple[str, ...]:
        """The platforms every embedded StableHLO module (``XlaCallModule``) of the
        functions converted so far supports."""
        platforms = set(extend.DEFAULT_PLATFORMS)
        for fn in self._used:
            for _, node in self._interp.reachable_nodes(fn):
                if node.op == "XlaCallModule":
                    platforms &= set(xla_ops.platform_names(node.attr("platforms")))
        if not platforms:
            raise NotImplementedError("the embedded StableHLO modules share no platform")
        return tuple(p for p in extend.DEFAULT_PLATFORMS if p in platforms)

    # -- signatures ----------------------------------------------------------------------

    def signature_names(self) -> list[str]:
        return sorted(k for k in self._meta.signature_def if k != _INIT_OP_KEY)

    def signature(self, name: str) -> tuple[Callable, dict[str, jaxhub.TensorSpec]]:
        """``(fn(params, inputs, rng) -> (outputs, state), input specs)`` for one
        signature_def.

        ``state`` holds the variables the function assigned (empty for most signatures);
        ``rng`` is used only when the function draws random numbers (``fn.draws_random``).
        """
        sig = self._meta.signature_def[name]
        _refuse_composites(name, sig)
        for key, t in sorted(sig.outputs.items()):
            if graph.decode_dtype(t.dtype) in _HANDLE_DTYPES:
                raise NotImplementedError(
                    f"signature {name!r}: output {key!r} is a {graph.decode_dtype(t.dtype)} "
                    f"handle (a variable, table or dataset), not a tensor: a jaxhub "
                    f"signature returns arrays; return the value it holds (for a variable, "
                    f"v.read_value()) and save the SavedModel again")
        strings = sorted(key for key, t in sig.outputs.items()
                         if graph.decode_dtype(t.dtype) == np.dtype(object))
        if strings:  # a device function returns arrays, whether strings come in or not
            raise split.HostStageUnsupportedError(
                f"signature {name!r}: string result(s) {strings} (a signature returns "
                f"numbers: hash or look up strings to ids in the graph)")
        outputs = {key: graph.parse_ref(t.name) for key, t in sig.outputs.items()}
        placeholders = {graph.parse_ref(t.name)[0]: key for key, t in sig.inputs.items()}
        caller = self._top[self._caller(name, outputs, placeholders)]
        function_name = caller.attr["f"].func.name
        arg_nodes = [ref.split(":")[0] for ref in caller.input if not ref.startswith("^")]
        # Read the count, not the values: captured tables have no value to bind.
        n_user = len(arg_nodes) - len(self._objects.concrete_functions[function_name]
                                      .bound_inputs)
        arg_keys = [placeholders[node] for node in arg_nodes[:n_user]]
        out_index = {key: index for key, (_, index) in outputs.items()}
        specs = {key: _spec(t.tensor_shape, t.dtype) for key, t in sig.inputs.items()}
        # Signatures that call one function the same way ("serve" and "serving_default"
        # of a Keras export, whose wrappers differ only in name) get the same callable,
        # which create_module exports once.
        same_call = (self._body(function_name), tuple(arg_keys),
                     tuple(sorted(out_index.items())), repr(sorted(specs.items())))
        if same_call not in self._signatures:
            self._signatures[same_call] = (name, self._signature_fn(
                name, function_name, arg_keys, out_index, specs))
        first, fn_and_specs = self._signatures[same_call]
        if first in self.host_stages:
            self.host_stages[name] = self.host_stages[first]
        return fn_and_specs

    def _caller(self, name: str, outputs: Mapping[str, tuple[str, int]],
                placeholders: Mapping[str, str]) -> str:
        """The call node of a signature: the one its outputs come from, or, for a
        signature with no outputs (its effect is an assignment), the one its inputs feed."""
        callers = {node for node, _ in outputs.values()}
        if not callers:
            callers = {n.name for n in self._top.values()
                       if n.op in ("StatefulPartitionedCall", "PartitionedCall")
                       and any(ref.split(":")[0] in placeholders for ref in n.input)}
        if len(callers) != 1:
            raise NotImplementedError(f"signature {name!r}: no single call node computes it "
                                      f"(found {sorted(callers)})")
        return callers.pop()

    def _body(self, function_name: str) -> bytes:
        """A function's definition without its name and its args' annotations (such as
        ``_user_specified_name``), to recognise identical wrappers."""
        (definition,) = [f for f in self._meta.graph_def.library.function
                         if f.signature.name == function_name]
        nameless = protos.FunctionDef()
        nameless.CopyFrom(definition)
        nameless.signature.name = ""
        nameless.ClearField("arg_attr")
        return nameless.SerializeToString(deterministic=True)

    def _signature_fn(self, name, function_name, arg_keys, out_index, specs,
                      host_keys: frozenset[str] = frozenset()):
        """The callable and input specs of signature ``name`` (see :meth:`signature`);
        ``host_keys`` names numeric inputs that the host stage takes (ragged components)."""
        staged = None
        if host_keys or any(_is_string(specs[key]) for key in arg_keys):
            staged = self._string_runner(name, function_name, arg_keys, specs, host_keys)
        elif self._value_shaped(function_name):
            staged = self._host_runner(name, function_name, arg_keys, specs)
        if staged is not None:
            run, arg_keys, specs = staged
            split.name_reaches(self.host_stages[name], list(out_index.items()))
        else:
            run = self._runner(function_name)

        def fn(params, inputs, rng=None):  # rng: passed when the function draws
            checks = [] if self._checks else None
            outs, updates = run(params, [inputs[k] for k in arg_keys], rng, checks)
            outputs = {key: outs[i] for key, i in out_index.items()}
            return (outputs, updates) if checks is None else (outputs, updates, checks)

        return random_ops.drawing(fn, run.draws_random), specs

    # -- __call__ ------------------------------------------------------------------------

    def call_functions(self):
        """``((fn, specs), train_fn or None)`` for the root's ``__call__``, or None.

        ``__call__`` takes one tensor (``fn(params, x, rng=None)``) or several, as a Keras
        model with several inputs does (``fn(params, {name: x}, rng=None)``, named after
        the inputs). ``rng`` is used only when the function draws random numbers
        (``fn.draws_random``), as in serving signatures.
        """
        root = self._objects.nodes[0]
        child = next((c.node_id for c in root.children if c.local_name == "__call__"), None)
        if child is None or self._objects.nodes[child].WhichOneof("kind") != "function":
            return None
        by_training: dict[bool, tuple] = {}
        for name in self._objects.nodes[child].function.concrete_functions:
            concrete = self._objects.concrete_functions[name]
            args = structure_lib.decode(concrete.canonicalized_input_signature)
            flags = [x for x in structure_lib.flatten(args) if isinstance(x, bool)]
            training = any(flags)
            specs = _named_by_keys(args, [x for x in structure_lib.flatten(args)
                                          if isinstance(x, structure_lib.TensorSpec)])
            if not specs:
                continue
            best = by_training.get(training)
            unknown = sum(map(_unknown_dims, specs))
            if best is None or unknown > sum(map(_unknown_dims, best[1])):
                out = structure_lib.decode(concrete.output_signature)
                by_training[training] = (name, specs, out)
        if False not in by_training:
            return None
        name, specs, out = by_training[False]
        in_spec = _call_input_specs(specs)
        names = _output_names(out)
        if isinstance(in_spec, dict):
            if any(map(_is_string, in_spec.values())):
                warnings.warn("__call__ takes several inputs, some of them strings: it is "
                              "not converted (the module gets no 'default' signature)",
                              stacklevel=3)
                return None
        by_key = in_spec if isinstance(in_spec, dict) else {"default": in_spec}
        staged = None
        if any(map(_is_string, by_key.values())):
            staged, why = self._string_runner("default", name, ["default"], by_key), "strings"
        elif self._value_shaped(name):
            staged = self._host_runner("default", name, list(by_key), by_key)
            why = "inputs that set the shapes of its ops"
        if staged is not None:
            if True in by_training:
                warnings.warn(f"__call__ takes {why}: its training=True function is not "
                              f"converted (the module gets no train variant)", stacklevel=3)
            run, keys, specs = staged
            split.name_reaches(self.host_stages["default"],
                               [(key, i) for i, key in enumerate(names or [])])

            def staged_fn(params, inputs, rng=None):
                outs, _ = run(params, [inputs[k] for k in keys], rng)
                return _outputs(names, outs)

            return (random_ops.drawing(staged_fn, run.draws_random), specs), None
        as_args = _call_args(in_spec)
        run = self._runner(name)

        def fn(params, x, rng=None):
            outs, _ = run(params, as_args(x), rng)
            return _outputs(names, outs)

        train_fn = None
        if True in by_training:
            train_run = self._runner(by_training[True][0])
            train_names = _output_names(by_training[True][2])

            def train_fn(params, x, rng):
                outs, updates = train_run(params, as_args(x), rng)
                return _outputs(train_names, outs), updates

        return (random_ops.drawing(fn, run.draws_random), in_spec), train_fn

    # -- the root's other tf.functions -----------------------------------------------------

    def attribute_functions(self, taken: set[str]) -> dict[str, tuple[Callable, dict]]:
        """Signatures for the root's other tf.functions, named after their attribute.

        TF Hub's BERT preprocessors expose ``tokenize`` and ``bert_pack_inputs`` this way
        (``hub.KerasLayer(preprocessor.tokenize)``), not as signatures. Each concrete
        function whose inputs and outputs are tensors and ragged tensors (see
        :class:`jaxhub.Ragged`) is converted, named as :meth:`_concrete_names` says; one
        that cannot be is skipped with a warning, as are names in ``taken`` and private
        ones.
        A ``__call__`` with one concrete function, if ``default`` is not taken, becomes
        ``default``: a dict argument's keys name its inputs.
        """
        root = self._objects.nodes[0]
        found = {}
        for child in root.children:
            obj = self._objects.nodes[child.node_id]
            # A __call__ that call_functions() did not take (one taking a dict of
            # tensors, as TF Hub's encoders) is the default signature.
            name = "default" if child.local_name == "__call__" else child.local_name
            if (obj.WhichOneof("kind") != "function" or name.startswith("_")
                    or name in taken or not obj.function.concrete_functions
                    or (name == "default" and len(obj.function.concrete_functions) > 1)):
                continue
            arg_names = _arg_names(obj.function.function_spec)
            for signature_name, function_name in self._concrete_names(
                    name, obj.function.concrete_functions).items():
                if signature_name not in taken:
                    self._attribute_function(signature_name, function_name, found, arg_names)
        return found

    def _concrete_names(self, name: str, function_names: Sequence[str]) -> dict[str, str]:
        """Signature name -> concrete function, for the tf.function ``name``.

        One concrete function is ``name``; several (a tf.function traced for several
        input structures, as TF Hub's ``bert_pack_inputs`` for 1, 2, ... segments) are
        ``name`` plus the lengths of their list arguments (``bert_pack_inputs_2``), or,
        where those do not tell them apart, their position in the order of those lengths
        (``name_0``, ``name_1``, ...).
        """
        if len(function_names) == 1:
            return {name: function_names[0]}
        suffixes = [_list_lengths(structure_lib.decode(
            self._objects.concrete_functions[f].canonicalized_input_signature))
            for f in function_names]
        ordered = sorted(zip(suffixes, function_names))
        if not all(suffixes) or len(set(suffixes)) != len(suffixes):
            return {f"{name}_{i}": f for i, (_, f) in enumerate(ordered)}
        return {f"{name}_{suffix}": f for suffix, f in ordered}

    def _attribute_function(self, name: str, function_name: str, found: dict,
                            arg_names: Sequence[str] = ()) -> None:
        """Converts one concrete function into ``found[name]``; warns if it cannot be.
        ``arg_names``: the Python function's positional args (see :meth:`_boundary`)."""
        boundary = self._boundary(function_name, arg_names)
        if boundary is None:
            return
        arg_keys, specs, out_index, host_keys = boundary
        used = len(self._used)
        try:
            found[name] = self._signature_fn(name, function_name, arg_keys, out_index,
                                             specs, host_keys)
            self._interp.check_supported(*self._used[used:])
        except (NotImplementedError, UnsupportedOpsError) as e:
            del self._used[used:]
            found.pop(name, None)
            self.host_stages.pop(name, None)
            warnings.warn(f"the SavedModel's tf.function {name!r} is not converted: {e}",
                          stacklevel=4)

    def _boundary(self, function_name: str, arg_names: Sequence[str] = ()):
        """``(arg keys, input specs, output key -> flat index, host keys)`` of a concrete
        function taking and returning tensors and ragged tensors; None for another.

        A positional argument is named after the Python function's arg (``arg_names``),
        else after the graph's (which numbers a list's items: ``parts_0``)."""
        concrete = self._objects.concrete_functions[function_name]
        args, kwargs = structure_lib.decode(concrete.canonicalized_input_signature)
        fn = self._interp.function(function_name)
        user_args = fn.args[:len(fn.args) - len(concrete.bound_inputs)]
        keys: list[str] = []
        specs: dict[str, jaxhub.TensorSpec] = {}
        host_keys: set[str] = set()
        for position, arg in enumerate(list(args) + [kwargs[k] for k in sorted(kwargs)]):
            # A dict argument's keys are the names (as in a signature_def); another
            # argument is named after the function's arg (or keyword).
            if isinstance(arg, Mapping):
                prefix = None
            elif position < len(arg_names):
                prefix = arg_names[position]
            elif position < len(args):
                prefix = user_args[min(len(keys), len(user_args) - 1)] if user_args else None
            else:
                prefix = sorted(kwargs)[position - len(args)]
            for path, leaf in _leaves(arg, prefix):
                components = _components(path, leaf)
                if components is None:
                    return None
                keys.extend(components)
                specs.update(components)
                if len(components) > 1:
                    host_keys.update(components)
        if len(keys) != len(user_args):
            return None
        if host_keys or any(_is_string(spec) for spec in specs.values()):
            # With a host stage, a scalar integer (BERT packing's ``seq_length``) is a
            # host input: the sizes it sets are then decided on the host, as token counts.
            host_keys.update(k for k, spec in specs.items()
                             if spec.shape == () and not _is_string(spec)
                             and np.dtype(spec.dtype).kind in "iu")
        out_index: dict[str, int] = {}
        for path, leaf in _leaves(structure_lib.decode(concrete.output_signature)):
            components = _components(path, leaf)
            if components is None:
                return None
            out_index.update((key, len(out_index)) for key in components)
        return keys, specs, out_index, frozenset(host_keys)

    # -- regularization losses -------------------------------------------------------------

    def regularizer(self) -> Callable[[Any], Any] | None:
        """``reg(params)``: the sum of the root's ``regularization_losses``, or None.

        Keras (tf-keras) saves each weight regularizer as a function of no arguments that
        captures its variable (TF Hub's REGULARIZATION_LOSSES of a reusable SavedModel).
        """
        root = self._objects.nodes[0]
        losses = next((c.node_id for c in root.children
                       if c.local_name == "regularization_losses"), None)
        if losses is None:
            return None
        names = []
        for child in self._objects.nodes[losses].children:
            obj = self._objects.nodes[child.node_id]
            if obj.WhichOneof("kind") == "function":
                names.extend(obj.function.concrete_functions[:1])
        if not names:
            return None
        runners = [self._runner(name) for name in names]

        def regularizer(params):
            return sum(jnp.sum(run(params, [], None)[0][0]) for run in runners)

        return regularizer

    # -- running concrete functions --------------------------------------------------------

    def _bound_inputs(self, function_name: str) -> list[Any]:
        """The values a concrete function captures: variable handles, constants."""
        concrete = self._objects.concrete_functions[function_name]
        return [self._bound_value(function_name, node_id)
                for node_id in concrete.bound_inputs]

    def _bound_value(self, function_name: str, node_id: int) -> Any:
        """The value of one capture: a variable's handle or a constant."""
        obj = self._objects.nodes[node_id]
        kind = obj.WhichOneof("kind")
        if self._variable(node_id) is not None:
            return Resource(self._variables[node_id].key)
        if kind == "constant":
            return graph.decode_attr(self._top[obj.constant.operation].attr["value"])
        raise NotImplementedError(
            f"function {function_name} captures a {kind} object (node {node_id})")

    def _string_runner(self, name: str, function_name: str, input_keys: Sequence[str],
                       specs: Mapping[str, jaxhub.TensorSpec],
                       host_keys: frozenset[str] = frozenset()):
        """:meth:`_host_runner` for a function that takes strings, which needs a stage."""
        staged = self._host_runner(name, function_name, input_keys, specs, host_keys)
        if staged is None:  # strings in, but no string op reads them
            raise NotImplementedError(f"signature {name!r}: string inputs that no "
                                      f"string op reads")
        return staged

    def _value_shaped(self, function_name: str) -> bool:
        """True when the function runs an op whose output shape may follow its inputs'
        values: it may need a host stage (see :mod:`jaxhub_tf.from_tf.host_stages.split`)."""
        reachable = self._interp.reachable_nodes(self._interp.function(function_name))
        return any(split.shaped_by_values(self._interp.function(owner))
                   for owner in dict.fromkeys(owner for owner, _ in reachable))

    def _host_runner(self, name: str, function_name: str, input_keys: Sequence[str],
                     specs: Mapping[str, jaxhub.TensorSpec],
                     host_keys: frozenset[str] = frozenset()):
        """The device part of a function with a host stage; records the stage.

        Args:
          name: the signature's name (the host stage is stored under it).
          function_name: the concrete function.
          input_keys: the signature's input keys, in the order of the function's args.
          specs: the signature's input specs (strings included).
          host_keys: numeric inputs the host stage takes too (ragged components).

        Returns:
          ``(run, keys, device specs)``: ``run(params, [inputs[k] for k in keys], rng)``
          runs the device function on the host stage's results and the numeric inputs;
          None when the function needs no host stage.
        """
        # Inputs that the stage may take keep their shapes (unknown sizes None); a ragged
        # component keeps the stage's default, [None].
        shapes = {k: split.stage_shape(specs[k]) for k in input_keys
                  if not (k in host_keys and specs[k].shape)}
        parts = string_functions.split_function(self._interp, self._meta, self._path,
                                                function_name, input_keys, host_keys,
                                                shapes)
        if parts is None:
            return None
        self.host_stages[name] = parts.program
        self.assets.update(parts.assets)
        concrete = self._objects.concrete_functions[function_name]
        variables = [self._bound_value(function_name, node_id)
                     for position, node_id in enumerate(concrete.bound_inputs)
                     if position not in parts.inlined_captures]
        # Device args: host results, then numeric inputs, then the captured variables.
        n_inputs = len(parts.device.args) - len(variables)
        keys = [parts.user_args.get(a, a) for a in parts.device.args[:n_inputs]]
        device_specs = {**split.device_input_specs(parts.program, parts.assets),
                        **{k: specs[k] for k in parts.user_args.values()}}
        run = split.explaining_host_sizes(self._graph_runner(parts.device, variables),
                                          parts.program, device_specs, parts.sources)
        return run, keys, device_specs

    def _runner(self, function_name: str):
        """``run(params, args, rng) -> (outputs, updates as a params subtree)``."""
        return self._graph_runner(self._interp.function(function_name),
                                  self._bound_inputs(function_name))

    def _graph_runner(self, fn: graph.Function, bound: list[Any]):
        """:meth:`_runner` for a graph whose captured values are ``bound``."""
        self._used.append(fn)
        evaluate = self._interp.as_function(fn, check=False)  # see check_supported

        def run(params: Mapping[str, Any], args: Sequence[Any], rng: Any,
                checks: list | None = None):
            by_key = {v.key: v for v in self._variables.values()}
            flat = dict(extend.flatten(params))
            state = {v.key: flat[v.path] for v in self._variables.values()}
            outs, updates = evaluate(state, list(args) + bound, rng, checks)
            return outs, extend.unflatten((by_key[k].path, v) for k, v in updates.items())

        run.draws_random = random_ops.draws_random(self._interp, fn)
        return run


def _checkpointed_variables(path: pathlib.Path, objects
                            ) -> tuple[bundle.BundleReader, dict[int, tuple[str, str, bool]]]:
    """The checkpoint's reader, and object graph node id -> (TF name, checkpoint key,
    trainable) of each variable. Values are read when a function captures the variable:
    a Keras export saves second copies of its variables that no function uses (half of
    the bytes of VGG16-sized hed's checkpoint)."""
    reader = bundle.BundleReader(path / "variables" / "variables")
    ckpt_graph = protos.TrackableObjectGraph()
    try:
        ckpt_graph.ParseFromString(reader.get_tensor(_CKPT_GRAPH_KEY).item())
    except Exception as e:  # noqa: BLE001  (KeyError, DecodeError: the same fix)
        raise bundle.CheckpointError(f"{path / 'variables'}: the checkpoint has no readable "
                                     f"object graph ({e})") from None
    variables = {}
    for node_id, obj in enumerate(objects.nodes):
        if obj.WhichOneof("kind") != "variable":
            continue
        keys = [a.checkpoint_key for a in ckpt_graph.nodes[node_id].attributes
                if a.name == "VARIABLE_VALUE"]
        if not keys:
            continue
        variables[node_id] = (obj.variable.name or f"variable_{node_id}", keys[0],
                              bool(obj.variable.trainable))
    return reader, variables


class _ParamNames:
    """Clean, unique param paths from TF variable names."""

    def __init__(self):
        self._leaves: set[tuple[str, ...]] = set()
        self._prefixes: set[tuple[str, ...]] = set()

    def make(self, tf_name: str) -> tuple[str, ...]:
        name = tf_name[:-2] if re.search(r":\d+$", tf_name) else tf_name
        parts = tuple(_UNCLEAN.sub("_", p) or "_" for p in name.split("/")) or ("_",)
        path, n = parts, 0
        while path in self._leaves or path in self._prefixes or any(
                path[:i] in self._leaves for i in range(1, len(path))):
            n += 1
            path = parts[:-1] + (f"{parts[-1]}_{n}",)
        self._leaves.add(path)
        self._prefixes.update(path[:i] for i in range(1, len(path)))
        return path



def _refuse_composites(name: str, sig) -> None:
    """Refuses a signature_def input or output that is a sparse or composite tensor (its
    ``TensorInfo`` names components, not one tensor): a jaxhub signature takes and returns
    arrays."""
    for kind, infos in (("input", sig.inputs), ("output", sig.outputs)):
        for key, info in sorted(infos.items()):
            encoding = info.WhichOneof("encoding")
            if encoding != "name":
                what = "a SparseTensor" if encoding == "coo_sparse" else "a composite tensor"
                raise NotImplementedError(
                    f"signature {name!r}: {kind} {key!r} is {what}, not one tensor: a "
                    f"jaxhub signature takes and returns arrays; pass or return its "
                    f"components (a SparseTensor's indices, values and dense_shape, or "
                    f"tf.sparse.to_dense of it) and save the SavedModel again")

def _spec(shape_proto, dtype_enum: int) -> jaxhub.TensorSpec:
    shape = graph.decode_shape(shape_proto)
    if shape is None:
        raise NotImplementedError("an input of unknown rank cannot be exported")
    return jaxhub.TensorSpec(list(shape), graph.decode_dtype(dtype_enum))


def _is_string(spec: jaxhub.TensorSpec) -> bool:
    return spec.dtype == "string"


def _leaves(structure: Any, prefix: str | None = None) -> list[tuple[str, Any]]:
    """``(path, leaf)`` of a decoded structure in TF's flattening order: dict keys
    (sorted) and list positions joined with ``/`` after ``prefix``; a bare leaf without
    a prefix is ``default``."""
    def path(key: Any) -> str:
        return str(key) if prefix is None else f"{prefix}/{key}"

    if isinstance(structure, Mapping):
        return [leaf for key in sorted(structure)
                for leaf in _leaves(structure[key], path(key))]
    if isinstance(structure, (list, tuple)):
        return [leaf for i, item in enumerate(structure) for leaf in _leaves(item, path(i))]
    return [(prefix or "default", structure)]


#: Dtypes of handles (variables, datasets, ...), which no signature takes or returns.
_HANDLE_DTYPES = frozenset({"resource", "variant"})


def _components(path: str, leaf: Any) -> dict[str, jaxhub.TensorSpec] | None:
    """The flat tensors of a tensor or ragged tensor at ``path``, by name (in TF's order);
    None for another leaf (a Python value, a sparse tensor)."""
    if isinstance(leaf, structure_lib.TensorSpec) and leaf.shape is not None:
        if leaf.dtype in _HANDLE_DTYPES:  # a variable or dataset: nothing to pass as an array
            return None
        return {path: jaxhub.TensorSpec(list(leaf.shape), leaf.dtype)}
    if not (isinstance(leaf, structure_lib.TypeSpec) and leaf.class_name == "RaggedTensorSpec"):
        return None
    shape, dtype, ragged_rank, splits_dtype = leaf.state[:4]
    if shape is None or leaf.num_flat_components != ragged_rank + 1:
        return None
    names = extend.ragged_component_names(path, ragged_rank)
    specs = {names[0]: jaxhub.TensorSpec([None, *shape[ragged_rank + 1:]], dtype)}
    specs.update((n, jaxhub.TensorSpec([None], splits_dtype)) for n in names[1:])
    return specs


def _arg_names(function_spec) -> list[str]:
    """The positional arg names of a saved tf.function's Python function (without
    ``self``); empty when the SavedModel does not record them."""
    if not function_spec.HasField("fullargspec"):
        return []
    spec = structure_lib.decode(function_spec.fullargspec)
    names = [str(n) for n in (spec[0] or ())] if isinstance(spec, tuple) and spec else []
    return names[1:] if function_spec.is_method and names[:1] == ["self"] else names


def _list_lengths(structure: Any) -> str:
    """The lengths of a function's list arguments, joined by ``_`` (``"2"`` for one list
    of two items); empty for a function without list arguments."""
    args, kwargs = structure
    arguments = list(args) + [kwargs[k] for k in sorted(kwargs)]
    return "_".join(str(len(a)) for a in arguments if isinstance(a, (list, tuple)))


def _unknown_dims(spec: structure_lib.TensorSpec) -> int:
    return sum(d is None for d in spec.shape)


def _named_by_keys(args: Any, specs: list[structure_lib.TensorSpec]
                   ) -> list[structure_lib.TensorSpec]:
    """``specs`` named by the keys of a dict first argument (TF names them after the
    argument: ``inputs_input_mask``), as TF Hub's encoders take their inputs."""
    positional = args[0] if isinstance(args, tuple) and args else ()
    first = positional[0] if positional else None
    if isinstance(first, Mapping):
        leaves = [(path, leaf) for path, leaf in _leaves(first)
                  if isinstance(leaf, structure_lib.TensorSpec)]
        if len(leaves) == len(specs):
            return [dataclasses.replace(leaf, name=path) for path, leaf in leaves]
    return specs


def _call_input_specs(specs: Sequence[structure_lib.TensorSpec]
                      ) -> jaxhub.TensorSpec | dict[str, jaxhub.TensorSpec]:
    """``__call__``'s inputs as jaxhub specs: one spec, or a dict for several inputs,
    keyed by the inputs' names (Keras ``Input(name=...)``), else ``input_0``, ..."""
    converted = [jaxhub.TensorSpec(list(s.shape), s.dtype) for s in specs]
    if len(converted) == 1:
        return converted[0]
    names = [s.name for s in specs]
    if not all(names) or len(set(names)) != len(names):
        names = [f"input_{i}" for i in range(len(specs))]
    return dict(zip(names, converted))


def _call_args(in_spec: jaxhub.TensorSpec | dict[str, jaxhub.TensorSpec]
               ) -> Callable[[Any], list[Any]]:
    """How the ``default`` signature's inputs become ``__call__``'s arguments, in order."""
    if isinstance(in_spec, dict):
        keys = list(in_spec)
        return lambda inputs: [inputs[k] for k in keys]
    return lambda x: [x]


def _output_names(structure: Any) -> list[str] | None:
    """Output names for a function's flat outputs: dict keys, or None for one tensor."""
    if isinstance(structure, Mapping):
        return [str(k) for k in sorted(structure)]
    flat = structure_lib.flatten(structure)
    if len(flat) == 1:
        return None
    return [f"output_{i}" for i in range(len(flat))]


def _outputs(names: list[str] | None, outs: Sequence[Any]):
    if names is None:
        return outs[0]
    return dict(zip(names, outs))
