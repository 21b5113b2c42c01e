"""The benchmark's native Flax twins compute what the converted Keras models compute.

``benchmarks.native`` rewrites the benchmark architectures in Flax nnx and copies the
Keras weights into them; the benchmark's "converted vs native" rows are only meaningful
if both run the same function. Small variants (a ResNet with one block per stage, a
one-layer encoder) are exported by Keras, converted by jaxhub and compared with their
twins, outputs and gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub
from benchmarks import models
from benchmarks import native

keras = pytest.importorskip("keras")


def _converted_and_native(keras_model, build_native, tmp_path):
    """``(converted apply, params, native apply, params)`` of one Keras model."""
    keras_model.export(str(tmp_path / "saved_model"), format="tf_saved_model",
                       verbose=False)
    module = jaxhub.load(tmp_path / "saved_model", cache_dir=tmp_path / "cache")
    apply, params, _ = native.functional(build_native(native.keras_weights(keras_model)))

    def converted(p, x):
        return module.apply(p, x, signature="serving_default")

    return converted, module.params, apply, params


def _assert_same_function(converted, converted_params, apply, params, x):
    want = np.asarray(jax.jit(converted)(converted_params, x))
    got = np.asarray(jax.jit(apply)(params, x))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # The input gradient runs through every layer of both, backwards.
    cotangent = np.random.default_rng(3).standard_normal(want.shape).astype(np.float32)
    grads = [jax.jit(jax.grad(lambda x, f=f, p=p: jnp.sum(f(p, x) * cotangent)))(x)
             for f, p in ((converted, converted_params), (apply, params))]
    scale = np.abs(np.asarray(grads[0])).max()
    np.testing.assert_allclose(np.asarray(grads[1]), np.asarray(grads[0]), rtol=1e-3,
                               atol=1e-4 * scale)


def test_native_resnet_matches_the_converted_keras_resnet(tmp_path):
    keras.utils.set_random_seed(0)
    model = models.keras_resnet(32, blocks=(2, 1, 1, 1), filters=(8, 16, 16, 32),
                                classes=10)
    # Random batch-norm statistics, so that copying them wrongly shows.
    for variable in model.weights:
        if variable.path.endswith(("moving_mean", "moving_variance", "gamma", "beta")):
            values = np.random.default_rng(len(variable.path)).uniform(
                0.5, 1.5, variable.shape)
            variable.assign(values.astype(np.float32))
    converted = _converted_and_native(
        model, lambda w: native.resnet(w, blocks=(2, 1, 1, 1), filters=(8, 16, 16, 32)),
        tmp_path)
    x = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
    _assert_same_function(*converted, x)


def test_native_transformer_matches_the_converted_keras_encoder(tmp_path):
    keras.utils.set_random_seed(0)
    model = models.transformer_encoder(layers=1, width=32, heads=2, length=8)
    x = np.random.default_rng(1).standard_normal((2, 8, 32)).astype(np.float32)
    _assert_same_function(*_converted_and_native(model, native.transformer, tmp_path), x)


@pytest.mark.parametrize("name", ["mlp", "text_embedding"])
def test_native_small_models_match_the_converted_ones(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = models.MODELS[name].build(0)
    converted, converted_params, apply, params = _converted_and_native(
        model, native.BUILDERS[name], tmp_path)
    x = models.example_input(name, 2, 0)
    np.testing.assert_allclose(np.asarray(jax.jit(apply)(params, x)),
                               np.asarray(jax.jit(converted)(converted_params, x)),
                               rtol=1e-4, atol=1e-5)


def test_native_twin_names_the_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=native.WEIGHTS):
        native.load("resnet50", tmp_path)
