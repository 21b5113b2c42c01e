"""Winograd F(2x2, 3x3) computes the 3x3 convolution XLA computes, and its gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from benchmarks import winograd


def _direct(x, kernel, padding):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _operands(size, channels=(5, 7), batch=2):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *size, channels[0])).astype(np.float32)
    kernel = rng.standard_normal((3, 3, *channels)).astype(np.float32)
    return x, kernel


_SAME, _VALID, _UNEVEN = ((1, 1), (1, 1)), ((0, 0), (0, 0)), ((2, 0), (0, 1))


@pytest.mark.parametrize("size, padding", [
    ((8, 8), _SAME), ((7, 5), _SAME), ((1, 1), _SAME), ((2, 3), _SAME),  # odd: spare tiles
    ((8, 8), _VALID), ((7, 5), _VALID), ((3, 3), _VALID),
    ((8, 8), _UNEVEN), ((7, 5), _UNEVEN), ((1, 2), _UNEVEN)])
def test_values_match_the_direct_convolution(size, padding):
    x, kernel = _operands(size)
    np.testing.assert_allclose(winograd.conv3x3(x, kernel, padding),
                               _direct(x, kernel, padding), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("padding", [_SAME, _VALID, _UNEVEN, ((3, 0), (1, 1))])
def test_gradients_match_the_direct_convolution(padding):
    x, kernel = _operands((6, 7))
    out_shape = _direct(x, kernel, padding).shape
    cotangent = np.random.default_rng(1).standard_normal(out_shape).astype(np.float32)

    def grads(conv):
        return jax.grad(lambda a, b: jnp.sum(conv(a, b) * cotangent), argnums=(0, 1))(
            x, kernel)

    ours = grads(lambda a, b: winograd.conv3x3(a, b, padding))
    theirs = grads(lambda a, b: _direct(a, b, padding))
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_exports_with_a_symbolic_batch():
    x, kernel = _operands((5, 6))
    (batch,) = export.symbolic_shape("b")
    exported = export.export(jax.jit(winograd.conv3x3))(
        jax.ShapeDtypeStruct((batch, 5, 6, 5), jnp.float32), kernel)
    np.testing.assert_allclose(exported.call(x, kernel), _direct(x, kernel, "SAME"),
                               rtol=1e-5, atol=1e-4)


def test_suits_only_3x3_stride_1_nhwc_on_large_maps():
    large = (56, 56)
    assert winograd.suits((3, 3, 8, 8), (1, 1), (1, 1), "NHWC", large)
    assert not winograd.suits((3, 3, 8, 8), (1, 1), (1, 1), "NHWC", (7, 7))
    assert not winograd.suits((3, 3, 8, 8), (2, 2), (1, 1), "NHWC", large)
    assert not winograd.suits((5, 5, 8, 8), (1, 1), (1, 1), "NHWC", large)
    assert not winograd.suits((3, 3, 8, 8), (1, 1), (2, 2), "NHWC", large)
    assert not winograd.suits((3, 3, 8, 8), (1, 1), (1, 1), "NCHW", large)
    assert not winograd.suits((3, 3, 1, 8), (1, 1), (1, 1), "NHWC", large, groups=8)
