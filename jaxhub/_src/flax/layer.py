"""What the Flax layers (:mod:`jaxhub.nnx`, :mod:`jaxhub.linen`) share: one call of a module.

A layer wraps a module like ``hub.KerasLayer`` does: it holds the module's params as
framework variables and, per call, picks the variant (inference, or ``{"train"}`` when
training a trainable layer), draws a key only if the function it calls takes one (a train
variant's dropout, a serving signature's random ops), and hands back the outputs and the
state the call updated (batch statistics, or the variables a signature assigns).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax

from jaxhub._src import loading
from jaxhub._src import tree
from jaxhub._src.module import Module
from jaxhub._src.specs import SignatureError

TRAIN = frozenset({"train"})


def resolve_module(handle_or_module: Module | str | os.PathLike) -> Module:
    """The module itself, or the module loaded from a handle (path or URL)."""
    if isinstance(handle_or_module, Module):
        return handle_or_module
    if isinstance(handle_or_module, (str, os.PathLike)):
        return loading.load(handle_or_module)
    raise TypeError(f"a hub layer wraps a jaxhub.Module or a handle (path or URL), not "
                    f"{type(handle_or_module).__name__}")


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """How a layer calls one signature of a module, checked once when the layer is made.

    Attributes:
      module: the wrapped module.
      signature: the signature to call.
      output_key: the output to return, or None for the single (or ``"default"``) one.
      trainable: whether the layer fine-tunes the module's trainable params.
    """

    module: Module
    signature: str
    output_key: str | None
    trainable: bool
    _trainable_paths: frozenset[tree.Path] = dataclasses.field(
        init=False, repr=False, compare=False)

    def __post_init__(self):
        signatures = self.module.signatures
        if self.signature not in signatures:
            raise SignatureError(f"module has no signature {self.signature!r}; its "
                                 f"signatures: {sorted(signatures)}")
        outputs = signatures[self.signature].outputs
        if self.output_key is not None and self.output_key not in outputs:
            raise SignatureError(f"signature {self.signature!r} has no output "
                                 f"{self.output_key!r}; its outputs: {sorted(outputs)}")
        # Params the signature assigns (a converted counter, a moving statistic) are the
        # layer's state, never stepped by a gradient, even when the module marks them
        # trainable (a tf.Variable is trainable unless told otherwise).
        assigned = {path for tags in (frozenset(), TRAIN)
                    for path in self._state_paths(tags)}
        paths = frozenset(p.path for p in self.module.manifest.params
                          if p.trainable and p.path not in assigned)
        object.__setattr__(self, "_trainable_paths", paths)  # frozen: set once, here

    def _state_paths(self, tags: frozenset[str]) -> tuple[tree.Path, ...]:
        spec = self.module.manifest.function(tags, self.signature)
        return spec.state if spec is not None else ()

    def is_trainable(self, path: tree.Path) -> bool:
        """Whether the param at ``path`` is a trainable variable of the layer."""
        return self.trainable and path in self._trainable_paths

    def uses_train_variant(self, training: bool) -> bool:
        """Training runs the train variant, like ``hub.KerasLayer``: only when the layer is
        trainable (a frozen feature extractor keeps its batch statistics) and the module
        has one for this signature (otherwise inference is all there is)."""
        return (training and self.trainable
                and self.module.manifest.function(TRAIN, self.signature) is not None)

    def _tags(self, training: bool) -> frozenset[str]:
        return TRAIN if self.uses_train_variant(training) else frozenset()

    def needs_rng(self, training: bool) -> bool:
        """Whether the call in this mode needs a PRNG key: the train variant has dropout,
        or the signature itself draws random numbers (a converted serving signature with
        ``tf.random.normal``)."""
        return self.module.manifest.function(self._tags(training), self.signature).takes_rng

    def __call__(self, params: dict[str, Any], inputs: Any, training: bool,
                 rng: Callable[[], jax.Array]) -> tuple[Any, dict[str, Any]]:
        """Applies the signature.

        Args:
          params: the module's params tree, current values.
          inputs: the signature's inputs.
          training: whether the model is in training mode.
          rng: draws a PRNG key; called only when the function called takes one.

        Returns:
          ``(outputs, state)``: ``state`` holds the params the call updated: the train
          variant's statistics, or what a signature that assigns variables assigned
          (empty when the call updates nothing).
        """
        tags = self._tags(training)
        as_dict = self.output_key is not None
        key = rng() if self.needs_rng(training) else None
        result = self.module.apply(params, inputs, signature=self.signature,
                                   as_dict=as_dict, tags=tags, rng=key)
        if tags or self._state_paths(tags):  # the module returns (outputs, state)
            outputs, state = result
        else:
            outputs, state = result, {}
        return (outputs[self.output_key] if as_dict else outputs), state
