"""``jaxhub.from_flax``: a module from a ``flax.nnx`` or ``flax.linen`` model.

The model's parameters become trainable params; its other variables (batch-norm
statistics) become non-trainable params that the ``{"train"}`` variant returns updated.
Dropout and other random streams draw from the key given to the train variant.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax

from jaxhub._src.tree import flatten, merge_params
from jaxhub._src.create import InputSpecs, create_module
from jaxhub._src.module import Module
from jaxhub._src.specs import TensorSpec


def from_flax(model: Any, inputs: InputSpecs, *, variables: Mapping[str, Any] | None = None,
              signature: str = "default", train_kwargs: Mapping[str, Any] | None = None,
              eval_kwargs: Mapping[str, Any] | None = None,
              rng_streams: Sequence[str] = ("dropout",), **create_kwargs: Any) -> Module:
    """Creates a module whose ``signature`` calls a Flax model.

    A dict of input specs calls the model with keyword arguments (``model(**inputs)``);
    a single spec calls it with one array.

    Args:
      model: a ``flax.nnx.Module``, or a ``flax.linen.Module`` together with
        ``variables``.
      inputs: the input spec(s), as for :func:`jaxhub.create_module`.
      variables: for linen: the model's variables (``{"params": ..., "batch_stats": ...}``).
      signature: the name of the signature.
      train_kwargs: for linen: extra keyword arguments in training (``{"train": True}``).
      eval_kwargs: for linen: extra keyword arguments in inference (``{"train": False}``).
      rng_streams: for linen: the RNG streams the model draws from in training.
      **create_kwargs: passed on to :func:`jaxhub.create_module` (``regularizer``,
        ``attachments``, ``assets``, ...).

    Returns:
      A module with an inference variant and a ``{"train"}`` variant.

    Examples:
      >>> from flax import nnx
      >>> model = nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.relu)
      >>> module = jaxhub.from_flax(model, jaxhub.TensorSpec([None, 4], "float32"))
      >>> module(jnp.ones((2, 4))).shape, module.variants
      ((2, 8), (frozenset(), frozenset({'train'})))
    """
    from flax import linen, nnx

    if isinstance(model, nnx.Module):
        params, trainable, infer, train = _nnx_functions(model)
    elif isinstance(model, linen.Module):
        if variables is None:
            raise ValueError("a linen model needs its `variables`")
        params, trainable, infer, train = _linen_functions(
            model, variables, dict(train_kwargs or {}), dict(eval_kwargs or {}), rng_streams)
    else:
        raise TypeError(f"from_flax takes a flax.nnx or flax.linen Module, "
                        f"not {type(model).__name__}")
    call = _caller(inputs)
    return create_module(
        params,
        signatures={signature: (lambda p, x: infer(p, call, x), inputs)},
        variants={"train": {signature: lambda p, x, rng: train(p, call, x, rng)}},
        trainable=trainable, origin={"created_by": "jaxhub.from_flax"}, **create_kwargs)


def _caller(inputs: InputSpecs) -> Callable[[Callable[..., Any], Any], Any]:
    if isinstance(inputs, TensorSpec):
        return lambda fn, x: fn(x)
    return lambda fn, x: fn(**x)


def _nnx_functions(model):
    from flax import nnx

    graphdef, param_state, rng_state, rest_state = nnx.split(model, nnx.Param, nnx.RngState,
                                                             ...)
    param_pure, rest_pure = nnx.to_pure_dict(param_state), nnx.to_pure_dict(rest_state)
    params = merge_params(rest_pure, param_pure)
    trainable_paths = {path for path, _ in flatten(param_pure)}
    variables = jax.tree.leaves(rng_state, is_leaf=lambda v: isinstance(v, nnx.Variable))
    streams = sorted({v.tag for v in variables if isinstance(v, nnx.RngKey)})

    def rebuild(p):
        # Fresh copies: nnx refuses to mutate variables made outside the current trace.
        return nnx.merge(graphdef, _state_like(param_state, p), _copy(rng_state),
                         _state_like(rest_state, p))

    def infer(p, call, x):
        model = rebuild(p)
        model.eval()
        return call(model, x)

    def train(p, call, x, rng):
        model = rebuild(p)
        model.train()
        nnx.reseed(model, **{s: jax.random.fold_in(rng, i) for i, s in enumerate(streams)})
        y = call(model, x)
        *_, new_rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
        return y, nnx.to_pure_dict(new_rest)

    return params, lambda path, _: path in trainable_paths, infer, train


def _state_like(state, params: Mapping[Any, Any]):
    """A copy of the nnx ``state`` with its values taken from ``params`` by path."""
    from flax import nnx
    pure = jax.tree_util.tree_map_with_path(
        lambda path, _: _lookup(params, path), nnx.to_pure_dict(state))
    copy = _copy(state)
    nnx.replace_by_pure_dict(copy, pure)
    return copy


def _copy(state):
    return jax.tree.map(lambda v: v, state)


def _lookup(tree: Mapping[Any, Any], path: Sequence[Any]) -> Any:
    for key in path:
        tree = tree[key.key]
    return tree


def _linen_functions(model, variables, train_kwargs, eval_kwargs, rng_streams):
    collections = [c for c in variables if c != "params"]

    def infer(p, call, x):
        return call(lambda *a, **k: model.apply(p, *a, **k, **eval_kwargs), x)

    def train(p, call, x, rng):
        rngs = {s: jax.random.fold_in(rng, i) for i, s in enumerate(rng_streams)}
        if not collections:
            return call(lambda *a, **k: model.apply(p, *a, **k, **train_kwargs, rngs=rngs),
                        x), {}
        y, updates = call(lambda *a, **k: model.apply(p, *a, **k, **train_kwargs, rngs=rngs,
                                                      mutable=collections), x)
        return y, dict(updates)

    return dict(variables), lambda path, _: path[0] == "params", infer, train
