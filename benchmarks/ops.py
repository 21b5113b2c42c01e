"""``python -m benchmarks.ops``: how fast the converter's op lowerings run on this CPU.

For each op, three timings of the same computation on the same inputs:

* **jaxhub**: a ``tf.function`` graph holding the op, converted by the graph interpreter
  and run under ``jax.jit`` (the lowering that converted models get);
* **lax**: the direct JAX spelling (``lax.conv_general_dilated``, ``jax.image.resize``, ...),
  what a straightforward converter would emit;
* **TF**: the ``tf.function`` itself.

Prints a Markdown table of median times with the ratios jaxhub/lax and jaxhub/TF (below
1 means jaxhub is faster). With ``--grad``, each spelling is timed computing the gradient
of ``sum(op(*inputs) * cotangent)`` with respect to every input instead (``jax.grad``;
``tf.GradientTape`` in a ``tf.function``), as a fine-tuning step needs it. Usage::

    python -m benchmarks.ops [--repeats 7] [--batch 8] [--only depthwise] [--grad]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from jaxhub_tf.from_tf.interpreter import run_graph  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Bench:
    """One op to time: TF and plain-JAX spellings of it, and its input shapes."""

    name: str
    tf_fn: Callable
    lax_fn: Callable
    shapes: Callable[[int], list[tuple]]


def _depthwise_lax(stride: int):
    def fn(x, k):
        c = x.shape[-1]
        return jax.lax.conv_general_dilated(
            x, k.reshape(k.shape[0], k.shape[1], 1, c), (stride, stride), "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
    return fn


def _conv_lax(stride: int):
    def fn(x, k):
        return jax.lax.conv_general_dilated(x, k, (stride, stride), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return fn


def _bn_lax(x, scale, offset, mean, var):
    return (x - mean) * jax.lax.rsqrt(var + 1e-3) * scale + offset


def _bn_tf(x, scale, offset, mean, var):
    return tf.raw_ops.FusedBatchNormV3(x=x, scale=scale, offset=offset, mean=mean,
                                       variance=var, epsilon=1e-3, is_training=False)[0]


def _avg_pool_lax(x):
    window, strides = (1, 3, 3, 1), (1, 1, 1, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, "SAME")
    # Counting from jnp.ones_like(x) makes XLA constant-fold a full-size reduce_window at
    # compile time (about a minute here); x * 0 + 1 keeps the count at run time.
    counts = jax.lax.reduce_window(x * 0 + 1, 0.0, jax.lax.add, window, strides, "SAME")
    return total / counts


def _depthwise_bench(size: int, channels: int, kernel: int, stride: int) -> Bench:
    return Bench(
        f"depthwise {kernel}x{kernel} s{stride} ({size}x{size}x{channels})",
        lambda x, k: tf.nn.depthwise_conv2d(x, k, [1, stride, stride, 1], "SAME"),
        _depthwise_lax(stride), lambda n: [(n, size, size, channels),
                                           (kernel, kernel, channels, 1)])


BENCHES = [
    _depthwise_bench(112, 96, 3, 1),
    _depthwise_bench(112, 96, 3, 2),
    _depthwise_bench(56, 144, 5, 1),
    _depthwise_bench(48, 96, 3, 1),
    _depthwise_bench(48, 96, 3, 2),
    Bench("conv 1x1 (112x112x96->96)", lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"),
          _conv_lax(1), lambda n: [(n, 112, 112, 96), (1, 1, 96, 96)]),
    Bench("conv 1x1 (28x28x32->192)", lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"),
          _conv_lax(1), lambda n: [(n, 28, 28, 32), (1, 1, 32, 192)]),
    Bench("conv 3x3 (56x56x64->64)", lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"),
          _conv_lax(1), lambda n: [(n, 56, 56, 64), (3, 3, 64, 64)]),
    Bench("batch norm, inference (112x112x96)", _bn_tf, _bn_lax,
          lambda n: [(n, 112, 112, 96)] + [(96,)] * 4),
    Bench("avg pool 3x3 s1 SAME (56x56x64)", lambda x: tf.nn.avg_pool2d(x, 3, 1, "SAME"),
          _avg_pool_lax, lambda n: [(n, 56, 56, 64)]),
    Bench("max pool 3x3 s2 SAME (112x112x64)", lambda x: tf.nn.max_pool2d(x, 3, 2, "SAME"),
          lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1),
                                          (1, 2, 2, 1), "SAME"),
          lambda n: [(n, 112, 112, 64)]),
    Bench("resize bilinear 56->112 (x32)",
          lambda x: tf.image.resize(x, (112, 112)),
          lambda x: jax.image.resize(x, (x.shape[0], 112, 112, x.shape[3]), "bilinear"),
          lambda n: [(n, 56, 56, 32)]),
]


def _inputs(shapes: list[tuple], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    # Keep variances positive for batch norm.
    return [np.abs(a) + 0.5 if a.ndim == 1 else a for a in arrays]


def _converted(bench: Bench, shapes: list[tuple]) -> Callable:
    specs = [tf.TensorSpec(s, tf.float32) for s in shapes]
    concrete = tf.function(bench.tf_fn).get_concrete_function(*specs)
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    return jax.jit(lambda *args: run({}, list(args))[0][0])


def _median_ms(fns: dict[str, Callable], repeats: int) -> dict[str, float]:
    """Median milliseconds of each function, runs interleaved so load hits all alike."""
    for fn in fns.values():
        fn()  # compile / warm up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def _jax_grad(fn: Callable, cotangent: np.ndarray, arity: int) -> Callable:
    """``jax.jit`` of the gradient of ``sum(fn(*args) * cotangent)`` w.r.t. every arg."""
    loss = lambda *args: jnp.sum(fn(*args) * cotangent)  # noqa: E731
    return jax.jit(jax.grad(loss, argnums=tuple(range(arity))))


def _tf_grad(fn: Callable, cotangent: np.ndarray) -> Callable:
    """The same gradient in TF: ``tf.GradientTape`` inside a ``tf.function``."""
    @tf.function(jit_compile=False)
    def grad(*args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            loss = tf.reduce_sum(fn(*args) * cotangent)
        return tape.gradient(loss, args)
    return grad


def run(bench: Bench, batch: int, repeats: int, grad: bool = False) -> dict[str, float]:
    """Median milliseconds of the three spellings; checks that they agree."""
    shapes = bench.shapes(batch)
    args = _inputs(shapes)
    jaxhub_fn = _converted(bench, shapes)
    lax_fn = jax.jit(bench.lax_fn)
    tf_fn = tf.function(bench.tf_fn, jit_compile=False)
    tf_args = [tf.constant(a) for a in args]
    if grad:
        cotangent = _inputs([tuple(tf_fn(*tf_args).shape)], seed=1)[0]
        jaxhub_fn = _jax_grad(jaxhub_fn, cotangent, len(shapes))
        lax_fn = _jax_grad(bench.lax_fn, cotangent, len(shapes))
        tf_fn = _tf_grad(bench.tf_fn, cotangent)
    expected = [t.numpy() for t in tf.nest.flatten(tf_fn(*tf_args))]
    for fn in (jaxhub_fn, lax_fn):
        for got, want in zip(jax.tree.leaves(fn(*args)), expected):
            np.testing.assert_allclose(np.asarray(got), want, rtol=2e-3, atol=2e-2)
    dev_args = [jnp.asarray(a) for a in args]
    return _median_ms({
        "jaxhub": lambda: jax.block_until_ready(jaxhub_fn(*dev_args)),
        "lax": lambda: jax.block_until_ready(lax_fn(*dev_args)),
        "tf": lambda: [t.numpy() for t in tf.nest.flatten(tf_fn(*tf_args))],
    }, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--only", default="", help="run benches whose name contains this")
    parser.add_argument("--grad", action="store_true",
                        help="time the gradient w.r.t. every input instead of the op")
    args = parser.parse_args(argv)
    what = "gradient w.r.t. all inputs" if args.grad else "forward"
    print(f"{what}, batch {args.batch}, median of {args.repeats} runs, {os.cpu_count()} CPUs, "
          f"jax {jax.__version__}, tensorflow {tf.__version__}\n")
    print("| op | jaxhub ms | lax ms | TF ms | jaxhub/lax | jaxhub/TF |")
    print("|---|---:|---:|---:|---:|---:|")
    for bench in BENCHES:
        if args.only not in bench.name:
            continue
        t = run(bench, args.batch, args.repeats, args.grad)
        print(f"| {bench.name} | {t['jaxhub']:.1f} | {t['lax']:.1f} | {t['tf']:.1f} | "
              f"{t['jaxhub'] / t['lax']:.2f} | {t['jaxhub'] / t['tf']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
