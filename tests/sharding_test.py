"""A loaded module on a batch sharded over 8 devices: forward, backward, vmap, shard_map.

On a mesh with Explicit axes the shardings are part of the types: the module's outputs
must keep the batch's sharding, and the cotangents it returns must be typed as its
inputs, or whatever follows the module on the mesh fails to differentiate.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import jaxhub

SCRIPT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import jaxhub
    from tests.conftest import make_mlp_module, mlp

    assert jax.device_count() == 8
    x_host = np.asarray(jax.random.normal(jax.random.key(0), (16, 50)))
    loss = lambda apply: lambda p, x: jnp.mean((apply(p, x) - 1.0) ** 2)
    reference = jaxhub.load(sys.argv[1])
    ref_y = mlp(reference.params, x_host)
    ref_grads, ref_x_grad = jax.grad(loss(mlp), argnums=(0, 1))(reference.params, x_host)
    for axis_type in (AxisType.Explicit, AxisType.Auto):
        mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
        replicated = NamedSharding(mesh, P())
        module = jaxhub.load(sys.argv[1], sharding=replicated)
        assert module.params["dense1"]["kernel"].sharding == replicated
        x = jax.device_put(x_host, NamedSharding(mesh, P("data")))
        with jax.set_mesh(mesh):
            y = jax.jit(module.apply)(module.params, x)
            types = []  # the output's type inside jit
            jax.jit(lambda p, x: types.append(jax.typeof(module.apply(p, x))) or 0)(
                module.params, x)
            grads, x_grad = jax.jit(jax.grad(loss(module.apply), argnums=(0, 1)))(
                module.params, x)
            eager = module.apply(module.params, x)
            # vmap folds the mapped axis into the batch: 2 batches of 8 rows
            stacked = jax.device_put(x_host.reshape(2, 8, 50), NamedSharding(mesh, P(None, "data")))
            mapped = jax.jit(jax.vmap(module.apply, in_axes=(None, 0)))(module.params, stacked)
            # per-example gradients: vmap of grad over the sharded rows
            per_example = jax.jit(jax.vmap(jax.grad(lambda p, r: loss(module.apply)(p, r[None])),
                                           in_axes=(None, 0)))(module.params, x)
            # shard_map: each device applies the module to its own rows
            per_device = jax.jit(jax.shard_map(module.apply, mesh=mesh, in_specs=(P(), P("data")),
                                               out_specs=P("data")))(module.params, x)
        for got in (y, eager, np.asarray(mapped).reshape(16, 10), per_device):
            np.testing.assert_allclose(got, ref_y, atol=1e-5)
        for got in (y, eager, per_device):
            assert got.sharding.is_equivalent_to(NamedSharding(mesh, P("data")), 2), got.sharding
        assert x_grad.sharding.is_equivalent_to(x.sharding, 2), x_grad.sharding
        ref_per_example = jax.vmap(jax.grad(lambda p, r: loss(mlp)(p, r[None])),
                                   in_axes=(None, 0))(reference.params, x_host)
        np.testing.assert_allclose(per_example["dense1"]["kernel"],
                                   ref_per_example["dense1"]["kernel"], atol=1e-5)
        np.testing.assert_allclose(x_grad, ref_x_grad, atol=1e-6)
        for name in ("dense1", "dense2"):
            np.testing.assert_allclose(grads[name]["kernel"], ref_grads[name]["kernel"], atol=1e-5)
        if axis_type == AxisType.Explicit:  # on an Auto mesh, XLA picks the layout
            assert mapped.sharding.is_equivalent_to(NamedSharding(mesh, P(None, "data")), 3)
        print(axis_type, "output typed", types[0].sharding.spec)

    # Params split over an explicit "model" axis, rows over "data": each gradient comes
    # back typed as its param.
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
    split = lambda path, s: NamedSharding(
        mesh, P(None, "model") if len(s.shape) == 2 and s.shape[1] % 2 == 0 else P())
    module = jaxhub.load(sys.argv[1], sharding=split)
    with jax.set_mesh(mesh):
        x = jax.device_put(x_host, NamedSharding(mesh, P("data")))
        grads = jax.jit(jax.grad(loss(module.apply)))(module.params, x)
    for name in ("dense1", "dense2"):
        assert grads[name]["kernel"].sharding == module.params[name]["kernel"].sharding, name
        np.testing.assert_allclose(grads[name]["kernel"], ref_grads[name]["kernel"], atol=1e-5)

    # A module created under an explicit mesh, from params that live on it, runs anywhere.
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
    with jax.set_mesh(mesh):
        made = make_mlp_module(jax.device_put(reference.params, NamedSharding(mesh, P())))
        y = jax.jit(made.apply)(made.params, jax.device_put(x_host, NamedSharding(mesh, P("data"))))
    assert all(e.nr_devices == 1 for e in made.functions.values())
    np.testing.assert_allclose(y, ref_y, atol=1e-5)
    np.testing.assert_allclose(jaxhub.load(made.export(sys.argv[2]))(x_host), ref_y, atol=1e-5)

    # A function that splits its batch over the 8 devices cannot be exported for any size.
    pinned = lambda p, x: jax.sharding.reshard(x * p["scale"], NamedSharding(mesh, P("data")))
    try:
        jaxhub.create_module(reference.params, signatures={"default": (
            pinned, jaxhub.TensorSpec([None, 50], "float32"))})
        raise AssertionError("a batch pinned to 8 devices was exported")
    except jaxhub.SignatureError as e:
        assert "shards its values over a mesh" in str(e), e
    print("ok")
""")


def test_sharded_forward_gradient_vmap_and_shard_map(mlp_dir, tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(mlp_dir), str(tmp_path / "m")],
                            env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
    # Under jit, on the explicit mesh, the type itself says the output is split by rows.
    assert "Explicit output typed P('data', None)" in result.stdout, result.stdout


@pytest.mark.parametrize("pin", [
    lambda x: jax.sharding.reshard(x, P("data", None)),
    lambda x: jax.lax.with_sharding_constraint(
        x, NamedSharding(jax.make_mesh((1,), ("data",)), P("data"))),
], ids=["reshard to a spec", "with_sharding_constraint"])
def test_a_function_that_shards_over_a_mesh_is_refused_with_the_fix(pin):
    spec = jaxhub.TensorSpec([None, 4], "float32")
    with jax.set_mesh(jax.make_mesh((1,), ("data",))):
        with pytest.raises(jaxhub.SignatureError, match="'default'.*shards its values.*drop"):
            jaxhub.create_module({"scale": jnp.ones(4)},
                                 signatures={"default": (lambda p, x: pin(x * p["scale"]), spec)})


def test_outputs_that_lead_with_the_batch_keep_its_sharding_the_others_are_replicated(
        mlp_module):
    mesh = jax.make_mesh((1,), ("data",), axis_types=(AxisType.Explicit,))
    params = jax.device_put(mlp_module.params, NamedSharding(mesh, P()))
    x = jax.device_put(jnp.ones((4, 50)), NamedSharding(mesh, P("data")))
    types = {}

    def record(params, x):
        types.update(mlp_module.apply(params, {"a": x}, signature="double", as_dict=True))
        outputs, state = mlp_module.apply(params, x, tags="train", rng=jax.random.key(0))
        types["train"], types["stats"] = outputs, state["stats"]["mean"]
        types.update({k: jax.typeof(v).sharding.spec for k, v in types.items()})
        return 0

    with jax.set_mesh(mesh):
        jax.jit(record)(params, x)
    assert types == {"doubled": P("data", None), "total": P("data"), "train": P("data", None),
                     "stats": P(None)}
