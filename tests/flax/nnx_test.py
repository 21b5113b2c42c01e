"""jaxhub.nnx.HubLayer: a module as a flax.nnx layer, checked against the publisher's code."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxhub
from jaxhub._src import tree
from jaxhub.nnx import HubLayer, HubState
from tests.conftest import double, l2, mlp, mlp_train, not_stats


class Classifier(nnx.Module):
    """A consumer's model: the module as feature extractor, a new head on top."""

    def __init__(self, module, trainable: bool, rngs: nnx.Rngs):
        self.features = HubLayer(module, trainable=trainable, rngs=rngs)
        self.head = nnx.Linear(10, 1, rngs=rngs)

    def __call__(self, x, key=None):
        return self.head(self.features(x, rngs=key))[:, 0]


def _param_paths(layer) -> set[tuple[str, ...]]:
    return {tuple(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(layer, nnx.Param))}


def test_inference_matches_the_publishers_function(mlp_module, mlp_dir, x):
    for layer in (HubLayer(mlp_module), HubLayer(str(mlp_dir), trainable=True)):
        np.testing.assert_allclose(layer(x), mlp(mlp_module.params, x), atol=1e-6)


def test_trainable_layer_has_params_for_the_trainable_leaves_only(mlp_module):
    layer = HubLayer(mlp_module, trainable=True)
    expected = {("params", *p.path) for p in mlp_module.manifest.params if p.trainable}
    assert _param_paths(layer) == expected
    stats = nnx.state(layer, HubState)
    np.testing.assert_array_equal(stats["params"]["stats"]["mean"][...],
                                  mlp_module.params["stats"]["mean"])


def test_frozen_layer_has_no_params(mlp_module):
    layer = HubLayer(mlp_module)
    assert _param_paths(layer) == set()
    assert len(nnx.to_flat_state(nnx.state(layer, HubState))) == len(mlp_module.manifest.params)


def test_train_mode_runs_the_train_variant_and_updates_statistics(mlp_module, x):
    layer = HubLayer(mlp_module, trainable=True)
    layer.train()
    key = jax.random.key(7)
    out = layer(x, rngs=key)
    ref_out, ref_state = mlp_train(mlp_module.params, x, key)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(layer.params["stats"]["mean"][...], ref_state["stats"]["mean"],
                               atol=1e-6)
    layer.eval()
    params = jaxhub.merge_params(mlp_module.params, ref_state)
    np.testing.assert_allclose(layer(x), mlp(params, x), atol=1e-5)


def test_dropout_keys_come_from_the_layers_stream(mlp_module, x):
    layer = HubLayer(mlp_module, trainable=True, rngs=nnx.Rngs(dropout=3), deterministic=False)
    first, second = layer(x), layer(x)
    assert np.abs(np.asarray(first) - np.asarray(second)).max() > 1e-3
    again = HubLayer(mlp_module, trainable=True, rngs=nnx.Rngs(dropout=3),
                     deterministic=False)
    np.testing.assert_array_equal(again(x), first)


def test_rngs_given_to_a_call_use_the_layers_stream_name(mlp_module, x):
    layer = HubLayer(mlp_module, trainable=True, rng_collection="noise", deterministic=False)
    out = layer(x, rngs=nnx.Rngs(noise=4, dropout=5))
    ref, _ = mlp_train(mlp_module.params, x, nnx.Rngs(noise=4).noise())
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_train_mode_without_rngs_says_what_to_pass(mlp_module, x):
    layer = HubLayer(mlp_module, trainable=True, deterministic=False)
    with pytest.raises(ValueError, match="rngs="):
        layer(x)


def test_view_switches_modes(mlp_module, x):
    layer = HubLayer(mlp_module, trainable=True, rngs=nnx.Rngs(dropout=0))
    training = nnx.view(layer, deterministic=False)
    assert np.abs(np.asarray(training(x)) - np.asarray(layer(x))).max() > 1e-3


def test_frozen_layer_runs_inference_even_in_train_mode(mlp_module, x):
    layer = HubLayer(mlp_module, rngs=nnx.Rngs(dropout=0))
    layer.train()
    np.testing.assert_allclose(layer(x), mlp(mlp_module.params, x), atol=1e-6)
    np.testing.assert_array_equal(layer.params["stats"]["mean"][...],
                                  mlp_module.params["stats"]["mean"])


def test_module_without_train_variant_runs_inference_in_train_mode(x):
    params = {"w": jnp.full((50, 3), 0.1)}
    module = jaxhub.create_module(
        params, signatures={"default": (lambda p, v: v @ p["w"],
                                        jaxhub.TensorSpec([None, 50], "float32"))})
    layer = HubLayer(module, trainable=True, deterministic=False)
    np.testing.assert_allclose(layer(x), x @ params["w"], atol=1e-6)


def test_output_key_picks_one_output(mlp_module, x):
    layer = HubLayer(mlp_module, signature="double", output_key="total")
    np.testing.assert_allclose(layer({"a": x}), double(mlp_module.params, {"a": x})["total"],
                               atol=1e-5)
    with pytest.raises(jaxhub.SignatureError, match="no output 'nope'"):
        HubLayer(mlp_module, signature="double", output_key="nope")
    with pytest.raises(jaxhub.SignatureError, match="no signature"):
        HubLayer(mlp_module, signature="nope")


def test_regularization_loss_is_the_modules_and_differentiable(mlp_module):
    layer = HubLayer(mlp_module, trainable=True)
    np.testing.assert_allclose(layer.regularization_loss(), l2(mlp_module.params), rtol=1e-5)
    grads = nnx.grad(lambda m: m.regularization_loss())(layer)
    ref = jax.grad(l2)(mlp_module.params)
    np.testing.assert_allclose(grads["params"]["dense1"]["kernel"][...],
                               ref["dense1"]["kernel"], rtol=1e-5)


def _reference_fine_tune(params, x, y, head, keys, tx):
    """The same fine-tuning written with the publisher's functions and plain optax."""
    mask = jax.tree_util.tree_map_with_path(
        lambda path, _: not_stats(tuple(k.key for k in path), None), params)
    trainable = {"hub": params, "head": head}
    opt_state = tx.init(trainable)

    def loss(t, key, stats):
        hub = jaxhub.merge_params(t["hub"], stats)
        h, state = mlp_train(hub, x, key)
        out = (h @ t["head"]["kernel"] + t["head"]["bias"])[:, 0]
        return jnp.mean((out - y) ** 2), state

    stats = {"stats": params["stats"]}
    for key in keys:
        (_, state), grads = jax.value_and_grad(loss, has_aux=True)(trainable, key, stats)
        # Only the module's trainable leaves step: zero the rest, as nnx.Param does.
        grads["hub"] = jax.tree.map(lambda g, m: g if m else jnp.zeros_like(g),
                                    grads["hub"], mask)
        updates, opt_state = tx.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        stats = state
    return jaxhub.merge_params(trainable["hub"], stats), trainable["head"]


def test_fine_tuning_under_jit_matches_plain_optax(mlp_module, x):
    model = Classifier(mlp_module, trainable=True, rngs=nnx.Rngs(0))
    head = {"kernel": model.head.kernel[...], "bias": model.head.bias[...]}
    y = jnp.sin(jnp.arange(x.shape[0], dtype=jnp.float32))
    tx = optax.adam(1e-2)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    model.train()

    @nnx.jit
    def step(model, optimizer, key):
        def loss(model):
            return jnp.mean((model(x, key) - y) ** 2)
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    keys = [jax.random.key(i) for i in range(3)]
    losses = [float(step(model, optimizer, key)) for key in keys]
    assert losses[-1] < losses[0]
    ref_params, ref_head = _reference_fine_tune(mlp_module.params, x, y, head, keys, tx)
    tuned = dict(tree.flatten(model.features.module_params()))
    for path, value in tree.flatten(ref_params):
        np.testing.assert_allclose(tuned[path], value, atol=1e-5, err_msg=str(path))
    np.testing.assert_allclose(model.head.kernel[...], ref_head["kernel"], atol=1e-5)


def test_fine_tuned_params_export_as_a_module(mlp_module, x, tmp_path):
    model = Classifier(mlp_module, trainable=True, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.5), wrt=nnx.Param)
    grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
    optimizer.update(model, grads)
    model.eval()
    exported = jaxhub.load(mlp_module.export(tmp_path / "tuned",
                                             model.features.module_params()))
    np.testing.assert_allclose(exported(x), model.features(x), atol=1e-6)
    assert np.abs(np.asarray(exported(x)) - np.asarray(mlp_module(x))).max() > 1e-3
