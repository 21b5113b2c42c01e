"""jaxhub functions as TensorFlow functions, through ``jax2tf`` native serialization.

A jaxhub function (one signature of one variant) is a deserialized ``jax.export`` call.
``jax2tf.convert`` exports it once more, around :meth:`jaxhub.Module.apply`, so that the
TensorFlow graph holds one ``XlaCallModule`` op whose StableHLO calls the module's own
serialized function. Params are passed in as arguments (the caller reads them from
``tf.Variable``s), which lets ``tf.custom_gradient`` carry the exported VJP back to the
variables.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf
from jax.experimental import jax2tf

import jaxhub
from jaxhub import tree as tree_lib
from jaxhub.format.manifest import FunctionSpec
from jaxhub.tree import Path


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

    spec: FunctionSpec
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


def convert(module: jaxhub.Module, spec: FunctionSpec, platforms: Sequence[str]) -> TfFunction:
    """Converts the function ``spec`` of ``module`` into a TensorFlow function.

    Args:
      module: the module.
      spec: one of ``module.manifest.functions``.
      platforms: the platforms the TF graph is lowered for (a subset of those the module's
        functions were lowered for).

    Returns:
      The function, whose gradient (with respect to params and float inputs) TensorFlow
      computes with the module's exported VJP.
    """
    paths = [p.path for p in module.manifest.params]

    def flat(leaves, inputs, *key):
        params = tree_lib.unflatten(zip(paths, leaves))
        result = module.apply(params, inputs, signature=spec.signature_name, as_dict=True,
                              tags=spec.tags, rng=key[0] if key else None)
        if not spec.tags:
            return result, []
        outputs, state = result
        by_path = dict(tree_lib.flatten(state))
        return outputs, [by_path[path] for path in spec.state]

    shapes: list[Any] = [None, {name: _poly_shape(s)
                                for name, s in spec.signature.inputs.items()}]
    if spec.takes_rng:
        shapes.append(None)
    converted = jax2tf.convert(flat, polymorphic_shapes=shapes, with_gradient=True,
                               native_serialization_platforms=tuple(platforms))

    def call(param_values, inputs, key=None):
        args = [list(param_values), dict(inputs)]
        if spec.takes_rng:
            args.append(key)
        outputs, state = converted(*args)
        return dict(outputs), list(state)

    return TfFunction(spec, call)


def _poly_shape(spec: jaxhub.TensorSpec) -> str:
    """The jax2tf polymorphic shape of an input: its symbolic names, or its sizes."""
    return "(" + ", ".join(str(d) for d in spec.shape) + ("," if len(spec.shape) == 1 else "") + ")"


def convert_regularizer(module: jaxhub.Module, platforms: Sequence[str]
                        ) -> Callable[[Sequence[tf.Tensor]], tf.Tensor]:
    """The module's regularization loss as ``fn(param_values) -> scalar`` on TF tensors."""
    paths = [p.path for p in module.manifest.params]

    def flat(leaves):
        return module.regularization_loss(tree_lib.unflatten(zip(paths, leaves)))

    converted = jax2tf.convert(flat, with_gradient=True,
                               native_serialization_platforms=tuple(platforms))
    return lambda param_values: converted(list(param_values))
