"""``jaxhub convert``: a real SavedModel converted by the command line, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

import jaxhub
from tests.converters.from_tf._helpers import REPO_ROOT
from tests.conftest import as_read_before_split_vjps, repo_pythonpath


class _Affine(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2) / 7, name="w")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def __call__(self, x):
        return tf.tanh(tf.matmul(x, self.w))


class _PythonCall(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        return tf.py_function(lambda a: a * 2.0, [x], tf.float32)


class _Clock(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float64)])
    def __call__(self, x):
        return x + tf.timestamp()  # reads the clock: no pure function can do that


def _convert(src, dst, tmp_path):
    env = dict(os.environ, PYTHONPATH=repo_pythonpath(), JAXHUB_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "jaxhub", "convert", str(src), str(dst)],
                          env=env, capture_output=True, text=True, timeout=300)


def test_convert_writes_a_module_that_matches_tf(tmp_path):
    model = _Affine()
    tf.saved_model.save(model, str(tmp_path / "saved"))
    proc = _convert(tmp_path / "saved", tmp_path / "out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""  # TensorFlow's start-up log lines are silenced
    module = jaxhub.load(tmp_path / "out")
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(module(x), model(x).numpy(), rtol=1e-6)
    # A module to publish: written with its gradients (split VJPs), TF's.
    assert module.manifest.gradients and all(f.vjp for f in module.manifest.functions)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(model(xt))
    tf_grad = tape.gradient(loss, xt).numpy()
    np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(module(x)))(x), tf_grad,
                               rtol=1e-5, atol=1e-6)
    # And with their exported VJPs, through which readers that predate split VJPs
    # differentiate (the cache holds the halves only).
    assert module.manifest.exported_vjps
    old = as_read_before_split_vjps(tmp_path / "out", tmp_path / "old-reader")
    np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(old(x)))(x), tf_grad,
                               rtol=1e-5, atol=1e-6)


def test_convert_reports_unsupported_ops(tmp_path):
    tf.saved_model.save(_Clock(), str(tmp_path / "saved"))
    proc = _convert(tmp_path / "saved", tmp_path / "out", tmp_path)
    assert proc.returncode == 1
    assert "Timestamp:" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_convert_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "file.txt").write_text("keep me")
    proc = _convert(tmp_path, tmp_path / "out", tmp_path)
    assert proc.returncode == 1
    assert "not empty" in proc.stderr


def test_convert_of_a_python_call_says_what_can_help(tmp_path):
    tf.saved_model.save(_PythonCall(), str(tmp_path / "saved"))
    proc = _convert(tmp_path / "saved", tmp_path / "out", tmp_path)
    assert proc.returncode == 1
    assert "(EagerPyFunc): calls Python code through tf.py_function" in proc.stderr
    assert "rewrite that function with TF ops" in proc.stderr
    assert "Register" not in proc.stderr  # registering an op cannot bring the code back
    assert "Traceback" not in proc.stderr


def test_convert_of_a_missing_path_says_it_is_missing(tmp_path):
    proc = _convert(tmp_path / "nowhere", tmp_path / "out", tmp_path)
    assert proc.returncode == 1
    missing = tmp_path / "nowhere"
    assert proc.stderr == f"jaxhub convert: error: {missing}: no such file or directory\n"
