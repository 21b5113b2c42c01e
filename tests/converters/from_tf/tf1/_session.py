"""TensorFlow's own answers for a TF1 Hub module: its MetaGraphDef run in a v1 Session.

The MetaGraphDef for a tag set is loaded from ``saved_model.pb`` with the SavedModel
loader (variables restored from the checkpoint), the vocabulary assets fed to the table
initializers, and the signature's tensors fed and fetched by name.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

v1 = tf.compat.v1

REPO_ROOT = pathlib.Path(__file__).resolve().parents[4]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "tf1"


class TF1Session:
    """One MetaGraphDef of a TF1 Hub module, loaded into its own graph and session."""

    def __init__(self, module_dir: pathlib.Path, tags: Sequence[str] = ()):
        self.graph = tf.Graph()
        self.session = v1.Session(graph=self.graph)
        with self.graph.as_default():
            self.meta = v1.saved_model.loader.load(self.session, list(tags), str(module_dir))
            feed = {}
            if "saved_model_assets" in self.meta.collection_def:
                for item in self.meta.collection_def["saved_model_assets"].any_list.value:
                    asset = meta_graph_pb2.AssetFileDef()
                    item.Unpack(asset)
                    feed[asset.tensor_info.name] = str(module_dir / "assets" / asset.filename)
            self.session.run(v1.tables_initializer(), feed)
            self.variables = {v.op.name: v for v in v1.global_variables()}

    def close(self) -> None:
        self.session.close()

    def _signature(self, name: str):
        sig = self.meta.signature_def[name]
        inputs = {k: self.graph.get_tensor_by_name(t.name) for k, t in sig.inputs.items()}
        outputs = {k: self.graph.get_tensor_by_name(t.name) for k, t in sig.outputs.items()}
        return inputs, outputs

    def run(self, signature: str, inputs: Mapping[str, Any], fetch: Sequence[str] = (),
            feed: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The signature's outputs (and extra tensors ``fetch``) on ``inputs``; ``feed``
        overrides other tensors by name (a random op's draws)."""
        ins, outs = self._signature(signature)
        feed = {**{ins[k]: v for k, v in inputs.items()}, **dict(feed or {})}
        fetches = {**outs, **{f: self.graph.get_tensor_by_name(f) for f in fetch}}
        return self.session.run(fetches, feed)

    def grads(self, signature: str, inputs: Mapping[str, Any],
              cotangents: Mapping[str, np.ndarray], wrt_inputs: Sequence[str] = ()
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Gradients of ``sum(outputs * cotangents)`` by variable op name and by input."""
        ins, outs = self._signature(signature)
        with self.graph.as_default():
            loss = tf.add_n([tf.reduce_sum(outs[k] * c) for k, c in cotangents.items()])
            names = sorted(self.variables)
            targets = [self.variables[n] for n in names] + [ins[k] for k in wrt_inputs]
            grads = v1.gradients(loss, targets)
        pairs = [(t, g) for t, g in zip(targets, grads) if g is not None]
        values = self.session.run([g for _, g in pairs], {ins[k]: v for k, v in inputs.items()})
        by_target = {id(t): v for (t, _), v in zip(pairs, values)}
        var_grads = {}
        for n in names:
            g = by_target.get(id(self.variables[n]))
            var_grads[n] = np.zeros(self.variables[n].shape, np.float32) if g is None else (
                _dense(g))
        input_grads = {k: _dense(by_target[id(ins[k])]) for k in wrt_inputs}
        return var_grads, input_grads

    def collection_values(self, key: str) -> list[np.ndarray]:
        with self.graph.as_default():
            return self.session.run(v1.get_collection(key))


def _dense(value: Any) -> np.ndarray:
    """A gradient as a dense array (TF returns ``IndexedSlices`` for gathers)."""
    if hasattr(value, "indices") and hasattr(value, "dense_shape"):
        out = np.zeros(value.dense_shape, value.values.dtype)
        np.add.at(out, value.indices, value.values)
        return out
    return np.asarray(value)


def flat_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """A params tree as ``{"dense1/kernel": array}``, the TF variable names."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_params(value, name + "/"))
        else:
            flat[name] = np.asarray(value)
    return flat
