"""Host stages: the string and table part of a signature, kept as data and run with numpy.

Text modules take strings and look words up in vocabulary tables: work no accelerator
does. A converter splits such a signature in two: a *host stage* (a small program of TF
ops, stored as JSON in the module's attachments, with its vocabulary files as assets) and
the device function (``jax.export``), which gets the host stage's numeric results. Loading
runs no Python code from the module: the program only names ops from
:mod:`jaxhub.host.ops`.

The JSON form (one per signature, under the attachment :data:`ATTACHMENT_KEY`)::

  {"inputs": {"default": {"dtype": "string", "shape": [null]}},
   "nodes": [{"name": "lower", "op": "StringLower", "inputs": [["default", 0]],
              "attrs": {...}}, ...],
   "init": ["table_init"],                # run once per call, before anything else
   "outputs": {"ids": ["lookup", 0], ...},  # the device function's inputs
   "size_of": {"segments": ["seg", 0]}}   # feeds whose *shape* carries a size: zeros
                                           # of length max(value) + 1

Constants are ``{"op": "Const", "attrs": {"value": <encoded array>}}``; a file of the
module is ``{"op": "Asset", "attrs": {"name": "vocab.txt"}}``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Mapping

import numpy as np

from jaxhub.host import ops as host_ops

#: The attachment that holds a module's host stages, by signature name.
ATTACHMENT_KEY = "jaxhub.host_stages"


class HostStageError(ValueError):
    """A host stage is malformed, names an unknown op, or got bad inputs."""


@dataclasses.dataclass(frozen=True)
class HostNode:
    """One op of a host stage."""

    name: str
    op: str
    inputs: tuple[tuple[str, int], ...]
    attrs: Mapping[str, Any]


def encode_array(value: np.ndarray) -> dict[str, Any]:
    """A numpy array (numbers or bytes strings) as JSON."""
    value = np.asarray(value)
    if value.dtype == object or value.dtype.kind in "SU":
        flat = [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)
                for v in value.reshape(-1)]
        return {"dtype": "string", "shape": list(value.shape), "values": flat}
    return {"dtype": value.dtype.name, "shape": list(value.shape),
            "values": value.reshape(-1).tolist()}


def decode_array(data: Mapping[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode_array`."""
    if data["dtype"] == "string":
        flat = np.empty(len(data["values"]), dtype=object)
        flat[:] = [v.encode("utf-8", "surrogateescape") for v in data["values"]]
        return flat.reshape(data["shape"])
    return np.asarray(data["values"], dtype=data["dtype"]).reshape(data["shape"])


class HostStage:
    """A parsed host stage, ready to run on concrete inputs."""

    def __init__(self, data: Mapping[str, Any]):
        try:
            self.input_specs = dict(data["inputs"])
            self.nodes = [HostNode(n["name"], n["op"],
                                   tuple((s, int(i)) for s, i in n.get("inputs", ())),
                                   dict(n.get("attrs", {}))) for n in data["nodes"]]
            self.init = list(data.get("init", ()))
            self.outputs = {k: (s, int(i)) for k, (s, i) in data["outputs"].items()}
            self.size_of = {k: (s, int(i)) for k, (s, i) in data.get("size_of", {}).items()}
        except (KeyError, TypeError, ValueError) as e:
            raise HostStageError(f"malformed host stage: {e!r}") from None
        unknown = sorted({n.op for n in self.nodes
                          if n.op not in ("Const", "Asset") and host_ops.lookup(n.op) is None})
        if unknown:
            raise HostStageError(f"host stage uses ops this jaxhub cannot run: {unknown}")

    def run(self, inputs: Any, assets: Mapping[str, pathlib.Path]) -> dict[str, np.ndarray]:
        """Runs the stage on ``inputs`` (one array or a dict by input name).

        Returns:
          The device function's inputs by name: the stage's results as numeric numpy
          arrays (int64 as int32, the integer width JAX uses by default), and the inputs
          the stage does not take, unchanged.

        Raises:
          HostStageError: missing or extra inputs, or an op failed (the node is named).
        """
        if not isinstance(inputs, Mapping):
            if len(self.input_specs) != 1:
                raise HostStageError(f"host stage takes inputs {sorted(self.input_specs)}, "
                                     f"not one unnamed value")
            inputs = {next(iter(self.input_specs)): inputs}
        missing = sorted(set(self.input_specs) - set(inputs))
        if missing:
            raise HostStageError(f"host stage takes inputs {sorted(self.input_specs)}; "
                                 f"missing {missing}")
        env: dict[str, list[Any]] = {k: [_as_input(inputs[k], spec)]
                                     for k, spec in self.input_specs.items()}
        by_name = {n.name: n for n in self.nodes}
        for name in self.init:  # table initializers, before any lookup
            self._run_node(by_name[name], by_name, env, assets)
        for node in self.nodes:
            self._run_node(node, by_name, env, assets)
        # Inputs the stage does not take (numbers) go to the device function unchanged.
        feeds = {k: v for k, v in inputs.items() if k not in self.input_specs}
        feeds.update({k: _device_array(env[s][i]) for k, (s, i) in self.outputs.items()})
        for key, (s, i) in self.size_of.items():
            values = np.asarray(env[s][i])
            feeds[key] = np.zeros(int(values.max()) + 1 if values.size else 0, np.int8)
        return feeds

    @classmethod
    def _run_node(cls, node: HostNode, by_name: Mapping[str, HostNode],
                  env: dict[str, list[Any]], assets: Mapping[str, pathlib.Path]) -> None:
        """Runs ``node`` once, after its inputs (nodes are listed in no particular order)."""
        if node.name in env:
            return
        for source, _ in node.inputs:
            if source not in env:
                if source not in by_name:
                    raise HostStageError(f"host op {node.name!r} reads {source!r}, which "
                                         f"the stage does not define")
                cls._run_node(by_name[source], by_name, env, assets)
        if node.op == "Const":
            env[node.name] = [decode_array(node.attrs["value"])]
            return
        if node.op == "Asset":
            if node.attrs["name"] not in assets:
                raise HostStageError(f"host stage needs asset {node.attrs['name']!r}, which "
                                     f"the module lacks")
            env[node.name] = [np.asarray(str(assets[node.attrs["name"]]).encode(), object)]
            return
        args = [env[s][i] for s, i in node.inputs]
        try:
            result = host_ops.lookup(node.op)(node, *args)
        except Exception as e:
            raise HostStageError(f"host op {node.name!r} ({node.op}) failed: "
                                 f"{type(e).__name__}: {e}") from e
        env[node.name] = list(result) if isinstance(result, tuple) else [result]


def _as_input(value: Any, spec: Mapping[str, Any]) -> np.ndarray:
    if spec["dtype"] == "string":
        arr = np.asarray(value, dtype=object)
        flat = np.empty(arr.size, dtype=object)
        flat[:] = [v.encode("utf-8") if isinstance(v, str) else bytes(v)
                   for v in arr.reshape(-1)]
        arr = flat.reshape(arr.shape)
    else:
        arr = np.asarray(value, dtype=spec["dtype"])
    if len(arr.shape) != len(spec["shape"]):
        raise HostStageError(f"input of shape {arr.shape}; the host stage takes rank "
                             f"{len(spec['shape'])}")
    return arr


def _device_array(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object:
        raise HostStageError("a host stage output is a string tensor; only numbers reach "
                             "the device function")
    if arr.dtype == np.int64:
        return arr.astype(np.int32)
    if arr.dtype == np.uint64:
        return arr.astype(np.uint32)
    if arr.dtype == np.float64:
        return arr.astype(np.float32)
    return arr
