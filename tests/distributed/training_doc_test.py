"""The recipes of docs/training.md, run exactly as printed.

The page's python blocks are cut out of it: all but the last make one script (a module
made, trained under an nnx head, a linen head, exported as training goes, then trained
data-parallel with a head, functionally and through nnx), run on 8 host devices and on
one; the last is ``train.py``, run in two processes and in one. Each run's trained params
must match the one-device run's to 1e-5.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np

from tests.distributed.helpers import ROOT, finish, free_port, worker_env

DOC = ROOT / "docs" / "training.md"

# Runs a recipe file with its argv, then saves what it trained (a harness, not the recipe).
HARNESS = textwrap.dedent("""
    import runpy, sys
    import jax, numpy as np
    recipe, out, *sys.argv[1:] = sys.argv[1:]
    sys.argv[0] = recipe
    scope = runpy.run_path(recipe, run_name="__main__")
    leaves = {"trainable": scope["trainable"]}
    if "model" in scope:
        from flax import nnx
        leaves["nnx"] = nnx.state(scope["model"], nnx.Param)
    flat = jax.tree_util.tree_flatten_with_path(leaves)[0]
    np.savez(out, **{jax.tree_util.keystr(p): np.asarray(v.addressable_data(0))
                     for p, v in flat})
    print("ok")
""")


def recipes() -> list[str]:
    """The python code blocks of the page, in order."""
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def _run(cwd: pathlib.Path, recipe: str | pathlib.Path, out: str, *args: object, devices: int = 1
         ) -> subprocess.Popen:
    env = worker_env(devices)
    command = [sys.executable, "-c", HARNESS, recipe, out, *map(str, args)]
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _assert_same(path: pathlib.Path, reference: pathlib.Path) -> float:
    got, want = np.load(path), np.load(reference)
    assert sorted(got.files) == sorted(want.files)
    for name in want.files:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=name)
    return max(float(np.abs(got[n] - want[n]).max()) for n in want.files)


def test_the_page_has_the_recipes_it_promises():
    script, train = "\n".join(recipes()[:-1]), recipes()[-1]
    for part in ("create_module", "nnx.Linear", "linen.Dense", "ModuleExporter(",
                 "sharding=replicated", "jax.set_mesh(mesh)"):
        assert part in script, part
    assert "jax.distributed.initialize" in train


def test_the_page_on_8_devices_matches_one_device(tmp_path):
    script = tmp_path / "recipe.py"
    script.write_text("\n".join(recipes()[:-1]))
    (tmp_path / "one").mkdir()
    (tmp_path / "eight").mkdir()
    finish([_run(tmp_path / "one", script, "trained.npz")], 300)
    eight = finish([_run(tmp_path / "eight", script, "trained.npz", devices=8)], 300)[0]
    assert "P('model',)" in eight  # the module was loaded split over 8 devices
    losses = [float(v) for v in re.findall(r"^(?:nnx )?loss (\d\.\d+)$", eight, re.M)]
    assert len(losses) == 2 and max(losses) < 0.6, eight  # it learned the labels
    assert float(re.search(r"accuracy (\S+)", eight).group(1)) > 0.8, eight
    gap = _assert_same(tmp_path / "eight" / "trained.npz", tmp_path / "one" / "trained.npz")
    print(f"8 devices vs one: {gap:.2e}")


def test_multi_host_recipe_in_two_processes_matches_one_process(tmp_path):
    blocks = recipes()
    (tmp_path / "make.py").write_text(blocks[0] + "\ntrainable = {}\n")
    finish([_run(tmp_path, tmp_path / "make.py", "unused.npz")], 300)
    (tmp_path / "train.py").write_text(blocks[-1])
    single = _run(tmp_path, "train.py", "one.npz", f"127.0.0.1:{free_port()}", 1, 0)
    finish([single], 300)
    port = free_port()
    finish([_run(tmp_path, "train.py", f"two_{i}.npz", f"127.0.0.1:{port}", 2, i)
            for i in range(2)], 300)
    for i in range(2):
        gap = _assert_same(tmp_path / f"two_{i}.npz", tmp_path / "one.npz")
        print(f"process {i} of 2 vs one: {gap:.2e}")
