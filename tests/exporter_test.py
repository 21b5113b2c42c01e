"""jaxhub._src.exporter.ModuleExporter: periodic exports that load back, latest or best kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import jaxhub
from jaxhub._src.exporter import LOCK_FILE, RECORD_FILE, ModuleExporter, remove_abandoned
from tests.conftest import mlp, repo_pythonpath

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _params_at(module, step: int):
    """Params that differ per step, as training would make them."""
    return jax.tree.map(lambda v: v * (1.0 + 0.1 * step), module.params)


def _step_dirs(directory) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def test_exports_every_n_steps_and_keeps_the_latest(mlp_module, x, tmp_path):
    exporter = ModuleExporter(tmp_path, mlp_module, every_n_steps=2, keep=2)
    made = [exporter.maybe_export(step, _params_at(mlp_module, step)) for step in range(1, 8)]
    assert [e.step for e in made if e is not None] == [2, 4, 6]
    final = exporter.export(7, _params_at(mlp_module, 7))
    assert _step_dirs(tmp_path) == [6, 7]
    assert [e.step for e in exporter.exports] == [6, 7]
    assert exporter.latest == final
    for export in exporter.exports:
        loaded = jaxhub.load(export.path)
        np.testing.assert_allclose(loaded(x), mlp(_params_at(mlp_module, export.step), x),
                                   atol=1e-5)
    record = json.loads((tmp_path / RECORD_FILE).read_text())
    assert [e["step"] for e in record["exports"]] == [6, 7]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [LOCK_FILE]


@pytest.mark.parametrize("mode, best_steps", [("min", [3, 4]), ("max", [1, 6])])
def test_keeps_the_best_by_a_metric_and_the_latest(mlp_module, tmp_path, mode, best_steps):
    losses = {1: 5.0, 2: 4.0, 3: 1.0, 4: 2.0, 5: 3.0, 6: 4.5}
    exporter = ModuleExporter(tmp_path, mlp_module, every_n_steps=1, keep=2,
                              best_metric="loss", mode=mode)
    for step, loss in losses.items():
        exporter.maybe_export(step, mlp_module.params, metrics={"loss": loss})
    assert _step_dirs(tmp_path) == sorted({*best_steps, 6})
    best = exporter.best
    assert best.step == (3 if mode == "min" else 1)
    assert best.metrics == {"loss": losses[best.step]}


def test_finish_exports_the_last_step_once(mlp_module, tmp_path):
    exporter = ModuleExporter(tmp_path, mlp_module, every_n_steps=5, keep=3)
    for step in range(1, 11):
        exporter.maybe_export(step, _params_at(mlp_module, step))
    assert exporter.finish(10, _params_at(mlp_module, 99)) == exporter.latest
    assert _step_dirs(tmp_path) == [5, 10]
    np.testing.assert_array_equal(jaxhub.load(tmp_path / "10").params["scale"],
                                  _params_at(mlp_module, 10)["scale"])
    assert exporter.finish(12, _params_at(mlp_module, 12)).step == 12
    assert _step_dirs(tmp_path) == [5, 10, 12]


def test_metrics_are_computed_only_when_exporting(mlp_module, tmp_path):
    calls = []

    def metrics():
        calls.append(1)
        return {"loss": 1.0}

    exporter = ModuleExporter(tmp_path, mlp_module, every_n_steps=5, best_metric="loss")
    for step in range(1, 11):
        exporter.maybe_export(step, mlp_module.params, metrics=metrics)
    assert len(calls) == 2


def test_missing_best_metric_is_an_error(mlp_module, tmp_path):
    exporter = ModuleExporter(tmp_path, mlp_module, every_n_steps=1, best_metric="loss")
    with pytest.raises(ValueError, match="best_metric 'loss'"):
        exporter.export(1, mlp_module.params, {"accuracy": 0.5})
    assert _step_dirs(tmp_path) == []


def test_a_restarted_run_continues_the_record(mlp_module, x, tmp_path):
    first = ModuleExporter(tmp_path, mlp_module, every_n_steps=2, keep=2)
    for step in range(1, 5):
        first.maybe_export(step, _params_at(mlp_module, step))
    (tmp_path / "99").mkdir()  # left by a crash after an export, before the record
    again = ModuleExporter(tmp_path, mlp_module, every_n_steps=2, keep=2)
    assert [e.step for e in again.exports] == [2, 4]
    assert not again.should_export(4) and again.should_export(6)
    again.export(4, _params_at(mlp_module, 40))  # the same step again replaces it
    np.testing.assert_allclose(jaxhub.load(tmp_path / "4")(x),
                               mlp(_params_at(mlp_module, 40), x), atol=1e-5)
    again.maybe_export(6, _params_at(mlp_module, 6))
    assert _step_dirs(tmp_path) == [4, 6]


def test_bad_settings_are_refused(mlp_module, tmp_path):
    with pytest.raises(ValueError, match="every_n_steps"):
        ModuleExporter(tmp_path, mlp_module, every_n_steps=0)
    with pytest.raises(ValueError, match="mode"):
        ModuleExporter(tmp_path, mlp_module, every_n_steps=1, mode="best")


# Exports a module with 16 MB of params over and over, until it is killed.
ENDLESS_WRITER = textwrap.dedent("""
    import itertools, sys
    from jaxhub._src.exporter import ModuleExporter
    from tests.conftest import make_mlp_module, mlp_params
    module = make_mlp_module(mlp_params(d_hidden=40_000))
    exporter = ModuleExporter(sys.argv[1], module, every_n_steps=1, keep=1)
    for step in itertools.count(1):
        exporter.export(step, module.params)
""")

# Holds the writer's lock with a temporary directory of its own, as a writer mid-export.
LIVE_WRITER = textwrap.dedent("""
    import pathlib, sys, time
    from jaxhub._src import exporter
    directory = pathlib.Path(sys.argv[1])
    with exporter._writing(directory):
        (directory / ".7.live.tmp").mkdir()
        print("writing", flush=True)
        time.sleep(300)
""")


def _start(script: str, directory) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=repo_pythonpath(), JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-c", script, str(directory)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir()
                  if p.name.startswith(".") and p.name.endswith(".tmp"))


def _leftover_bytes(directory) -> int:
    return sum(f.stat().st_size for name in _leftovers(directory)
               for f in (directory / name).rglob("*") if f.is_file())


def _kill_mid_export(directory, attempts: int = 3) -> list[str]:
    """Kills an exporting process once its temporary directory holds a megabyte; returns
    what it left behind."""
    for _ in range(attempts):
        writer = _start(ENDLESS_WRITER, directory)
        deadline = time.monotonic() + 120
        try:
            while _leftover_bytes(directory) < 2**20 and time.monotonic() < deadline:
                assert writer.poll() is None, writer.communicate()[1][-3000:]
                time.sleep(0.005)
        finally:
            _kill(writer)
        if _leftovers(directory):  # else it was killed between two exports: again
            return _leftovers(directory)
    pytest.fail("never caught the writer mid-export")


def test_a_killed_writers_temporary_directory_is_removed_by_the_next_export(
        mlp_module, tmp_path):
    left = _kill_mid_export(tmp_path)
    size = _leftover_bytes(tmp_path)
    print(f"killed mid-export, left {left}: {size} bytes")
    exporter = ModuleExporter(tmp_path, mlp_module, every_n_steps=1, keep=2)
    export = exporter.export(10_000, mlp_module.params)
    assert _leftovers(tmp_path) == [], f"{left} ({size} bytes) still there"
    assert [e.step for e in exporter.exports][-1] == 10_000
    for e in exporter.exports:  # what the killed run recorded still loads
        jaxhub.load(e.path)
    jaxhub.load(export.path)


def test_a_live_writers_temporary_directory_is_left_alone(mlp_module, tmp_path):
    writer = _start(LIVE_WRITER, tmp_path)
    try:
        assert writer.stdout.readline().strip() == "writing", writer.communicate()[1][-3000:]
        exporter = ModuleExporter(tmp_path, mlp_module, every_n_steps=1)
        exporter.export(1, mlp_module.params)
        assert remove_abandoned(tmp_path) == []
        assert _leftovers(tmp_path) == [".7.live.tmp"]
    finally:
        _kill(writer)
    # Killed, it holds no lock any more: its directory goes with the next export.
    exporter.export(2, mlp_module.params)
    assert _leftovers(tmp_path) == []
    assert [e.step for e in exporter.exports] == [1, 2]
