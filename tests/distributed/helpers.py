"""Runs the worker scripts in fresh Python processes, so device flags stay in them."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKERS = pathlib.Path(__file__).resolve().parent / "workers"


def worker_env(devices: int = 1) -> dict[str, str]:
    """The environment of a worker: the repo importable, ``devices`` host devices."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
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
