"""A jaxhub module exported to TensorFlow: export cost and run time in TF against JAX.

Builds two modules from plain JAX code (an MLP and a small CNN), exports each with
`jaxhub_tf.to_tf.export_saved_model`, and times, on the same inputs:

- jaxhub: `jax.jit(module.apply)` and a `jax.jit(jax.grad)` fine-tuning step;
- TF: the `hub.load`ed `__call__`, the same under `tf.function(jit_compile=True)`,
  `hub.KerasLayer` in a tf_keras model (`predict_on_batch`), and a `GradientTape` step.

Usage:
    python benchmarks/to_tf.py [--repeats 30]

Prints a markdown table per module; the ratio is TF time / jaxhub time (above 1: TF is
slower).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402
import tf_keras  # noqa: E402

import jaxhub  # noqa: E402
from jaxhub_tf.to_tf import export_saved_model  # noqa: E402


def _mlp():
    k = jax.random.split(jax.random.key(0), 3)
    params = {f"dense{i}": {"kernel": jax.random.normal(k[i], (n, m)) / np.sqrt(n),
                            "bias": jnp.zeros(m)}
              for i, (n, m) in enumerate([(256, 512), (512, 512), (512, 10)])}

    def fn(p, x):
        for i in range(3):
            x = x @ p[f"dense{i}"]["kernel"] + p[f"dense{i}"]["bias"]
            x = jax.nn.relu(x) if i < 2 else x
        return x

    return "MLP 256-512-512-10, batch 128", params, fn, (128, 256)


def _cnn():
    k = jax.random.split(jax.random.key(1), 3)
    params = {"conv1": jax.random.normal(k[0], (3, 3, 3, 16)) * 0.2,
              "conv2": jax.random.normal(k[1], (3, 3, 16, 32)) * 0.1,
              "head": jax.random.normal(k[2], (32, 10)) * 0.2}

    def fn(p, x):
        dims = ("NHWC", "HWIO", "NHWC")
        x = jax.nn.relu(jax.lax.conv_general_dilated(x, p["conv1"], (1, 1), "SAME",
                                                     dimension_numbers=dims))
        x = jax.nn.relu(jax.lax.conv_general_dilated(x, p["conv2"], (2, 2), "SAME",
                                                     dimension_numbers=dims))
        return jnp.mean(x, axis=(1, 2)) @ p["head"]

    return "CNN 2 convs on 32x32x3, batch 32", params, fn, (32, 32, 32, 3)


def _time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` in ms, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _bench(build, repeats: int, tmp: pathlib.Path) -> None:
    title, params, fn, shape = build()
    spec = jaxhub.TensorSpec([None, *shape[1:]], "float32")
    module = jaxhub.create_module(params, signatures={"default": (fn, spec)})
    start = time.perf_counter()
    path = export_saved_model(module, tmp / title.split()[0])
    export_s = time.perf_counter() - start
    size_kb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1024

    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    apply = jax.jit(module.apply)
    step = jax.jit(jax.grad(lambda p, x: jnp.sum(module.apply(p, x) ** 2)))
    obj = hub.load(str(path))
    xla = tf.function(lambda x: obj(x), jit_compile=True)
    keras = tf_keras.Sequential([tf_keras.Input(shape[1:]), hub.KerasLayer(str(path))])
    opt = tf_keras.optimizers.SGD(1e-3)

    @tf.function
    def tf_step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(obj(x) ** 2)
        grads = tape.gradient(loss, obj.trainable_variables)
        opt.apply_gradients(zip(grads, obj.trainable_variables))

    np.testing.assert_allclose(obj(x).numpy(), apply(module.params, x), rtol=1e-4, atol=1e-4)
    jax_ms = _time(lambda: apply(module.params, x).block_until_ready(), repeats)
    jax_step_ms = _time(lambda: jax.block_until_ready(step(module.params, x)), repeats)
    rows = [
        ("jaxhub: jax.jit(module.apply)", jax_ms, jax_ms),
        ("TF: hub.load(...)(x)", _time(lambda: obj(x).numpy(), repeats), jax_ms),
        ("TF: tf.function(jit_compile=True)", _time(lambda: xla(x).numpy(), repeats), jax_ms),
        ("TF: hub.KerasLayer predict_on_batch",
         _time(lambda: keras.predict_on_batch(x), repeats), jax_ms),
        ("jaxhub: jax.jit(jax.grad) step", jax_step_ms, jax_step_ms),
        ("TF: GradientTape + SGD step", _time(lambda: tf_step(x), repeats), jax_step_ms),
    ]
    print(f"\n### {title}\n\nexport: {export_s:.1f} s, SavedModel: {size_kb:.0f} KiB\n")
    print("| what | median ms | vs jaxhub |\n|---|---:|---:|")
    for name, ms, base in rows:
        print(f"| {name} | {ms:.2f} | {ms / base:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for build in (_mlp, _cnn):
            _bench(build, args.repeats, pathlib.Path(tmp))


if __name__ == "__main__":
    main()
