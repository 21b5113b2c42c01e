"""Flax models become modules: parameters trainable, statistics updated, dropout keyed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx

import jaxhub


class NnxNet(nnx.Module):

    def __init__(self, rngs: nnx.Rngs):
        self.dense = nnx.Linear(6, 8, rngs=rngs)
        self.norm = nnx.BatchNorm(8, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.heads = nnx.List([nnx.Linear(8, 3, rngs=rngs) for _ in range(2)])

    def __call__(self, x):
        h = self.drop(self.norm(self.dense(x)))
        return self.heads[0](h) + self.heads[1](h)


class LinenNet(linen.Module):

    @linen.compact
    def __call__(self, x, train: bool):
        x = linen.Dense(8)(x)
        x = linen.BatchNorm(use_running_average=not train)(x)
        x = linen.Dropout(0.5, deterministic=not train)(x)
        return linen.Dense(3)(x)


SPEC = jaxhub.TensorSpec([None, 6], "float32")


@pytest.fixture
def x():
    return jax.random.normal(jax.random.key(0), (5, 6))


class TestNnx:

    def test_inference_matches_the_model_in_eval_mode(self, x, tmp_path):
        model = NnxNet(nnx.Rngs(0, dropout=1))
        module = jaxhub.load(jaxhub.from_flax(model, SPEC).export(tmp_path / "m"))
        model.eval()
        np.testing.assert_allclose(module(x), model(x), atol=1e-5)

    def test_params_trainable_statistics_not(self, x):
        module = jaxhub.from_flax(NnxNet(nnx.Rngs(0, dropout=1)), SPEC)
        mask = module.trainable_mask
        assert mask["dense"]["kernel"] and mask["heads"]["1"]["bias"]
        assert not mask["norm"]["mean"] and not mask["norm"]["var"]

    def test_train_variant_matches_the_model_in_train_mode(self, x):
        model = NnxNet(nnx.Rngs(0, dropout=1))
        module = jaxhub.from_flax(model, SPEC)
        key = jax.random.key(5)
        out, state = module(x, tags="train", rng=key)
        model.train()
        nnx.reseed(model, dropout=jax.random.fold_in(key, 0))
        np.testing.assert_allclose(out, model(x), atol=1e-5)
        np.testing.assert_allclose(state["norm"]["mean"], model.norm.mean[...], atol=1e-6)
        again, _ = module(x, tags="train", rng=key)
        other, _ = module(x, tags="train", rng=jax.random.key(6))
        np.testing.assert_array_equal(out, again)
        assert np.abs(np.asarray(out) - np.asarray(other)).max() > 1e-3

    def test_gradient_matches_the_model(self, x):
        model = NnxNet(nnx.Rngs(0, dropout=1))
        module = jaxhub.from_flax(model, SPEC)
        grads = jax.grad(lambda p: jnp.sum(module.apply(p, x) ** 2))(module.params)
        model.eval()
        ref = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
        np.testing.assert_allclose(grads["dense"]["kernel"], ref["dense"]["kernel"][...],
                                   atol=1e-4)
        np.testing.assert_array_equal(grads["norm"]["mean"], 0.0)


class TestLinen:

    def make(self, x):
        model = LinenNet()
        variables = model.init(jax.random.key(0), x, train=False)
        module = jaxhub.from_flax(model, SPEC, variables=variables, train_kwargs={"train": True},
                                  eval_kwargs={"train": False})
        return model, variables, module

    def test_inference_and_gradient_match(self, x):
        model, variables, module = self.make(x)
        np.testing.assert_allclose(module(x), model.apply(variables, x, train=False), atol=1e-5)
        grads = jax.grad(lambda p: jnp.sum(module.apply(p, x) ** 2))(module.params)
        ref = jax.grad(lambda v: jnp.sum(model.apply(v, x, train=False) ** 2))(variables)
        np.testing.assert_allclose(grads["params"]["Dense_0"]["kernel"],
                                   ref["params"]["Dense_0"]["kernel"], atol=1e-4)

    def test_train_variant_updates_batch_stats(self, x):
        model, variables, module = self.make(x)
        key = jax.random.key(1)
        out, state = module(x, tags="train", rng=key)
        ref, updates = model.apply(variables, x, train=True, mutable=["batch_stats"],
                                   rngs={"dropout": jax.random.fold_in(key, 0)})
        np.testing.assert_allclose(out, ref, atol=1e-5)
        np.testing.assert_allclose(state["batch_stats"]["BatchNorm_0"]["mean"],
                                   updates["batch_stats"]["BatchNorm_0"]["mean"], atol=1e-6)
        assert not module.trainable_mask["batch_stats"]["BatchNorm_0"]["var"]

    def test_variables_are_required(self):
        with pytest.raises(ValueError, match="variables"):
            jaxhub.from_flax(LinenNet(), SPEC)
