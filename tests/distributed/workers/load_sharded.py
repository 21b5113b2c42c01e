"""Loads a module with its params sharded over 8 host devices; prints "ok".

Usage: python load_sharded.py MODULE_DIR   (with 8 host devices in XLA_FLAGS)
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxhub
from jaxhub._src import tree


def shard_over(mesh: jax.sharding.Mesh):
    """Splits each param along its first axis that the mesh divides; replicates the rest."""
    def sharding(path, struct: jax.ShapeDtypeStruct) -> NamedSharding:
        for axis, size in enumerate(struct.shape):
            if size % mesh.size == 0:
                return NamedSharding(mesh, P(*[None] * axis, "model"))
        return NamedSharding(mesh, P())
    return sharding


def main(module_dir: str) -> None:
    assert jax.device_count() == 8, jax.devices()
    mesh = jax.make_mesh((8,), ("model",))
    chooser = shard_over(mesh)
    plain = jaxhub.load(module_dir)
    sharded = jaxhub.load(module_dir, sharding=chooser)
    split = 0
    for path, leaf in tree.flatten(sharded.params):
        expected = chooser(path, jax.ShapeDtypeStruct(leaf.shape, leaf.dtype))
        assert leaf.sharding == expected, (path, leaf.sharding)
        # Each device holds its shard only: the restore read slices, not whole arrays.
        shard_shape = expected.shard_shape(leaf.shape)
        assert all(s.data.shape == shard_shape for s in leaf.addressable_shards), path
        split += shard_shape != leaf.shape
        np.testing.assert_array_equal(leaf, dict(tree.flatten(plain.params))[path])
    assert split >= 3, split
    x = jax.random.normal(jax.random.key(0), (8, 50))
    with jax.set_mesh(mesh):
        y = jax.jit(sharded.apply)(sharded.params, x)
        grads = jax.jit(jax.grad(lambda p: jnp.sum(sharded.apply(p, x) ** 2)))(sharded.params)
    np.testing.assert_allclose(y, plain(x), atol=1e-5)
    ref = jax.grad(lambda p: jnp.sum(plain.apply(p, x) ** 2))(plain.params)
    for path, g in tree.flatten(ref):
        np.testing.assert_allclose(dict(tree.flatten(grads))[path], g, atol=1e-4)
    print("ok", split)


if __name__ == "__main__":
    main(sys.argv[1])
