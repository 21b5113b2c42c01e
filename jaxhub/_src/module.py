"""``jaxhub.Module``: serialized functions with named signatures, plus their params.

A module is a value: a static, hashable :class:`ModuleDef` (the manifest, the
deserialized functions, the host stages and the assets they read) beside a params
pytree. It is itself a pytree whose children are the params and whose auxiliary data is
the ``ModuleDef``, so it can be passed through ``jax.jit``, ``jax.tree.map`` and friends
like any other tree of arrays.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import pathlib
import re
import threading
import types
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export
from jax.experimental import checkify

from jaxhub._src import serialization
from jaxhub._src import host
from jaxhub._src import tree
from jaxhub._src.storage import reader
from jaxhub._src.storage.manifest import FunctionSpec, Manifest, ParamSpec, Tags
from jaxhub._src.specs import (WIDE_DTYPES, NoGradientError, Signature, SignatureError,
                               TensorSpec, check_inputs, empty_outputs, flatten_ragged,
                               nest_ragged)

#: The implementation behind the raw key data that train variants take.
RNG_IMPL = "threefry2x32"

TagsLike = str | Iterable[str] | None


def canonical_tags(tags: TagsLike) -> Tags:
    """``None`` -> ``frozenset()``, ``"train"`` -> ``frozenset({"train"})``, sets as sets."""
    if tags is None:
        return frozenset()
    if isinstance(tags, str):
        return frozenset([tags])
    return frozenset(tags)


@dataclasses.dataclass(frozen=True, eq=False)
class ModuleDef:
    """The static part of a module: everything but the values of its params.

    Built once per loaded (or created) module and shared by every module that differs
    only in its params (a ``jax.tree.map`` of one, a module rebuilt inside ``jit``). It is
    compared and hashed by identity, which is what ``jit`` needs of auxiliary data: the
    same loaded module hits the same compiled code.

    Attributes:
      manifest: the module's description, as stored in ``jaxhub_module.json``.
      functions: the deserialized functions, by file name.
      assets: the module's files (vocabularies), by name: paths, or bytes for a module
        created in memory with assets given as bytes.
      path: the directory the module was loaded from, if any.
      host_stages: the host stage of each signature that has one, by signature name.
      asset_bytes: the assets the host stages read, held in memory since load.
      callables: each function made callable (differentiable and batchable), by file.
      x64_files: the function files whose numbers are wide (their 64-bit inputs were
        exported as 64-bit: JAX's 64-bit types were on), each mapped to True, and those
        whose 64-bit inputs were exported narrowed (to False); files with no 64-bit
        input are absent.
      gradients: for a module stored without gradients, the copy of it written with
        them, read the first time a gradient is traced through one of its functions
        (None: there is no such copy).
    """

    manifest: Manifest
    functions: Mapping[str, jax_export.Exported]
    assets: Mapping[str, pathlib.Path | bytes]
    path: pathlib.Path | None
    host_stages: Mapping[str, host.HostStage]
    asset_bytes: Mapping[str, bytes]
    callables: Mapping[str, Any]
    x64_files: Mapping[str, bool] = dataclasses.field(default_factory=dict)
    gradients: WithGradients | None = None

    @classmethod
    def build(cls, manifest: Manifest, functions: Mapping[str, jax_export.Exported],
              assets: Mapping[str, pathlib.Path | bytes] | None = None,
              path: pathlib.Path | None = None,
              gradients: Callable[[], pathlib.Path] | None = None) -> ModuleDef:
        """Checks the host stages, reads the assets they use, makes each function callable.

        ``gradients``: for a module stored without gradients, returns the directory of
        the same module written with them (see :class:`WithGradients`).

        Raises:
          HostStageError: a stage is malformed, breaks a limit, or reads a file that is
            not one of the module's assets.
        """
        assets = types.MappingProxyType(dict(assets or {}))
        stages, asset_bytes = _host_stages(manifest, assets)
        source = (WithGradients(manifest, gradients)
                  if gradients is not None and not manifest.gradients else None)
        return cls(manifest, types.MappingProxyType(dict(functions)), assets, path,
                   types.MappingProxyType(stages), types.MappingProxyType(asset_bytes),
                   types.MappingProxyType(_callables(manifest, functions, source, path)),
                   types.MappingProxyType(_x64_files(manifest, functions)), source)


class WithGradients:
    """The copy, written with gradients, of a module stored without them.

    A module converted into the cache by ``jaxhub.load`` is written without gradients;
    the first gradient traced through one of its functions asks ``fetch`` for the
    directory of the same module written with them (converted again, or found in the
    cache), and reads its functions. This is the one thing a ``ModuleDef`` computes
    lazily: a gradient is asked of it inside a trace, where the files are read once for
    every module that shares the definition.
    """

    def __init__(self, manifest: Manifest, fetch: Callable[[], pathlib.Path]):
        self._manifest = manifest
        self._fetch = fetch
        self._lock = threading.Lock()
        self._read: tuple[Manifest, dict[str, Any], dict[str, Any]] | None = None

    def read(self) -> tuple[Manifest, Mapping[str, jax_export.Exported]]:
        """The manifest and functions of the copy with gradients.

        Raises:
          NoGradientError: the copy cannot be made, or describes another module (its
            source changed since this one was loaded).
        """
        return self._contents()[:2]

    @property
    def fetched(self) -> bool:
        """Whether the copy has been read (by a gradient traced through the module)."""
        return self._read is not None

    def callable(self, file: str) -> Callable[..., tuple]:
        """The copy's function in ``file``, differentiable."""
        return self._contents()[2][file]

    def _contents(self) -> tuple[Manifest, dict[str, Any], dict[str, Any]]:
        with self._lock:
            if self._read is None:
                # Asked inside a trace (jit, grad): converting and reading in a thread of
                # their own keep the conversion's arrays out of the caller's trace.
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    self._read = pool.submit(self._fetch_and_read).result()
            return self._read

    def _fetch_and_read(self) -> tuple[Manifest, dict[str, Any], dict[str, Any]]:
        path = self._fetch()
        manifest, functions = reader.read_functions(path)
        if _calling_conventions(manifest) != _calling_conventions(self._manifest):
            raise NoGradientError(
                f"the module with gradients at {path} does not take and return what the "
                f"loaded module does: its source changed since it was loaded; load it again")
        return manifest, functions, _callables(manifest, functions)


def _calling_conventions(manifest: Manifest) -> tuple:
    """What a module's functions take and return: the same in both copies of a module."""
    return manifest.params, tuple(
        (f.tags, f.signature_name, f.signature, f.file, f.takes_rng, f.state, f.checks)
        for f in manifest.functions)


def _host_stages(manifest: Manifest, assets: Mapping[str, pathlib.Path | bytes]
                 ) -> tuple[dict[str, host.HostStage], dict[str, bytes]]:
    """Every host stage, checked, and the bytes of the assets they read."""
    programs = manifest.attachments.get(host.ATTACHMENT_KEY, {})
    if not isinstance(programs, Mapping):
        raise host.HostStageError(f"attachment {host.ATTACHMENT_KEY!r} is not a "
                                  f"mapping of signature name to host stage")
    limits = host.HostLimits.from_env()
    store = host.AssetStore(assets, limits, expected=manifest.assets)
    stages = {str(name): host.HostStage(program, store, signature=str(name), limits=limits)
              for name, program in programs.items()}
    return stages, dict(store.loaded)


def _x64_files(manifest: Manifest, functions: Mapping[str, jax_export.Exported]
               ) -> dict[str, bool]:
    """Whether each function with a declared 64-bit input was exported with 64-bit types."""
    out = {}
    for fn in manifest.functions:
        declared = [name for name, s in fn.signature.inputs.items() if s.dtype in WIDE_DTYPES]
        if not declared:
            continue
        avals = functions[fn.file].in_avals[len(manifest.params):]
        by_name = dict(zip(fn.signature.inputs, avals))
        out[fn.file] = any(np.dtype(by_name[n].dtype).itemsize == np.dtype(
            fn.signature.inputs[n].dtype).itemsize for n in declared)
    return out


def _callables(manifest: Manifest, functions: Mapping[str, jax_export.Exported],
               gradients: WithGradients | None = None, path: pathlib.Path | None = None
               ) -> dict[str, Any]:
    """Each function made callable; differentiated through its split VJP when it has one,
    through the copy with ``gradients`` when the module is stored without them."""
    vjps = {f.file: f.vjp for f in manifest.functions}
    out = {}
    for file in [*(f.file for f in manifest.functions), manifest.regularizer]:
        if file is None or file in out:
            continue
        vjp, split, differentiable = vjps.get(file), None, None
        if vjp is not None:
            split = serialization.SplitVjp(functions[vjp.forward], functions[vjp.backward],
                                           vjp.saved_inputs, vjp.saved_outputs)
        if gradients is not None and file != manifest.regularizer:
            differentiable = functools.partial(gradients.callable, file)
        out[file] = serialization.make_callable(
            functions[file], split, no_gradient=_no_gradient(manifest, file, path),
            differentiable=differentiable)
    return out


def _no_gradient(manifest: Manifest, file: str, path: pathlib.Path | None = None
                 ) -> str | None:
    """What differentiating the function in ``file`` raises when it has no gradient
    (stored forward-only, or without gradients), or None."""
    fns = [f for f in manifest.functions if f.file == file]
    names = ", ".join(repr(f.signature_name) for f in fns)
    if fns and not manifest.gradients:
        where = f"the module at {path}" if path else "the module"
        return (f"signature {names} has no gradient: {where} was written without "
                f"gradients (as jaxhub.load converts a module into its cache, or "
                f"create_module(gradients=False)); load its source with jaxhub.load, "
                f"which exports the gradient on first use, or write it with gradients "
                f"(`jaxhub convert SRC DST`)")
    fns = [f for f in fns if f.forward_only is not None]
    if not fns:
        return None
    names = ", ".join(repr(f.signature_name) for f in fns)
    return (f"signature {names} is forward-only: JAX could not differentiate it when the "
            f"module was made ({fns[0].forward_only}); call it outside jax.grad, or "
            f"stop_gradient its inputs and params")


class Module:
    """A self-contained piece of a model: named signatures over one params tree.

    Modules come from :func:`jaxhub.load`, :func:`jaxhub.create_module` or
    :func:`jaxhub.from_flax`. Applying one runs XLA-compiled code deserialized from the
    module; no Python code of its publisher is needed.

    A module is a pytree: its leaves are its params, so it can be an argument of a
    jitted function (``jax.jit(lambda m, x: m(x))(module, x)``), and
    ``jax.tree.map(f, module)`` is the same module with ``f`` applied to its params.

    Examples:
      >>> m = jaxhub.create_module(                   # or jaxhub.load(path or URL)
      ...     {"w": jnp.ones((3, 2))},
      ...     signatures={"default": (lambda p, x: x @ p["w"], jaxhub.TensorSpec([None, 3])),
      ...                 "double": (lambda p, x: {"y": 2 * x["a"]},
      ...                            {"a": jaxhub.TensorSpec([None])})})
      >>> x = jnp.ones((1, 3))
      >>> m(x)                                         # "default" signature, own params
      Array([[3., 3.]], dtype=float32)
      >>> m({"a": jnp.arange(2.0)}, signature="double", as_dict=True)
      {'y': Array([0., 2.], dtype=float32)}
      >>> grads = jax.grad(lambda p: jnp.sum(m.apply(p, x)))(m.params)
      >>> grads["w"].shape
      (3, 2)
      >>> jax.jit(lambda module, x: module(x))(m, x)  # a module is a pytree
      Array([[3., 3.]], dtype=float32)
    """

    def __init__(self, manifest: Manifest, exported: Mapping[str, jax_export.Exported],
                 params: dict[str, Any], assets: Mapping[str, pathlib.Path | bytes] | None = None,
                 path: pathlib.Path | None = None,
                 gradients: Callable[[], pathlib.Path] | None = None):
        self._def = ModuleDef.build(manifest, exported, assets, path, gradients)
        self._params = params

    @classmethod
    def from_def(cls, definition: ModuleDef, params: Any) -> Module:
        """The module described by ``definition`` with ``params`` (not checked)."""
        module = object.__new__(cls)
        module._def = definition
        module._params = params
        return module

    @property
    def definition(self) -> ModuleDef:
        """The static part of the module: all but its params."""
        return self._def

    # -- description ----------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        """The module's full description, as stored in ``jaxhub_module.json``."""
        return self._def.manifest

    @property
    def functions(self) -> Mapping[str, jax_export.Exported]:
        """The module's deserialized ``jax.export`` functions, by file name."""
        return self._def.functions

    @property
    def signatures(self) -> Mapping[str, Signature]:
        """Signatures of the inference variant (no tags), by name."""
        return self.variant_signatures(frozenset())

    def variant_signatures(self, tags: TagsLike) -> Mapping[str, Signature]:
        """Signatures of the variant with ``tags``, by name."""
        tags = canonical_tags(tags)
        return types.MappingProxyType({f.signature_name: self._public_signature(f)
                                       for f in self._def.manifest.functions if f.tags == tags})

    def _public_signature(self, fn: FunctionSpec) -> Signature:
        """What callers pass: a host stage's inputs (strings) replace the ones it makes."""
        stage = self._host_stage(fn.signature_name)
        if stage is None:
            return fn.signature
        made = set(stage.outputs) | set(stage.size_of)
        inputs = {k: TensorSpec(v["shape"], v["dtype"]) for k, v in stage.input_specs.items()}
        inputs.update({k: s for k, s in fn.signature.inputs.items() if k not in made})
        return Signature(inputs, fn.signature.outputs)

    @property
    def variants(self) -> tuple[Tags, ...]:
        """The tag sets of the module's variants: ``frozenset()`` is inference."""
        seen = dict.fromkeys(f.tags for f in self._def.manifest.functions)
        return tuple(sorted(seen, key=sorted))

    @property
    def attachments(self) -> Mapping[str, Any]:
        """Small metadata a consumer can read without running anything (image size, ...)."""
        return self._def.manifest.attachments

    def get_attached_message(self, key: str, default: Any = None) -> Any:
        """The attachment ``key``, or ``default`` (TF Hub's name for attachments)."""
        return self._def.manifest.attachments.get(key, default)

    @property
    def assets(self) -> Mapping[str, pathlib.Path | bytes]:
        """Files the module ships (vocabularies), by name.

        These are paths into the module's directory (a module made by
        :func:`jaxhub.create_module` holds the bytes of assets it was given as bytes,
        until it is exported). Host stages do not read them after
        loading: the assets they use are read at load and held in memory, so a cache entry
        replaced later does not change what the module computes.
        """
        return self._def.assets

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms the module's functions were lowered for (``"cpu"``, ``"cuda"``, ...)."""
        found = {p for exp in self._def.functions.values() for p in exp.platforms}
        return tuple(sorted(found))

    @property
    def path(self) -> pathlib.Path | None:
        """The directory the module was loaded from, if any."""
        return self._def.path

    # -- params -----------------------------------------------------------------------

    @property
    def params(self) -> dict[str, Any]:
        """All params, trainable or not, as a nested dict."""
        return self._params

    @property
    def trainable_mask(self) -> dict[str, Any]:
        """A nested dict of bools like :attr:`params`: ``True`` where fine-tuning may step.

        Pass it to ``optax.masked`` so that frozen params (batch-norm statistics) keep their
        values even under weight decay.
        """
        return tree.unflatten((p.path, p.trainable) for p in self._def.manifest.params)

    def num_params(self) -> int:
        return sum(p.size for p in self._def.manifest.params)

    def regularization_loss(self, params: Mapping[str, Any] | None = None) -> jax.Array:
        """The module's regularization loss at ``params`` (its own by default); 0 if none.

        Differentiable: add it to a fine-tuning loss (TF Hub's REGULARIZATION_LOSSES).
        """
        leaves = self._param_leaves(self._params if params is None else params, "regularizer")
        if self._def.manifest.regularizer is None:
            return jnp.zeros((), jnp.float32)
        (loss,) = self._callable(self._def.manifest.regularizer)(*leaves)
        return loss

    # -- applying ---------------------------------------------------------------------

    def __call__(self, inputs: Any, signature: str = "default", as_dict: bool = False,
                 tags: TagsLike = None, rng: jax.Array | None = None) -> Any:
        """Applies a signature with the module's own params; see :meth:`apply`."""
        return self.apply(self._params, inputs, signature=signature, as_dict=as_dict,
                          tags=tags, rng=rng)

    def apply(self, params: Mapping[str, Any], inputs: Any, *, signature: str = "default",
              as_dict: bool = False, tags: TagsLike = None, rng: jax.Array | None = None
              ) -> Any:
        """Applies a signature of a variant with the given params.

        Pure, so usable under ``jit``, ``grad`` and ``vmap``, for every signature without a
        host stage. A signature with a host stage (a text module's string and table
        preprocessing; :meth:`has_host_stage`) is the one documented exception: its numpy
        stage runs first, on concrete inputs, outside any trace; only the device function
        after it is traced. To jit such a call, run :meth:`preprocess` outside and pass
        its result to :meth:`apply_device` inside.

        Args:
          params: a params tree like :attr:`params` (fine-tuned values, say). Gradients
            do not flow into non-trainable leaves.
          inputs: a dict of arrays by input name, or one array when the signature has a
            single input; a :class:`jaxhub.Ragged` (or a list of them) for the
            components of a ragged input. A signature with a host stage (text modules; see
            :class:`jaxhub.extend.HostStage`) takes the stage's inputs instead, such as strings.
          signature: the signature's name; or the name of a converted tf.function
            traced for several input structures, whose signatures are
            ``<name>_<list lengths>``: the one taking the given inputs is applied.
          as_dict: return all outputs as a dict. Otherwise a single output is returned
            bare; of several, the one named ``"default"`` (as TF1 ``hub.Module`` does),
            or, when none has that name, all of them as a dict (as a TF2 SavedModel's
            signature does). The components of a ragged output come as one
            :class:`jaxhub.Ragged`.
          tags: the variant: ``None`` for inference, ``{"train"}`` (or ``"train"``) for
            training.
          rng: a PRNG key, for variants and signatures that draw random numbers
            (dropout, sampling).

        Returns:
          The outputs for the inference variant; ``(outputs, state)`` for any other
          variant, ``state`` holding the updated non-trainable params (merge them back
          with :func:`jaxhub.merge_params`). An inference signature that assigns params
          (a converted TF signature whose effect is ``v.assign_add(x)``) returns
          ``(outputs, state)`` too, ``state`` holding the params it assigned.

        Raises:
          SignatureError: unknown signature or variant, inputs that do not match the
            signature's specs, or a missing ``rng``.
        """
        return self._apply(params, inputs, signature, as_dict, tags, rng, host_stage=True)

    def _apply(self, params, inputs, signature, as_dict, tags, rng, *, host_stage: bool):
        tags = canonical_tags(tags)
        signature = self._overload(signature, inputs, tags)
        spec = self._function_spec(tags, signature)
        if host_stage:  # strings and tables: numpy first, numbers to the device
            inputs = self.preprocess(inputs, signature=signature)
        self._check_x64(spec)
        inputs = flatten_ragged(inputs, spec.signature.inputs)
        plain = not tags and not spec.state  # outputs alone
        arrays = check_inputs(signature, spec.signature, inputs, allow_empty=plain)
        args = self._param_leaves(params, signature)
        n_outputs = len(spec.signature.outputs)
        # An empty batch: outputs known from the specs, no call (jax.export's sizes are
        # at least 1); an empty host stage result beside others: a stand-in for it.
        stand_ins, zero = {}, set()
        try:
            outputs = empty_outputs(signature, spec.signature, arrays) if plain else None
        except SignatureError as e:
            stand_ins, zero = self._stand_ins(signature, spec, arrays, e)
            outputs = None
        if outputs is None:
            args += [stand_ins.get(name, arrays[name]) for name in spec.signature.inputs]
            if spec.takes_rng:
                args.append(_key_data(rng, signature))
            flat = self._call_function(spec, args)
            _check(spec, flat[n_outputs + len(spec.state):])
            outputs = {name: _emptied(value, spec.signature.outputs[name], zero)
                       for name, value in zip(spec.signature.outputs, flat[:n_outputs])}
        outputs = nest_ragged(outputs)
        result = outputs if as_dict else _single_output(outputs)
        if plain:
            return result
        return result, tree.unflatten(zip(spec.state, flat[n_outputs:]))

    def _stand_ins(self, signature: str, spec: FunctionSpec, arrays: Mapping[str, Any],
                   error: SignatureError) -> tuple[dict[str, np.ndarray], set[str]]:
        """Stand-ins for the empty results of a host stage (a size that values set is 0:
        no ``tf.unique`` values, no box kept), and the symbols that are 0.

        jax.export's symbolic sizes are at least 1, so the device function runs on
        zeros of size 1 in their place; an output computed from them (the stage records
        which, ``reaches``) must have one of those sizes, and is cut to 0 after
        (:func:`_emptied`): its values are none, whatever the device function read.

        Raises:
          SignatureError: an empty input is not a recorded host stage result, or an
            output computed from one would not be empty (``error``, when no host stage
            result is empty).
        """
        inputs, outputs = spec.signature.inputs, spec.signature.outputs
        zero = {dim for name, s in inputs.items() for axis, dim in enumerate(s.shape)
                if isinstance(dim, str) and np.shape(arrays[name])[axis] == 0}
        empty = [name for name, s in inputs.items() if zero.intersection(s.shape)]
        stage = self._host_stage(signature)
        reaches = None if stage is None else stage.reaches
        if reaches is None or not all(name in reaches for name in empty):
            raise self._empty_host_result(signature, spec, arrays) or error from None
        read = {out for name in empty for out in reaches[name]}
        full = sorted(out for out in read
                      if out not in outputs or not zero.intersection(outputs[out].shape))
        if full:
            raise self._empty_host_result(signature, spec, arrays, full) or error from None
        return {name: np.zeros([1 if dim in zero else np.shape(arrays[name])[axis]
                                for axis, dim in enumerate(inputs[name].shape)],
                               arrays[name].dtype)
                for name in empty}, zero

    def _empty_host_result(self, signature: str, spec: FunctionSpec,
                           arrays: Mapping[str, Any], full: list[str] | None = None
                           ) -> SignatureError | None:
        """The error for a call whose host stage returned an empty value-set size (no
        ``tf.unique`` values, no box kept), naming the op; None when none did. ``full``:
        the outputs computed from it that would not be empty (default: those without
        that size)."""
        stage = self._host_stage(signature)
        computed = "" if full is None else ", computed from it,"
        for name, input_spec in spec.signature.inputs.items():
            if stage is None or name not in stage.outputs:
                continue
            for axis, dim in enumerate(input_spec.shape):
                if isinstance(dim, str) and np.shape(arrays[name])[axis] == 0:
                    if full is None:
                        full = sorted(k for k, s in spec.signature.outputs.items()
                                      if dim not in s.shape)
                    return SignatureError(
                        f"signature {signature!r}: for these inputs the host stage's "
                        f"{stage.describe_output(name)} is empty (axis {axis}, {dim}=0), so "
                        f"the device function cannot run (jax.export's symbolic sizes are "
                        f"at least 1), and outputs {full}{computed} would not be empty: "
                        f"skip calls whose inputs make that result empty")
        return None

    def _call_function(self, spec: FunctionSpec, args: list) -> tuple:
        try:
            return self._callable(spec.file)(*args)
        except ValueError as e:
            if "was exported for platforms" not in str(e):
                raise
            raise SignatureError(
                f"signature {spec.signature_name!r} was exported for "
                f"{list(self._def.functions[spec.file].platforms)} only and cannot run on "
                f"this platform ({jax.default_backend()}): call it on a device of one of "
                f"those platforms (see jax.devices())") from None

    def _check_x64(self, spec: FunctionSpec) -> None:
        """Refuses a call whose function was exported with JAX's 64-bit types on while
        they are off now, or the other way round: its argument dtypes cannot match."""
        wide = self._def.x64_files.get(spec.file)
        if wide is None or wide == jax.config.jax_enable_x64:
            return
        then, now = ("on", "off") if wide else ("off", "on")
        raise SignatureError(
            f"signature {spec.signature_name!r} takes 64-bit inputs and was exported with "
            f"JAX's 64-bit types {then}; they are {now} now: call it with "
            f"jax.config.update('jax_enable_x64', {wide}), or export (or convert) the "
            f"module again with them {now}")

    def has_host_stage(self, signature: str = "default") -> bool:
        """True when ``signature`` runs a numpy host stage before its device function."""
        return self._host_stage(signature) is not None

    def preprocess(self, inputs: Any, *, signature: str = "default") -> Any:
        """Runs the host stage of ``signature`` (numpy, not traceable) on ``inputs``.

        Returns:
          The device function's inputs by name; ``inputs`` unchanged when the signature
          has no host stage.

        Raises:
          SignatureError: inputs that do not match the stage's inputs.
          HostStageError: an op of the stage failed or broke a limit.
        """
        signature = self._overload(signature, inputs, frozenset())
        stage = self._host_stage(signature)
        if stage is None:
            return inputs
        inputs = flatten_ragged(inputs, stage.input_specs)
        # Numbers the stage does not take pass through: they may be traced (jax.grad).
        _refuse_traced(signature, {k: inputs.get(k) for k in stage.input_specs}
                       if isinstance(inputs, Mapping) else inputs)
        return stage.run(inputs)

    def apply_device(self, params: Mapping[str, Any], inputs: Any, *,
                     signature: str = "default", as_dict: bool = False,
                     tags: TagsLike = None, rng: jax.Array | None = None) -> Any:
        """Like :meth:`apply`, but never runs a host stage: pure for every signature.

        ``inputs`` are the device function's inputs: for a signature with a host stage,
        what :meth:`preprocess` returns.
        """
        return self._apply(params, inputs, signature, as_dict, tags, rng, host_stage=False)

    def _overload(self, signature: str, inputs: Any, tags: Tags) -> str:
        """``signature``, or, when the module has no signature of that name, the one of
        its overloads whose inputs are those of the call.

        A converted tf.function traced for several input structures has one signature per
        structure, ``<name>_<list lengths>`` (TF Hub's ``bert_pack_inputs_1``,
        ``bert_pack_inputs_2`` for 1 and 2 segments); calling ``<name>`` picks the one
        whose input names are the call's (a list of two segments: ``segments/0``,
        ``segments/1``). Otherwise ``signature`` is returned as is, for the usual error.
        """
        if self._def.manifest.function(tags, signature) is not None:
            return signature
        overload = re.compile(re.escape(signature) + r"_\d+(_\d+)*")
        candidates = {name: sig for name, sig in self.variant_signatures(tags).items()
                      if overload.fullmatch(name)}
        picked = [name for name, sig in candidates.items()
                  if _input_names(inputs, sig.inputs) == set(sig.inputs)]
        return picked[0] if len(picked) == 1 else signature

    def _function_spec(self, tags: Tags, signature: str) -> FunctionSpec:
        spec = self._def.manifest.function(tags, signature)
        if spec is not None:
            return spec
        if tags not in self.variants:
            raise SignatureError(
                f"module has no variant with tags {sorted(tags)}; its variants: "
                f"{[sorted(t) for t in self.variants]}")
        raise SignatureError(
            f"module has no signature {signature!r} in variant {sorted(tags)}; its "
            f"signatures: {dict(self.variant_signatures(tags))}")

    def _host_stage(self, signature: str) -> host.HostStage | None:
        """The signature's host stage, or None."""
        return self._def.host_stages.get(signature)

    def _param_leaves(self, params: Mapping[str, Any], signature: str) -> list[Any]:
        given = dict(tree.flatten(params))
        expected = {p.path: p for p in self._def.manifest.params}
        if given.keys() != expected.keys():
            missing = sorted(map(tree.path_str, expected.keys() - given.keys()))
            extra = sorted(map(tree.path_str, given.keys() - expected.keys()))
            raise SignatureError(f"signature {signature!r}: params tree does not match the "
                                 f"module: missing {missing}, unexpected {extra}")
        leaves = []
        for path, spec in expected.items():
            leaf = given[path]
            _check_param(signature, spec, leaf)
            leaves.append(leaf if spec.trainable else jax.lax.stop_gradient(leaf))
        return leaves

    def _callable(self, file: str):
        """The function in ``file`` made callable (through its split VJP if it has one)."""
        return self._def.callables[file]

    # -- saving -----------------------------------------------------------------------

    def export(self, path: str | pathlib.Path, params: Mapping[str, Any] | None = None
               ) -> pathlib.Path:
        """Writes the module to directory ``path``, with ``params`` when given.

        The directory appears complete or not at all: it is written beside ``path`` and
        renamed into place. A module converted into the cache without gradients is
        written with them (exported now, unless a gradient was asked of it already).

        Returns:
          The module directory.
        """
        from jaxhub._src.storage import writer
        params = self._params if params is None else params
        self._param_leaves(params, "export")
        # Assets the host stages read are written from memory: what the module loaded.
        assets = {name: self._def.asset_bytes.get(name, file) for name, file in
                  self._def.assets.items()}
        manifest, functions = self._def.manifest, self._def.functions
        if self._def.gradients is not None:
            manifest, functions = self._def.gradients.read()
        return writer.write(pathlib.Path(path), manifest, functions, params, assets)

    def _gradients(self) -> str | None:
        """How a module stored without gradients gets them: exported on the first
        ``jax.grad``, already read, or not at all (None)."""
        source = self._def.gradients
        if source is None:
            return None
        return "read" if source.fetched else "on first use"

    def __repr__(self) -> str:
        sigs = ", ".join(f"{name}{_sig_str(sig)}{_marks(self._function_spec(frozenset(), name))}"
                         for name, sig in self.signatures.items())
        variants = ", ".join("{" + ", ".join(sorted(t)) + "}" for t in self.variants)
        where = f", path={str(self._def.path)!r}" if self._def.path else ""
        gradients = "" if self._def.manifest.gradients else f", gradients={self._gradients()!r}"
        return (f"Module(signatures=[{sigs}], variants=[{variants}], "
                f"params={self.num_params():,}{gradients}{where})")


jax.tree_util.register_pytree_node(
    Module, lambda m: ((m.params,), m.definition),
    lambda definition, children: Module.from_def(definition, children[0]))


def _sig_str(sig: Signature) -> str:
    ins = ", ".join(f"{k}: {s}" for k, s in sig.inputs.items())
    outs = ", ".join(f"{k}: {s}" for k, s in sig.outputs.items())
    return f"({ins}) -> ({outs})"


def _refuse_traced(signature: str, inputs: Any) -> None:
    """Refuses traced inputs (under ``jax.jit``) for a host stage, which runs numpy on
    concrete values.

    Raises:
      SignatureError: an input is a tracer.
    """
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(inputs)):
        raise SignatureError(
            f"signature {signature!r} runs a host stage (numpy, on concrete values) before "
            f"its device function, so it cannot be traced (here under jax.jit or another "
            f"transformation): call module.preprocess(inputs, signature={signature!r}) "
            f"outside it and module.apply_device(params, feeds, signature={signature!r}) "
            f"inside it")


def _single_output(outputs: dict[str, Any]) -> Any:
    """The output a call returns without ``as_dict``: the only one, the ``default`` one,
    or the dict (so ``encoder(preprocess(strings))`` chains as in TF Hub; empty for a
    signature whose only effect is its state)."""
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    return outputs.get("default", outputs)


def _check_param(signature: str, spec: ParamSpec, leaf: Any) -> None:
    shape, dtype = tuple(np.shape(leaf)), np.dtype(getattr(leaf, "dtype", np.float64)).name
    if shape != spec.shape or dtype != spec.dtype:
        raise SignatureError(
            f"signature {signature!r}: param {tree.path_str(spec.path)} is "
            f"{dtype}{list(shape)}, the module expects {spec.dtype}{list(spec.shape)}")


def _emptied(value: Any, spec: TensorSpec, zero: set[str]) -> Any:
    """``value`` (an output of ``spec``) cut to size 0 along the axes of a symbol in
    ``zero``, which a call with stand-ins for empty inputs made 1
    (see :meth:`Module._stand_ins`)."""
    if not zero.intersection(spec.shape):
        return value
    return value[tuple(slice(0, 0) if dim in zero else slice(None) for dim in spec.shape)]


def _check(spec: FunctionSpec, conditions: Sequence[Any]) -> None:
    """Hands a function's checks to ``checkify`` (see :attr:`FunctionSpec.checks`)."""
    for message, ok in zip(spec.checks, conditions):
        # checkify formats its message with str.format: braces are literal here.
        text = f"signature {spec.signature_name!r}: {message}"
        # Under jit outside checkify.checkify, JAX fails when lowering, not here: the
        # opt-in mode documents that such calls go through checkify.
        checkify.check(ok, text.replace("{", "{{").replace("}", "}}"))


def _marks(spec: FunctionSpec) -> str:
    """What ``repr`` says of a signature's inference function besides its specs."""
    forward_only = " forward-only" if spec.forward_only else ""
    return forward_only + (" takes rng" if spec.takes_rng else "")


def _key_data(rng: jax.Array | None, signature: str) -> jax.Array:
    if rng is None:
        raise SignatureError(f"signature {signature!r} draws random numbers: pass a PRNG "
                             f"key, module(inputs, signature={signature!r}, "
                             f"rng=jax.random.key(seed)), a fresh one for each call")
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(rng)
    if rng.shape != (2,) or rng.dtype != jnp.uint32:
        raise SignatureError(f"signature {signature!r}: rng must be a PRNG key, "
                             f"got {rng.dtype}{list(rng.shape)}")
    return rng


def _input_names(inputs: Any, names: Iterable[str]) -> set[str]:
    """The input names a call's ``inputs`` give (see :func:`flatten_ragged`); empty for
    inputs that name nothing (one bare array)."""
    flat = flatten_ragged(inputs, names)
    return set(flat) if isinstance(flat, Mapping) else set()
