"""Fine-tunes a loaded module data-parallel over 8 host devices; prints "ok".

The batch is split over the devices, params replicated; the result must match the same
fine-tuning on one device, and the same again through ``jaxhub.nnx.HubLayer``.

Usage: python data_parallel.py MODULE_DIR   (with 8 host devices in XLA_FLAGS)
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxhub
from jaxhub._src import tree
from jaxhub.nnx import HubLayer
from tests.distributed.workers import finetune


def nnx_fine_tune(module: jaxhub.Module, mesh: jax.sharding.Mesh) -> dict:
    """The same steps through a HubLayer under nnx.jit, the batch sharded over ``mesh``."""
    layer = HubLayer(module, trainable=True, deterministic=False)
    optimizer = nnx.Optimizer(layer, finetune.TX, wrt=nnx.Param)
    data = NamedSharding(mesh, P("data"))

    @nnx.jit
    def step(layer, optimizer, x, y, key):
        loss = lambda layer: jnp.mean((layer(x, rngs=key) - y) ** 2)
        value, grads = nnx.value_and_grad(loss)(layer)
        optimizer.update(layer, grads)
        return value

    for i in range(finetune.STEPS):
        x, y = (jax.device_put(v, data) for v in finetune.batch(i))
        step(layer, optimizer, x, y, jax.random.wrap_key_data(finetune.key_data(i)))
    return layer.module_params()


def main(module_dir: str) -> None:
    assert jax.device_count() == 8, jax.devices()
    mesh = jax.make_mesh((8,), ("data",))
    module = jaxhub.load(module_dir, sharding=NamedSharding(mesh, P()))
    single, single_losses = finetune.fine_tune(jaxhub.load(module_dir))
    parallel, losses = finetune.fine_tune(module, mesh)
    layered = nnx_fine_tune(module, mesh)
    assert losses[-1] < losses[0], losses
    np.testing.assert_allclose(losses, single_losses, rtol=1e-5)
    tuned = dict(tree.flatten(layered))
    for path, value in tree.flatten(single):
        np.testing.assert_allclose(dict(tree.flatten(parallel))[path], value, atol=1e-5,
                                   err_msg=str(path))
        np.testing.assert_allclose(tuned[path], value, atol=1e-5, err_msg=str(path))
    moved = np.abs(single["dense1"]["kernel"] - np.asarray(jaxhub.load(module_dir).params[
        "dense1"]["kernel"])).max()
    assert moved > 1e-3, moved
    print("ok", losses[0], losses[-1])


if __name__ == "__main__":
    main(sys.argv[1])
