"""A loaded module runs on a batch sharded over 8 devices, forward and backward."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import jaxhub
    from tests.conftest import mlp

    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("data",))
    replicated = NamedSharding(mesh, P())
    module = jaxhub.load(sys.argv[1], sharding=replicated)
    leaf = module.params["dense1"]["kernel"]
    assert leaf.sharding == replicated, leaf.sharding
    x = jax.device_put(jax.random.normal(jax.random.key(0), (16, 50)), NamedSharding(mesh, P("data")))
    with jax.set_mesh(mesh):
        y = jax.jit(module.apply)(module.params, x)
        loss = lambda apply: lambda p: jnp.mean((apply(p, x) - 1.0) ** 2)
        grads = jax.jit(jax.grad(loss(module.apply)))(module.params)
        ref_y = mlp(module.params, x)
        ref_grads = jax.grad(loss(mlp))(module.params)
    np.testing.assert_allclose(y, ref_y, atol=1e-5)
    assert y.sharding.spec == P("data"), y.sharding
    for name in ("dense1", "dense2"):
        np.testing.assert_allclose(grads[name]["kernel"], ref_grads[name]["kernel"], atol=1e-5)
    print("ok")
""")


def test_sharded_forward_and_gradient(mlp_dir):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(mlp_dir)], env=env, cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
