"""Converts TF modules in a venv without TensorFlow and matches TF's stored answers.

Two steps, run by ``scripts/check-no-tf-convert`` in two venvs:

``build OUT`` (a venv with TensorFlow) writes a small zoo of SavedModels and TF1 Hub
modules to ``OUT`` (a Keras application, a text module with a vocabulary, a
SentencePiece tokenizer and classifier, loops and branches with a train variant, and the committed TF1 Hub fixtures: an MLP with a train
variant, a text module, v1 control flow) and, for each, TF's outputs and the gradients
of ``sum(outputs * cotangents)`` by input and by variable, in ``OUT/<case>.npz``, with
``OUT/cases.json`` saying how to call each.

``check OUT`` (a venv without TensorFlow) loads every case with ``jaxhub.load``,
applies it, differentiates it with JAX and compares; it fails if TensorFlow is
importable or got imported.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import sys
import time
from typing import Any

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
RTOL = 2e-4  # of max|TF value|: float32 sums in other orders


def _strip(name: str) -> str:
    return re.sub(r":\d+$", "", name)


# -- build (with TensorFlow) -------------------------------------------------------------


def build(out: pathlib.Path) -> None:
    sys.path.insert(0, str(REPO))
    import tensorflow as tf

    from tests.converters.from_tf import _zoo
    from tests.converters.from_tf.control_flow_test import SPEC, Stateful
    from tests.converters.from_tf.host_stages.string_functions_test import STRINGS, _TextModel
    from tests.converters.from_tf.tf1._session import FIXTURES, TF1Session

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    cases: dict[str, dict[str, Any]] = {}

    def tf2_case(name: str, path: pathlib.Path, signature: str, inputs: dict[str, Any]):
        loaded = tf.saved_model.load(str(path))
        fn = loaded.signatures[signature]
        names = list(fn.structured_input_signature[1])
        if len(names) == len(inputs) == 1:  # named by the exporter (Keras: keras_tensor)
            inputs = {names[0]: next(iter(inputs.values()))}
        tensors = {k: tf.constant(v) for k, v in inputs.items()}
        floats = [k for k, t in tensors.items() if t.dtype.is_floating]
        variables = list(fn.trainable_variables)
        with tf.GradientTape() as tape:
            for k in floats:
                tape.watch(tensors[k])
            outs = fn(**tensors)
            cts = {k: rng.standard_normal(v.shape).astype(np.float32)
                   for k, v in outs.items() if v.dtype.is_floating}
            loss = tf.add_n([tf.reduce_sum(outs[k] * c) for k, c in cts.items()])
        grads = tape.gradient(loss, [tensors[k] for k in floats] + variables)
        # Dense numpy arrays (an embedding's gradient comes as IndexedSlices).
        grads = [None if g is None else tf.convert_to_tensor(g).numpy() for g in grads]
        names = [_strip(v.name) for v in variables]
        unique = {n for n in names if names.count(n) == 1}
        _save(out, name, inputs, {k: v.numpy() for k, v in outs.items()}, cts,
              {k: g for k, g in zip(floats, grads) if g is not None},
              {n: g for n, g in zip(names, grads[len(floats):])
               if n in unique and g is not None})
        cases[name] = {"path": str(path), "signature": signature}

    # A Keras application, exported by Keras 3 (signature "serve").
    spec = _zoo.MODELS["MobileNetV2"]
    model = _zoo.build(spec)
    _zoo.keras_export(model, out / "keras_mobilenetv2")
    tf2_case("keras_mobilenetv2", out / "keras_mobilenetv2", "serve",
             {"images": _zoo.images(spec)})
    # Strings through a vocabulary table (a host stage) into an embedding.
    (out / "vocab.txt").write_text("a\nlong\nsentence\nsingle\nword\n")
    text = _TextModel(out / "vocab.txt")
    tf.saved_model.save(text, str(out / "tf2_text"),
                        signatures={"serving_default": text.__call__})
    tf2_case("tf2_text", out / "tf2_text", "serving_default",
             {"s": np.array([s.encode() for s in STRINGS], dtype=object)})
    # SentencePiece (tensorflow_text) to logits: the model proto becomes a module asset.
    from tests.converters.from_tf.host_stages import sentencepiece_test as spm_test
    sentencepiece = spm_test._SentencePieceModel(spm_test._train("unigram", 48))
    tf.saved_model.save(sentencepiece, str(out / "tf2_sentencepiece"),
                        signatures={"classify": sentencepiece.classify})
    tf2_case("tf2_sentencepiece", out / "tf2_sentencepiece", "classify",
             {"text": np.array(spm_test.TEXTS, dtype=object)})
    # Loops, branches and variable assignments; __call__(training=True): a train variant.
    stateful = Stateful()
    stateful.__call__.get_concrete_function(SPEC, training=True)
    serving = stateful.__call__.get_concrete_function(SPEC, training=False)
    tf.saved_model.save(stateful, str(out / "tf2_control_flow"),
                        signatures={"serving_default": serving})
    x = rng.standard_normal((3, 4)).astype(np.float32)
    tf2_case("tf2_control_flow", out / "tf2_control_flow", "serving_default", {"x": x})
    loaded = tf.saved_model.load(str(out / "tf2_control_flow"))
    train_outs = loaded(tf.constant(x), training=True)
    _save(out, "tf2_control_flow_train", {"default": x},
          {k: v.numpy() for k, v in train_outs.items()}, {}, {}, {},
          state={"stats/mean": loaded.mean.numpy(), "stats/steps": loaded.steps.numpy()})
    cases["tf2_control_flow_train"] = {"path": str(out / "tf2_control_flow"),
                                       "signature": "default", "tags": "train"}

    # TF1 Hub modules (committed fixtures, made by tests/fixtures/tf1/make_tf1_fixtures.py).
    def tf1_case(name: str, fixture: str, signature: str, inputs: dict[str, Any],
                 tags: tuple[str, ...] = (), grads: bool = True):
        path = out / fixture
        if not path.exists():
            shutil.copytree(FIXTURES / fixture, path)
        session = TF1Session(path, tags)
        outs = session.run(signature, inputs)
        cts, var_grads, input_grads = {}, {}, {}
        if grads:
            cts = {k: rng.standard_normal(np.shape(v)).astype(np.float32)
                   for k, v in outs.items() if np.asarray(v).dtype.kind == "f"}
            floats = [k for k, v in inputs.items() if np.asarray(v).dtype.kind == "f"
                      and np.ndim(v) > 0]
            var_grads, input_grads = session.grads(signature, inputs, cts, floats)
            trainable = {v.op.name for v in
                         session.graph.get_collection("trainable_variables")}
            var_grads = {k: v for k, v in var_grads.items() if k in trainable}
        session.close()
        _save(out, name, inputs, outs, cts, input_grads, var_grads)
        cases[name] = {"path": str(path), "signature": signature,
                       "tags": ",".join(tags) or None}

    x1 = rng.standard_normal((5, 6)).astype(np.float32)
    tf1_case("tf1_mlp", "mlp", "default", {"x": x1})
    tf1_case("tf1_mlp_features", "mlp", "features", {"a": x1, "scale": np.float32(0.5)})
    tf1_case("tf1_mlp_train", "mlp", "features", {"a": x1, "scale": np.float32(2.0)},
             tags=("train",), grads=False)
    tf1_case("tf1_text", "text", "default",
             {"default": np.array([b"the quick brown fox", b"an unknown word"],
                                  dtype=object)})
    tf1_case("tf1_control_flow", "control_flow", "default", {"default": x1[:, :3]})
    (out / "cases.json").write_text(json.dumps(cases, indent=1))
    print(f"built {len(cases)} cases in {out}")


def _save(out: pathlib.Path, name: str, inputs, outputs, cts, input_grads, var_grads,
          state=None) -> None:
    arrays = {}
    for prefix, values in (("in", inputs), ("out", outputs), ("ct", cts),
                           ("gin", input_grads), ("gvar", var_grads), ("state", state or {})):
        for key, value in values.items():
            arrays[f"{prefix}:{key}"] = np.asarray(value)
    np.savez(out / f"{name}.npz", **arrays)


# -- check (without TensorFlow) ---------------------------------------------------------


def check(out: pathlib.Path) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        sys.exit("check must run in a venv without TensorFlow")
    import jax
    import jax.numpy as jnp

    import jaxhub

    cases = json.loads((out / "cases.json").read_text())
    cache = out / "_cache"
    shutil.rmtree(cache, ignore_errors=True)
    failures = []
    for name, case in cases.items():
        start = time.perf_counter()
        data = dict(np.load(out / f"{name}.npz", allow_pickle=True))
        part = lambda prefix: {k.split(":", 1)[1]: v for k, v in data.items()  # noqa: E731
                               if k.startswith(prefix + ":")}
        inputs, expected = part("in"), part("out")
        module = jaxhub.load(case["path"], cache_dir=cache)
        loaded = time.perf_counter() - start
        tags, signature = case.get("tags"), case["signature"]
        errors = []
        if tags:
            outs, state = module(inputs, signature=signature, as_dict=True, tags=tags,
                                 rng=jax.random.key(0))
            errors += _compare("output", outs, expected)
            flat = dict(_flatten(state))
            errors += _compare("state", {k: flat.get(k) for k in part("state")},
                               part("state"))
        else:
            outs = _outputs(module(inputs, signature=signature, as_dict=True))
            errors += _compare("output", outs, expected)
            cts, gin, gvar = part("ct"), part("gin"), part("gvar")
            if cts:
                floats = {k: inputs[k] for k in gin}

                def loss(params, floats):
                    outs = _outputs(module.apply(params, {**inputs, **floats},
                                                 signature=signature, as_dict=True))
                    outs = _single(outs, cts)
                    return sum(jnp.sum(outs[k] * c) for k, c in cts.items())

                param_grads, input_grads = jax.grad(loss, argnums=(0, 1))(module.params,
                                                                          floats)
                errors += _compare("input gradient", input_grads, gin)
                flat = dict(_flatten(param_grads))
                by_tf = {_strip(v): k for k, v in
                         module.attachments["tf_variable_names"].items()}
                mine = {tf: flat[by_tf[tf]] for tf in gvar if tf in by_tf}
                missing = sorted(set(gvar) - set(mine))
                if missing:
                    errors.append(f"no param for TF variables {missing[:3]}")
                errors += _compare("variable gradient", mine, {k: gvar[k] for k in mine})
                compared = f"{len(gin)} input and {len(mine)} variable gradients"
            else:
                compared = "no gradients"
        if tags:
            compared = f"variant {tags!r}, {len(part('state'))} state values"
        status = "ok" if not errors else "FAILED: " + "; ".join(errors)
        print(f"{name:24s} converted+loaded in {loaded:5.1f}s, {len(expected)} outputs, "
              f"{compared}: {status}")
        if errors:
            failures.append(name)
    leaked = [m for m in sys.modules
              if m.split(".")[0] in ("tensorflow", "tf_keras", "tensorflow_text")]
    if leaked:
        failures.append(f"imported {leaked[:3]}")
    if failures:
        sys.exit(f"no-TensorFlow conversion failed: {failures}")
    print(f"all {len(cases)} cases match TensorFlow without TensorFlow installed")


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flatten(value, f"{prefix}{key}/")
    else:
        yield prefix[:-1], tree


def _outputs(result):
    """A call's outputs: a signature that assigns variables returns (outputs, state)."""
    return result[0] if isinstance(result, tuple) else result


def _single(actual: dict, expected: dict) -> dict:
    """``actual`` keyed as ``expected`` when both hold one value under other names."""
    if set(actual) != set(expected) and len(actual) == len(expected) == 1:
        return {next(iter(expected)): next(iter(actual.values()))}
    return actual


def _compare(what: str, actual: dict, expected: dict) -> list[str]:
    actual = _single(dict(actual), expected)
    errors = []
    for key, want in expected.items():
        got = actual.get(key)
        if got is None:
            errors.append(f"{what} {key!r} missing")
            continue
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape:
            errors.append(f"{what} {key!r}: shape {got.shape} != {want.shape}")
        elif want.dtype.kind in "fc":
            scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-6)
            err = float(np.max(np.abs(got - want))) / scale if want.size else 0.0
            if err > RTOL:
                errors.append(f"{what} {key!r}: relative error {err:.2e}")
        elif not np.array_equal(got, want):
            errors.append(f"{what} {key!r} differs")
    return errors


if __name__ == "__main__":
    command, directory = sys.argv[1], pathlib.Path(sys.argv[2])
    {"build": build, "check": check}[command](directory)
