"""Per-op conformance against TensorFlow: one table entry per op, one check for all.

A :class:`Case` names a TF op, a ``tf.function`` body that uses it, and the input shapes
and dtypes to try. :func:`check` traces the body into a graph, asserts that the op is in
it, converts the graph with the real interpreter, runs it under ``jax.jit`` on random
inputs, and compares with what TensorFlow computes on the same inputs: every output's
values and dtype, and (for float inputs) the gradient of a random linear function of the
float outputs against ``tf.GradientTape``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from jaxhub_tf.from_tf.interpreter import run_graph

Sampler = Callable[[np.random.Generator, tuple, np.dtype], np.ndarray]


def normal(rng, shape, dtype):
    """Floats from N(0, 1); integers in [-5, 5]; booleans at random."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.unsignedinteger):
        return rng.integers(0, 10, shape).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-5, 6, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def uniform(low: float, high: float) -> Sampler:
    """Floats (or integers) uniform in ``[low, high)``."""
    def sample(rng, shape, dtype):
        if np.issubdtype(np.dtype(dtype), np.integer):
            return rng.integers(int(low), int(high), shape).astype(dtype)
        return rng.uniform(low, high, shape).astype(dtype)
    return sample


def nonzero(rng, shape, dtype):
    """Like :func:`normal`, with values kept away from zero (divisors)."""
    x = normal(rng, shape, dtype)
    if np.issubdtype(np.dtype(dtype), np.integer):
        return np.where(x == 0, 3, x).astype(dtype)
    return (np.sign(x) * (np.abs(x) + 0.5)).astype(dtype)


def with_zeros(rng, shape, dtype):
    """Like :func:`normal`, with about a third of the entries exactly zero."""
    x = normal(rng, shape, dtype)
    return np.where(rng.random(shape) < 0.3, 0, x).astype(dtype)


def integers(low: int, high: int) -> Sampler:
    """Integers in ``[low, high)`` of the requested dtype (indices, segment ids)."""
    return lambda rng, shape, dtype: rng.integers(low, high, shape).astype(dtype)


def spd(rng, shape, dtype):
    """Symmetric positive definite matrices (batched over leading axes)."""
    a = rng.standard_normal(shape)
    return (a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(dtype)


def distinct(rng, shape, dtype):
    """Floats without ties (top-k, arg-extrema, max pooling and their gradients)."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) / max(n, 1) - 0.5).astype(dtype)


@dataclasses.dataclass(frozen=True)
class Case:
    """One op's conformance entry.

    Attributes:
      op: the TF op that the traced graph must contain.
      fn: a TF function of the inputs (returns a tensor or a tuple of tensors).
      shapes: input shape tuples to try, one tuple of shapes per trial.
      dtypes: dtypes to try: a dtype name for every input, or a tuple of one per input.
      sample: a sampler for every input, or a tuple of one per input.
      grad: compare gradients too (for float inputs and outputs).
      rtol, atol: tolerances (float16/bfloat16 trials loosen them).
      name: the test id (defaults to ``op``).
      xfail: a reason when the conversion is known to differ from TF.
      batched: the leading axis is a batch axis: the op also converts with it symbolic
        (false where the graph fixes it, e.g. a constant output shape).
      symbolic_xfail: a reason when only the symbolic-batch conversion is known to fail.
      grad_reference: a TF function equal to ``fn`` whose gradient TF computes on every
        CPU, for ops whose own gradient kernel exists only in TF's oneDNN build (dilated
        and grouped ``Conv2D``): without oneDNN (CPUs without AVX-512, or
        ``TF_ENABLE_ONEDNN_OPTS=0``) TF refuses them. Its outputs are checked against
        ``fn``'s, then its gradient is the reference.
    """

    op: str
    fn: Callable[..., Any]
    shapes: Sequence[Sequence[tuple]] = (((2, 3),), ((4, 1, 5),))
    dtypes: Sequence[Any] = ("float32",)
    sample: Any = normal
    grad: bool = True
    rtol: float = 1e-5
    atol: float = 1e-5
    name: str = ""
    xfail: str | None = None
    batched: bool = True
    symbolic_xfail: str | None = None
    grad_reference: Callable[..., Any] | None = None


def params(cases: Sequence[Case]) -> list:
    """``pytest.param`` objects: one per case, shape set and dtype, with readable ids."""
    out = []
    for case in cases:
        for shapes in case.shapes:
            for dtypes in case.dtypes:
                marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
                shape_id = "_".join("x".join(map(str, s)) or "scalar" for s in shapes)
                dtype_id = dtypes if isinstance(dtypes, str) else "_".join(dtypes)
                out.append(pytest.param(case, tuple(shapes), dtypes, marks=marks,
                                        id=f"{case.name or case.op}-{shape_id}-{dtype_id}"))
    return out


def ops_of(cases: Sequence[Case]) -> set[str]:
    return {case.op for case in cases}


def _per_input(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _is_float(dtype) -> bool:
    return np.issubdtype(np.dtype(dtype), np.floating) or np.dtype(dtype) == jnp.bfloat16


def _graph_ops(graph_def) -> set[str]:
    ops = {n.op for n in graph_def.node}
    for fn in graph_def.library.function:
        ops |= {n.op for n in fn.node_def}
    return ops


def _tolerances(case: Case, dtypes: Sequence[np.dtype]) -> tuple[float, float]:
    if any(np.dtype(d).itemsize == 2 and _is_float(d) for d in dtypes):
        return max(case.rtol, 1e-2), max(case.atol, 1e-2)
    return case.rtol, case.atol


def convert(case: Case, shapes: Sequence[tuple], dtypes: Sequence[Any]):
    """The TF concrete function of ``case`` and its conversion ``f(*args) -> outputs``."""
    specs = [tf.TensorSpec(s, tf.as_dtype(d)) for s, d in zip(shapes, dtypes)]
    # A lambda hides optional arguments (``name=``) of TF API functions from tf.function.
    concrete = tf.function(lambda *xs: case.fn(*xs)).get_concrete_function(*specs)
    graph_def = concrete.graph.as_graph_def()
    assert case.op in _graph_ops(graph_def), (
        f"the graph does not use {case.op}: {sorted(_graph_ops(graph_def))}")
    run = run_graph(graph_def, [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    return concrete, lambda *args: run({}, list(args))[0]


def check(case: Case, shapes: Sequence[tuple], dtypes: Any, seed: int = 0) -> None:
    """Asserts that the converted op matches TF in values, dtypes and gradients."""
    dtypes = [np.dtype(jnp.bfloat16) if d == "bfloat16" else np.dtype(d)
              for d in _per_input(dtypes, len(shapes))]
    samplers = _per_input(case.sample, len(shapes))
    rng = np.random.default_rng(seed)
    args = [sample(rng, tuple(s), d) for sample, s, d in zip(samplers, shapes, dtypes)]
    concrete, converted = convert(case, shapes, dtypes)
    rtol, atol = _tolerances(case, dtypes)

    expected = [t.numpy() for t in tf.nest.flatten(concrete(*[tf.constant(a) for a in args]))]
    got = jax.jit(converted)(*args)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.shape(g) == e.shape
        assert np.dtype(g.dtype) == jax.dtypes.canonicalize_dtype(e.dtype), (g.dtype, e.dtype)
        np.testing.assert_allclose(np.asarray(g, np.float64) if _is_float(e.dtype) else g,
                                   np.asarray(e, np.float64) if _is_float(e.dtype) else e,
                                   rtol=rtol, atol=atol)

    wrt = [i for i, d in enumerate(dtypes) if _is_float(d)]
    float_outputs = [i for i, e in enumerate(expected) if _is_float(e.dtype)]
    if case.grad and wrt and float_outputs:
        reference = concrete
        if case.grad_reference is not None:
            reference = case.grad_reference
            for r, e in zip(tf.nest.flatten(reference(*[tf.constant(a) for a in args])),
                            expected):
                np.testing.assert_allclose(r.numpy(), e, rtol=rtol, atol=atol,
                                           err_msg="grad_reference differs from the op")
        _check_gradients(reference, converted, args, wrt, float_outputs, expected, rtol, atol)


def _check_gradients(reference, converted, args, wrt, float_outputs, expected, rtol, atol):
    rng = np.random.default_rng(1)
    cts = {i: rng.standard_normal(expected[i].shape).astype(np.float32) for i in float_outputs}

    tensors = [tf.constant(a) for a in args]
    with tf.GradientTape() as tape:
        for i in wrt:
            tape.watch(tensors[i])
        outputs = tf.nest.flatten(reference(*tensors))
        loss = tf.add_n([tf.reduce_sum(tf.cast(outputs[i], tf.float32) * cts[i])
                         for i in float_outputs])
    tf_grads = tape.gradient(loss, [tensors[i] for i in wrt],
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def loss_fn(diff):
        full = list(args)
        for i, value in zip(wrt, diff):
            full[i] = value
        outs = converted(*full)
        return sum(jnp.sum(outs[i].astype(jnp.float32) * cts[i]) for i in float_outputs)

    jax_grads = jax.jit(jax.grad(loss_fn))([jnp.asarray(args[i]) for i in wrt])
    for g, t in zip(jax_grads, tf_grads):
        t = tf.convert_to_tensor(t)  # dense, also from a gather's gradient (IndexedSlices)
        np.testing.assert_allclose(np.asarray(g, np.float64), t.numpy().astype(np.float64),
                                   rtol=max(rtol, 1e-4), atol=max(atol, 1e-4))


def assert_vjp_matches_tf(concrete, vjp_fn, x: np.ndarray, cotangent: np.ndarray) -> None:
    """``vjp_fn(cotangent)`` (a converted one-input op's VJP at ``x``) equals TF's gradient."""
    tx = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tx)
        y = concrete(tx)
    np.testing.assert_allclose(vjp_fn(cotangent)[0], tape.gradient(y, tx, cotangent),
                               rtol=1e-5, atol=1e-6)


def check_symbolic_batch(case: Case, shapes: Sequence[tuple], dtypes: Any,
                         batch: int = 3) -> None:
    """Asserts that the op converts with a symbolic batch size and matches TF on a batch.

    Every input whose leading axis has the first input's size is batched: that axis is
    unknown to TF (``None``) and one symbolic dimension for ``jax.export``; the exported
    function then runs on a batch of ``batch``.
    """
    from jax import export  # local: only this check needs it

    dtypes = [np.dtype(jnp.bfloat16) if d == "bfloat16" else np.dtype(d)
              for d in _per_input(dtypes, len(shapes))]
    samplers = _per_input(case.sample, len(shapes))
    shapes = [tuple(s) for s in shapes]
    batched = [bool(s) and s[0] == shapes[0][0] for s in shapes]
    b, = export.symbolic_shape("b")

    def with_batch(shape, is_batched, size):
        return (size,) + shape[1:] if is_batched else shape

    rng = np.random.default_rng(0)
    args = [sample(rng, with_batch(s, x, batch), d)
            for sample, s, x, d in zip(samplers, shapes, batched, dtypes)]
    specs = [tf.TensorSpec(with_batch(s, x, None), tf.as_dtype(d))
             for s, x, d in zip(shapes, batched, dtypes)]
    concrete = tf.function(lambda *xs: case.fn(*xs)).get_concrete_function(*specs)
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    abstract = [jax.ShapeDtypeStruct(with_batch(s, x, b), d)
                for s, x, d in zip(shapes, batched, dtypes)]
    exported = export.export(jax.jit(lambda *xs: run({}, list(xs))[0]))(*abstract)
    got = exported.call(*args)
    expected = [t.numpy() for t in tf.nest.flatten(concrete(*[tf.constant(a) for a in args]))]
    rtol, atol = _tolerances(case, dtypes)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.shape(g) == e.shape
        np.testing.assert_allclose(np.asarray(g, np.float64) if _is_float(e.dtype) else g,
                                   np.asarray(e, np.float64) if _is_float(e.dtype) else e,
                                   rtol=rtol, atol=atol)
