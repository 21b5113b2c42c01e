"""A ``tf.Module`` whose ``tf.function`` uses ``tf.cond``, ``tf.while_loop`` and
``tf.switch_case`` and assigns variables, converted through a SavedModel.

Checks the inference variant (values and gradients, through the loop and the branches),
the ``{"train"}`` variant's returned assignments, and random ops under an explicit key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from jaxhub_tf.from_tf import interpreter, saved_model
from tests.converters.from_tf import _helpers

SPEC = tf.TensorSpec([None, 4], tf.float32)


class Stateful(tf.Module):
    """Loops, branches and assignments; ``training=True`` also updates statistics."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.standard_normal((4, 3)).astype(np.float32), name="dense/w")
        self.mean = tf.Variable(tf.fill([3], 0.25), trainable=False, name="stats/mean")
        self.steps = tf.Variable(0.0, trainable=False, name="stats/steps")

    @tf.function
    def __call__(self, x, training=False):
        y = tf.matmul(x, self.w)
        if training:
            self.mean.assign(0.9 * self.mean + 0.1 * tf.reduce_mean(y, 0))

        def grow(i, h):
            self.steps.assign_add(1.0)
            return i + 1, tf.tanh(h) * 1.5 + 0.1 * h

        _, y = tf.while_loop(lambda i, h: i < 3, grow, [tf.constant(0), y])

        def positive():
            self.steps.assign_add(10.0)
            return y * 2.0

        y = tf.cond(tf.reduce_sum(y) > 0, positive, lambda: y - self.mean)
        branch = tf.cast(tf.reduce_sum(x) > 1.0, tf.int32) + tf.cast(tf.reduce_sum(x) > 3.0,
                                                                       tf.int32)
        z = tf.switch_case(branch, [lambda: tf.sin(y), lambda: y * y, lambda: -y])
        return {"y": y, "z": z, "norm": tf.reduce_sum(y * y, -1)}


@pytest.fixture(scope="module")
def saved_path(tmp_path_factory):
    module = Stateful()
    module.__call__.get_concrete_function(SPEC, training=True)
    serving = module.__call__.get_concrete_function(SPEC, training=False)
    path = tmp_path_factory.mktemp("stateful") / "saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": serving})
    return path


@pytest.fixture(scope="module")
def converted(saved_path):
    return saved_model.load_saved_model(saved_path)


def _inputs(scale: float) -> np.ndarray:
    return (scale * np.random.default_rng(1).standard_normal((2, 4))).astype(np.float32)


@pytest.mark.parametrize("scale", [1.0, -1.0, 3.0], ids=["mixed", "negated", "large"])
@pytest.mark.parametrize("signature", ["serving_default", "default"])
def test_inference_matches_tf_through_loop_and_branches(converted, signature, scale):
    # The reference is a fresh instance of the saved module (same initial values): TF
    # cannot differentiate a *loaded* function whose While loop captures variables.
    reference = Stateful()
    x = _inputs(scale)
    name = "default" if signature == "default" else "x"
    _helpers.assert_matches_tf(converted, lambda inputs: reference(inputs[name]),
                               {name: x}, [reference.w], signature=signature)


def test_serving_signature_returns_the_assignments_tf_makes(converted, saved_path):
    loaded = tf.saved_model.load(str(saved_path))
    x = _inputs(1.0)
    expected = loaded.signatures["serving_default"](x=tf.constant(x))
    outputs, state = jax.jit(lambda p, x: converted.apply(
        p, {"x": x}, signature="serving_default", as_dict=True))(converted.params, x)
    for k, v in expected.items():
        np.testing.assert_allclose(outputs[k], v.numpy(), rtol=1e-5, atol=1e-5)
    assert state == {"stats": {"steps": state["stats"]["steps"]}}  # only what it assigned
    np.testing.assert_allclose(state["stats"]["steps"], loaded.steps.numpy())
    # The reusable __call__ keeps TF Hub's convention: inference returns outputs only.
    assert set(converted(x, as_dict=True)) == set(expected)


def test_call_becomes_default_signature_with_train_variant(converted):
    assert set(converted.variant_signatures(None)) == {"serving_default", "default"}
    assert set(converted.variant_signatures("train")) == {"default"}
    assert converted.signatures["default"].inputs["default"].shape == ("batch", 4)


@pytest.mark.parametrize("jit", [False, True])
def test_train_variant_returns_the_assignments_tf_makes(converted, saved_path, jit):
    loaded = tf.saved_model.load(str(saved_path))
    x = _inputs(1.0)
    expected = loaded(tf.constant(x), training=True)

    def train(params, x):
        return converted.apply(params, x, tags="train", rng=jax.random.key(0), as_dict=True)

    outputs, state = (jax.jit(train) if jit else train)(converted.params, x)
    for k, v in expected.items():
        np.testing.assert_allclose(outputs[k], v.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state["stats"]["mean"], loaded.mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(state["stats"]["steps"], loaded.steps.numpy())
    assert "dense" not in state  # w is only read


def test_state_feeds_back_into_the_next_step(converted, saved_path):
    import jaxhub
    loaded = tf.saved_model.load(str(saved_path))
    params = converted.params
    for scale in (1.0, -1.0):
        x = _inputs(scale)
        expected = loaded(tf.constant(x), training=True)
        outputs, state = converted.apply(params, x, tags="train", rng=jax.random.key(0),
                                         as_dict=True)
        np.testing.assert_allclose(outputs["y"], expected["y"].numpy(), rtol=1e-5, atol=1e-5)
        params = jaxhub.merge_params(params, state)
    np.testing.assert_allclose(params["stats"]["mean"], loaded.mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(params["stats"]["steps"], loaded.steps.numpy())


class DataDependentLoop(tf.Module):
    """A loop whose trip count depends on the data: a ``lax.while_loop``."""

    def __init__(self):
        super().__init__()
        self.scale = tf.Variable(1.5, name="scale")

    @tf.function(input_signature=[SPEC])
    def __call__(self, x):
        h = tf.abs(x) + 0.1
        return tf.while_loop(lambda h: tf.reduce_sum(h) < 100.0, lambda h: h * self.scale,
                             [h])[0]


@pytest.fixture(scope="module")
def data_dependent(tmp_path_factory):
    module = DataDependentLoop()
    path = tmp_path_factory.mktemp("data_dependent") / "saved_model"
    tf.saved_model.save(module, str(path))
    return saved_model.load_saved_model(path), tf.saved_model.load(str(path))


@pytest.mark.parametrize("jit", [False, True])
def test_data_dependent_loop_values(data_dependent, jit):
    converted, loaded = data_dependent
    for scale in (0.1, 1.0, 10.0):
        x = _inputs(scale)
        fn = jax.jit(converted.__call__) if jit else converted
        np.testing.assert_allclose(fn(x), loaded(tf.constant(x)).numpy(), rtol=1e-5)


@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0])
def test_data_dependent_loop_gradient(data_dependent, scale):
    # Differentiated by recomputing the loop (no lax.while_loop derivative in JAX).
    converted, _ = data_dependent
    reference = DataDependentLoop()
    _helpers.assert_matches_tf(converted, lambda i: reference(i["default"]),
                               {"default": _inputs(scale)}, [reference.scale],
                               signature="default")


def test_data_dependent_loop_round_trip_in_fresh_process(data_dependent, tmp_path):
    converted, _ = data_dependent
    converted.export(tmp_path / "module")
    reference = DataDependentLoop()
    inputs = {"default": _inputs(1.0)}
    ref = _helpers.tf_reference(lambda i: reference(i["default"]), inputs, [reference.scale])
    result = _helpers.round_trip_in_fresh_process(tmp_path / "module", inputs, ref, "default",
                                                  tmp_path)
    _helpers.assert_round_trip_matches(result, converted, ref)


class Dropout(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.ones([4, 64]), name="w")

    @tf.function
    def __call__(self, x, training=False):
        y = tf.matmul(x, self.w)
        return tf.nn.dropout(y, rate=0.5) if training else y


def _saved_with_training_call(module: tf.Module, path):
    """``module`` saved with ``__call__`` for both ``training`` values, then converted."""
    module.__call__.get_concrete_function(SPEC, training=False)
    module.__call__.get_concrete_function(SPEC, training=True)
    tf.saved_model.save(module, str(path))
    return saved_model.load_saved_model(path)


def test_random_ops_draw_from_the_explicit_key(tmp_path):
    module = Dropout()
    converted = _saved_with_training_call(module, tmp_path / "dropout")
    x = np.ones((8, 4), np.float32)
    y1, _ = converted(x, tags="train", rng=jax.random.key(1))
    y1_again, _ = converted(x, tags="train", rng=jax.random.key(1))
    y2, _ = converted(x, tags="train", rng=jax.random.key(2))
    np.testing.assert_array_equal(y1, y1_again)
    assert not np.array_equal(y1, y2)
    full = module(tf.constant(x)).numpy()
    kept = np.asarray(y1) != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(np.asarray(y1)[kept], 2 * full[kept])  # scaled by 1/(1-rate)
    np.testing.assert_allclose(converted(x), full)


def test_only_assigned_variables_come_back_as_state(converted):
    # The loop and the branch carry every variable; only assigned ones are state.
    _, state = converted(_inputs(1.0), tags="train", rng=jax.random.key(0), as_dict=True)
    assert sorted(p for p, _ in _helpers._flatten(state)) == ["stats/mean", "stats/steps"]


class NoisyLoop(tf.Module):
    """Dropout inside a loop of data-dependent length, in a training call."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.fill([4, 4], 0.5), name="w")

    @tf.function
    def __call__(self, x, training=False):
        h = tf.abs(x) + 0.1

        def grow(h):
            h = tf.matmul(h, self.w) + h
            return tf.nn.dropout(h, rate=0.5) + h if training else h

        return tf.while_loop(lambda h: tf.reduce_sum(h) < 1e3, grow, [h])[0]


def test_train_variant_with_random_ops_in_a_loop_of_unknown_length(tmp_path):
    module = NoisyLoop()
    converted = _saved_with_training_call(module, tmp_path / "noisy")
    x = _inputs(1.0)

    def loss(params, key):
        y, _ = converted.apply(params, x, tags="train", rng=key)
        return jnp.sum(y)

    y1, _ = converted(x, tags="train", rng=jax.random.key(1))
    y2, _ = converted(x, tags="train", rng=jax.random.key(2))
    assert not np.array_equal(y1, y2)
    assert np.sum(y1) >= 1e3  # the loop ran until its condition failed
    grads = jax.jit(jax.grad(loss))(converted.params, jax.random.key(1))
    assert np.all(np.isfinite(grads["w"])) and np.any(grads["w"] != 0)


# -- TF1 control flow inside TF2 functions -------------------------------------------------


def _tf1_saved_model_resaved_in_tf2(tmp_path, build=None, x_value=None):
    """A TF1 graph saved as a TF1 SavedModel, loaded into TF2 and saved again; with TF1's
    own values and gradients.

    ``build(x, rng)`` makes the graph from the input placeholder (by default an
    ``is_training`` cond with dropout); ``x_value`` is the input fed.
    """
    rng = np.random.default_rng(3)
    if x_value is None:
        x_value = rng.standard_normal((5, 4)).astype(np.float32)
    if build is None:
        def build(x, rng):
            w = tf.compat.v1.get_variable("w", initializer=rng.standard_normal(
                (4, 3)).astype(np.float32))
            is_training = tf.compat.v1.placeholder_with_default(False, [])
            h = tf.matmul(x, w)
            return tf.cond(is_training, lambda: tf.nn.dropout(h, rate=0.5), lambda: h * 0.5)
    tf.compat.v1.disable_control_flow_v2()
    try:
        with tf.Graph().as_default(), tf.compat.v1.Session() as session:
            x = tf.compat.v1.placeholder(tf.float32, [None, *x_value.shape[1:]])
            y = build(x, rng)
            cotangent = rng.standard_normal(
                (len(x_value), *y.shape[1:].as_list())).astype(np.float32)
            session.run(tf.compat.v1.global_variables_initializer())
            variables = tf.compat.v1.trainable_variables()
            grads = tf.gradients(tf.reduce_sum(y * cotangent), [x, *variables])
            want = session.run({"y": y, "dx": grads[0], "dw": dict(zip(
                [v.op.name for v in variables], grads[1:]))}, {x: x_value})
            builder = tf.compat.v1.saved_model.Builder(str(tmp_path / "tf1"))
            builder.add_meta_graph_and_variables(session, ["serve"], {
                "serving_default": tf.compat.v1.saved_model.predict_signature_def(
                    {"x": x}, {"y": y})})
            builder.save()
    finally:
        tf.compat.v1.enable_control_flow_v2()
    loaded = tf.saved_model.load(str(tmp_path / "tf1"))
    tf.saved_model.save(loaded, str(tmp_path / "tf2"), signatures=dict(loaded.signatures))
    return tmp_path / "tf2", x_value, cotangent, want


def _check_values_and_gradients(path, x, cotangent, want, rtol=1e-5):
    """The converted SavedModel at ``path`` against TF1's values and gradients, eagerly
    and under ``jit``."""
    module = saved_model.load_saved_model(path)
    names = module.attachments["tf_variable_names"]

    def apply(params, x):
        return module.apply(params, {"x": x}, signature="serving_default", as_dict=True)

    def loss(params, x):
        return jnp.sum(apply(params, x)["y"] * cotangent)

    for jit in (False, True):
        grad = jax.grad(loss, argnums=(0, 1))
        forward = jax.jit(apply) if jit else apply
        if jit:
            grad = jax.jit(grad)
        np.testing.assert_allclose(forward(module.params, x)["y"], want["y"], rtol=rtol,
                                   atol=1e-6)
        param_grads, input_grad = grad(module.params, x)
        np.testing.assert_allclose(input_grad, want["dx"], rtol=rtol, atol=1e-6)
        leaves = {"/".join(str(k.key) for k in path): g for path, g in
                  jax.tree_util.tree_flatten_with_path(param_grads)[0]}
        assert sorted(names[k].split(":")[0] for k in leaves) == sorted(want["dw"])
        for key, g in leaves.items():
            np.testing.assert_allclose(g, want["dw"][names[key].split(":")[0]], rtol=rtol,
                                       atol=1e-6, err_msg=key)


def test_tf1_control_flow_inside_tf2_functions_converts(tmp_path):
    from tensorflow.core.protobuf import saved_model_pb2
    path, x, cotangent, want = _tf1_saved_model_resaved_in_tf2(tmp_path)
    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    ops = {n.op for f in proto.meta_graphs[0].graph_def.library.function for n in f.node_def}
    assert {"Switch", "Merge"} <= ops  # what this test is about: TF1 control flow kept
    _check_values_and_gradients(path, x, cotangent, want)


class _TanhCell:
    """A TF 1 RNN cell (what ``dynamic_rnn`` calls; TF 1's own cells are gone with Keras
    3): ``h = tanh([x, h] @ w + b)``."""

    def __init__(self, name: str, inputs: int, units: int, rng):
        self.state_size = self.output_size = units
        self.w = tf.compat.v1.get_variable(f"{name}/w", initializer=rng.standard_normal(
            (inputs + units, units)).astype(np.float32) * 0.5)
        self.b = tf.compat.v1.get_variable(f"{name}/b", initializer=rng.standard_normal(
            units).astype(np.float32))

    def zero_state(self, batch, dtype):
        return tf.zeros([batch, self.state_size], dtype)

    def __call__(self, x, h):
        h = tf.tanh(tf.matmul(tf.concat([x, h], axis=1), self.w) + self.b)
        return h, h


def test_tf1_bidirectional_dynamic_rnn_converts(tmp_path):
    """TF 1's ``bidirectional_dynamic_rnn`` over sequences of different lengths: while
    loops over ``TensorArrayV3`` elements, and the backward direction's
    ``ReverseSequence``."""
    def build(x, rng):
        cells = [_TanhCell(f"cell_{d}", 4, 3, rng) for d in "fb"]
        lengths = tf.minimum(tf.range(tf.shape(x)[0]) * 2 + 2, 6)  # 2, 4, 6
        outputs, _ = tf.compat.v1.nn.bidirectional_dynamic_rnn(
            *cells, x, sequence_length=lengths, dtype=tf.float32)
        return tf.concat(outputs, axis=-1)

    x = np.random.default_rng(5).standard_normal((3, 6, 4)).astype(np.float32)
    path, x, cotangent, want = _tf1_saved_model_resaved_in_tf2(tmp_path, build, x)
    _check_values_and_gradients(path, x, cotangent, want)


# -- loops over the lists they read and write at their counter -------------------------


def _strided_steps(x):
    """Reads every other step from 1, writes each result where it read it."""
    steps = tf.TensorArray(tf.float32, size=6).unstack(x)
    out = tf.TensorArray(tf.float32, size=6, element_shape=[None, 4])

    def body(i, h, out):
        h = tf.tanh(steps.read(i) + h * 0.5)
        return i + 2, h, out.write(i, h)

    _, h, out = tf.while_loop(lambda i, h, out: i < 6, body, (1, tf.zeros_like(x[0]), out))
    return out.stack(), h


def _reads_before_the_counter(x):
    """Reads at the counter and one before it: the list is indexed, not scanned."""
    steps = tf.TensorArray(tf.float32, size=6).unstack(x)
    out = tf.TensorArray(tf.float32, size=5)

    def body(i, out):
        return i + 1, out.write(i - 1, steps.read(i) * steps.read(i - 1))

    return tf.while_loop(lambda i, out: i < 6, body, (1, out))[1].stack()


def _writes_in_reverse(x):
    """Reads at the counter, writes from the end: only the read list is scanned."""
    steps = tf.TensorArray(tf.float32, size=tf.shape(x)[0]).unstack(x)
    out = tf.TensorArray(tf.float32, size=tf.shape(x)[0])
    n = tf.shape(x)[0]

    def body(i, h, out):
        h = tf.sin(steps.read(i)) + h
        return i + 1, h, out.write(n - 1 - i, h)

    return tf.while_loop(lambda i, h, out: i < n, body, (0, x[0] * 0, out))[2].stack()


LIST_LOOPS = {"strided_steps": _strided_steps,
              "reads_before_the_counter": _reads_before_the_counter,
              "writes_in_reverse": _writes_in_reverse}


def _list_loop(tf_fn):
    """``tf_fn`` traced for sequences of 6 steps, and the interpreter's function."""
    concrete = tf.function(tf_fn).get_concrete_function(tf.TensorSpec([6, None, 4]))
    fn = interpreter.run_graph(concrete.graph.as_graph_def(),
                               [t.name for t in concrete.inputs],
                               [t.name for t in concrete.outputs])
    return concrete, lambda x: fn({}, [x])[0]


@pytest.mark.parametrize("name", sorted(LIST_LOOPS))
def test_loops_over_lists_match_tf_in_values_and_gradients(name):
    concrete, run = _list_loop(LIST_LOOPS[name])
    x = np.random.default_rng(2).standard_normal((6, 3, 4)).astype(np.float32)
    ref = _helpers.tf_reference(
        lambda i: {str(k): v for k, v in enumerate(tf.nest.flatten(concrete(i["x"])))},
        {"x": x}, [])

    def loss(x):
        return sum(jnp.sum(o * ref["cotangents"][str(k)]) for k, o in enumerate(run(x)))

    for k, got in enumerate(jax.jit(run)(x)):
        np.testing.assert_allclose(got, ref["outputs"][str(k)], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(x), ref["input_grads"]["x"],
                               rtol=1e-5, atol=1e-6)


def test_a_loop_reading_and_writing_at_its_counter_scans_over_the_lists():
    """No element is sliced out of, or written into, a list inside the loop."""
    _, run = _list_loop(_strided_steps)
    x = np.zeros((6, 3, 4), np.float32)
    loop = [e for e in jax.make_jaxpr(run)(x).jaxpr.eqns if e.primitive.name == "scan"]
    assert len(loop) == 1
    inside = _primitives(loop[0].params["jaxpr"].jaxpr)
    assert "tanh" in inside
    assert not inside & {"dynamic_slice", "dynamic_update_slice", "gather", "scatter"}


def _counter_beside_other_values(x):
    """A counted loop that also carries a static value and a state its condition never
    reads (what a recurrent layer carries beside its step counter)."""
    def body(i, total, h):
        return i + 1, total * 2 + 1, tf.tanh(h + tf.cast(total, tf.float32) * 0.1)

    return tf.while_loop(lambda i, total, h: i < 5, body, (0, 1, x))[1:]


def test_a_loop_counts_its_trips_from_its_counter_and_ends_where_tf_does():
    concrete = tf.function(_counter_beside_other_values).get_concrete_function(
        tf.TensorSpec([None, 4]))
    fn = interpreter.run_graph(concrete.graph.as_graph_def(),
                               [t.name for t in concrete.inputs],
                               [t.name for t in concrete.outputs])
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    total, h = jax.jit(lambda x: fn({}, [x])[0])(x)
    want_total, want_h = concrete(x)
    assert int(total) == int(want_total) == 63
    np.testing.assert_allclose(h, want_h.numpy(), rtol=1e-5, atol=1e-6)
    jaxpr = jax.make_jaxpr(lambda x: fn({}, [x])[0])(x).jaxpr
    assert [e.params["length"] for e in jaxpr.eqns if e.primitive.name == "scan"] == [5]


def _primitives(jaxpr) -> set[str]:
    """The names of the primitives ``jaxpr`` runs, those of nested jaxprs included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    names |= _primitives(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    names |= _primitives(sub)
    return names
