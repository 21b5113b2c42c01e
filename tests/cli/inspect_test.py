"""``jaxhub inspect`` shows signatures, variants, params and attachments."""

from __future__ import annotations

import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "jaxhub", *args], capture_output=True,
                          text=True, timeout=120)


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
    assert "is not a jaxhub module directory" in result.stderr
