"""One process, 8 host devices: params loaded sharded, data-parallel fine-tuning."""

from __future__ import annotations

from tests.distributed.helpers import run_worker


def test_load_restores_params_sharded_over_devices(mlp_dir):
    result = run_worker("load_sharded", mlp_dir, devices=8)
    assert int(result.stdout.split()[-1]) >= 3  # params actually split


def test_data_parallel_fine_tuning_matches_one_device(mlp_dir):
    result = run_worker("data_parallel", mlp_dir, devices=8)
    first, last = map(float, result.stdout.split()[-2:])
    assert last < first
