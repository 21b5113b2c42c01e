"""One of two processes fine-tuning one module with ``jax.distributed`` on CPU.

Each process feeds its half of every batch; gradients meet over gloo collectives. The
process writes the fine-tuned params to OUT_DIR/params_<id>.npz. With ``export``, the
processes instead export the loaded module together with a ModuleExporter, as step 0 in
OUT_DIR/exports. With ``head``, they run each fine-tuning of ``finetune.WITH_HEAD`` (a
trainable head after the module) on an Explicit and an Auto mesh, and write
OUT_DIR/head_<kind>_<mesh>_<id>.npz.

Usage: python multiprocess.py MODULE_DIR COORDINATOR_PORT PROCESS_ID OUT_DIR [export|head]
"""

from __future__ import annotations

import pathlib
import sys

import jax


def main(module_dir: str, port: str, process_id: str, out_dir: str, *mode: str) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2,
                               process_id=int(process_id))
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    import jaxhub
    from jaxhub._src import tree
    from jaxhub._src.exporter import ModuleExporter
    from tests.distributed.workers import finetune

    assert jax.process_count() == 2 and jax.device_count() == 2, jax.devices()
    mesh = jax.make_mesh((2,), ("data",))
    # Params land replicated on both processes' devices, straight from the files.
    module = jaxhub.load(module_dir, sharding=NamedSharding(mesh, P()))
    if "export" in mode:
        exporter = ModuleExporter(pathlib.Path(out_dir) / "exports", module, every_n_steps=1)
        host_params = jax.tree.map(lambda v: np.asarray(v.addressable_data(0)), module.params)
        exporter.finish(0, host_params)
        jax.distributed.shutdown()
        print("ok", process_id)
        return
    if "head" in mode:
        from tests.distributed.workers.with_head import meshes
        for mesh_name, head_mesh in meshes().items():
            module = jaxhub.load(module_dir, sharding=NamedSharding(head_mesh, P()))
            for kind, run in finetune.WITH_HEAD.items():
                trained, losses = run(module, head_mesh)
                flat = {tree.path_str(p): v for p, v in tree.flatten(trained)}
                np.savez(pathlib.Path(out_dir) / f"head_{kind}_{mesh_name}_{process_id}.npz",
                         losses=np.array(losses), **flat)
        jax.distributed.shutdown()
        print("ok", process_id)
        return
    params, losses = finetune.fine_tune(module, mesh)
    flat = {tree.path_str(p): v for p, v in tree.flatten(params)}
    np.savez(pathlib.Path(out_dir) / f"params_{process_id}.npz", losses=np.array(losses),
             **flat)
    jax.distributed.shutdown()
    print("ok", process_id, losses[-1])


if __name__ == "__main__":
    main(*sys.argv[1:])
