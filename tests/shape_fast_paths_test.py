"""The fast paths of JAX's shape evaluation that jaxhub's exports run on.

They must give the modules JAX's own functions give (same results, same shape checks),
skip the costly work in the cases they are for, and leave JAX as it was afterwards.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export as jax_export
from jax._src.interpreters import mlir

from jaxhub._src import serialization
from jaxhub._src import shape_fast_paths


def crop_and_pool(x, y):
    """Slices over a symbolic batch, and an arg whose dims are derived from ``x``'s."""
    z = x[:, 1:5] * 2.0 + y[:, :4, 0]
    return jnp.concatenate([z[:, ::2], z[:, 1::2]], axis=1).sum(axis=1), z[:, :2] * y.sum()


def symbolic_args():
    b, h = jax_export.symbolic_shape("b, h")
    return (jax.ShapeDtypeStruct((b, h + 8), jnp.float32),
            jax.ShapeDtypeStruct((b, (h + 1) // 2 + 4, 3 * h), jnp.float32))


def export_with_vjp(fast: bool):
    def vjp(x, y):
        outs, pullback = jax.vjp(crop_and_pool, x, y)
        return outs, pullback(outs)

    if fast:
        return serialization._export_jit(vjp, symbolic_args(), ("cpu", "cuda"))
    return jax_export.export(jax.jit(vjp), platforms=("cpu", "cuda"))(*symbolic_args())


def test_jax_has_what_the_fast_paths_replace():
    """A JAX whose internals moved would export correctly but slowly: say so here."""
    assert shape_fast_paths.SUPPORTED


def test_exports_compute_what_jax_exports_compute():
    fast, slow = export_with_vjp(fast=True), export_with_vjp(fast=False)
    for h in (3, 7):
        rng = np.random.default_rng(h)
        x = rng.normal(size=(2, h + 8)).astype(np.float32)
        y = rng.normal(size=(2, (h + 1) // 2 + 4, 3 * h)).astype(np.float32)
        jax.tree.map(np.testing.assert_array_equal, fast.call(x, y), slow.call(x, y))


def test_shape_checks_are_kept():
    """A ``y`` whose sizes do not follow from ``x``'s fails as JAX's own export fails."""
    x = np.zeros((2, 15), np.float32)
    y = np.zeros((2, 5, 20), np.float32)  # h = 7: (h + 1) // 2 + 4 = 8, 3 * h = 21
    messages = []
    for fast in (True, False):
        with pytest.raises(Exception) as error:
            jax.block_until_ready(export_with_vjp(fast).call(x, y))
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert "Found inconsistency between dimension size" in messages[0]


def test_constants_and_bare_symbols_are_not_traced(monkeypatch):
    """Only shapes with derived dims go through JAX's evaluation (a traced function)."""
    evaluated = []
    jax_eval = mlir.eval_dynamic_shape

    def counted(ctx, shape):
        evaluated.append(shape)
        return jax_eval(ctx, shape)

    monkeypatch.setattr(mlir, "eval_dynamic_shape", counted)
    b, = jax_export.symbolic_shape("b")
    serialization._export_jit(lambda x: x[:, 1:5], [jax.ShapeDtypeStruct((b, 9), jnp.float32)],
                              ("cpu",))
    assert evaluated == []
    serialization._export_jit(lambda x: x[:, 1:], symbolic_args()[:1], ("cpu",))
    assert evaluated  # the slice ends at h + 8


def test_jax_is_restored_after_an_export():
    def current():
        return [getattr(owner, name) for owner, name, _, _ in shape_fast_paths._FAST_PATHS]

    jax_functions = current()
    with shape_fast_paths.installed():
        with shape_fast_paths.installed():  # re-entrant: an export inside an export
            pass
        assert current() == [fast for _, _, fast, _ in shape_fast_paths._FAST_PATHS]
    export_with_vjp(fast=True)
    assert current() == jax_functions
