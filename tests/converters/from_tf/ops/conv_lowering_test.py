"""The convolution lowerings with written-out VJPs as modules use them: gradients under a
symbolic batch size, and the shape of the program the depthwise one produces (no gathers
or scatters, one padded cotangent)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from jax import export
from jax.extend.core import jaxprs_in_params

from jaxhub_tf.from_tf.interpreter import run_graph
from jaxhub_tf.from_tf.ops import conv
from tests.converters.from_tf.ops._conformance import Case
from tests.converters.from_tf.ops.conv_test import (CONV, DEPTHWISE, _undilated,
                                                    phases_read_twice)

# Shifted depthwise convs, 1x1 convs (matrix products), convs whose output is smaller
# than the window (patches), convs with few outputs (tap projections), with few inputs
# (broadcast multiply-adds), and the others (``lax`` convs; over one input channel, a
# kernel gradient of stacked taps' products; unpadded ones with a cell of padding), 3-D
# convs as 2-D ones per depth tap.
_LOWERED = ([case for case in DEPTHWISE
             if case.op == "DepthwiseConv2dNative" and case.name != "Depthwise-7x7"] +
            [case for case in CONV if case.name in {
                "Conv2D-1x1", "Conv2D-1x1-s2", "Conv2D-small-map", "Conv2D-small-map-s2",
                "Conv2D-kernel-spans-axis", "Conv2D-framed", "Conv2D-overlapping-frames",
                "Conv2D-overlapping-windows",
                "Conv1D-long-window", "Conv2D-few-outputs", "Conv2D-few-outputs-s2",
                "Conv2D-few-outputs-explicit", "Conv2D-few-inputs", "Conv2D-few-inputs-s2",
                "Conv2D-few-inputs-explicit-wide", "Conv2D-same", "Conv2D-valid-s2",
                "Conv2D-explicit", "Conv2D-one-channel", "Conv2D-one-channel-valid",
                "Conv2D-valid-narrow-s2", "Conv2D-valid-narrow-dilated", "Conv2D-valid-wide",
                "Conv2D-one-channel-s2", "Conv2D-valid", "Conv1D-valid", "Conv1D-dilated",
                "Conv3D-valid", "Conv2D-spanned-axes", "Conv2D-spanned-axis-strided",
                "Conv1D-spanned", "Conv2D-same-wide", "Conv2D-same-wide-s2",
                "Conv2D-dilated-wide", "Conv2D-explicit-wide"} or case.op == "Conv3D"])


def _params():
    return [pytest.param(case, shapes, id=f"{case.name or case.op}-" +
                         "_".join("x".join(map(str, s)) for s in shapes))
            for case in _LOWERED for shapes in case.shapes]


def _converted(case, x_shape, k_shape, unknown=1):
    """The converted op as ``f(x, kernel)``, traced from TF with the first ``unknown``
    sizes of ``x`` unknown (the batch size, by default)."""
    specs = [tf.TensorSpec((None,) * unknown + tuple(x_shape[unknown:]), tf.float32),
             tf.TensorSpec(k_shape, tf.float32)]
    concrete = tf.function(lambda x, k: case.fn(x, k)).get_concrete_function(*specs)
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    return concrete, lambda x, k: run({}, [x, k])[0][0]


def _loss(f, cotangent):
    return lambda x, k: jnp.sum(f(x, k) * cotangent)


@pytest.mark.parametrize("case,shapes", _params())
def test_gradients_with_symbolic_batch_match_tensorflow(case, shapes):
    """``jax.grad`` exported with a symbolic batch (as modules are) equals TF's gradients
    (of the case's ``grad_reference`` where only TF's oneDNN build differentiates the op)."""
    _assert_exported_gradients_match_tensorflow(case, shapes)


def _assert_exported_gradients_match_tensorflow(case, shapes):
    x_shape, k_shape = shapes
    batch = 3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + tuple(x_shape[1:])).astype(np.float32)
    k = rng.standard_normal(k_shape).astype(np.float32)
    concrete, f = _converted(case, x_shape, k_shape)
    y = concrete(tf.constant(x), tf.constant(k))
    cotangent = rng.standard_normal(y.shape[1:]).astype(np.float32)  # broadcast over batch

    tx, tk = tf.constant(x), tf.constant(k)
    reference = case.grad_reference or concrete
    with tf.GradientTape() as tape:
        tape.watch([tx, tk])
        loss = tf.reduce_sum(reference(tx, tk) * cotangent)
    expected = tape.gradient(loss, [tx, tk])

    b, = export.symbolic_shape("b")
    grad = jax.jit(jax.grad(_loss(f, cotangent), argnums=(0, 1)))
    exported = export.export(grad)(jax.ShapeDtypeStruct((b,) + tuple(x_shape[1:]), np.float32),
                                   jax.ShapeDtypeStruct(k_shape, np.float32))
    got = exported.call(x, k)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g), e.numpy(), rtol=1e-4, atol=1e-4)


def _primitives(jaxpr) -> list[str]:
    return [eqn.primitive.name for eqn in _equations(jaxpr)]


def _equations(jaxpr, cpu_only: bool = True) -> list:
    """Every equation of ``jaxpr``, those of its sub-jaxprs (custom VJPs, jits) too; of a
    per-platform choice's branches only the CPU one if ``cpu_only``."""
    eqns = []
    for eqn in jaxpr.eqns:
        eqns.append(eqn)
        for sub in cpu_only and _cpu_branch(eqn) or jaxprs_in_params(eqn.params):
            eqns += _equations(sub, cpu_only)
    return eqns


def _cpu_branch(eqn) -> list:
    """``[the CPU branch]`` of a per-platform ``cond``, else ``[]``."""
    platforms = eqn.params.get("branches_platforms") if eqn.primitive.name == "cond" else None
    if not platforms:
        return []
    (branch,) = [b for b, names in zip(eqn.params["branches"], platforms)
                 if names and "cpu" in names]
    return [branch.jaxpr]


# Kernel gradients that take the stretched convolution on CPU (2-D, ungrouped, more than
# one tap along each axis): padded, unpadded, strided.
_STRETCHED = [
    Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"),
         (((2, 8, 8, 16), (3, 3, 16, 16)),), name="Conv2D-3x3"),
    Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, 1, "VALID"),
         (((2, 9, 8, 40), (3, 2, 40, 24)),), name="Conv2D-3x2-valid"),
    Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, 2, "SAME"),
         (((2, 9, 10, 16), (3, 3, 16, 8)),), name="Conv2D-3x3-s2"),
]


@pytest.mark.parametrize("case", _STRETCHED, ids=lambda case: case.name)
@pytest.mark.parametrize("unknown", [1, 3], ids=["symbolic-batch", "symbolic-sizes"])
def test_stretched_kernel_gradient_is_taken_on_cpu_only(case, unknown):
    """A module is exported for every platform, and the stretched kernel gradient (a
    base-dilated convolution, which GPU libraries do not take) is its CPU branch only:
    elsewhere the kernel gradient is XLA's own convolution. On CPU the choice is folded
    away before the program runs, and the module computes what the jitted op does."""
    ((x_shape, k_shape),) = case.shapes
    _, f = _converted(case, x_shape, k_shape, unknown=unknown)
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    k = np.random.default_rng(1).standard_normal(k_shape).astype(np.float32)
    loss = jax.jit(jax.value_and_grad(lambda x, k: jnp.sum(jnp.sin(f(x, k))), argnums=(0, 1)))
    jaxpr = jax.make_jaxpr(loss)(x, k).jaxpr
    stretched = [e for e in _equations(jaxpr) if e.primitive.name == "conv_general_dilated"
                 and set(e.params["lhs_dilation"]) != {1}]
    elsewhere = [e for e in _equations_elsewhere(jaxpr)
                 if e.primitive.name == "conv_general_dilated"]
    assert stretched and elsewhere
    assert all(set(e.params["lhs_dilation"]) == {1} for e in elsewhere)

    exported = export.export(loss, platforms=("cpu", "cuda", "tpu"))(x, k)
    assert "stablehlo.case" in exported.mlir_module()
    assert "conditional" not in jax.jit(exported.call).lower(x, k).compile().as_text()
    for got, want in zip(jax.tree.leaves(exported.call(x, k)), jax.tree.leaves(loss(x, k))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case,shapes", [
    pytest.param(case, shapes, id=case.name) for case in _STRETCHED for shapes in case.shapes])
def test_other_platforms_kernel_gradient_matches_tensorflow(case, shapes, monkeypatch):
    """The kernel gradient a module takes on GPUs and TPUs, run here on CPU, is TF's."""
    monkeypatch.setattr(conv, "TUNED_PLATFORMS", ())
    _assert_exported_gradients_match_tensorflow(case, shapes)


def _equations_elsewhere(jaxpr) -> list:
    """The equations of the branches of ``jaxpr``'s per-platform choices that do not run
    on CPU."""
    found = []
    for eqn in _equations(jaxpr, cpu_only=False):
        platforms = eqn.params.get("branches_platforms") if eqn.primitive.name == "cond" else ()
        for branch, names in zip(eqn.params["branches"] if platforms else (), platforms or ()):
            if not names or "cpu" not in names:
                found += _equations(branch.jaxpr, cpu_only=False)
    return found


@pytest.mark.parametrize("strides,window", [(1, 3), (2, 3), (1, 5), (2, 5)])
def test_gradient_pads_the_cotangent_once_and_never_gathers(strides, window):
    """The VJP is written out: the taps' slices do not each transpose into a ``pad`` of the
    cotangent, and strided slices stay slices under a symbolic batch (no gather/scatter)."""
    x_shape, k_shape = (2, 12, 12, 4), (window, window, 4, 1)
    case = Case("DepthwiseConv2dNative", lambda x, k: tf.nn.depthwise_conv2d(
        x, k, [1, strides, strides, 1], "SAME"))
    _, f = _converted(case, x_shape, k_shape)
    b, = export.symbolic_shape("b")
    args = (jax.ShapeDtypeStruct((b,) + x_shape[1:], np.float32),
            jax.ShapeDtypeStruct(k_shape, np.float32))
    cotangent = np.ones((), np.float32)
    jaxpr = jax.make_jaxpr(jax.grad(_loss(f, cotangent), argnums=(0, 1)))(*args).jaxpr
    primitives = _primitives(jaxpr)
    # The input (forward) and the cotangent, once each; with strides, one interior pad per
    # phase puts the input gradient's phases back in place. None per tap.
    assert primitives.count("pad") <= 2 + (strides * strides if strides > 1 else 0), primitives
    assert not {"gather", "scatter", "scatter-add"} & set(primitives), primitives


def _tf_value_and_grads(fn, x, k):
    """TF's ``fn(x, k)`` and the gradients of ``sum(sin(fn(x, k)))``."""
    tx, tk = tf.constant(x), tf.constant(k)
    with tf.GradientTape() as tape:
        tape.watch([tx, tk])
        y = fn(tx, tk)
        loss = tf.reduce_sum(tf.sin(y))
    return y, tape.gradient(loss, [tx, tk])


def _exported_matches_tf(f, specs, args, y, expected) -> export.Exported:
    """Asserts that ``f`` and the gradients of ``sum(sin(f))``, exported for ``specs``,
    give TF's ``y`` and ``expected`` on ``args``; returns the exported gradient."""
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(f(x, k))), argnums=(0, 1)))
    value, gradient = (export.export(fn)(*specs) for fn in (jax.jit(f), grad))
    np.testing.assert_allclose(np.asarray(value.call(*args)), y.numpy(), rtol=1e-4, atol=1e-4)
    for g, e in zip(gradient.call(*args), expected):
        np.testing.assert_allclose(np.asarray(g), e.numpy(), rtol=1e-4, atol=1e-4)
    return gradient


def _converted_matches_tf(fn, op: str, x_shape, k_shape):
    """Converts TF's ``fn(x, kernel)`` (one ``op``) with a symbolic batch and asserts
    :func:`_exported_matches_tf` on random ``x`` and kernel; returns the converted
    ``f``, those args and the exported gradient."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal(k_shape).astype(np.float32)
    concrete, f = _converted(Case(op, fn), x_shape, k_shape)
    y, expected = _tf_value_and_grads(concrete, x, k)
    b, = export.symbolic_shape("b")
    specs = (jax.ShapeDtypeStruct((b,) + tuple(x_shape[1:]), np.float32),
             jax.ShapeDtypeStruct(k_shape, np.float32))
    return f, (x, k), _exported_matches_tf(f, specs, (x, k), y, expected)


#: conv kind -> (TF function of (x, kernel, strides, padding), x's shape, kernel's shape).
_SYMBOLIC_CONVS = {
    "plain": (lambda x, k, s, p: tf.nn.conv2d(x, k, s, p), (2, 3, 4, 3), (3, 3, 3, 5)),
    # Two groups of 2 input channels, 3 outputs each.
    "grouped": (lambda x, k, s, p: tf.nn.conv2d(x, k, s, p), (2, 7, 6, 4), (3, 3, 2, 6)),
    "depthwise": (lambda x, k, s, p: tf.nn.depthwise_conv2d(x, k, [1, s, s, 1], p),
                  (2, 7, 6, 4), (3, 3, 4, 2)),
}


def _conv_per_group(x, k, strides, padding):
    """A grouped conv as one conv per group, concatenated: TF's own (Eigen) kernels, which
    it runs with oneDNN off, have no gradient for a grouped Conv2D."""
    groups = x.shape[-1] // k.shape[2]
    return tf.concat([tf.nn.conv2d(xg, kg, strides, padding) for xg, kg in
                      zip(tf.split(x, groups, axis=-1), tf.split(k, groups, axis=-1))], -1)


#: conv kind -> TF's reference formulation, where it is not the converted graph itself.
_SYMBOLIC_REFERENCES = {"grouped": _conv_per_group}


@pytest.mark.parametrize("kind", sorted(_SYMBOLIC_CONVS))
@pytest.mark.parametrize("strides,padding", [(1, "SAME"), (2, "SAME"), (2, "VALID")])
def test_symbolic_height_and_width_convert_and_match_tensorflow(kind, strides, padding):
    """A conv (plain, grouped or depthwise) traced with unknown batch, height and width
    (input ``[None, None, None, C]``) converts, and exported with all three symbolic gives
    TF's values and gradients; the plain one on a map small enough that a static size
    would take the patches lowering."""
    fn, x_shape, k_shape = _SYMBOLIC_CONVS[kind]
    case = Case("Conv2D", lambda x, k: fn(x, k, strides, padding))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal(k_shape).astype(np.float32)
    concrete, f = _converted(case, x_shape, k_shape, unknown=3)
    reference = _SYMBOLIC_REFERENCES.get(kind)
    y, expected = _tf_value_and_grads(
        concrete if reference is None else lambda x, k: reference(x, k, strides, padding),
        x, k)

    b, h, w = export.symbolic_shape("b, h, w")
    x_spec = jax.ShapeDtypeStruct((b, h, w, x_shape[3]), np.float32)
    k_spec = jax.ShapeDtypeStruct(k_shape, np.float32)
    _exported_matches_tf(f, (x_spec, k_spec), (x, k), y, expected)


# The kernel gradient's padding: the conv's, twice as wide along the width, which the
# kernel gradient stretches twofold (``_inflated_conv``).
@pytest.mark.parametrize("padding,dilations,k_shape,border", [
    ("SAME", 1, (3, 3, 6, 5), "[[1, 1], [2, 2]]"),
    ("SAME", 1, (2, 2, 9, 5), "[[0, 1], [0, 2]]"),  # even: padded at the end alone
    ("SAME", 2, (3, 3, 6, 5), "[[2, 2], [4, 4]]"),
    ([[0, 0], [2, 1], [1, 0], [0, 0]], 1, (3, 3, 6, 5), "[[2, 1], [2, 0]]"),
])
def test_symbolic_sized_kernel_gradient_convolves_the_unpadded_input(padding, dilations,
                                                                      k_shape, border):
    """A stride-1 conv traced with unknown batch, height and width gives TF's values and
    gradients, and its kernel gradient is one convolution of the unpadded input with the
    conv's padding, not of the padded input with a cell of padding and a row cut off
    (XLA:CPU ran that 1.3-1.5 times slower, ``benchmarks/PROFILE.md`` section 20), and
    stretched along the width (a base dilation, which keeps it off YNNPACK)."""
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, 1, padding, dilations=dilations))
    x_shape = (2, 7, 6, k_shape[2])
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal(k_shape).astype(np.float32)
    concrete, f = _converted(case, x_shape, k_shape, unknown=3)
    # TF differentiates a dilated conv only with oneDNN; its dense equivalent everywhere.
    reference = concrete if dilations == 1 else (
        lambda x, k: tf.nn.conv2d(x, _undilated(k, dilations), 1, padding))
    y, expected = _tf_value_and_grads(reference, x, k)

    b, h, w = export.symbolic_shape("b, h, w")
    x_spec = jax.ShapeDtypeStruct((b, h, w, x_shape[3]), np.float32)
    k_spec = jax.ShapeDtypeStruct(k_shape, np.float32)
    gradient = _exported_matches_tf(f, (x_spec, k_spec), (x, k), y, expected)
    kernel_grad = jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=1))
    text = export.export(kernel_grad)(x_spec, k_spec).mlir_module()
    convs = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    assert len(convs) == 1 and f"pad = {border}, lhs_dilate = [1, 2]" in convs[0], convs


@pytest.mark.parametrize("x_shape,k_shape,convolutions", [
    ((2, 9, 24, 1), (1, 24, 1, 6), 0),  # crema's 1x216 over its frequency bins: a product
    ((2, 9, 24, 2), (3, 24, 2, 4), 3),  # 7x561 over 561 bins: a 3x1 conv over 48 channels
])
def test_kernel_spanning_an_axis_with_symbolic_batch_and_time_is_a_product(
        x_shape, k_shape, convolutions):
    """A ``VALID`` conv whose kernel spans the frequency axis, traced with unknown batch
    and time, folds that axis into the channels: TF's values and gradients, and no
    convolution forward or backward at all when the kernel is one frame tall, where XLA's
    own gradient of the conv took 4.5 s at batch 32 (``benchmarks/PROFILE.md``)."""
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, 1, "VALID"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal(k_shape).astype(np.float32)
    concrete, f = _converted(case, x_shape, k_shape, unknown=2)
    y, expected = _tf_value_and_grads(concrete, x, k)

    b, t = export.symbolic_shape("b, t")
    x_spec = jax.ShapeDtypeStruct((b, t) + x_shape[2:], np.float32)
    k_spec = jax.ShapeDtypeStruct(k_shape, np.float32)
    gradient = _exported_matches_tf(f, (x_spec, k_spec), (x, k), y, expected)
    assert gradient.mlir_module().count("stablehlo.convolution") == convolutions


def test_kernel_spanning_an_axis_in_nchw_matches_tensorflow():
    """Channels first, the spanned axis folds in after the channels: TF's values and
    gradients (computed in NHWC, which TF runs on every CPU)."""
    x_shape, k_shape = (2, 3, 7, 10), (3, 10, 3, 4)
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, 1, "VALID", data_format="NCHW"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal(k_shape).astype(np.float32)
    _, f = _converted(case, x_shape, k_shape)
    y, expected = _tf_value_and_grads(lambda x, k: tf.transpose(tf.nn.conv2d(
        tf.transpose(x, [0, 2, 3, 1]), k, 1, "VALID"), [0, 3, 1, 2]), x, k)
    np.testing.assert_allclose(np.asarray(jax.jit(f)(x, k)), y.numpy(), rtol=1e-4, atol=1e-4)
    got = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(f(x, k))), argnums=(0, 1)))(x, k)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g), e.numpy(), rtol=1e-4, atol=1e-4)


def _stablehlo_ops(f, *args) -> int:
    text = jax.jit(f).lower(*args).as_text()
    return sum(1 for line in text.splitlines() if "= stablehlo." in line)


@pytest.mark.parametrize("x_shape,k_shape,strides", [
    ((1, 20, 161, 1), (7, 161, 1, 4), 1),    # a kernel spanning the frequency axis
    ((1, 1, 4096, 1), (1, 256, 1, 8), [1, 256]),  # framed audio: stride = window
    ((1, 1, 4096, 1), (1, 256, 1, 8), [1, 64]),   # overlapping frames
    ((1, 1, 427, 1), (1, 256, 1, 8), 1),          # more windows and taps than slices pay
])
def test_large_kernel_program_does_not_grow_with_the_kernel(x_shape, k_shape, strides):
    """A conv whose output is smaller than its large window lowers to a few dozen
    StableHLO ops, forward and gradient, however many taps it has (one slice per tap
    made tens of thousands of ops and minutes of compilation on audio models)."""
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, strides, "VALID"))
    _, f = _converted(case, x_shape, k_shape)
    x = jax.ShapeDtypeStruct(x_shape, np.float32)
    k = jax.ShapeDtypeStruct(k_shape, np.float32)
    forward = _stablehlo_ops(f, x, k)
    backward = _stablehlo_ops(jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=(0, 1)), x, k)
    # One slice per tap gave 275 and 1,308 ops for the framed case, and 1,127 slices
    # forward for the first.
    assert forward <= 30, forward
    assert backward <= 80, backward


@pytest.mark.parametrize("x_shape,k_shape,strides,padding,convolutions", [
    ((2, 12, 24, 1), (3, 15, 1, 4), 1, "VALID", 1),  # 15 taps over 24 bins: XLA's conv
    ((2, 1, 21, 8), (1, 12, 8, 6), 1, "VALID", 1),
    ((2, 12, 24, 1), (3, 15, 1, 4), 2, "VALID", 0),  # strided windows (frames): patches
    ((2, 2, 3, 4), (3, 3, 4, 6), 1, "SAME", 0),      # 9 taps over 6 positions: swapped
])
def test_output_smaller_than_window_runs_as_convolution_unless_swapped_or_framed(
        x_shape, k_shape, strides, padding, convolutions):
    """A conv whose output is smaller than its window is XLA's convolution forward at
    stride 1 when its window holds fewer taps than the input has positions (the patches
    copy the input once per tap: 1.8 times slower for an audio front end's 7x67), else
    patches times the kernel matrix; the gradient is the patches' in both cases (no
    convolution: their routes were slower there)."""
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, strides, padding))
    _, f = _converted(case, x_shape, k_shape)
    x = jax.ShapeDtypeStruct(x_shape, np.float32)
    k = jax.ShapeDtypeStruct(k_shape, np.float32)
    forward = jax.jit(f).lower(x, k).as_text()
    assert forward.count("stablehlo.convolution") == convolutions
    assert ("stablehlo.dot_general" in forward) == (convolutions == 0)
    grad = jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=(0, 1))
    backward = jax.jit(grad).lower(x, k).as_text()
    assert "stablehlo.convolution" not in backward


@pytest.mark.parametrize("x_shape,k_shape,strides,most_slices", [
    ((2, 64, 16, 8), (3, 3, 8, 1), 1, 280),    # was 882 slices, 5,160 ops
    ((2, 48, 48, 4), (3, 3, 4, 1), 2, 360),    # was 666 slices, 3,923 ops
    ((2, 37, 9, 4), (5, 5, 4, 2), 1, 320),     # rows left over; was 1,175 slices, 6,993 ops
])
def test_depthwise_gradient_slices_each_window_once(x_shape, k_shape, strides, most_slices):
    """A depthwise conv's gradient, exported with a symbolic batch as modules are, takes
    each distinct window of the input (and each row group of the cotangent) once: its
    kernel gradient's fused row sums used to slice anew for every tap and row, and under
    a symbolic batch every slice is a dynamic slice with its shape arithmetic (a shipped
    CNN's backward half: 6,270 slices, 37k StableHLO ops, most of its conversion time)."""
    case = Case("DepthwiseConv2dNative", lambda x, k: tf.nn.depthwise_conv2d(
        x, k, [1, strides, strides, 1], "SAME"))
    _, f = _converted(case, x_shape, k_shape)
    b, = export.symbolic_shape("b")
    args = (jax.ShapeDtypeStruct((b,) + x_shape[1:], np.float32),
            jax.ShapeDtypeStruct(k_shape, np.float32))
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=(0, 1)))
    text = export.export(grad)(*args).mlir_module()
    slices = text.count("stablehlo.real_dynamic_slice")
    assert slices <= most_slices, slices
    assert sum("= stablehlo." in line for line in text.splitlines()) <= 10 * most_slices


@pytest.mark.parametrize("x_shape,k_shape,strides", [
    ((2, 20, 16, 33), (3, 3, 33, 1), 1),   # a 3x3 head with one output channel
    ((2, 20, 16, 32), (7, 3, 32, 1), 1),
    ((2, 20, 16, 12), (3, 3, 12, 1), 2),
])
def test_few_output_conv_runs_as_products_forward_and_backward(x_shape, k_shape, strides):
    """A conv whose taps x output channels are at most its input channels is one product
    with every tap's matrix and shifted sums, and its gradient is two products: no
    ``convolution`` at all (XLA:CPU runs one-output-channel convs at a fraction of its
    speed), and no slice of the product padded back to full size per tap."""
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, strides, "SAME"))
    _, f = _converted(case, x_shape, k_shape)
    x = jax.ShapeDtypeStruct(x_shape, np.float32)
    k = jax.ShapeDtypeStruct(k_shape, np.float32)
    grad = jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=(0, 1))
    for fn in (f, grad):
        text = jax.jit(fn).lower(x, k).as_text()
        assert "stablehlo.convolution" not in text
        assert "stablehlo.dot_general" in text
    taps = k_shape[0] * k_shape[1]
    backward = jax.jit(grad).lower(x, k).as_text()
    # One padded cotangent; autodiff of the slices padded each tap's slice.
    assert backward.count("stablehlo.pad") < taps, backward.count("stablehlo.pad")


@pytest.mark.parametrize("x_shape,k_shape", [
    ((2, 40, 64, 1), (1, 5, 1, 4)),   # an audio front end: 5 taps over one band
    ((2, 40, 64, 4), (1, 3, 4, 4)),
    ((2, 16, 16, 3), (3, 3, 3, 3)),   # an RGB stem
    ((2, 8, 40, 2), (1, 16, 2, 2)),   # 16 taps over two bands
    ((2, 8, 12, 4), (1, 2, 4, 16)),   # two taps to 16 channels
])
def test_few_input_conv_runs_as_multiply_adds_forward_and_input_gradient(x_shape, k_shape):
    """A conv whose taps x input channels are few is broadcast multiply-adds, and so is
    its stride-1 input gradient: no ``convolution`` in either (XLA:CPU runs convs over a
    few channels 10-40 times below its speed). Its kernel gradient is over one input
    channel the stacked taps' product, up to 9 taps to 16 or more outputs the patches'
    product, else XLA's convolution."""
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))
    _, f = _converted(case, x_shape, k_shape)
    x = jax.ShapeDtypeStruct(x_shape, np.float32)
    k = jax.ShapeDtypeStruct(k_shape, np.float32)
    input_grad = jax.grad(lambda x, k: jnp.sum(f(x, k)))
    kernel_grad = jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=1)
    for fn in (f, input_grad):
        assert "stablehlo.convolution" not in jax.jit(fn).lower(x, k).as_text()
    kernel_program = jax.jit(kernel_grad).lower(x, k).as_text()
    kh, kw, c_in, c_out = k_shape
    convolutions = 0 if c_in == 1 or (kh * kw <= 9 and c_out >= 16) else 1
    assert kernel_program.count("stablehlo.convolution") == convolutions


def _max_over_width(x, k):
    """A front end: a conv over few input channels, ReLU, then a max pool over the whole
    width, which XLA:CPU runs as a YNNPACK fusion rooted at a reduction."""
    y = tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME"))
    return tf.nn.max_pool2d(y, [1, y.shape[2]], [1, y.shape[2]], "VALID")


@pytest.mark.parametrize("x_shape,k_shape", [
    ((2, 46, 46, 3), (3, 3, 3, 32)),   # an RGB stem
    ((2, 24, 48, 1), (16, 1, 1, 24)),  # an audio front end: 16 taps along time
])
def test_few_input_conv_before_a_reduction_is_computed_once_and_matches_tensorflow(
        x_shape, k_shape):
    """The multiply-adds of a few-input conv stay one loop, whose result alone has the
    conv's output shape in the compiled program: a YNNPACK fusion of the max that takes
    them in reads their broadcasts materialized, one array per tap (ten times slower).
    Values and gradients equal TF's, exported with a symbolic batch."""
    f, args, _ = _converted_matches_tf(_max_over_width, "Conv2D", x_shape, k_shape)
    compiled = jax.jit(f).lower(*args).compile().as_text()
    entry = compiled[compiled.index("ENTRY"):]
    conv_shape = "f32[{}]".format(",".join(map(str, x_shape[:3] + k_shape[3:])))
    assert entry.count(f" = {conv_shape}") <= 1, entry


def test_few_input_conv_keeps_nans_and_infinities_as_tensorflow():
    """The op that keeps the multiply-adds out of YNNPACK fusions (a clamp to the
    infinities) changes no value: NaNs and infinities in the input reach the outputs that
    read them, as in TF."""
    x_shape, k_shape = (2, 9, 10, 2), (3, 3, 2, 4)
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    x[0, 4, 5, 1], x[1, 2, 2, 0] = np.nan, np.inf
    k = np.abs(np.random.default_rng(1).standard_normal(k_shape)).astype(np.float32)
    concrete, f = _converted(Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, 1, "SAME")),
                             x_shape, k_shape)
    y = concrete(tf.constant(x), tf.constant(k)).numpy()
    assert np.isnan(y).any() and np.isinf(y).any()
    np.testing.assert_allclose(np.asarray(jax.jit(f)(x, k)), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_few_input_conv_with_symbolic_height_and_width_runs_as_multiply_adds(padding):
    """A stride-1 conv over few input channels with symbolic height and width (a fully
    convolutional detector's RGB stem) is broadcast multiply-adds too: no
    ``convolution`` forward. Its values and gradients are checked against TF by the
    symbolic-size tests above."""
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, 1, padding))
    _, f = _converted(case, (2, 12, 12, 3), (3, 3, 3, 10), unknown=3)
    b, h, w = export.symbolic_shape("b, h, w")
    x = jax.ShapeDtypeStruct((b, h, w, 3), np.float32)
    k = jax.ShapeDtypeStruct((3, 3, 3, 10), np.float32)
    assert "stablehlo.convolution" not in export.export(jax.jit(f))(x, k).mlir_module()


@pytest.mark.parametrize("symbolic", [False, True])
def test_unpadded_conv_input_gradient_keeps_one_cell_of_padding(symbolic):
    """The input gradient of a stride-1 VALID conv pads the cotangent by the window less
    one cell before its convolution, which keeps that cell: XLA folds a pad into the
    convolution after it, and one padded by the whole window runs on XLA:CPU's generic
    kernel instead of YNNPACK's."""
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, 1, "VALID"))
    _, f = _converted(case, (2, 9, 8, 16), (3, 3, 16, 8), unknown=3 if symbolic else 1)
    h, w = export.symbolic_shape("h, w") if symbolic else (9, 8)
    x = jax.ShapeDtypeStruct((2, h, w, 16), np.float32)
    k = jax.ShapeDtypeStruct((3, 3, 16, 8), np.float32)
    text = export.export(jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k)))))(x, k).mlir_module()
    convs = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    assert sum("pad = [[1, 1], [1, 1]]" in line for line in convs) == 1, convs
    assert not any("pad = [[2, 2], [2, 2]]" in line for line in convs), convs


@pytest.mark.parametrize("x_shape,k_shape,strides", [
    ((2, 1, 40, 40), (1, 5, 40, 48), 1),     # a Conv1D: a height of one output
    ((2, 9, 8, 40), (3, 3, 40, 48), 2),      # a stride's slack past the last window
    ((2, 7, 8, 40), (3, 3, 40, 48), 1),      # neither: one more output row, cut off
])
def test_unpadded_conv_and_its_kernel_gradient_run_padded(x_shape, k_shape, strides):
    """A VALID conv has a cell of padding: XLA:CPU's YNNPACK runs unpadded convs 2-4 times
    slower. Its kernel gradient's conv has the cell too (a Conv1D's) or is stretched
    along the width (a base dilation, which YNNPACK declines: XLA's Eigen kernel runs it,
    padded or not). Their values are checked against TF in ``conv_test.py``."""
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, strides, "VALID"))
    _, f = _converted(case, x_shape, k_shape)
    x = jax.ShapeDtypeStruct(x_shape, np.float32)
    k = jax.ShapeDtypeStruct(k_shape, np.float32)

    def convs(fn):
        return [line for line in jax.jit(fn).lower(x, k).as_text().splitlines()
                if "stablehlo.convolution" in line]

    forward = convs(f)
    assert forward and all("pad = [[0, 0], [0, 0]]" not in line for line in forward), forward
    kernel_grad = convs(jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=1))
    assert len(kernel_grad) == 1, kernel_grad
    if k_shape[0] == 1:
        assert "pad = [[0, 0], [0, 0]]" not in kernel_grad[0], kernel_grad
    else:
        assert "lhs_dilate = [1, 2]" in kernel_grad[0], kernel_grad


@pytest.mark.parametrize("padding,strides,k_shape", [
    ("SAME", 1, (3, 3, 40, 48)), ("SAME", 2, (3, 3, 40, 48)),
    ([[0, 0], [2, 0], [1, 3], [0, 0]], 1, (3, 3, 40, 16))])
def test_padded_conv_kernel_gradient_is_stretched_along_the_width(padding, strides, k_shape):
    """A padded conv (static sizes) keeps XLA's conv and input gradient; its kernel
    gradient is one convolution stretched along the width (a base dilation of 2, which
    keeps it off YNNPACK, 2-5 times slower there). Values: ``conv_test.py``."""
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, strides, padding))
    x_shape = (2, 9, 8, k_shape[2])
    _, f = _converted(case, x_shape, k_shape)
    x = jax.ShapeDtypeStruct(x_shape, np.float32)
    k = jax.ShapeDtypeStruct(k_shape, np.float32)
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=(0, 1)))
    convs = [line for line in grad.lower(x, k).as_text().splitlines()
             if "stablehlo.convolution" in line]
    assert len(convs) == 2 and sum("lhs_dilate = [1, 2]" in line for line in convs) == 1, convs


@pytest.mark.parametrize("x_shape,k_shape,strides", [
    ((2, 7, 8, 32), (3, 3, 32, 48), 1),   # 9 taps over 32 channels
    ((2, 9, 9, 8), (3, 3, 8, 16), 2),
    ((2, 1, 40, 16), (1, 9, 16, 24), 1),  # a Conv1D
])
def test_narrow_conv_kernel_gradient_is_one_product(x_shape, k_shape, strides):
    """The kernel gradient of a conv with at most 9 taps over at most 32 input channels,
    to at least 16 (unpadded or over few inputs), is the patches times the cotangent: no
    ``convolution`` (XLA:CPU's swapped one ran 2-3 times slower). Values: ``conv_test.py``."""
    case = Case("Conv2D", lambda x, k: tf.nn.conv2d(x, k, strides, "VALID"))
    _, f = _converted(case, x_shape, k_shape)
    x = jax.ShapeDtypeStruct(x_shape, np.float32)
    k = jax.ShapeDtypeStruct(k_shape, np.float32)
    text = jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=1)).lower(x, k).as_text()
    assert "stablehlo.convolution" not in text
    assert text.count("stablehlo.dot_general") == 1


@pytest.mark.parametrize("fn,x_shape,k_shape,rates", [
    (lambda x, k: tf.nn.convolution(x, k, padding="SAME", dilations=4),
     (2, 31, 8), (5, 8, 6), (1, 4)),  # a Keras Conv1D: ExpandDims and Squeeze inside
    (lambda x, k: tf.nn.convolution(x, k, padding="VALID", dilations=[2, 3]),
     (2, 11, 10, 8), (3, 3, 8, 6), (2, 3)),
])
def test_space_to_batch_trio_runs_as_one_dilated_conv(fn, x_shape, k_shape, rates):
    """TF's SpaceToBatchND -> unpadded conv -> BatchToSpaceND is one dilated convolution,
    without the phases' reshapes and transposes (XLA:CPU runs the trio several times
    slower). Values and gradients: ``conv_test.py``."""
    _, f = _converted(Case("SpaceToBatchND", fn), x_shape, k_shape)
    jaxpr = jax.make_jaxpr(f)(np.zeros(x_shape, np.float32), np.zeros(k_shape, np.float32))
    names = _primitives(jaxpr.jaxpr)
    convs = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name == "conv_general_dilated"]
    assert len(convs) == 1 and tuple(convs[0].params["rhs_dilation"]) == rates, names
    assert "transpose" not in names, names


def test_space_to_batch_trio_whose_phases_are_read_elsewhere_stays_three_ops():
    """Phases another op reads are computed anyway: the conv runs on them, undilated."""
    _, f = _converted(Case("SpaceToBatchND", phases_read_twice), (2, 5, 12, 8), (3, 3, 8, 6))
    jaxpr = jax.make_jaxpr(f)(np.zeros((2, 5, 12, 8), np.float32),
                              np.zeros((3, 3, 8, 6), np.float32))
    convs = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name == "conv_general_dilated"]
    assert convs and all(tuple(e.params["rhs_dilation"]) == (1, 1) for e in convs)


def _stablehlo_convs(fn, *args) -> list[str]:
    return [line for line in jax.jit(fn).lower(*args).as_text().splitlines()
            if "stablehlo.convolution" in line]


def test_conv3d_runs_as_one_2d_conv_forward_and_backward():
    """A 3-D conv is one 2-D convolution (its depth taps stacked in the channels), and its
    gradient one for the input and one per depth tap for the kernel (XLA:CPU runs 3-D
    ones several times slower, and 2-D ones over few channels too). Values:
    ``conv_test.py``."""
    case = Case("Conv3D", lambda x, k: tf.nn.conv3d(x, k, [1, 1, 1, 1, 1], "SAME"))
    _, f = _converted(case, (2, 6, 8, 8, 4), (3, 3, 3, 4, 8))
    x = jax.ShapeDtypeStruct((2, 6, 8, 8, 4), np.float32)
    k = jax.ShapeDtypeStruct((3, 3, 3, 4, 8), np.float32)
    for fn, count in ((f, 1), (jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=(0, 1)), 4)):
        convs = _stablehlo_convs(fn, x, k)
        # Spatial axes 0 and 1 only: no third, in the input's, kernel's or output's layout.
        layouts = [line.split("dim_numbers = ")[1].split(", window")[0] for line in convs]
        assert len(convs) == count and not any("2" in lay for lay in layouts), layouts


def test_transposed_conv3d_runs_as_one_stride_1_conv_to_its_phases():
    """A stride-2 transposed 3-D conv (a 3D U-Net's decoder) is one 2-D convolution without
    a dilated input (XLA:CPU's slow generic path), and so is the strided conv's input
    gradient. Values: ``conv_test.py``."""
    case = Case("Conv3DBackpropInputV2", lambda dy, k: tf.nn.conv3d_transpose(
        dy, k, [2, 8, 8, 8, 4], 2, "SAME"))
    _, f = _converted(case, (2, 4, 4, 4, 6), (3, 3, 3, 4, 6), unknown=0)
    dy = jax.ShapeDtypeStruct((2, 4, 4, 4, 6), np.float32)
    k = jax.ShapeDtypeStruct((3, 3, 3, 4, 6), np.float32)
    convs = _stablehlo_convs(f, dy, k)
    dilated = re.search(r"lhs_dilate = \[([^\]]*)\]", convs[0])
    assert len(convs) == 1 and (not dilated or dilated.group(1) == "1, 1"), convs


@pytest.mark.parametrize("fn,x_shape,k_shape", [
    # a 3D U-Net's 3x3x3 SAME conv over 8 channels (its stacked outputs 3x its output)
    (lambda x, k: tf.nn.conv3d(x, k, [1, 1, 1, 1, 1], "SAME"), (2, 5, 6, 7, 8), (3, 3, 3, 8, 4)),
    (lambda x, k: tf.nn.conv3d(x, k, [1, 1, 2, 1, 1], "VALID"), (2, 6, 7, 5, 6), (2, 3, 3, 6, 8)),
    # its decoder: the input gradient's stride-1 conv to all stride phases takes the slabs
    (lambda dy, k: tf.nn.conv3d_transpose(dy, k, tf.stack([tf.shape(dy)[0], 8, 6, 6, 2]), 2,
                                          "SAME"), (2, 4, 3, 3, 16), (3, 3, 3, 2, 16)),
])
def test_conv3d_with_many_stacked_outputs_runs_them_slab_by_slab(monkeypatch, fn, x_shape,
                                                                  k_shape):
    """A 3-D conv whose depth taps' stacked outputs would fill much memory computes them a
    slab of depth rows at a time in a loop, forward and in the input gradient (XLA:CPU
    gives a call's temporaries fresh memory: page faults on every call); exported with a
    symbolic batch it gives TF's values and gradients. The thresholds are lowered so that
    a small conv takes that path one depth row a slab."""
    monkeypatch.setattr(conv, "MIN_SLABBED_BYTES", 0)
    monkeypatch.setattr(conv, "MAX_SLAB_BYTES", 0)
    _, _, gradient = _converted_matches_tf(fn, "Conv3D", x_shape, k_shape)
    assert "stablehlo.while" in gradient.mlir_module()


@pytest.mark.parametrize("window,strides", [(3, 2), (3, 1), (5, 3), (2, 3)])
def test_max_pool_gradient_is_summed_at_the_input_resolution(window, strides):
    """The 2-D max pool's gradient takes the winning tap of each window and sums the
    cotangent where it won directly at the input's resolution: fewer pads than the window
    has taps (autodiff of the shifted maxima padded the cotangent to the input's size once
    per tap: 21 pads for a 3x3 stride-2 pool), none of them interior (interleaving stride
    phases), and no ``select_and_scatter``. Under a symbolic batch, with ties, it equals
    TF's gradient (the first maximum of each window)."""
    case = Case("MaxPool", lambda x: tf.nn.max_pool2d(x, window, strides, "SAME"))
    specs = [tf.TensorSpec((None, 9, 9, 3), tf.float32)]
    concrete = tf.function(case.fn).get_concrete_function(*specs)
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    grad = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(run({}, [x])[0][0]))))
    x = jax.ShapeDtypeStruct((2, 9, 9, 3), np.float32)
    text = grad.lower(x).as_text()
    pads = [line for line in text.splitlines() if "stablehlo.pad" in line]
    assert len(pads) < window * window, pads
    assert all("interior = [0, 0, 0, 0]" in line for line in pads), pads
    assert "select_and_scatter" not in text

    rng = np.random.default_rng(0)
    values = np.round(rng.standard_normal((3, 9, 9, 3)) * 2).astype(np.float32)  # ties
    tx = tf.constant(values)
    with tf.GradientTape() as tape:
        tape.watch(tx)
        loss = tf.reduce_sum(tf.sin(concrete(tx)))
    b, = export.symbolic_shape("b")
    exported = export.export(grad)(jax.ShapeDtypeStruct((b, 9, 9, 3), np.float32))
    np.testing.assert_allclose(np.asarray(exported.call(values)),
                               tape.gradient(loss, tx).numpy(), rtol=1e-5, atol=1e-6)


_POOLS = {"max": tf.nn.max_pool2d, "avg": tf.nn.avg_pool2d, "avg3d": tf.nn.avg_pool3d}


@pytest.mark.parametrize("pool", sorted(_POOLS))
@pytest.mark.parametrize("window,strides,padding", [(2, 2, "SAME"), (3, 2, "VALID"),
                                                    (3, 1, "SAME")])
def test_pool_with_symbolic_height_and_width_matches_tensorflow(pool, window, strides,
                                                                padding):
    """Max and average pooling traced with unknown height and width (and depth) export
    with them symbolic and give TF's values and gradients; average pooling divides by the
    number of cells inside the input, which depends on those sizes."""
    rng = np.random.default_rng(0)
    x_shape = (2, 5, 7, 6, 3) if pool == "avg3d" else (2, 7, 6, 3)
    x = rng.standard_normal(x_shape).astype(np.float32)
    fn = tf.function(lambda x: _POOLS[pool](x, window, strides, padding))
    unknown = (None,) * (len(x_shape) - 1)
    concrete = fn.get_concrete_function(tf.TensorSpec(unknown + (3,), tf.float32))
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    f = lambda x: run({}, [x])[0][0]  # noqa: E731
    tx = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tx)
        y = concrete(tx)
        loss = tf.reduce_sum(tf.sin(y))
    expected = tape.gradient(loss, tx)

    sizes = export.symbolic_shape("b, d, h, w" if pool == "avg3d" else "b, h, w")
    spec = jax.ShapeDtypeStruct((*sizes, 3), np.float32)
    value = export.export(jax.jit(f))(spec)
    np.testing.assert_allclose(np.asarray(value.call(x)), y.numpy(), rtol=1e-5, atol=1e-6)
    grad = export.export(jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(f(x))))))(spec)
    np.testing.assert_allclose(np.asarray(grad.call(x)), expected.numpy(), rtol=1e-5,
                               atol=1e-6)


def test_symbolic_sizes_through_a_chain_of_convs_and_pools_match_tensorflow():
    """Sizes that JAX derives from a ``VALID`` conv (``max(h - 2, 0)``) feed a pool and a
    strided conv: values and gradients (input and both kernels) exported with batch,
    height and width symbolic equal TF's, as in fully convolutional detectors."""
    def net(x, k1, k2):
        y = tf.nn.max_pool2d(tf.nn.conv2d(x, k1, 1, "VALID"), 2, 2, "SAME")
        return tf.nn.conv2d(y, k2, 2, "SAME")

    specs = [tf.TensorSpec((None, None, None, 3), tf.float32),
             tf.TensorSpec((3, 3, 3, 4), tf.float32), tf.TensorSpec((3, 3, 4, 5), tf.float32)]
    concrete = tf.function(net).get_concrete_function(*specs)
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    f = lambda *args: run({}, list(args))[0][0]  # noqa: E731
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s).astype(np.float32)
            for s in [(2, 13, 12, 3), (3, 3, 3, 4), (3, 3, 4, 5)]]
    targs = [tf.constant(a) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(targs)
        y = concrete(*targs)
        loss = tf.reduce_sum(tf.sin(y))
    expected = tape.gradient(loss, targs)

    b, h, w = export.symbolic_shape("b, h, w")
    jspecs = [jax.ShapeDtypeStruct((b, h, w, 3), np.float32)] + [
        jax.ShapeDtypeStruct(a.shape, np.float32) for a in args[1:]]
    value = export.export(jax.jit(f))(*jspecs)
    np.testing.assert_allclose(np.asarray(value.call(*args)), y.numpy(), rtol=1e-4, atol=1e-4)
    grad = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(f(*a))), argnums=(0, 1, 2)))
    for g, e in zip(export.export(grad)(*jspecs).call(*args), expected):
        np.testing.assert_allclose(np.asarray(g), e.numpy(), rtol=1e-4, atol=1e-4)


def _audio_front_end(x, k):
    """musicnn's front-end pattern: a tall conv over one input channel, ReLU, then a max
    pool over the whole frequency axis (ReLU's zeros make ties)."""
    y = tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME"))
    return tf.nn.max_pool2d(y, [1, y.shape[2]], [1, y.shape[2]], "VALID")


@pytest.mark.parametrize("stack_limit", [conv.MAX_TAP_STACK, 2 * 30 * 32])
def test_audio_front_end_gradient_matches_tf_without_slow_gradient_ops(monkeypatch,
                                                                       stack_limit):
    """A conv over one input channel and a pool over the whole frequency axis: values and
    gradients equal TF's (under ``jit``, batch symbolic as in modules, and with the
    kernel gradient's taps in several stacks), and the gradient program has none of the
    forms XLA:CPU ran in seconds at batch 32 (musicnn's fine-tune step took 36 s): no
    ``reduce_window`` and its ``select_and_scatter``, and neither gradient of the conv as
    a convolution."""
    monkeypatch.setattr(conv, "MAX_TAP_STACK", stack_limit)  # all taps in one, or one each
    x_shape, k_shape = (2, 30, 32, 1), (9, 1, 1, 4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal(k_shape).astype(np.float32)
    case = Case("Conv2D", _audio_front_end)
    concrete, f = _converted(case, x_shape, k_shape)
    y, expected = _tf_value_and_grads(concrete, x, k)
    np.testing.assert_allclose(np.asarray(jax.jit(f)(x, k)), y.numpy(), rtol=1e-5, atol=1e-5)
    assert np.mean(y.numpy() == 0) < 0.5  # the pool is not degenerate

    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(f(x, k))), argnums=(0, 1)))
    b, = export.symbolic_shape("b")
    exported = export.export(grad)(jax.ShapeDtypeStruct((b,) + x_shape[1:], np.float32),
                                   jax.ShapeDtypeStruct(k_shape, np.float32))
    for got in (grad(x, k), exported.call(x, k)):
        for g, e in zip(got, expected):
            np.testing.assert_allclose(np.asarray(g), e.numpy(), rtol=1e-4, atol=1e-4)

    text = grad.lower(x, k).as_text()
    for slow in ("reduce_window", "select_and_scatter", "scatter"):
        assert f"stablehlo.{slow}" not in text, slow
    # The forward conv only: both gradients are products (the input gradient, a conv to
    # one channel, is a tap projection).
    assert text.count("stablehlo.convolution") == 1, text.count("stablehlo.convolution")
    assert "stablehlo.dot_general" in text
