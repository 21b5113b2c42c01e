"""Conformance of elementwise ops (unary, binary, comparisons, logic, bits) against TF."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
import tensorflow as tf

from tests.converters.from_tf.ops._conformance import (Case, assert_vjp_matches_tf, check,
                                                       convert, integers, nonzero, normal,
                                                       params, uniform, with_zeros)

_SHAPES = (((2, 3),), ((4, 1, 5),))
_PAIRS = (((2, 3), (2, 3)), ((4, 1, 5), (3, 1)), ((), (2, 2)))
_FLOATS = ("float32", "float16")
_INT_FLOAT = ("float32", "int32")
_UNIT = uniform(-0.9, 0.9)
_POSITIVE = uniform(0.5, 3.0)
_ABOVE_ONE = uniform(1.1, 3.0)


def _unary(op, fn, sample=normal, dtypes=("float32",), **kw) -> Case:
    return Case(op, fn, _SHAPES, dtypes, sample, **kw)


def _binary(op, fn, sample=normal, dtypes=("float32",), **kw) -> Case:
    return Case(op, fn, _PAIRS, dtypes, sample, **kw)


UNARY = [
    _unary("Neg", tf.negative, dtypes=_INT_FLOAT),
    _unary("Abs", tf.abs, sample=nonzero, dtypes=_INT_FLOAT),
    _unary("Square", tf.square, dtypes=_INT_FLOAT),
    _unary("Sqrt", tf.sqrt, _POSITIVE, _FLOATS),
    _unary("Rsqrt", tf.math.rsqrt, _POSITIVE, _FLOATS),
    _unary("Exp", tf.exp, dtypes=_FLOATS),
    _unary("Log", tf.math.log, _POSITIVE, _FLOATS),
    _unary("Tanh", tf.tanh, dtypes=_FLOATS),
    _unary("Sigmoid", tf.sigmoid, dtypes=_FLOATS),
    _unary("Reciprocal", tf.math.reciprocal, nonzero),
    _unary("Inv", lambda x: tf.raw_ops.Inv(x=x), nonzero),
    _unary("Acos", tf.acos, _UNIT),
    _unary("Acosh", tf.acosh, _ABOVE_ONE),
    _unary("Asin", tf.asin, _UNIT),
    _unary("Asinh", tf.asinh),
    _unary("Atan", tf.atan),
    _unary("Atanh", tf.atanh, _UNIT),
    _unary("Cos", tf.cos, dtypes=_FLOATS),
    _unary("Cosh", tf.cosh),
    _unary("Sin", tf.sin, dtypes=_FLOATS),
    _unary("Sinh", tf.sinh),
    # Large arguments, where exp's accuracy shows: TF's float32 is within an ulp or two.
    _unary("Cosh", tf.cosh, uniform(-85, 85), name="Cosh_large", rtol=2.5e-7, atol=0),
    _unary("Sinh", tf.sinh, uniform(-85, 85), name="Sinh_large", rtol=2.5e-7, atol=0),
    _unary("Tan", tf.tan, _UNIT),
    _unary("Expm1", tf.math.expm1),
    _unary("Log1p", tf.math.log1p, _POSITIVE),
    _unary("Erf", tf.math.erf),
    _unary("Erfc", tf.math.erfc),
    _unary("Erfinv", tf.math.erfinv, _UNIT, rtol=1e-4),
    _unary("Ndtri", tf.math.ndtri, uniform(0.05, 0.95), rtol=1e-4),
    _unary("Lgamma", tf.math.lgamma, _POSITIVE, rtol=1e-4, atol=1e-4),
    _unary("Digamma", tf.math.digamma, _POSITIVE, rtol=1e-4, atol=1e-4),
    _unary("BesselI0e", tf.math.special.bessel_i0e, rtol=1e-4),
    _unary("BesselI1e", tf.math.special.bessel_i1e, rtol=1e-4),
    _unary("FresnelCos", tf.math.special.fresnel_cos, rtol=1e-4, atol=1e-5),
    _unary("FresnelSin", tf.math.special.fresnel_sin, rtol=1e-4, atol=1e-5),
    _unary("Ceil", tf.math.ceil),
    _unary("Floor", tf.math.floor),
    _unary("Round", tf.math.round, uniform(-3, 3)),
    _unary("Rint", tf.math.rint, uniform(-3, 3)),
    _unary("Sign", tf.sign, with_zeros, _INT_FLOAT),
    _unary("IsFinite", tf.math.is_finite),
    _unary("IsInf", tf.math.is_inf),
    _unary("IsNan", tf.math.is_nan),
    _unary("LogicalNot", tf.logical_not, dtypes=("bool",)),
    _unary("Invert", tf.bitwise.invert, dtypes=("int32", "uint8")),
    _unary("PopulationCount", lambda x: tf.raw_ops.PopulationCount(x=x), dtypes=("int32", "uint8")),
    _unary("Relu", tf.nn.relu, nonzero, _FLOATS),
    _unary("Relu6", tf.nn.relu6, uniform(-8, 8), _FLOATS),
    _unary("Elu", tf.nn.elu, nonzero, _FLOATS),
    _unary("Selu", tf.nn.selu, nonzero),
    _unary("LeakyRelu", lambda x: tf.nn.leaky_relu(x, 0.3), nonzero, _FLOATS),
    _unary("Softplus", tf.nn.softplus, uniform(-30, 30)),
    _unary("Softsign", tf.nn.softsign),
    _unary("Erfc", lambda x: tf.nn.gelu(x, approximate=False), name="Gelu-exact"),
    _unary("Tanh", lambda x: tf.nn.gelu(x, approximate=True), name="Gelu-tanh"),
    _unary("Sigmoid", tf.nn.silu, name="Silu"),
    # Erf and Erfc recompute their derivative in the backward pass: into the tails, in half
    # precision, and as the GELUs of tf.nn (Erfc) and of Keras 2 / BERT (Erf).
    _unary("Erf", tf.math.erf, uniform(-5, 5), _FLOATS, name="Erf-tails"),
    _unary("Erfc", tf.math.erfc, uniform(-5, 5), _FLOATS, name="Erfc-tails"),
    _unary("Erfc", lambda x: tf.nn.gelu(x, approximate=False), uniform(-8, 8), _FLOATS,
           name="Gelu-exact-wide"),
    _unary("Erf", lambda x: 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0))), dtypes=_FLOATS,
           name="Gelu-erf"),
]

BINARY = [
    _binary("AddV2", tf.add, dtypes=_INT_FLOAT),
    _binary("Add", lambda x, y: tf.raw_ops.Add(x=x, y=y), dtypes=_INT_FLOAT),
    _binary("Sub", tf.subtract, dtypes=_INT_FLOAT),
    _binary("Mul", tf.multiply, dtypes=_INT_FLOAT + ("float16",)),
    _binary("RealDiv", tf.divide, (normal, nonzero)),
    _binary("Div", lambda x, y: tf.raw_ops.Div(x=x, y=y), (normal, nonzero), _INT_FLOAT),
    _binary("FloorDiv", tf.math.floordiv, (normal, nonzero), _INT_FLOAT, grad=False),
    _binary("FloorMod", tf.math.floormod, (normal, nonzero), _INT_FLOAT),
    _binary("TruncateDiv", tf.truncatediv, (normal, nonzero), ("int32",)),
    _binary("TruncateMod", tf.truncatemod, (normal, nonzero), _INT_FLOAT, grad=False),
    _binary("Mod", lambda x, y: tf.raw_ops.Mod(x=x, y=y), (normal, nonzero), _INT_FLOAT,
            grad=False),
    _binary("DivNoNan", tf.math.divide_no_nan, (normal, with_zeros)),
    _binary("MulNoNan", tf.math.multiply_no_nan, (normal, with_zeros)),
    _binary("Xlogy", tf.math.xlogy, (with_zeros, _POSITIVE)),
    _binary("Xlog1py", tf.math.xlog1py, (with_zeros, _POSITIVE)),
    _binary("Xdivy", tf.math.xdivy, (with_zeros, nonzero)),
    _binary("Maximum", tf.maximum, dtypes=_INT_FLOAT),
    _binary("Minimum", tf.minimum, dtypes=_INT_FLOAT),
    _binary("Pow", tf.pow, (_POSITIVE, normal)),
    _binary("Pow", tf.pow, (integers(-4, 5), integers(0, 4)), ("int32",), name="Pow-int"),
    _binary("SquaredDifference", tf.math.squared_difference, dtypes=_INT_FLOAT),
    _binary("Atan2", tf.atan2),
    _binary("Igamma", tf.math.igamma, (_POSITIVE, _POSITIVE), rtol=1e-4, atol=1e-5,
            grad=False),
    _binary("Igammac", tf.math.igammac, (_POSITIVE, _POSITIVE), rtol=1e-4, atol=1e-5,
            grad=False),
    _binary("Zeta", tf.math.zeta, (_ABOVE_ONE, _POSITIVE), rtol=1e-4, grad=False),
    _binary("Polygamma", tf.math.polygamma, (integers(0, 3), _POSITIVE), rtol=1e-3,
            grad=False),
    _binary("NextAfter", tf.math.nextafter, grad=False),
    _binary("Less", tf.less, dtypes=_INT_FLOAT),
    _binary("LessEqual", tf.less_equal, dtypes=_INT_FLOAT),
    _binary("Greater", tf.greater, dtypes=_INT_FLOAT),
    _binary("GreaterEqual", tf.greater_equal, dtypes=_INT_FLOAT),
    _binary("Equal", tf.equal, dtypes=("int32", "bool")),
    _binary("NotEqual", tf.not_equal, dtypes=("int32", "bool")),
    Case("ApproximateEqual", lambda x, y: tf.raw_ops.ApproximateEqual(x=x, y=y, tolerance=0.5),
         (((2, 3), (2, 3)), ((4, 1, 5), (4, 1, 5)))),
    _binary("LogicalAnd", tf.logical_and, dtypes=("bool",)),
    _binary("LogicalOr", tf.logical_or, dtypes=("bool",)),
    _binary("BitwiseAnd", tf.bitwise.bitwise_and, dtypes=("int32", "uint8")),
    _binary("BitwiseOr", tf.bitwise.bitwise_or, dtypes=("int32", "uint8")),
    _binary("BitwiseXor", tf.bitwise.bitwise_xor, dtypes=("int32", "uint8")),
    _binary("LeftShift", tf.bitwise.left_shift, integers(0, 8), ("int32",)),
    _binary("RightShift", tf.bitwise.right_shift, (normal, integers(0, 4)), ("int32",)),
]

OTHER = [
    Case("L2Loss", tf.nn.l2_loss, _SHAPES),
    Case("Betainc", tf.math.betainc, (((2, 3), (2, 3), (2, 3)),),
         sample=(uniform(0.5, 3), uniform(0.5, 3), uniform(0.05, 0.95)), grad=False,
         rtol=1e-4),
    Case("ClipByValue", lambda x, lo, hi: tf.raw_ops.ClipByValue(
        t=x, clip_value_min=lo, clip_value_max=hi),
         (((2, 3), (), ()), ((3, 4), (3, 4), (3, 4))), sample=(normal, uniform(-1, -0.5),
                                                                uniform(0.5, 1))),
    Case("AddN", lambda x, y, z: tf.add_n([x, y, z]), (((2, 3),) * 3,)),
    Case("Select", lambda c, x, y: tf.raw_ops.Select(condition=c, x=x, y=y),
         (((3,), (3, 2), (3, 2)), ((2, 3), (2, 3), (2, 3))), dtypes=(("bool", "float32",
                                                                          "float32"),)),
    Case("SelectV2", tf.where, (((2, 3), (2, 3), (2, 3)), ((1, 3), (2, 1), ())),
         dtypes=(("bool", "float32", "float32"),)),
    Case("Cast", lambda x: tf.cast(x, tf.int32), _SHAPES, sample=uniform(-5, 5),
         name="Cast-to-int"),
    Case("Cast", lambda x: tf.cast(x, tf.float32), _SHAPES, dtypes=("int32", "bool"),
         name="Cast-to-float"),
    Case("Cast", lambda x: tf.cast(x, tf.bfloat16), _SHAPES, name="Cast-to-bfloat16",
         rtol=1e-2, atol=1e-2),
    Case("Complex", lambda x, y: tf.abs(tf.complex(x, y)), (((2, 3), (2, 3)),), grad=False),
    Case("Angle", lambda x, y: tf.math.angle(tf.complex(x, y)), (((2, 3), (2, 3)),),
         grad=False),
    Case("Real", lambda x, y: tf.math.real(tf.math.conj(tf.complex(x, y))),
         (((2, 3), (2, 3)),), grad=False),
    Case("Imag", lambda x, y: tf.math.imag(tf.math.conj(tf.complex(x, y))),
         (((2, 3), (2, 3)),), grad=False),
    Case("Conj", lambda x, y: tf.math.imag(tf.math.conj(tf.complex(x, y))),
         (((2, 3), (2, 3)),), grad=False),
    Case("ComplexAbs", lambda x, y: tf.abs(tf.complex(x, y)), (((2, 3), (2, 3)),),
         grad=False),
]

CASES = UNARY + BINARY + OTHER


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)


@pytest.mark.parametrize("op,fn", [
    ("Erfc", lambda x: tf.nn.gelu(x, approximate=False)),
    ("Erf", lambda x: 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0))))], ids=["erfc", "erf"])
def test_gelu_gradient_computes_no_exponential_in_the_forward_pass(op, fn):
    """The forward half of GELU's VJP (what a fine-tuning step keeps) is inference's work:
    erf/erfc's derivative, exp(-x**2), is left to the backward pass, where it fuses."""
    concrete, converted = convert(Case(op, fn), [(4, 8)], [np.dtype("float32")])
    x = np.random.default_rng(0).uniform(-3, 3, (4, 8)).astype(np.float32)
    forward = jax.make_jaxpr(lambda x: jax.vjp(lambda x: converted(x)[0], x))(x)
    primitives = [eqn.primitive.name for eqn in forward.jaxpr.eqns]
    assert "exp" not in primitives and {"erf", "erfc"} & set(primitives), primitives
    _, vjp_fn = jax.vjp(lambda x: converted(x)[0], x)
    cotangent = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    assert_vjp_matches_tf(concrete, vjp_fn, x, cotangent)
