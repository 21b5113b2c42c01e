"""``python -m benchmarks.real_models_bench``: shipped models, jaxhub against TensorFlow.

The models of :mod:`benchmarks.real_models` (trained weights from packages of the package
index), each saved as a SavedModel and measured in a fresh process per framework, on its
``serving_default`` signature (inputs from :func:`benchmarks.real_models.example_inputs`):

* conversion: ``jaxhub.load`` into an empty jaxhub cache (for TF: ``tf.saved_model.load``),
  imports excluded;
* first call at batch 1 (for jaxhub: compiling ``jax.jit(module.apply)`` included);
* latency at batch 1 and throughput at ``--batch``, each the median of timed calls after
  warm-up calls (see :func:`benchmarks.harness._timed`);
* one fine-tune step at ``--batch``: SGD on the mean squared outputs' error w.r.t. the
  trainable params (TF: ``tf.GradientTape`` in a ``tf.function``; jaxhub: a jitted
  ``value_and_grad``, params donated).

Each process reports after every phase, so a crash or time-out keeps what came before
(TF's gradient of ``fer`` aborts with oneDNN on: its fine-tune column says so).

The models not shipped as Keras models (basic_pitch, musicnn, musicnn_vgg) are compared
with equivalent Keras models, first jitted call and gradient, by
``python -m benchmarks.keras_equivalents``.

Usage:
    python -m benchmarks.real_models_bench [--models fer,deepcut] [--batch 32]
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

from benchmarks import harness
from benchmarks import real_models
from benchmarks.processes import REPO_ROOT, child_env

FRAMEWORKS = ("tf", "jaxhub")
DEFAULT_WORKDIR = pathlib.Path(tempfile.gettempdir()) / "jaxhub-real-models"


# -- the measuring process ------------------------------------------------------------------


def _tf_runner(saved_model: pathlib.Path):
    """``(infer(inputs) -> outputs, make_step(inputs, targets) -> step, owner)`` for TF."""
    import tensorflow as tf
    loaded = tf.saved_model.load(str(saved_model))  # owns the variables: keep it alive
    signature = loaded.signatures["serving_default"]
    variables = signature.trainable_variables

    def infer(inputs):
        return {k: v.numpy() for k, v in signature(**inputs).items()}

    @tf.function(jit_compile=False)
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            outputs = signature(**inputs)
            loss = tf.add_n([tf.reduce_mean(tf.square(outputs[k] - targets[k]))
                             for k in targets])
        for variable, grad in zip(variables, tape.gradient(loss, variables)):
            if isinstance(grad, tf.IndexedSlices):  # embeddings: only the looked-up rows
                variable.scatter_sub(tf.IndexedSlices(harness.LEARNING_RATE * grad.values,
                                                      grad.indices))
            elif grad is not None:
                variable.assign_sub(harness.LEARNING_RATE * grad)
        return loss

    def make_step(inputs, targets):
        inputs = {k: tf.constant(v) for k, v in inputs.items()}
        targets = {k: tf.constant(v) for k, v in targets.items()}
        return lambda: float(step(inputs, targets))

    return infer, make_step, loaded


def _jaxhub_runner(saved_model: pathlib.Path, cache: pathlib.Path):
    import jax
    import jax.numpy as jnp
    import jaxhub
    module = jaxhub.load(saved_model, cache_dir=cache)

    def apply(params, inputs):
        return real_models.serving_outputs(module, params, inputs)

    forward = jax.jit(apply)
    mask = module.trainable_mask

    def loss(params, inputs, targets):
        outputs = apply(params, inputs)
        return sum(jnp.mean(jnp.square(outputs[k] - targets[k])) for k in targets)

    @functools.partial(jax.jit, donate_argnums=0)
    def step(params, inputs, targets):
        value, grads = jax.value_and_grad(loss, allow_int=True)(params, inputs, targets)
        params = jax.tree.map(
            lambda p, g, t: p - harness.LEARNING_RATE * g if t and jnp.issubdtype(
                p.dtype, jnp.floating) else p, params, grads, mask)
        return params, value

    def infer(inputs):
        return {k: np.asarray(v) for k, v in forward(module.params, inputs).items()}

    def make_step(inputs, targets):
        state = {"params": jax.tree.map(jnp.copy, module.params)}

        def one_step():
            state["params"], value = step(state["params"], inputs, targets)
            return float(value)

        return one_step

    return infer, make_step, module


def _measure(args: argparse.Namespace) -> None:
    result: dict[str, Any] = {"framework": args.framework, "model": args.model}
    # A graph that fixes its batch size (ADTLib's) runs its own for the large batch.
    batch = real_models.MODELS[args.model].batch or args.batch
    x1 = real_models.example_inputs(args.model, 1)
    xb = real_models.example_inputs(args.model, batch)
    # Imported before the clock starts: the figures are loading and running, not imports.
    if args.framework == "tf":
        import tensorflow  # noqa: F401
    else:
        # jaxhub imports JAX, its converter and its module reader (Orbax) on first use:
        # imported here, as TF is.
        import jax.numpy  # noqa: F401
        import jaxhub  # noqa: F401
        import jaxhub._src.loading  # noqa: F401
        import jaxhub_tf.formats  # noqa: F401
        import jaxhub_tf.from_tf.saved_model  # noqa: F401
    started = time.perf_counter()
    if args.framework == "tf":
        runner = _guarded(result, "not loaded", lambda: _tf_runner(args.saved_model))
    else:
        runner = _guarded(result, "not converted", lambda: _jaxhub_runner(
            args.saved_model, args.jaxhub_cache))
    if runner is None:
        return harness._report(result)
    infer, make_step, _owner = runner
    result["load_s"] = time.perf_counter() - started
    harness._report(result)
    started = time.perf_counter()
    if _guarded(result, "failed at batch 1", lambda: infer(x1)) is None:
        return harness._report(result)
    result["first_call_s"] = time.perf_counter() - started
    harness._report(result)
    timing = _guarded(result, "failed at batch 1", lambda: harness._timed(
        lambda: infer(x1), args))
    if timing is None:
        return harness._report(result)
    result["latency_ms"] = timing[0]
    harness._report(result)
    timing = _guarded(result, f"failed at batch {batch}", lambda: harness._timed(
        lambda: infer(xb), args, first_compiles=True))
    if timing is None:
        return harness._report(result)
    result["throughput"] = batch / (timing[0] / 1e3)
    harness._report(result)
    rng = np.random.default_rng(2)
    targets = {k: rng.standard_normal(v.shape).astype(np.float32)
               for k, v in infer(xb).items()}
    # A TF crash here (an abort, not an exception) ends the process: the parent reports it.
    result["error"] = "fine-tune step crashed"
    harness._report(result)
    del result["error"]
    started = time.perf_counter()
    step = make_step(xb, targets)
    if _guarded(result, "fine-tune failed", step) is None:
        return harness._report(result)
    result["finetune_first_s"] = time.perf_counter() - started
    timing = _guarded(result, "fine-tune failed", lambda: harness._timed(step, args))
    if timing is not None:
        result["finetune_ms"] = timing[0]
    harness._report(result)


def _guarded(result: dict[str, Any], what: str, fn: Callable[[], Any]) -> Any:
    return harness._guarded(result, what, fn)


# -- the driver -----------------------------------------------------------------------------


def measure(framework: str, name: str, saved_model: pathlib.Path,
            args: argparse.Namespace) -> dict[str, Any]:
    """One framework's figures for one model, from a fresh process."""
    cache = pathlib.Path(tempfile.mkdtemp(dir=args.workdir, prefix="jaxhub-cache-"))
    command = [sys.executable, "-m", "benchmarks.real_models_bench", "--measure", framework,
               name, str(saved_model), "--batch", str(args.batch), "--repeats",
               str(args.repeats), "--budget", str(args.budget), "--warmup", str(args.warmup),
               "--jaxhub-cache", str(cache)]
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, env=child_env(), capture_output=True,
                              text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as e:
        result = harness._last_result(e.stdout) or {}
        result["error"] = f"timed out after {args.timeout:.0f} s"
        return result
    finally:
        shutil.rmtree(cache, ignore_errors=True)  # converted again by every measurement
    result = harness._last_result(done.stdout) or {}
    if done.returncode:
        result["error"] = (f"{result.get('error', 'crashed')} (exit {done.returncode}): "
                           f"{harness._last_line(done.stderr)[:120]}")
    return result


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def _cell(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "-"


def table(results: dict[str, dict[str, dict[str, Any]]], batch: int) -> str:
    """The markdown table of :func:`measure` results, by model then framework."""
    lines = [
        f"| model | domain | jaxhub convert s | TF load s | first call s (jaxhub / TF) "
        f"| latency b1 ms (jaxhub / TF) | TF / jaxhub b1 | throughput b{batch} /s "
        f"(jaxhub / TF) | jaxhub / TF b{batch} | fine-tune b{batch} ms (jaxhub / TF) "
        f"| TF / jaxhub fine-tune |",
        "| --- " * 11 + "|"]
    errors = []
    for name, by_framework in results.items():
        j, t = by_framework.get("jaxhub", {}), by_framework.get("tf", {})
        lines.append(
            f"| {name} | {real_models.MODELS[name].domain} | {_cell(j.get('load_s'), '.1f')} "
            f"| {_cell(t.get('load_s'), '.1f')} "
            f"| {_cell(j.get('first_call_s'), '.2f')} / {_cell(t.get('first_call_s'), '.2f')} "
            f"| {_cell(j.get('latency_ms'), '.2f')} / {_cell(t.get('latency_ms'), '.2f')} "
            f"| {_ratio(t.get('latency_ms'), j.get('latency_ms'))} "
            f"| {_cell(j.get('throughput'), '.0f')} / {_cell(t.get('throughput'), '.0f')} "
            f"| {_ratio(j.get('throughput'), t.get('throughput'))} "
            f"| {_cell(j.get('finetune_ms'), '.1f')} / {_cell(t.get('finetune_ms'), '.1f')} "
            f"| {_ratio(t.get('finetune_ms'), j.get('finetune_ms'))} |")
        errors += [f"- {name}, {fw}: {r['error']}" for fw, r in by_framework.items()
                   if "error" in r]
    return "\n".join(lines + ([""] + errors if errors else []))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_models_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(real_models.MODELS),
                        help=f"comma-separated, from: {', '.join(real_models.MODELS)}")
    parser.add_argument("--batch", type=int, default=32, help="the large batch (default 32)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="at least this many timed calls per figure (default 3)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="then keep timing calls until they took this many seconds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds before a measuring process is stopped")
    parser.add_argument("--workdir", type=pathlib.Path, default=DEFAULT_WORKDIR,
                        help="SavedModels (kept between runs) and scratch caches")
    parser.add_argument("--output", type=pathlib.Path, help="also write the table here")
    parser.add_argument("--measure", nargs=3, metavar=("FRAMEWORK", "MODEL", "SAVED_MODEL"),
                        help=argparse.SUPPRESS)  # the measuring process's own arguments
    parser.add_argument("--jaxhub-cache", type=pathlib.Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(real_models.MODELS))
    if unknown or not args.models:
        parser.error(f"unknown models {unknown}; known: {list(real_models.MODELS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.measure:
        args.framework, args.model, saved = args.measure
        args.saved_model = pathlib.Path(saved)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return _measure(args)
    args.workdir.mkdir(parents=True, exist_ok=True)
    saved_models = real_models.ensure_saved_models(args.models, args.workdir)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name, path in saved_models.items():
        results[name] = {}
        for framework in FRAMEWORKS:
            print(f"{name}: {framework}", file=sys.stderr, flush=True)
            results[name][framework] = measure(framework, name, path, args)
        text = table(results, args.batch)
        if args.output is not None:  # after every model: a run cut short keeps its rows
            args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
