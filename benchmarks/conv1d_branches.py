"""TF / jaxhub speed of a text CNN of parallel Conv1D branches, at batch 1 and a large batch.

The model has the shape of a Thai word segmenter shipped on the package index (a
character CNN): two id inputs of length 21, an embedding, twelve Conv1D branches with
windows 1-12, each followed by a TimeDistributed Dense, a ZeroPadding1D back to length 21,
their Maximum, a second embedding, a concatenation, batch norms and two Dense layers.
Weights are random (seeded): speed does not depend on them.

Usage::

    python -m benchmarks.conv1d_branches [--batches 1 256] [--calls 50]

It exports the model as a SavedModel, loads it with TensorFlow and converts it with
jaxhub in the same process, then times alternating calls of both (median of ``--calls``
after warm-up) and prints, per batch size, the milliseconds and TF / jaxhub (above 1:
jaxhub is faster).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

import numpy as np

LENGTH, CHARS, TYPES = 21, 178, 12


def build_model():
    """The Keras model (random weights, seeded)."""
    import tensorflow as tf
    from tensorflow.keras import layers

    tf.keras.utils.set_random_seed(0)

    def branch(x, filters, window):
        y = layers.Conv1D(filters, window, padding="valid", activation="relu")(x)
        y = layers.TimeDistributed(layers.Dense(5))(y)
        return layers.ZeroPadding1D((0, window - 1))(y)

    chars = layers.Input((LENGTH,))
    types = layers.Input((LENGTH,))
    a = layers.Embedding(CHARS, 32)(chars)
    a = layers.SpatialDropout1D(0.15)(a)
    a = layers.BatchNormalization()(a)
    widths = [200] * 8 + [150] * 3 + [100]
    merged = layers.Maximum()([branch(a, f, w) for w, f in enumerate(widths, start=1)])
    b = layers.SpatialDropout1D(0.15)(layers.Embedding(TYPES, 12)(types))
    x = layers.BatchNormalization()(layers.Concatenate()([a, merged, b]))
    x = layers.Dense(100, activation="relu")(layers.Flatten()(x))
    return tf.keras.Model([chars, types], layers.Dense(1, activation="sigmoid")(x))


def _inputs(batch: int) -> list[np.ndarray]:
    rng = np.random.default_rng(batch)
    return [rng.integers(0, CHARS, (batch, LENGTH)).astype(np.float32),
            rng.integers(0, TYPES, (batch, LENGTH)).astype(np.float32)]


def _median_ms(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()

    import jax
    import tensorflow as tf
    from jaxhub_tf.from_tf import saved_model

    path = pathlib.Path(tempfile.mkdtemp()) / "text_cnn"
    build_model().export(str(path), verbose=False)
    served = tf.saved_model.load(str(path)).signatures["serving_default"]
    start = time.perf_counter()
    module = saved_model.load_saved_model(path)
    print(f"conversion: {time.perf_counter() - start:.1f} s")
    keys = sorted(module.signatures["serving_default"].inputs)
    apply = jax.jit(lambda params, inputs: module.apply(params, inputs,
                                                         signature="serving_default"))
    tf_keys = sorted(served.structured_input_signature[1])
    for batch in args.batches:
        inputs = _inputs(batch)
        tf_inputs = {k: tf.constant(v) for k, v in zip(tf_keys, inputs)}
        jax_inputs = {k: jax.numpy.asarray(v) for k, v in zip(keys, inputs)}
        expected = next(iter(served(**tf_inputs).values())).numpy()
        got = jax.tree.leaves(apply(module.params, jax_inputs))[0]
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-3, atol=1e-4)
        tf_ms = jax_ms = 0.0
        for _ in range(3):  # alternate, so that both see the same machine load
            tf_ms = _median_ms(lambda: [v.numpy() for v in served(**tf_inputs).values()],
                               args.calls)
            jax_ms = _median_ms(lambda: jax.block_until_ready(
                apply(module.params, jax_inputs)), args.calls)
        print(f"batch {batch:4d}: TF {tf_ms:8.3f} ms, jaxhub {jax_ms:8.3f} ms, "
              f"TF / jaxhub {tf_ms / jax_ms:5.2f}")


if __name__ == "__main__":
    main()
