"""``jaxhub.linen.HubLayer``: a module as one layer of a ``flax.linen`` model.

The counterpart of ``hub.KerasLayer`` for linen. The params a trainable layer fine-tunes
live in the ``"params"`` collection; the rest (batch-norm statistics, frozen weights) in
``state_collection`` (``"batch_stats"``, so linen training loops that pass
``mutable=["batch_stats"]`` work unchanged). Both start at the module's own values.

Examples:
  >>> def features(params, x):
  ...     return jnp.tanh(x @ params["w"])
  >>> def features_train(params, x, rng):       # the {"train"} variant: dropout
  ...     y = features(params, x)
  ...     return y * jax.random.bernoulli(rng, 0.9, y.shape) / 0.9, {}
  >>> module = jaxhub.create_module(
  ...     {"w": jnp.ones((4, 8))},
  ...     signatures={"default": (features, jaxhub.TensorSpec([None, 4]))},
  ...     variants={"train": features_train})
  >>> class Classifier(linen.Module):
  ...     @linen.compact
  ...     def __call__(self, x, train: bool = False):
  ...         h = HubLayer(module, trainable=True)(x, train=train)
  ...         return linen.Dense(10)(h)
  >>> x = jnp.ones((2, 4))
  >>> variables = Classifier().init(jax.random.key(0), x)
  >>> y, updates = Classifier().apply(variables, x, train=True, mutable=["batch_stats"],
  ...                                 rngs={"dropout": jax.random.key(1)})
  >>> y.shape
  (2, 10)
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

from flax import linen

from jaxhub._src.flax import layer
from jaxhub._src import tree
from jaxhub._src.module import Module

PARAMS = "params"


class HubLayer(linen.Module):
    """A jaxhub module wrapped as a ``flax.linen`` layer, like ``hub.KerasLayer``.

    With ``train=True`` a trainable layer runs the module's ``{"train"}`` variant: dropout
    keys come from the ``rng_collection`` stream, and the state it returns is written to
    ``state_collection`` (pass it as mutable). Like ``hub.KerasLayer``, a frozen layer
    always runs inference.

    A signature that draws random numbers in inference too (a converted serving
    signature with ``tf.random.normal``) takes its key from ``self.make_rng`` on
    ``rng_collection`` as well; one that assigns variables (``v.assign_add(x)``) keeps
    them in ``state_collection`` and writes their new values there, so that collection
    must be mutable for such a call, as for training.

    Attributes:
      handle: a :class:`jaxhub.Module`, or a handle (path or URL), loaded once per process.
      trainable: whether fine-tuning changes the module's trainable params.
      signature: the signature to call.
      output_key: the output to return, for signatures with several outputs.
      state_collection: the collection of the params that are not trained.
      rng_collection: the RNG stream keys come from (the train variant's dropout, a
        signature's random ops).
    """

    handle: Module | str | os.PathLike
    trainable: bool = False
    signature: str = "default"
    output_key: str | None = None
    state_collection: str = "batch_stats"
    rng_collection: str = "dropout"

    @linen.compact
    def __call__(self, inputs: Any, train: bool = False) -> Any:
        """Applies the signature to ``inputs`` (one array or a dict by input name).

        Args:
          inputs: the signature's inputs.
          train: training mode: the train variant, when the layer is trainable.

        Returns:
          The output (or the ``output_key`` output).
        """
        call = _layer_call(self.handle, self.signature, self.output_key, self.trainable)
        variables = self._variables(call)
        params = tree.unflatten(
            (path, variable.value) for path, variable in variables.items())
        outputs, state = call(params, inputs, train,
                              lambda: self.make_rng(self.rng_collection))
        # As linen.BatchNorm: initializing leaves the statistics at their start values.
        if state and not self.is_initializing():
            self._update(variables, dict(tree.flatten(state)))
        return outputs

    def _variables(self, call: layer.LayerCall) -> dict[tree.Path, _Leaf]:
        """One linen variable per top-level key and collection, the leaves by path."""
        split: dict[tuple[str, str], list[tuple[tree.Path, Any]]] = {}
        for path, value in tree.flatten(call.module.params):
            collection = PARAMS if call.is_trainable(path) else self.state_collection
            split.setdefault((collection, path[0]), []).append((path, value))
        leaves = {}
        for (collection, key), items in split.items():
            start = tree.unflatten(items)[key]
            variable = self.variable(collection, key, lambda start=start: start)
            for path, _ in items:
                leaves[path] = _Leaf(variable, path[1:])
        return leaves

    def _update(self, variables: dict[tree.Path, _Leaf],
                state: dict[tree.Path, Any]) -> None:
        groups: dict[int, tuple[Any, list[tuple[tree.Path, Any]]]] = {}
        for path, value in state.items():
            leaf = variables[path]
            groups.setdefault(id(leaf.variable), (leaf.variable, []))[1].append(
                (leaf.path, value))
        for variable, items in groups.values():
            if items[0][0] == ():  # the variable holds one leaf, not a subtree
                variable.value = items[0][1]
            else:
                variable.value = tree.merge_params(variable.value, tree.unflatten(items))

    def module_params(self) -> dict[str, Any]:
        """The module's params tree at this bound layer's values (see :func:`module_params`)."""
        return module_params(self.variables, self.state_collection)


def module_params(variables: Mapping[str, Any], state_collection: str = "batch_stats"
                  ) -> dict[str, Any]:
    """The module's params tree from a :class:`HubLayer`'s own variables.

    Args:
      variables: the layer's collections, e.g. ``{"params": v["params"]["HubLayer_0"],
        "batch_stats": v["batch_stats"]["HubLayer_0"]}``.
      state_collection: the layer's ``state_collection``.

    Returns:
      A tree to pass to :meth:`jaxhub.Module.export` or a
      :class:`jaxhub._src.exporter.ModuleExporter`.
    """
    return tree.merge_params(dict(variables.get(state_collection, {})),
                          dict(variables.get(PARAMS, {})))


class _Leaf:
    """One param inside a linen variable that holds a subtree."""

    def __init__(self, variable: Any, path: tree.Path):
        self.variable, self.path = variable, path

    @property
    def value(self) -> Any:
        node = self.variable.value
        for key in self.path:
            node = node[key]
        return node


def _layer_call(handle: Any, signature: str, output_key: str | None,
                trainable: bool) -> layer.LayerCall:
    module = handle if isinstance(handle, Module) else _load(handle)
    return layer.LayerCall(module, signature, output_key, trainable)


@functools.lru_cache(maxsize=None)
def _load(handle: str | os.PathLike) -> Module:
    # linen runs __call__ on every apply: load a handle once per process.
    return layer.resolve_module(handle)
