"""HubLayer (nnx and linen) around converted TF signatures that draw random numbers or
assign variables in inference: keys from the framework's RNG streams, the assigned values
back into the layer's variables, under jit.

Every expected value is what TensorFlow computes for the same SavedModel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from flax import nnx

import jaxhub.linen
import jaxhub.nnx
from jaxhub_tf.from_tf.saved_model import load_saved_model

X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
X2 = np.random.default_rng(1).standard_normal((64, 3)).astype(np.float32)


class _NoisyFeatures(tf.Module):
    """A serving signature with dropout left on, and no train variant to call."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.linspace(-1.0, 1.0, 12).reshape(3, 4).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def features(self, x):
        return {"h": tf.nn.dropout(tf.matmul(x, self.w), 0.5)}


class _CountingFeatures(tf.Module):
    """A serving signature that also accumulates its outputs into variables."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.linspace(-1.0, 1.0, 12).reshape(3, 4).astype(np.float32),
                             name="w")
        self.total = tf.Variable(np.zeros(4, np.float32), name="total")  # trainable: TF's default
        self.calls = tf.Variable(0, name="calls")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def features(self, x):
        h = tf.matmul(x, self.w)
        self.total.assign_add(tf.reduce_sum(h, 0))
        self.calls.assign_add(1)
        return {"h": h, "total": self.total.read_value()}


def _save(model, path):
    tf.saved_model.save(model, str(path), signatures={"features": model.features})
    return path


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    model = _NoisyFeatures()
    module = load_saved_model(_save(model, tmp_path_factory.mktemp("noisy") / "saved"))
    return model, module


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    path = _save(_CountingFeatures(), tmp_path_factory.mktemp("counting") / "saved")
    module = load_saved_model(path)
    names = module.attachments["tf_variable_names"]
    by_tf_name = {name.split(":")[0]: key for key, name in names.items()}
    return path, module, by_tf_name


def _check_dropout_of_tf_features(model, out):
    """Dropout at rate 0.5 of TF's features: each entry is 0 or twice TF's value."""
    features = tf.matmul(X, model.w).numpy()
    kept = np.asarray(out) != 0
    np.testing.assert_allclose(np.asarray(out)[kept], 2 * features[kept], rtol=1e-5)
    assert 0.4 < kept.mean() < 0.6


def _tf_grad_of_sum(model, scale):
    """TF's gradient of sum(matmul(x, w) * scale) with respect to ``w``."""
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.matmul(X, model.w) * scale)
    return tape.gradient(loss, model.w).numpy()


# -- random ops in an inference signature ----------------------------------------------


def test_nnx_layer_draws_a_random_signatures_keys_from_its_stream(noisy):
    model, module = noisy
    layer = jaxhub.nnx.HubLayer(module, trainable=True, signature="features",
                                rngs=nnx.Rngs(dropout=0))

    @nnx.jit
    def call(layer, x):
        return layer(x)

    first, second = call(layer, X), call(layer, X)      # inference mode, still random
    _check_dropout_of_tf_features(model, first)
    _check_dropout_of_tf_features(model, second)
    assert not np.array_equal(first, second)            # the layer's stream advanced
    again = jaxhub.nnx.HubLayer(module, trainable=True, signature="features",
                                rngs=nnx.Rngs(dropout=0))
    np.testing.assert_array_equal(call(again, X), first)  # the seed decides
    key = jax.random.key(5)
    np.testing.assert_array_equal(layer(X, rngs=key),
                                  module(X, signature="features", rng=key))

    # The gradient through the dropped-out features is TF's for the same mask.
    def loss(layer, key):
        return jnp.sum(layer(X, rngs=key))
    grads = nnx.jit(nnx.grad(loss))(layer, key)
    scale = 2.0 * (np.asarray(module(X, signature="features", rng=key)) != 0)
    (w,) = module.params
    np.testing.assert_allclose(grads.params[w][...], _tf_grad_of_sum(model, scale),
                               rtol=1e-5, atol=1e-5)


def test_nnx_layer_without_rngs_for_a_random_signature_says_what_to_pass(noisy):
    _, module = noisy
    layer = jaxhub.nnx.HubLayer(module, signature="features")
    with pytest.raises(ValueError, match="signature 'features' draws random numbers.*rngs="):
        layer(X)


def test_linen_layer_draws_a_random_signatures_key_with_make_rng(noisy):
    model, module = noisy
    layer = jaxhub.linen.HubLayer(module, signature="features")
    variables = layer.init(jax.random.key(0), X)
    call = jax.jit(lambda v, x, key: layer.apply(v, x, rngs={"dropout": key}))
    key = jax.random.key(3)
    out = call(variables, X, key)
    _check_dropout_of_tf_features(model, out)
    np.testing.assert_array_equal(call(variables, X, key), out)
    assert not np.array_equal(call(variables, X, jax.random.key(4)), out)
    with pytest.raises(Exception, match="dropout"):   # linen's own missing-stream error
        layer.apply(variables, X)


# -- a signature that assigns variables ----------------------------------------------------


def test_nnx_layer_writes_what_a_signature_assigns_into_its_variables(counting):
    path, module, by_tf_name = counting
    tf_model = tf.saved_model.load(str(path))
    layer = jaxhub.nnx.HubLayer(module, trainable=True, signature="features",
                                output_key="h")
    total, calls, w = by_tf_name["total"], by_tf_name["calls"], by_tf_name["w"]
    # Assigned params are state, not weights, though TF marks `total` trainable.
    assert isinstance(layer.params[total], jaxhub.nnx.HubState)
    assert isinstance(layer.params[w], nnx.Param)

    @nnx.jit
    def call(layer, x):
        return layer(x)

    for x in (X, X2):
        out = call(layer, x)
        expected = tf_model.signatures["features"](x=tf.constant(x))
        np.testing.assert_allclose(out, expected["h"].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.params[total][...], tf_model.total.numpy(),
                                   rtol=1e-5, atol=1e-5)
        assert int(layer.params[calls][...]) == int(tf_model.calls.numpy())
    np.testing.assert_allclose(layer.module_params()[total], tf_model.total.numpy(),
                               rtol=1e-5, atol=1e-5)

    # The gradient is TF's and reaches the weights only; the assignment still happens.
    grads = nnx.jit(nnx.grad(lambda layer: jnp.sum(layer(X))))(layer)
    np.testing.assert_allclose(grads.params[w][...], _tf_grad_of_sum(tf_model, 1.0),
                               rtol=1e-5, atol=1e-5)
    assert [path for path, _ in nnx.to_flat_state(grads)] == [("params", w)]
    tf_model.signatures["features"](x=tf.constant(X))
    np.testing.assert_allclose(layer.params[total][...], tf_model.total.numpy(),
                               rtol=1e-5, atol=1e-5)


def test_linen_layer_writes_what_a_signature_assigns_into_its_state_collection(counting):
    path, module, by_tf_name = counting
    tf_model = tf.saved_model.load(str(path))
    layer = jaxhub.linen.HubLayer(module, trainable=True, signature="features",
                                  output_key="h", state_collection="counters")
    variables = layer.init(jax.random.key(0), X)
    total, calls, w = by_tf_name["total"], by_tf_name["calls"], by_tf_name["w"]
    assert set(variables["params"]) == {w}
    assert set(variables["counters"]) == {total, calls}
    step = jax.jit(lambda v, x: layer.apply(v, x, mutable=["counters"]))
    for x in (X, X2):
        out, updates = step(variables, x)
        variables = {**variables, **updates}
        expected = tf_model.signatures["features"](x=tf.constant(x))
        np.testing.assert_allclose(out, expected["h"].numpy(), rtol=1e-5, atol=1e-6)
        params = jaxhub.linen.module_params(variables, "counters")
        np.testing.assert_allclose(params[total], tf_model.total.numpy(), rtol=1e-5,
                                   atol=1e-5)
        assert int(params[calls]) == int(tf_model.calls.numpy())
    with pytest.raises(Exception, match="immutable"):   # as linen.BatchNorm in training
        layer.apply(variables, X)
