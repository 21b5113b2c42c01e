"""The graph interpreter on graphs traced from ``tf.function``s, against TensorFlow.

Each graph runs eagerly and under ``jax.jit``; values and gradients (inputs) are compared
with what TF computes, and shape arithmetic must survive a symbolic batch dimension.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from jax import export as jax_export
from tensorflow.core.framework import graph_pb2

from jaxhub_tf.from_tf import interpreter, saved_model
from jaxhub_tf.from_tf.ops import registry
from jaxhub_tf.from_tf.values import Resource
from tests.converters.from_tf import _helpers


def _graph_fn(tf_fn, *specs):
    """``tf_fn`` traced for ``specs``, and the interpreter's pure function of its graph.

    Traced afresh each time: differentiating a While loop in TF rewrites the traced graph
    in place (it adds gradient accumulators as outputs).
    """
    concrete = tf.function(tf_fn.python_function).get_concrete_function(*specs)
    graph_def = concrete.graph.as_graph_def()
    fn = interpreter.run_graph(graph_def, [t.name for t in concrete.inputs],
                               [t.name for t in concrete.outputs])
    return concrete, fn


@tf.function
def _dense_reshape(x, w):
    h = tf.nn.relu(tf.matmul(x, w) + 0.5)
    # Shape arithmetic from the input's (symbolic) batch size.
    batch = tf.shape(h)[0]
    return tf.reshape(h, [batch, 2, -1]) * tf.cast(batch, tf.float32)


@tf.function
def _inner(x):
    return tf.tanh(x) * 2.0


@tf.function
def _nested_calls(x, w):
    return _inner(tf.matmul(x, w)) + _inner(x[:, :1])


@tf.function
def _slices(x, w):
    y = tf.matmul(x, w)
    return y[:, 1:], y[..., ::2], y[-1], y[:, None, 0], tf.squeeze(y[:, 2:3], 1)


@tf.function
def _tensor_array_loop(x, w):
    h = tf.matmul(x, w)
    steps = tf.TensorArray(tf.float32, size=4)
    for i in tf.range(4):
        h = tf.tanh(h) + tf.cast(i, tf.float32) * 0.1
        steps = steps.write(i, h)
    return tf.reduce_sum(steps.stack(), 0), h


GRAPHS = {"dense_reshape": _dense_reshape, "nested_calls": _nested_calls,
          "slices": _slices, "tensor_array_loop": _tensor_array_loop}
X_SPEC, W_SPEC = tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([3, 4], tf.float32)


def _args(batch: int = 5):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch, 3)).astype(np.float32),
            rng.standard_normal((3, 4)).astype(np.float32))


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("jit", [False, True])
def test_values_and_gradients_match_tf(name, jit):
    concrete, fn = _graph_fn(GRAPHS[name], X_SPEC, W_SPEC)
    x, w = _args()
    ref = _helpers.tf_reference(
        lambda i: {str(k): v for k, v in enumerate(tf.nest.flatten(concrete(i["x"], i["w"])))},
        {"x": x, "w": w}, [])

    def outputs(x, w):
        return fn({}, [x, w])[0]

    def loss(x, w):
        return sum(jnp.sum(o * ref["cotangents"][str(k)]) for k, o in enumerate(outputs(x, w)))

    grad = jax.grad(loss, argnums=(0, 1))
    if jit:
        outputs, grad = jax.jit(outputs), jax.jit(grad)
    for k, got in enumerate(outputs(x, w)):
        np.testing.assert_allclose(got, ref["outputs"][str(k)], rtol=1e-5, atol=1e-5)
    for got, key in zip(grad(x, w), ("x", "w")):
        np.testing.assert_allclose(got, ref["input_grads"][key], rtol=1e-4, atol=1e-5)


def test_shapes_stay_symbolic_under_export():
    concrete, fn = _graph_fn(_dense_reshape, X_SPEC, W_SPEC)
    batch_spec = jax.ShapeDtypeStruct(jax_export.symbolic_shape("b, 3"), jnp.float32)
    exported = jax_export.export(jax.jit(lambda x, w: fn({}, [x, w])[0][0]))(
        batch_spec, jax.ShapeDtypeStruct((3, 4), jnp.float32))
    assert str(exported.out_avals[0].shape) == "(b, 2, 2)"
    for batch in (1, 7):
        x, w = _args(batch)
        np.testing.assert_allclose(exported.call(x, w), concrete(x, w).numpy(), rtol=1e-5)


class _Accumulator(tf.Module):
    def __init__(self):
        super().__init__()
        self.total = tf.Variable(tf.zeros([3]), name="total")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def add(self, x):
        self.total.assign_add(tf.reduce_sum(x, 0))
        return self.total * 2.0


def test_captured_variables_are_state_and_assignments_are_returned():
    module = _Accumulator()
    concrete = module.add.get_concrete_function()
    fn = interpreter.run_graph(concrete.graph.as_graph_def(),
                               [t.name for t in concrete.inputs],
                               [t.name for t in concrete.outputs])
    x = _args()[0]
    state = {"total": np.full(3, 1.0, np.float32)}
    module.total.assign(state["total"])
    # Handles are not arrays: they are bound outside jit, as the SavedModel reader does.
    (out,), updates = jax.jit(lambda s, x: fn(s, [x, Resource("total")]))(state, x)
    expected = module.add(x)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-6)
    np.testing.assert_allclose(updates["total"], module.total.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(state["total"], 1.0)  # the input state is not mutated


def _handmade_graph() -> graph_pb2.GraphDef:
    """x -> MadeUpOpA -> MadeUpOpB -> Relu, plus a second MadeUpOpA: no TF op exists."""
    graph = graph_pb2.GraphDef()
    x = graph.node.add(name="x", op="Placeholder")
    x.attr["dtype"].type = tf.float32.as_datatype_enum
    graph.node.add(name="a1", op="MadeUpOpA", input=["x"])
    graph.node.add(name="a2", op="MadeUpOpA", input=["a1"])
    graph.node.add(name="b", op="MadeUpOpB", input=["a2:0"])
    graph.node.add(name="y", op="Relu", input=["b"])
    return graph


def test_unsupported_ops_are_listed_in_one_error_before_any_work():
    with pytest.raises(interpreter.UnsupportedOpsError) as error:
        interpreter.run_graph(_handmade_graph(), ["x:0"], ["y:0"])
    message = str(error.value)
    assert "2 TF op(s)" in message
    assert "MadeUpOpA: a1, a2" in message
    assert "MadeUpOpB: b" in message
    assert "Relu" not in message


def test_an_op_of_ones_own_can_be_registered(monkeypatch):
    # Register into a copy of the table, so that later tests (the generated op catalog)
    # in this process see only the shipped ops.
    monkeypatch.setattr(registry, "_OPS", registry._OPS.copy())
    graph = _handmade_graph()
    for node in graph.node:
        if node.op == "MadeUpOpA":
            node.op = "ScaledByThreeForTest"
    graph.node[-2].op = "Identity"

    @registry.register("ScaledByThreeForTest")
    def _scaled(node, x):
        return x * 3.0

    with pytest.raises(ValueError, match="registered already"):
        registry.register("ScaledByThreeForTest")(lambda node, x: x)
    fn = interpreter.run_graph(graph, ["x:0"], ["y:0"])
    x = np.array([-1.0, 2.0], np.float32)
    (y,), _ = fn({}, [x])
    np.testing.assert_allclose(y, np.maximum(9.0 * x, 0.0))


def test_a_failing_node_is_named_in_the_error():
    graph = graph_pb2.GraphDef()
    x = graph.node.add(name="x", op="Placeholder")
    x.attr["dtype"].type = tf.float32.as_datatype_enum
    shape = graph.node.add(name="bad_shape", op="Const")
    shape.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.array([7], np.int32)))
    graph.node.add(name="reshape_me", op="Reshape", input=["x", "bad_shape"])
    fn = interpreter.run_graph(graph, ["x:0"], ["reshape_me:0"])
    with pytest.raises(RuntimeError, match="reshape_me"):
        fn({}, [np.zeros(3, np.float32)])


def _save_signature(path, fn, *specs) -> str:
    module = tf.Module()
    module.serve = tf.function(fn, input_signature=list(specs))
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return str(path)


@tf.function
def _doubled(n):
    return tf.stack([n * 2, -1])


_F = tf.TensorSpec([4, 3], tf.float32)
_SIZES = tf.TensorSpec([2], tf.int32)


_LENGTH = tf.TensorSpec([1], tf.int32)


# (A reshape, tile, pad or top-k of the signature's input values, sparse-segment ids and
# random shapes from them run in a host stage:
# tests/converters/from_tf/host_stages/static_operands_test.py.)
@pytest.mark.parametrize("fn,specs,node,operand,source", [
    (lambda x, length: tf.signal.rfft(x, length), (_F, _LENGTH), "RFFT", "fft_length",
     "length"),
    # tf.signal.rfft pads x to a computed length, which a host stage computes: the input
    # behind that stage's result is named, not the result.
    (lambda x, n: tf.signal.rfft(x, tf.stack([n * 2])), (_F, tf.TensorSpec([], tf.int32)),
     "RFFT", "fft_length", "n"),
    # Followed out of a nested tf.function call to the signature's input; x's shape is
    # static, so x is not among the sources.
    (lambda x, n: tf.signal.rfft(x, _doubled(n + tf.shape(x)[0])[:1]),
     (_F, tf.TensorSpec([], tf.int32)), "RFFT", "fft_length", "n"),
])
def test_a_size_computed_from_an_input_value_names_the_operand_its_source_and_the_fix(
        tmp_path, fn, specs, node, operand, source):
    path = _save_signature(tmp_path / "saved", fn, *specs)
    with pytest.raises(interpreter.StaticValueError) as error:
        saved_model.load_saved_model(path)
    assert error.value.op == node and error.value.operands == [operand]
    assert error.value.sources == [source]
    message = str(error.value)
    assert f"({node}) needs its {operand!r} while tracing" in message
    assert f"computed from the values of input(s) {source!r}" in message
    assert "tf.constant" in message and "tf.shape" in message


def test_a_size_computed_inside_a_loop_body_names_the_body_function(tmp_path):
    def grow(x, n):
        return tf.while_loop(lambda i, y: i < 2,
                             lambda i, y: (i + 1, y + tf.reduce_sum(
                                 tf.reshape(y, tf.stack([n, -1])))),
                             (0, x))[1]

    path = _save_signature(tmp_path / "saved", grow, _F, tf.TensorSpec([], tf.int32))
    with pytest.raises(interpreter.StaticValueError) as error:
        saved_model.load_saved_model(path)
    assert error.value.op == "Reshape" and error.value.operands == ["shape"]
    assert "of function " in str(error.value)
