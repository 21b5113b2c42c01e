"""A module with a host stage, made with create_module: strings in, exported, loaded."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub
from jaxhub._src.host import ATTACHMENT_KEY, HostStage

PROGRAM = {
    "inputs": {"default": {"dtype": "string", "shape": [None]}},
    "nodes": [{"name": "lower", "op": "StringLower", "inputs": [["default", 0]]},
              {"name": "ids", "op": "StringToHashBucketFast", "inputs": [["lower", 0]],
               "attrs": {"num_buckets": 16}}],
    "outputs": {"ids": ["ids", 0]},
}


def embed(params, inputs):
    return jnp.take(params["table"], inputs["ids"], axis=0)


def _module():
    params = {"table": jax.random.normal(jax.random.key(0), (16, 3))}
    return jaxhub.create_module(
        params, signatures={"default": (embed, {"ids": jaxhub.TensorSpec([None], "int32")})},
        attachments={ATTACHMENT_KEY: {"default": PROGRAM}})


def test_strings_go_through_the_host_stage_then_the_device_function(tmp_path):
    module = _module()
    words = ["Apple", "apple", "pear"]
    ids = HostStage(PROGRAM).run(words)
    expected = embed(module.params, ids)
    np.testing.assert_allclose(module(words), expected)
    np.testing.assert_allclose(module(words)[0], module(words)[1])  # lower-cased
    loaded = jaxhub.load(module.export(tmp_path / "m"))
    np.testing.assert_allclose(loaded(words), expected)
    grads = jax.grad(lambda p: jnp.sum(loaded.apply(p, words)))(loaded.params)
    np.testing.assert_allclose(grads["table"].sum(), 3 * 3)  # one row per word, 3 columns


def test_signatures_show_what_callers_pass():
    signature = _module().signatures["default"]
    assert dict(signature.inputs) == {"default": jaxhub.TensorSpec([None], "string")}
    assert signature.outputs["default"] == jaxhub.TensorSpec(["batch", 3], "float32")


@pytest.mark.parametrize("words, message", [
    ([["a"], ["b", "c"]], "input 'default' must hold only strings"),
    ([{"a": "b"}], "must hold only strings (a rectangular array of str or bytes), not dict"),
    ([1, 2], "not int"),
    ("one word", "input 'default' has shape (), not rank 1"),
])
def test_inputs_that_are_not_strings_name_the_signature_and_input(words, message):
    with pytest.raises(jaxhub.SignatureError, match="signature 'default'") as error:
        _module()(words)
    assert message in str(error.value)
    assert "expected inputs {default: string[?]}" in str(error.value)


def test_an_empty_batch_of_strings_gives_empty_outputs():
    out = _module()([])  # the device function is not called: its sizes are at least 1
    assert out.shape == (0, 3) and out.dtype == np.float32


def test_the_host_stage_is_an_explicit_step_before_a_pure_device_call():
    module = _module()
    words = ["Apple", "apple", "pear"]
    assert module.has_host_stage("default")
    feeds = module.preprocess(words)
    assert feeds["ids"].dtype == np.int32
    jitted = jax.jit(lambda p, f: module.apply_device(p, f))
    np.testing.assert_allclose(jitted(module.params, feeds), module(words))
