"""The benchmarked models: Keras models built from code, saved as TF2 SavedModels.

Every model is a real architecture with random weights (Keras applications with
``weights=None``) and a fixed seed, exported with Keras 3 ``model.export`` so that its
``serving_default`` signature is what TensorFlow, tf2jax and jaxhub all run.

Run as a script to build one SavedModel (the benchmark driver does this in a subprocess
so that its own process never imports TensorFlow)::

    python -m benchmarks.models mobilenet_v2 /tmp/mobilenet_v2 --image-size 96
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any, Callable

import numpy as np

from benchmarks import native
from benchmarks.processes import REPO_ROOT, child_env

#: The seed of every model's initial weights.
SEED = 0
#: The file beside a SavedModel that records how it was built.
BUILD_INFO = "benchmark_model.json"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build one model and make inputs for it.

    Attributes:
      name: the model's name on the command line and in tables.
      build: ``build(image_size) -> keras.Model``.
      input_shape: ``input_shape(image_size)``: one example's shape (no batch dim).
      dtype: the input's dtype.
      vocab: for integer inputs, ids are drawn from ``[0, vocab)``.
    """

    name: str
    build: Callable[[int], Any]
    input_shape: Callable[[int], tuple[int, ...]]
    dtype: str = "float32"
    vocab: int = 0


def _mlp(_: int):
    import keras
    return keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(1024, activation="relu", name="dense0"),
        keras.layers.Dense(1024, activation="relu", name="dense1"),
        keras.layers.Dense(10, name="dense2")], name="mlp")


_VOCAB, _TEXT_LENGTH = 20_000, 128


def _text_embedding(_: int):
    # Integer ids in, a sentence embedding out: the numeric half of a text module (string
    # tokenization runs on the host, before this graph).
    import keras
    ids = keras.Input((_TEXT_LENGTH,), dtype="int32")
    x = keras.layers.Embedding(_VOCAB, 128, name="embedding")(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(128, activation="tanh", name="pooled")(x)
    return keras.Model(ids, x, name="text_embedding")


def _application(name: str) -> Callable[[int], Any]:
    def build(image_size: int):
        import keras
        cls = getattr(keras.applications, name)
        return cls(weights=None, input_shape=(image_size, image_size, 3), classes=1000)
    return build


_WIDTH, _LENGTH, _LAYERS, _HEADS = 256, 128, 4, 4


def _transformer(_: int):
    return transformer_encoder(_LAYERS, _WIDTH, _HEADS, _LENGTH)


def transformer_encoder(layers: int, width: int, heads: int, length: int):
    """A post-norm encoder (BERT's layout) over already-embedded tokens.

    Layers are named ``layer{i}_attention``, ``_norm1``, ``_ffn_in``, ``_ffn_out`` and
    ``_norm2``, so that :mod:`benchmarks.native` finds their weights.
    """
    import keras
    inputs = keras.Input((length, width))
    x = inputs
    for i in range(layers):
        attention = keras.layers.MultiHeadAttention(
            heads, width // heads, name=f"layer{i}_attention")(x, x)
        x = keras.layers.LayerNormalization(epsilon=1e-6, name=f"layer{i}_norm1")(
            x + attention)
        hidden = keras.layers.Dense(4 * width, activation="gelu", name=f"layer{i}_ffn_in")(x)
        x = keras.layers.LayerNormalization(epsilon=1e-6, name=f"layer{i}_norm2")(
            x + keras.layers.Dense(width, name=f"layer{i}_ffn_out")(hidden))
    return keras.Model(inputs, x, name="transformer")


def keras_resnet(image_size: int, blocks: tuple[int, ...], filters: tuple[int, ...],
                 classes: int = 1000):
    """Keras applications' ResNet v1 with ``blocks`` per stage (3, 4, 6, 3: ResNet50).

    Built by Keras's own ResNet code, so that small variants have ResNet50's layers.
    """
    from keras.src.applications import resnet

    def stack_fn(x):
        for stage, (count, width) in enumerate(zip(blocks, filters)):
            x = resnet.stack_residual_blocks_v1(x, width, count, stride1=1 if stage == 0
                                                else 2, name=f"conv{stage + 2}")
        return x

    return resnet.ResNet(stack_fn, preact=False, use_bias=True, weights=None,
                         input_shape=(image_size, image_size, 3), classes=classes,
                         name="resnet")


def _image(size: int) -> tuple[int, ...]:
    return (size, size, 3)


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in [
    ModelSpec("mlp", _mlp, lambda _: (784,)),
    ModelSpec("text_embedding", _text_embedding, lambda _: (_TEXT_LENGTH,), "int32", _VOCAB),
    ModelSpec("mobilenet_v2", _application("MobileNetV2"), _image),
    ModelSpec("resnet50", _application("ResNet50"), _image),
    ModelSpec("efficientnet_b0", _application("EfficientNetB0"), _image),
    ModelSpec("transformer", _transformer, lambda _: (_LENGTH, _WIDTH)),
]}


def example_input(name: str, batch: int, image_size: int, seed: int = 1) -> np.ndarray:
    """A batch of inputs for model ``name``, the same for every framework."""
    spec = MODELS[name]
    rng = np.random.default_rng(seed)
    shape = (batch, *spec.input_shape(image_size))
    if spec.vocab:
        return rng.integers(0, spec.vocab, shape).astype(spec.dtype)
    return rng.standard_normal(shape).astype(spec.dtype)


def build_saved_model(name: str, path: pathlib.Path, image_size: int) -> dict[str, Any]:
    """Builds model ``name`` with seed :data:`SEED` and exports it as a SavedModel.

    Args:
      name: a key of :data:`MODELS`.
      path: the SavedModel directory to write (must not exist).
      image_size: height and width of image models' inputs.

    Returns:
      What :data:`BUILD_INFO` records: the model, image size, number of params and the
      signature's input name.
    """
    import keras
    keras.utils.set_random_seed(SEED)
    model = MODELS[name].build(image_size)
    model.export(str(path), format="tf_saved_model", verbose=False)
    native.save_keras_weights(model, path)
    info = {"model": name, "image_size": image_size, "params": int(model.count_params()),
            "keras": keras.__version__, "input": _signature_input(path)}
    (path / BUILD_INFO).write_text(json.dumps(info, indent=1))
    return info


def _signature_input(path: pathlib.Path) -> str:
    import tensorflow as tf
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    (name,) = signature.structured_input_signature[1]
    return name


def build_info(path: pathlib.Path) -> dict[str, Any] | None:
    """What :func:`build_saved_model` recorded for the SavedModel at ``path``, or None."""
    file = path / BUILD_INFO
    return json.loads(file.read_text()) if file.is_file() else None


def ensure_saved_model(name: str, workdir: pathlib.Path, image_size: int) -> pathlib.Path:
    """Model ``name``'s SavedModel in ``workdir``, built (in a subprocess) if missing.

    Built in a fresh process so that the caller never imports TensorFlow, and renamed
    into place when complete.
    """
    path = workdir / "saved_models" / f"{name}-{image_size}"
    if build_info(path) is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{name}-"))
        staging.rmdir()  # Keras creates the directory itself
        subprocess.run([sys.executable, "-m", "benchmarks.models", name, str(staging),
                        "--image-size", str(image_size)], check=True, cwd=REPO_ROOT,
                       env=child_env(), capture_output=True)
        staging.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Build one benchmark SavedModel.")
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("path", type=pathlib.Path)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(json.dumps(build_saved_model(args.model, args.path, args.image_size)))


if __name__ == "__main__":
    main()
