"""Shared checks for converted TF graphs: outputs and gradients against TensorFlow.

Every check runs the JAX side both eagerly and under ``jax.jit``, and compares the
gradients of one random linear function of the outputs with respect to the inputs and to
every trainable param against ``tf.GradientTape``.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import textwrap
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from tests.conftest import repo_pythonpath

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


def as_dict(outputs: Any) -> dict[str, np.ndarray]:
    """TF or JAX outputs (a tensor or a dict) as a dict of numpy arrays."""
    if isinstance(outputs, Mapping):
        return {k: np.asarray(v) for k, v in outputs.items()}
    return {"default": np.asarray(outputs)}


def cotangents(outputs: Mapping[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(np.shape(v)).astype(np.float32) for k, v in outputs.items()}


def tf_reference(tf_fn: Callable[[dict], Any], inputs: Mapping[str, np.ndarray],
                 variables) -> dict[str, Any]:
    """TF outputs, and gradients of ``sum(outputs * cotangents)`` (inputs and variables).

    Returns:
      ``{"outputs", "cotangents", "input_grads", "var_grads"}``; ``var_grads`` is keyed by
      variable name without the ``:0`` suffix.
    """
    tensors = {k: tf.constant(v) for k, v in inputs.items()}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(list(tensors.values()))
        outputs = _tf_dict(tf_fn(tensors))
        cts = cotangents(outputs)
        loss = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32) * cts[k])
                         for k, o in outputs.items()])
    input_grads = tape.gradient(loss, tensors)
    var_grads = tape.gradient(loss, list(variables))
    return {
        "outputs": {k: v.numpy() for k, v in outputs.items()},
        "cotangents": cts,
        "input_grads": {k: _zeros_if_none(g, inputs[k]) for k, g in input_grads.items()},
        "var_grads": {_strip(v.name): _zeros_if_none(g, v.numpy())
                      for v, g in zip(variables, var_grads)},
    }


def _tf_dict(outputs: Any) -> dict[str, Any]:
    return dict(outputs) if isinstance(outputs, Mapping) else {"default": outputs}


def _zeros_if_none(grad, like) -> np.ndarray:
    return np.zeros(np.shape(like), np.float32) if grad is None else np.asarray(grad)


def _strip(name: str) -> str:
    return re.sub(r":\d+$", "", name)


def jax_outputs_and_grads(module, inputs: Mapping[str, np.ndarray], cts, *,
                          signature: str, jit: bool, params=None):
    """Outputs and gradients (params, inputs) of ``sum(outputs * cts)`` through the module."""
    params = module.params if params is None else params

    assigns = bool(module.manifest.function(frozenset(), signature).state)

    def apply(p, x):  # a signature that assigns variables also returns their new values
        result = module.apply(p, x, signature=signature, as_dict=True)
        return result[0] if assigns else result

    def loss(p, x):
        outs = apply(p, x)
        return sum(jnp.sum(outs[k].astype(jnp.float32) * cts[k]) for k in cts)

    grad = jax.grad(loss, argnums=(0, 1), allow_int=True)  # int params: seed states
    if jit:
        apply, grad = jax.jit(apply), jax.jit(grad)
    outputs = apply(params, dict(inputs))
    param_grads, input_grads = grad(params, dict(inputs))
    return as_dict(outputs), param_grads, input_grads


def assert_matches_tf(module, tf_fn, inputs: Mapping[str, np.ndarray], variables, *,
                      signature: str, rtol: float = 1e-4, atol: float = 1e-4) -> dict:
    """Asserts that ``module``'s signature matches ``tf_fn`` in values and gradients.

    Runs the JAX side eagerly and jitted. Returns the TF reference (see
    :func:`tf_reference`) for further checks.
    """
    ref = tf_reference(tf_fn, inputs, variables)
    names = module.attachments["tf_variable_names"]
    trainable = dict(_flatten(module.trainable_mask))
    checked = 0
    for jit in (False, True):
        outputs, param_grads, input_grads = jax_outputs_and_grads(
            module, inputs, ref["cotangents"], signature=signature, jit=jit)
        assert sorted(outputs) == sorted(ref["outputs"])
        for k, expected in ref["outputs"].items():
            np.testing.assert_allclose(outputs[k], expected, rtol=rtol, atol=atol,
                                       err_msg=f"output {k!r} (jit={jit})")
        for k, expected in ref["input_grads"].items():
            np.testing.assert_allclose(input_grads[k], expected, rtol=rtol, atol=atol,
                                       err_msg=f"gradient wrt input {k!r} (jit={jit})")
        for path, grad in _flatten(param_grads):
            tf_name = _strip(names[path])
            if not trainable[path] or tf_name not in ref["var_grads"]:
                continue
            np.testing.assert_allclose(grad, ref["var_grads"][tf_name], rtol=rtol, atol=atol,
                                       err_msg=f"gradient wrt param {path} (jit={jit})")
            checked += 1
    assert checked, "no trainable param gradient was compared"
    return ref


def _flatten(tree) -> list[tuple[str, Any]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [("/".join(str(k.key) for k in path), leaf) for path, leaf in leaves]


_ROUND_TRIP = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    import jaxhub
    module_dir, data, signature, out = sys.argv[1:5]
    data = np.load(data)
    inputs = {k[3:]: data[k] for k in data.files if k.startswith("in:")}
    cts = {k[3:]: data[k] for k in data.files if k.startswith("ct:")}
    module = jaxhub.load(module_dir)

    def loss(p, x):
        outs = module.apply(p, x, signature=signature, as_dict=True)
        return sum(jnp.sum(outs[k] * cts[k]) for k in cts)

    outputs = jax.jit(lambda p, x: module.apply(p, x, signature=signature, as_dict=True))(
        module.params, inputs)
    param_grads, input_grads = jax.jit(jax.grad(loss, argnums=(0, 1), allow_int=True))(
        module.params, inputs)
    assert "tensorflow" not in sys.modules, "loading a converted module imported TensorFlow"
    result = {f"out:{k}": np.asarray(v) for k, v in outputs.items()}
    result.update({f"gin:{k}": np.asarray(v) for k, v in input_grads.items()})
    flat, _ = jax.tree_util.tree_flatten_with_path(param_grads)
    result.update({"gp:" + "/".join(str(k.key) for k in path): np.asarray(v)
                   for path, v in flat if v.dtype != jax.dtypes.float0})
    np.savez(out, **result)
""")


def round_trip_in_fresh_process(module_dir: pathlib.Path, inputs, ref, signature: str,
                                workdir: pathlib.Path) -> dict[str, np.ndarray]:
    """Loads ``module_dir`` in a new Python process that never imports TensorFlow.

    Returns what that process computed: ``out:``, ``gin:`` and ``gp:`` entries.
    """
    data = workdir / "round_trip_in.npz"
    np.savez(data, **{f"in:{k}": v for k, v in inputs.items()},
             **{f"ct:{k}": v for k, v in ref["cotangents"].items()})
    out = workdir / "round_trip_out.npz"
    env = dict(os.environ, PYTHONPATH=repo_pythonpath(), JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _ROUND_TRIP, str(module_dir), str(data),
                           signature, str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as result:
        return dict(result)


def assert_round_trip_matches(result: Mapping[str, np.ndarray], module, ref, *,
                              rtol: float = 1e-4, atol: float = 1e-4) -> None:
    """Checks a fresh process's results against TF's (outputs, input and param grads)."""
    for k, expected in ref["outputs"].items():
        np.testing.assert_allclose(result[f"out:{k}"], expected, rtol=rtol, atol=atol)
    for k, expected in ref["input_grads"].items():
        np.testing.assert_allclose(result[f"gin:{k}"], expected, rtol=rtol, atol=atol)
    names = module.attachments["tf_variable_names"]
    trainable = dict(_flatten(module.trainable_mask))
    compared = 0
    for path, is_trainable in trainable.items():
        tf_name = _strip(names[path])
        if is_trainable and tf_name in ref["var_grads"]:
            np.testing.assert_allclose(result[f"gp:{path}"], ref["var_grads"][tf_name],
                                       rtol=rtol, atol=atol, err_msg=path)
            compared += 1
    assert compared
