"""The Keras-applications zoo: real architectures with random, trained-looking weights.

A freshly built application is a poor reference: its batch norms are identities and, at
small inputs, its outputs are nearly constant (untrained MobileNetV2 logits at 32x32 are
~1e-12), so any converter passes a comparison with an absolute tolerance. The models here
get random statistics in every normalization layer, and comparisons are relative:
``max|jax - tf| / max|tf|``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import keras
import numpy as np
import tensorflow as tf
import tf_keras
from tensorflow.python.util import _pywrap_util_port

from tests.conftest import repo_pythonpath

#: Classes of every zoo model (a small head keeps the last kernel cheap).
CLASSES = 10


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """One Keras application at a small input size.

    Attributes:
      name: the class name in ``keras.applications`` (and ``tf_keras.applications``).
      size: the image side; the smallest the architecture accepts is enough.
      raw_pixels: the model rescales its inputs itself (``include_preprocessing``), so it
        gets pixels in ``[0, 255]`` rather than standardized values.
    """

    name: str
    size: int = 32
    raw_pixels: bool = False

    def __str__(self) -> str:
        return self.name


MODELS = {m.name: m for m in [
    ZooModel("MobileNetV2"),
    ZooModel("MobileNetV3Small", raw_pixels=True),
    ZooModel("ResNet50"),
    ZooModel("EfficientNetB0", raw_pixels=True),
    ZooModel("DenseNet121"),
    ZooModel("InceptionV3", size=75),  # its stem needs at least 75x75
    ZooModel("ConvNeXtTiny", raw_pixels=True),
]}


def build(spec: ZooModel, api: Any = keras, seed: int = 0) -> Any:
    """Builds ``spec`` with ``weights=None`` and a fixed seed, then randomizes its statistics.

    Args:
      spec: the model.
      api: ``keras`` (Keras 3) or ``tf_keras``.
      seed: seeds both the initializers and the statistics.

    Returns:
      The model, outputting logits.
    """
    api.utils.set_random_seed(seed)
    model = getattr(api.applications, spec.name)(
        weights=None, input_shape=(spec.size, spec.size, 3), classes=CLASSES,
        classifier_activation=None)
    give_trained_statistics(model, np.random.default_rng(seed))
    return model


def give_trained_statistics(model: Any, rng: np.random.Generator) -> None:
    """Gives every batch norm random ``gamma``, ``beta``, moving mean and variance (> 0).

    ConvNeXt's layer scales start at 1e-6, which silences every residual block; they get
    values of order one too, so the blocks' kernels matter to the outputs.
    """
    draws: dict[str, Callable[[tuple[int, ...]], np.ndarray]] = {
        "gamma": lambda shape: rng.uniform(0.5, 1.5, shape),
        "beta": lambda shape: rng.normal(0.0, 0.1, shape),
        "moving_mean": lambda shape: rng.normal(0.0, 0.1, shape),
        "moving_variance": lambda shape: rng.uniform(0.5, 1.5, shape),
    }
    for layer in _all_layers(model):
        kind = type(layer).__name__
        if kind == "BatchNormalization":
            for variable in layer.weights:
                draw = draws[_short_name(variable)]
                variable.assign(draw(tuple(variable.shape)).astype(np.float32))
        elif kind == "LayerScale":
            for variable in layer.weights:
                variable.assign(rng.uniform(0.5, 1.0, tuple(variable.shape))
                                .astype(np.float32))


def _all_layers(model: Any) -> list[Any]:
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if hasattr(layer, "layers"):  # nested Sequential blocks (ConvNeXt's downsampling)
            layers.extend(_all_layers(layer))
    return layers


def _strip(name: str) -> str:
    return re.sub(r":\d+$", "", name)


def _short_name(variable: Any) -> str:
    return _strip(variable.name).split("/")[-1]


def tf_name(variable: Any) -> str:
    """The name a SavedModel gives ``variable`` (Keras 3 path, or tf_keras name)."""
    if isinstance(variable, keras.Variable):
        return variable.path
    return _strip(variable.name)


def images(spec: ZooModel, batch: int = 2, seed: int = 1) -> np.ndarray:
    """A batch of random images in the range ``spec`` expects."""
    rng = np.random.default_rng(seed)
    shape = (batch, spec.size, spec.size, 3)
    if spec.raw_pixels:
        return rng.uniform(0.0, 255.0, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def representative_kernels(model: Any) -> list[Any]:
    """The first, a middle and the last trainable kernel (stem, body and head)."""
    kernels = [v for v in model.trainable_variables if "kernel" in _short_name(v)]
    picked = [kernels[0], kernels[len(kernels) // 3], kernels[2 * len(kernels) // 3],
              kernels[-1]]
    return list({tf_name(v): v for v in picked}.values())


# -- saving ---------------------------------------------------------------------------------


def keras_export(model: Any, path: pathlib.Path) -> str:
    """Keras 3 ``model.export``: returns the signature to compare (``serve``)."""
    model.export(str(path), format="tf_saved_model", verbose=False)
    return "serve"


class _Classifier(tf.Module):
    """A plain ``tf.Module`` whose ``tf.function`` calls the Keras model."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    @tf.function
    def __call__(self, images):
        return {"logits": self.model(images, training=False)}


def tf_module_save(model: Any, path: pathlib.Path) -> str:
    """``tf.saved_model.save`` of a ``tf.Module`` wrapping the model, with signature
    ``classify``."""
    module = _Classifier(model)
    size = model.input_shape[1]
    classify = module.__call__.get_concrete_function(
        tf.TensorSpec([None, size, size, 3], tf.float32))
    tf.saved_model.save(module, str(path), signatures={"classify": classify})
    return "classify"


def plain_save(model: Any, path: pathlib.Path) -> str:
    """``tf.saved_model.save`` of the model itself (a tf_keras model: a reusable
    SavedModel with ``__call__(inputs, training)``)."""
    tf.saved_model.save(model, str(path))
    return "serving_default"


# -- references ------------------------------------------------------------------------------


def tf_reference(model: Any, x: np.ndarray, cotangent: np.ndarray,
                 variables: list[Any]) -> dict[str, Any]:
    """The in-memory model's logits, and gradients of ``sum(logits * cotangent)``.

    Returns:
      ``{"outputs", "input_grad", "var_grads"}``, ``var_grads`` keyed by :func:`tf_name`.
    """
    x = tf.constant(x)
    watched = [v.value if isinstance(v, keras.Variable) else v for v in variables]
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = model(x, training=False)
        loss = tf.reduce_sum(outputs * cotangent)
    input_grad, *var_grads = tape.gradient(loss, [x, *watched])
    return {"outputs": outputs.numpy(), "input_grad": input_grad.numpy(),
            "var_grads": {tf_name(v): g.numpy() for v, g in zip(variables, var_grads)}}


def onednn_enabled() -> bool:
    """True when TF runs its oneDNN CPU kernels in this process.

    TF decides once, at import: on with AVX-512 unless ``TF_ENABLE_ONEDNN_OPTS=0``, off
    without AVX-512 unless ``TF_ENABLE_ONEDNN_OPTS=1``.
    """
    return bool(_pywrap_util_port.IsMklEnabled())


def tf_reference_other_kernels(spec: ZooModel, api: Any, x: np.ndarray, cotangent: np.ndarray,
                               workdir: pathlib.Path) -> dict[str, Any]:
    """:func:`tf_reference` from a fresh process that runs TF's other CPU kernels.

    The process builds the same model (same seed) with oneDNN on if it is off here, and
    off if it is on, and computes the reference on the same images and cotangent.

    Args:
      spec: the model.
      api: ``keras`` or ``tf_keras``, as for :func:`build`.
      x: the images.
      cotangent: the cotangent of the logits.
      workdir: where the inputs and the result are passed as files.

    Returns:
      The reference, as :func:`tf_reference` returns it.
    """
    src, dst = workdir / "reference_inputs.npz", workdir / "reference_other_kernels.npz"
    np.savez(src, images=x, cotangent=cotangent)
    env = dict(os.environ, PYTHONPATH=repo_pythonpath(),
               TF_ENABLE_ONEDNN_OPTS="0" if onednn_enabled() else "1")
    proc = subprocess.run([sys.executable, "-m", __name__, spec.name, api.__name__, str(src),
                           str(dst)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(dst) as saved:
        return {"outputs": saved["outputs"], "input_grad": saved["input_grad"],
                "var_grads": {k[len("var:"):]: saved[k] for k in saved.files
                              if k.startswith("var:")}}


def _write_reference(name: str, api_name: str, src: str, dst: str) -> None:
    """The subprocess of :func:`tf_reference_other_kernels`."""
    api = {"keras": keras, "tf_keras": tf_keras}[api_name]
    model = build(MODELS[name], api)
    with np.load(src) as given:
        ref = tf_reference(model, given["images"], given["cotangent"],
                           representative_kernels(model))
    np.savez(dst, outputs=ref["outputs"], input_grad=ref["input_grad"],
             **{f"var:{k}": v for k, v in ref["var_grads"].items()})


def jax_outputs_and_grads(module: Any, signature: str, x: np.ndarray,
                          cotangent: np.ndarray) -> tuple[np.ndarray, Any, np.ndarray]:
    """Logits, param gradients and input gradient of ``sum(logits * cotangent)``, jitted.

    Returns:
      ``(outputs, param_grads, input_grad)``.
    """

    def loss(params, images):
        logits = module.apply(params, images, signature=signature)
        return jnp.sum(logits * cotangent), logits

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (_, outputs), (param_grads, input_grad) = grad(module.params, x)
    return np.asarray(outputs), param_grads, np.asarray(input_grad)


def relative_error(actual: Any, expected: np.ndarray) -> float:
    """``max|actual - expected| / max|expected|``."""
    expected = np.asarray(expected, np.float64)
    return float(np.max(np.abs(np.asarray(actual, np.float64) - expected))
                 / np.max(np.abs(expected)))


def param_path(module: Any, name: str) -> str:
    """The module param path (``a/b``) of the TF variable ``name``."""
    by_name = {_strip(v): k for k, v in module.attachments["tf_variable_names"].items()}
    return by_name[name]


def leaf(tree: Any, path: str) -> Any:
    for key in path.split("/"):
        tree = tree[key]
    return tree


if __name__ == "__main__":
    _write_reference(*sys.argv[1:])
