"""A Flax model (convolution, batch norm, dropout) published as a SavedModel for tf_keras."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras
from flax import nnx

import jaxhub
from jaxhub_tf.to_tf import export_saved_model


class _Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.dropout = nnx.Dropout(0.3, rngs=rngs)
        self.head = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn(self.conv(x)))
        return self.head(self.dropout(x.mean(axis=(1, 2))))


@pytest.fixture(scope="module")
def flax_module():
    return jaxhub.from_flax(_Net(nnx.Rngs(0)), jaxhub.TensorSpec([None, 8, 8, 3], "float32"))


@pytest.fixture(scope="module")
def flax_saved_model(tmp_path_factory, flax_module):
    return export_saved_model(flax_module, tmp_path_factory.mktemp("flax") / "net")


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    images = rng.normal(size=(n, 8, 8, 3)) + labels[:, None, None, None]
    return images.astype(np.float32), labels.astype(np.int32)


def test_flax_train_variant_runs_in_tf(flax_saved_model, flax_module):
    obj = hub.load(str(flax_saved_model))
    x, _ = _images(6)
    np.testing.assert_allclose(obj(x).numpy(), flax_module(x), rtol=1e-5, atol=1e-5)
    rng = tf.random.Generator.from_seed(0)
    key = tf.bitcast(rng.uniform([2], minval=-2 ** 31, maxval=2 ** 31 - 1, dtype=tf.int32),
                     tf.uint32).numpy()
    want, state = flax_module(x, tags="train", rng=key)
    np.testing.assert_allclose(obj(x, training=True).numpy(), want, rtol=1e-5, atol=1e-5)
    variables = {v.name.split(":")[0]: v.numpy() for v in obj.variables}
    for path, value in jaxhub._src.tree.flatten(state):
        np.testing.assert_allclose(variables["/".join(path)], value, rtol=1e-5, atol=1e-6)


def test_flax_model_fine_tunes_in_tf_keras(flax_saved_model, flax_module):
    tf_keras.utils.set_random_seed(0)
    layer = hub.KerasLayer(str(flax_saved_model), trainable=True)
    model = tf_keras.Sequential([tf_keras.Input((8, 8, 3)), layer])
    model.compile(optimizer=tf_keras.optimizers.Adam(0.02),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _images(64)
    assert len(layer.trainable_weights) == sum(p.trainable
                                               for p in flax_module.manifest.params)
    stats = {v.name: v.numpy() for v in layer.non_trainable_weights}
    assert stats  # batch-norm mean and var
    loss_before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=6, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.9 * loss_before
    for v in layer.non_trainable_weights:
        assert not np.allclose(v.numpy(), stats[v.name]), v.name
    # The fine-tuned variables give, in jaxhub, what TF computes.
    tuned = jaxhub._src.tree.unflatten(
        (tuple(v.name.split(":")[0].split("/")), v.numpy()) for v in layer.weights)
    np.testing.assert_allclose(model.predict(x[:4], verbose=0),
                               flax_module.apply(jax.tree.map(np.asarray, tuned), x[:4]),
                               rtol=1e-4, atol=1e-5)
