"""Round trips through the TF converters: TF -> jaxhub -> TF and jaxhub -> TF -> jaxhub."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from jaxhub_tf.from_tf.saved_model import load_saved_model
from jaxhub_tf.to_tf import export_saved_model
import jaxhub
from jaxhub._src import tree
from tests.conftest import mlp, mlp_params
from tests.converters.to_tf.conftest import bn_inputs


@pytest.fixture(scope="module")
def keras_saved_model(tmp_path_factory):
    """A tf_keras model saved the TF Hub way: ``__call__``, variables, batch norm."""
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.Input((8,)), tf_keras.layers.Dense(16, activation="relu"),
        tf_keras.layers.BatchNormalization(), tf_keras.layers.Dropout(0.5),
        tf_keras.layers.Dense(3)])
    bn = model.layers[1]
    bn.moving_mean.assign(np.linspace(-0.5, 0.5, 16).astype(np.float32))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 16).astype(np.float32))
    path = tmp_path_factory.mktemp("keras") / "saved_model"
    tf.saved_model.save(model, str(path))
    return path


def _noisy(params, x):
    """Inference: the MLP's output, and the same again where training adds noise."""
    y = mlp(params, x)
    return {"y": y, "noisy": y}


def _noisy_train(params, x, rng):
    """Training: the random draw feeds only ``noisy``, so the gradient of ``y`` does not
    depend on the key; batch statistics come back as state."""
    y = mlp(params, x)
    mean = 0.9 * params["stats"]["mean"] + 0.1 * jnp.mean(jnp.tanh(
        x @ params["dense1"]["kernel"] + params["dense1"]["bias"]), 0)
    noisy = y + 0.1 * jax.random.normal(rng, y.shape)
    return {"y": y, "noisy": noisy}, {"stats": {"mean": mean}}


@pytest.fixture(scope="module")
def noisy_module():
    """A train variant that takes an RNG key and returns state, as the MLP's does."""
    params = {k: v for k, v in mlp_params().items() if k != "scale"}
    return jaxhub.create_module(
        params, signatures={"default": (_noisy, jaxhub.TensorSpec([None, 50], "float32"))},
        variants={"train": _noisy_train}, trainable=lambda path, _: path[0] != "stats")


def _float_params(module: jaxhub.Module) -> dict:
    """The module's float params (a converted SavedModel also has its integer RNG state)."""
    return tree.unflatten((path, v) for path, v in tree.flatten(module.params)
                              if jnp.issubdtype(v.dtype, jnp.floating))


def _x(batch: int = 5) -> np.ndarray:
    return np.random.default_rng(2).normal(size=(batch, 8)).astype(np.float32)


def _grads_by_name(obj, x) -> dict[str, np.ndarray]:
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(obj(x, training=False) ** 2)
    grads = tape.gradient(loss, obj.trainable_variables)
    return {v.name: g.numpy() for v, g in zip(obj.trainable_variables, grads)}


def test_tf_to_jaxhub_to_tf_keeps_outputs_gradients_and_state(keras_saved_model, tmp_path):
    module = load_saved_model(keras_saved_model)
    path = export_saved_model(module, tmp_path / "again")
    original, again = tf.saved_model.load(str(keras_saved_model)), tf.saved_model.load(str(path))
    x = _x()
    np.testing.assert_allclose(again(x).numpy(), original(x).numpy(), rtol=1e-5, atol=1e-6)
    serve = again.signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    (out,) = serve.structured_outputs
    np.testing.assert_allclose(serve(**{name: x})[out].numpy(),
                               original.signatures["serving_default"](**{name: x})[out],
                               rtol=1e-5, atol=1e-6)
    want = _grads_by_name(original, x)
    got = _grads_by_name(again, x)
    assert set(got) == set(want)
    for key, g in got.items():
        np.testing.assert_allclose(g, want[key], rtol=1e-4, atol=1e-5)
    # Training updates the batch-norm statistics the same way (dropout comes after them).
    original(x, training=True)
    again(x, training=True)
    stats = {v.name: v.numpy() for v in original.variables if "moving" in v.name}
    for v in again.variables:
        if v.name in stats:
            np.testing.assert_allclose(v.numpy(), stats[v.name], rtol=1e-5, atol=1e-6)


def test_jaxhub_to_tf_to_jaxhub_keeps_outputs_and_gradients(mlp_saved_model, mlp_module):
    module = load_saved_model(mlp_saved_model)
    x = np.random.default_rng(2).normal(size=(4, 50)).astype(np.float32)
    for name in mlp_module.signatures:
        inputs = {k: x for k in mlp_module.signatures[name].inputs}
        got = module(inputs, signature=name, as_dict=True)
        want = mlp_module(inputs, signature=name, as_dict=True)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
    # The SavedModel's RNG state (an integer variable) comes back as a param too.
    floats = _float_params(module)
    grads = jax.grad(lambda p: jnp.sum(
        module.apply(jaxhub.merge_params(module.params, p), x) ** 2))(floats)
    want = jax.grad(lambda p: jnp.sum(mlp_module.apply(p, x) ** 2))(mlp_module.params)
    assert tree.flatten(jax.tree.map(np.shape, grads)) == tree.flatten(
        jax.tree.map(np.shape, want))
    want = dict(tree.flatten(want))
    for path, g in tree.flatten(grads):
        np.testing.assert_allclose(g, want[path], rtol=1e-5, atol=1e-6)


def test_jaxhub_to_tf_to_jaxhub_with_dict_inputs_and_several_outputs(bn_saved_model,
                                                                      bn_module):
    module = load_saved_model(bn_saved_model)
    inputs = bn_inputs(6)
    got = module(inputs, as_dict=True)
    want = bn_module(inputs, as_dict=True)
    assert set(got) == set(want) == {"embedding", "logits"}
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)


def test_jaxhub_to_tf_to_jaxhub_train_variant_keeps_gradients_and_state(noisy_module,
                                                                         tmp_path):
    """The train variant takes an RNG key, which has no gradient: TF saves its gradient
    function without that output, and the converted gradient still lines up."""
    module = load_saved_model(export_saved_model(noisy_module, tmp_path / "noisy"))
    x = np.random.default_rng(3).normal(size=(4, 50)).astype(np.float32)
    key = jax.random.key(7)

    def loss(apply, params):
        outputs, state = apply(params, x, tags="train", rng=key, as_dict=True)
        return jnp.sum(outputs["y"] ** 2), state

    grads, state = jax.grad(loss, argnums=1, has_aux=True)(
        lambda p, *a, **k: module.apply(jaxhub.merge_params(module.params, p), *a, **k),
        _float_params(module))
    want_grads, want_state = jax.grad(loss, argnums=1, has_aux=True)(
        noisy_module.apply, noisy_module.params)
    want = dict(tree.flatten(want_grads))
    assert {path for path, _ in tree.flatten(grads)} == set(want)
    for path, g in tree.flatten(grads):
        np.testing.assert_allclose(g, want[path], rtol=1e-5, atol=1e-6, err_msg=str(path))
    np.testing.assert_allclose(state["stats"]["mean"], want_state["stats"]["mean"],
                               rtol=1e-5, atol=1e-6)


def test_unrelated_sizes_stay_unrelated_in_tf_and_back(tmp_path):
    """Queries and keys of different lengths: ``batch`` and ``n_q`` in jaxhub, two unknown
    sizes in TF. Converted back, the embedded function's output sizes (``-1`` in TF) are
    read from its StableHLO, so the sizes stay unrelated: any lengths, same values and
    gradients."""
    def attend(params, xs):
        scores = jax.nn.softmax(xs["q"] @ params["w"] @ xs["k"].T)
        return {"out": scores @ xs["k"], "scores": scores}

    spec = jaxhub.TensorSpec([None, 4])
    module = jaxhub.create_module({"w": jnp.eye(4) * 0.5},
                                  {"default": (attend, {"q": spec, "k": spec})})
    assert {k: s.shape for k, s in module.signatures["default"].inputs.items()} == {
        "k": ("batch", 4), "q": ("n_q", 4)}
    export_saved_model(module, tmp_path / "tf")
    serve = tf.saved_model.load(str(tmp_path / "tf")).signatures["serving_default"]
    back = load_saved_model(tmp_path / "tf")
    signature = back.signatures["serving_default"]
    assert {k: s.shape for k, s in signature.inputs.items()} == {
        "k": ("batch", 4), "q": ("n_q", 4)}
    assert signature.outputs["scores"].shape == ("n_q", "batch")
    floats = _float_params(back)

    def loss(apply, params, inputs):
        out = apply(params, inputs)
        return jnp.sum(out["out"] ** 2) + jnp.sum(out["scores"] * out["scores"][:, :1])

    back_apply = jax.jit(lambda p, xs: back.apply(
        jaxhub.merge_params(back.params, p), xs, signature="serving_default", as_dict=True))
    module_apply = functools.partial(module.apply, as_dict=True)
    rng = np.random.default_rng(0)
    for queries, keys in ((2, 5), (6, 1)):
        inputs = {"q": rng.normal(size=(queries, 4)).astype(np.float32),
                  "k": rng.normal(size=(keys, 4)).astype(np.float32)}
        want = serve(**{k: tf.constant(v) for k, v in inputs.items()})
        got = back_apply(floats, inputs)
        for k in ("out", "scores"):
            np.testing.assert_allclose(got[k], want[k].numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got[k], module(inputs, as_dict=True)[k], rtol=1e-5,
                                       atol=1e-6)
        grads = jax.grad(loss, argnums=1)(back_apply, floats, inputs)
        want_grads = jax.grad(loss, argnums=1)(module_apply, module.params, inputs)
        np.testing.assert_allclose(grads["w"], want_grads["w"], rtol=1e-5, atol=1e-6)
