"""``jaxhub.create_module``: a module from pure JAX functions and a params tree."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import re
import warnings
from typing import Any, Callable, Collection, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub._src import serialization
from jaxhub._src import sizes
from jaxhub._src import tree
from jaxhub._src.storage import files
from jaxhub._src.storage.manifest import FunctionSpec, Manifest, ParamSpec, Tags, VjpSpec
from jaxhub._src.module import RNG_IMPL, Module, canonical_tags
from jaxhub._src.specs import Signature, SignatureError, TensorSpec

InputSpecs = TensorSpec | Mapping[str, TensorSpec]
SignatureFns = Mapping[str, tuple[Callable[..., Any], InputSpecs]]
VariantFns = Mapping[Any, Callable[..., Any] | Mapping[str, Callable[..., Any]]]

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
#: The input and output name used when a function takes or returns one bare array.
DEFAULT_NAME = "default"


def create_module(params: Any, signatures: SignatureFns, *, variants: VariantFns | None = None,
                  trainable: bool | Any = True,
                  regularizer: Callable[[Any], jax.Array] | None = None,
                  attachments: Mapping[str, Any] | None = None,
                  assets: Mapping[str, str | pathlib.Path | bytes] | None = None,
                  origin: Mapping[str, Any] | None = None,
                  platforms: Sequence[str] = serialization.DEFAULT_PLATFORMS,
                  with_rng: Collection[str] = (), with_state: Collection[str] = (),
                  with_checks: Collection[str] = (), gradients: bool = True) -> Module:
    """Creates a module from pure functions of ``(params, inputs)``.

    Each function is exported with ``jax.export`` (symbolic batch dims, lowered for every
    platform in ``platforms``, with its VJP), together with the two halves of its gradient
    (a forward pass that keeps the residuals, a backward pass that uses them), so the
    module behaves exactly as it will after :meth:`Module.export` and :func:`jaxhub.load`.

    Args:
      params: a pytree of arrays (nested dicts, lists, Flax containers); the module
        stores it as a nested dict with string keys.
      signatures: signature name -> ``(fn, input_specs)``. ``fn(params, inputs)`` gets
        ``params`` in its original structure and ``inputs`` as one array (when
        ``input_specs`` is a single :class:`TensorSpec`, named ``"default"``) or a dict;
        it returns an array (named ``"default"``) or a flat dict of arrays. In the specs,
        ``None`` is a size of its own unless the function ties it to another (adds the
        inputs, concatenates them along another axis, multiplies them as matrices):
        tied sizes share one symbol, ``batch`` for the leading sizes of most inputs
        (tracing finds them, see docs/architecture.md). A string names a size that
        inputs share.
      variants: extra variants: tags (``"train"`` or a set of tags) -> a function for the
        ``"default"`` signature, or a dict of functions by signature name. A variant
        function is ``fn(params, inputs, rng) -> (outputs, state)`` where ``rng`` is a
        PRNG key and ``state`` a (possibly empty) dict of updated params, a subset of
        ``params`` such as batch-norm statistics.
      trainable: which params fine-tuning may change: ``True``/``False``, a tree of bools
        like ``params``, or ``fn(path, leaf) -> bool``.
      regularizer: ``fn(params) -> scalar``, exported as the module's regularization loss.
      attachments: small JSON-serializable metadata (``{"image_size": [224, 224]}``).
      assets: files to ship with the module, name -> path (or the file's bytes, written
        when the module is exported). ``"README.md"`` is the model card.
      origin: JSON-serializable provenance recorded in the manifest.
      platforms: the platforms to lower for.
      with_rng: names of signatures whose (inference) function draws random numbers:
        it is ``fn(params, inputs, rng)``, ``rng`` a PRNG key, and callers pass
        ``rng=key`` as for a train variant. A function that turns out to draw nothing
        asks for no key.
      with_state: names of signatures whose (inference) function assigns params: it
        returns ``(outputs, state)`` like a variant function. When ``state`` is not
        empty, calling the signature returns ``(outputs, state)`` too.
      with_checks: names of signatures (among ``with_state``) whose function also
        returns checks: ``(outputs, state, checks)``, ``checks`` a list of ``(message,
        condition)`` with a boolean scalar condition. Calling the signature hands each
        to ``jax.experimental.checkify.check``: an eager call raises when a condition is
        false, and ``checkify.checkify`` of a (jitted) call returns the error.
      gradients: export the gradient of every signature function (its split VJP, and
        the VJP that readers without split VJPs use). When False, only the functions
        are exported (a fraction of the time for a converted model): the module runs,
        and ``jax.grad`` through a signature raises a ``SignatureError`` naming the
        fix, unless ``jaxhub.load`` read it as a conversion whose source it can convert
        again with gradients (docs/cache.md). The regularizer keeps its gradient.

    Returns:
      The module, holding ``params``.

    Examples:
      >>> def mlp(params, x):
      ...     return jnp.tanh(x @ params["w"] + params["b"])
      >>> module = jaxhub.create_module(
      ...     {"w": jnp.ones((50, 10)), "b": jnp.zeros(10)},
      ...     signatures={"default": (mlp, jaxhub.TensorSpec([None, 50], "float32"))})
      >>> module(jnp.ones((4, 50))).shape
      (4, 10)
    """
    builder = _Builder(params, trainable, platforms, gradients)
    for name, (fn, specs) in signatures.items():
        builder.add(frozenset(), name, fn, specs, rng=name in with_rng,
                    state=name in with_state, checks=name in with_checks)
    for tags, fns in (variants or {}).items():
        tags = canonical_tags(tags)
        if not tags:
            raise ValueError("variants are keyed by non-empty tags; the inference variant "
                             "is given by `signatures`")
        if callable(fns):
            fns = {DEFAULT_NAME: fns}
        for name, fn in fns.items():
            if name not in signatures:
                raise ValueError(f"variant {sorted(tags)} has signature {name!r}, which "
                                 f"`signatures` does not define")
            builder.add(tags, name, fn, signatures[name][1], rng=True, state=True)
    if regularizer is not None:
        builder.add_regularizer(regularizer)
    return builder.build(_json_dict(attachments, "attachments"), _assets(assets),
                         _json_dict(origin, "origin"))


class _Builder:
    """Exports functions one by one and collects what the manifest says of them."""

    def __init__(self, params: Any, trainable: Any, platforms: Sequence[str],
                 gradients: bool = True):
        own_paths, self._treedef = tree.paths_in_own_order(params)
        self._platforms = platforms
        self._gradients = gradients
        items = tree.flatten(params)
        self._paths = [path for path, _ in items]
        # Where each leaf, in path order, sits in the user's own tree, to rebuild it.
        self._own_index = [own_paths.index(path) for path in self._paths]
        arrays = [(path, _on_device(x)) for path, x in items]
        self._params = tree.unflatten(arrays)
        mask = dict(tree.flatten(tree.mask(params, trainable)))
        self._param_specs = tuple(
            ParamSpec(path, tuple(x.shape), x.dtype.name, mask[path]) for path, x in arrays)
        self._functions: list[FunctionSpec] = []
        # One export per distinct (fn, tags, specs): signatures that alias one function
        # (a SavedModel's "serve" and "serving_default") share its files.
        self._added: dict[tuple, FunctionSpec] = {}
        self._exported: dict[str, Any] = {}
        self._tied: dict[str, tuple] = {}  # signature name -> its tied unknown sizes
        self._regularizer: str | None = None

    def _user_params(self, leaves: Sequence[Any]) -> Any:
        """The params in the structure the user gave them, from leaves in path order."""
        own = [None] * len(leaves)
        for leaf, index in zip(leaves, self._own_index):
            own[index] = leaf
        return jax.tree_util.tree_unflatten(self._treedef, own)

    def _param_structs(self) -> list[TensorSpec]:
        return [TensorSpec(p.shape, p.dtype) for p in self._param_specs]

    def add(self, tags: Tags, name: str, fn: Callable[..., Any], specs: InputSpecs, *,
            rng: bool, state: bool, checks: bool = False) -> None:
        """Exports ``fn`` as signature ``name`` of variant ``tags``.

        ``rng``: ``fn`` takes a PRNG key after the inputs; ``state``: it returns
        ``(outputs, state)`` (both hold for variant functions); ``checks``: it returns
        ``(outputs, state, checks)``.
        """
        if not _NAME.match(name):
            raise ValueError(f"signature name {name!r} must match {_NAME.pattern}")
        bare = isinstance(specs, TensorSpec)
        given = {DEFAULT_NAME: specs} if bare else dict(specs)
        key = (id(fn), tags, bare, repr(sorted(given.items())))
        if key in self._added:
            self._functions.append(dataclasses.replace(self._added[key], signature_name=name))
            return
        form = _Form(bare, rng, state or checks, checks)

        def trace(inputs: dict[str, TensorSpec]):
            flat, arg_specs, traced = self._flat(fn, inputs, form, takes_rng=rng)
            return serialization.trace(flat, arg_specs), flat, arg_specs, traced

        with _naming_mesh_axes(name):
            # One trace for every export of the function (forward, both VJP halves); the
            # unknown sizes it ties share symbols (a variant starts from its signature's).
            (once, flat, arg_specs, traced), found = sizes.trace_tied(
                trace, given, self._tied.get(name, ()))
            self._tied[name] = found.groups
            inputs = found.named()
            takes_rng = rng and serialization.uses_last_arg(once)
            if rng and not takes_rng:  # draws no random numbers: do not ask for a key
                flat, arg_specs, traced = self._flat(fn, inputs, form, takes_rng=False)
                once = serialization.trace(flat, arg_specs)
            file = files.function_file(tags, name)
            exported = serialization.earlier_export(file, once) or serialization.export(
                once.fn, arg_specs, platforms=self._platforms, scope=once.scope)
        outputs, state = traced["outputs"], traced["state"]
        output_specs = {k: TensorSpec.from_aval(a) for k, a in zip(outputs, exported.out_avals)}
        self._exported[file] = exported
        vjp, forward_only = self._add_gradient(name, once, flat, arg_specs, exported, tags)
        self._added[key] = FunctionSpec(tags, name, Signature(inputs, output_specs), file,
                                        takes_rng, tuple(state), vjp, forward_only,
                                        tuple(traced["checks"]))
        self._functions.append(self._added[key])

    def _add_gradient(self, name: str, once: serialization.Traced, flat,
                      arg_specs: list[TensorSpec], exported, tags: Tags
                      ) -> tuple[VjpSpec | None, str | None]:
        """Exports the gradient of the function ``exported`` of signature ``name``:
        its split VJP (or why it has none), and its own VJP built from the halves."""
        if not self._gradients:
            return None, None
        file = files.function_file(tags, name)
        try:
            vjp, forward_only = self._add_split_vjp(once, arg_specs, exported.platforms,
                                                    files.vjp_files(tags, name)), None
        except serialization.NoGradient as e:
            vjp, forward_only = None, self._why_no_gradient(flat, arg_specs,
                                                            exported.platforms, e)
            # The safety net of tests that must keep gradients matches this message.
            warnings.warn(f"a function's gradient could not be traced: signature {name!r} "
                          f"is stored forward-only ({forward_only})", stacklevel=4)
        if vjp is not None:  # its own VJP calls the halves: no third gradient
            halves = serialization.SplitVjp(self._exported[vjp.forward],
                                            self._exported[vjp.backward],
                                            vjp.saved_inputs, vjp.saved_outputs)
            self._exported[file] = serialization.with_vjp_from_halves(exported, halves)
        elif forward_only is None and not exported.has_vjp():
            # Differentiated through its exported VJP, which an earlier export written
            # without gradients lacks: exported again, with it.
            self._exported[file] = serialization.export(
                once.fn, arg_specs, platforms=exported.platforms, scope=once.scope)
        return vjp, forward_only

    def _why_no_gradient(self, flat, arg_specs: list[TensorSpec], platforms: Sequence[str],
                         error: serialization.NoGradient) -> str:
        """Why ``flat`` has no gradient, naming the op where its Python can.

        The replayed trace binds JAX's primitives only; differentiating ``flat`` itself
        runs its Python again, where a converter names the source node that failed.
        """
        try:
            serialization.export_split_vjp(flat, arg_specs, platforms=platforms)
        except serialization.NoGradient as named:
            return str(named)
        return str(error)

    def _add_split_vjp(self, once: serialization.Traced, arg_specs: list[TensorSpec],
                       platforms: Sequence[str], halves: tuple[str, str]) -> VjpSpec | None:
        """Exports the gradient's two halves (for the ``platforms`` of the forward
        function), so that ``jax.grad`` runs the forward once."""
        split = serialization.export_split_vjp(once.fn, arg_specs, platforms=platforms,
                                               scope=once.scope)
        if split is None:
            return None
        vjp = VjpSpec(*halves, split.saved_inputs, split.saved_outputs)
        self._exported[vjp.forward] = split.forward
        self._exported[vjp.backward] = split.backward
        return vjp

    def _flat(self, fn, inputs: dict[str, TensorSpec], form: _Form, takes_rng: bool):
        """``fn`` as a function of flat arrays, with the specs of its args.

        The returned dict gets the output names and state paths when the function is traced.
        """
        n_params, names = len(self._paths), sorted(inputs)
        traced: dict[str, Any] = {}

        def flat(*args):
            params = self._user_params(args[:n_params])
            given = dict(zip(names, args[n_params:n_params + len(names)]))
            call = [params, given[DEFAULT_NAME] if form.bare else given]
            if form.rng:
                call.append(jax.random.wrap_key_data(args[-1], impl=RNG_IMPL) if takes_rng
                            else jax.random.key(0))
            result = fn(*call)
            if form.state and not (isinstance(result, (tuple, list))
                                   and len(result) == 2 + form.checks):
                shape = "(outputs, state, checks)" if form.checks else "(outputs, state)"
                raise TypeError(f"a variant function, or one declared with_state, returns "
                                f"{shape}, not {type(result).__name__}")
            checks = result[2] if form.checks else []
            outputs, state = result[:2] if form.state else (result, {})
            outputs = _output_dict(outputs)
            state_items = self._state_items(state)
            traced["outputs"] = sorted(outputs)
            traced["state"] = [path for path, _ in state_items]
            traced["checks"] = [message for message, _ in checks]
            return (*(outputs[k] for k in sorted(outputs)), *(v for _, v in state_items),
                    *(jnp.asarray(ok, jnp.bool_).reshape(()) for _, ok in checks))

        arg_specs = self._param_structs() + [inputs[k] for k in names]
        if takes_rng:
            arg_specs.append(TensorSpec([2], "uint32"))
        return flat, arg_specs, traced

    def _state_items(self, state: Any) -> list[tuple[tree.Path, Any]]:
        specs = {p.path: p for p in self._param_specs}
        items = tree.flatten(state) if state else []
        for path, value in items:
            spec = specs.get(path)
            if spec is None:
                raise ValueError(f"a variant returned state {tree.path_str(path)}, "
                                 f"which is not a param")
            if tuple(value.shape) != spec.shape or value.dtype != spec.dtype:
                raise ValueError(f"state {tree.path_str(path)} is {value.dtype}"
                                 f"{list(value.shape)}; the param is {spec.dtype}"
                                 f"{list(spec.shape)}")
        return items

    def add_regularizer(self, regularizer: Callable[[Any], jax.Array]) -> None:
        def flat(*leaves):
            loss = jnp.asarray(regularizer(self._user_params(leaves)), jnp.float32)
            if loss.shape != ():
                raise ValueError(f"the regularizer must return a scalar, not {loss.shape}")
            return (loss,)

        self._regularizer = files.REGULARIZER_FILE
        self._exported[self._regularizer] = serialization.export(
            flat, self._param_structs(), platforms=self._platforms)

    def build(self, attachments, assets, origin) -> Module:
        manifest = Manifest(params=self._param_specs, functions=tuple(self._functions),
                            regularizer=self._regularizer, attachments=attachments,
                            origin=origin, gradients=self._gradients)
        return Module(manifest, self._exported, self._params, assets)


@dataclasses.dataclass(frozen=True)
class _Form:
    """How a function is called: one bare input or a dict (``bare``), with a PRNG key
    after the inputs (``rng``), returning ``(outputs, state)`` (``state``) or
    ``(outputs, state, checks)`` (``checks``)."""

    bare: bool
    rng: bool
    state: bool
    checks: bool = False


def _on_device(x: Any) -> jax.Array:
    """``jnp.asarray(x)``, with numpy arrays put on the device directly.

    ``jnp.asarray`` of a numpy array compiles a copy for every new shape and dtype (about
    10 ms each: a third of a second for a small converted CNN's params); ``device_put``
    gives the same array (dtype canonicalized as x64 says) without compiling.
    """
    if isinstance(x, (np.ndarray, np.generic)):
        return jax.device_put(x)
    return jnp.asarray(x)


@contextlib.contextmanager
def _naming_mesh_axes(signature: str):
    """Turns JAX's errors for a function that shards over a mesh into a SignatureError.

    Functions are traced outside any mesh (see :func:`jaxhub._src.serialization.outside_mesh`)
    with a symbolic batch size, so a ``PartitionSpec`` inside one has no mesh to refer
    to, and a ``NamedSharding`` cannot split a batch of unknown size.
    """
    try:
        yield
    except ValueError as e:
        if "mesh" not in str(e):
            raise
        raise SignatureError(
            f"signature {signature!r}: the function shards its values over a mesh "
            f"({str(e)[:300]}). A module runs on any number of devices and takes its "
            f"shardings from its inputs: drop the shardings (reshard, "
            f"with_sharding_constraint, out_sharding=...) from the function, and shard the "
            f"inputs and params where the module is called") from e


def _output_dict(outputs: Any) -> dict[str, Any]:
    if isinstance(outputs, Mapping):
        for name in outputs:
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"output name {name!r} must match {_NAME.pattern}")
        return dict(outputs)
    if isinstance(outputs, (jax.Array, np.ndarray)) or hasattr(outputs, "shape"):
        return {DEFAULT_NAME: outputs}
    raise TypeError(f"a signature function returns an array or a dict of arrays, "
                    f"not {type(outputs).__name__}")


def _json_dict(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    value = dict(value or {})
    try:
        json.dumps(value)
    except TypeError as e:
        raise ValueError(f"{what} must be JSON-serializable: {e}") from None
    return value


def _assets(assets: Mapping[str, str | pathlib.Path | bytes] | None
            ) -> dict[str, pathlib.Path | bytes]:
    result: dict[str, pathlib.Path | bytes] = {}
    for name, source in (assets or {}).items():
        rel = pathlib.PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"asset name {name!r} must be a relative path inside the module")
        if isinstance(source, (bytes, bytearray)):
            result[name] = bytes(source)
            continue
        source = pathlib.Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"asset {name!r}: no file at {source}")
        result[name] = source.absolute()
    return result
