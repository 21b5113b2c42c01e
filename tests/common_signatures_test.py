"""Common signatures: image and text-embedding modules state what they expect."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub
from jaxhub import common_signatures as cs
from jaxhub._src import host


def _image_features(params, images):
    """A tiny image module: mean color per image through a learned projection."""
    return jnp.mean(images, axis=(1, 2)) @ params["w"]


def _image_module(spec, attachments=None):
    return jaxhub.create_module({"w": jnp.eye(spec.shape[3], 4)},
                                signatures={"default": (_image_features, spec)},
                                attachments=attachments)


def test_image_input_round_trips_through_export(tmp_path):
    spec, attachments = cs.image_input(32, 24, channels=1)
    module = jaxhub.load(_image_module(spec, attachments).export(tmp_path / "m"))
    assert cs.get_expected_image_size(module) == (32, 24)
    assert cs.get_num_image_channels(module) == 1
    assert module.attachments[cs.IMAGE_VALUE_RANGE] == [0.0, 1.0]
    images = jax.random.uniform(jax.random.key(0), (2, 32, 24, 1))
    np.testing.assert_allclose(module(images), _image_features(module.params, images),
                               atol=1e-6)
    with pytest.raises(jaxhub.SignatureError, match="size 16 on axis 1"):
        module(jnp.zeros((2, 16, 24, 1)))


def test_image_size_from_the_input_spec_without_attachments():
    module = _image_module(jaxhub.TensorSpec([None, 8, 16, 3], "float32"))
    assert cs.get_expected_image_size(module) == (8, 16)
    assert cs.get_num_image_channels(module) == 3


def test_any_size_image_module_states_no_size():
    spec, attachments = cs.image_input()
    module = _image_module(spec, attachments)
    assert cs.IMAGE_SIZE not in attachments
    with pytest.raises(ValueError, match="no image size"):
        cs.get_expected_image_size(module)
    assert cs.get_num_image_channels(module) == 3
    for size in (8, 13):  # and indeed takes any size
        assert module(jnp.ones((1, size, size, 3))).shape == (1, 4)


def test_image_helpers_refuse_a_non_image_input():
    module = jaxhub.create_module({"w": jnp.ones((3, 2))}, signatures={
        "default": (lambda p, v: v @ p["w"], jaxhub.TensorSpec([None, 3], "float32"))})
    with pytest.raises(ValueError, match="batch, height, width, channels"):
        cs.get_num_image_channels(module)


def _embed(params, ids):
    return jnp.mean(params["table"][ids], axis=1)


def test_text_embedding_of_token_ids(tmp_path):
    spec, attachments = cs.text_embedding_input(embedding_dim=6)
    table = jax.random.normal(jax.random.key(1), (20, 6))
    module = jaxhub.load(jaxhub.create_module(
        {"table": table}, signatures={"default": (_embed, spec)},
        attachments=attachments).export(tmp_path / "m"))
    assert cs.get_embedding_dim(module) == 6
    assert not cs.takes_text(module)
    ids = jnp.array([[1, 2, 3], [4, 5, 6]], jnp.int32)
    np.testing.assert_allclose(module(ids), _embed({"table": table}, ids), atol=1e-6)
    assert module(ids).shape[1] == cs.get_embedding_dim(module)


def test_embedding_dim_from_the_output_spec():
    module = jaxhub.create_module({"table": jnp.ones((20, 5))}, signatures={
        "default": (_embed, jaxhub.TensorSpec([None, None], "int32"))})
    assert cs.get_embedding_dim(module) == 5


def test_text_module_with_a_host_stage_takes_strings():
    """Strings hash to buckets on the host; the device function embeds the bucket ids."""
    stage = {"inputs": {"default": {"dtype": "string", "shape": [None]}},
             "nodes": [{"name": "hash", "op": "StringToHashBucketFast",
                        "inputs": [["default", 0]], "attrs": {"num_buckets": 8}}],
             "outputs": {"default": ["hash", 0]}}
    table = jax.random.normal(jax.random.key(2), (8, 4))
    module = jaxhub.create_module(
        {"table": table},
        signatures={"default": (lambda p, ids: p["table"][ids],
                                jaxhub.TensorSpec([None], "int32"))},
        attachments={host.ATTACHMENT_KEY: {"default": stage}, cs.EMBEDDING_DIM: 4})
    assert cs.takes_text(module)
    vectors = module(np.array(["hello", "world", "hello"], dtype=object))
    assert vectors.shape == (3, cs.get_embedding_dim(module))
    np.testing.assert_array_equal(vectors[0], vectors[2])
