"""How converted signatures behave: 64-bit inputs, forward-only functions, random ops in
serving signatures, the root's ``__call__``, ``tf.random.Generator``s and custom gradients,
and signatures whose effect is a variable assignment.

Every expected value is what TensorFlow computes for the same SavedModel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
from jax.experimental import checkify
import numpy as np
import pytest
import tensorflow as tf

import jaxhub
from jaxhub._src.cli.inspect import describe
from jaxhub_tf.from_tf.saved_model import convert_saved_model, load_saved_model
from jaxhub_tf.to_tf import export_saved_model
from tests.conftest import repo_pythonpath

# -- the 64-bit rule ----------------------------------------------------------------------


class _Wide(tf.Module):
    """numpy's defaults: float64 features and int64 ids, as tf.data hands them over."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.linspace(-1.0, 1.0, 6).reshape(2, 3))

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float64),
                                  tf.TensorSpec([None], tf.int64)])
    def serve(self, x, ids):
        scale = tf.cast(ids % 7, tf.float64)[:, None]
        return {"y": tf.tanh(tf.matmul(x, self.w)) * scale, "next_ids": ids * 3 + 1}


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    path = tmp_path_factory.mktemp("wide") / "saved"
    model = _Wide()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((4, 2)), "ids": np.array([1, 5, 9, 12])}
    module = convert_saved_model(path, path.parent / "narrow")   # here x64 is off
    return path, model, inputs, module


def _tf_outputs(model, inputs):
    return {k: v.numpy() for k, v in model.serve(inputs["x"], inputs["ids"]).items()}


def test_64_bit_inputs_take_32_bit_arrays_under_jit_with_x64_off(wide):
    _, model, inputs, module = wide
    assert module.signatures["serving_default"].inputs["ids"].dtype == "int64"
    call = jax.jit(lambda x, ids: module({"x": x, "ids": ids}, signature="serving_default",
                                         as_dict=True))
    out = call(jnp.asarray(inputs["x"]), jnp.asarray(inputs["ids"]))
    expected = _tf_outputs(model, inputs)
    assert out["next_ids"].dtype == jnp.int32 and out["y"].dtype == jnp.float32
    np.testing.assert_array_equal(out["next_ids"], expected["next_ids"])
    np.testing.assert_allclose(out["y"], expected["y"], rtol=1e-5, atol=1e-6)
    # numpy's own 64-bit arrays are accepted too, eagerly and under jit.
    eager = module(inputs, signature="serving_default", as_dict=True)
    np.testing.assert_array_equal(eager["next_ids"], expected["next_ids"])
    np.testing.assert_allclose(call(inputs["x"], inputs["ids"])["y"], expected["y"],
                               rtol=1e-5, atol=1e-6)


def test_grad_and_vmap_through_float64_inputs_with_x64_off(wide):
    _, model, inputs, module = wide

    def loss(x):
        return jnp.sum(module({"x": x, "ids": inputs["ids"]}, signature="serving_default",
                              as_dict=True)["y"])

    x = tf.constant(inputs["x"])
    with tf.GradientTape() as tape:
        tape.watch(x)
        tf_loss = tf.reduce_sum(model.serve(x, inputs["ids"])["y"])
    grad = jax.jit(jax.grad(loss))(inputs["x"])
    np.testing.assert_allclose(grad, tape.gradient(tf_loss, x).numpy(), rtol=1e-5, atol=1e-6)

    xs = np.stack([inputs["x"], 2 * inputs["x"]])
    ys = jax.vmap(lambda x: module({"x": x, "ids": jnp.asarray(inputs["ids"])},
                                   signature="serving_default", as_dict=True)["y"])(xs)
    for x, y in zip(xs, ys):
        np.testing.assert_allclose(y, _tf_outputs(model, {**inputs, "x": x})["y"],
                                   rtol=1e-5, atol=1e-6)


def test_an_int64_value_beyond_int32_is_refused_with_x64_off(wide):
    _, _, inputs, module = wide
    too_big = {**inputs, "ids": np.array([1, 2, 3, 2**40])}
    with pytest.raises(jaxhub.SignatureError) as error:
        module(too_big, signature="serving_default")
    message = str(error.value)
    assert "signature 'serving_default'" in message and "input 'ids'" in message
    assert "jax_enable_x64" in message


_X64_ON = textwrap.dedent("""
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np, jaxhub
    saved, narrow, cache, data = sys.argv[1:5]
    inputs = dict(np.load(data))
    module = jaxhub.load(saved, cache_dir=cache)    # converted in this mode, without TF
    call = jax.jit(lambda x, ids: module({"x": x, "ids": ids}, signature="serving_default",
                                         as_dict=True))
    out = call(jnp.asarray(inputs["x"]), jnp.asarray(inputs["ids"]))
    grad = jax.grad(lambda x: jnp.sum(module({"x": x, "ids": inputs["ids"]},
                                             signature="serving_default",
                                             as_dict=True)["y"]))(inputs["x"])
    try:
        jaxhub.load(narrow)(inputs, signature="serving_default")
        refused = ""
    except jaxhub.SignatureError as e:
        refused = str(e)
    np.savez(data, y=out["y"], next_ids=out["next_ids"], grad=grad, refused=refused)
""")


def test_with_x64_on_64_bit_inputs_compute_in_64_bits(wide, tmp_path):
    path, model, inputs, _ = wide
    inputs = {**inputs, "ids": np.array([1, 5, 9, 2**40])}   # fits int64 only
    data = tmp_path / "data.npz"
    np.savez(data, **inputs)
    env = dict(os.environ, PYTHONPATH=repo_pythonpath(), JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _X64_ON, str(path), str(path.parent / "narrow"),
                           str(tmp_path / "cache"), str(data)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = np.load(data)
    expected = _tf_outputs(model, inputs)
    assert result["next_ids"].dtype == np.int64 and result["y"].dtype == np.float64
    np.testing.assert_array_equal(result["next_ids"], expected["next_ids"])
    np.testing.assert_allclose(result["y"], expected["y"], rtol=1e-12)
    x = tf.constant(inputs["x"])
    with tf.GradientTape() as tape:
        tape.watch(x)
        tf_loss = tf.reduce_sum(model.serve(x, inputs["ids"])["y"])
    np.testing.assert_allclose(result["grad"], tape.gradient(tf_loss, x).numpy(), rtol=1e-12)
    # A module converted with x64 off cannot take 64-bit arrays: it says how to call it.
    refused = str(result["refused"])
    assert "exported with JAX's 64-bit types off" in refused
    assert "jax_enable_x64" in refused


# -- forward-only functions ----------------------------------------------------------------


class _Spectra(tf.Module):
    """One signature JAX can differentiate, one it cannot (full-matrices SVD has no JVP)."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.random.default_rng(2).standard_normal((3, 4), np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 3], tf.float32)])
    def spectrum(self, x):
        s, u, _ = tf.linalg.svd(tf.matmul(x, self.w[:, :3]), full_matrices=True)
        return {"s": s, "u_abs": tf.abs(u)}

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 3], tf.float32)])
    def project(self, x):
        return tf.tanh(tf.matmul(x, self.w))


@pytest.fixture(scope="module")
def spectra(tmp_path_factory):
    root = tmp_path_factory.mktemp("spectra")
    model = _Spectra()
    tf.saved_model.save(model, str(root / "saved"),
                        signatures={"spectrum": model.spectrum, "project": model.project})
    with pytest.warns(UserWarning, match="signature 'spectrum' is stored forward-only"):
        convert_saved_model(root / "saved", root / "converted")
    x = np.random.default_rng(1).standard_normal((2, 4, 3)).astype(np.float32)
    return root, model, x


def test_a_function_jax_cannot_differentiate_loads_forward_only(spectra):
    root, model, x = spectra
    module = jaxhub.load(root / "converted")
    manifest = json.loads((root / "converted" / "jaxhub_module.json").read_text())
    assert manifest["format_version"] == 1
    reasons = {f["signature"]: f.get("forward_only") for f in manifest["functions"]}
    assert "Svd" in reasons["spectrum"] and reasons["project"] is None
    assert "spectrum(x: float32[batch, 4, 3]) -> (s: float32[batch, 3], u_abs: float32" \
           "[batch, 4, 4]) forward-only" in repr(module)
    expected = {k: v.numpy() for k, v in model.spectrum(x).items()}
    out = jax.jit(lambda x: module(x, signature="spectrum", as_dict=True))(x)
    np.testing.assert_allclose(out["s"], expected["s"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["u_abs"], expected["u_abs"], rtol=1e-3, atol=1e-4)


def test_grad_through_a_forward_only_signature_names_it_and_the_op(spectra):
    root, model, x = spectra
    module = jaxhub.load(root / "converted")
    with pytest.raises(jaxhub.SignatureError) as error:
        jax.grad(lambda x: jnp.sum(module(x, signature="spectrum", as_dict=True)["s"]))(x)
    assert isinstance(error.value, LookupError)  # what TF raises for an op without one
    message = str(error.value)
    assert "signature 'spectrum' is forward-only" in message
    assert "TF node 'Svd' (Svd)" in message and "full matrices" in message
    # Gradients that do not flow through it still work: a head trained on its outputs,
    features = module(x, signature="spectrum", as_dict=True)["s"]
    head_grad = jax.grad(lambda w: jnp.sum(features @ w))(jnp.ones((3, 2)))
    np.testing.assert_allclose(head_grad, np.repeat(np.sum(np.asarray(features), 0)[:, None],
                                                    2, 1), rtol=1e-5)
    # and the module's other signature differentiates as TF does.
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        tf_loss = tf.reduce_sum(model.project(xt))
    grad = jax.grad(lambda x: jnp.sum(module(x, signature="project")))(x)
    np.testing.assert_allclose(grad, tape.gradient(tf_loss, xt).numpy(), rtol=1e-4, atol=1e-5)



def test_prevent_gradient_loads_forward_only_and_grad_raises_its_message(tmp_path):
    class Prevented(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x):
            return tf.raw_ops.PreventGradient(input=x * x, message="no gradient here")

    tf.saved_model.save(Prevented(), str(tmp_path / "saved"))
    module = jaxhub.load(tmp_path / "saved", cache_dir=tmp_path / "cache")
    x = np.array([1.5, -2.0], np.float32)
    np.testing.assert_allclose(module(x), x * x)
    # jaxhub.load converts without gradients: the first one finds there is none.
    with pytest.warns(UserWarning, match="stored forward-only"), \
            pytest.raises(LookupError, match="PreventGradient.*no gradient here"):
        jax.grad(lambda x: jnp.sum(module(x)))(x)
    # and so does every later load, which reads the conversion with gradients.
    again = jaxhub.load(tmp_path / "saved", cache_dir=tmp_path / "cache")
    assert "forward-only" in repr(again)
    with pytest.raises(LookupError, match="PreventGradient.*no gradient here"):
        jax.jit(jax.grad(lambda x: jnp.sum(again(x))))(x)

def test_inspect_says_which_signatures_are_forward_only(spectra):
    root, _, _ = spectra
    lines = describe(jaxhub.load(root / "converted").manifest, "spectra").splitlines()
    at = lines.index("  signature 'spectrum'")
    assert lines[at + 1].startswith("    forward-only: no gradient (") and "Svd" in lines[at + 1]
    at = lines.index("  signature 'project'")
    assert lines[at + 1].startswith("    input ")


class _Guarded(tf.Module):
    """A value whose gradient TF refuses (``PreventGradient``), as TF's fused losses
    guard their second derivatives."""

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def serve(self, x):
        return tf.raw_ops.PreventGradient(input=tf.square(x), message="no second derivative")


def test_a_gradient_tf_refuses_makes_the_signature_forward_only(tmp_path):
    model = _Guarded()
    tf.saved_model.save(model, str(tmp_path / "saved"), signatures={"serve": model.serve})
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    xt = tf.constant(x)
    with tf.GradientTape() as tape, pytest.raises(LookupError, match="no second derivative"):
        tape.watch(xt)
        tape.gradient(tf.reduce_sum(model.serve(xt)), xt)
    with pytest.warns(UserWarning, match="signature 'serve' is stored forward-only"):
        convert_saved_model(tmp_path / "saved", tmp_path / "converted")
    module = jaxhub.load(tmp_path / "converted")
    np.testing.assert_allclose(jax.jit(lambda x: module(x, signature="serve"))(x),
                               model.serve(xt).numpy())
    with pytest.raises(jaxhub.SignatureError, match=r"(?s)signature 'serve' is forward-only.*"
                       r"'PreventGradient'.*Reason: no second derivative"):
        jax.grad(lambda x: jnp.sum(module(x, signature="serve")))(x)


class _Handles(tf.Module):
    def __init__(self):
        super().__init__()
        self.v = tf.Variable([1.0, 2.0])

    @tf.function(input_signature=[])
    def handle(self):
        return {"v": self.v.handle}


def test_a_signature_returning_a_variable_handle_is_refused_naming_it(tmp_path):
    model = _Handles()
    tf.saved_model.save(model, str(tmp_path / "saved"), signatures={"handle": model.handle})
    with pytest.raises(NotImplementedError, match=r"signature 'handle': output 'v' is a "
                                                  r"resource handle.*read_value\(\)"):
        convert_saved_model(tmp_path / "saved", tmp_path / "converted")
    assert not (tmp_path / "converted").exists()


class _Sparse(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def nonzero(self, x):
        return {"entries": tf.sparse.from_dense(x)}


def test_a_signature_returning_a_sparse_tensor_is_refused_naming_it(tmp_path):
    model = _Sparse()
    tf.saved_model.save(model, str(tmp_path / "saved"), signatures={"nonzero": model.nonzero})
    with pytest.raises(NotImplementedError, match=r"signature 'nonzero': output 'entries' is "
                                                  r"a SparseTensor.*dense_shape"):
        convert_saved_model(tmp_path / "saved", tmp_path / "converted")
    assert not (tmp_path / "converted").exists()


# -- random ops in serving signatures and __call__ -----------------------------------------


class _Noisy(tf.Module):
    """Serving signatures that draw random numbers, with no train variant to call."""

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def noisy(self, x):
        return {"y": x + tf.random.normal(tf.shape(x)), "dropped": tf.nn.dropout(x, 0.5)}

    @tf.function(input_signature=[])
    def sample(self):
        return {"u": tf.random.uniform([1000])}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    path = tmp_path_factory.mktemp("noisy") / "saved"
    model = _Noisy()
    tf.saved_model.save(model, str(path),
                        signatures={"noisy": model.noisy, "sample": model.sample})
    return model, load_saved_model(path)


def test_random_serving_signatures_draw_from_the_callers_key(noisy):
    model, module = noisy
    assert all(f.takes_rng for f in module.manifest.functions)
    x = np.random.default_rng(3).standard_normal((2000, 3)).astype(np.float32)
    call = jax.jit(lambda x, key: module(x, signature="noisy", as_dict=True, rng=key))
    out = call(x, jax.random.key(0))
    again = call(x, jax.random.key(0))
    other = call(x, jax.random.key(1))
    np.testing.assert_array_equal(out["y"], again["y"])          # the key decides
    assert not np.allclose(out["y"], other["y"])
    expected = {k: v.numpy() for k, v in model.noisy(x).items()}
    # Same distributions as TF (TF's own stream differs): dropout keeps x / 0.5 or 0,
    for dropped in (out["dropped"], expected["dropped"]):
        kept = dropped != 0
        np.testing.assert_allclose(np.asarray(dropped)[kept], 2 * x[kept], rtol=1e-6)
        assert abs(kept.mean() - 0.5) < 0.03
    # and the added noise is standard normal.
    for y in (out["y"], expected["y"]):
        noise = np.asarray(y) - x
        assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1) < 0.05
    samples = module({}, signature="sample", rng=jax.random.key(2))
    tf_samples = model.sample()["u"].numpy()
    for u in (np.asarray(samples), tf_samples):
        assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.05


def test_random_serving_signatures_under_vmap_over_keys(noisy):
    _, module = noisy
    keys = jax.random.split(jax.random.key(4), 3)
    samples = jax.vmap(lambda k: module({}, signature="sample", rng=k))(keys)
    assert samples.shape == (3, 1000)
    np.testing.assert_array_equal(samples[1], module({}, signature="sample", rng=keys[1]))
    assert not np.allclose(samples[0], samples[1])


def test_a_random_serving_signature_without_a_key_says_how_to_pass_one(noisy):
    _, module = noisy
    with pytest.raises(jaxhub.SignatureError) as error:
        module(np.ones((2, 3), np.float32), signature="noisy")
    assert "signature 'noisy' draws random numbers" in str(error.value)
    assert "rng=jax.random.key(seed)" in str(error.value)
    assert "  signature 'noisy' (takes rng)" in describe(module.manifest, "noisy")


class _NoisyCall(tf.Module):
    """A root ``__call__`` that draws random numbers: the module's ``default`` signature."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.linspace(0.5, 2.0, 3).astype(np.float32), name="w")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def __call__(self, x):
        scaled = self.w * x
        return {"scaled": scaled, "noisy": scaled + tf.random.uniform(tf.shape(x))}


@pytest.fixture(scope="module")
def noisy_call(tmp_path_factory):
    """The SavedModel, TF's copy of it and ``jaxhub.load`` of it (through the cache)."""
    root = tmp_path_factory.mktemp("noisy_call")
    tf.saved_model.save(_NoisyCall(), str(root / "saved"))
    module = jaxhub.load(root / "saved", cache_dir=root / "cache")
    return tf.saved_model.load(str(root / "saved")), module


def _uniform_noise(noisy, scaled) -> np.ndarray:
    """What a call added to its deterministic part: uniform in [0, 1) if drawn as TF's."""
    noise = np.asarray(noisy) - np.asarray(scaled)
    assert noise.min() >= -1e-6 and noise.max() < 1 and abs(noise.mean() - 0.5) < 0.02
    assert noise.std() > 0.25  # spread over [0, 1): not one number repeated
    return noise


def test_a_random_call_loads_as_a_default_signature_that_takes_rng(noisy_call):
    _, module = noisy_call
    assert module.manifest.function(frozenset(), "default").takes_rng
    assert "  signature 'default' (takes rng)" in describe(module.manifest, "noisy")
    assert "-> (noisy: float32[batch, 3], scaled: float32[batch, 3]) takes rng" in repr(module)
    # The serving signature TF made of the same __call__ draws from the key too.
    assert module.manifest.function(frozenset(), "serving_default").takes_rng


def _assert_draws_from_the_callers_key(tf_model, module, seed: int) -> None:
    """Under jit: the deterministic part is TF's, the noise uniform as TF's, the same key
    gives the same numbers and another key others."""
    x = np.random.default_rng(seed).standard_normal((2000, 3)).astype(np.float32)
    call = jax.jit(lambda x, key: module(x, as_dict=True, rng=key))
    out = call(x, jax.random.key(0))
    theirs = {k: v.numpy() for k, v in tf_model(x).items()}
    for key in theirs:
        assert out[key].shape == theirs[key].shape and out[key].dtype == theirs[key].dtype
    np.testing.assert_allclose(out["scaled"], theirs["scaled"], rtol=1e-6)
    ours_noise = _uniform_noise(out["noisy"], out["scaled"])
    _uniform_noise(theirs["noisy"], theirs["scaled"])
    np.testing.assert_array_equal(call(x, jax.random.key(0))["noisy"], out["noisy"])
    other = _uniform_noise(call(x, jax.random.key(1))["noisy"], out["scaled"])
    assert np.mean(other == ours_noise) < 0.01


def test_a_random_call_draws_from_the_callers_key_as_tf_draws(noisy_call):
    tf_model, module = noisy_call
    _assert_draws_from_the_callers_key(tf_model, module, seed=5)


def test_a_random_call_under_grad_and_vmap_over_keys(noisy_call):
    tf_model, module = noisy_call
    x = np.random.default_rng(6).standard_normal((4, 3)).astype(np.float32)
    cotangent = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)
    # The noise does not depend on w: the gradient is TF's, whatever the draws.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf_model(x)["noisy"] * cotangent)
    want = tape.gradient(loss, tf_model.w)

    def ours(params, key):
        return jnp.sum(module.apply(params, x, as_dict=True, rng=key)["noisy"] * cotangent)

    grads = jax.jit(jax.grad(ours))(module.params, jax.random.key(2))
    (got,) = jax.tree.leaves(grads)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5)
    keys = jax.random.split(jax.random.key(3), 3)
    batched = jax.vmap(lambda k: module(x, as_dict=True, rng=k)["noisy"])(keys)
    assert batched.shape == (3, 4, 3)
    np.testing.assert_array_equal(batched[1], module(x, as_dict=True, rng=keys[1])["noisy"])
    assert not np.allclose(batched[0], batched[1])


def test_a_random_call_without_a_key_says_how_to_pass_one(noisy_call):
    _, module = noisy_call
    with pytest.raises(jaxhub.SignatureError) as error:
        module(np.ones((2, 3), np.float32))
    assert "signature 'default' draws random numbers" in str(error.value)
    assert "rng=jax.random.key(seed)" in str(error.value)


def test_a_module_whose_default_takes_rng_exports_to_tf(noisy_call, tmp_path):
    # Exported, its functions draw their keys from the generator saved with them, which
    # advances with every call.
    tf_model, module = noisy_call
    obj = tf.saved_model.load(str(export_saved_model(module, tmp_path / "exported")))
    x = np.random.default_rng(9).standard_normal((2000, 3)).astype(np.float32)
    want = tf_model(x)["scaled"].numpy()
    first, second = obj(x), obj(x)
    served = obj.signatures["serving_default"](x=tf.constant(x))
    for out in (first, second, served):
        np.testing.assert_allclose(out["scaled"].numpy(), want, rtol=1e-6)
        _uniform_noise(out["noisy"].numpy(), want)
    assert not np.allclose(first["noisy"].numpy(), second["noisy"].numpy())


@pytest.fixture(scope="module")
def noisy_call_back(noisy_call, tmp_path_factory):
    """The ``noisy_call`` module exported to TF, where it draws its keys from the generator
    saved with it (``RngReadAndSkip``), and ``jaxhub.load`` of that export."""
    root = tmp_path_factory.mktemp("noisy_call_back")
    path = export_saved_model(noisy_call[1], root / "exported")
    return path, jaxhub.load(path, cache_dir=root / "cache")


def _float_params(module: jaxhub.Module) -> dict:
    """The module's float params, without the integer state of a saved generator."""
    return {k: v for k, v in module.params.items() if jnp.issubdtype(v.dtype, jnp.floating)}


def test_a_generator_drawing_signature_converted_back_takes_rng(noisy_call_back):
    # Read from the stored generator state, the numbers would be the same on every call.
    _, back = noisy_call_back
    assert "-> (noisy: float32[batch, 3], scaled: float32[batch, 3]) takes rng" in repr(back)
    assert {f.signature_name for f in back.manifest.functions if f.takes_rng} == {
        "default", "serving_default"}
    with pytest.raises(jaxhub.SignatureError, match="signature 'default' draws random"):
        back(np.ones((2, 3), np.float32))


def test_a_generator_drawing_signature_converted_back_draws_from_the_callers_key(
        noisy_call_back):
    path, back = noisy_call_back
    _assert_draws_from_the_callers_key(tf.saved_model.load(str(path)), back, seed=10)


def test_a_generator_drawing_signature_converted_back_under_grad(noisy_call_back):
    path, back = noisy_call_back
    tf_model = tf.saved_model.load(str(path))
    x = np.random.default_rng(11).standard_normal((4, 3)).astype(np.float32)
    cotangent = np.random.default_rng(12).standard_normal((4, 3)).astype(np.float32)
    # The noise does not depend on w: the gradient is TF's, whatever the draws.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf_model(x)["noisy"] * cotangent)
    (want,) = tape.gradient(loss, tf_model.trainable_variables)

    def ours(floats, key):
        params = jaxhub.merge_params(back.params, floats)
        return jnp.sum(back.apply(params, x, as_dict=True, rng=key)["noisy"] * cotangent)

    (got,) = jax.tree.leaves(jax.jit(jax.grad(ours))(_float_params(back), jax.random.key(2)))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5)


def test_a_generator_serving_signature_converted_back_returns_its_state_as_tf(
        noisy_call_back):
    path, back = noisy_call_back
    tf_model = tf.saved_model.load(str(path))   # a fresh generator
    x = np.ones((1000, 3), np.float32)
    (state_path,) = [k for k, v in back.params.items() if jnp.issubdtype(v.dtype, jnp.integer)]
    generator = tf_model.rng._state_var   # a restored generator keeps only its variable
    np.testing.assert_array_equal(back.params[state_path], generator.numpy())
    params = back.params
    for seed in range(2):
        outputs, state = back.apply(params, x, signature="serving_default", as_dict=True,
                                    rng=jax.random.key(seed))
        tf_model.signatures["serving_default"](x=tf.constant(x))
        assert list(state) == [state_path]
        np.testing.assert_array_equal(state[state_path], generator.numpy())
        _uniform_noise(outputs["noisy"], outputs["scaled"])
        params = jaxhub.merge_params(params, state)


class _NoisyStraightThrough(tf.Module):
    """Rounds ``w * x``; its custom gradient passes the cotangent straight through, scaled
    by ``1 + u`` with ``u`` uniform in [0, 1) (a straight-through estimator with noise)."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.linspace(0.5, 2.0, 3).astype(np.float32), name="w")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def quantize(self, x):
        @tf.custom_gradient
        def round_through(v):
            def grad(dy):
                return dy * (1.0 + tf.random.uniform(tf.shape(dy)))
            return tf.round(v), grad
        return {"y": round_through(self.w * x)}


@pytest.fixture(scope="module")
def straight_through(tmp_path_factory):
    """The model, and ``jaxhub.load`` of its SavedModel (converted again with gradients on
    the first ``jax.grad``)."""
    root = tmp_path_factory.mktemp("straight_through")
    model = _NoisyStraightThrough()
    tf.saved_model.save(model, str(root / "saved"), signatures={"quantize": model.quantize})
    return model, jaxhub.load(root / "saved", cache_dir=root / "cache")


def test_a_custom_gradient_that_draws_takes_rng_and_keeps_tfs_forward(straight_through):
    model, module = straight_through
    assert "-> (y: float32[batch, 3]) takes rng" in repr(module)
    x = np.random.default_rng(13).standard_normal((50, 3)).astype(np.float32) * 3
    np.testing.assert_array_equal(module(x, signature="quantize", rng=jax.random.key(0)),
                                  model.quantize(x)["y"].numpy())
    with pytest.raises(jaxhub.SignatureError, match="signature 'quantize' draws random"):
        module(x, signature="quantize")


def test_a_custom_gradient_draws_from_the_callers_key_under_jit(straight_through):
    model, module = straight_through
    x = np.random.default_rng(14).uniform(0.5, 2.0, (2000, 3)).astype(np.float32)
    w = model.w.numpy()

    def loss(floats, x, key):
        return jnp.sum(module.apply(floats, x, signature="quantize", rng=key))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    by_params, by_x = grad(module.params, x, jax.random.key(0))
    (by_w,) = jax.tree.leaves(by_params)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        total = tf.reduce_sum(model.quantize(xt)["y"])
    theirs = tape.gradient(total, xt).numpy()
    # d/dx = w * (1 + u): the noise factors are uniform in [0, 1), ours as TF's,
    factors = []
    for g in (np.asarray(by_x), theirs):
        factor = g / w - 1
        assert factor.min() >= -1e-6 and factor.max() < 1 + 1e-6
        assert abs(factor.mean() - 0.5) < 0.02 and abs(factor.std() - np.sqrt(1 / 12)) < 0.02
        factors.append(factor)
    # d/dw = sum over the batch of x * (1 + u), with the same draws as d/dx.
    np.testing.assert_allclose(by_w, np.sum(x * (1 + factors[0]), axis=0), rtol=1e-4)
    # The key decides them.
    again = grad(module.params, x, jax.random.key(0))[1]
    other = grad(module.params, x, jax.random.key(1))[1]
    np.testing.assert_array_equal(again, by_x)
    assert np.mean(np.asarray(other) == np.asarray(by_x)) < 0.01
    keys = jax.random.split(jax.random.key(2), 3)
    by_key = jax.vmap(lambda k: grad(module.params, x, k)[1])(keys)
    np.testing.assert_allclose(by_key[1], grad(module.params, x, keys[1])[1], rtol=1e-6)


def _keras_noise_model(tmp_path):
    """A tf_keras model that adds standard normal noise in both modes, and
    ``GaussianNoise(0.5)`` on top when training; saved the TF Hub way."""
    import tf_keras

    class AlwaysNoisy(tf_keras.layers.Layer):
        def call(self, x):
            return x + tf.random.normal(tf.shape(x))

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((4,), name="x")
    dense = tf_keras.layers.Dense(3, name="dense")(inputs)
    noisy = tf_keras.layers.GaussianNoise(0.5)(AlwaysNoisy()(dense))
    model = tf_keras.Model(inputs, {"dense": dense, "noisy": noisy})
    model(np.zeros((1, 4), np.float32), training=True)  # traces the train function too
    tf.saved_model.save(model, str(tmp_path / "saved"))
    return model


def test_a_keras_model_with_noise_takes_rng_in_default_train_and_serving(tmp_path):
    model = _keras_noise_model(tmp_path)
    module = jaxhub.load(tmp_path / "saved", cache_dir=tmp_path / "cache")
    assert {(tuple(f.tags), f.signature_name) for f in module.manifest.functions
            if f.takes_rng} == {((), "default"), ((), "serving_default"),
                                (("train",), "default")}
    x = np.random.default_rng(8).standard_normal((3000, 4)).astype(np.float32)
    key = jax.random.key(0)
    for tags, std in ((None, 1.0), ("train", np.sqrt(1 + 0.5 ** 2))):
        training = tags is not None
        ours = module(x, as_dict=True, tags=tags, rng=key)
        ours = ours[0] if training else ours
        theirs = {k: v.numpy() for k, v in model(x, training=training).items()}
        np.testing.assert_allclose(ours["dense"], theirs["dense"], rtol=1e-5, atol=1e-6)
        for out in (ours, theirs):  # the noise TF adds, and ours: same distribution
            noise = np.asarray(out["noisy"]) - out["dense"]
            assert abs(noise.mean()) < 0.03 and abs(noise.std() - std) < 0.03, tags
    serving = module(x, signature="serving_default", as_dict=True, rng=key)
    np.testing.assert_allclose(serving["dense"], theirs["dense"], rtol=1e-5, atol=1e-6)
    with pytest.raises(jaxhub.SignatureError, match="signature 'default' draws random"):
        module(x)


# -- signatures whose effect is a variable assignment --------------------------------------


class _Accumulator(tf.Module):
    def __init__(self):
        super().__init__()
        self.total = tf.Variable(np.zeros(3, np.float32), name="total")
        self.calls = tf.Variable(0, name="calls")

    @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
    def add(self, x):
        self.total.assign_add(x)
        return {}

    @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
    def add_and_read(self, x):
        self.total.assign_add(x)
        self.calls.assign_add(1)
        return {"sum": tf.reduce_sum(self.total), "total": self.total.read_value()}


@pytest.fixture(scope="module")
def accumulator(tmp_path_factory):
    path = tmp_path_factory.mktemp("accumulator") / "saved"
    model = _Accumulator()
    tf.saved_model.save(model, str(path),
                        signatures={"add": model.add, "add_and_read": model.add_and_read})
    return path


def test_an_assignment_signature_returns_the_new_state_as_tf_assigns_it(accumulator):
    module = jaxhub.load(accumulator)
    tf_model = tf.saved_model.load(str(accumulator))   # a fresh copy of the variables
    names = module.attachments["tf_variable_names"]
    by_tf_name = {names[path].split(":")[0]: path for path in names}
    params = module.params
    step = jax.jit(lambda p, x: module.apply(p, x, signature="add"))
    for x in (np.array([1.0, 2.0, 3.0], np.float32), np.array([0.5, -1.0, 4.0], np.float32)):
        outputs, state = step(params, x)
        tf_model.signatures["add"](x=tf.constant(x))
        assert outputs == {}
        np.testing.assert_allclose(state[by_tf_name["total"]],
                                   tf_model.total.numpy(), rtol=1e-6)
        params = jaxhub.merge_params(params, state)
    # Outputs read after the assignment, as TF orders them, and every assigned variable.
    x = np.array([1.0, 1.0, 1.0], np.float32)
    outputs, state = module.apply(params, x, signature="add_and_read", as_dict=True)
    expected = tf_model.signatures["add_and_read"](x=tf.constant(x))
    np.testing.assert_allclose(outputs["sum"], expected["sum"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(outputs["total"], expected["total"].numpy(), rtol=1e-6)
    assert sorted(state) == sorted(by_tf_name.values())
    np.testing.assert_allclose(state[by_tf_name["total"]], tf_model.total.numpy())
    assert int(state[by_tf_name["calls"]]) == int(tf_model.calls.numpy()) == 1
    described = describe(module.manifest, "accumulator").splitlines()
    at = described.index("  signature 'add'")
    assert described[at + 2] == f"    returns state: {by_tf_name['total']}"


# -- checks (Assert) -----------------------------------------------------------------------


class _Checked(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def log(self, x):
        tf.debugging.assert_positive(x, message="x must be positive")
        return tf.math.log(x)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def inverse(self, x):
        return tf.debugging.check_numerics(1.0 / x, message="inverse")


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    root = tmp_path_factory.mktemp("checked")
    model = _Checked()
    tf.saved_model.save(model, str(root / "saved"),
                        signatures={"log": model.log, "inverse": model.inverse})
    convert_saved_model(root / "saved", root / "converted", checks=True)
    return model, jaxhub.load(root / "converted"), load_saved_model(root / "saved")


def test_traced_asserts_kept_as_checks_fail_where_tf_fails(checked):
    model, module, _ = checked
    good = np.full((2, 3), 2.0, np.float32)
    bad = good * np.array([1, -1, 1], np.float32)
    np.testing.assert_allclose(module(good, signature="log"), model.log(good).numpy(),
                               rtol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="x must be positive"):
        model.log(bad)
    with pytest.raises(checkify.JaxRuntimeError, match="signature 'log': TF node .*"
                                                         "Assert.* x must be positive"):
        module(bad, signature="log")
    checked_call = checkify.checkify(jax.jit(lambda x: module(x, signature="log")))
    error, _ = checked_call(bad)
    assert "x must be positive" in error.get()
    error, out = checked_call(good)
    assert error.get() is None
    np.testing.assert_allclose(out, model.log(good).numpy(), rtol=1e-6)
    error, grad = checkify.checkify(jax.grad(lambda x: jnp.sum(module(x, signature="log"))))(good)
    assert error.get() is None
    np.testing.assert_allclose(grad, 1 / good, rtol=1e-6)
    with pytest.raises(ValueError, match="through `checkify.checkify`"):  # as documented
        jax.jit(lambda x: module(x, signature="log"))(good)


@pytest.mark.parametrize("value,kind", [(0.0, "Inf"), (np.nan, "NaN")])
def test_check_numerics_kept_as_checks_fails_where_tf_fails(checked, value, kind):
    model, module, unchecked = checked
    good = np.full((2, 3), 2.0, np.float32)
    bad = good * np.array([1, value, 1], np.float32)
    np.testing.assert_allclose(module(good, signature="inverse"), model.inverse(good).numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"inverse : Tensor had {kind}"):
        model.inverse(bad)
    with pytest.raises(checkify.JaxRuntimeError, match=f"signature 'inverse': TF node .*"
                                                       f"CheckNumerics.* Tensor had {kind}"):
        module(bad, signature="inverse")
    # Without checks, the values pass through as TF's would have been computed.
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(unchecked(bad, signature="inverse"), 1 / bad)


def test_traced_asserts_are_dropped_by_default(checked):
    _, _, unchecked = checked
    bad = np.full((1, 3), -1.0, np.float32)
    assert np.isnan(np.asarray(jax.jit(lambda x: unchecked(x, signature="log"))(bad))).all()
    assert unchecked.manifest.function(frozenset(), "log").checks == ()


def test_assignments_and_random_draws_survive_the_way_back_to_tf(accumulator, noisy, tmp_path):
    from jaxhub_tf.to_tf import export_saved_model
    export_saved_model(jaxhub.load(accumulator), tmp_path / "accumulator")
    original = tf.saved_model.load(str(accumulator))
    back = tf.saved_model.load(str(tmp_path / "accumulator"))
    x = tf.constant([1.0, 2.0, 3.0])
    for _ in range(2):
        original.signatures["add"](x=x)
        back.signatures["add"](x=x)
    by_name = {v.name: v.numpy() for v in back.variables}
    np.testing.assert_allclose(by_name["total:0"], original.total.numpy())

    _, module = noisy
    export_saved_model(module, tmp_path / "noisy", seed=3)
    sample = tf.saved_model.load(str(tmp_path / "noisy")).signatures["sample"]
    first, second = sample()["u"].numpy(), sample()["u"].numpy()   # the generator advances
    assert not np.allclose(first, second) and 0 <= first.min() and first.max() < 1


class _Generating(tf.Module):
    def __init__(self):
        super().__init__()
        self.generator = tf.random.Generator.from_seed(1)

    @tf.function(input_signature=[])
    def draw(self):
        return {"u": self.generator.uniform([3]), "n": self.generator.normal([5, 2])}


def test_a_generator_signature_draws_from_the_key_and_returns_its_state_as_tf(tmp_path):
    model = _Generating()
    tf.saved_model.save(model, str(tmp_path / "saved"), signatures={"draw": model.draw})
    module = load_saved_model(tmp_path / "saved")
    assert module.manifest.function(frozenset(), "draw").takes_rng
    params = module.params
    for seed in range(2):
        outputs, state = module.apply(params, {}, signature="draw", as_dict=True,
                                      rng=jax.random.key(seed))
        model.draw()
        (path,) = [p for p, _ in _leaves(state)]
        np.testing.assert_array_equal(dict(_leaves(state))[path], model.generator.state.numpy())
        # The key decides the numbers, not the state they were drawn with.
        again, _ = module.apply(module.params, {}, signature="draw", as_dict=True,
                                rng=jax.random.key(seed))
        other, _ = module.apply(params, {}, signature="draw", as_dict=True,
                                rng=jax.random.key(seed + 2))
        for key in ("u", "n"):
            np.testing.assert_array_equal(outputs[key], again[key])
            assert not np.any(outputs[key] == other[key])
        params = jaxhub.merge_params(params, state)


def _leaves(tree):
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [("/".join(str(k.key) for k in path), leaf) for path, leaf in flat]
