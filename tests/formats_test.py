"""Foreign formats are converted once into a cached jaxhub module, then read without TF."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jaxhub
from jaxhub._src import formats

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


def test_a_changed_source_is_converted_again(saved_model, tmp_path):
    cache = tmp_path / "cache"
    first = jaxhub.load(saved_model, cache_dir=cache)
    pb = saved_model / "saved_model.pb"
    stat = pb.stat()
    os.utime(pb, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = jaxhub.load(saved_model, cache_dir=cache)
    assert second.path != first.path


def test_a_source_nested_deeper_than_python_recurses_is_fingerprinted(tmp_path):
    # The converted-module cache key lists every file; pathlib's rglob recursed per level.
    from jaxhub._src.formats import fingerprint
    from tests.storage.hostile_params_test import deep_dirs
    with deep_dirs(tmp_path, 1200) as deep:
        (deep / "f").write_bytes(b"x")
        before = fingerprint(tmp_path)
        (deep / "f").write_bytes(b"xy")
        assert fingerprint(tmp_path) != before
