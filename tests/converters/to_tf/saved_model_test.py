"""The exported SavedModel through ``tensorflow_hub.load``: values, gradients, state."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
from tensorflow.core.protobuf import saved_model_pb2

import jaxhub
from jaxhub._src import tree
from jaxhub_tf.from_tf.tf1.hub_module import load_tf1_hub_module
from jaxhub_tf.to_tf import export_saved_model
from tests.converters.to_tf.conftest import bn_inputs

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures"
SAVED_MODEL_CLI = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def _x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 50)).astype(np.float32)


def _first_key(seed: int = 0) -> np.ndarray:
    """The RNG key data a freshly loaded SavedModel draws on its first training call."""
    rng = tf.random.Generator.from_seed(seed)
    words = rng.uniform([2], minval=-2 ** 31, maxval=2 ** 31 - 1, dtype=tf.int32)
    return tf.bitcast(words, tf.uint32).numpy()


def _by_path(obj) -> dict[str, tf.Variable]:
    return {v.name.split(":")[0]: v for v in obj.variables}


def _tf_grads(tape, loss, obj) -> dict[str, np.ndarray]:
    grads = tape.gradient(loss, obj.trainable_variables)
    return {v.name.split(":")[0]: g.numpy() for v, g in zip(obj.trainable_variables, grads)}


def _jax_grads(grads) -> dict[str, np.ndarray]:
    return {"/".join(path): np.asarray(g) for path, g in tree.flatten(grads)}


@pytest.mark.parametrize("batch", [1, 7])
def test_call_matches_jaxhub_for_any_batch_size(mlp_saved_model, mlp_module, batch):
    obj = hub.load(str(mlp_saved_model))
    x = _x(batch)
    np.testing.assert_allclose(obj(x).numpy(), mlp_module(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(obj(x, training=False).numpy(), mlp_module(x), rtol=1e-6,
                               atol=1e-6)


def test_serving_signatures_by_name_match_jaxhub(mlp_saved_model, mlp_module):
    obj = hub.load(str(mlp_saved_model))
    assert set(obj.signatures) == {"default", "double", "serving_default"}
    x = _x(5)
    for name in mlp_module.signatures:
        spec = mlp_module.signatures[name]
        inputs = {k: x for k in spec.inputs}
        got = obj.signatures[name](**inputs)
        want = mlp_module(inputs, signature=name, as_dict=True)
        assert set(got) == set(spec.outputs)
        for key in spec.outputs:
            np.testing.assert_allclose(got[key].numpy(), want[key], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(obj.signatures["serving_default"](default=x)["default"],
                               mlp_module(x), rtol=1e-6, atol=1e-6)


def test_serving_signatures_keep_names_and_specs(mlp_saved_model, mlp_module):
    obj = hub.load(str(mlp_saved_model))
    for name, spec in mlp_module.signatures.items():
        fn = obj.signatures[name]
        _, inputs = fn.structured_input_signature
        assert {k: (s.shape.as_list(), s.dtype.name) for k, s in inputs.items()} == {
            k: ([d if isinstance(d, int) else None for d in s.shape], s.dtype)
            for k, s in spec.inputs.items()}
        outputs = fn.structured_outputs
        assert {k: (s.shape.as_list(), s.dtype.name) for k, s in outputs.items()} == {
            k: ([d if isinstance(d, int) else None for d in s.shape], s.dtype)
            for k, s in spec.outputs.items()}


def test_saved_model_cli_lists_every_signature(mlp_saved_model, mlp_module):
    result = subprocess.run([*SAVED_MODEL_CLI, "show", "--dir", str(mlp_saved_model), "--all"],
                            capture_output=True, text=True, timeout=120, check=True)
    for name in [*mlp_module.signatures, "serving_default"]:
        assert f"signature_def['{name}']" in result.stdout
    assert "inputs['a'] tensor_info" in result.stdout
    assert "outputs['doubled'] tensor_info" in result.stdout
    assert "shape: (-1, 50)" in result.stdout


def test_tf1_session_runs_serving_signatures(mlp_saved_model, mlp_module):
    """What ``saved_model_cli run`` and TF1-style graph code do: load into a Session."""
    x = _x(2)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(mlp_saved_model))
        sig = meta.signature_def["double"]
        got = session.run({k: t.name for k, t in sig.outputs.items()},
                          {sig.inputs["a"].name: x})
    want = mlp_module({"a": x}, signature="double", as_dict=True)
    for key in ("doubled", "total"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-6)


def test_variables_carry_params_and_trainable_mask(mlp_saved_model, mlp_module):
    obj = hub.load(str(mlp_saved_model))
    params = {"/".join(p): np.asarray(v) for p, v in tree.flatten(mlp_module.params)}
    mask = {"/".join(p): t for p, t in tree.flatten(mlp_module.trainable_mask)}
    variables = _by_path(obj)
    assert set(variables) == set(params)
    for name, var in variables.items():
        np.testing.assert_array_equal(var.numpy(), params[name])
        assert var.trainable == mask[name]
    assert {v.name for v in obj.trainable_variables} == {
        f"{name}:0" for name, trainable in mask.items() if trainable}


def test_gradients_match_jax(mlp_saved_model, mlp_module):
    obj = hub.load(str(mlp_saved_model))
    x, target = _x(6), _x(6, seed=1)[:, :10]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum((obj(x) - target) ** 2)
    grads = jax.grad(lambda p: jnp.sum((mlp_module.apply(p, x) - target) ** 2))(
        mlp_module.params)
    want = _jax_grads(grads)
    for name, g in _tf_grads(tape, loss, obj).items():
        np.testing.assert_allclose(g, want[name], rtol=1e-5, atol=1e-6)


def test_serving_signature_gradient_reaches_input(mlp_saved_model, mlp_module):
    obj = hub.load(str(mlp_saved_model))
    x = tf.constant(_x(3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(obj.signatures["double"](a=x)["total"] ** 2)
    want = jax.grad(lambda a: jnp.sum(
        mlp_module({"a": a}, signature="double", as_dict=True)["total"] ** 2))(x.numpy())
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), want, rtol=1e-5)


def test_regularization_loss_and_its_gradient(mlp_saved_model, mlp_module):
    obj = hub.load(str(mlp_saved_model))
    assert len(obj.regularization_losses) == 1
    with tf.GradientTape() as tape:
        loss = obj.regularization_losses[0]()
    np.testing.assert_allclose(loss.numpy(), mlp_module.regularization_loss(), rtol=1e-6)
    want = _jax_grads(jax.grad(mlp_module.regularization_loss)(mlp_module.params))
    for name, g in _tf_grads(tape, loss, obj).items():
        np.testing.assert_allclose(g, want[name], rtol=1e-5, atol=1e-8)


def test_training_call_runs_train_variant_and_assigns_state(mlp_saved_model, mlp_module):
    obj = hub.load(str(mlp_saved_model))
    x = _x(8)
    key = _first_key()
    with tf.GradientTape() as tape:
        y = obj(x, training=True)
        loss = tf.reduce_sum(y ** 2)
    (want, state) = mlp_module(x, tags="train", rng=key)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_by_path(obj)["stats/mean"].numpy(), state["stats"]["mean"],
                               rtol=1e-6, atol=1e-7)
    grads = jax.grad(lambda p: jnp.sum(mlp_module.apply(p, x, tags="train", rng=key)[0] ** 2))(
        mlp_module.params)
    want_grads = _jax_grads(grads)
    for name, g in _tf_grads(tape, loss, obj).items():
        np.testing.assert_allclose(g, want_grads[name], rtol=1e-5, atol=1e-6)
    # The generator advances: the next training call drops other units.
    assert not np.allclose(obj(x, training=True).numpy(), y.numpy())


def test_dict_inputs_batch_norm_and_dropout(bn_saved_model, bn_module):
    obj = hub.load(str(bn_saved_model))
    inputs = bn_inputs(16)
    got = obj(inputs)
    want = bn_module(inputs, as_dict=True)
    assert set(got) == {"logits", "embedding"}
    for k in want:
        np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-5, atol=1e-6)
    key = _first_key()
    got = obj(inputs, training=True)
    want, state = bn_module(inputs, as_dict=True, tags="train", rng=key)
    np.testing.assert_allclose(got["logits"].numpy(), want["logits"], rtol=1e-5, atol=1e-6)
    variables = _by_path(obj)
    for stat in ("mean", "var"):
        np.testing.assert_allclose(variables[f"bn/{stat}"].numpy(), state["bn"][stat],
                                   rtol=1e-5, atol=1e-7)
    # Inference now uses the updated statistics, as jaxhub does after merging them.
    merged = jaxhub.merge_params(bn_module.params, state)
    np.testing.assert_allclose(obj(inputs)["logits"].numpy(),
                               bn_module.apply(merged, inputs, as_dict=True)["logits"],
                               rtol=1e-5, atol=1e-6)


def test_seed_sets_the_training_rng(tmp_path, bn_module):
    path = export_saved_model(bn_module, tmp_path / "seeded", seed=7)
    obj = hub.load(str(path))
    inputs = bn_inputs(4)
    want, _ = bn_module(inputs, as_dict=True, tags="train", rng=_first_key(7))
    np.testing.assert_allclose(obj(inputs, training=True)["logits"].numpy(), want["logits"],
                               rtol=1e-5, atol=1e-6)


def test_export_with_other_params_and_from_a_path(tmp_path, mlp_dir, mlp_module):
    params = jax.tree.map(lambda p: p * 1.5, mlp_module.params)
    path = export_saved_model(mlp_dir, tmp_path / "tuned", params=params)
    obj = hub.load(str(path))
    x = _x(4)
    np.testing.assert_allclose(obj(x).numpy(), mlp_module.apply(params, x), rtol=1e-5)


def test_refuses_mismatched_params_and_existing_directories(tmp_path, mlp_module,
                                                            mlp_saved_model):
    with pytest.raises(jaxhub.SignatureError, match="dense1"):
        export_saved_model(mlp_module, tmp_path / "bad",
                           params={**mlp_module.params, "dense1": {}})
    with pytest.raises(FileExistsError):
        export_saved_model(mlp_module, mlp_saved_model)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("length", [3, 9])
def test_integer_inputs_of_any_length(text_saved_model, text_module, length):
    obj = hub.load(str(text_saved_model))
    tokens = np.random.default_rng(length).integers(0, 6, size=(4, length)).astype(np.int32)
    got = obj.signatures["embed"](default=tf.constant(tokens))
    want = text_module(tokens, signature="embed", as_dict=True)
    np.testing.assert_allclose(got["embedding"].numpy(), want["embedding"], rtol=1e-6)
    np.testing.assert_array_equal(got["length"].numpy(), want["length"])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(obj.signatures["embed"](default=tf.constant(tokens))["embedding"])
    (grad,) = tape.gradient(loss, obj.trainable_variables)
    want_grad = jax.grad(lambda p: jnp.sum(
        text_module.apply(p, tokens, signature="embed", as_dict=True)["embedding"]))(
        text_module.params)
    np.testing.assert_allclose(tf.convert_to_tensor(grad).numpy(), want_grad["embedding"],
                               rtol=1e-6)


def test_module_without_default_has_no_call(text_saved_model):
    obj = hub.load(str(text_saved_model))
    assert not callable(obj)
    assert set(obj.signatures) == {"embed"}


def test_assets_and_attachments_are_kept(text_saved_model, text_module):
    obj = hub.load(str(text_saved_model))
    vocab = obj.assets["vocab.txt"].asset_path.numpy().decode()
    assert open(vocab).read() == text_module.assets["vocab.txt"].read_text()
    attachments = text_saved_model / "assets.extra" / "jaxhub_attachments.json"
    assert json.loads(attachments.read_text()) == dict(text_module.attachments)


def test_each_function_and_its_saved_gradient_is_one_xla_call_module(mlp_saved_model):
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((mlp_saved_model / "saved_model.pb").read_bytes())
    calls = {f.signature.name: [n for n in f.node_def if n.op == "XlaCallModule"]
             for f in proto.meta_graphs[0].graph_def.library.function}
    calls = {name: nodes for name, nodes in calls.items() if nodes}
    assert all(len(nodes) == 1 for nodes in calls.values())
    # Forward functions and, saved beside them, the gradient functions (exported VJPs).
    assert any("grad_fn" in name for name in calls)
    assert any("serve" in name for name in calls)
    for (node,) in calls.values():
        assert sorted(p.decode() for p in node.attr["platforms"].list.s) == [
            "CPU", "CUDA", "ROCM", "TPU"]


@pytest.mark.xfail(raises=LookupError,
                   reason="a SavedModel keeps one level of custom gradient: the saved VJP has "
                          "no gradient of its own, so nested tapes (second order, gradient "
                          "penalties) cannot differentiate through it")
def test_second_order_gradients(mlp_saved_model, mlp_module):
    obj = hub.load(str(mlp_saved_model))
    x = tf.constant(_x(2))
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            loss = tf.reduce_sum(obj(x) ** 2)
        penalty = tf.reduce_sum(inner.gradient(loss, x) ** 2)
    got = outer.gradient(penalty, x)

    def jax_penalty(x):
        grad = jax.grad(lambda x: jnp.sum(mlp_module(x) ** 2))(x)
        return jnp.sum(grad ** 2)

    np.testing.assert_allclose(got.numpy(), jax.grad(jax_penalty)(x.numpy()), rtol=1e-4)


def test_text_modules_with_a_host_stage_are_refused(tmp_path):
    module = load_tf1_hub_module(FIXTURES / "tf1" / "text")
    with pytest.raises(NotImplementedError, match=r"\['default', 'tokens'\].*host"):
        export_saved_model(module, tmp_path / "text")
    assert not (tmp_path / "text").exists()
