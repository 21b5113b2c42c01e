"""``python -m benchmarks.converted_vs_native MODEL``: jaxhub against native Flax, one process.

Loads a benchmark model's SavedModel through jaxhub and its Flax nnx twin
(:mod:`benchmarks.native`) into the same process, checks that they agree, and times
them alternating call by call (so that a loaded machine slows both alike): inference at
batch 1 and 32 and the benchmark's SGD step at batch 32. Also counts the heavy ops in
both compiled gradients (convolutions, dots, transposes, copies, ...), which is where a
difference in speed comes from. Usage::

    python -m benchmarks.converted_vs_native resnet50 [--image-size 96] [--calls 5]
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import re
import statistics
import time

import numpy as np

from benchmarks import harness
from benchmarks import models
from benchmarks import native


def _hlo_counts(compiled_text: str) -> dict[str, int]:
    """How many of each heavy op the optimized HLO module has (fusion bodies included)."""
    counts: dict[str, int] = {}
    for op in ("convolution", "dot", "transpose", "copy", "pad", "reduce-window",
               "select-and-scatter", "reduce", "fusion", "custom-call"):
        counts[op] = len(re.findall(rf"= \S+ {op}\(", compiled_text))
    return counts


def compare(name: str, saved_model: pathlib.Path, jaxhub_cache: pathlib.Path,
            image_size: int, calls: int, winograd: bool = False
            ) -> dict[str, dict[str, float]]:
    """Median ms of jaxhub's and the native twin's calls, alternating in this process.

    Returns:
      ``{figure: {"jaxhub": ms, "native": ms}}`` for latency at batch 1, batch 32 and one
      SGD step at batch 32 (the benchmark's step, params donated), and the HLO op counts
      of the compiled step. With ``winograd`` (ResNet only), also ``"native+winograd"``:
      the native twin with its large 3x3 convs as Winograd F(2x2, 3x3).
    """
    import jax
    import jaxhub
    module = jaxhub.load(saved_model, cache_dir=jaxhub_cache)

    def converted(params, x):
        return module.apply(params, x, signature="serving_default")

    functions = {"jaxhub": (converted, module.params, module.trainable_mask),
                 "native": native.functional(native.load(name, saved_model))}
    if winograd:
        with np.load(saved_model / native.WEIGHTS) as data:
            functions["native+winograd"] = native.functional(
                native.resnet(dict(data), winograd=True))
    runners = {k: harness._jax_runner(*f, {}) for k, f in functions.items()}
    x1 = models.example_input(name, 1, image_size)
    xb = models.example_input(name, harness.BATCH, image_size)
    y = np.random.default_rng(2).standard_normal(
        runners["jaxhub"].infer(xb).shape).astype(np.float32)
    for k in runners:
        np.testing.assert_allclose(runners[k].infer(xb), runners["jaxhub"].infer(xb),
                                   rtol=2e-3, atol=2e-4)
    figures: dict[str, dict[str, float]] = {}
    for figure, fns in (
            ("batch 1 (ms)", {k: functools.partial(r.infer, x1) for k, r in runners.items()}),
            (f"batch {harness.BATCH} (ms)",
             {k: functools.partial(r.infer, xb) for k, r in runners.items()}),
            (f"SGD step, batch {harness.BATCH} (ms)",
             {k: r.make_step(xb, y) for k, r in runners.items()})):
        for fn in fns.values():
            fn(), fn()  # compile, warm up
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(calls):
            for k, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - start)
        figures[figure] = {k: 1e3 * statistics.median(t) for k, t in times.items()}
    for k, (fn, p, _) in functions.items():
        text = jax.jit(jax.grad(lambda p, x, y, fn=fn: ((fn(p, x) - y) ** 2).mean())).lower(
            p, xb, y).compile().as_text()
        for op, count in _hlo_counts(text).items():
            figures.setdefault(f"step HLO: {op}", {})[k] = count
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Converted against native Flax, alternating calls in one process.")
    parser.add_argument("model", choices=sorted(native.BUILDERS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--workdir", type=pathlib.Path, default=harness.DEFAULT_WORKDIR)
    parser.add_argument("--winograd", action="store_true",
                        help="resnet50: also the native twin with Winograd 3x3 convs")
    args = parser.parse_args(argv)
    saved_model = models.ensure_saved_model(args.model, args.workdir, args.image_size)
    figures = compare(args.model, saved_model, harness.jaxhub_cache(args.workdir),
                      args.image_size, args.calls, args.winograd)
    others = [k for k in next(iter(figures.values())) if k != "jaxhub"]
    print(f"{args.model}: jaxhub against native Flax, median of {args.calls} alternating "
          "calls\n\n| figure | jaxhub | " + " | ".join(others) + " | "
          + " | ".join(f"{k} / jaxhub" for k in others) + " |\n|---|"
          + "---:|" * (1 + 2 * len(others)))
    for figure, values in figures.items():
        ratios = [f"{values[k] / values['jaxhub']:.2f}" if values["jaxhub"] else "–"
                  for k in others]
        print(f"| {figure} | {values['jaxhub']:.4g} | "
              + " | ".join(f"{values[k]:.4g}" for k in others) + " | "
              + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
