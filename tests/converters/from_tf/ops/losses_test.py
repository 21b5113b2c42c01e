"""Conformance of fused loss ops and spectral (FFT) ops against TF."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tests.converters.from_tf.ops._conformance import (Case, check, distinct, integers,
                                                       params)

_TOL = {"rtol": 1e-4, "atol": 1e-4}


def _distribution(rng, shape, dtype):
    p = rng.random(shape) + 0.1
    return (p / p.sum(-1, keepdims=True)).astype(dtype)


def _complex(fn):
    return lambda re, im: fn(tf.complex(re, im))


def _parts(z):
    return tf.math.real(z), tf.math.imag(z)


LOSSES = [
    Case("SoftmaxCrossEntropyWithLogits", lambda x, p: tf.nn.softmax_cross_entropy_with_logits(
        p, x), (((4, 5), (4, 5)),), sample=(distinct, _distribution), **_TOL),
    Case("SparseSoftmaxCrossEntropyWithLogits", lambda x, i:
         tf.nn.sparse_softmax_cross_entropy_with_logits(i, x), (((4, 5), (4,)),),
         dtypes=(("float32", "int32"),), sample=(distinct, integers(0, 5)), **_TOL),
    Case("InTopKV2", lambda x, t: tf.math.in_top_k(t, x, 2), (((4, 5), (4,)),),
         dtypes=(("float32", "int32"),), sample=(distinct, integers(0, 5))),
]

SPECTRAL = [
    Case("FFT", _complex(lambda z: _parts(tf.signal.fft(z))), (((3, 8), (3, 8)),), **_TOL),
    Case("IFFT", _complex(lambda z: _parts(tf.signal.ifft(z))), (((3, 8), (3, 8)),), **_TOL),
    Case("FFT2D", _complex(lambda z: _parts(tf.signal.fft2d(z))), (((2, 4, 6), (2, 4, 6)),),
         **_TOL),
    Case("IFFT2D", _complex(lambda z: _parts(tf.signal.ifft2d(z))), (((2, 4, 6), (2, 4, 6)),),
         **_TOL),
    Case("FFT3D", _complex(lambda z: _parts(tf.signal.fft3d(z))),
         (((2, 2, 4, 4), (2, 2, 4, 4)),), grad=False, **_TOL),
    Case("IFFT3D", _complex(lambda z: _parts(tf.signal.ifft3d(z))),
         (((2, 2, 4, 4), (2, 2, 4, 4)),), grad=False, **_TOL),
    Case("RFFT", lambda x: tf.abs(tf.signal.rfft(x)), (((3, 8),), ((2, 7),)), **_TOL),
    # grad=False: TF's own RFFT gradient fails when fft_length crops the input.
    Case("RFFT", lambda x: _parts(tf.signal.rfft(x, [6])), (((3, 8),),), name="RFFT-cropped",
         grad=False, **_TOL),
    Case("RFFT2D", lambda x: tf.abs(tf.signal.rfft2d(x)), (((2, 4, 6),),), **_TOL),
    Case("RFFT3D", lambda x: tf.abs(tf.signal.rfft3d(x)), (((2, 2, 4, 6),),), grad=False,
         **_TOL),
    Case("IRFFT", _complex(lambda z: tf.signal.irfft(z)), (((3, 5), (3, 5)),), grad=False,
         **_TOL),
    Case("IRFFT", lambda x: tf.signal.irfft(tf.signal.rfft(x), [8]), (((3, 8),),),
         name="IRFFT-roundtrip", **_TOL),
    Case("IRFFT2D", lambda x: tf.signal.irfft2d(tf.signal.rfft2d(x)), (((2, 4, 6),),),
         **_TOL),
    Case("IRFFT3D", lambda x: tf.signal.irfft3d(tf.signal.rfft3d(x)), (((1, 2, 4, 6),),),
         grad=False, **_TOL),
    Case("RFFT", lambda x: tf.abs(tf.signal.stft(x, 16, 8)), (((2, 64),),), name="STFT",
         symbolic_xfail="StridedSlice bounds computed from a symbolic batch size", **_TOL),
]

CASES = LOSSES + SPECTRAL


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)
