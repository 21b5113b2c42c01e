"""The fine-tuning the distributed tests run, on one device, many, or many processes.

Adam steps a module's trainable params through its train variant (dropout, batch
statistics); the data, the keys and the step are the same wherever it runs, so runs can be
compared. The ``*_with_head`` runs put a trainable classification head on the mesh after
the module (functional, ``flax.nnx`` and ``flax.linen``): the head's gradient needs the
module's output typed with the batch's sharding.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen, nnx
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxhub
from jaxhub._src import tree
from jaxhub import linen as hub_linen
from jaxhub import nnx as hub_nnx

TX = optax.adam(1e-2)
BATCH = 16
STEPS = 4
CLASSES = 3
FEATURES = 10


def batch(step: int, d_in: int = 50, d_out: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The global batch of ``step``: the same numbers in every process."""
    rng = np.random.default_rng(step)
    x = rng.normal(size=(BATCH, d_in)).astype(np.float32)
    return x, np.tanh(x[:, :d_out]).astype(np.float32)


def labels(step: int) -> np.ndarray:
    """The class labels of ``step``'s batch (which of the first features is largest)."""
    x, _ = batch(step)
    return np.argmax(x[:, :CLASSES], axis=1).astype(np.int32)


def head_init() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(99)
    return {"kernel": (rng.normal(size=(FEATURES, CLASSES)) / 3).astype(np.float32),
            "bias": np.zeros(CLASSES, np.float32)}


def key_data(step: int) -> np.ndarray:
    return np.asarray(jax.random.key_data(jax.random.key(step)))


def trainable_part(module: jaxhub.Module, params: dict[str, Any]) -> dict[str, Any]:
    """The params fine-tuning steps (the others are frozen or statistics)."""
    flags = dict(tree.flatten(module.trainable_mask))
    return tree.unflatten((p, v) for p, v in tree.flatten(params) if flags[p])


def make_step(module: jaxhub.Module):
    """A jitted ``step(trainable, params, opt_state, x, y, key) -> (..., loss)``."""
    def loss(trainable, params, x, y, key):
        outputs, state = module.apply(jaxhub.merge_params(params, trainable), x,
                                      tags="train", rng=key)
        return jnp.mean((outputs - y) ** 2), state

    @jax.jit
    def step(trainable, params, opt_state, x, y, key):
        (value, state), grads = jax.value_and_grad(loss, has_aux=True)(
            trainable, params, x, y, key)
        updates, opt_state = TX.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        params = jaxhub.merge_params(jaxhub.merge_params(params, trainable), state)
        return trainable, params, opt_state, value

    return step


def fine_tune(module: jaxhub.Module, mesh: jax.sharding.Mesh | None = None
              ) -> tuple[dict[str, Any], list[float]]:
    """Runs :data:`STEPS` steps; with a mesh, the batch is split over its ``"data"`` axis
    (each process feeding its own rows) and params are replicated.

    Returns:
      The fine-tuned params (as numpy) and the losses.
    """
    params = module.params
    if mesh is not None:
        params = jax.tree.map(lambda v: _global(np.asarray(v), mesh, P()), params)
    trainable = trainable_part(module, params)
    opt_state = TX.init(trainable)
    step, losses = make_step(module), []
    for i in range(STEPS):
        x, y = batch(i)
        key = key_data(i)
        if mesh is not None:
            x, y = (_global(_own_rows(v), mesh, P("data")) for v in (x, y))
            key = _global(key, mesh, P())
        trainable, params, opt_state, loss = step(trainable, params, opt_state, x, y, key)
        losses.append(float(_local(loss)))
    return jax.tree.map(_local, params), losses


def _own_rows(v: np.ndarray) -> np.ndarray:
    n = len(v) // jax.process_count()
    return v[jax.process_index() * n:(jax.process_index() + 1) * n]


def _global(local: np.ndarray, mesh: jax.sharding.Mesh, spec: P) -> jax.Array:
    return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), local)


def _local(v: jax.Array) -> np.ndarray:
    """A replicated array's value, readable in any process."""
    return np.asarray(v.addressable_data(0)) if isinstance(v, jax.Array) else np.asarray(v)


def _replicated(tree_: Any, mesh: jax.sharding.Mesh | None) -> Any:
    """``tree_`` placed replicated on ``mesh`` (as is without a mesh)."""
    if mesh is None:
        return tree_
    return jax.tree.map(lambda v: _global(_local(v), mesh, P()), tree_)


def _inputs(step: int, mesh: jax.sharding.Mesh | None):
    """``step``'s batch, labels and key; with a mesh, the rows split over ``"data"``."""
    x, y = batch(step)
    key = key_data(step)
    if mesh is None:
        return x, labels(step), key
    x, y = (_global(_own_rows(v), mesh, P("data")) for v in (x, labels(step)))
    return x, y, _global(key, mesh, P())


def _cross_entropy(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def fine_tune_with_head(module: jaxhub.Module, mesh: jax.sharding.Mesh | None = None
                        ) -> tuple[dict[str, Any], list[float]]:
    """The module's train variant under a dense head, both trained with ``jax.grad``.

    Returns:
      ``{"module": params, "head": head}`` (as numpy) and the losses.
    """
    params = _replicated(module.params, mesh)
    trainable = {"module": trainable_part(module, params),
                 "head": _replicated(head_init(), mesh)}
    opt_state = TX.init(trainable)

    def loss(trainable, params, x, y, key):
        features, state = module.apply(jaxhub.merge_params(params, trainable["module"]), x,
                                       tags="train", rng=key)
        head = trainable["head"]
        return _cross_entropy(features @ head["kernel"] + head["bias"], y), state

    @jax.jit
    def step(trainable, params, opt_state, x, y, key):
        (value, state), grads = jax.value_and_grad(loss, has_aux=True)(
            trainable, params, x, y, key)
        updates, opt_state = TX.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        params = jaxhub.merge_params(jaxhub.merge_params(params, trainable["module"]), state)
        return trainable, params, opt_state, value

    losses = []
    for i in range(STEPS):
        trainable, params, opt_state, value = step(trainable, params, opt_state,
                                                   *_inputs(i, mesh))
        losses.append(float(_local(value)))
    return {"module": jax.tree.map(_local, params),
            "head": jax.tree.map(_local, trainable["head"])}, losses


class NnxClassifier(nnx.Module):
    """``jaxhub.nnx.HubLayer`` under an ``nnx.Linear`` head."""

    def __init__(self, module: jaxhub.Module):
        self.features = hub_nnx.HubLayer(module, trainable=True, deterministic=False)
        init = head_init()
        self.head = nnx.Linear(FEATURES, CLASSES, rngs=nnx.Rngs(0),
                               kernel_init=lambda *_: jnp.asarray(init["kernel"]),
                               bias_init=lambda *_: jnp.asarray(init["bias"]))

    def __call__(self, x, key):
        return self.head(self.features(x, rngs=key))


def nnx_fine_tune_with_head(module: jaxhub.Module, mesh: jax.sharding.Mesh | None = None
                            ) -> tuple[dict[str, Any], list[float]]:
    """The same steps through :class:`NnxClassifier` under ``nnx.jit``."""
    model = NnxClassifier(module)
    nnx.update(model, _replicated(nnx.state(model), mesh))
    optimizer = nnx.Optimizer(model, TX, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y, key):
        loss = lambda model: _cross_entropy(model(x, key), y)
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    losses = []
    for i in range(STEPS):
        x, y, key = _inputs(i, mesh)
        losses.append(float(_local(step(model, optimizer, x, y, jax.random.wrap_key_data(key)))))
    head = {"kernel": model.head.kernel[...], "bias": model.head.bias[...]}
    return {"module": jax.tree.map(_local, model.features.module_params()),
            "head": jax.tree.map(_local, head)}, losses


class LinenClassifier(linen.Module):
    """``jaxhub.linen.HubLayer`` under a ``linen.Dense`` head."""

    module: jaxhub.Module

    @linen.compact
    def __call__(self, x, train: bool = False):
        features = hub_linen.HubLayer(self.module, trainable=True)(x, train=train)
        return linen.Dense(CLASSES, name="head")(features)


def linen_fine_tune_with_head(module: jaxhub.Module, mesh: jax.sharding.Mesh | None = None
                              ) -> tuple[dict[str, Any], list[float]]:
    """The same steps through :class:`LinenClassifier`."""
    model = LinenClassifier(module)
    variables = model.init(jax.random.key(0), batch(0)[0][:2])
    variables = jax.tree.map(np.asarray, variables)
    variables["params"]["head"] = head_init()
    variables = _replicated(variables, mesh)
    opt_state = TX.init(variables["params"])

    @jax.jit
    def step(variables, opt_state, x, y, key):
        def loss(params):
            logits, updates = model.apply({**variables, "params": params}, x, train=True,
                                          mutable=["batch_stats"],
                                          rngs={"dropout": jax.random.wrap_key_data(key)})
            return _cross_entropy(logits, y), updates
        (value, updates), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
        changes, opt_state = TX.update(grads, opt_state, variables["params"])
        params = optax.apply_updates(variables["params"], changes)
        return {**variables, **updates, "params": params}, opt_state, value

    losses = []
    for i in range(STEPS):
        variables, opt_state, value = step(variables, opt_state, *_inputs(i, mesh))
        losses.append(float(_local(value)))
    variables = jax.tree.map(_local, variables)
    return {"module": hub_linen.module_params(
                {k: v["HubLayer_0"] for k, v in variables.items() if "HubLayer_0" in v}),
            "head": variables["params"]["head"]}, losses


#: The fine-tunings with a head, by name.
WITH_HEAD = {"functional": fine_tune_with_head, "nnx": nnx_fine_tune_with_head,
             "linen": linen_fine_tune_with_head}


def assert_same_run(run: tuple[dict[str, Any], list[float]],
                    reference: tuple[dict[str, Any], list[float]], what: str,
                    atol: float = 1e-5) -> float:
    """Checks that two runs give the same losses and params; returns the largest gap."""
    (trained, losses), (ref_trained, ref_losses) = run, reference
    np.testing.assert_allclose(losses, ref_losses, rtol=atol, err_msg=what)
    gap = float(np.max(np.abs(np.subtract(losses, ref_losses))))
    got = dict(tree.flatten(trained))
    for path, value in tree.flatten(ref_trained):
        np.testing.assert_allclose(got[path], value, atol=atol, err_msg=f"{what} {path}")
        gap = max(gap, float(np.max(np.abs(np.asarray(got[path]) - np.asarray(value)))))
    return gap
