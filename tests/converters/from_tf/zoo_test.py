"""The Keras-applications zoo converted to jaxhub and compared with TensorFlow.

Each model (``weights=None``, fixed seed, random batch-norm statistics, small input) is
saved as a SavedModel, converted, and compared with the in-memory TF model: logits, and
gradients of one random linear function of the logits with respect to the images and to
representative kernels (``tf.GradientTape``). Errors are relative to the largest TF value
(``max|jax - tf| / max|tf|``) and the TF values must not be degenerate, so a converter that
got a layer wrong cannot pass on tiny numbers. Two models also make a round trip through
the jaxhub format into a fresh process that never imports TensorFlow.

TF has two CPU kernel paths: with oneDNN (its default on CPUs with AVX-512) and without
(its default elsewhere, or ``TF_ENABLE_ONEDNN_OPTS=0``). They agree to about 1e-6 relative,
except where an input sits at a near-tie: InceptionV3's gradients of one image, in one
receptive field of its stem, move by 2e-3 between them on AVX2 kernels (a ReLU's or a max
pool's branch flips under rounding). A conversion that misses TF's reference on this
process's path must then match TF's reference on the other path (computed in a fresh
process), with the same tolerance.

Each test records its relative errors as properties (shown by
``--junitxml=FILE -o junit_family=xunit1``), and, when the other path was needed, how far
TF's two paths are apart.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tf_keras

from jaxhub_tf.from_tf import saved_model
from tests.converters.from_tf import _helpers, _zoo

#: Relative error allowed (float32 through 50-120 layers measures about 1e-6).
RTOL = 1e-4
#: Below this spread of the TF logits, a comparison would prove nothing.
MIN_STD = 1e-3

#: How a model is saved -> (the Keras that builds it, the saving function).
SAVERS = {
    "export": (keras, _zoo.keras_export),          # Keras 3 model.export
    "tf_module": (keras, _zoo.tf_module_save),     # tf.saved_model.save of a tf.Module
    "tf_keras": (tf_keras, _zoo.plain_save),       # tf.saved_model.save of a tf_keras model
}

CASES = [(name, "export") for name in _zoo.MODELS] + [
    ("MobileNetV2", "tf_module"),
    ("ResNet50", "tf_keras"),
    ("InceptionV3", "tf_keras"),
]
ROUND_TRIPS = [("MobileNetV2", "export"), ("ResNet50", "tf_keras")]


def _ids(cases):
    return [f"{name}-{way}" for name, way in cases]


class _Converted:
    """One zoo model, saved one way and converted, with its TF reference."""

    def __init__(self, name: str, way: str, workdir, destination=None):
        self.spec = _zoo.MODELS[name]
        self.api, save = SAVERS[way]
        self.model = _zoo.build(self.spec, self.api)
        saved = workdir / "saved_model"
        self.signature = save(self.model, saved)
        if destination is None:
            self.module = saved_model.load_saved_model(saved)
        else:
            self.module = saved_model.convert_saved_model(saved, destination)
        sig = self.module.signatures[self.signature]
        (self.input_name,) = sig.inputs
        (self.output_name,) = sig.outputs
        self.images = _zoo.images(self.spec)
        self.kernels = _zoo.representative_kernels(self.model)
        logits_shape = (len(self.images), _zoo.CLASSES)
        self.cotangent = np.random.default_rng(2).standard_normal(logits_shape).astype(
            np.float32)
        self.ref = _zoo.tf_reference(self.model, self.images, self.cotangent, self.kernels)

    def kernel_paths(self) -> dict[str, str]:
        """TF name -> module param path, for the representative kernels."""
        return {name: _zoo.param_path(self.module, name) for name in self.ref["var_grads"]}

    def compare(self, got: dict[str, np.ndarray], workdir, record_property) -> None:
        """Asserts that ``got`` (keyed as :func:`_quantities`) matches TF's reference on
        this process's CPU kernel path, or else on the other one."""
        errors = _relative_errors(got, _quantities(self.ref))
        if max(errors.values()) > RTOL:
            other = _quantities(_zoo.tf_reference_other_kernels(
                self.spec, self.api, self.images, self.cotangent, workdir))
            for what, error in _relative_errors(other, _quantities(self.ref)).items():
                record_property(f"tf_kernel_paths_apart:{what}", f"{error:.2e}")
            record_property("reference", "TF's other CPU kernel path")
            errors = _relative_errors(got, other)
        _check(errors, record_property)


def _quantities(ref) -> dict[str, np.ndarray]:
    """A reference as the compared quantities: logits, then gradients by TF name."""
    return {"logits": ref["outputs"], "grad:images": ref["input_grad"],
            **{f"grad:{name}": g for name, g in ref["var_grads"].items()}}


def _relative_errors(got: dict[str, np.ndarray], want: dict[str, np.ndarray]
                     ) -> dict[str, float]:
    assert set(got) == set(want)
    return {what: _zoo.relative_error(got[what], want[what]) for what in want}


def _assert_not_degenerate(ref) -> None:
    assert np.std(ref["outputs"]) > MIN_STD, "TF logits are degenerate"
    assert np.max(np.abs(ref["input_grad"])) > 0, "TF input gradient is zero"
    for name, grad in ref["var_grads"].items():
        assert np.max(np.abs(grad)) > 0, f"TF gradient of {name} is zero"


def _check(errors: dict[str, float], record_property) -> None:
    for what, error in errors.items():
        record_property(f"relative_error:{what}", f"{error:.2e}")
    worst = max(errors, key=errors.get)
    record_property("max_relative_error", f"{errors[worst]:.2e}")
    bad = {k: f"{v:.2e}" for k, v in errors.items() if not v <= RTOL}
    assert not bad, f"relative errors above {RTOL}: {bad}"


@pytest.mark.parametrize("name, way", CASES, ids=_ids(CASES))
def test_converted_model_matches_tf(name, way, tmp_path, record_property):
    case = _Converted(name, way, tmp_path)
    _assert_not_degenerate(case.ref)
    outputs, param_grads, input_grad = _zoo.jax_outputs_and_grads(
        case.module, case.signature, case.images, case.cotangent)
    got = {"logits": outputs, "grad:images": input_grad}
    for tf_name, path in case.kernel_paths().items():
        assert _zoo.leaf(case.module.trainable_mask, path), f"{path} is not trainable"
        got[f"grad:{tf_name}"] = _zoo.leaf(param_grads, path)
    case.compare(got, tmp_path, record_property)


@pytest.mark.parametrize("name, way", ROUND_TRIPS, ids=_ids(ROUND_TRIPS))
def test_round_trip_in_fresh_process_without_tensorflow(name, way, tmp_path,
                                                        record_property):
    case = _Converted(name, way, tmp_path, destination=tmp_path / "jaxhub_module")
    _assert_not_degenerate(case.ref)
    # The fresh process loads the module with jaxhub only, and checks that TensorFlow
    # stayed out of sys.modules.
    result = _helpers.round_trip_in_fresh_process(
        tmp_path / "jaxhub_module", {case.input_name: case.images},
        {"cotangents": {case.output_name: case.cotangent}}, case.signature, tmp_path)
    got = {"logits": result[f"out:{case.output_name}"],
           "grad:images": result[f"gin:{case.input_name}"]}
    for tf_name, path in case.kernel_paths().items():
        got[f"grad:{tf_name}"] = result[f"gp:{path}"]
    case.compare(got, tmp_path, record_property)
