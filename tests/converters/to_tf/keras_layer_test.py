"""The exported SavedModel inside tf_keras models, through ``hub.KerasLayer``."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

from tests.converters.to_tf.conftest import bn_inputs


def _regression_data(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 50)).astype(np.float32)
    teacher = rng.normal(size=(50, 10)).astype(np.float32) / np.sqrt(50)
    return x, np.tanh(x @ teacher)


def _mlp_model(path, trainable: bool) -> tf_keras.Model:
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((50,)),
                                 hub.KerasLayer(str(path), trainable=trainable)])
    model.compile(optimizer=tf_keras.optimizers.SGD(0.05), loss="mse")
    return model


def _values(variables) -> dict[str, np.ndarray]:
    return {v.name: v.numpy().copy() for v in variables}


def test_predict_matches_jaxhub(mlp_saved_model, mlp_module):
    model = _mlp_model(mlp_saved_model, trainable=False)
    x, _ = _regression_data(9)
    np.testing.assert_allclose(model.predict(x, batch_size=4, verbose=0), mlp_module(x),
                               rtol=1e-5, atol=1e-6)


def test_fine_tuning_changes_variables_and_lowers_the_loss(mlp_saved_model, mlp_module):
    model = _mlp_model(mlp_saved_model, trainable=True)
    layer = model.layers[-1]
    x, y = _regression_data()
    n_trainable = sum(p.trainable for p in mlp_module.manifest.params)
    assert len(layer.trainable_weights) == n_trainable
    assert len(layer.non_trainable_weights) == len(mlp_module.manifest.params) - n_trainable
    np.testing.assert_allclose(sum(model.losses).numpy(), mlp_module.regularization_loss(),
                               rtol=1e-6)
    before = _values(layer.weights)
    loss_before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.9 * loss_before
    after = _values(layer.weights)
    for v in layer.trainable_weights:
        if "scale" not in v.name:  # the default signature does not use "scale"
            assert not np.allclose(after[v.name], before[v.name]), v.name
    # Training ran the train variant, which updated the (non-trainable) statistics.
    (stats,) = [v for v in layer.non_trainable_weights if "stats" in v.name]
    assert not np.allclose(after[stats.name], before[stats.name])


def test_frozen_layer_has_no_losses_and_does_not_change(mlp_saved_model):
    model = _mlp_model(mlp_saved_model, trainable=False)
    layer = model.layers[-1]
    x, y = _regression_data(32)
    assert layer.trainable_weights == []
    assert float(sum(model.losses)) == 0.0  # KerasLayer counts the loss only if trainable
    before = _values(layer.weights)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for name, value in _values(layer.weights).items():
        np.testing.assert_array_equal(value, before[name])


def test_dict_inputs_with_batch_norm_fine_tune(bn_saved_model, bn_module):
    tf_keras.utils.set_random_seed(0)
    inputs = {"x": tf_keras.Input((8,), name="x"), "gain": tf_keras.Input((1,), name="gain")}
    layer = hub.KerasLayer(str(bn_saved_model), trainable=True, output_key="logits")
    model = tf_keras.Model(inputs, layer(inputs))
    model.compile(optimizer=tf_keras.optimizers.Adam(0.01),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = bn_inputs(96)
    labels = (data["x"][:, 0] > 0).astype(np.int32) + (data["x"][:, 1] > 0.5)
    np.testing.assert_allclose(model.predict(data, verbose=0),
                               bn_module(data, as_dict=True)["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sum(model.losses).numpy(), bn_module.regularization_loss(),
                               rtol=1e-6)
    mean_before = _values(layer.non_trainable_weights)
    loss_before = model.evaluate(data, labels, verbose=0)
    model.fit(data, labels, batch_size=32, epochs=10, verbose=0)
    assert model.evaluate(data, labels, verbose=0) < 0.9 * loss_before
    for name, value in _values(layer.non_trainable_weights).items():
        assert not np.allclose(value, mean_before[name]), name


def test_serving_signature_as_a_layer(mlp_saved_model, mlp_module):
    layer = hub.KerasLayer(str(mlp_saved_model), signature="double",
                           signature_outputs_as_dict=True)
    x, _ = _regression_data(5)
    got = layer({"a": tf.constant(x)})
    want = mlp_module({"a": x}, signature="double", as_dict=True)
    for key in ("doubled", "total"):
        np.testing.assert_allclose(got[key].numpy(), want[key], rtol=1e-6, atol=1e-6)


def test_consumer_saves_reloads_and_keeps_training(tmp_path, mlp_saved_model):
    model = _mlp_model(mlp_saved_model, trainable=True)
    x, y = _regression_data(32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(str(tmp_path / "consumer"))
    again = tf_keras.models.load_model(str(tmp_path / "consumer"),
                                       custom_objects={"KerasLayer": hub.KerasLayer})
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)
    loss_before = again.evaluate(x, y, verbose=0)
    again.fit(x, y, batch_size=16, epochs=4, verbose=0)
    assert again.evaluate(x, y, verbose=0) < loss_before
