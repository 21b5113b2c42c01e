"""``python -m benchmarks.keras_equivalents``: shipped graphs against Keras equivalents.

Three models of :mod:`benchmarks.real_models` are not Keras models as shipped: basic-pitch
ships a SavedModel (saved by an older TF), musicnn and musicnn_vgg ship TF 1 checkpoints
of TF 1 graph code. For each, this builds an equivalent Keras model (the same layers,
shapes and trained weights), saves it as a SavedModel with the same serving signature,
converts both with ``jaxhub.load`` and times, in a fresh process per model:

* conversion (``jaxhub.load`` into an empty cache);
* the first jitted call at batch 1 (tracing, compiling and running
  ``jax.jit(module.apply)``);
* the first jitted gradient at batch 1 (of the sum of the outputs with respect to the
  params).

The table gives the shipped model's figure over its Keras equivalent's (the aim: within
3x), and the relative L2 distance between the two conversions' outputs (the weights are
the same, so it shows the equivalent is one).

The equivalents:

* basic_pitch: the Keras code that defines the model in the package
  (``basic_pitch.models.model``, Keras 2 layers: built with ``tf_keras``), the shipped
  SavedModel's variables copied in by name;
* musicnn, musicnn_vgg: musicnn's TF 1 graph code (``musicnn/models.py``) restated with
  Keras 3 layers, in the same order, named as TF 1 names its variables, the checkpoint's
  values copied in by those names; inference only (dropout and batch norm as at serving).

Usage:
    python -m benchmarks.keras_equivalents [--models basic_pitch,musicnn]
"""

from __future__ import annotations

import argparse
import collections
import json
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

DEFAULT_WORKDIR = pathlib.Path(tempfile.gettempdir()) / "jaxhub-real-models"
#: The equivalents are saved beside the shipped models, as ``WORKDIR/{name}.keras``.
SUFFIX = ".keras"


# -- the Keras equivalents (each built in a fresh process) -----------------------------------


class _Tf1Names:
    """Names layers as ``tf.compat.v1.layers`` names their variable scopes.

    TF 1 numbers each layer type in creation order (``conv2d``, ``conv2d_1``, ...); a
    Keras layer given the same name finds its checkpoint values under that scope.
    """

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()

    def __call__(self, kind: str) -> str:
        count = self._counts[kind]
        self._counts[kind] += 1
        return kind if count == 0 else f"{kind}_{count}"


def _musicnn_keras(variant: str) -> Any:
    """musicnn's ``MTT_musicnn`` or ``MTT_vgg`` at inference, as a Keras 3 model."""
    import keras
    from keras import layers
    names = _Tf1Names()
    frames, mels = real_models._MUSICNN_FRAMES, real_models._MELS
    x = keras.Input((frames, mels), name="melspectrogram")

    def norm(t):
        return layers.BatchNormalization(name=names("batch_normalization"))(t)

    def conv(t, filters, kernel, padding="valid", name=None):
        return layers.Conv2D(filters, kernel, padding=padding, activation="relu",
                             name=name or names("conv2d"))(t)

    def pool_all_frequencies(t):  # max over the frequency axis, which is then dropped
        return layers.Reshape((t.shape[1], t.shape[3]))(
            layers.MaxPooling2D((1, t.shape[2]))(t))

    def pad_time(t):  # musicnn's 'same' along time only
        return layers.ZeroPadding2D(((3, 3), (0, 0)))(t)

    inputs = norm(layers.Reshape((*x.shape[1:], 1))(x))
    if variant == "MTT_vgg":
        t = inputs
        for i, pool in enumerate([((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)),
                                  ((2, 2), (2, 2)), ((4, 4), (4, 4))], start=1):
            t = norm(conv(t, 128, 3, "same", name=f"{i}CNN"))
            t = layers.MaxPooling2D(*pool)(t)
        logits = layers.Dense(50, name=names("dense"))(layers.Flatten()(t))
    else:
        padded = pad_time(inputs)
        front = [pool_all_frequencies(norm(conv(padded, 204, (7, int(f * mels)))))
                 for f in (0.4, 0.7)]  # timbral: 7 frames, 40 % and 70 % of the mel bins
        front += [pool_all_frequencies(norm(conv(inputs, 51, (length, 1), "same")))
                  for length in (128, 64, 32)]  # temporal
        front_end = layers.Reshape((frames, -1, 1))(layers.Concatenate(axis=2)(front))
        mid = [front_end]
        for _ in range(3):  # 64 filters of 7 frames spanning the previous features' axis
            t = norm(conv(pad_time(mid[-1]), 64, (7, mid[-1].shape[2])))
            t = layers.Permute((1, 3, 2))(t)
            mid.append(t if len(mid) == 1 else layers.Add()([t, mid[-1]]))
        features = layers.Reshape((frames, -1))(layers.Concatenate(axis=2)(mid))
        pooled = layers.Concatenate(axis=2)([
            layers.Reshape((-1, 1))(layers.GlobalMaxPooling1D()(features)),
            layers.Reshape((-1, 1))(layers.GlobalAveragePooling1D()(features))])
        t = norm(layers.Flatten()(pooled))
        t = norm(layers.Dense(200, activation="relu", name=names("dense"))(t))
        logits = layers.Dense(50, name=names("dense"))(t)
    return keras.Model(x, {"taggram": layers.Activation("sigmoid")(logits)})


def _copy_checkpoint(model: Any, checkpoint: str) -> None:
    """Sets every weight of ``model`` from ``checkpoint``'s ``{layer}/{weight}``."""
    import tensorflow as tf
    reader = tf.compat.v1.train.NewCheckpointReader(checkpoint)
    for layer in model.layers:
        for weight in layer.weights:
            weight.assign(reader.get_tensor(f"{layer.name}/{weight.name}"))


def _build_musicnn(variant: str) -> Callable[[pathlib.Path], None]:
    def build(path: pathlib.Path) -> None:
        import tensorflow as tf
        model = _musicnn_keras(variant)
        _copy_checkpoint(model, str(real_models._package_dir("musicnn", "musicnn") / variant)
                         + "/")
        (input_name,) = real_models.MODELS["musicnn"].inputs
        real_models._export_keras(model, path, [tf.TensorSpec(
            [None, *model.input.shape[1:]], tf.float32, name=input_name)])
    return build


def _build_basic_pitch(path: pathlib.Path) -> None:
    # The package's own Keras 2 code; the shipped SavedModel's variables have the names
    # this code gives them (TF numbers layers as it did when the model was saved).
    import tensorflow as tf
    model = real_models._import_module("basic-pitch", "basic_pitch", "models").model()
    shipped = tf.saved_model.load(str(real_models._package_dir("basic-pitch", "basic_pitch")
                                      / "saved_models" / "icassp_2022" / "nmp"))
    values = {v.name: v for v in shipped.variables}
    for weight in model.weights:
        weight.assign(values[weight.name])
    (input_name,) = real_models.MODELS["basic_pitch"].inputs

    @tf.function(input_signature=[tf.TensorSpec([None, *model.input.shape[1:]], tf.float32,
                                                 name=input_name)])
    def serve(audio):
        return model(audio, training=False)

    tf.saved_model.save(model, str(path), signatures={"serving_default": serve})


#: The models of :data:`benchmarks.real_models.MODELS` that are not Keras models as
#: shipped: how to build their Keras equivalent, and whether that needs Keras 2.
EQUIVALENTS: dict[str, tuple[Callable[[pathlib.Path], None], bool]] = {
    "basic_pitch": (_build_basic_pitch, True),
    "musicnn": (_build_musicnn("MTT_musicnn"), False),
    "musicnn_vgg": (_build_musicnn("MTT_vgg"), False),
}


def ensure_equivalents(names: list[str], workdir: pathlib.Path) -> dict[str, pathlib.Path]:
    """The Keras equivalents' SavedModels of models ``names`` (built where missing).

    Each group is built in a fresh process, as :func:`real_models.ensure_saved_models`
    does (Keras 2 code needs ``TF_USE_LEGACY_KERAS`` set before TF is imported).

    Raises:
      RuntimeError: a build failed (its stderr's last lines are in the message).
    """
    paths = {name: workdir / (name + SUFFIX) for name in names}
    missing = [name for name, path in paths.items() if not (path / "saved_model.pb").is_file()]
    for legacy in (False, True):
        group = [name for name in missing if EQUIVALENTS[name][1] == legacy]
        if not group:
            continue
        env = child_env()
        if legacy:
            env["TF_USE_LEGACY_KERAS"] = "1"
        done = subprocess.run([sys.executable, "-m", "benchmarks.keras_equivalents",
                               "--build", *group, "--workdir", str(workdir)], cwd=REPO_ROOT,
                              env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"building the Keras equivalents of {', '.join(group)} "
                               "failed:\n" + "\n".join(done.stderr.splitlines()[-15:]))
    return paths


def _build(names: list[str], workdir: pathlib.Path) -> None:
    import tensorflow as tf
    for name in names:
        tf.keras.backend.clear_session()
        path = workdir / (name + SUFFIX)
        staging = pathlib.Path(tempfile.mkdtemp(dir=workdir, prefix=f".{name}{SUFFIX}-"))
        staging.rmdir()  # complete, or not there
        EQUIVALENTS[name][0](staging)
        shutil.rmtree(path, ignore_errors=True)
        staging.rename(path)


def _check(names: list[str], workdir: pathlib.Path) -> None:
    """Prints, per model, a JSON line comparing the shipped SavedModel and its Keras
    equivalent in TF at batch 2: their output shapes and the largest relative L2
    distance between same-named outputs."""
    import tensorflow as tf
    for name in names:
        inputs = real_models.example_inputs(name, 2)
        outputs = {}
        for which, path in (("shipped", workdir / name), ("keras", workdir / (name + SUFFIX))):
            signature = tf.saved_model.load(str(path)).signatures["serving_default"]
            outputs[which] = {k: v.numpy() for k, v in signature(**inputs).items()}
        print(json.dumps({
            "model": name, **{f"{which}_shapes": {k: list(v.shape) for k, v in out.items()}
                              for which, out in outputs.items()},
            "distance": _distance(outputs["shipped"], outputs["keras"])}), flush=True)


# -- the measuring process ------------------------------------------------------------------


def _measure(name: str, saved_model: pathlib.Path, cache: pathlib.Path,
             outputs: pathlib.Path) -> None:
    """Reports conversion, first jitted call and first jitted gradient times (batch 1),
    and saves the batch-1 outputs to ``outputs``."""
    import jax
    import jax.numpy as jnp
    import jaxhub
    import jaxhub_tf.formats  # noqa: F401 -- imported before the clock starts, as jax is
    result: dict[str, Any] = {"model": name, "saved_model": saved_model.name}
    x1 = real_models.example_inputs(name, 1)
    started = time.perf_counter()
    module = harness._guarded(result, "not converted", lambda: jaxhub.load(
        saved_model, cache_dir=cache))
    if module is None:
        return harness._report(result)
    result["convert_s"] = time.perf_counter() - started
    harness._report(result)

    def apply(params, inputs):
        return module.apply(params, inputs, signature="serving_default", as_dict=True)

    def loss(params, inputs):
        return sum(jnp.sum(v) for v in apply(params, inputs).values())

    started = time.perf_counter()
    out = harness._guarded(result, "first call failed", lambda: jax.block_until_ready(
        jax.jit(apply)(module.params, x1)))
    if out is None:
        return harness._report(result)
    result["first_call_s"] = time.perf_counter() - started
    np.savez(outputs, **{k: np.asarray(v) for k, v in out.items()})
    harness._report(result)
    started = time.perf_counter()
    grad = jax.jit(jax.grad(loss, allow_int=True))  # int params: seed states
    if harness._guarded(result, "first gradient failed", lambda: jax.block_until_ready(
            grad(module.params, x1))) is not None:
        result["first_grad_s"] = time.perf_counter() - started
    harness._report(result)


# -- the driver -----------------------------------------------------------------------------


def measure(name: str, saved_model: pathlib.Path, workdir: pathlib.Path,
            timeout: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(figures, batch-1 outputs)`` of one SavedModel of model ``name``, measured in a
    fresh process with an empty jaxhub cache."""
    scratch = pathlib.Path(tempfile.mkdtemp(dir=workdir, prefix="keras-equivalents-"))
    outputs = scratch / "outputs.npz"
    command = [sys.executable, "-m", "benchmarks.keras_equivalents", "--measure", name,
               str(saved_model), str(scratch / "cache"), str(outputs)]
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, env=child_env(), capture_output=True,
                              text=True, timeout=timeout)
        result = harness._last_result(done.stdout) or {}
        if done.returncode:
            result["error"] = (f"{result.get('error', 'crashed')} (exit {done.returncode}): "
                               f"{harness._last_line(done.stderr)[:120]}")
    except subprocess.TimeoutExpired as e:
        result = harness._last_result(e.stdout) or {}
        result["error"] = f"timed out after {timeout:.0f} s"
    try:
        with np.load(outputs) as saved:
            values = dict(saved)
    except OSError:
        values = {}
    shutil.rmtree(scratch, ignore_errors=True)
    return result, values


def _distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float | None:
    """The largest relative L2 distance between same-named outputs (None: not comparable)."""
    if not a or sorted(a) != sorted(b) or any(a[k].shape != b[k].shape for k in a):
        return None
    return max(float(np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(a[k]), 1e-30))
               for k in a)


def _pair(shipped: float | None, keras: float | None, fmt: str) -> str:
    def cell(v):
        return format(v, fmt) if v is not None else "-"
    ratio = f"{shipped / keras:.2f}" if shipped and keras else "-"
    return f"{cell(shipped)} / {cell(keras)} | {ratio}"


def table(rows: dict[str, tuple[dict, dict, float | None]]) -> str:
    """The markdown table: ``rows[name] = (shipped figures, Keras figures, distance)``."""
    lines = ["| model | convert s (shipped / Keras) | ratio | first jitted call b1 s "
             "(shipped / Keras) | ratio | first jitted gradient b1 s (shipped / Keras) "
             "| ratio | outputs' distance |",
             "| --- " * 8 + "|"]
    errors = []
    for name, (shipped, keras, distance) in rows.items():
        lines.append(f"| {name} "
                     f"| {_pair(shipped.get('convert_s'), keras.get('convert_s'), '.1f')} "
                     f"| {_pair(shipped.get('first_call_s'), keras.get('first_call_s'), '.2f')} "
                     f"| {_pair(shipped.get('first_grad_s'), keras.get('first_grad_s'), '.2f')} "
                     f"| {'-' if distance is None else format(distance, '.1e')} |")
        errors += [f"- {name}, {which}: {r['error']}" for which, r in
                   (("shipped", shipped), ("Keras", keras)) if "error" in r]
    return "\n".join(lines + ([""] + errors if errors else []))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keras_equivalents",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(EQUIVALENTS),
                        help=f"comma-separated, from: {', '.join(EQUIVALENTS)}")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds before a measuring process is stopped")
    parser.add_argument("--workdir", type=pathlib.Path, default=DEFAULT_WORKDIR,
                        help="SavedModels (kept between runs) and scratch caches")
    parser.add_argument("--output", type=pathlib.Path, help="also write the table here")
    parser.add_argument("--check", action="store_true",
                        help="only build the models and compare their outputs in TF")
    parser.add_argument("--build", nargs="+", choices=sorted(EQUIVALENTS),
                        help=argparse.SUPPRESS)  # the building process's arguments
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS,
                        metavar=("MODEL", "SAVED_MODEL", "CACHE", "OUTPUTS"))
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(EQUIVALENTS))
    if unknown or not args.models:
        parser.error(f"unknown models {unknown}; known: {list(EQUIVALENTS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.build:
        return _build(args.build, args.workdir)

    if args.measure:
        name, saved_model, cache, outputs = args.measure
        return _measure(name, pathlib.Path(saved_model), pathlib.Path(cache),
                        pathlib.Path(outputs))
    args.workdir.mkdir(parents=True, exist_ok=True)
    shipped = real_models.ensure_saved_models(args.models, args.workdir)
    keras = ensure_equivalents(args.models, args.workdir)
    if args.check:
        return _check(args.models, args.workdir)
    rows: dict[str, tuple[dict, dict, float | None]] = {}
    for name in args.models:
        print(f"{name}: shipped", file=sys.stderr, flush=True)
        shipped_result, shipped_out = measure(name, shipped[name], args.workdir, args.timeout)
        print(f"{name}: Keras equivalent", file=sys.stderr, flush=True)
        keras_result, keras_out = measure(name, keras[name], args.workdir, args.timeout)
        rows[name] = (shipped_result, keras_result, _distance(shipped_out, keras_out))
        text = table(rows)
        if args.output is not None:  # after every model: a run cut short keeps its rows
            args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
