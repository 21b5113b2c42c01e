"""The fine-tuning the distributed tests run, on one device, many, or many processes.

Adam steps a module's trainable params through its train variant (dropout, batch
statistics); the data, the keys and the step are the same wherever it runs, so runs can be
compared.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxhub
from jaxhub._src import tree

TX = optax.adam(1e-2)
BATCH = 16
STEPS = 4


def batch(step: int, d_in: int = 50, d_out: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The global batch of ``step``: the same numbers in every process."""
    rng = np.random.default_rng(step)
    x = rng.normal(size=(BATCH, d_in)).astype(np.float32)
    return x, np.tanh(x[:, :d_out]).astype(np.float32)


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
