"""``python -m benchmarks``: jaxhub against TensorFlow and tf2jax on the same SavedModels.

And against the same architectures written natively in Flax nnx with the same weights
(:mod:`benchmarks.native`; MLP, text embedding, ResNet50, transformer), which shows what
converting costs. For every model (see :mod:`benchmarks.models`): latency at batch 1,
throughput at batch 32, one fine-tune step, cold start, warm start (a second process;
for JAX with its persistent compilation cache) and peak memory, each measured in its own
process (see :mod:`benchmarks.harness`). Prints markdown tables and writes them, with the machine, the
versions and the command, to ``benchmarks/RESULTS.md``.

Usage:
    python -m benchmarks [--models mlp,resnet50] [--repeats 3] [--budget 2] [--image-size 224]
    python -m benchmarks --quick --models mlp        # a smoke run: tiny sizes, one repeat
    python -m benchmarks --device gpu                # the same table on a GPU

On a GPU (``--device gpu``) JAX needs its GPU build (``pip install "jax[cuda12]"``);
TensorFlow and tf2jax are measured only if TensorFlow sees the GPU too (a TF build with
CUDA), otherwise the table has jaxhub and native Flax only. Peak memory is then the
host's resident memory, not the GPU's. Where JAX finds no GPU, the command says so in
one line and exits with status 0, measuring nothing. ``--device cpu`` (the default)
hides any GPU from the measuring processes.

SavedModels and converted modules are kept in ``--workdir`` between runs; converted
modules are keyed by a hash of the converter and core sources, so a changed converter
converts again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from typing import Any

from benchmarks import harness
from benchmarks import models
from benchmarks import native
from benchmarks import report
from benchmarks.processes import REPO_ROOT, child_env

_RESULTS = pathlib.Path(__file__).resolve().parent / "RESULTS.md"
_PACKAGES = ("jax", "jaxlib", "tensorflow", "tf2jax", "keras", "numpy", "jaxhub")


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    frameworks = _frameworks(args.device)
    if frameworks is None:
        print("No GPU: JAX finds no GPU backend here (it needs its GPU build, e.g. "
              "jax[cuda12]); nothing was measured.")
        return
    frameworks = [f for f in frameworks if f in args.frameworks]
    if not args.glibc_defaults:  # inherited by every measuring process
        os.environ.update(harness.KEEP_HEAP_ENV)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = _uptime()
    saved_models = {}
    for name in args.models:
        _progress(f"{name}: the SavedModel (built unless kept in the workdir)")
        saved_models[name] = models.ensure_saved_model(name, args.workdir, args.image_size)
    settings = harness.Settings(image_size=args.image_size, repeats=args.repeats,
                                budget=args.budget, warmup=args.warmup,
                                timeout=args.timeout,
                                jaxhub_cache=args.jaxhub_cache
                                or harness.jaxhub_cache(args.workdir), device=args.device)
    results: report.Results = {}
    with tempfile.TemporaryDirectory(prefix="compile-cache-") as scratch:
        for name, path in saved_models.items():
            results[name] = _measure_model(name, path, settings, pathlib.Path(scratch),
                                           frameworks)
            # Written after every model, so that a run cut short still leaves its figures.
            text = _document(results, args, started, load_before, _uptime())
            _write(args, text, results)
            _progress(f"{name}: done")
    print(text)


def _frameworks(device: str) -> list[str] | None:
    """The frameworks to measure on ``device``, or None where there is no GPU.

    On a GPU, TF and tf2jax only if TensorFlow sees the GPU too. Asked in subprocesses,
    so that this process imports neither JAX nor TensorFlow.
    """
    if device == "cpu":
        return list(report.COLUMNS)
    if _probe("import jax; print(jax.default_backend())") != "gpu":
        return None
    if _probe("import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
              ) in ("", "0"):
        return ["jaxhub", "native"]
    return list(report.COLUMNS)


def _probe(code: str) -> str:
    """The last line ``python -c code`` printed (empty if it failed)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env(), cwd=REPO_ROOT)
    lines = done.stdout.split()
    return lines[-1] if done.returncode == 0 and lines else ""


def _write(args: argparse.Namespace, text: str, results: report.Results) -> None:
    if args.output is not None:
        args.output.write_text(text)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(models.MODELS),
                        help=f"comma-separated, from: {', '.join(models.MODELS)}")
    parser.add_argument("--repeats", type=int, default=3,
                        help="at least this many timed calls per figure (default 3)")
    parser.add_argument("--budget", type=float, default=2.0,
                        help="then keep timing calls until they took this many seconds "
                             f"(at most {harness.MAX_CALLS} calls; default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--frameworks", default=",".join(report.COLUMNS),
                        help="comma-separated, from: " + ", ".join(report.COLUMNS)
                        + " (jaxhub is always measured: the ratios are against it)")
    parser.add_argument("--device", choices=harness.DEVICES, default="cpu",
                        help="where to measure (default cpu; gpu: see above)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 32x32 images, 1 warm-up, 2 timed calls, no RESULTS.md")
    parser.add_argument("--workdir", type=pathlib.Path,
                        default=harness.DEFAULT_WORKDIR)
    parser.add_argument("--output", type=pathlib.Path, default=None,
                        help=f"the markdown file to write (default {_RESULTS.name}, "
                             "none with --quick)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds before a measuring process is stopped (default 900)")
    parser.add_argument("--json", type=pathlib.Path, help="also write raw figures here")
    parser.add_argument("--jaxhub-cache", type=pathlib.Path,
                        help="reuse the modules converted into this jaxhub cache (default: "
                             "the workdir's cache for the current converter sources)")
    parser.add_argument("--glibc-defaults", action="store_true",
                        help="run every framework with glibc's default malloc settings "
                             "instead of keeping freed memory for reuse (the default: "
                             "MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_ARENA_MAX, as "
                             "jaxhub.enable_memory_reuse() sets them at run time)")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.frameworks = {"jaxhub", *(f.strip() for f in args.frameworks.split(","))}
    if args.frameworks - set(report.COLUMNS):
        parser.error(f"unknown frameworks {sorted(args.frameworks - set(report.COLUMNS))}; "
                     f"known: {list(report.COLUMNS)}")
    unknown = sorted(set(args.models) - set(models.MODELS))
    if unknown or not args.models:
        parser.error(f"unknown models {unknown}; known: {list(models.MODELS)}")
    if args.quick:
        args.image_size, args.repeats, args.warmup, args.budget = 32, 2, 1, 0.0
    elif args.output is None:
        args.output = _RESULTS
    args.argv = sys.argv[1:] if argv is None else argv
    return args


def _measure_model(name: str, path: pathlib.Path, settings: harness.Settings,
                   scratch: pathlib.Path, frameworks: list[str]
                   ) -> dict[str, dict[str, Any]]:
    """All measurements of one model, per framework: a run, then a second start."""
    measured: dict[str, dict[str, Any]] = {}
    prepared = _prepare(name, path, settings)
    for framework in frameworks:
        if framework == "native" and name not in native.BUILDERS:
            continue
        _progress(f"{name}: {framework}")
        cache = scratch / f"{name}-{framework}"  # empty: the run's start is a cold one
        runs = {"run": harness.measure("run", framework, name, path, settings, cache),
                "warm": harness.measure("start", framework, name, path, settings, cache)}
        if framework == "jaxhub":  # what the persistent cache is worth
            runs["nocache"] = harness.measure("start", framework, name, path, settings)
        measured[framework] = runs
    measured["jaxhub"]["prepare"] = prepared
    return measured


def _prepare(name: str, path: pathlib.Path, settings: harness.Settings) -> dict[str, Any]:
    """Converts the SavedModel into the jaxhub cache, unless it is there already.

    In a process of its own, so that no measurement pays for converting. What converting
    took is kept beside the converted modules and reported by later runs too.
    """
    record = settings.jaxhub_cache / f"converted-{path.name}.json"
    if record.is_file():
        return json.loads(record.read_text())
    _progress(f"{name}: converting for jaxhub")
    result = harness.measure("convert", "jaxhub", name, path, settings)
    result["converted_at"] = time.strftime("%Y-%m-%d %H:%M")
    if "error" not in result:
        record.write_text(json.dumps(result))
    return result


def _document(results: report.Results, args: argparse.Namespace,
              started: datetime.datetime, load_before: str, load_after: str) -> str:
    first_run = next((fw["run"] for m in results.values() for fw in m.values()
                      if "cpu_count" in fw.get("run", {})), {})
    tf_run = next((m["tf"]["run"] for m in results.values()
                   if "tensorflow" in m.get("tf", {}).get("run", {})), {})
    command = "python -m benchmarks " + shlex.join(args.argv)
    return "\n".join([
        "# Benchmark results",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC with `{command.strip()}`.",
        f"Load average (`uptime`) before: {load_before}; after: {load_after}.",
        f"Sources at git commit `{_git_commit()}`; converted modules from "
        f"`{args.jaxhub_cache or harness.jaxhub_cache(args.workdir)}`.",
        "",
        "## Machine and settings",
        "",
        f"- CPU: {_cpu_model()}; {first_run.get('cpu_count', os.cpu_count())} logical cores, "
        f"{first_run.get('affinity', '?')} usable; {platform.platform()}.",
        "- Versions: " + ", ".join(f"{p} {_version(p)}" for p in _PACKAGES)
        + f", Python {platform.python_version()}.",
        f"- Threads: TF intra-op {tf_run.get('tf_intra_op_threads', '?')}, inter-op "
        f"{tf_run.get('tf_inter_op_threads', '?')} (0 = TF's default: one per core); "
        f"oneDNN {'on' if tf_run.get('onednn') else 'off or unknown'} "
        f"(`TF_ENABLE_ONEDNN_OPTS`={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}). "
        f"JAX: XLA:CPU's default thread pool (one thread per core), `XLA_FLAGS`="
        f"`{os.environ.get('XLA_FLAGS', '')}`.",
        f"- Device: {args.device} (JAX: {first_run.get('jax_devices', '?')}).",
        f"- Memory allocator (every framework): {_allocator_env()}.",
        f"- Image models at {args.image_size}x{args.image_size}x3; batch 1 for latency, "
        f"{harness.BATCH} for throughput and fine-tuning. Medians of at least "
        f"{args.repeats} timed calls, more until they took {args.budget:g} s (at most "
        f"{harness.MAX_CALLS}), after {args.warmup} "
        "warm-up calls; each framework and measurement in its own process.",
        "- jaxhub: `jaxhub.load(saved_model)` (converted once beforehand and read from the "
        "jaxhub cache), `jax.jit(module.apply)`. TF: `tf.saved_model.load`, the "
        "`serving_default` signature; fine-tuning in `tf.function(jit_compile=False)`. "
        "tf2jax: `tf2jax.convert` of the same signature, `jax.jit`. native Flax: the same "
        "architecture written in Flax nnx (`benchmarks/native.py`), the Keras weights "
        "copied in, the same JAX code as jaxhub. Fine-tuning: one SGD "
        "step on a mean squared loss w.r.t. the trainable params (inference-mode batch norm); "
        "JAX steps donate the params, TF's `assign_sub` updates them in place.",
        "- Cold start: from just before the process is spawned to the first output at "
        "batch 1, with an empty JAX compilation cache directory (files are in the OS page "
        "cache). Warm start: a second such process; for JAX it reuses that directory "
        "(`jax_compilation_cache_dir`, `jax_persistent_cache_min_compile_time_secs=0`). TF "
        "has no such cache. Peak memory: `ru_maxrss` of the measuring process.",
        "",
        "## jaxhub against TensorFlow (TF / jaxhub; >= 1.0 means jaxhub is at least as "
        "good)",
        "",
        report.summary_table(results),
        "",
        "## jaxhub against the same model written in Flax nnx with the same weights "
        "(native / jaxhub; >= 0.95 is within 5 %)",
        "",
        report.summary_table(results, "native"),
        "",
        "## All figures",
        "",
        report.details_table(results),
        "",
        "## Start-up of jaxhub modules and JAX's persistent compilation cache",
        "",
        report.start_table(results),
        "",
        "Where jaxhub's time goes, op by op and against TF: `benchmarks/PROFILE.md` "
        "(`python -m benchmarks.profile MODEL`).",
        "",
    ])


def _allocator_env() -> str:
    settings = {k: v for k, v in sorted(os.environ.items())
                if k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    if not settings:
        return "glibc malloc with default settings"
    return "glibc malloc with " + ", ".join(f"`{k}={v}`" for k, v in settings.items())


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=pathlib.Path(__file__).parent).stdout.strip()
    except OSError:
        return "unknown"


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def _version(package: str) -> str:
    if package == "jaxhub":  # run from the repository, maybe not installed
        from jaxhub._src.version import __version__
        return __version__
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
