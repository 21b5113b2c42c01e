"""Fine-tunes a module under a trainable head, data-parallel over 8 host devices; prints
"ok" and the largest difference from one device.

Each of the functional, ``flax.nnx`` and ``flax.linen`` runs of
:data:`finetune.WITH_HEAD` runs on a mesh with Explicit axes and on one with Auto axes,
and must match the same run on one device to 1e-5. Then the same module without its
split VJP (differentiated through the exported VJP) takes the functional run.

Usage: python with_head.py MODULE_DIR [MODULE_DIR_WITHOUT_SPLIT_VJP]
"""

from __future__ import annotations

import sys

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import jaxhub
from tests.distributed.workers import finetune


def meshes() -> dict[str, jax.sharding.Mesh]:
    n = jax.device_count()
    return {"explicit": jax.make_mesh((n,), ("data",), axis_types=(AxisType.Explicit,)),
            "auto": jax.make_mesh((n,), ("data",), axis_types=(AxisType.Auto,))}


def main(module_dir: str, *more_dirs: str) -> None:
    gaps = {}
    for name, mesh in meshes().items():
        for dir_ in (module_dir, *more_dirs):
            runs = finetune.WITH_HEAD if dir_ == module_dir else {
                "functional (exported VJP)": finetune.fine_tune_with_head}
            module = jaxhub.load(dir_, sharding=NamedSharding(mesh, P()))
            one_device = jaxhub.load(dir_)
            for kind, run in runs.items():
                what = f"{kind}, {name} mesh"
                parallel = run(module, mesh)
                moved = np.abs(parallel[0]["head"]["kernel"]
                               - finetune.head_init()["kernel"]).max()
                assert moved > 1e-3, (what, moved)  # the head did train
                gaps[what] = finetune.assert_same_run(parallel, run(one_device), what)
    for what, gap in gaps.items():
        print(f"{what}: {gap:.2e}")
    print("ok", max(gaps.values()))


if __name__ == "__main__":
    main(*sys.argv[1:])
