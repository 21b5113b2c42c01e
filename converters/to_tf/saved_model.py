"""jaxhub modules as TF2 SavedModels that follow TF Hub's Reusable SavedModel conventions.

What becomes what:

* Every param becomes a ``tf.Variable`` named after its path (``dense/kernel``), trainable
  as the module's trainable mask says. The SavedModel's root lists them as ``variables``
  and ``trainable_variables``.
* The ``"default"`` signature becomes ``__call__(inputs, training=False)``: a single input
  is taken bare and a single output returned bare, several as dicts by name. With
  ``training=True`` it runs the ``{"train"}`` variant, when the module has one: the RNG
  key comes from the ``tf.random.Generator`` saved as ``rng`` (its state advances with
  every call), and the updated state (batch-norm statistics) is assigned to the variables.
* Every signature of the inference variant becomes a serving signature of the same name,
  with the same input and output names; the ``"default"`` one is also ``serving_default``.
  Symbolic sizes (``"batch"``) are ``None`` in TF and stay polymorphic in the graph.
* The module's regularizer becomes the only entry of ``regularization_losses``.
* Assets become SavedModel assets (``obj.assets[name].asset_path``); attachments are
  written to ``assets.extra/jaxhub_attachments.json``.
* Gradients are saved with the functions (``tf.custom_gradient`` around the module's
  exported VJP), so ``tf.GradientTape`` and ``hub.KerasLayer(..., trainable=True)``
  fine-tune the variables.

Examples:
  >>> export_saved_model(jaxhub.load("/tmp/my_module"), "/tmp/my_saved_model")
  >>> layer = hub.KerasLayer("/tmp/my_saved_model", trainable=True)
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Mapping, Sequence

import jax
import numpy as np
import tensorflow as tf

import jaxhub
from jaxhub import extend
from jaxhub_tf.to_tf import tf_functions

#: The signature that becomes ``__call__`` and ``serving_default``.
DEFAULT_SIGNATURE = "default"
SERVING_DEFAULT = "serving_default"
#: Where the module's attachments go: TF's place for files that the graph does not use.
ASSETS_EXTRA = "assets.extra"
ATTACHMENTS_FILE = "jaxhub_attachments.json"
TRAIN_TAGS = frozenset({"train"})


def export_saved_model(module: jaxhub.Module | str | os.PathLike, dst: str | os.PathLike, *,
                       params: Mapping[str, Any] | None = None, seed: int = 0,
                       platforms: Sequence[str] | None = None) -> pathlib.Path:
    """Writes ``module`` as a TF2 SavedModel that ``tensorflow_hub`` loads and fine-tunes.

    Args:
      module: a module, or a path or URL that :func:`jaxhub.load` reads.
      dst: the SavedModel directory to create; it must not exist or be empty.
      params: the values to give the variables (fine-tuned params, say); the module's own
        params by default.
      seed: the initial seed of the saved ``tf.random.Generator`` that draws the RNG keys of
        the functions that take one: the ``{"train"}`` variant (dropout), a signature with
        random ops.
      platforms: the platforms the TF graph is lowered for (default: those the module's
        functions were lowered for).

    Returns:
      The SavedModel directory.

    Raises:
      FileExistsError: ``dst`` exists and is not an empty directory.
      jaxhub.SignatureError: ``params`` do not match the module.
      NotImplementedError: the module preprocesses strings on the host (a text module).

    Examples:
      >>> path = export_saved_model("/tmp/mlp", "/tmp/mlp_tf")
      >>> obj = hub.load(str(path))
      >>> obj(x)                                         # the "default" signature
      >>> obj.signatures["double"](a=x)["doubled"]        # any signature, by name
    """
    if not isinstance(module, jaxhub.Module):
        module = jaxhub.load(module)
    _check_no_host_stages(module)
    params = module.params if params is None else params
    platforms = module.platforms if platforms is None else tuple(platforms)
    root, signatures = _build(module, params, seed, platforms)
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=True)

    def write(tmp: pathlib.Path) -> None:
        tf.saved_model.save(root, str(tmp), signatures=signatures, options=options)
        if module.attachments:
            extra = tmp / ASSETS_EXTRA
            extra.mkdir(exist_ok=True)
            (extra / ATTACHMENTS_FILE).write_text(
                json.dumps(dict(module.attachments), indent=2, sort_keys=True) + "\n")

    return _write_atomically(pathlib.Path(dst), write)


def _check_no_host_stages(module: jaxhub.Module) -> None:
    """Refuses modules whose signatures run a host stage (strings, tables) first.

    The stage is numpy code that :meth:`jaxhub.Module.apply` runs before the device
    function; it has no TF graph to export.
    """
    stages = module.attachments.get(extend.HOST_STAGES_ATTACHMENT, {})
    if stages:
        raise NotImplementedError(
            f"signatures {sorted(stages)} preprocess strings on the host (a host stage) "
            f"before their device function; exporting such modules to TensorFlow is not "
            f"supported")


def _build(module: jaxhub.Module, params: Mapping[str, Any], seed: int,
           platforms: tuple[str, ...]) -> tuple[tf.train.Checkpoint, dict[str, Any]]:
    """The object to save and its serving signatures (concrete functions by name)."""
    variables = _Variables(module, params)
    # Train variants of other signatures have no place in a Reusable SavedModel.
    convert = {(spec.tags, spec.signature_name): tf_functions.convert(module, spec, platforms)
               for spec in module.manifest.functions
               if not spec.tags or spec.signature_name == DEFAULT_SIGNATURE}
    root = tf.train.Checkpoint()
    root.variables = variables.all
    root.trainable_variables = [v for v in variables.all if v.trainable]
    root.regularization_losses = _regularization_losses(module, variables, platforms)
    # Copied into the SavedModel's assets/; `obj.assets[name].asset_path` after loading.
    root.assets = {name: tf.saved_model.Asset(str(path)) for name, path in module.assets.items()}
    if any(fn.spec.takes_rng for fn in convert.values()):
        root.rng = tf.random.Generator.from_seed(seed)
    rng = getattr(root, "rng", None)
    inference = convert.get((frozenset(), DEFAULT_SIGNATURE))
    if inference is not None:
        train = convert.get((TRAIN_TAGS, DEFAULT_SIGNATURE))
        root.__call__ = _reusable_call(variables, inference, train, rng)
    signatures = {}
    for (tags, name), fn in convert.items():
        if not tags:
            signatures[name] = _serving_function(variables, fn, rng)
    if DEFAULT_SIGNATURE in signatures and SERVING_DEFAULT not in signatures:
        signatures[SERVING_DEFAULT] = signatures[DEFAULT_SIGNATURE]
    return root, signatures


class _Variables:
    """The module's params as ``tf.Variable``s, in manifest order."""

    def __init__(self, module: jaxhub.Module, params: Mapping[str, Any]):
        # Tracing any function of the module checks params against its manifest.
        jax.eval_shape(module.regularization_loss, params)
        given = dict(extend.flatten(params))
        self.all: list[tf.Variable] = []
        self._by_path: dict[extend.Path, tf.Variable] = {}
        for spec in module.manifest.params:
            var = tf.Variable(np.asarray(given[spec.path]), name="/".join(spec.path),
                              trainable=spec.trainable)
            self.all.append(var)
            self._by_path[spec.path] = var

    def values(self) -> list[tf.Tensor]:
        """The current values, read outside the converted function so gradients reach
        the variables through ``tf.custom_gradient``."""
        return [v.read_value() for v in self.all]

    def assign(self, paths: Sequence[extend.Path], values: Sequence[tf.Tensor]) -> list:
        return [self._by_path[path].assign(value) for path, value in zip(paths, values)]


def _reusable_call(variables: _Variables, inference: tf_functions.TfFunction,
                   train: tf_functions.TfFunction | None, rng: tf.random.Generator | None):
    """``__call__(inputs, training=False)``, traced for both values of ``training``."""
    bare = len(inference.spec.signature.inputs) == 1
    input_name = next(iter(inference.spec.signature.inputs))

    def call(inputs, training=False):
        fn = train if training and train is not None else inference
        given = {input_name: inputs} if bare else inputs
        key = _draw_key(rng) if fn.spec.takes_rng else None
        outputs, state = fn.call(variables.values(), given, key)
        with tf.control_dependencies(variables.assign(fn.spec.state, state)):
            outputs = {k: tf.identity(v) for k, v in outputs.items()}
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs

    call_fn = tf.function(call, autograph=False)
    specs = inference.input_specs
    spec = specs[input_name] if bare else specs
    for training in (False, True):
        call_fn.get_concrete_function(spec, training=training)
    return call_fn


def _draw_key(rng: tf.random.Generator) -> tf.Tensor:
    """uint32[2] key data for a function that draws random numbers, from the saved generator.

    Drawn as int32 over its full range (but its maximum) and bit-cast, so that the graph
    uses only ``RngReadAndSkip`` and ``StatelessRandomUniformIntV2``, which the TF -> jaxhub
    converter maps onto the caller's key.
    """
    words = rng.uniform([2], minval=-2 ** 31, maxval=2 ** 31 - 1, dtype=tf.int32)
    return tf.bitcast(words, tf.uint32)


def _serving_function(variables: _Variables, fn: tf_functions.TfFunction,
                      rng: tf.random.Generator | None):
    """A serving signature: named inputs in, a dict of named outputs out.

    A signature that draws random numbers takes its key from the saved generator, and
    one that assigns params assigns their variables, as the TF function it came from.
    """
    def serve(inputs):
        key = _draw_key(rng) if fn.spec.takes_rng else None
        outputs, state = fn.call(variables.values(), inputs, key)
        with tf.control_dependencies(variables.assign(fn.spec.state, state)):
            return {k: tf.identity(v) for k, v in outputs.items()}

    return tf.function(serve, autograph=False).get_concrete_function(fn.input_specs)


def _regularization_losses(module: jaxhub.Module, variables: _Variables,
                           platforms: tuple[str, ...]) -> list:
    """``[loss_fn]`` when the module has a regularizer: a function of no args -> scalar."""
    if module.manifest.regularizer is None:
        return []
    converted = tf_functions.convert_regularizer(module, platforms)

    def loss():
        (loss_value,) = converted(*variables.values())
        return loss_value

    return [tf.function(loss, input_signature=[], autograph=False)]


def _write_atomically(dst: pathlib.Path, write) -> pathlib.Path:
    """Runs ``write(tmp)`` into a directory beside ``dst``, then renames it to ``dst``."""
    dst = dst.absolute()
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(f"{dst} exists; export into a new directory")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        write(tmp)
        if dst.exists():
            dst.rmdir()
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst
