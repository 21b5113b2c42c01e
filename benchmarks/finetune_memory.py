"""``python -m benchmarks.finetune_memory MODEL``: peak memory of fine-tuning, step variants.

Each variant runs in a process of its own (peak RSS is per process): it loads the
benchmark model's SavedModel, runs a few fine-tune steps at batch 32 and reports the
median step time and ``ru_maxrss`` (no inference calls before, so the figure is the
fine-tuning's own; JAX steps are compiled ahead, and the peak once compiled is shown
apart). Variants:

* ``tf``: the benchmark's TF step (``tf.GradientTape``, ``assign_sub``);
* ``jaxhub``: the benchmark's JAX step (SGD, params donated to ``jax.jit``);
* ``jaxhub-keep``: the same without donation (the params are copied on every step);
* ``jaxhub-remat-dots`` / ``jaxhub-remat-none``: the converted function wrapped in
  ``jax.checkpoint`` with the ``dots_with_no_batch_dims_saveable`` / ``nothing_saveable``
  policy (residuals recomputed in the backward pass);
* ``jaxhub-adam`` / ``jaxhub-adam-keep``: an optax Adam step as a user would write it,
  params and optimizer state donated, or not;
* ``native``: the Flax nnx twin (:mod:`benchmarks.native`) with the benchmark's step.

Usage::

    python -m benchmarks.finetune_memory resnet50 [--image-size 224] [--steps 3]
        [--variants tf,jaxhub,jaxhub-keep]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np

from benchmarks import harness
from benchmarks import models
from benchmarks.processes import REPO_ROOT, child_env

_KEEP_ALIVE: list[Any] = []
_COMPILE_PEAK: list[float] = []  # peak RSS (MiB) once the JAX step is compiled
VARIANTS = ("tf", "jaxhub", "jaxhub-keep", "jaxhub-remat-dots", "jaxhub-remat-none",
            "jaxhub-adam", "jaxhub-adam-keep", "native")


def _jax_step(apply: Callable, params: Any, mask: Any, variant: str
              ) -> Callable[[np.ndarray, np.ndarray], Callable[[], float]]:
    """``make_step(x, y)`` for a JAX variant (see the module docstring)."""
    import jax
    import jax.numpy as jnp
    import optax
    if "remat" in variant:
        policy = (jax.checkpoint_policies.dots_with_no_batch_dims_saveable
                  if variant.endswith("dots") else jax.checkpoint_policies.nothing_saveable)
        apply = jax.checkpoint(apply, policy=policy)

    def loss(p, x, y):
        return jnp.mean(jnp.square(apply(p, x) - y))

    donate = () if variant.endswith("keep") else (0, 1)
    if "adam" in variant:
        optimizer = optax.masked(optax.adam(harness.LEARNING_RATE), mask)

        @functools.partial(jax.jit, donate_argnums=donate)
        def step(p, state, x, y):
            value, grads = jax.value_and_grad(loss)(p, x, y)
            updates, state = optimizer.update(grads, state, p)
            return optax.apply_updates(p, updates), state, value
    else:
        optimizer = None

        @functools.partial(jax.jit, donate_argnums=donate[:1])
        def step(p, state, x, y):
            value, grads = jax.value_and_grad(loss)(p, x, y)
            return jax.tree.map(lambda a, g, t: a - harness.LEARNING_RATE * g if t else a,
                                p, grads, mask), state, value

    def make_step(x, y):
        p = jax.tree.map(jnp.copy, params)
        holder = {"p": p, "s": optimizer.init(p) if optimizer else None}
        x, y = jax.device_put(x), jax.device_put(y)
        # Compiled ahead, so that the peak of compiling is told apart from the steps'.
        compiled = step.lower(holder["p"], holder["s"], x, y).compile()
        _COMPILE_PEAK.append(harness._peak_rss_mib())

        def one():
            holder["p"], holder["s"], value = compiled(holder["p"], holder["s"], x, y)
            return float(value)
        return one

    return make_step


def _make_step(variant: str, model: str, saved_model, jaxhub_cache):
    info = models.build_info(saved_model)
    if variant in ("tf", "native"):
        runner = harness._LOADERS[variant](saved_model, info["input"], None)
        _KEEP_ALIVE.append(runner)  # TF's variables live as long as the loaded object
        return runner.make_step
    import jaxhub
    module = jaxhub.load(saved_model, cache_dir=jaxhub_cache)

    def apply(p, x):
        return module.apply(p, x, signature="serving_default")
    return _jax_step(apply, module.params, module.trainable_mask, variant)


def _child(args: argparse.Namespace) -> None:
    import pathlib
    args.saved_model, args.jaxhub_cache = (pathlib.Path(args.saved_model),
                                           pathlib.Path(args.jaxhub_cache))
    make_step = _make_step(args.child, args.model, args.saved_model, args.jaxhub_cache)
    x = models.example_input(args.model, harness.BATCH, args.image_size)
    out_shape = {"resnet50": (harness.BATCH, 1000)}.get(args.model)
    if out_shape is None:
        raise SystemExit(f"no output shape known for {args.model}")
    y = np.random.default_rng(2).standard_normal(out_shape).astype(np.float32)
    step = make_step(x, y)
    step()  # compiles
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print("MEMORY_RESULT " + json.dumps({
        "step_ms": 1e3 * statistics.median(times),
        "peak_rss_mib": harness._peak_rss_mib(),
        "compiled_rss_mib": _COMPILE_PEAK[0] if _COMPILE_PEAK else None}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=["resnet50"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--workdir", default=str(harness.DEFAULT_WORKDIR))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--saved-model", help=argparse.SUPPRESS)
    parser.add_argument("--jaxhub-cache", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    import pathlib
    workdir = pathlib.Path(args.workdir)
    saved_model = models.ensure_saved_model(args.model, workdir, args.image_size)
    cache = harness.jaxhub_cache(workdir)
    env = {**child_env(), **harness.KEEP_HEAP_ENV, **harness.device_env("cpu")}
    print(f"{args.model} fine-tuning at batch {harness.BATCH}, {args.image_size}px, median "
          f"of {args.steps} steps; load before: {os.getloadavg()[0]:.1f}\n")
    print("| variant | step (ms) | peak RSS (MiB) | of which once compiled (MiB) |\n"
          "|---|---:|---:|---:|")
    for variant in args.variants.split(","):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.finetune_memory", args.model, "--child",
             variant, "--saved-model", str(saved_model), "--jaxhub-cache", str(cache),
             "--image-size", str(args.image_size), "--steps", str(args.steps)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        found = [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
                 if line.startswith("MEMORY_RESULT ")]
        if not found:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            print(f"| {variant} | failed: {tail} | |", flush=True)
            continue
        compiled = found[0]["compiled_rss_mib"]
        print(f"| {variant} | {found[0]['step_ms']:.0f} | {found[0]['peak_rss_mib']:,.0f} | "
              + (f"{compiled:,.0f} |" if compiled else "– |"), flush=True)


if __name__ == "__main__":
    main()
