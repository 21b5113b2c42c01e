"""Modules written by earlier jaxhub versions keep loading and computing the same thing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub
from tests.conftest import double, l2, mlp, mlp_train
from tests.fixtures.make_fixtures import FIXTURES

FIXTURE_DIRS = sorted(FIXTURES.glob("mlp-format*"))


def test_there_is_a_fixture_for_the_current_format():
    from jaxhub._src.storage.manifest import FORMAT_VERSION
    assert FIXTURES / f"mlp-format{FORMAT_VERSION}" in FIXTURE_DIRS


@pytest.mark.parametrize("path", FIXTURE_DIRS, ids=lambda p: p.name)
def test_fixture_loads_and_matches_the_functions_that_made_it(path, x):
    module = jaxhub.load(path)
    params = module.params
    np.testing.assert_allclose(module(x), mlp(params, x), atol=1e-5)
    out = module({"a": x}, signature="double", as_dict=True)
    np.testing.assert_allclose(out["total"], double(params, {"a": x})["total"], rtol=1e-5)
    train_out, state = module(x, tags="train", rng=jax.random.key(3))
    ref_out, ref_state = mlp_train(params, x, jax.random.key(3))
    np.testing.assert_allclose(train_out, ref_out, atol=1e-5)
    np.testing.assert_allclose(state["stats"]["mean"], ref_state["stats"]["mean"], atol=1e-6)
    np.testing.assert_allclose(module.regularization_loss(), l2(params), rtol=1e-5)
    grads = jax.grad(lambda p: jnp.sum(module.apply(p, x) ** 2))(params)
    ref = jax.grad(lambda p: jnp.sum(mlp(p, x) ** 2))(params)
    np.testing.assert_allclose(grads["dense1"]["kernel"], ref["dense1"]["kernel"], atol=1e-4)


@pytest.mark.parametrize("path", FIXTURE_DIRS, ids=lambda p: p.name)
def test_upgrade_relowers_functions_and_keeps_results(path, x, tmp_path):
    from jaxhub._src.cli import main
    assert main(["upgrade", str(path), str(tmp_path / "upgraded")]) == 0
    old, new = jaxhub.load(path), jaxhub.load(tmp_path / "upgraded")
    assert new.manifest.origin["upgraded_from"] == dict(old.manifest.written_by)
    assert new.manifest.written_by["jax"] == jax.__version__
    np.testing.assert_allclose(new(x), old(x), atol=1e-6)
    key = jax.random.key(1)
    np.testing.assert_allclose(new(x, tags="train", rng=key)[0], old(x, tags="train", rng=key)[0],
                               atol=1e-6)
    grad = lambda m: jax.grad(lambda p: jnp.sum(m.apply(p, x) ** 2))(m.params)
    np.testing.assert_allclose(grad(new)["dense2"]["kernel"], grad(old)["dense2"]["kernel"],
                               atol=1e-5)
    np.testing.assert_allclose(new.regularization_loss(), old.regularization_loss(), rtol=1e-6)


def test_fixture_with_split_vjp_differentiates_through_its_halves(x):
    from tests.serialization_test import exported_calls
    module = jaxhub.load(FIXTURES / "mlp-format1-split-vjp")
    spec = module.manifest.function(frozenset(), "default")
    loss = lambda p: jnp.sum(module.apply(p, x) ** 2)
    assert exported_calls(module, jax.grad(loss), module.params) == [spec.vjp.forward,
                                                                      spec.vjp.backward]
    np.testing.assert_allclose(jax.grad(loss)(module.params)["dense1"]["kernel"],
                               jax.grad(lambda p: jnp.sum(mlp(p, x) ** 2))(
                                   module.params)["dense1"]["kernel"], atol=1e-4)
