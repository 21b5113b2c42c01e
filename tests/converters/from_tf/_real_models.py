"""TF's reference for the real-model suite, computed in fresh processes.

The reference runs in its own processes, one per CPU kernel path of TF (oneDNN on and
off), each serving every model (importing TF once): the tests compare jaxhub with both
paths on any machine, and a crash cannot take the test run with it. TF's gradient of one
shipped model (fer) corrupts the heap with oneDNN on (see :data:`GRADIENTS_WITHOUT_ONEDNN`),
so its gradients come from the other path in both references.

Run as ``python -m tests.converters.from_tf._real_models WORKDIR IN.npz OUT.npz
[--values-only MODEL ...]``: ``IN.npz`` holds ``{model}/{case}/in/{input}`` arrays, for
the SavedModel ``WORKDIR/{model}``; ``OUT.npz`` gets ``{model}/{case}/out/{output}``,
``.../ct/{output}`` (the seeded cotangent of each output, see :func:`_cotangents`), ``.../gin/{input}``
(gradients of ``sum(outputs * cotangents)`` with respect to float inputs) and
``.../gvar/{TF variable name}`` (and to every trainable variable).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import re
import subprocess
import sys
from typing import Mapping, Sequence

import numpy as np

from benchmarks import real_models
from tests.conftest import repo_pythonpath

#: Models whose TF gradient aborts with oneDNN on: their gradients come from TF's own
#: (Eigen) kernels on both paths; their values come from each path. fer's residual 1x1
#: conv with stride 2 over 8 input channels (``conv2d_3``): oneDNN 3.7's AVX-512 kernel
#: for its ``Conv2DBackpropFilter`` (``jit_1x1``, NHWC, fewer input channels than its
#: block of 16) damages the heap, and the process aborts in a later ``malloc``.
GRADIENTS_WITHOUT_ONEDNN = frozenset({"fer"})

#: Models whose gradient TF cannot compute: cutkum's frozen graph holds TF 1 while loops
#: without the while contexts TF 1's gradient code reads (a ``GraphDef`` does not keep
#: them: "'NoneType' object has no attribute 'outer_context'"), and TF 2 cannot
#: differentiate TF 1 loops inside a function (as musicnn's ``Merge``). Only their values
#: are compared.
VALUES_ONLY = frozenset({"cutkum"})

#: Models without trainable variables: frozen graphs whose weights are constants
#: (deepbrain's). Their gradients are the inputs' only.
NO_VARIABLES = frozenset({"deepbrain", "deepbrain_96"})

Reference = dict[str, dict[str, dict[str, np.ndarray]]]  # case -> kind -> name -> array


#: TF's two CPU kernel paths, and the setting that picks each in a fresh process.
KERNEL_PATHS = {"onednn": "1", "eigen": "0"}


def tf_references(inputs: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
                  workdir: pathlib.Path) -> dict[str, dict[str, Reference]]:
    """TF's outputs and gradients for each model and case, on both CPU kernel paths.

    Both paths are computed on every machine (each in its own process, side by side), so
    one run of the tests checks jaxhub against each, whichever path this CPU picks.

    Args:
      inputs: model -> case -> the serving signature's inputs.
      workdir: holds each model's SavedModel as ``workdir/{model}``; inputs and results
        are passed through files there.

    Returns:
      ``{path: {model: {case: {"out", "ct", "gin", "gvar": {name: array}}}}}`` for each
      path of :data:`KERNEL_PATHS`.
    """
    src = workdir / "reference-in.npz"
    np.savez(src, **{f"{model}/{case}/in/{k}": v for model, cases in inputs.items()
                     for case, arrays in cases.items() for k, v in arrays.items()})
    eigen_grads = sorted(GRADIENTS_WITHOUT_ONEDNN & set(inputs))
    values_only = {path: sorted(VALUES_ONLY & set(inputs)) for path in KERNEL_PATHS}
    values_only["onednn"] += eigen_grads
    runs = {path: _start(workdir, src, workdir / f"reference-{path}.npz",
                         {"TF_ENABLE_ONEDNN_OPTS": setting}, values_only=values_only[path])
            for path, setting in KERNEL_PATHS.items()}
    results = {path: _finish(*run) for path, run in runs.items()}
    results["onednn"].update({k: v for k, v in results["eigen"].items()
                              if k.split("/", 1)[0] in eigen_grads and "/out/" not in k})
    return {path: _nest(result) for path, result in results.items()}


def _nest(result: Mapping[str, np.ndarray]) -> dict[str, Reference]:
    nested: dict[str, Reference] = {}
    for key, value in result.items():
        model, case, kind, name = key.split("/", 3)
        kinds = nested.setdefault(model, {}).setdefault(
            case, {"out": {}, "ct": {}, "gin": {}, "gvar": {}})
        kinds[kind][name] = value
    return nested


def _start(workdir: pathlib.Path, src: pathlib.Path, dst: pathlib.Path,
           env: Mapping[str, str], *, values_only: Sequence[str] = ()
           ) -> tuple[subprocess.Popen, pathlib.Path]:
    """Starts a reference process; :func:`_finish` waits for it and reads its result."""
    command = [sys.executable, "-m", __name__, str(workdir), str(src), str(dst)]
    if values_only:
        command += ["--values-only", *values_only]
    proc = subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=repo_pythonpath(), **env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, dst


def _finish(proc: subprocess.Popen, dst: pathlib.Path) -> dict[str, np.ndarray]:
    _, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 0, f"TF reference failed ({proc.returncode}):\n" + stderr[-3000:]
    with np.load(dst) as saved:
        return dict(saved)


def _write_references(workdir: str, src: str, dst: str, values_only: list[str]) -> None:
    inputs: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    with np.load(src) as saved:
        for key in saved.files:
            model, case, _, name = key.split("/", 3)
            inputs.setdefault(model, {}).setdefault(case, {})[name] = saved[key]
    result = {}
    for model, cases in inputs.items():
        path = pathlib.Path(workdir) / model
        for key, value in _reference(path, cases, model not in values_only).items():
            result[f"{model}/{key}"] = value
    np.savez(dst, **result)


def _reference(saved_model: pathlib.Path, cases: Mapping[str, Mapping[str, np.ndarray]],
               grads: bool) -> dict[str, np.ndarray]:
    """Values from the TF 2 SavedModel; gradients from it, or from the TF 1 SavedModel
    kept beside TF 1 code's (see :func:`_tf1_gradients`)."""
    tf1 = real_models.tf1_saved_model(saved_model)
    if not (grads and tf1.is_dir()):
        return _tf2_reference(saved_model, cases, grads)
    return {**_tf1_gradients(tf1, cases), **_tf2_reference(saved_model, cases, grads=False)}


def _tf2_reference(saved_model: pathlib.Path, cases: Mapping[str, Mapping[str, np.ndarray]],
                   grads: bool) -> dict[str, np.ndarray]:
    import tensorflow as tf
    loaded = tf.saved_model.load(str(saved_model))  # owns the variables: keep it alive
    signature = loaded.signatures["serving_default"]
    variables = signature.trainable_variables
    result = {}
    for case, inputs in cases.items():
        tensors = {k: tf.constant(v) for k, v in inputs.items()}
        floats = {k: t for k, t in tensors.items() if t.dtype.is_floating}
        # No tape for values only: TF builds the gradient of a function as it records it.
        # One gradient call, not a persistent tape: recording a Keras 3 LSTM's function
        # (a while loop over variables) on a persistent tape fails in TF 2.21 ("a variable
        # without handle data").
        with tf.GradientTape() if grads else contextlib.nullcontext() as tape:
            if grads:
                tape.watch(list(floats.values()))
            outputs = signature(**tensors)
            cts = _cotangents({k: o.numpy() for k, o in outputs.items()})
            loss = tf.add_n([tf.reduce_sum(o * cts[k]) for k, o in outputs.items()])
        result.update({f"{case}/out/{k}": o.numpy() for k, o in outputs.items()})
        result.update({f"{case}/ct/{k}": c for k, c in cts.items()})
        if not grads:
            continue
        gradients = tape.gradient(loss, [*floats.values(), *variables])
        for (k, t), g in zip(floats.items(), gradients):
            result[f"{case}/gin/{k}"] = _dense(g, t)
        for v, g in zip(variables, gradients[len(floats):]):
            result[f"{case}/gvar/{_tf_name(v)}"] = _dense(g, v)
    return result


def _tf1_gradients(saved_model: pathlib.Path, cases: Mapping[str, Mapping[str, np.ndarray]]
                   ) -> dict[str, np.ndarray]:
    """Gradients (and cotangents) by a TF 1 session from the TF 1 SavedModel of TF 1 code.

    TF 2 cannot differentiate such a graph once saved as a TF 2 function (the gradient of
    its ``Merge`` nodes fails with "None values not supported"); TF 1's ``tf.gradients``
    can, in the graph it was built in, with TF 1's control flow (the gradients of
    ``TensorArrayV3`` ops make TF 1 TensorArrays).
    """
    import tensorflow as tf
    tf.compat.v1.disable_control_flow_v2()
    try:
        return _tf1_session_gradients(saved_model, cases)
    finally:
        tf.compat.v1.enable_control_flow_v2()


def _tf1_session_gradients(saved_model: pathlib.Path,
                           cases: Mapping[str, Mapping[str, np.ndarray]]
                           ) -> dict[str, np.ndarray]:
    import tensorflow as tf
    result = {}
    with tf.Graph().as_default() as graph, tf.compat.v1.Session() as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(saved_model))
        signature = meta.signature_def["serving_default"]
        feeds = {k: graph.get_tensor_by_name(t.name) for k, t in signature.inputs.items()}
        outputs = {k: graph.get_tensor_by_name(t.name) for k, t in signature.outputs.items()}
        cts = {k: tf.compat.v1.placeholder(tf.float32) for k in outputs}
        loss = tf.add_n([tf.reduce_sum(o * cts[k]) for k, o in outputs.items()])
        variables = tf.compat.v1.trainable_variables()
        floats = {k: t for k, t in feeds.items() if t.dtype.is_floating}
        # Dense: the gradient of a TF 1 embedding lookup is IndexedSlices.
        grad_tensors = [tf.convert_to_tensor(g) for g in
                        tf.gradients(loss, list(floats.values()) + variables)]
        for case, inputs in cases.items():
            feed = {feeds[k]: v for k, v in inputs.items()}
            values = session.run(outputs, feed)
            ct_values = _cotangents(values)
            feed.update({cts[k]: v for k, v in ct_values.items()})
            grads = session.run(grad_tensors, feed)
            result.update({f"{case}/ct/{k}": v for k, v in ct_values.items()})
            result.update({f"{case}/gin/{k}": g for k, g in zip(floats, grads)})
            result.update({f"{case}/gvar/{_tf_name(v)}": g
                           for v, g in zip(variables, grads[len(floats):])})
    return result


#: Outputs above this are saturated probabilities (softmax): their cotangents are zero.
SATURATED = 0.999


def _cotangents(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Seeded normal cotangents of ``outputs``, zero where an output is saturated.

    Through a softmax at ``p`` close to 1, the gradient ``p * (ct - sum(p * ct))`` is a
    difference of nearly equal numbers in float32: noise that differs between TF's own
    kernel paths (a splice-site model's confident softmax: up to 2.9e-1 between TF with
    and without oneDNN; 1.4e-6 with these cotangents).
    """
    rng = np.random.default_rng(7)
    return {k: np.where(outputs[k] > SATURATED, 0.0, rng.standard_normal(
        np.shape(outputs[k]))).astype(np.float32) for k in sorted(outputs)}


def _tf_name(variable) -> str:
    return re.sub(r":\d+$", "", variable.name)


def _dense(grad, like) -> np.ndarray:
    """A gradient as an array: zeros for None, dense for an embedding's IndexedSlices."""
    import tensorflow as tf
    if grad is None:
        return np.zeros(like.shape, like.dtype.as_numpy_dtype)
    return tf.convert_to_tensor(grad).numpy()


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--values-only", nargs="*", default=[],
                        help="models whose gradients are not computed")
    args = parser.parse_args()
    _write_references(args.workdir, args.src, args.dst, args.values_only)
