"""One process, 8 host devices: params loaded sharded, data-parallel fine-tuning."""

from __future__ import annotations

from tests.distributed.helpers import run_worker, without_split_vjp


def test_load_restores_params_sharded_over_devices(mlp_dir):
    result = run_worker("load_sharded", mlp_dir, devices=8)
    assert int(result.stdout.split()[-1]) >= 3  # params actually split


def test_data_parallel_fine_tuning_matches_one_device(mlp_dir):
    result = run_worker("data_parallel", mlp_dir, devices=8)
    first, last = map(float, result.stdout.split()[-2:])
    assert last < first


def test_module_under_a_trainable_head_matches_one_device_on_explicit_and_auto_meshes(
        mlp_dir, tmp_path):
    # The same module without its split VJP takes the exported-VJP route to the gradient.
    stripped = without_split_vjp(mlp_dir, tmp_path / "no_split")
    result = run_worker("with_head", mlp_dir, stripped, devices=8)
    for kind in ("functional", "nnx", "linen", "functional (exported VJP)"):
        for mesh in ("explicit", "auto"):
            assert f"{kind}, {mesh} mesh: " in result.stdout
