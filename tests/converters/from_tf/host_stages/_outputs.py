"""Comparing a host-stage signature's outputs with what TF computes."""

from __future__ import annotations

import inspect
import pathlib

import jax
import numpy as np
import tensorflow as tf

import jaxhub


def signature_arrays(model_class: type, signature: str, inputs: dict) -> dict[str, np.ndarray]:
    """``inputs`` as arrays of the dtypes that ``model_class``'s ``signature`` (a
    ``tf.function`` method with an input signature) declares; strings as objects."""
    function = getattr(model_class, signature)
    names = list(inspect.signature(function.python_function).parameters)[1:]  # no self
    return {k: np.asarray(inputs[k], object if spec.dtype == tf.string
                          else spec.dtype.as_numpy_dtype)
            for k, spec in zip(names, function.input_signature)}


def save_signatures(model: tf.Module, signatures, root: pathlib.Path) -> pathlib.Path:
    """``model`` saved under ``root / "sm"`` with the methods named in ``signatures`` as
    its signatures."""
    tf.saved_model.save(model, str(root / "sm"),
                        signatures={name: getattr(model, name) for name in signatures})
    return root / "sm"


def saved_and_loaded(model: tf.Module, signatures, root: pathlib.Path):
    """``(model, module)``: ``model`` saved (:func:`save_signatures`) and loaded by
    ``jaxhub.load`` with a cache under ``root``."""
    return model, jaxhub.load(save_signatures(model, signatures, root),
                              cache_dir=root / "cache")


def tf_outputs(model: tf.Module, signature: str, arrays: dict) -> dict[str, np.ndarray]:
    """What ``model``'s ``signature`` (a ``tf.function`` returning a dict) computes."""
    out = getattr(model, signature)(**{k: tf.constant(v) for k, v in arrays.items()})
    return {k: v.numpy() for k, v in out.items()}


def assert_outputs_match(ours: dict, theirs: dict) -> None:
    """Same keys, shapes and values; TF's dtype, or its 32-bit counterpart while JAX's
    64-bit types are off."""
    assert ours.keys() == theirs.keys()
    for key, want in theirs.items():
        got = np.asarray(ours[key])
        assert got.shape == want.shape, key
        assert got.dtype == jax.dtypes.canonicalize_dtype(want.dtype), key
        np.testing.assert_allclose(got, want.astype(got.dtype), rtol=1e-6, atol=1e-6)


def assert_matches_tf(model: tf.Module, module, signature: str, arrays: dict) -> None:
    """``module.apply``, and ``preprocess`` + ``jit(apply_device)`` (when no size is 0:
    an empty size cannot be traced), give what ``model``'s ``signature`` computes."""
    theirs = tf_outputs(model, signature, arrays)
    ours = module.apply(module.params, arrays, signature=signature, as_dict=True)
    assert_outputs_match(ours, theirs)
    feeds = module.preprocess(arrays, signature=signature)
    if not all(np.size(v) for v in feeds.values()):
        return
    device = jax.jit(lambda params, feeds: module.apply_device(
        params, feeds, signature=signature, as_dict=True))
    assert_outputs_match(device(module.params, feeds), theirs)
