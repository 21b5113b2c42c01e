"""Runs the worker scripts in fresh Python processes, so device flags stay in them."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
from tests.conftest import repo_pythonpath

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKERS = pathlib.Path(__file__).resolve().parent / "workers"


def worker_env(devices: int = 1) -> dict[str, str]:
    """The environment of a worker: the repo importable, ``devices`` host devices."""
    env = dict(os.environ, PYTHONPATH=repo_pythonpath(), JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def worker_command(name: str, *args: object) -> list[str]:
    return [sys.executable, str(WORKERS / f"{name}.py"), *map(str, args)]


def run_worker(name: str, *args: object, devices: int = 1, timeout: float = 300
               ) -> subprocess.CompletedProcess:
    """Runs ``workers/<name>.py`` to the end and checks that it said "ok"."""
    result = subprocess.run(worker_command(name, *args), env=worker_env(devices), cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1].startswith("ok"), result.stdout
    return result


def without_split_vjp(module_dir: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """A copy of a module without split VJPs, as modules written before them were."""
    shutil.copytree(module_dir, target)
    manifest_file = target / "jaxhub_module.json"
    manifest = json.loads(manifest_file.read_text())
    for fn in manifest["functions"]:
        fn.pop("vjp", None)
    manifest_file.write_text(json.dumps(manifest))
    for folder in target.glob("functions/*/vjp"):
        shutil.rmtree(folder)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def finish(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Waits for processes that must all end well and say "ok"; returns their stdout."""
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:  # a process whose peer died waits for it forever: end it
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-4000:]
        assert out.strip().splitlines()[-1].startswith("ok"), out
    return [out for out, _ in outputs]
