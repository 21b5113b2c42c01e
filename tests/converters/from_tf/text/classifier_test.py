"""From strings to logits, and TF Hub's preprocess-then-encode pattern, differentiated in JAX.

Logits within 2e-4 of TF's; gradients with respect to the params within 5e-2 relative
L2 of TF's ``GradientTape`` (the host stage's integer ids are constants of the device
function, so the gradient flows through the encoder only, as in TF).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

import jaxhub
from jaxhub_tf import convert_saved_model
from tests.converters.from_tf.text import preprocessors
from tests.converters.from_tf.text.preprocessors import TEXTS

ODD_BATCH = TEXTS[:7]
#: The encoder's serving signature (its ``__call__`` takes three tensors, so the
#: SavedModel has no one-input ``default``).
ENCODE = "serving_default"


def relative_l2(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def params_by_tf_name(module) -> dict[str, str]:
    """TF variable name (without ``:0``) -> the module's param path."""
    return {name.split(":")[0]: path
            for path, name in module.attachments["tf_variable_names"].items()}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp("classifier")
    path, model = preprocessors.save_classifier(root)
    convert_saved_model(path, root / "converted")
    return model, jaxhub.load(str(root / "converted"))


@pytest.mark.parametrize("strings", [TEXTS, TEXTS[5:6], ODD_BATCH])
def test_strings_to_logits_match_tf(classifier, strings):
    model, module = classifier
    theirs = model(tf.constant(strings))["logits"].numpy()
    np.testing.assert_allclose(module(strings), theirs, atol=2e-4, rtol=2e-4)


def test_gradients_with_respect_to_params_match_tf(classifier):
    model, module = classifier
    weights = np.random.default_rng(0).normal(size=(len(ODD_BATCH), 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.constant(ODD_BATCH))["logits"] * weights)
    variables = model.trainable_variables
    theirs = dict(zip((v.name.split(":")[0] for v in variables),
                      tape.gradient(loss, variables)))
    grads = jax.grad(lambda p: jnp.sum(module.apply(p, ODD_BATCH) * weights))(module.params)
    paths = params_by_tf_name(module)
    compared = 0
    for name, expected in theirs.items():
        ours = grads
        for part in paths[name].split("/"):
            ours = ours[part]
        expected = tf.convert_to_tensor(expected).numpy()  # IndexedSlices of gathers
        assert relative_l2(ours, expected) <= 5e-2, name
        compared += 1
    assert compared == 10


@pytest.fixture(scope="module")
def hub_pair(tmp_path_factory):
    """TF Hub's layout: a preprocessing SavedModel and an encoder SavedModel."""
    root = tmp_path_factory.mktemp("hub_pair")
    preprocess_path = preprocessors.save_preprocessor(root)
    vocab_size = len((root / "vocab.txt").read_text().splitlines())
    encoder_path, encoder = preprocessors.save_encoder(root, vocab_size)
    return (tf.saved_model.load(str(preprocess_path)), encoder,
            jaxhub.load(str(preprocess_path)), jaxhub.load(str(encoder_path)))


def test_encoder_of_preprocess_matches_tf_hub_usage(hub_pair):
    tf_preprocess, tf_encoder, preprocess, encoder = hub_pair
    theirs = tf_encoder(**tf_preprocess.signatures["serving_default"](
        strings=tf.constant(ODD_BATCH)))
    inputs = preprocess(ODD_BATCH, as_dict=True)
    # The encoder's signature returns ``default`` (its pooled output), as TF Hub's do.
    np.testing.assert_allclose(encoder(inputs, signature=ENCODE), theirs["default"],
                               atol=2e-4, rtol=2e-4)
    np.testing.assert_allclose(encoder(inputs, signature=ENCODE, as_dict=True)
                               ["sequence_output"],
                               theirs["sequence_output"], atol=2e-4, rtol=2e-4)


def test_fine_tuning_the_encoder_with_jax_grad_matches_tf_and_lowers_the_loss(hub_pair):
    tf_preprocess, tf_encoder, preprocess, encoder = hub_pair
    labels = np.random.default_rng(1).normal(size=(len(ODD_BATCH), 16)).astype(np.float32)
    inputs = preprocess(ODD_BATCH, as_dict=True)  # host stage once; ids are constants

    @jax.jit
    def loss(params):
        return jnp.mean((encoder.apply(params, inputs, signature=ENCODE) - labels) ** 2)

    grads = jax.grad(loss)(encoder.params)
    tf_inputs = tf_preprocess.signatures["serving_default"](strings=tf.constant(ODD_BATCH))
    with tf.GradientTape() as tape:
        tf_loss = tf.reduce_mean((tf_encoder(**tf_inputs)["default"] - labels) ** 2)
    variables = tf_encoder.trainable_variables
    paths = params_by_tf_name(encoder)
    for variable, expected in zip(variables, tape.gradient(tf_loss, variables)):
        ours = grads
        for part in paths[variable.name.split(":")[0]].split("/"):
            ours = ours[part]
        assert relative_l2(ours, tf.convert_to_tensor(expected).numpy()) <= 5e-2
    np.testing.assert_allclose(loss(encoder.params), tf_loss.numpy(), rtol=2e-4)
    tuned = jax.tree.map(lambda p, g: p - 0.5 * g, encoder.params, grads)
    assert loss(tuned) < loss(encoder.params)
