"""Two processes on localhost, joined by ``jax.distributed``, fine-tune one module."""

from __future__ import annotations

import subprocess

import numpy as np

import jaxhub
from jaxhub._src import tree
from tests.distributed.helpers import ROOT, finish, free_port, worker_command, worker_env
from tests.distributed.workers import finetune


def _run_two(mlp_dir, out_dir, *mode: str, timeout: float = 240) -> list[str]:
    port = free_port()
    procs = [subprocess.Popen(worker_command("multiprocess", mlp_dir, port, i, out_dir, *mode),
                              env=worker_env(), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    return finish(procs, timeout)


def test_two_processes_end_with_identical_params(mlp_dir, tmp_path):
    _run_two(mlp_dir, tmp_path)
    first, second = (np.load(tmp_path / f"params_{i}.npz") for i in range(2))
    assert sorted(first.files) == sorted(second.files)
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    # And they are what one process computes on the whole batch.
    single, losses = finetune.fine_tune(jaxhub.load(mlp_dir))
    np.testing.assert_allclose(first["losses"], losses, rtol=1e-5)
    for path, value in tree.flatten(single):
        np.testing.assert_allclose(first[tree.path_str(path)], value, atol=1e-5,
                                   err_msg=str(path))
    assert losses[-1] < losses[0]


def test_two_processes_export_one_module_together(mlp_dir, tmp_path):
    _run_two(mlp_dir, tmp_path, "export", timeout=60)
    exported = dict(tree.flatten(jaxhub.load(tmp_path / "exports" / "0").params))
    for path, value in tree.flatten(jaxhub.load(mlp_dir).params):
        np.testing.assert_array_equal(exported[path], value, err_msg=str(path))


def test_two_processes_train_a_module_under_a_head_as_one_device_does(mlp_dir, tmp_path):
    _run_two(mlp_dir, tmp_path, "head")
    for kind, run in finetune.WITH_HEAD.items():
        trained, losses = run(jaxhub.load(mlp_dir))  # one process, one device, whole batch
        for mesh in ("explicit", "auto"):
            first, second = (np.load(tmp_path / f"head_{kind}_{mesh}_{i}.npz")
                             for i in range(2))
            for name in first.files:
                np.testing.assert_array_equal(first[name], second[name], err_msg=name)
            written = tree.unflatten((path, first[tree.path_str(path)])
                                     for path, _ in tree.flatten(trained))
            gap = finetune.assert_same_run((written, list(first["losses"])),
                                           (trained, losses), f"{kind}, {mesh} mesh")
            print(f"{kind}, {mesh} mesh, 2 processes: {gap:.2e} from one device")
