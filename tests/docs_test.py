"""The README's quick start and the guides' code blocks run exactly as printed."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNNER = ROOT / "scripts" / "run_readme.py"


def _run_python_blocks(markdown: pathlib.Path, tmp_path: pathlib.Path):
    env = dict(os.environ, JAXHUB_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, str(RUNNER), str(markdown)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)


def test_readme_quick_start_runs_fine_tunes_and_exports(tmp_path):
    result = _run_python_blocks(ROOT / "README.md", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""  # no warnings, no request log
    before, after = (float(v) for v in
                     result.stdout.split("loss ")[1].split("\n")[0].split(" -> "))
    assert after < 0.5 * before  # `step` ran: the exported module holds trained params


def test_fine_tuning_guide_runs_as_printed(tmp_path):
    result = _run_python_blocks(ROOT / "docs" / "fine_tuning_tf_models.md", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[:2] == ["['serve', 'serving_default']", "(frozenset(),)"]  # Keras 3 export
    assert "(frozenset(), frozenset({'train'}))" in lines  # the reusable SavedModel
