"""examples/fine_tune.py runs end to end: a PNG, exports that load, a result table."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import jaxhub
from tests.conftest import repo_pythonpath

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_fine_tune_example_runs(tmp_path):
    pytest.importorskip("matplotlib", reason="the example's loss curve needs the "
                                             "`examples` extra")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "fine_tune.py"), "--out", str(tmp_path),
         "--steps", "20", "--pretrain-steps", "20", "--examples-b", "64"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=repo_pythonpath(), JAX_PLATFORMS="cpu"))
    assert result.returncode == 0, result.stderr[-3000:]
    png = (tmp_path / "loss_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    rows = [line.split() for line in result.stdout.splitlines()
            if line.startswith(("from scratch", "frozen module", "then fine-tuned"))]
    assert len(rows) == 3
    assert "pretrain on A" not in result.stderr  # progress bars only on a terminal
    exports = sorted(p for p in (tmp_path / "exports").iterdir() if p.name.isdigit())
    assert exports and exports[-1].name == "20"
    module = jaxhub.load(exports[-1])
    assert module.attachments["task"] == "feature-extraction"
