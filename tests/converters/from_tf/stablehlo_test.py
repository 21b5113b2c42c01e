"""The shapes of a ``jax.export`` module read back from its StableHLO alone.

Each case exports a function with ``jax.export`` for symbolic shapes and reads the module
as an ``XlaCallModule`` op holds it (no ``Exported`` beside it): at sizes the
specification admits, the output shapes read back equal those ``jax.export`` derived.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export as jax_export

from jaxhub_tf.from_tf.stablehlo import module_shapes

def _conv(x, stride):
    kernel = jnp.ones((3, 3, x.shape[-1], 3), x.dtype)
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


CASES = {
    "same_size": (lambda x: x * 2.0, ["(b, 4)"]),
    "doubled": (lambda x: jnp.concatenate([x, x]), ["(b, 3)"]),
    "one_less": (lambda x: x[1:], ["(n,)"]),
    "concatenated": (lambda a, b: jnp.concatenate([a, b]), ["(m, 3)", "(n, 3)"]),
    "outer_product": (lambda a, b: a[:, None] * b[None, :], ["(m,)", "(n,)"]),
    "flattened": (lambda x: x.reshape(-1), ["(b, d, 3)"]),
    "squared": (lambda a: jnp.outer(a, a).reshape(-1), ["(n,)"]),
    "tied_broadcast": (lambda x, y: (jnp.broadcast_to(x, y.shape), x + y),
                       ["(b, 4)", "(2, b, 4)"]),
    "multiple_of_128": (lambda x: jnp.tile(x, 2).reshape((2, *x.shape)), ["(B, d*128)"]),
    "every_other": (lambda x: x[::2], ["(n,)"]),
    "strided_convolution": (lambda x: _conv(_conv(x, 2), 3), ["(b, h, w, 3)"]),
    "static": (lambda x, w: x @ w, ["(3, 4)", "(4, 2)"]),
    "static_beside_symbolic": (lambda x, w: x @ w, ["(b, 4)", "(4, 2)"]),
}


def _export(fn, shapes, platforms=("cpu",)):
    scope = jax_export.SymbolicScope()
    args = [jax.ShapeDtypeStruct(jax_export.symbolic_shape(s, scope=scope), jnp.float32)
            for s in shapes]
    return jax_export.export(jax.jit(fn), platforms=platforms)(*args)


def _evaluated(shape, env):
    """A shape's sizes at the values ``env`` gives its symbols (JAX's own evaluation)."""
    return tuple(d if isinstance(d, int) else int(d._evaluate(env)) for d in shape)


def _variables(avals):
    return sorted({v for a in avals for d in a.shape if not isinstance(d, int)
                   for v in d._get_vars()})


@pytest.mark.parametrize("platforms", [("cpu",), ("cpu", "cuda")])
@pytest.mark.parametrize("name", sorted(CASES))
def test_output_shapes_are_those_jax_export_derived(name, platforms):
    fn, specs = CASES[name]
    exported = _export(fn, specs, platforms)
    shapes = module_shapes(exported.mlir_module_serialized, len(specs))
    variables = _variables(exported.in_avals)
    for values in itertools.islice(itertools.product([1, 2, 7], repeat=len(variables)), 6):
        env = dict(zip(variables, values))
        args = [_evaluated(a.shape, env) for a in exported.in_avals]
        # The symbols read back take the sizes of the args where they stand.
        ours = {str(d): size for shape, arg in zip(shapes.inputs, args)
                for d, size in zip(shape, arg) if not isinstance(d, int)}
        assert [_evaluated(s, ours) for s in shapes.inputs] == args
        assert [_evaluated(s, ours) for s in shapes.outputs] == [
            _evaluated(a.shape, env) for a in exported.out_avals], env


def test_a_size_the_specification_names_keeps_its_name():
    """``b`` stays ``b`` (sizes the module ties share it); ``d*128`` gets a symbol of its
    own, and outputs are polynomials of it where they can be (``128*d`` is that symbol,
    not ``128*(_arg0_1 // 128)``)."""
    shapes = module_shapes(_export(*CASES["tied_broadcast"]).mlir_module_serialized, 2)
    assert [tuple(map(str, s)) for s in shapes.inputs] == [("b", "4"), ("2", "b", "4")]
    shapes = module_shapes(_export(*CASES["multiple_of_128"]).mlir_module_serialized, 1)
    (batch, length), = shapes.inputs
    assert str(batch) == "B" and str(length) != "d"
    assert shapes.outputs == ((2, batch, length),)


def test_output_size_neither_polynomial_nor_floor_division_is_refused():
    """Every other column, flattened: ``b * ((h + 1) // 2)``."""
    exported = _export(lambda x: x[:, ::2].reshape(-1), ["(b, h)"])
    with pytest.raises(NotImplementedError, match=r"size 0 of output 0 .* neither a "
                       r"polynomial .* nor an affine floor division .* \(\(b, h\)\)"):
        module_shapes(exported.mlir_module_serialized, 1)


def test_static_module_needs_no_specification():
    exported = _export(*CASES["static"])
    shapes = module_shapes(exported.mlir_module_serialized, 2)
    assert shapes.inputs == ((3, 4), (4, 2)) and shapes.outputs == ((3, 2),)
    np.testing.assert_equal(shapes.outputs, [a.shape for a in exported.out_avals])
