"""TF2 SavedModels (Keras 3 ``export`` and ``tf.saved_model.save``) converted to jaxhub.

Each model is compared with TensorFlow on outputs and on gradients with respect to its
inputs and trainable params, eagerly and under jit, and once more after a round trip
through the jaxhub format in a fresh process that never imports TensorFlow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import tensorflow as tf
from jax.experimental import jax2tf

import jaxhub

from jaxhub._src import formats
from jaxhub_tf.from_tf import interpreter, saved_model
from tests.converters.from_tf import _helpers


def _mlp():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dropout(0.5), keras.layers.Dense(3)])


def _cnn():
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(5, 3, strides=2, padding="same"),
        keras.layers.Flatten(),
        keras.layers.Dense(2)])


def _lstm():
    return keras.Sequential([keras.Input((5, 4)), keras.layers.LSTM(6),
                             keras.layers.Dense(2)])


def _birnn():
    """Sequences of any length: the loop's trip count is a symbolic size."""
    return keras.Sequential([keras.Input((None, 3)),
                             keras.layers.Bidirectional(keras.layers.GRU(4)),
                             keras.layers.Dense(2)])


def _encoder():
    x = keras.Input((6, 8))
    y = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    y = keras.layers.LayerNormalization()(x + y)
    z = keras.layers.Dense(16, activation="gelu")(y)
    z = keras.layers.Dense(8)(z)
    return keras.Model(x, keras.layers.LayerNormalization()(y + z))


MODELS = {"mlp": (_mlp, (8,)), "cnn": (_cnn, (12, 12, 3)), "lstm": (_lstm, (5, 4)),
          "birnn": (_birnn, (5, 3)), "encoder": (_encoder, (6, 8))}
CASES = [("mlp", "export"), ("mlp", "save"), ("cnn", "export"), ("cnn", "save"),
         ("lstm", "save"), ("birnn", "export"), ("encoder", "export")]


def _save(model, way: str, path) -> None:
    if way == "export":
        model.export(str(path), format="tf_saved_model", verbose=False)
    else:
        tf.saved_model.save(model, str(path))


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def saved(request, tmp_path_factory):
    """``(name, path, example input)`` of one Keras model saved one way."""
    name, way = request.param
    build, shape = MODELS[name]
    keras.utils.set_random_seed(0)
    model = build()
    if name == "cnn":  # non-trivial batch-norm statistics
        bn = model.layers[1]
        bn.moving_mean.assign(np.linspace(-0.5, 0.5, 4).astype(np.float32))
        bn.moving_variance.assign(np.linspace(0.5, 2.0, 4).astype(np.float32))
    path = tmp_path_factory.mktemp(f"{name}_{way}") / "saved_model"
    _save(model, way, path)
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)
    return name, path, x, model


@pytest.fixture(scope="module")
def converted(saved):
    """The jaxhub module converted from ``saved`` (once per SavedModel)."""
    return saved_model.load_saved_model(saved[1])


def _tf_reference(saved, input_name: str):
    """``(fn(inputs) -> outputs, trainable variables, loaded)`` for the TF side.

    The loaded SavedModel is the reference, except for recurrent models: TF cannot
    differentiate a loaded function whose While loop captures variables ("variable
    without handle data"), so their gradients come from the Keras model that was saved.
    """
    name, path, _, model = saved
    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures["serving_default"]
    if name in ("lstm", "birnn"):
        return (lambda inputs: {"output_0": model(inputs[input_name])},
                [v.value for v in model.trainable_variables], loaded)
    return lambda inputs: fn(**inputs), fn.trainable_variables, loaded


def test_is_detected_as_a_saved_model(saved, tmp_path):
    assert formats.detect(saved[1]).name == "TF2 SavedModel"
    with pytest.raises(jaxhub.ModuleFormatError, match="no module jaxhub can read"):
        formats.detect(tmp_path)


def test_signatures_match_tf(saved, converted):
    path, module = saved[1], converted
    loaded = tf.saved_model.load(str(path))
    assert set(module.signatures) == set(loaded.signatures)
    for name, sig in module.signatures.items():
        tf_sig = loaded.signatures[name]
        assert sorted(sig.inputs) == sorted(tf_sig.structured_input_signature[1])
        assert sorted(sig.outputs) == sorted(tf_sig.structured_outputs)
        for spec in sig.inputs.values():
            assert spec.shape[0] == "batch"


def test_outputs_and_gradients_match_tf(saved, converted):
    _, path, x, _ = saved
    module = converted
    (input_name,) = module.signatures["serving_default"].inputs
    tf_fn, variables, loaded = _tf_reference(saved, input_name)
    _helpers.assert_matches_tf(module, tf_fn, {input_name: x}, variables,
                               signature="serving_default")
    fn = loaded.signatures["serving_default"]
    # Any batch size: the batch dimension stays symbolic.
    x5 = np.concatenate([x, x[:2]])
    np.testing.assert_allclose(
        module(x5, signature="serving_default"),
        fn(**{input_name: tf.constant(x5)})["output_0"].numpy(), rtol=1e-4, atol=1e-4)


def test_sequences_of_any_length(tmp_path):
    keras.utils.set_random_seed(0)
    path = tmp_path / "birnn"
    _save(_birnn(), "export", path)
    module = saved_model.load_saved_model(path)
    (input_name,) = module.signatures["serving_default"].inputs
    assert module.signatures["serving_default"].inputs[input_name].shape[1] not in (None, 5)
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    for length in (2, 9):
        xs = np.random.default_rng(length).standard_normal((3, length, 3)).astype(np.float32)
        np.testing.assert_allclose(module(xs, signature="serving_default"),
                                   fn(**{input_name: tf.constant(xs)})["output_0"].numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_trainable_flags_from_saved_model(saved, converted):
    name, path = saved[:2]
    module = converted
    flags = {module.attachments["tf_variable_names"][p]: t for p, t in
             _helpers._flatten(module.trainable_mask)}
    loaded = tf.saved_model.load(str(path))
    variables = loaded.signatures["serving_default"].variables
    expected = {v.name.removesuffix(":0"): v.trainable for v in variables}
    assert {k.removesuffix(":0"): v for k, v in flags.items() if
            k.removesuffix(":0") in expected} == expected
    if name == "cnn":
        assert not all(flags.values())  # batch-norm statistics are frozen


def test_round_trip_in_fresh_process_without_tensorflow(saved, converted, tmp_path):
    x = saved[2]
    module = converted
    module.export(tmp_path / "converted")
    (input_name,) = module.signatures["serving_default"].inputs
    tf_fn, variables, loaded = _tf_reference(saved, input_name)  # loaded: keeps variables
    inputs = {input_name: x}
    ref = _helpers.tf_reference(tf_fn, inputs, variables)
    result = _helpers.round_trip_in_fresh_process(tmp_path / "converted", inputs, ref,
                                                  "serving_default", tmp_path)
    _helpers.assert_round_trip_matches(result, module, ref)


# -- SavedModels made with jax2tf: one XlaCallModule op holding StableHLO ------------------


def _jax_mlp(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jax.nn.softmax(h @ params["w2"], axis=-1)


@pytest.fixture(scope="module")
def jax2tf_saved(tmp_path_factory):
    rng = np.random.default_rng(3)
    params = {"w1": rng.standard_normal((4, 6)).astype(np.float32),
              "b1": rng.standard_normal(6).astype(np.float32),
              "w2": rng.standard_normal((6, 3)).astype(np.float32)}
    converted = jax2tf.convert(_jax_mlp, polymorphic_shapes=[None, "(b, 4)"],
                               with_gradient=True)
    module = tf.Module()
    module.params = {k: tf.Variable(v, name=k) for k, v in params.items()}
    module.__call__ = tf.function(
        lambda x: converted({k: v for k, v in module.params.items()}, x), autograph=False,
        input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    path = tmp_path_factory.mktemp("jax2tf") / "saved_model"
    tf.saved_model.save(module, str(path))
    return path, params, saved_model.load_saved_model(path)


@pytest.mark.parametrize("jit", [False, True])
def test_jax2tf_saved_model_runs_its_stablehlo_with_gradients(jax2tf_saved, jit):
    _, params, module = jax2tf_saved
    x = np.random.default_rng(4).standard_normal((5, 4)).astype(np.float32)
    by_name = {module.attachments["tf_variable_names"][p]: p for p in
               module.attachments["tf_variable_names"]}

    def tf_params(p):  # the original function's params, from the module's
        flat = dict(_helpers._flatten(p))
        return {k: flat[by_name[k]] for k in params}

    def loss(p, x):
        return jnp.sum(module.apply(p, x) ** 2)

    apply, grad = module.apply, jax.grad(loss, argnums=(0, 1))
    if jit:
        apply, grad = jax.jit(module.apply), jax.jit(grad)
    np.testing.assert_allclose(apply(module.params, x), _jax_mlp(params, x), rtol=1e-5,
                               atol=1e-6)
    got_params, got_x = grad(module.params, x)
    want_params, want_x = jax.grad(lambda p, x: jnp.sum(_jax_mlp(p, x) ** 2),
                                   argnums=(0, 1))(params, x)
    np.testing.assert_allclose(got_x, want_x, rtol=1e-5, atol=1e-6)
    for k, g in tf_params(got_params).items():
        np.testing.assert_allclose(g, want_params[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_jax2tf_saved_model_under_vmap(jax2tf_saved):
    _, params, module = jax2tf_saved
    xs = np.random.default_rng(6).standard_normal((2, 3, 4)).astype(np.float32)
    got = jax.vmap(module.apply, in_axes=(None, 0))(module.params, xs)
    np.testing.assert_allclose(got, jax.vmap(_jax_mlp, in_axes=(None, 0))(params, xs),
                               rtol=1e-5, atol=1e-6)


def test_jax2tf_saved_model_round_trip_in_fresh_process(jax2tf_saved, tmp_path):
    path = jax2tf_saved[0]
    module = saved_model.convert_saved_model(path, tmp_path / "converted")
    loaded = tf.saved_model.load(str(path))
    inputs = {"default": np.random.default_rng(5).standard_normal((3, 4)).astype(np.float32)}
    ref = _helpers.tf_reference(lambda i: loaded(i["default"]), inputs,
                                list(loaded.params.values()))
    result = _helpers.round_trip_in_fresh_process(tmp_path / "converted", inputs, ref,
                                                  "default", tmp_path)
    _helpers.assert_round_trip_matches(result, module, ref, rtol=1e-5, atol=1e-6)


def test_jax2tf_saved_model_without_its_gradient_refuses_it_as_tf_does(tmp_path):
    """Saved without its custom gradient (``experimental_custom_gradients=False``), the
    StableHLO call has no gradient in TF (its restored function fails to differentiate):
    the converted signature is forward-only, naming the node, rather than differentiating
    to zero."""
    converted = jax2tf.convert(lambda x: jnp.sin(x) * 2.0, with_gradient=True)
    model = tf.Module()
    model.f = tf.function(converted, autograph=False,
                          input_signature=[tf.TensorSpec([3], tf.float32)])
    tf.saved_model.save(model, str(tmp_path / "saved"),
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    x = np.array([0.5, -1.0, 2.0], np.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape, pytest.raises((LookupError, TypeError)):
        tape.watch(xt)
        tape.gradient(tf.reduce_sum(tf.saved_model.load(str(tmp_path / "saved")).f(xt)), xt)

    module = jaxhub.load(tmp_path / "saved", cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(module(x, signature="f"), np.sin(x) * 2.0, rtol=1e-6)
    with pytest.warns(UserWarning, match="stored forward-only"), \
            pytest.raises(LookupError, match="XlaCallModule.*has no gradient"):
        jax.grad(lambda x: jnp.sum(module(x, signature="f")))(x)


# -- A reusable SavedModel from tf-keras: __call__(inputs, training), regularizers ---------


@pytest.fixture(scope="module")
def reusable(tmp_path_factory):
    import tf_keras
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Dense(8, activation="relu", input_shape=(4,),
                              kernel_regularizer=tf_keras.regularizers.l2(0.01)),
        tf_keras.layers.BatchNormalization(),
        tf_keras.layers.Dropout(0.3),
        tf_keras.layers.Dense(2, kernel_regularizer=tf_keras.regularizers.l1(0.02))])
    path = tmp_path_factory.mktemp("reusable") / "saved_model"
    tf.saved_model.save(model, str(path))
    return path, saved_model.load_saved_model(path)


def test_reusable_call_is_the_default_signature(reusable):
    path, module = reusable
    loaded = tf.saved_model.load(str(path))
    x = np.random.default_rng(6).standard_normal((5, 4)).astype(np.float32)
    variables = [v for v in loaded.variables if v.trainable]
    _helpers.assert_matches_tf(module, lambda i: loaded(i["default"], training=False),
                               {"default": x}, variables, signature="default")


def test_reusable_train_variant_updates_batch_norm_statistics_as_tf(reusable):
    path, module = reusable
    loaded = tf.saved_model.load(str(path))
    x = np.random.default_rng(7).standard_normal((5, 4)).astype(np.float32)
    loaded(x, training=True)
    _assert_train_state_matches_tf(module, loaded, x)


def _assert_train_state_matches_tf(module, loaded, x):
    """The train variant's new batch-norm statistics equal those ``loaded`` (TF, already
    called on ``x`` with ``training=True``) holds."""
    outputs, state = jax.jit(lambda p, x: module.apply(p, x, tags="train",
                                                       rng=jax.random.key(0)))(module.params, x)
    assert outputs.shape == (5, 2)
    tf_values = {v.name.removesuffix(":0"): v.numpy() for v in loaded.variables}
    names = module.attachments["tf_variable_names"]
    updated = dict(_helpers._flatten(state))
    assert len(updated) == 2  # moving mean and variance
    for path_, value in updated.items():
        np.testing.assert_allclose(value, tf_values[names[path_].removesuffix(":0")],
                                   rtol=1e-5, atol=1e-6, err_msg=path_)


def test_regularization_losses_match_tf(reusable):
    path, module = reusable
    loaded = tf.saved_model.load(str(path))
    variables = [v for v in loaded.variables if v.trainable]
    with tf.GradientTape() as tape:
        expected = tf.add_n([loss() for loss in loaded.regularization_losses])
    tf_grads = {v.name.removesuffix(":0"): g for v, g in
                zip(variables, tape.gradient(expected, variables))}
    np.testing.assert_allclose(module.regularization_loss(), expected.numpy(), rtol=1e-6)
    grads = jax.jit(jax.grad(module.regularization_loss))(module.params)
    names = module.attachments["tf_variable_names"]
    for path_, grad in _helpers._flatten(grads):
        tf_grad = tf_grads.get(names[path_].removesuffix(":0"))
        expected_grad = np.zeros_like(grad) if tf_grad is None else tf_grad.numpy()
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7, err_msg=path_)


# -- Keras models with several inputs -------------------------------------------------------


def _two_inputs(api):
    """A functional model of two named inputs, with batch norm and dropout."""
    api.utils.set_random_seed(1)
    ids, extra = api.Input((3,), name="ids"), api.Input((2,), name="extra")
    x = api.layers.Concatenate()([api.layers.Dense(4)(ids), extra])
    x = api.layers.Dropout(0.5)(api.layers.BatchNormalization()(x))
    return api.Model([ids, extra], api.layers.Dense(2)(x))


def _two_input_batch(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"ids": rng.standard_normal((5, 3)).astype(np.float32),
            "extra": rng.standard_normal((5, 2)).astype(np.float32)}


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory):
    import tf_keras
    path = tmp_path_factory.mktemp("two_inputs") / "saved_model"
    tf.saved_model.save(_two_inputs(tf_keras), str(path))
    return path, saved_model.load_saved_model(path)


def test_a_two_input_keras_model_gets_a_default_signature_by_input_name(two_inputs):
    path, module = two_inputs
    assert set(module.signatures["default"].inputs) == {"ids", "extra"}
    loaded = tf.saved_model.load(str(path))
    variables = [v for v in loaded.variables if v.trainable]
    _helpers.assert_matches_tf(
        module, lambda i: loaded([i["ids"], i["extra"]], training=False),
        _two_input_batch(11), variables, signature="default")
    assert "notes" not in module.manifest.origin


def test_a_two_input_keras_model_gets_a_train_variant_as_tf(two_inputs):
    path, module = two_inputs
    loaded = tf.saved_model.load(str(path))
    x = _two_input_batch(12)
    loaded([x["ids"], x["extra"]], training=True)
    _assert_train_state_matches_tf(module, loaded, x)


def test_a_keras_export_says_why_it_has_no_default_signature(tmp_path):
    from jaxhub._src.cli import inspect
    _save(_two_inputs(keras), "export", tmp_path / "saved")
    module = saved_model.load_saved_model(tmp_path / "saved")
    assert "default" not in module.signatures
    assert module.variants == (frozenset(),)
    summary = inspect.describe(module.manifest, "two inputs")
    assert "note: no 'default' signature and no train variant" in summary
    assert "tf.saved_model.save" in summary


class _Unconvertible(tf.Module):
    """Two signatures, each with an op no JAX function can implement."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def clock(self, x):
        return x + tf.cast(tf.timestamp(), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def unique(self, x):
        return tf.raw_ops.UniqueV2(x=x, axis=[0]).y  # a data-dependent output size


def test_one_error_lists_every_unsupported_op_of_every_signature(tmp_path):
    module = _Unconvertible()
    tf.saved_model.save(module, str(tmp_path / "saved"),
                        signatures={"clock": module.clock, "unique": module.unique})
    with pytest.raises(interpreter.UnsupportedOpsError) as error:
        saved_model.load_saved_model(tmp_path / "saved")
    message = str(error.value)
    assert "2 TF op(s)" in message
    assert "Timestamp: " in message and "UniqueV2: " in message


def test_jaxhub_load_converts_a_saved_model_once_and_caches_it(tmp_path):
    model = _mlp()
    _save(model, "export", tmp_path / "saved")
    x = np.random.default_rng(8).standard_normal((2, 8)).astype(np.float32)
    first = jaxhub.load(tmp_path / "saved", cache_dir=tmp_path / "cache")
    again = jaxhub.load(tmp_path / "saved", cache_dir=tmp_path / "cache")
    assert first.path == again.path and first.path is not None
    np.testing.assert_allclose(again(x, signature="serve"), model(x), rtol=1e-5, atol=1e-6)


def test_only_the_variables_a_function_captures_are_read_and_become_params(tmp_path):
    class Scaled(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.arange(3, dtype=np.float32), name="w")
            self.unused = tf.Variable(np.ones((64, 64), np.float32), name="unused")
            self.label = tf.Variable("text", name="label")  # no param can hold a string

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            return {"y": x * self.w}

    scaled = Scaled()
    tf.saved_model.save(scaled, str(tmp_path / "saved"),
                        signatures={"serving_default": scaled.__call__})
    # Damaging the bytes of the variables no function uses does not fail the conversion:
    # they are never read (a Keras export saves a second copy of every variable).
    data = next((tmp_path / "saved" / "variables").glob("variables.data-*"))
    unused_bytes = np.ones((64, 64), np.float32).tobytes()
    data.write_bytes(data.read_bytes().replace(unused_bytes, b"\xff" * len(unused_bytes)))
    module = saved_model.load_saved_model(tmp_path / "saved")
    assert [leaf.shape for leaf in jax.tree.leaves(module.params)] == [(3,)]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(module(x), scaled(x)["y"].numpy())


def test_a_keras_export_converts_its_aliased_signatures_once(tmp_path):
    model = _mlp()
    _save(model, "export", tmp_path / "saved")
    module = saved_model.load_saved_model(tmp_path / "saved")
    files = {f.signature_name: f.file for f in module.manifest.functions}
    assert {"serve", "serving_default"} <= set(files)
    assert files["serve"] == files["serving_default"]
    x = np.random.default_rng(10).standard_normal((2, 8)).astype(np.float32)
    for name in ("serve", "serving_default"):
        np.testing.assert_allclose(module(x, signature=name), model(x), rtol=1e-5, atol=1e-6)


def test_text_format_saved_model(tmp_path):
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2
    model = _mlp()
    _save(model, "save", tmp_path / "saved")
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((tmp_path / "saved" / "saved_model.pb").read_bytes())
    (tmp_path / "saved" / "saved_model.pbtxt").write_text(text_format.MessageToString(proto))
    (tmp_path / "saved" / "saved_model.pb").unlink()
    assert formats.detect(tmp_path / "saved").name == "TF2 SavedModel"
    module = saved_model.load_saved_model(tmp_path / "saved")
    x = np.random.default_rng(9).standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_allclose(module(x, signature="serving_default"), model(x), rtol=1e-5,
                               atol=1e-6)


class _Traced(tf.Module):
    """Root tf.functions without input signatures, traced for several input structures."""

    def __init__(self):
        super().__init__()
        self.scale = tf.Variable([2.0, -1.0, 0.5], name="scale")

    @tf.function
    def total(self, parts, bias):
        return tf.add_n(parts) * self.scale + bias

    @tf.function
    def double(self, x):
        return x + x


def test_a_tf_function_with_several_concrete_functions_gives_one_signature_each(tmp_path):
    """Named by the lengths of the list arguments (``total_2``, ``total_3``), else by
    position (``double_0``, ``double_1``: two dtypes); ``total`` picks the one whose
    inputs the call names (the k-th item of ``parts`` is ``parts/k``)."""
    model = _Traced()
    vector = tf.TensorSpec([None, 3], tf.float32)
    for count in (2, 3):
        model.total.get_concrete_function([vector] * count, tf.TensorSpec([3], tf.float32))
    for dtype in (tf.float32, tf.int32):
        model.double.get_concrete_function(tf.TensorSpec([None], dtype))
    tf.saved_model.save(model, str(tmp_path / "saved"))
    module = saved_model.load_saved_model(tmp_path / "saved")
    assert {"total_2", "total_3", "double_0", "double_1"} <= set(module.signatures)
    rng = np.random.default_rng(11)
    parts = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(3)]
    bias = rng.standard_normal(3).astype(np.float32)
    for count in (2, 3):
        want = model.total(parts[:count], bias).numpy()
        inputs = {"bias": bias, **{f"parts/{i}": p for i, p in enumerate(parts[:count])}}
        np.testing.assert_allclose(module(inputs, signature=f"total_{count}"), want,
                                   rtol=1e-6)
        np.testing.assert_allclose(module(inputs, signature="total"), want, rtol=1e-6)
    doubled = {module.signatures[n].inputs["x"].dtype: n for n in ("double_0", "double_1")}
    np.testing.assert_array_equal(module(np.array([3, 4], np.int32),
                                         signature=doubled["int32"]), [6, 8])
