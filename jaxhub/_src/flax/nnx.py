"""``jaxhub.nnx.HubLayer``: a module as one layer of a ``flax.nnx`` model.

The counterpart of ``hub.KerasLayer``. The module's params become variables of the layer:
:class:`flax.nnx.Param` for the params a trainable layer fine-tunes, :class:`HubState` for
the rest (batch-norm statistics, frozen weights), so ``nnx.Optimizer(model, tx,
wrt=nnx.Param)`` steps exactly the trainable ones.

Examples:
  >>> import optax
  >>> def features(params, x):
  ...     return jnp.tanh(x @ params["w"])
  >>> def features_train(params, x, rng):       # the {"train"} variant: dropout
  ...     y = features(params, x)
  ...     return y * jax.random.bernoulli(rng, 0.9, y.shape) / 0.9, {}
  >>> jaxhub.create_module(
  ...     {"w": jnp.ones((4, 128))},
  ...     signatures={"default": (features, jaxhub.TensorSpec([None, 4]))},
  ...     variants={"train": features_train}).export("features")
  PosixPath('.../features')
  >>> class Classifier(nnx.Module):
  ...     def __init__(self, rngs):
  ...         self.features = HubLayer("features", trainable=True, rngs=rngs)
  ...         self.head = nnx.Linear(128, 10, rngs=rngs)
  ...     def __call__(self, x):
  ...         return self.head(self.features(x))
  >>> model = Classifier(nnx.Rngs(0, dropout=1))
  >>> model.train()                        # the module's {"train"} variant, with dropout
  >>> optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  >>> model(jnp.ones((2, 4))).shape
  (2, 10)
"""

from __future__ import annotations

import os
from typing import Any

import jax
from flax import nnx

from jaxhub._src.flax import layer
from jaxhub._src.tree import Path, flatten, unflatten
from jaxhub._src.module import Module


class HubState(nnx.Variable):
    """A module param that gradient steps leave alone.

    Batch-norm statistics (which the train variant updates in training mode), and every
    param of a frozen layer or that the module marks non-trainable.
    """


class HubLayer(nnx.Module):
    """A jaxhub module wrapped as a ``flax.nnx`` layer, like ``hub.KerasLayer``.

    In training mode (``model.train()``, or ``deterministic=False``) a trainable layer runs
    the module's ``{"train"}`` variant: dropout keys come from the layer's RNG stream and
    the batch statistics it returns are written back into the :class:`HubState`
    variables. Like ``hub.KerasLayer``, a frozen layer always runs inference, so a frozen
    feature extractor keeps its statistics. The layer starts in inference mode.

    A signature that draws random numbers in inference too (a converted serving
    signature with ``tf.random.normal``) takes its keys from the same stream; one that
    assigns variables (``v.assign_add(x)``) writes the new values into the layer's
    variables, which hold such params as :class:`HubState`.

    Args:
      handle_or_module: a :class:`jaxhub.Module`, or a handle (path or URL) to load.
      trainable: whether fine-tuning changes the module's trainable params.
      signature: the signature to call.
      output_key: the output to return, for signatures with several outputs.
      rngs: where the layer draws PRNG keys from (the ``rng_collection`` stream of an
        ``nnx.Rngs``, or an ``nnx.RngStream``). Needed only when the function called
        draws random numbers (the train variant's dropout, or a signature that samples,
        in either mode) and no ``rngs`` is passed to the call.
      rng_collection: the stream of ``rngs`` to use.
      deterministic: start in inference (``True``) or training (``False``) mode.

    Raises:
      SignatureError: the module has no such signature or output.

    Examples:
      >>> module = jaxhub.create_module(
      ...     {"w": jnp.ones((4, 8))},
      ...     signatures={"default": (lambda p, x: x @ p["w"], jaxhub.TensorSpec([None, 4]))},
      ...     variants={"train": lambda p, x, rng: (x @ p["w"], {})})
      >>> layer = HubLayer(module, trainable=True, rngs=nnx.Rngs(dropout=0))
      >>> x = jnp.ones((2, 4))
      >>> y = layer(x)                                   # inference
      >>> layer.train(); y = layer(x)                    # train variant, dropout on
      >>> y.shape
      (2, 8)
    """

    def __init__(self, handle_or_module: Module | str | os.PathLike, trainable: bool = False,
                 signature: str = "default", output_key: str | None = None, *,
                 rngs: nnx.Rngs | nnx.RngStream | None = None,
                 rng_collection: str = "dropout", deterministic: bool = True):
        module = layer.resolve_module(handle_or_module)
        self._call = layer.LayerCall(module, signature, output_key, bool(trainable))
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        self.params = _variables(self._call, module.params)
        if isinstance(rngs, nnx.Rngs):
            rngs = rngs[rng_collection]
        # A stream of its own, as nnx.Dropout forks one, so draws do not depend on
        # what other layers took from the caller's stream.
        self.rngs = rngs.fork() if rngs is not None else nnx.data(None)

    @property
    def trainable(self) -> bool:
        """Whether the layer fine-tunes the module (fixed when the layer is made, as it
        decides which params are ``nnx.Param``s)."""
        return self._call.trainable

    @property
    def module(self) -> Module:
        """The wrapped module (its own params are the ones it was loaded with)."""
        return self._call.module

    def set_view(self, deterministic: bool | None = None) -> None:
        """Sets the mode for ``nnx.view``: ``deterministic=False`` is training."""
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(self, inputs: Any, *, deterministic: bool | None = None,
                 rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None) -> Any:
        """Applies the signature to ``inputs`` (one array or a dict by input name).

        Args:
          inputs: the signature's inputs.
          deterministic: overrides the layer's mode for this call.
          rngs: overrides the layer's RNG stream for this call (a key, a stream, or an
            ``nnx.Rngs`` whose ``rng_collection`` stream is used).

        Returns:
          The output (or the ``output_key`` output).
        """
        deterministic = self.deterministic if deterministic is None else deterministic
        outputs, state = self._call(self.module_params(), inputs, not deterministic,
                                    lambda: self._key(rngs))
        for path, value in flatten(state):
            _at(self.params, path).set_value(value)
        return outputs

    def module_params(self) -> dict[str, Any]:
        """The module's params tree at the layer's current values.

        Pass it to :meth:`jaxhub.Module.export` (or a
        :class:`jaxhub._src.exporter.ModuleExporter`) to publish the fine-tuned module.
        """
        return unflatten(
            (p.path, _at(self.params, p.path)[...]) for p in self.module.manifest.params)

    def regularization_loss(self) -> jax.Array:
        """The module's regularization loss at the current params (0 if it has none).

        Add it to the training loss, as Keras adds a ``hub.KerasLayer``'s losses.
        """
        return self.module.regularization_loss(self.module_params())

    def _key(self, rngs: nnx.Rngs | nnx.RngStream | jax.Array | None) -> jax.Array:
        if rngs is None:
            rngs = self.rngs
        if rngs is None:
            raise ValueError(f"signature {self._call.signature!r} draws random numbers "
                             f"here (dropout, sampling): give the HubLayer `rngs=`, or "
                             f"pass `rngs=` to the call")
        if isinstance(rngs, nnx.Rngs):
            return rngs[self.rng_collection]()
        if isinstance(rngs, nnx.RngStream):
            return rngs()
        return rngs


def _variables(call: layer.LayerCall, params: dict[str, Any]) -> nnx.Dict:
    """The params as nested ``nnx.Dict``s of variables, keyed like the module's tree."""
    def build(tree: dict[str, Any], prefix: Path) -> nnx.Dict:
        entries = {}
        for key, value in tree.items():
            path = (*prefix, key)
            if isinstance(value, dict):
                entries[key] = build(value, path)
            elif call.is_trainable(path):
                entries[key] = nnx.Param(value)
            else:
                entries[key] = HubState(value)
        return nnx.Dict(entries)

    return build(params, ())


def _at(variables: nnx.Dict, path: Path) -> nnx.Variable:
    for key in path:
        variables = variables[key]
    return variables
