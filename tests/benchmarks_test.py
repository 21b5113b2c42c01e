"""Smoke test of ``python -m benchmarks``: a real quick run on the MLP, in a subprocess.

Speed is not asserted here (see ``benchmarks/RESULTS.md``); only that every framework
produced figures and that the tables have their columns.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``(stdout, figures)`` of a quick benchmark run of the MLP."""
    tmp = tmp_path_factory.mktemp("bench")
    figures = tmp / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--models", "mlp",
         "--workdir", str(tmp / "work"), "--json", str(figures)],
        cwd=_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(figures.read_text())


def _table_with(stdout: str, first_cell: str) -> list[list[str]]:
    """The rows (cells stripped) of the markdown table whose header starts with a cell."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_cell} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_details_table_has_every_framework_and_ratio(quick_run):
    stdout, _ = quick_run
    header, rule, *rows = _table_with(stdout, "model | metric")
    assert header == ["model", "metric", "jaxhub", "TF", "tf2jax", "native Flax",
                      "TF / jaxhub", "tf2jax / jaxhub", "native / jaxhub"]
    assert set(rule) == {"---"}
    metrics = [row[1] for row in rows]
    for wanted in ("latency, batch 1", "throughput, batch 32", "fine-tune step",
                   "cold start", "warm start", "peak memory"):
        assert any(m.startswith(wanted) for m in metrics), (wanted, metrics)
    assert all(row[0] == "mlp" for row in rows)


def test_every_figure_was_measured(quick_run):
    stdout, figures = quick_run
    header, _, *rows = _table_with(stdout, "model | metric")
    for row in rows:
        for framework, cell in zip(header[2:6], row[2:6]):
            assert float(cell.replace(",", "")) > 0, (row[1], framework, cell)
        for cell in row[6:]:
            assert float(cell.strip("*")) > 0, row
    for framework in ("jaxhub", "tf", "tf2jax", "native"):
        assert "error" not in figures["mlp"][framework]["run"], figures["mlp"][framework]


def test_ratios_are_computed_from_the_figures(quick_run):
    stdout, figures = quick_run
    rows = {row[1]: row for row in _table_with(stdout, "model | metric")[2:]}
    latency = next(row for label, row in rows.items() if label.startswith("latency"))
    ours = figures["mlp"]["jaxhub"]["run"]["latency_ms"]
    theirs = figures["mlp"]["tf"]["run"]["latency_ms"]
    assert float(latency[6].strip("*")) == pytest.approx(theirs / ours, abs=0.006)
    native = figures["mlp"]["native"]["run"]["latency_ms"]
    assert float(latency[8].strip("*")) == pytest.approx(native / ours, abs=0.006)


def test_summarises_jaxhub_against_native_flax(quick_run):
    stdout, _ = quick_run
    assert "same model written in Flax nnx" in stdout
    tables = [line for line in stdout.splitlines() if line.startswith("| model | latency")]
    assert len(tables) == 2  # against TF, against native Flax


def test_states_machine_and_compilation_cache(quick_run):
    stdout, figures = quick_run
    assert "Load average" in stdout and "Threads:" in stdout and "oneDNN" in stdout
    header, _, row = _table_with(stdout, "model | converting + loading (s)")
    assert "2nd process, cache: first call (s)" in header and row[0] == "mlp"
    warm = figures["mlp"]["jaxhub"]["warm"]
    assert warm["start_s"] > warm["first_call_s"] > 0


def test_gpu_run_on_a_machine_without_gpu_says_so_and_exits_cleanly(tmp_path):
    import jax
    if jax.default_backend() == "gpu":
        pytest.skip("this machine has a GPU")
    output = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--device", "gpu", "--models", "mlp",
         "--workdir", str(tmp_path / "work"), "--output", str(output)],
        cwd=_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines() == [done.stdout.strip()]  # one line
    assert "No GPU" in done.stdout
    assert not output.exists() and not (tmp_path / "work").exists()  # nothing measured


def test_real_models_benchmark_measures_both_frameworks(tmp_path):
    # The smallest shipped model, one timed call per figure: a smoke run, not a timing.
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.real_models_bench", "--models", "mtcnn_rnet",
         "--batch", "2", "--repeats", "1", "--budget", "0", "--warmup", "1",
         "--workdir", str(tmp_path)],
        cwd=_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    header, _, row = _table_with(done.stdout, "model")
    assert row[0] == "mtcnn_rnet" and len(row) == len(header)
    assert "-" not in row, f"a figure is missing: {dict(zip(header, row))}"
    assert "mtcnn_rnet, " not in done.stdout, "a measurement reported an error"
