"""``python -m benchmarks.conv_lowerings``: ResNet50's 3x3 convolutions, lowered every way.

A/B of what XLA:CPU offers for the 3x3 stride-1 ``SAME`` convolutions of ResNet50
(at 224x224: 56x56x64, 28x28x128, 14x14x256 and 7x7x512, channels in = out) against
TensorFlow's oneDNN kernels, forward and gradient (w.r.t. input and kernel, as a
fine-tuning step needs them). Each variant runs in a process of its own, because
``XLA_FLAGS`` are read once when JAX starts its CPU backend:

* ``xla``: ``lax.conv_general_dilated`` in NHWC/HWIO (what the converter emits);
* ``xla-nchw``: the same in NCHW/OIHW, inputs already in that layout;
* ``winograd``: ``benchmarks.winograd.conv3x3``, F(2x2, 3x3) in JAX;
* ``xla+FLAG``: ``xla`` under one of XLA:CPU's oneDNN / XNNPACK / YNNPACK flags;
* ``tf``: ``tf.nn.conv2d`` in a ``tf.function`` (``tf.GradientTape`` for the gradient).

Prints a Markdown table of median milliseconds per shape and the total over the four
shapes. Processes run one after the other, so on a loaded machine list variants twice
(``--variants xla,tf,xla,tf``) and compare rounds. ``--alternate`` instead times the
JAX lowerings (no flags) in one process, call by call, and prints their ratios to
``xla``: the robust A/B where the load varies. Usage::

    python -m benchmarks.conv_lowerings [--batch 32] [--repeats 3] [--variants xla,tf]
    python -m benchmarks.conv_lowerings --alternate [--repeats 5]
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
from typing import Callable

import numpy as np

from benchmarks import harness
from benchmarks import winograd
from benchmarks.processes import REPO_ROOT, child_env

#: ResNet50's 3x3 stride-1 convs at 224x224: (spatial size, channels).
SHAPES = ((56, 64), (28, 128), (14, 256), (7, 512))

#: Variant name -> (lowering, XLA_FLAGS).
VARIANTS: dict[str, tuple[str, str]] = {
    "xla": ("nhwc", ""),
    "xla-nchw": ("nchw", ""),
    "winograd": ("winograd", ""),
    "xla+onednn-fusion": ("nhwc", "--xla_cpu_experimental_onednn_fusion_type="
                                  "individual_convolution,individual_dot"),
    "xla+onednn-custom-call": ("nhwc", "--xla_cpu_experimental_onednn_custom_call=true"),
    "xla+use-onednn": ("nhwc", "--xla_cpu_use_onednn=true"),
    "xla+xnnpack": ("nhwc", "--xla_cpu_use_xnnpack=true"),
    "xla+xnn-fusion": ("nhwc", "--xla_cpu_experimental_xnn_fusion_type="
                               "individual_convolution"),
    "xla-ynn-off": ("nhwc", "--xla_cpu_experimental_ynn_fusion_type="),
    "winograd-ynn-off": ("winograd", "--xla_cpu_experimental_ynn_fusion_type="),
    "tf": ("tf", ""),
}

def _jax_fns(lowering: str) -> tuple[Callable, Callable]:
    """``(conv(x, k), layout(x, k))`` for a JAX lowering."""
    import jax
    if lowering == "winograd":
        return winograd.conv3x3, lambda x, k: (x, k)
    if lowering == "nchw":
        def conv(x, k):
            return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return conv, lambda x, k: (x.transpose(0, 3, 1, 2), k.transpose(3, 2, 0, 1))

    def conv(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return conv, lambda x, k: (x, k)


def _median_ms(fn: Callable, repeats: int) -> float:
    fn()  # compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _measure_jax(lowering: str, batch: int, repeats: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    conv, layout = _jax_fns(lowering)
    reference = jax.jit(_jax_fns("nhwc")[0])
    out: dict[str, float] = {}
    for size, channels in SHAPES:
        x, k = _operands(batch, size, channels)
        ct = jnp.asarray(np.random.default_rng(2).standard_normal(
            reference(x, k).shape).astype(np.float32))
        if lowering == "winograd":  # the same values as XLA's convolution
            np.testing.assert_allclose(np.asarray(jax.jit(conv)(x, k)),
                                       np.asarray(reference(x, k)), rtol=1e-3, atol=2e-3)
        lx, lk = (jnp.asarray(a) for a in layout(x, k))
        lct = jnp.asarray(layout(ct, k)[0])
        forward = jax.jit(conv)
        # The cotangent is an argument: a constant one would be folded at compile time.
        grad = jax.jit(jax.grad(lambda a, b, t: jnp.sum(conv(a, b) * t), argnums=(0, 1)))
        out[f"{size}x{channels} fwd"] = _median_ms(
            lambda: jax.block_until_ready(forward(lx, lk)), repeats)
        out[f"{size}x{channels} grad"] = _median_ms(
            lambda: jax.block_until_ready(grad(lx, lk, lct)), repeats)
    return out


def _alternate(batch: int, repeats: int) -> None:
    """Prints NCHW's and Winograd's time over XLA's NHWC, calls alternating per shape."""
    import jaxhub
    jaxhub.enable_memory_reuse()  # freed memory kept, as python -m benchmarks
    import jax
    import jax.numpy as jnp
    lowerings = ("nhwc", "nchw", "winograd")
    print(f"| shape, batch {batch} | " + " | ".join(
        f"{name} {kind} (ms)" for kind in ("fwd", "grad") for name in lowerings)
        + " | nchw / nhwc fwd, grad | winograd / nhwc fwd, grad |")
    print("|---|" + "---:|" * (2 * len(lowerings) + 2))
    for size, channels in SHAPES:
        x, k = _operands(batch, size, channels)
        ct = np.random.default_rng(2).standard_normal(x.shape[:3] + (channels,)).astype(
            np.float32)
        fns = {}
        for name in lowerings:
            conv, layout = _jax_fns(name)
            lx, lk = (jnp.asarray(a) for a in layout(x, k))
            lct = jnp.asarray(layout(ct, k)[0])
            forward = jax.jit(conv)
            grad = jax.jit(jax.grad(lambda a, b, t, c=conv: jnp.sum(c(a, b) * t),
                                    argnums=(0, 1)))
            fns[(name, "fwd")] = functools.partial(forward, lx, lk)
            fns[(name, "grad")] = functools.partial(grad, lx, lk, lct)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in fns}
        for fn in fns.values():
            jax.block_until_ready(fn())
        for _ in range(repeats):
            for key, fn in fns.items():
                start = time.perf_counter()
                jax.block_until_ready(fn())
                times[key].append(time.perf_counter() - start)
        ms = {key: 1e3 * statistics.median(t) for key, t in times.items()}
        cells = [f"{ms[(n, kind)]:.1f}" for kind in ("fwd", "grad") for n in lowerings]
        ratios = [f"{ms[(n, 'fwd')] / ms[('nhwc', 'fwd')]:.2f}, "
                  f"{ms[(n, 'grad')] / ms[('nhwc', 'grad')]:.2f}" for n in lowerings[1:]]
        print(f"| {size}x{size}x{channels} | " + " | ".join(cells + ratios) + " |",
              flush=True)


def _measure_tf(batch: int, repeats: int) -> dict[str, float]:
    import tensorflow as tf
    out: dict[str, float] = {}
    forward = tf.function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"), jit_compile=False)

    @tf.function(jit_compile=False)
    def grad(x, k, ct):
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            loss = tf.reduce_sum(tf.nn.conv2d(x, k, 1, "SAME") * ct)
        return tape.gradient(loss, [x, k])

    for size, channels in SHAPES:
        x, k = (tf.constant(a) for a in _operands(batch, size, channels))
        ct = tf.constant(np.random.default_rng(2).standard_normal(
            (batch, size, size, channels)).astype(np.float32))
        out[f"{size}x{channels} fwd"] = _median_ms(lambda: forward(x, k).numpy(), repeats)
        out[f"{size}x{channels} grad"] = _median_ms(
            lambda: [g.numpy() for g in grad(x, k, ct)], repeats)
    return out


def _operands(batch: int, size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, size, size, channels)).astype(np.float32)
    k = (rng.standard_normal((3, 3, channels, channels)) / (3 * channels ** .5)
         ).astype(np.float32)
    return x, k


def _child(variant: str, batch: int, repeats: int) -> None:
    lowering, _ = VARIANTS[variant]
    if lowering == "tf":
        result = _measure_tf(batch, repeats)
    else:
        result = _measure_jax(lowering, batch, repeats)
    print("CONV_RESULT " + json.dumps(result), flush=True)


def _spawn(variant: str, batch: int, repeats: int) -> dict[str, float] | str:
    env = child_env()
    flags = VARIANTS[variant][1]
    env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS", ""), flags]))
    done = subprocess.run([sys.executable, "-m", "benchmarks.conv_lowerings", "--child",
                           variant, "--batch", str(batch), "--repeats", str(repeats)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("CONV_RESULT "):
            return json.loads(line[len("CONV_RESULT "):])
    return (done.stderr.strip().splitlines() or ["no output"])[-1][:200]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--alternate", action="store_true",
                        help="JAX lowerings in this process, alternating call by call")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, args.batch, args.repeats)
    if args.alternate:
        return _alternate(args.batch, args.repeats)
    os.environ.update(harness.KEEP_HEAP_ENV)  # freed memory kept, as python -m benchmarks
    columns = [f"{s}x{c} {kind}" for s, c in SHAPES for kind in ("fwd", "grad")]
    print(f"3x3 stride-1 SAME convs of ResNet50, batch {args.batch}, median ms of "
          f"{args.repeats}; load before: {os.getloadavg()[0]:.1f}\n")
    print("| variant | " + " | ".join(columns) + " | total fwd | total grad |")
    print("|---|" + "---:|" * (len(columns) + 2))
    for variant in args.variants.split(","):
        result = _spawn(variant, args.batch, args.repeats)
        if isinstance(result, str):
            print(f"| {variant} | failed: {result} |", flush=True)
            continue
        fwd = sum(v for k, v in result.items() if k.endswith("fwd"))
        grad = sum(v for k, v in result.items() if k.endswith("grad"))
        print(f"| {variant} | " + " | ".join(f"{result[c]:.1f}" for c in columns)
              + f" | {fwd:.0f} | {grad:.0f} |", flush=True)


if __name__ == "__main__":
    main()
