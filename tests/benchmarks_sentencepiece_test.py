"""Smoke test of ``python -m benchmarks.sentencepiece``: a real quick run, in a subprocess.

Speed is not asserted (see ``benchmarks/RESULTS-sentencepiece.md``); only that each
runtime produced a figure, after the run checked jaxhub's outputs equal to TF's.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow_text")

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quick_run_reports_every_runtime():
    done = subprocess.run([sys.executable, "-m", "benchmarks.sentencepiece", "--quick"],
                          cwd=_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([\d,]+) \|", done.stdout, re.MULTILINE))
    assert set(rows) == {"TF + tensorflow_text", "jaxhub host stage", "jaxhub module"}
    assert all(int(rate.replace(",", "")) > 0 for rate in rows.values())
