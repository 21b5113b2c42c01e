"""TF1 Hub modules: every signature and variant against the same graph in a v1 Session."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

import jaxhub
from jaxhub_tf.from_tf.values import Context

from ._session import TF1Session, flat_params

RNG = np.random.default_rng(0)
X = RNG.standard_normal((5, 6)).astype(np.float32)
IMAGES = RNG.standard_normal((2, 32, 32, 3)).astype(np.float32)


def _loss_and_cts(outputs):
    cts = {k: np.random.default_rng(1).standard_normal(np.shape(v)).astype(np.float32)
           for k, v in outputs.items()}
    return cts


def _jax_grads(module, signature, inputs, cts, tags=None):
    def loss(params):
        outs = module.apply(params, inputs, signature=signature, as_dict=True, tags=tags)
        return sum(jnp.sum(outs[k] * c) for k, c in cts.items())

    return flat_params(jax.jit(jax.grad(loss))(module.params))


def _assert_close(ours, theirs, atol=1e-5):
    assert set(ours) == set(theirs)
    for k in theirs:
        np.testing.assert_allclose(np.asarray(ours[k]), theirs[k], rtol=1e-5, atol=atol,
                                   err_msg=k)


@pytest.mark.parametrize("signature,inputs", [
    ("default", {"x": X}),
    ("features", {"a": X, "scale": np.float32(0.5)}),
])
def test_mlp_inference_outputs_and_gradients_match_tf(converted, tf_session, signature,
                                                        inputs):
    module, sess = converted("mlp"), tf_session("mlp")
    theirs = sess.run(signature, inputs)
    _assert_close(module(inputs, signature=signature, as_dict=True), theirs)
    cts = _loss_and_cts(theirs)
    tf_grads, _ = sess.grads(signature, inputs, cts)
    ours = _jax_grads(module, signature, inputs, cts)
    trainable = {k for k, v in flat_params(module.trainable_mask).items() if v}
    # jaxhub stops gradients at frozen params; TF1 differentiates through them.
    _assert_close({k: v for k, v in ours.items() if k in trainable},
                  {k: v for k, v in tf_grads.items() if k in trainable})


def test_mlp_train_variant_returns_update_ops_as_state(converted, tf_session):
    module, sess = converted("mlp"), tf_session("mlp", {"train"})
    _, state = module({"x": X}, tags="train", rng=jax.random.key(0))
    # Fetching UPDATE_OPS runs the assignments once, from the restored values.
    updates = sess.run("default", {"x": X}, fetch=["Assign:0", "Assign_1:0"])
    np.testing.assert_allclose(state["bn"]["moving_mean"], updates["Assign:0"], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(state["bn"]["moving_variance"], updates["Assign_1:0"],
                               rtol=1e-5, atol=1e-6)


def test_mlp_train_variant_matches_tf_given_the_same_dropout_draws(converted, tf_session):
    module, sess = converted("mlp"), tf_session("mlp", {"train"})
    key = jax.random.key(7)
    ours, _ = module({"x": X}, tags="train", rng=key, as_dict=True)
    # The dropout is the graph's only random op: it draws with the first key the
    # interpreter's context hands out. Feed TF the same uniform numbers.
    uniform = jax.random.uniform(Context(None, {}, key).next_key("RandomUniform"),
                                 (X.shape[0], 12), jnp.float32)
    theirs = sess.run("default", {"x": X}, feed={
        "dropout/random_uniform/RandomUniform:0": np.asarray(uniform)})
    _assert_close(ours, theirs)


def test_mlp_train_variant_applies_dropout(converted):
    module = converted("mlp")
    a, _ = module({"x": X}, tags="train", rng=jax.random.key(0))
    b, _ = module({"x": X}, tags="train", rng=jax.random.key(1))
    assert not np.allclose(a, b)  # different keys drop different units
    assert module.variants == (frozenset(), frozenset({"train"}))
    assert set(module.variant_signatures("train")) == {"default", "features"}


def test_mlp_train_variant_without_random_ops_matches_tf(converted, tf_session):
    module, sess = converted("mlp"), tf_session("mlp", {"train"})
    inputs = {"a": X, "scale": np.float32(2.0)}
    ours, state = module(inputs, signature="features", as_dict=True, tags="train",
                         rng=jax.random.key(0))
    _assert_close(ours, sess.run("features", inputs))
    assert state == {}  # this signature feeds none of the batch statistics


def test_mlp_regularizer_and_trainable_mask_follow_the_collections(converted, tf_session):
    module, sess = converted("mlp"), tf_session("mlp")
    tf_loss = sum(sess.collection_values(tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES))
    np.testing.assert_allclose(module.regularization_loss(), tf_loss, rtol=1e-6)
    grads = flat_params(jax.grad(module.regularization_loss)(module.params))
    kernel = flat_params(module.params)["dense1/kernel"]
    np.testing.assert_allclose(grads["dense1/kernel"], 0.01 * kernel, rtol=1e-5)
    trainable = {v.op.name for v in sess.graph.get_collection("trainable_variables")}
    assert {k for k, v in flat_params(module.trainable_mask).items() if v} == trainable


def test_image_module_matches_tf_and_carries_its_image_size(converted, tf_session):
    module, sess = converted("image"), tf_session("image")
    theirs = sess.run("default", {"default": IMAGES})
    _assert_close(module(IMAGES, as_dict=True), theirs)
    cts = _loss_and_cts(theirs)
    tf_grads, _ = sess.grads("default", {"default": IMAGES}, cts)
    _assert_close(_jax_grads(module, "default", IMAGES, cts), tf_grads, atol=1e-4)
    assert module.get_attached_message("image_size") == [32, 32]
    assert "image_module_info" in module.attachments["tf_hub_attachments"]


def test_v1_control_flow_matches_tf(converted, tf_session):
    module, sess = converted("control_flow"), tf_session("control_flow")
    ops = {n.op for n in sess.graph.as_graph_def().node}
    assert {"Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond"} <= ops
    for x in (X[:, :3], -np.abs(X[:, :3])):  # both branches of the tf.cond
        theirs = sess.run("default", {"default": x})
        _assert_close(module(x, as_dict=True), theirs)
        cts = _loss_and_cts(theirs)
        tf_grads, _ = sess.grads("default", {"default": x}, cts)
        _assert_close(_jax_grads(module, "default", x, cts), tf_grads)


def test_converted_module_exports_and_loads_without_conversion(converted, tmp_path):
    module = converted("mlp")
    loaded = jaxhub.load(module.export(tmp_path / "mlp"))
    np.testing.assert_array_equal(loaded({"x": X}), module({"x": X}))
    np.testing.assert_allclose(loaded.regularization_loss(), module.regularization_loss())
    assert loaded.trainable_mask == module.trainable_mask


def test_sparse_input_is_three_dense_inputs(tmp_path):
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as sess:
        sp = v1.sparse_placeholder(tf.float32, [None, 4], name="sp")
        w = v1.get_variable("w", [], initializer=v1.constant_initializer(3.0))
        outputs = {"scaled": sp.values * w, "rows": sp.indices[:, 0],
                   "width": sp.dense_shape[1]}
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(tmp_path / "m"))
        builder.add_meta_graph_and_variables(sess, [], {
            "default": v1.saved_model.signature_def_utils.predict_signature_def(
                {"sp": sp}, outputs)})
        builder.save()
    (tmp_path / "m" / "tfhub_module.pb").write_bytes(b"\x08\x03")  # ModuleDef, format V3
    module = jaxhub.load(tmp_path / "m", cache_dir=tmp_path / "cache")
    assert set(module.signatures["default"].inputs) == {"sp.indices", "sp.values",
                                                        "sp.dense_shape"}
    out = module({"sp.indices": np.array([[0, 1], [2, 3]], np.int32),
                  "sp.values": np.array([1.0, 2.0], np.float32),
                  "sp.dense_shape": np.array([3, 4], np.int32)}, as_dict=True)
    np.testing.assert_allclose(out["scaled"], [3.0, 6.0])
    np.testing.assert_array_equal(out["rows"], [0, 2])
    assert int(out["width"]) == 4


def test_value_shaped_ops_on_inputs_run_in_a_host_stage(tmp_path):
    # tf.range(n) and tf.boolean_mask of a fed tensor: their shapes follow the inputs'
    # values, so they run on the host; the products with the variable on the device.
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as sess:
        n = v1.placeholder(tf.int32, [], name="n")
        x = v1.placeholder(tf.float32, [None], name="x")
        w = v1.get_variable("w", [], initializer=v1.constant_initializer(1.5))
        outputs = {"y": tf.cast(tf.range(n), tf.float32) * w,
                   "picked": tf.boolean_mask(x, x > 0) * w}
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(tmp_path / "m"))
        builder.add_meta_graph_and_variables(sess, [], {
            "default": v1.saved_model.signature_def_utils.predict_signature_def(
                {"n": n, "x": x}, outputs)})
        builder.save()
    (tmp_path / "m" / "tfhub_module.pb").write_bytes(b"\x08\x03")  # ModuleDef, format V3
    module = jaxhub.load(tmp_path / "m", cache_dir=tmp_path / "cache")
    assert module.has_host_stage("default")
    sess = TF1Session(tmp_path / "m")
    try:
        for inputs in ({"n": np.int32(4), "x": np.array([1, -2, 3], np.float32)},
                       {"n": np.int32(0), "x": np.array([-1, -2], np.float32)}):
            theirs = sess.run("default", inputs)
            _assert_close(module(inputs, as_dict=True), theirs)
    finally:
        sess.close()


def test_an_inference_signature_with_random_ops_takes_the_callers_key(tmp_path):
    # A module that samples at inference (a noisy embedding): its untagged graph holds a
    # RandomUniform, so its signature takes a key, as a train variant does.
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as sess:
        x = v1.placeholder(tf.float32, [None, 6], name="x")
        w = v1.get_variable("w", [], initializer=v1.constant_initializer(1.5))
        scaled = x * w
        outputs = {"scaled": scaled, "noisy": scaled + v1.random_uniform(tf.shape(x))}
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(tmp_path / "m"))
        builder.add_meta_graph_and_variables(sess, [], {
            "default": v1.saved_model.signature_def_utils.predict_signature_def(
                {"x": x}, outputs)})
        builder.save()
    (tmp_path / "m" / "tfhub_module.pb").write_bytes(b"\x08\x03")  # ModuleDef, format V3
    module = jaxhub.load(tmp_path / "m", cache_dir=tmp_path / "cache")
    assert module.manifest.function(frozenset(), "default").takes_rng
    inputs = {"x": np.random.default_rng(2).standard_normal((500, 6)).astype(np.float32)}
    sess = TF1Session(tmp_path / "m")
    try:
        theirs = sess.run("default", inputs)
    finally:
        sess.close()
    call = jax.jit(lambda inputs, key: module(inputs, as_dict=True, rng=key))
    ours = call(inputs, jax.random.key(0))
    _assert_close({"scaled": ours["scaled"]}, {"scaled": theirs["scaled"]})
    for out in (ours, theirs):  # uniform in [0, 1) on top of the same product
        noise = np.asarray(out["noisy"]) - np.asarray(out["scaled"])
        assert noise.min() >= -1e-6 and noise.max() < 1 and abs(noise.mean() - 0.5) < 0.03
    np.testing.assert_array_equal(call(inputs, jax.random.key(0))["noisy"], ours["noisy"])
    assert not np.allclose(call(inputs, jax.random.key(1))["noisy"], ours["noisy"])
    with pytest.raises(jaxhub.SignatureError, match=r"signature 'default' draws random "
                                                    r"numbers.*rng=jax.random.key\(seed\)"):
        module(inputs)
