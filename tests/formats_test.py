"""Foreign formats are converted once into a cached jaxhub module, then read without TF."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub
from jaxhub._src import formats, serialization
from jaxhub._src.cli.inspect import describe
from jaxhub._src.hub import cached_derivation_if_present
from jaxhub._src.hub.cache import Cache
from tests.conftest import as_read_before_split_vjps, deep_dirs

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    class Affine(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            return {"y": tf.matmul(x, self.w)}

    path = tmp_path_factory.mktemp("tf") / "affine"
    module = Affine()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


def test_detects_each_format(saved_model, mlp_dir, tmp_path):
    assert formats.detect(mlp_dir).name == "jaxhub module"
    assert formats.detect(saved_model).name == "TF2 SavedModel"
    (tmp_path / "tfhub_module.pb").write_bytes(b"")
    (tmp_path / "saved_model.pb").write_bytes(b"")
    assert formats.detect(tmp_path).name == "TF1 Hub module"


def test_second_load_reads_the_cache_without_tensorflow(saved_model, tmp_path):
    cache = tmp_path / "cache"
    x = np.ones((2, 3), np.float32)
    first = jaxhub.load(saved_model, cache_dir=cache)
    np.testing.assert_allclose(first(x), x @ np.arange(6, dtype=np.float32).reshape(3, 2))
    script = textwrap.dedent(f"""
        import sys, numpy as np, jaxhub
        module = jaxhub.load({str(saved_model)!r}, cache_dir={str(cache)!r})
        assert str(module.path) == {str(first.path)!r}, module.path
        assert "tensorflow" not in sys.modules
        print(np.asarray(module(np.ones((2, 3), np.float32))).sum())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split()[-1]) == pytest.approx(2 * (6 + 9))


def test_the_load_that_converts_has_the_params_a_later_load_reads(saved_model, tmp_path):
    # The converting load takes the params it saved rather than reading them back.
    converting = jaxhub.load(saved_model, cache_dir=tmp_path / "cache")
    reading = jaxhub.load(saved_model, cache_dir=tmp_path / "cache")
    assert converting.path == reading.path
    for ours, theirs in zip(jax.tree.leaves(converting.params), jax.tree.leaves(reading.params)):
        assert (ours.dtype, ours.sharding) == (theirs.dtype, theirs.sharding)
        np.testing.assert_array_equal(ours, theirs)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(converting(x), reading(x))


def test_a_changed_source_is_converted_again(saved_model, tmp_path):
    cache = tmp_path / "cache"
    first = jaxhub.load(saved_model, cache_dir=cache)
    pb = saved_model / "saved_model.pb"
    stat = pb.stat()
    os.utime(pb, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = jaxhub.load(saved_model, cache_dir=cache)
    assert second.path != first.path


# -- gradients on demand ---------------------------------------------------------------------


class _Dense(tf.Module):
    """``tanh(x @ w + b)``: a function with a gradient, to compare with TF's."""

    def __init__(self):
        rng = np.random.default_rng(3)
        self.w = tf.Variable(rng.standard_normal((3, 2)).astype(np.float32), name="w")
        self.b = tf.Variable(rng.standard_normal(2).astype(np.float32), name="b")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def __call__(self, x):
        return {"y": tf.tanh(tf.matmul(x, self.w) + self.b)}


@pytest.fixture
def dense(tmp_path):
    """A fresh SavedModel (tests touch it), its TF gradient of ``sum(y * weights)``
    with respect to ``w`` at ``x``, ``x`` and ``weights``."""
    model = _Dense()
    tf.saved_model.save(model, str(tmp_path / "dense"),
                        signatures={"serving_default": model.__call__})
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    weights = rng.standard_normal((5, 2)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.constant(x))["y"] * weights)
    return tmp_path / "dense", tape.gradient(loss, model.w).numpy(), x, weights


def _weighted_sum(module, x, weights):
    return lambda params: jnp.sum(module.apply(params, x) * weights)


def _manifest(module) -> dict:
    return json.loads((module.path / "jaxhub_module.json").read_text())


def test_a_conversion_is_cached_without_gradients_until_the_first_one(dense, tmp_path):
    source, tf_grad, x, weights = dense
    cache = tmp_path / "cache"
    module = jaxhub.load(source, cache_dir=cache)
    assert _manifest(module)["gradients"] is False
    assert not list(module.path.rglob("vjp/*")) and "gradients='on first use'" in repr(module)
    assert len(Cache(cache).listing()) == 1
    # The first gradient, traced under jit, converts again with gradients: TF's.
    grads = jax.jit(jax.grad(_weighted_sum(module, x, weights)))(module.params)
    np.testing.assert_allclose(grads["w"], tf_grad, rtol=1e-5, atol=1e-6)
    listed = Cache(cache).listing()
    assert len(listed) == 2 and all(not item.problems for item in listed)
    assert "gradients='read'" in repr(module)
    # Every later load reads the conversion with gradients: split VJPs, no deferral.
    again = jaxhub.load(source, cache_dir=cache)
    assert again.path != module.path and "gradients" not in _manifest(again)
    assert all(f.vjp is not None for f in again.manifest.functions)
    grads = jax.grad(_weighted_sum(again, x, weights))(again.params)
    np.testing.assert_allclose(grads["w"], tf_grad, rtol=1e-5, atol=1e-6)
    # Inference never converted twice: the module without gradients runs as TF's does.
    np.testing.assert_allclose(module(x), again(x), rtol=1e-6)


def test_grad_vmap_and_vjp_of_a_module_without_gradients_are_those_of_the_complete_one(
        dense, tmp_path):
    source, _, x, weights = dense
    module = jaxhub.load(source, cache_dir=tmp_path / "cache")
    complete = formats.native(source, cache_dir=tmp_path / "complete", gradients=True)
    complete = jaxhub.load(source, cache_dir=tmp_path / "complete")
    assert complete.manifest.gradients and not module.manifest.gradients

    def gradients(m):
        per_example = jax.vmap(jax.grad(lambda p, xi, wi: jnp.sum(
            m.apply(p, xi[None]) * wi)), in_axes=(None, 0, 0))(m.params, x, weights)
        _, pullback = jax.vjp(lambda x: m(x), x)
        return per_example["w"], pullback(weights)[0]

    for ours, theirs in zip(gradients(module), gradients(complete)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_a_second_process_reads_the_conversion_with_gradients(dense, tmp_path):
    source, tf_grad, x, weights = dense
    cache = tmp_path / "cache"
    module = jaxhub.load(source, cache_dir=cache)
    jax.grad(_weighted_sum(module, x, weights))(module.params)
    script = textwrap.dedent(f"""
        import sys, numpy as np, jax, jax.numpy as jnp, jaxhub
        module = jaxhub.load({str(source)!r}, cache_dir={str(cache)!r})
        x, w = np.asarray({x.tolist()!r}, np.float32), np.asarray({weights.tolist()!r}, np.float32)
        grads = jax.grad(lambda p: jnp.sum(module.apply(p, x) * w))(module.params)
        assert "jaxhub_tf.from_tf.saved_model" not in sys.modules  # nothing converted
        assert module.manifest.gradients, module
        print(np.asarray(grads["w"]).tolist())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(json.loads(result.stdout.splitlines()[-1]), tf_grad,
                               rtol=1e-5, atol=1e-6)


# Loads the module (converted without gradients already), announces it is ready, waits for
# the go file, then takes the first gradient and prints whether it converted, and it.
_FIRST_GRADIENT = """
import json, pathlib, sys, numpy as np, jax, jax.numpy as jnp, jaxhub
import jaxhub_tf.from_tf.saved_model as saved_model
source, cache, ready, go = sys.argv[1:5]
conversions = []
convert = saved_model.convert_saved_model
saved_model.convert_saved_model = lambda *a, **k: conversions.append(k) or convert(*a, **k)
module = jaxhub.load(source, cache_dir=cache)
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    pass
x = np.ones((2, 3), np.float32)
grads = jax.jit(jax.grad(lambda p: jnp.sum(module.apply(p, x))))(module.params)
print(json.dumps({"conversions": conversions, "w": np.asarray(grads["w"]).tolist()}))
"""


def test_two_processes_taking_the_first_gradient_at_once_convert_once(dense, tmp_path):
    source = dense[0]
    cache = tmp_path / "cache"
    jaxhub.load(source, cache_dir=cache)  # the conversion without gradients
    children = [subprocess.Popen(
        [sys.executable, "-c", _FIRST_GRADIENT, str(source), str(cache),
         str(tmp_path / f"ready{i}"), str(tmp_path / "go")], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, JAXHUB_DISABLE_PROGRESS="1"))
        for i in range(2)]
    deadline = time.monotonic() + 240
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(c.poll() is None for c in children)
        time.sleep(0.05)
    (tmp_path / "go").touch()
    results = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-3000:]
        results.append(json.loads(out.splitlines()[-1]))
    # One converted with gradients under the cache's lock; the other read its result.
    assert sorted(len(r["conversions"]) for r in results) == [0, 1]
    assert [r["conversions"] for r in results if r["conversions"]] == [[{"gradients": True}]]
    np.testing.assert_allclose(results[0]["w"], results[1]["w"])
    assert len(Cache(cache).listing()) == 2


def test_a_source_changed_since_loading_gives_no_gradient_from_the_new_files(dense, tmp_path):
    source, _, x, weights = dense
    module = jaxhub.load(source, cache_dir=tmp_path / "cache")
    pb = source / "saved_model.pb"
    stat = pb.stat()
    os.utime(pb, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(jaxhub.SignatureError, match="changed .*since it was loaded"):
        jax.grad(_weighted_sum(module, x, weights))(module.params)
    np.testing.assert_allclose(module(x), jaxhub.load(
        source, cache_dir=tmp_path / "cache")(x), rtol=1e-6)  # inference unaffected


def test_the_conversion_with_gradients_is_cached_with_split_vjps_only(dense, tmp_path):
    """The exported VJPs (for readers that predate split VJPs) are left out of the cache,
    which says so, under a key that a jaxhub reading them does not look up."""
    source, tf_grad, x, weights = dense
    cache = tmp_path / "cache"
    module = jaxhub.load(source, cache_dir=cache)
    jax.grad(_weighted_sum(module, x, weights))(module.params)
    again = jaxhub.load(source, cache_dir=cache)
    assert _manifest(again)["exported_vjps"] is False
    assert "exported VJPs: not stored" in describe(again.manifest, "dense")
    assert all(f.vjp is not None and not again.functions[f.file].has_vjp()
               for f in again.manifest.functions)
    grads = jax.grad(_weighted_sum(again, x, weights))(again.params)
    np.testing.assert_allclose(grads["w"], tf_grad, rtol=1e-5, atol=1e-6)
    digest = formats.fingerprint(source)
    assert cached_derivation_if_present(
        f"converted:TF2 SavedModel:jaxhub-{jaxhub.__version__}:{digest}",
        cache_dir=cache) is None
    assert cached_derivation_if_present(
        f"converted:TF2 SavedModel:jaxhub-{jaxhub.__version__}:split-vjps:{digest}",
        cache_dir=cache) == again.path


def test_the_conversion_with_gradients_reuses_the_forward_functions(dense, tmp_path,
                                                                    monkeypatch):
    """Lowered by the conversion without gradients, from the same graph: not again."""
    source, tf_grad, x, weights = dense
    module = jaxhub.load(source, cache_dir=tmp_path / "cache")
    exports = []
    export = serialization.export
    monkeypatch.setattr(serialization, "export",
                        lambda *args, **kwargs: exports.append(args) or export(*args, **kwargs))
    grads = jax.grad(_weighted_sum(module, x, weights))(module.params)
    assert exports == []  # the halves are lowered, the forward function is not
    np.testing.assert_allclose(grads["w"], tf_grad, rtol=1e-5, atol=1e-6)
    # Converted with gradients from the start (no entry without them), it is lowered.
    jaxhub.load(formats.native(source, cache_dir=tmp_path / "complete", gradients=True).path)
    assert exports


@pytest.mark.parametrize("first_gradient", [False, True])
def test_a_module_exported_after_loading_has_its_gradients(dense, tmp_path, first_gradient):
    source, tf_grad, x, weights = dense
    module = jaxhub.load(source, cache_dir=tmp_path / "cache")
    if first_gradient:  # else export converts with gradients itself
        jax.grad(_weighted_sum(module, x, weights))(module.params)
    published = module.export(tmp_path / "published")
    exported = jaxhub.load(published)
    assert exported.manifest.gradients and exported.manifest.exported_vjps
    assert all(f.vjp is not None for f in exported.manifest.functions)
    grads = jax.grad(_weighted_sum(exported, x, weights))(exported.params)
    np.testing.assert_allclose(grads["w"], tf_grad, rtol=1e-5, atol=1e-6)
    # Readers that predate split VJPs differentiate through the exported VJPs: TF's too.
    old = as_read_before_split_vjps(published, tmp_path / "old-reader")
    grads = jax.grad(_weighted_sum(old, x, weights))(old.params)
    np.testing.assert_allclose(grads["w"], tf_grad, rtol=1e-5, atol=1e-6)


def test_inspect_says_gradients_come_on_first_use(dense, tmp_path):
    module = jaxhub.load(dense[0], cache_dir=tmp_path / "cache")
    assert "gradients: not stored" in describe(module.manifest, "dense")


def test_a_source_nested_deeper_than_python_recurses_is_fingerprinted(tmp_path):
    # The converted-module cache key lists every file; pathlib's rglob recursed per level.
    with deep_dirs(tmp_path, 1200) as deep:
        (deep / "f").write_bytes(b"x")
        before = formats.fingerprint(tmp_path)
        (deep / "f").write_bytes(b"xy")
        assert formats.fingerprint(tmp_path) != before
