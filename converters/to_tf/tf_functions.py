"""jaxhub functions as TensorFlow functions, through ``jax2tf`` native serialization.

A jaxhub function (one signature of one variant) is a deserialized ``jax.export`` call.
``jax2tf.convert`` exports it once more, around :meth:`jaxhub.Module.apply`, so that the
TensorFlow graph holds one ``XlaCallModule`` op whose StableHLO calls the module's own
serialized function. Params are passed in as arguments (the caller reads them from
``tf.Variable``s), so gradients reach the variables.

The gradient is a ``tf.custom_gradient`` around two converted functions, the forward one
and its VJP (both without jax2tf's own gradient), rather than ``with_gradient=True``: the
VJP is then one ``XlaCallModule`` op that a SavedModel saves whole, and it needs no
cotangents from TensorFlow for integer outputs or for returned state (batch-norm
statistics), which it fills with zeros itself. TensorFlow does not always hand those over
in the shape JAX expects once a SavedModel is loaded again.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import tensorflow as tf
from jax import export as jax_export
from jax.experimental import jax2tf

import jaxhub
from jaxhub import extend

TfCall = Callable[..., list[tf.Tensor]]


@dataclasses.dataclass(frozen=True)
class TfFunction:
    """One jaxhub function, callable on TensorFlow tensors.

    Attributes:
      spec: what the module's manifest says of the function.
      call: ``call(param_values, inputs, key) -> (outputs, state)``: ``param_values`` are
        tensors in manifest order, ``inputs`` a dict by input name, ``key`` uint32[2] key
        data (None unless ``spec.takes_rng``); ``outputs`` is a dict by output name and
        ``state`` a list of new values for the params at ``spec.state``.
    """

    spec: extend.FunctionSpec
    call: Callable[[Sequence[tf.Tensor], Mapping[str, tf.Tensor], tf.Tensor | None],
                   tuple[dict[str, tf.Tensor], list[tf.Tensor]]]

    @property
    def input_specs(self) -> dict[str, tf.TensorSpec]:
        """The TF specs of the inputs, named after them; symbolic sizes are ``None``."""
        return {name: tf_spec(spec, name) for name, spec in self.spec.signature.inputs.items()}


def tf_spec(spec: jaxhub.TensorSpec, name: str | None = None) -> tf.TensorSpec:
    """A jaxhub spec as a ``tf.TensorSpec``: every non-int size becomes ``None``."""
    shape = [d if isinstance(d, int) else None for d in spec.shape]
    return tf.TensorSpec(shape, tf.as_dtype(spec.dtype), name=name)


def convert(module: jaxhub.Module, spec: extend.FunctionSpec, platforms: Sequence[str]) -> TfFunction:
    """Converts the function ``spec`` of ``module`` into a TensorFlow function.

    Args:
      module: the module.
      spec: one of ``module.manifest.functions``.
      platforms: the platforms the TF graph is lowered for (a subset of those the module's
        functions were lowered for).

    Returns:
      The function. TensorFlow differentiates its outputs (not the state) with respect
      to the params and the float inputs, with the module's exported VJP.
    """
    params, paths = _params(module)
    names, outputs = list(spec.signature.inputs), list(spec.signature.outputs)
    n_params, n_inputs = len(paths), len(names)

    def flat(*args):
        inputs = dict(zip(names, args[n_params:n_params + n_inputs]))
        result = module.apply(extend.unflatten(zip(paths, args[:n_params])), inputs,
                              signature=spec.signature_name, as_dict=True, tags=spec.tags,
                              rng=args[-1] if spec.takes_rng else None)
        outs, state = result if spec.tags or spec.state else (result, {})
        by_path = dict(extend.flatten(state))
        return [*(outs[k] for k in outputs), *(by_path[path] for path in spec.state)]

    arg_specs = params + [spec.signature.inputs[k] for k in names]
    if spec.takes_rng:
        arg_specs.append(jaxhub.TensorSpec([2], "uint32"))
    converted = _differentiable(flat, arg_specs, len(outputs), platforms)

    def call(param_values, inputs, key=None):
        args = [*param_values, *(inputs[k] for k in names), *([key] if spec.takes_rng else [])]
        results = converted(*args)
        return dict(zip(outputs, results[:len(outputs)])), list(results[len(outputs):])

    return TfFunction(spec, call)


def convert_regularizer(module: jaxhub.Module, platforms: Sequence[str]) -> TfCall:
    """The module's regularization loss as ``fn(*param_values) -> [scalar]`` on TF tensors."""
    params, paths = _params(module)

    def flat(*leaves):
        return [module.regularization_loss(extend.unflatten(zip(paths, leaves)))]

    return _differentiable(flat, params, 1, platforms)


def _differentiable(fn: Callable[..., list], arg_specs: Sequence[jaxhub.TensorSpec],
                   n_outputs: int, platforms: Sequence[str]) -> TfCall:
    """``fn(*args) -> list`` as a TF function whose gradient is ``fn``'s VJP.

    Args:
      fn: a JAX function of flat arrays, returning a flat list.
      arg_specs: the specs of its args; named dims are symbolic (polymorphic in TF).
      n_outputs: how many of its results, from the front, are differentiable (when
        float); the rest (state) are not.
      platforms: the platforms to lower for.

    Returns:
      ``call(*tf_args) -> list of tf tensors``, with a ``tf.custom_gradient``.
    """
    scope = jax_export.SymbolicScope()
    avals = [jax.ShapeDtypeStruct(_symbolic_shape(s, scope), s.dtype) for s in arg_specs]
    out_avals = jax.eval_shape(fn, *avals)
    float_args = [i for i, a in enumerate(avals) if _is_float(a)]
    float_outs = [j for j, a in enumerate(out_avals[:n_outputs]) if _is_float(a)]

    def vjp(*args_and_cts):
        args, cts = args_and_cts[:len(avals)], args_and_cts[len(avals):]
        outs, pullback = jax.vjp(lambda *a: list(fn(*a)), *args)
        full = [jnp.zeros_like(o) if _is_float(o) else jnp.zeros(o.shape, jax.dtypes.float0)
                for o in outs]
        for j, ct in zip(float_outs, cts):
            full[j] = ct
        grads = pullback(full)
        return [grads[i] for i in float_args]

    arg_shapes = [_poly_shape(a.shape) for a in avals]
    ct_shapes = [_poly_shape(out_avals[j].shape) for j in float_outs]
    kwargs = dict(with_gradient=False, native_serialization_platforms=tuple(platforms))
    forward_tf = jax2tf.convert(fn, polymorphic_shapes=arg_shapes, **kwargs)
    vjp_tf = jax2tf.convert(vjp, polymorphic_shapes=arg_shapes + ct_shapes, **kwargs)

    @tf.custom_gradient
    def call(*args):
        outs = list(forward_tf(*args))

        def grad(*upstream):
            cts = [tf.zeros_like(outs[j]) if upstream[j] is None else upstream[j]
                   for j in float_outs]
            grads = dict(zip(float_args, vjp_tf(*args, *cts)))
            return [grads.get(i) for i in range(len(args))]

        return outs, grad

    return call


def _params(module: jaxhub.Module) -> tuple[list[jaxhub.TensorSpec], list[extend.Path]]:
    """The specs and paths of the module's params, in manifest (flat argument) order."""
    specs = module.manifest.params
    return [jaxhub.TensorSpec(p.shape, p.dtype) for p in specs], [p.path for p in specs]


def _is_float(aval: Any) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)


def _symbolic_shape(spec: jaxhub.TensorSpec, scope: jax_export.SymbolicScope) -> tuple:
    return jax_export.symbolic_shape(", ".join(str(d) for d in spec.shape), scope=scope)


def _poly_shape(shape: Sequence[Any]) -> str:
    """A jax2tf polymorphic shape: ``"(batch, 50)"``; dims may be expressions."""
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
