"""Timing one model in one framework, each measurement in a fresh subprocess.

The driver (``python -m benchmarks``) calls :func:`measure` once per (model, framework,
kind); it starts ``python -m benchmarks.harness`` and reads the last JSON line it printed
(one after every phase, so a process stopped at the time limit still reports). Three kinds:

* ``"start"``: from the parent's clock just before the process is spawned to the first
  output at batch 1 (interpreter start, imports, load, compile, run). With a JAX
  persistent compilation cache directory that an earlier process filled, this is the
  warm start.
* ``"run"``: a start (the cold one, when its compilation cache directory is empty), then
  steady state: latency at batch 1, throughput at batch 32 and one fine-tune step (SGD on
  a squared loss w.r.t. the trainable params) at batch 32, each the median of timed calls
  after warm-up calls (the first of which compiles), and peak memory (``ru_maxrss``).
* ``"convert"``: a start, then one gradient, before any measurement: it leaves the
  conversion with gradients in the jaxhub cache too.

The frameworks run the same SavedModel's ``serving_default`` signature:

* ``tf``: ``tf.saved_model.load``; inference calls the signature, fine-tuning runs in a
  ``tf.function(jit_compile=False)`` (TF's default kernels, oneDNN on x86).
* ``jaxhub``: ``jaxhub.load(saved_model)`` (converted once, then read from the jaxhub
  cache), ``jax.jit(module.apply)``, ``jax.jit(value_and_grad)`` for fine-tuning (params donated).
* ``tf2jax``: ``tf2jax.convert`` of the loaded signature, then the same JAX code.
* ``native``: the same architecture written in Flax nnx with the Keras weights
  (:mod:`benchmarks.native`), then the same JAX code: what converting costs.

``--device gpu`` runs on the GPU (every framework's default device where one is
visible); ``--device cpu`` hides GPUs from the measuring process.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

from benchmarks import models
from benchmarks.processes import REPO_ROOT, child_env

FRAMEWORKS = ("jaxhub", "tf", "tf2jax", "native")
DEVICES = ("cpu", "gpu")
#: The batch of throughput and fine-tune measurements.
BATCH = 32
#: The most timed calls per figure.
MAX_CALLS = 1000
#: The SGD step size: small, so that repeated steps stay finite.
LEARNING_RATE = 1e-4
#: Where SavedModels and converted modules are kept between runs.
DEFAULT_WORKDIR = pathlib.Path(tempfile.gettempdir()) / "jaxhub-benchmarks"
_RESULT_PREFIX = "BENCHMARK_RESULT "


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every measurement of one benchmark run shares.

    Attributes:
      image_size: height and width of image models' inputs.
      repeats: at least this many timed calls per figure.
      budget: beyond ``repeats``, keep timing calls (up to :data:`MAX_CALLS`) until they
        took this many seconds, so that fast calls get robust medians.
      warmup: untimed calls before timing (the first one compiles).
      jaxhub_cache: the jaxhub cache holding the converted modules.
      timeout: seconds before a measuring process is killed.
      device: ``"cpu"`` or ``"gpu"`` (see :func:`device_env`).
    """

    image_size: int
    repeats: int
    budget: float
    warmup: int
    jaxhub_cache: pathlib.Path
    timeout: float = 900.0
    device: str = "cpu"


def device_env(device: str) -> dict[str, str]:
    """Environment variables that put a measuring process on ``device``.

    On ``"cpu"`` GPUs are hidden from JAX and TF alike, so a machine with a GPU measures
    its CPU; on ``"gpu"`` nothing is hidden and each framework uses its default device,
    the GPU where its GPU build finds one.
    """
    if device == "cpu":
        return {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    return {}


# -- the driver's side ----------------------------------------------------------------------


def measure(kind: str, framework: str, model: str, saved_model: pathlib.Path,
            settings: Settings, compile_cache: pathlib.Path | None = None) -> dict[str, Any]:
    """Runs one measurement in a fresh Python process.

    Args:
      kind: ``"run"`` (start-up, steady state and memory), ``"start"`` (start-up only) or
        ``"convert"`` (start-up and one gradient, to fill the jaxhub cache).
      framework: one of :data:`FRAMEWORKS`.
      model: a key of :data:`benchmarks.models.MODELS`.
      saved_model: the model's SavedModel directory.
      settings: shared settings.
      compile_cache: JAX's persistent compilation cache directory, or None to run
        without one.

    Returns:
      The child's figures (see :func:`_run` and :func:`_start`), or ``{"error": ...}``
      with the first line of what went wrong.
    """
    command = [sys.executable, "-m", "benchmarks.harness", kind, framework, model,
               str(saved_model), "--image-size", str(settings.image_size),
               "--repeats", str(settings.repeats), "--budget", str(settings.budget),
               "--warmup", str(settings.warmup),
               "--jaxhub-cache", str(settings.jaxhub_cache), "--device", settings.device]
    if compile_cache is not None:
        command += ["--compile-cache", str(compile_cache)]
    env = {**child_env(), **device_env(settings.device)}
    command += ["--t0", repr(time.time())]  # the last thing before the process exists
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=settings.timeout)
    except subprocess.TimeoutExpired as e:
        # Keep what was measured before the limit: the child reports after every phase.
        result = _last_result(e.stdout) or {}
        result["error"] = f"timed out after {settings.timeout:.0f} s"
        return result
    result = _last_result(done.stdout)
    if result is None or (done.returncode and "error" not in result):
        result = result or {}
        result["error"] = f"crashed (exit {done.returncode}): {_last_line(done.stderr)}"
    return result


def _last_result(stdout: str | bytes | None) -> dict[str, Any] | None:
    if isinstance(stdout, bytes):  # TimeoutExpired keeps bytes even with text=True
        stdout = stdout.decode(errors="replace")
    for line in reversed((stdout or "").splitlines()):
        if line.startswith(_RESULT_PREFIX):
            return json.loads(line[len(_RESULT_PREFIX):])
    return None


def jaxhub_cache(workdir: pathlib.Path) -> pathlib.Path:
    """The jaxhub cache of converted modules in ``workdir``, one per converter version.

    Converted modules depend on the converter and core sources, which change more often
    than jaxhub's version number (the key of jaxhub's own conversion cache); a hash of
    those sources keeps a run from measuring a module an older converter made.
    """
    digest = hashlib.sha256()
    for package in ("jaxhub", "converters"):
        for file in sorted((REPO_ROOT / package).rglob("*.py")):
            digest.update(file.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
            digest.update(file.read_bytes())
    return workdir / f"jaxhub-cache-{digest.hexdigest()[:12]}"


#: glibc settings that keep freed memory in the heap for reuse. By default every buffer
#: over 32 MiB is a fresh ``mmap`` whose pages fault in on first touch, on every call;
#: XLA:CPU allocates its temporaries per call, TF's allocator reuses them. Set in every
#: measuring process's environment, so all frameworks run with the same allocator
#: (``jaxhub.enable_memory_reuse()`` does the same with ``mallopt`` at run time).
KEEP_HEAP_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 34),
                 "MALLOC_ARENA_MAX": "1"}


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


# -- the measuring process's side ------------------------------------------------------------


@dataclasses.dataclass
class _Runner:
    """One framework's view of a model: inference and a fine-tune step."""

    infer: Callable[[np.ndarray], np.ndarray]  # blocks until the output is ready
    make_step: Callable[[np.ndarray, np.ndarray], Callable[[], float]]
    info: dict[str, Any]
    owner: Any = None  # what must stay alive while the functions run (TF's variables)


def _load_tf(saved_model: pathlib.Path, input_name: str, _: Any) -> _Runner:
    import tensorflow as tf
    loaded = tf.saved_model.load(str(saved_model))  # owns the variables: keep it alive
    signature = loaded.signatures["serving_default"]
    variables = signature.trainable_variables

    def forward(x):
        return next(iter(signature(**{input_name: x}).values()))

    @tf.function(jit_compile=False)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(forward(x) - y))
        for variable, grad in zip(variables, tape.gradient(loss, variables)):
            if isinstance(grad, tf.IndexedSlices):  # embeddings: only the looked-up rows
                variable.scatter_sub(tf.IndexedSlices(LEARNING_RATE * grad.values,
                                                      grad.indices))
            else:
                variable.assign_sub(LEARNING_RATE * grad)
        return loss

    def make_step(x, y):
        x, y = tf.constant(x), tf.constant(y)
        return lambda: float(step(x, y))

    return _Runner(lambda x: forward(tf.constant(x)).numpy(), make_step,
                   _tf_info(tf), owner=loaded)


def _tf_info(tf) -> dict[str, Any]:
    from tensorflow.python.util import _pywrap_util_port
    return {"tensorflow": tf.__version__,
            "onednn": bool(_pywrap_util_port.IsMklEnabled())
            or os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0",
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}


def _load_jaxhub(saved_model: pathlib.Path, _: str, jaxhub_cache: pathlib.Path) -> _Runner:
    import jaxhub
    module = jaxhub.load(saved_model, cache_dir=jaxhub_cache)

    def apply(params, x):
        return module.apply(params, x, signature="serving_default")

    return _jax_runner(apply, module.params, module.trainable_mask,
                       {"jaxhub_params": module.num_params()})


def _load_tf2jax(saved_model: pathlib.Path, input_name: str, _: Any) -> _Runner:
    import jax
    import tensorflow as tf
    import tf2jax
    loaded = tf.saved_model.load(str(saved_model))  # owns the variables: keep it alive
    signature = loaded.signatures["serving_default"]
    spec = signature.structured_input_signature[1][input_name]
    function = tf.function(lambda x: next(iter(signature(**{input_name: x}).values())))
    converted, variables = tf2jax.convert(function, tf.TensorSpec(spec.shape, spec.dtype))
    params = {name: jax.numpy.asarray(value) for name, value in variables.items()}
    mask = {name: bool(value.trainable) for name, value in variables.items()}

    def apply(params, x):
        outputs, _ = converted(params, x)
        return outputs

    runner = _jax_runner(apply, params, mask, {"tf2jax": tf2jax.__version__})
    runner.owner = loaded
    return runner


def _load_native(saved_model: pathlib.Path, _: str, __: Any) -> _Runner:
    from benchmarks import native
    model = native.load(models.build_info(saved_model)["model"], saved_model)
    apply, params, mask = native.functional(model)
    return _jax_runner(apply, params, mask, {"flax": _version("flax")})


def _version(package: str) -> str:
    from importlib import metadata
    return metadata.version(package)


def _jax_runner(apply: Callable, params: Any, mask: Any, info: dict[str, Any]) -> _Runner:
    """Inference and SGD steps of ``apply(params, x)``, compiled with ``jax.jit``."""
    import jax
    import jax.numpy as jnp
    forward = jax.jit(apply)

    def loss(params, x, y):
        return jnp.mean(jnp.square(apply(params, x) - y))

    def update(params, grads):
        return jax.tree.map(lambda p, g, t: p - LEARNING_RATE * g if t else p,
                            params, grads, mask)

    # Donated params, as in a training loop: XLA:CPU updates them in place.
    @functools.partial(jax.jit, donate_argnums=0)
    def step(params, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return update(params, grads), value

    def make_step(x, y):
        # A copy, so that steps never change the params inference runs with.
        state = {"params": jax.tree.map(jnp.copy, params)}
        x, y = jax.device_put(x), jax.device_put(y)

        def one_step():
            state["params"], value = step(state["params"], x, y)
            return float(value)

        return one_step

    info = {**info, "jax": jax.__version__, "jax_devices": str(jax.devices()),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}
    return _Runner(lambda x: np.asarray(forward(params, x)), make_step, info)


_LOADERS = {"tf": _load_tf, "jaxhub": _load_jaxhub, "tf2jax": _load_tf2jax,
            "native": _load_native}


def _run(args: argparse.Namespace) -> dict[str, Any]:
    """Start-up to the first output, then steady-state figures and peak memory.

    Returns:
      ``start_s`` (spawn to first output; see :func:`_start`), ``latency_ms`` at batch 1,
      ``throughput`` (examples/s) at batch 32, ``finetune_ms`` per SGD step at batch 32,
      peak RSS at first output, after inference and after fine-tuning, and the
      framework's versions and threads; ``error`` for the first thing that failed.
    """
    result, runner = _start(args)
    if runner is None:
        return result
    result.update(runner.info, cpu_count=os.cpu_count(),
                  affinity=len(os.sched_getaffinity(0)))
    _report(result)
    x1 = models.example_input(args.model, 1, args.image_size)
    xb = models.example_input(args.model, BATCH, args.image_size)
    timing = _guarded(result, "failed at batch 1", lambda: _timed(
        lambda: runner.infer(x1), args))
    if timing is None:
        return result
    result["latency_ms"], result["latency_n"] = timing
    _report(result)
    timing = _guarded(result, "failed at batch 32", lambda: _timed(
        lambda: runner.infer(xb), args, first_compiles=True))
    if timing is None:
        return result
    result["throughput"] = BATCH / (timing[0] / 1e3)
    result["throughput_n"] = timing[1]
    result["rss_inference_mib"] = _peak_rss_mib()
    _report(result)
    y = np.random.default_rng(2).standard_normal(runner.infer(xb).shape).astype(np.float32)
    timing = _guarded(result, "fine-tune failed", lambda: _timed(
        runner.make_step(xb, y), args, first_compiles=True))
    if timing is not None:
        result["finetune_ms"], result["finetune_n"] = timing
    result["rss_finetune_mib"] = _peak_rss_mib()
    return result


def _start(args: argparse.Namespace) -> tuple[dict[str, Any], _Runner | None]:
    """Imports, loads and runs the model once at batch 1, timing each part.

    Returns:
      ``({"start_s", "load_s", "first_call_s", "rss_start_mib"}, runner)``: seconds from
      the parent's clock just before spawning this process to the first output, of
      which loading and the first call (compiling included); or ``({"error"}, None)``.
    """
    if args.compile_cache is not None:
        import jax
        jax.config.update("jax_compilation_cache_dir", str(args.compile_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    result: dict[str, Any] = {}
    info = models.build_info(args.saved_model)
    x1 = models.example_input(args.model, 1, args.image_size)
    started = time.time()
    runner = _guarded(result, "not converted", lambda: _LOADERS[args.framework](
        args.saved_model, info["input"], args.jaxhub_cache))
    if runner is None:
        return result, None
    if args.device == "gpu" and "jax_devices" in runner.info and (
            "cpu" in runner.info["jax_devices"].lower()):
        result["error"] = f"JAX runs on {runner.info['jax_devices']}, not on a GPU"
        return result, None
    loaded = time.time()
    if _guarded(result, "failed at batch 1", lambda: runner.infer(x1)) is None:
        return result, None
    first = time.time()
    result.update(start_s=first - args.t0, load_s=loaded - started,
                  first_call_s=first - loaded, rss_start_mib=_peak_rss_mib())
    return result, runner


def _convert(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`_start`, then one fine-tune step at batch 1.

    A module converted from a TF format is cached without gradients; its first gradient
    caches the conversion with them. Taking one here leaves both in the cache, as after
    a user's first fine-tuning run, so that no measurement pays for converting.
    """
    result, runner = _start(args)
    if runner is not None:
        x1 = models.example_input(args.model, 1, args.image_size)
        y = np.zeros(runner.infer(x1).shape, np.float32)
        _guarded(result, "fine-tune failed", lambda: runner.make_step(x1, y)())
    return result


def _guarded(result: dict[str, Any], what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, or None with ``result["error"]`` set to its first line."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 -- the table shows any failure as text
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        result["error"] = f"{what}: {type(e).__name__}: {first_line}"
        return None


def _timed(fn: Callable[[], Any], args: argparse.Namespace, first_compiles: bool = False
           ) -> tuple[float, int]:
    """``(median ms, timed calls)`` of ``fn`` after ``args.warmup`` untimed calls.

    Times at least ``args.repeats`` calls, then more while they took less than
    ``args.budget`` seconds together (at most :data:`MAX_CALLS`).
    """
    for _ in range(args.warmup if first_compiles else args.warmup - 1):
        fn()
    times: list[float] = []
    while len(times) < args.repeats or (sum(times) < args.budget
                                        and len(times) < MAX_CALLS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, len(times)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description="One benchmark measurement (internal).")
    parser.add_argument("kind", choices=["run", "start", "convert"])
    parser.add_argument("framework", choices=FRAMEWORKS)
    parser.add_argument("model", choices=sorted(models.MODELS))
    parser.add_argument("saved_model", type=pathlib.Path)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=2.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--jaxhub-cache", type=pathlib.Path, required=True)
    parser.add_argument("--compile-cache", type=pathlib.Path)
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--t0", type=float, required=True)
    args = parser.parse_args()
    kinds = {"run": _run, "start": lambda a: _start(a)[0], "convert": _convert}
    _report(kinds[args.kind](args))


def _report(result: dict[str, Any]) -> None:
    """Prints the figures so far; the driver reads the last such line."""
    print(_RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
