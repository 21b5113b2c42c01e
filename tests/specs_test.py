"""Bad inputs get errors that name the signature and show the expected specs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub


def test_spec_repr_and_equality():
    spec = jaxhub.TensorSpec([None, 50], np.float32)
    assert repr(spec) == "TensorSpec(shape=(None, 50), dtype=float32)"
    assert spec == jaxhub.TensorSpec((None, 50), "float32")
    assert str(jaxhub.TensorSpec(["batch", 3], "int32")) == "int32[batch, 3]"


@pytest.mark.parametrize("inputs, message", [
    (jnp.ones((4, 50), jnp.int32), "dtype int32, not float32"),
    (jnp.ones((4, 50, 1)), "rank 3, not 2"),
    (jnp.ones((4, 49)), "size 49 on axis 1, not 50"),
    ([[1.0] * 50, [1.0] * 49], "input 'default' is not a rectangular array of float32"),
    ([{"a": 1.0}], "input 'default' is not a rectangular array of float32: TypeError"),
    ([["word"] * 50], "could not convert string to float: 'word'"),
])
def test_wrong_dtype_rank_or_size(mlp_module, inputs, message):
    with pytest.raises(jaxhub.SignatureError) as error:
        mlp_module(inputs)
    assert message in str(error.value)
    assert "signature 'default'" in str(error.value)
    assert "expected inputs {default: float32[batch, 50]}" in str(error.value)


def test_an_empty_batch_gives_empty_outputs(mlp_module):
    # jax.export's sizes are at least 1: the outputs [batch, 10] are known without a call.
    out = mlp_module(np.zeros((0, 50), np.float32))
    assert out.shape == (0, 10) and out.dtype == np.float32
    grads = jax.grad(lambda p: jnp.sum(mlp_module.apply(p, np.zeros((0, 50), np.float32))))(
        mlp_module.params)
    assert all(not np.any(g) for g in jax.tree.leaves(grads))


def test_an_empty_batch_is_refused_when_an_output_would_not_be_empty():
    total = jaxhub.create_module(
        {}, {"default": (lambda p, x: jnp.sum(x, axis=0), jaxhub.TensorSpec([None, 3]))})
    with pytest.raises(jaxhub.SignatureError, match=r"signature 'default': inputs with "
                       r"batch=0, and output 'default' \(float32\[3\]\) would not be empty"):
        total(np.zeros((0, 3), np.float32))


@pytest.mark.parametrize("inputs, message", [
    ({}, "missing inputs ['a']"),
    ({"a": jnp.ones((2, 50)), "b": jnp.ones((2, 50))}, "unexpected inputs ['b']"),
])
def test_missing_or_extra_keys(mlp_module, inputs, message):
    with pytest.raises(jaxhub.SignatureError, match=r"signature 'double'") as error:
        mlp_module(inputs, signature="double", as_dict=True)
    assert message in str(error.value)


def test_inconsistent_named_sizes():
    module = jaxhub.create_module(
        {}, {"default": (lambda p, d: d["a"] + d["b"],
                         {"a": jaxhub.TensorSpec([None, "n"]), "b": jaxhub.TensorSpec([None, "n"])})})
    np.testing.assert_allclose(module({"a": jnp.ones((2, 3)), "b": jnp.ones((2, 3))}), 2.0)
    with pytest.raises(jaxhub.SignatureError, match="has n=4 on axis 1, but input 'a' has n=3"):
        module({"a": jnp.ones((2, 3)), "b": jnp.ones((2, 4))})


def test_python_lists_are_converted(mlp_module):
    assert mlp_module([[0.0] * 50]).shape == (1, 10)


def test_unknown_signature_lists_the_known_ones(mlp_module):
    with pytest.raises(jaxhub.SignatureError, match="no signature 'nope'.*'default'"):
        mlp_module(jnp.ones((1, 50)), signature="nope")


def test_unknown_tags_list_the_variants(mlp_module):
    with pytest.raises(jaxhub.SignatureError, match=r"no variant with tags \['eval'\]"):
        mlp_module(jnp.ones((1, 50)), tags={"eval"})


def test_params_of_the_wrong_shape(mlp_module):
    params = jaxhub.merge_params(mlp_module.params, {"dense1": {"bias": jnp.zeros(3)}})
    with pytest.raises(jaxhub.SignatureError, match="param dense1/bias is float32\\[3\\]"):
        mlp_module.apply(params, jnp.ones((1, 50)))


def test_params_with_missing_leaves(mlp_module):
    params = dict(mlp_module.params)
    del params["scale"]
    with pytest.raises(jaxhub.SignatureError, match=r"missing \['scale'\]"):
        mlp_module.apply(params, jnp.ones((1, 50)))


def _wide_module():
    return jaxhub.create_module(
        {}, {"default": (lambda p, d: {"ids": d["ids"] * 2, "x": d["x"] * 2},
                         {"ids": jaxhub.TensorSpec([None], "int64"),
                          "x": jaxhub.TensorSpec([None], "float64")})})


def test_64_bit_inputs_take_the_32_bit_dtype_jax_computes_in():
    module = _wide_module()      # JAX's default: 64-bit types off
    call = jax.jit(lambda ids, x: module({"ids": ids, "x": x}, as_dict=True))
    out = call(jnp.arange(3), jnp.ones(3))
    assert out["ids"].dtype == jnp.int32 and out["x"].dtype == jnp.float32
    out = module({"ids": np.array([1, -2**31]), "x": np.array([0.5, 1.5])}, as_dict=True)
    np.testing.assert_array_equal(out["ids"], [2, 0])   # int32 arithmetic: -2**32 wraps
    np.testing.assert_array_equal(module({"ids": [3], "x": [1.0]}, as_dict=True)["ids"], [6])


@pytest.mark.parametrize("ids, message", [
    (np.array([0, 2**31]), "input 'ids' holds int64 values outside int32's range"),
    (np.array([-2**31 - 1]), "input 'ids' holds int64 values outside int32's range"),
    ([2**40], "input 'ids' holds int64 values outside int32's range"),
    (jnp.ones(2), "input 'ids' has dtype float32, not int64 (or int32, since 64-bit types "
                  "are off)"),
])
def test_64_bit_values_that_do_not_fit_are_refused(ids, message):
    with pytest.raises(jaxhub.SignatureError) as error:
        _wide_module()({"ids": ids, "x": np.ones(np.shape(ids))})
    assert message in str(error.value)
    assert "signature 'default'" in str(error.value)
