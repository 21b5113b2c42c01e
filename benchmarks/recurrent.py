"""``python -m benchmarks.recurrent``: Keras recurrent layers alone, jaxhub against TF.

Saves a small Keras 2 model of one recurrent kind (``--layer gru``: two bidirectional
GRUs of the original kind, ``reset_after=False``, as crema's; ``lstm``: one bidirectional
LSTM with hard-sigmoid gates, as russtress'), converts it twice (once with the
``--off`` lowerings of :mod:`benchmarks.lowering_ab` switched off), and alternates, call
by call, both modules' jitted forward pass and gradient w.r.t. the params with TF's.

Usage::

    TF_USE_LEGACY_KERAS=1 python -m benchmarks.recurrent [--layer gru] [--batch 32]
        [--steps 43] [--calls 10] [--off step-lists]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile

import numpy as np

from benchmarks import lowering_ab


def _save(layer: str, features: int, path: pathlib.Path) -> None:
    import tensorflow as tf
    from benchmarks import real_models
    keras = tf.keras
    inputs = keras.Input((None, features), name="x")
    if layer == "gru":
        h = inputs
        for _ in range(2):
            h = keras.layers.Bidirectional(keras.layers.GRU(
                128, return_sequences=True, reset_after=False,
                recurrent_activation="hard_sigmoid"))(h)
    else:
        h = keras.layers.Bidirectional(keras.layers.LSTM(
            64, return_sequences=True, recurrent_activation="hard_sigmoid"))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(12, name="y")(h))
    real_models._save_tf_keras(model, path, {"x": tf.TensorSpec([None, None, features],
                                                                tf.float32, name="x")})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", choices=("gru", "lstm"), default="gru")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=43)
    parser.add_argument("--features", type=int, default=72)
    parser.add_argument("--calls", type=int, default=10, help="alternating rounds")
    parser.add_argument("--off", default="step-lists",
                        help="lowerings switched off in 'before' (see benchmarks.lowering_ab)")
    args = parser.parse_args(argv)
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        parser.error("run with TF_USE_LEGACY_KERAS=1 (the layers are Keras 2's)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    path = pathlib.Path(tempfile.mkdtemp()) / args.layer
    _save(args.layer, args.features, path)
    x = np.random.default_rng(0).uniform(size=(args.batch, args.steps, args.features))
    inputs = {"x": x.astype(np.float32)}
    off = [name.strip() for name in args.off.split(",") if name.strip()]
    with lowering_ab.switched_off(off):
        before = lowering_ab._jax_calls(path, inputs)
    after = lowering_ab._jax_calls(path, inputs)
    tf_calls = lowering_ab._tf_calls(path, inputs)
    ms = lowering_ab.alternate({"before": before[0], "after": after[0], "tf": tf_calls[0],
                                "before grad": before[1], "after grad": after[1],
                                "tf grad": tf_calls[1]}, args.calls)
    print(f"{args.layer}, batch {args.batch}, {args.steps} steps, off in 'before': "
          f"{', '.join(off)}; load average {os.getloadavg()[0]:.1f}")
    for suffix in ("", " grad"):
        b, a, t = ms["before" + suffix], ms["after" + suffix], ms["tf" + suffix]
        print(f"  {suffix.strip() or 'forward'}: before {b:.2f} ms, after {a:.2f} ms, "
              f"after / before {a / b:.2f}; TF {t:.2f} ms, TF / jaxhub {t / b:.2f} -> "
              f"{t / a:.2f}")


if __name__ == "__main__":
    main()
