"""Elementwise math, reductions and matrix products.

Conventions for every family (extend them in the same way):

* Static in, static out: when every input is static (numpy), compute with numpy
  (:func:`~converters.from_tf.values.xnp` picks the module), so shape arithmetic stays
  concrete under ``jit`` and ``jax.export``.
* Attributes are read with ``node.attr(name)``; a dtype attribute comes back as a numpy
  dtype, to pass to ``astype``.
* Trivial ops go in the tables (:data:`_UNARY`, :data:`_BINARY`), one line each.
"""

from __future__ import annotations

import math
import operator

import jax
import jax.scipy.special
import jax.numpy as jnp
import numpy as np

from converters.from_tf.ops.registry import register
from converters.from_tf.values import as_jax, is_static, xnp

# TF op -> (numpy function, jax function). numpy gets static inputs only.
_UNARY = {
    "Neg": (operator.neg, jnp.negative),
    "Abs": (np.abs, jnp.abs),
    "Square": (np.square, jnp.square),
    "Sqrt": (np.sqrt, jnp.sqrt),
    "Rsqrt": (lambda x: 1 / np.sqrt(x), jax.lax.rsqrt),
    "Exp": (np.exp, jnp.exp),
    "Log": (np.log, jnp.log),
    "Tanh": (np.tanh, jnp.tanh),
    "Sigmoid": (lambda x: 1 / (1 + np.exp(-x)), jax.nn.sigmoid),
    "Reciprocal": (np.reciprocal, jnp.reciprocal),
    "LogicalNot": (np.logical_not, jnp.logical_not),
    "Erf": (np.vectorize(math.erf), jax.scipy.special.erf),
    "Erfc": (np.vectorize(math.erfc), jax.scipy.special.erfc),
}

_BINARY = {
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
}


def _unary(np_fn, jnp_fn):
    def impl(node, x):
        if is_static(x):
            return np.asarray(np_fn(x)).astype(np.asarray(x).dtype)
        return jnp_fn(x)
    return impl


def _binary(np_fn, jnp_fn):
    def impl(node, x, y):
        if is_static(x, y):
            return np.asarray(np_fn(np.asarray(x), np.asarray(y)))
        return jnp_fn(as_jax(x), as_jax(y))
    return impl


for _name, (_np_fn, _jnp_fn) in _UNARY.items():
    register(_name)(_unary(_np_fn, _jnp_fn))
for _name, (_np_fn, _jnp_fn) in _BINARY.items():
    register(_name)(_binary(_np_fn, _jnp_fn))


@register("Cast")
def _cast(node, x):
    dtype = node.attr("DstT")
    if is_static(x) and not (isinstance(x, np.ndarray) and x.dtype == object):
        return np.asarray(x).astype(dtype)
    return as_jax(x).astype(dtype)


def _reduce(np_fn, jnp_fn):
    def impl(node, x, axis):
        axes = tuple(int(a) for a in np.asarray(axis).reshape(-1))
        keep = node.attr("keep_dims", False)
        if is_static(x):
            return np.asarray(np_fn(np.asarray(x), axis=axes, keepdims=keep))
        return jnp_fn(x, axis=axes, keepdims=keep)
    return impl


for _name, _fns in {"Sum": (np.sum, jnp.sum), "Mean": (np.mean, jnp.mean),
                    "Max": (np.max, jnp.max), "Min": (np.min, jnp.min),
                    "Prod": (np.prod, jnp.prod), "All": (np.all, jnp.all),
                    "Any": (np.any, jnp.any)}.items():
    register(_name)(_reduce(*_fns))


@register("MatMul")
def _matmul(node, a, b):
    if node.attr("transpose_a", False):
        a = a.T
    if node.attr("transpose_b", False):
        b = b.T
    return xnp(a, b).matmul(a, b)


@register("BatchMatMulV2", "BatchMatMulV3", "BatchMatMul")
def _batch_matmul(node, x, y):
    m = xnp(x, y)
    if node.attr("adj_x", False):
        x = m.conj(m.swapaxes(x, -1, -2))
    if node.attr("adj_y", False):
        y = m.conj(m.swapaxes(y, -1, -2))
    out = m.matmul(x, y)
    if node.has_attr("Tout"):
        out = out.astype(node.attr("Tout"))
    return out


@register("Einsum")
def _einsum(node, *operands):
    return jnp.einsum(node.attr("equation"), *operands)


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
