"""``jaxhub convert --to tf SRC DST``."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import tensorflow_hub as hub

from jaxhub._src import cli
from tests.conftest import repo_pythonpath

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


def _jaxhub(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=repo_pythonpath(), JAXHUB_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "jaxhub", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_convert_to_tf_writes_a_saved_model_hub_loads(tmp_path, mlp_dir, mlp_module, capsys):
    # In process: the command's own code, without paying for a second TF import.
    dst = tmp_path / "mlp_tf"
    assert cli.main(["convert", "--to", "tf", str(mlp_dir), str(dst)]) == 0
    assert "TF2 SavedModel" in capsys.readouterr().out
    obj = hub.load(str(dst))
    x = np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32)
    np.testing.assert_allclose(obj(x).numpy(), mlp_module(x), rtol=1e-6, atol=1e-6)
    assert set(obj.signatures) == {*mlp_module.signatures, "serving_default"}


def test_convert_to_tf_refuses_a_non_empty_destination(tmp_path, mlp_dir):
    # As a subprocess: the exit status and message a shell sees.
    dst = tmp_path / "taken"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    result = _jaxhub(tmp_path, "convert", "--to", "tf", str(mlp_dir), str(dst))
    assert result.returncode == 1
    assert "not empty" in result.stderr
    assert [p.name for p in dst.iterdir()] == ["keep.txt"]
