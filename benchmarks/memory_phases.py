"""``python -m benchmarks.memory_phases MODEL FRAMEWORK``: memory phase by phase, one process.

The whole-run peak memory of ``python -m benchmarks`` is the ``ru_maxrss`` of one process
that loads a model, runs inference at batch 1 and 32, then fine-tune steps at batch 32.
This runs the same phases with the same runner (:mod:`benchmarks.harness`) and the same
allocator settings (:data:`benchmarks.harness.KEEP_HEAP_ENV`, unless ``--glibc-defaults``),
and prints after each phase and each step the peak and current resident size
(``VmHWM``, ``VmRSS``) and glibc's view of the main heap (``mallinfo2``: its size, what
is in use, what is free in it, what is mapped apart), so that one sees which phase sets
the peak and whether freed memory is reused.

Usage::

    python -m benchmarks.memory_phases resnet50 jaxhub [--image-size 96] [--steps 12]
        [--no-inference] [--glibc-defaults]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import pathlib
import subprocess
import sys

import numpy as np

from benchmarks import harness
from benchmarks import models
from benchmarks.processes import REPO_ROOT, child_env


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _memory() -> str:
    """Peak and current RSS, and the main heap's size, use and free space, in MiB."""
    status = {}
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            status[key] = int(value.split()[0]) >> 10
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return (f"{status['VmHWM']:,} | {status['VmRSS']:,} | {info.arena >> 20:,} | "
            f"{info.uordblks >> 20:,} | {info.fordblks >> 20:,} | {info.hblkhd >> 20:,} |")


def _child(args: argparse.Namespace) -> None:
    saved_model = pathlib.Path(args.saved_model)
    info = models.build_info(saved_model)
    print("| phase | VmHWM | VmRSS | heap | in use | free in heap | mapped apart |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    print(f"| imports | {_memory()}", flush=True)
    runner = harness._LOADERS[args.framework](saved_model, info["input"],
                                              pathlib.Path(args.jaxhub_cache))
    print(f"| loaded | {_memory()}", flush=True)
    xb = models.example_input(args.model, harness.BATCH, args.image_size)
    if not args.no_inference:
        x1 = models.example_input(args.model, 1, args.image_size)
        for batch, x in ((1, x1), (harness.BATCH, xb)):
            for _ in range(args.calls):
                runner.infer(x)
            print(f"| inference, batch {batch}, {args.calls} calls | {_memory()}", flush=True)
    y = np.random.default_rng(2).standard_normal(runner.infer(xb).shape).astype(np.float32)
    step = runner.make_step(xb, y)
    for i in range(args.steps):
        step()
        print(f"| fine-tune step {i + 1}{' (compiles)' if i == 0 else ''} | {_memory()}",
              flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=sorted(models.MODELS))
    parser.add_argument("framework", choices=harness.FRAMEWORKS)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--calls", type=int, default=20, help="inference calls per batch")
    parser.add_argument("--no-inference", action="store_true",
                        help="fine-tune steps right after loading")
    parser.add_argument("--glibc-defaults", action="store_true",
                        help="glibc's default malloc settings instead of KEEP_HEAP_ENV")
    parser.add_argument("--workdir", default=str(harness.DEFAULT_WORKDIR))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--saved-model", help=argparse.SUPPRESS)
    parser.add_argument("--jaxhub-cache", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    workdir = pathlib.Path(args.workdir)
    saved_model = models.ensure_saved_model(args.model, workdir, args.image_size)
    cache = args.jaxhub_cache or harness.jaxhub_cache(workdir)
    env = {**child_env(), **harness.device_env("cpu")}
    if not args.glibc_defaults:  # set before the process starts, as python -m benchmarks
        env.update(harness.KEEP_HEAP_ENV)
    print(f"{args.model}, {args.framework}, {args.image_size}px; load before: "
          f"{os.getloadavg()[0]:.1f}; MiB\n", flush=True)
    subprocess.run([sys.executable, "-m", "benchmarks.memory_phases", args.model,
                    args.framework, "--child", "--saved-model", str(saved_model),
                    "--jaxhub-cache", str(cache), "--image-size", str(args.image_size),
                    "--steps", str(args.steps), "--calls", str(args.calls)]
                   + (["--no-inference"] if args.no_inference else []),
                   cwd=REPO_ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
