"""jaxhub.linen.HubLayer: a module as a flax.linen layer, checked against the publisher's code."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx

import jaxhub
from jaxhub._src import tree
from jaxhub.linen import HubLayer, module_params
from tests.conftest import double, mlp, mlp_train


class _Probe(linen.Module):
    """Draws the key a top-level layer draws first from its ``dropout`` stream."""

    @linen.compact
    def __call__(self):
        return self.make_rng("dropout")


def _first_dropout_key(key):
    return _Probe().apply({}, rngs={"dropout": key})


def test_inference_matches_the_publishers_function(mlp_module, mlp_dir, x):
    for layer in (HubLayer(mlp_module), HubLayer(str(mlp_dir), trainable=True)):
        variables = layer.init(jax.random.key(0), x)
        np.testing.assert_allclose(layer.apply(variables, x), mlp(mlp_module.params, x),
                                   atol=1e-6)


def test_collections_hold_the_modules_params(mlp_module, x):
    variables = HubLayer(mlp_module, trainable=True).init(jax.random.key(0), x)
    trainable = {p.path for p in mlp_module.manifest.params if p.trainable}
    assert {p for p, _ in tree.flatten(variables["params"])} == trainable
    np.testing.assert_array_equal(variables["batch_stats"]["stats"]["mean"],
                                  mlp_module.params["stats"]["mean"])
    frozen = HubLayer(mlp_module).init(jax.random.key(0), x)
    assert set(frozen) == {"batch_stats"}
    assert len(tree.flatten(frozen["batch_stats"])) == len(mlp_module.manifest.params)


def test_train_runs_the_train_variant_and_updates_batch_stats(mlp_module, x):
    layer = HubLayer(mlp_module, trainable=True)
    variables = layer.init(jax.random.key(0), x)
    key = jax.random.key(3)
    out, updates = layer.apply(variables, x, train=True, rngs={"dropout": key},
                               mutable=["batch_stats"])
    ref_out, ref_state = mlp_train(mlp_module.params, x, _first_dropout_key(key))
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["stats"]["mean"],
                               ref_state["stats"]["mean"], atol=1e-6)


def test_train_without_mutable_statistics_fails(mlp_module, x):
    layer = HubLayer(mlp_module, trainable=True)
    variables = layer.init(jax.random.key(0), x)
    with pytest.raises(Exception, match="batch_stats"):
        layer.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)})


def test_frozen_layer_runs_inference_when_training(mlp_module, x):
    layer = HubLayer(mlp_module)
    variables = layer.init(jax.random.key(0), x)
    out = layer.apply(variables, x, train=True)
    np.testing.assert_allclose(out, mlp(mlp_module.params, x), atol=1e-6)


def test_output_key_picks_one_output(mlp_module, x):
    layer = HubLayer(mlp_module, signature="double", output_key="doubled")
    variables = layer.init(jax.random.key(0), {"a": x})
    np.testing.assert_allclose(layer.apply(variables, {"a": x}),
                               double(mlp_module.params, {"a": x})["doubled"], atol=1e-6)


class _NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(6, 8, rngs=rngs)
        self.norm = nnx.BatchNorm(8, rngs=rngs)

    def __call__(self, x):
        return self.norm(self.dense(x))


def test_params_and_statistics_of_one_submodule_share_a_name(x):
    """norm/scale is trained, norm/mean is a statistic: both collections hold "norm"."""
    model = _NnxNet(nnx.Rngs(0))
    module = jaxhub.from_flax(model, jaxhub.TensorSpec([None, 6], "float32"))
    inputs = x[:, :6]
    layer = HubLayer(module, trainable=True)
    variables = layer.init(jax.random.key(0), inputs)
    assert set(variables["params"]["norm"]) == {"scale", "bias"}
    assert set(variables["batch_stats"]["norm"]) == {"mean", "var"}
    _, updates = layer.apply(variables, inputs, train=True, mutable=["batch_stats"])
    model.train()
    model(inputs)
    np.testing.assert_allclose(updates["batch_stats"]["norm"]["mean"], model.norm.mean[...],
                               atol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["norm"]["var"], model.norm.var[...],
                               atol=1e-6)


def test_fine_tuning_under_jit_matches_the_publishers_function(mlp_module, x):
    layer = HubLayer(mlp_module, trainable=True)
    variables = layer.init(jax.random.key(0), x)
    y = jnp.cos(jnp.arange(x.shape[0] * 10, dtype=jnp.float32)).reshape(x.shape[0], 10)
    tx = optax.sgd(0.1)

    @jax.jit
    def step(params, stats, opt_state, key):
        def loss(params):
            out, updates = layer.apply({"params": params, "batch_stats": stats}, x,
                                       train=True, rngs={"dropout": key},
                                       mutable=["batch_stats"])
            return jnp.mean((out - y) ** 2), updates["batch_stats"]
        (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), stats, opt_state

    params, stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)
    ref = mlp_module.params
    for i in range(3):
        key = jax.random.key(i)
        params, stats, opt_state = step(params, stats, opt_state, key)

        def ref_loss(p, k=_first_dropout_key(key), ref=ref):
            out, state = mlp_train(jaxhub.merge_params(ref, p), x, k)
            return jnp.mean((out - y) ** 2), state
        trained = {k: v for k, v in ref.items() if k != "stats"}
        (_, state), grads = jax.value_and_grad(ref_loss, has_aux=True)(trained)
        ref = jaxhub.merge_params(
            jaxhub.merge_params(ref, jax.tree.map(lambda p, g: p - 0.1 * g, trained, grads)),
            state)
    tuned = dict(tree.flatten(module_params({"params": params, "batch_stats": stats})))
    for path, value in tree.flatten(ref):
        np.testing.assert_allclose(tuned[path], value, atol=1e-5, err_msg=str(path))


def test_bound_layer_gives_its_params_for_export(mlp_module, x, tmp_path):
    class Model(linen.Module):
        def setup(self):
            self.hub = HubLayer(mlp_module, trainable=True)

        def __call__(self, x):
            return self.hub(x)

    model = Model()
    variables = model.init(jax.random.key(0), x)
    variables = jax.tree.map(lambda v: v * 1.5, variables)
    params = model.bind(variables).hub.module_params()
    exported = jaxhub.load(mlp_module.export(tmp_path / "tuned", params))
    np.testing.assert_allclose(exported(x), model.apply(variables, x), atol=1e-6)
    np.testing.assert_allclose(exported(x), mlp(jax.tree.map(lambda v: v * 1.5,
                                                             mlp_module.params), x), atol=1e-5)
