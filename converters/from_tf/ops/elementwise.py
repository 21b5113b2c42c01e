"""Elementwise math: ``tf.math`` as two tables (unary, binary), plus casts, selects, sums.

Each table entry maps a TF op to ``(numpy function or None, jax function)``. The numpy
function runs when every input is static, so shape arithmetic stays concrete (see
``ops/__init__.py``); ``None`` means the op never computes shapes, so it always runs in JAX.

Division-like ops follow TF exactly, not Python: ``Div``/``TruncateDiv`` truncate integer
quotients toward zero, ``Mod``/``TruncateMod`` keep the dividend's sign, ``FloorMod`` the
divisor's; the ``*NoNan`` ops give 0 where the divisor (or factor) is 0, with a gradient
that stays finite there.

``Erf`` and ``Erfc`` (exact GELU is ``0.5 * x * erfc(-x / sqrt(2))``) keep only their input
for the gradient and recompute ``exp(-x**2)`` there: autodiff's residual, the derivative
computed in the forward pass, made XLA:CPU write that exponential out as a separate pass
over the activations in every fine-tuning step.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax, has_symbolic, is_static

_NpFn = Callable[..., Any] | None


def _is_int(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.integer)


def _trunc_div_np(x, y):
    if np.issubdtype(np.result_type(x, y), np.integer):
        return np.asarray(np.trunc(np.true_divide(x, y))).astype(np.result_type(x, y))
    return np.true_divide(x, y)


def _trunc_div(x, y):
    return jax.lax.div(*jnp.broadcast_arrays(x, y)) if _is_int(x) else x / y


def _truncate_div(x, y):
    return jax.lax.div(*jnp.broadcast_arrays(x, y)) if _is_int(x) else jnp.trunc(x / y)


def _nonzero(y):
    """``y`` with zeros replaced by ones: the divisor the ``*NoNan`` ops divide by."""
    return jnp.where(y == 0, jnp.ones_like(y), y)


def _div_no_nan(x, y):
    return jnp.where(y == 0, jnp.zeros_like(x), x / _nonzero(y))


@jax.custom_jvp
def _mul_no_nan(x, y):
    return jnp.where(y == 0, jnp.zeros_like(x), x * y)


@_mul_no_nan.defjvp
def _mul_no_nan_jvp(primals, tangents):
    # As TF's gradient: d/dx is masked where y == 0, d/dy = x everywhere.
    (x, y), (tx, ty) = primals, tangents
    return _mul_no_nan(x, y), _mul_no_nan(tx, y) + x * ty


def _xlogy(x, y):
    safe_y = jnp.where(x == 0, jnp.ones_like(y), y)
    return jnp.where(x == 0, jnp.zeros_like(x), x * jnp.log(safe_y))


def _xlog1py(x, y):
    safe_y = jnp.where(x == 0, jnp.zeros_like(y), y)
    return jnp.where(x == 0, jnp.zeros_like(x), x * jnp.log1p(safe_y))


def _xdivy(x, y):
    safe_y = jnp.where(x == 0, jnp.ones_like(y), y)
    return jnp.where(x == 0, jnp.zeros_like(x), x / safe_y)


def _with_gaussian_vjp(fn: Callable, slope: float) -> Callable:
    """``fn`` (erf or erfc), differentiated as ``slope * exp(-x**2)`` from the saved input.

    The derivative is computed in the backward pass, where XLA fuses it into the multiply
    by the cotangent, so the forward pass does no more work than inference.
    """

    @jax.custom_vjp
    def f(x):
        return fn(x)

    def forward(x):
        return fn(x), x

    def backward(x, cotangent):
        return (cotangent * (slope * jnp.exp(-x * x)),)

    f.defvjp(forward, backward)
    return f


_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)
_erf = _with_gaussian_vjp(jsp.erf, _TWO_OVER_SQRT_PI)
_erfc = _with_gaussian_vjp(jsp.erfc, -_TWO_OVER_SQRT_PI)


def _sinh(x):
    """``sinh`` within an ulp or two of float32, as TF's: XLA's (``exp(|x| - log 2)``)
    is off by up to 25 ulps beyond ``|x| = 1``. From ``expm1``, exact near 0; XLA's form
    only where ``expm1`` overflows before ``sinh`` does."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.sinh(x)
    a = jnp.abs(x)
    e = jnp.expm1(a)
    return jnp.sign(x) * jnp.where(a < _exp_limit(x.dtype), (e + e / (e + 1)) / 2,
                                   jnp.sinh(a))


def _cosh(x):
    """``cosh`` within an ulp or two of float32, as TF's (see :func:`_sinh`)."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.cosh(x)
    e = jnp.exp(jnp.abs(x))
    return jnp.where(jnp.abs(x) < _exp_limit(x.dtype), (e + 1 / e) / 2, jnp.cosh(x))


def _exp_limit(dtype) -> float:
    """The largest ``x`` whose ``exp(x)`` is finite in ``dtype``."""
    return float(np.log(jnp.finfo(dtype).max))


def _round(x):
    # TF rounds half to even, like jnp.round; integers are left alone.
    return x if _is_int(x) else jnp.round(x)


def _sign(x):
    return jnp.sign(x)


def _same_dtype(np_fn: Callable) -> Callable:
    """``np_fn`` with its result cast back to the input's dtype, as TF's kernel returns it.

    numpy widens where TF does not: ``math.erf`` gives float64 for float32 inputs.
    """
    return lambda x: np.asarray(np_fn(x)).astype(np.asarray(x).dtype)


_UNARY: dict[str, tuple[_NpFn, Callable]] = {
    "Neg": (_same_dtype(operator.neg), jnp.negative),
    "Abs": (_same_dtype(np.abs), jnp.abs),
    "Square": (_same_dtype(np.square), jnp.square),
    "Sqrt": (_same_dtype(np.sqrt), jnp.sqrt),
    "Rsqrt": (_same_dtype(lambda x: 1 / np.sqrt(x)), jax.lax.rsqrt),
    "Exp": (_same_dtype(np.exp), jnp.exp),
    "Log": (_same_dtype(np.log), jnp.log),
    "Tanh": (_same_dtype(np.tanh), jnp.tanh),
    "Sigmoid": (_same_dtype(lambda x: 1 / (1 + np.exp(-x))), jax.nn.sigmoid),
    "Reciprocal": (_same_dtype(np.reciprocal), jnp.reciprocal),
    "LogicalNot": (_same_dtype(np.logical_not), jnp.logical_not),
    "Erf": (_same_dtype(np.vectorize(math.erf)), _erf),
    "Erfc": (_same_dtype(np.vectorize(math.erfc)), _erfc),
    "Acos": (None, jnp.arccos),
    "Acosh": (None, jnp.arccosh),
    "Asin": (None, jnp.arcsin),
    "Asinh": (None, jnp.arcsinh),
    "Atan": (None, jnp.arctan),
    "Atanh": (None, jnp.arctanh),
    "Cos": (None, jnp.cos),
    "Cosh": (None, _cosh),
    "Sin": (None, jnp.sin),
    "Sinh": (None, _sinh),
    "Tan": (None, jnp.tan),
    "Expm1": (None, jnp.expm1),
    "Log1p": (None, jnp.log1p),
    "Erfinv": (None, jsp.erfinv),
    "Ndtri": (None, jsp.ndtri),
    "Lgamma": (None, jsp.gammaln),
    "Digamma": (None, jsp.digamma),
    "BesselI0e": (None, jsp.i0e),
    "BesselI1e": (None, jsp.i1e),
    "FresnelSin": (None, lambda x: jsp.fresnel(x)[0]),
    "FresnelCos": (None, lambda x: jsp.fresnel(x)[1]),
    "Inv": (np.reciprocal, jnp.reciprocal),
    "Ceil": (np.ceil, jnp.ceil),
    "Floor": (np.floor, jnp.floor),
    "Round": (np.round, _round),
    "Rint": (np.rint, jnp.round),
    "Sign": (np.sign, _sign),
    "IsFinite": (np.isfinite, jnp.isfinite),
    "IsInf": (np.isinf, jnp.isinf),
    "IsNan": (np.isnan, jnp.isnan),
    "Invert": (np.invert, jnp.invert),
    "PopulationCount": (None, lambda x: jax.lax.population_count(x).astype(jnp.uint8)),
    "Conj": (np.conj, jnp.conj),
    "Real": (np.real, jnp.real),
    "Imag": (np.imag, jnp.imag),
    "Angle": (np.angle, jnp.angle),
    "ComplexAbs": (np.abs, jnp.abs),
}

_BINARY: dict[str, tuple[_NpFn, Callable]] = {
    "Add": (operator.add, jnp.add),
    "AddV2": (operator.add, jnp.add),
    "Sub": (operator.sub, jnp.subtract),
    "Mul": (operator.mul, jnp.multiply),
    "RealDiv": (operator.truediv, jnp.divide),
    "FloorDiv": (operator.floordiv, jnp.floor_divide),
    "Maximum": (np.maximum, jnp.maximum),
    "Minimum": (np.minimum, jnp.minimum),
    "Pow": (np.power, jnp.power),
    "SquaredDifference": (lambda x, y: (x - y) * (x - y), lambda x, y: jnp.square(x - y)),
    "Less": (operator.lt, jnp.less),
    "LessEqual": (operator.le, jnp.less_equal),
    "Greater": (operator.gt, jnp.greater),
    "GreaterEqual": (operator.ge, jnp.greater_equal),
    "Equal": (operator.eq, jnp.equal),
    "NotEqual": (operator.ne, jnp.not_equal),
    "LogicalAnd": (np.logical_and, jnp.logical_and),
    "LogicalOr": (np.logical_or, jnp.logical_or),
    "Div": (_trunc_div_np, _trunc_div),
    "TruncateDiv": (_trunc_div_np, _truncate_div),
    "FloorMod": (np.mod, jnp.remainder),
    "Mod": (np.fmod, jnp.fmod),
    "TruncateMod": (np.fmod, jnp.fmod),
    "DivNoNan": (None, _div_no_nan),
    "MulNoNan": (None, _mul_no_nan),
    "Xlogy": (None, _xlogy),
    "Xlog1py": (None, _xlog1py),
    "Xdivy": (None, _xdivy),
    "Atan2": (None, jnp.arctan2),
    "Igamma": (None, jsp.gammainc),
    "Igammac": (None, jsp.gammaincc),
    "Zeta": (None, jsp.zeta),
    "Polygamma": (None, lambda n, x: jsp.polygamma(n.astype(jnp.int32), x).astype(x.dtype)),
    "NextAfter": (np.nextafter, jnp.nextafter),
    "BitwiseAnd": (np.bitwise_and, jnp.bitwise_and),
    "BitwiseOr": (np.bitwise_or, jnp.bitwise_or),
    "BitwiseXor": (np.bitwise_xor, jnp.bitwise_xor),
    "LeftShift": (np.left_shift, jnp.left_shift),
    "RightShift": (np.right_shift, jnp.right_shift),
    "Complex": (None, jax.lax.complex),
}


def _elementwise(np_fn: _NpFn, jnp_fn: Callable) -> Callable:
    """An op implementation: numpy on static inputs (when given), else JAX."""

    def impl(node, *xs):
        if np_fn is not None and is_static(*xs):
            return np.asarray(np_fn(*(np.asarray(x) for x in xs)))
        return jnp_fn(*(as_jax(x) for x in xs))

    return impl


#: ``incompatible_shape_error=False`` only changes shapes that do not broadcast, which
#: fail to convert here with the node named.
_SHAPE_ERROR = {"Equal": ("incompatible_shape_error",),
                "NotEqual": ("incompatible_shape_error",)}

for _name, (_np_fn, _jnp_fn) in {**_UNARY, **_BINARY}.items():
    register(_name, attrs=_SHAPE_ERROR.get(_name, ()))(_elementwise(_np_fn, _jnp_fn))


# ``Truncate`` (cut the mantissa instead of rounding) is not implemented.
@register("Cast", attrs={"Truncate": (False,)})
def _cast(node, x):
    dtype = node.attr("DstT")
    if has_symbolic(x) and np.dtype(dtype).kind in "iu" and np.dtype(dtype).itemsize >= 4:
        return x  # sizes, symbolic or not, are the same in 32 and 64 bits
    if is_static(x) and not has_symbolic(x):
        return np.asarray(x).astype(dtype)
    # With 64-bit types off a cast to int64/float64 computes in 32 bits (the 64-bit rule
    # of docs/converters.md): ask for that, not for a dtype JAX would warn it narrows.
    return as_jax(x).astype(jax.dtypes.canonicalize_dtype(dtype))


@register("Select", "SelectV2")
def _select(node, cond, x, y):
    if node.op == "Select" and np.ndim(cond) == 1 and np.ndim(x) > 1:
        # TF1 Select with a vector condition picks whole rows.
        cond = cond.reshape(cond.shape + (1,) * (np.ndim(x) - 1))
    if is_static(cond, x, y):
        return np.where(cond, x, y)
    return jnp.where(as_jax(cond), as_jax(x), as_jax(y))


@register("AddN")
def _add_n(node, *xs):
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total


@register("Betainc")
def _betainc(node, a, b, x):
    return jsp.betainc(as_jax(a), as_jax(b), as_jax(x))


@register("ClipByValue")
def _clip_by_value(node, x, low, high):
    if is_static(x, low, high):
        return np.asarray(np.clip(x, low, high))
    # TF's gradient passes through where low <= x <= high; min/max route it the same way.
    return jnp.minimum(jnp.maximum(as_jax(x), low), high)


@register("ApproximateEqual", attrs=("tolerance",))
def _approximate_equal(node, x, y):
    return jnp.abs(as_jax(x) - as_jax(y)) < node.attr("tolerance")
