"""``jaxhub inspect`` shows signatures, variants, params and attachments."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import tensorflow as tf

import jaxhub
from tests.hub.server import HubServer, Route


def run(*args, cache_dir=None, **kwargs):
    env = dict(os.environ)
    if cache_dir is not None:
        env["JAXHUB_CACHE_DIR"] = str(cache_dir)
    return subprocess.run([sys.executable, "-m", "jaxhub", *args], capture_output=True,
                          text=True, timeout=120, env=env, **kwargs)


def test_inspect_lists_what_the_module_offers(mlp_dir, mlp_module):
    result = run("inspect", str(mlp_dir))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"params: {mlp_module.num_params():,}" in text
    assert "variant {}:" in text and "variant {train}:" in text
    assert "signature 'default'" in text and "signature 'double'" in text
    assert "input  default: float32[batch, 50]" in text
    assert "output default: float32[batch, 10]" in text
    assert "(takes rng)" in text
    assert 'attachment task: "regression"' in text
    assert "regularizer: yes" in text


def test_inspect_json_is_the_manifest(mlp_dir):
    result = run("inspect", "--json", str(mlp_dir))
    assert json.loads(result.stdout)["format"] == "jaxhub.module"


def test_inspect_of_a_non_module_fails_clearly(tmp_path):
    result = run("inspect", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == (f"jaxhub inspect: error: {tmp_path} holds no module jaxhub can "
                             "read (tried: jaxhub module, TF1 Hub module, TF2 SavedModel)\n")


def test_inspect_reports_a_missing_path_as_missing(tmp_path):
    missing = tmp_path / "nowhere"
    result = run("inspect", str(missing))
    assert result.returncode == 1
    assert result.stderr == f"jaxhub inspect: error: {missing}: no such file or directory\n"


def test_inspect_fetches_a_url(mlp_dir, tmp_path):
    archive = tmp_path / "mlp.tar.gz"
    jaxhub.pack(mlp_dir, archive)
    with HubServer() as server:
        url = server.add("/models/mlp.tar.gz", Route(body=archive.read_bytes()))
        result = run("inspect", url, cache_dir=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"module: {url} ("), result.stdout  # not http:/...
    assert "signature 'double'" in result.stdout


class _Scale(tf.Module):
    def __init__(self):
        super().__init__()
        self.scale = tf.Variable([1.0, 2.0, 3.0])

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def __call__(self, x):
        return x * self.scale


def test_inspect_converts_a_saved_model_and_says_so(tmp_path):
    tf.saved_model.save(_Scale(), str(tmp_path / "saved"))
    result = run("inspect", str(tmp_path / "saved"), cache_dir=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "TF2 SavedModel, converted:" in result.stdout.splitlines()[0]
    assert "input  x: float32[batch, 3]" in result.stdout
    assert result.stderr == ""  # TensorFlow's start-up log lines are silenced


def test_inspect_stops_quietly_when_the_reader_goes_away(mlp_dir):
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` having exited: every write fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "jaxhub", "inspect", str(mlp_dir)],
                                stdout=write_end, stderr=subprocess.PIPE, text=True,
                                timeout=120)
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141  # 128 + SIGPIPE, as the shell reports for `cat`
