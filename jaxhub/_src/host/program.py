"""Host stages: the string and table part of a signature, kept as data and run with numpy.

Text modules take strings and look words up in vocabulary tables: work no accelerator
does. Other signatures run ops whose output shapes follow their inputs' values
(``tf.range(n)``, ``tf.where(x)``), which a device function cannot. A converter splits
such a signature in two: a *host stage* (a small program of TF ops, stored as JSON in the
module's attachments, with its vocabulary files as assets) and the device function
(``jax.export``), which gets the host stage's numeric results. Loading runs no Python
code from the module: the program only names ops from :mod:`jaxhub._src.host.ops`.

The JSON form (one per signature, under the attachment :data:`ATTACHMENT_KEY`)::

  {"inputs": {"default": {"dtype": "string", "shape": [null]}},
   "nodes": [{"name": "lower", "op": "StringLower", "inputs": [["default", 0]],
              "attrs": {...}}, ...],
   "init": ["table_init"],                # run once, at load, before anything else
   "outputs": {"ids": ["lookup", 0], ...},  # the device function's inputs
   "size_of": {"segments": ["seg", 0]},   # feeds whose *shape* carries a size: zeros
                                           # of length max(value) + 1
   "output_specs": {"ids": {"shape": ["batch", "n1"], "dtype": "int64"}, ...},
                                           # optional: the feeds' specs, their dtypes kept
   "reaches": {"ids": ["logits"], ...}}    # optional: the signature's outputs computed
                                           # from each feed (its values or its shape)

Constants are ``{"op": "Const", "attrs": {"value": <encoded array>}}``; a file of the
module is ``{"op": "Asset", "attrs": {"name": "vocab.txt"}}``.

A program is data from the module, so it is checked when the module loads: it names only
known ops, every node it reads is defined, it has no cycle, and its size and depth are
within :class:`~jaxhub._src.host.limits.HostLimits`. Files are read only through ``Asset``
nodes: the module's own assets are read into memory at load (bounded) and an ``Asset``
node holds their bytes, never a path; a file-reading op's file input must be an
``Asset`` node (possibly through ``Identity``), and an asset feeds nothing else. No op
opens a file. Tables are filled at load, once.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import pathlib
import stat
from typing import Any, Mapping, NoReturn

import numpy as np

from jaxhub._src.host import ops as host_ops
from jaxhub._src.host.limits import HostLimits, HostStageError, check_elements
from jaxhub._src.specs import SignatureError, TensorSpec

#: The attachment that holds a module's host stages, by signature name.
ATTACHMENT_KEY = "jaxhub.host_stages"



#: Ops that pass their single input through: an asset may flow through them to a reader.
_PASS_THROUGH = frozenset({"Identity", "StopGradient", "Snapshot"})


@dataclasses.dataclass(frozen=True)
class HostNode:
    """One op of a host stage, with the limits its op checks before allocating."""

    name: str
    op: str
    inputs: tuple[tuple[str, int], ...]
    attrs: Mapping[str, Any]
    limits: HostLimits = HostLimits()


@dataclasses.dataclass(frozen=True)
class AssetFile:
    """What an ``Asset`` node holds: the asset's name and its bytes, read at load."""

    name: str
    data: bytes = dataclasses.field(repr=False)


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
    """The inverse of :func:`encode_array`.

    Raises:
      ValueError: the values do not fill the shape, or are not of the dtype.
    """
    shape = [int(d) for d in data["shape"]]
    values = data["values"]
    if not isinstance(values, list) or len(values) != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"a constant of shape {shape} needs that many values, not "
                         f"{len(values) if isinstance(values, list) else type(values)}")
    if data["dtype"] == "string":
        flat = np.empty(len(values), dtype=object)
        flat[:] = [v.encode("utf-8", "surrogateescape") for v in values]
        return flat.reshape(shape)
    if np.dtype(data["dtype"]).kind not in "biuf":
        raise ValueError(f"a constant of dtype {data['dtype']!r}; host constants are "
                         f"numbers or strings")
    return np.asarray(values, dtype=data["dtype"]).reshape(shape)


class AssetStore:
    """The module's assets that host stages read: each read once, at load, within a budget.

    Holding the bytes keeps a loaded module working with exactly the files it loaded,
    whatever later happens to its directory (a cache entry replaced or removed).

    Args:
      files: asset name -> path (read on first use) or bytes.
      limits: ``max_asset_bytes`` bounds what all reads together return.
      expected: asset name -> the manifest's record (``size``, ``sha256``), checked.
    """

    def __init__(self, files: Mapping[str, pathlib.Path | bytes],
                 limits: HostLimits | None = None,
                 expected: Mapping[str, Mapping[str, Any]] | None = None):
        self._files = dict(files)
        self._limits = limits or HostLimits.from_env()
        self._expected = dict(expected or {})
        self.loaded: dict[str, bytes] = {}

    def names(self) -> list[str]:
        return sorted(self._files)

    def read(self, name: str) -> bytes:
        """The bytes of asset ``name``.

        Raises:
          HostStageError: no such asset, not a regular file, over the budget, or its
            size or sha256 differs from the manifest's.
        """
        if name in self.loaded:
            return self.loaded[name]
        if name not in self._files:
            raise HostStageError(f"needs asset {name!r}, which the module lacks (its "
                                 f"assets: {self.names()})")
        budget = self._limits.max_asset_bytes - sum(map(len, self.loaded.values()))
        source = self._files[name]
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else \
            _read_regular_file(pathlib.Path(source), name, budget)
        if len(data) > budget:
            var = HostLimits.variable("max_asset_bytes")
            raise HostStageError(
                f"asset {name!r} would take the assets read by host stages over "
                f"{self._limits.max_asset_bytes:,} bytes ({var}); raise it only for a "
                f"module you trust")
        record = self._expected.get(name, {})
        if "size" in record and len(data) != record["size"]:
            raise HostStageError(f"asset {name!r} has {len(data)} bytes; the manifest "
                                 f"records {record['size']}")
        if "sha256" in record and hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise HostStageError(f"asset {name!r} does not match the sha256 in the manifest")
        self.loaded[name] = data
        return data


def _read_regular_file(path: pathlib.Path, name: str, budget: int) -> bytes:
    """At most ``budget + 1`` bytes of the regular file at ``path`` (no device, no pipe):
    one more than the budget tells the caller that the file is over it."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat checks what was
        # opened, so a file swapped after a check is still seen.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise HostStageError(f"cannot open asset {name!r} at {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise HostStageError(f"asset {name!r} at {path} is not a regular file")
        return f.read(budget + 1)


class HostStage:
    """A host stage, checked and with its files read and tables filled: ready to run.

    Args:
      data: the stage's JSON form (see the module docstring).
      assets: the module's assets: an :class:`AssetStore`, or name -> path or bytes.
      signature: the signature the stage belongs to, for messages.
      limits: bounds; default :meth:`HostLimits.from_env`.

    Raises:
      HostStageError: the program is malformed, names an unknown op or an undefined
        node, is cyclic, too large or too deep, reads a file other than an asset of the
        module, or a table could not be filled. The message names the node.
    """

    def __init__(self, data: Mapping[str, Any],
                 assets: AssetStore | Mapping[str, pathlib.Path | bytes] | None = None, *,
                 signature: str = "", limits: HostLimits | None = None):
        self.limits = limits or HostLimits.from_env()
        self.signature = signature
        store = assets if isinstance(assets, AssetStore) else \
            AssetStore(assets or {}, self.limits)
        self._parse(data)
        order = self._sorted_nodes()
        self._check_files(order)
        for node in order:
            self._guard(node, lambda: host_ops.check(node))
        self._fixed = self._load_time_values(order, store)
        self._per_call = [n for n in order if n.name not in self._fixed]

    def _fail(self, problem: str) -> NoReturn:
        where = f"host stage of signature {self.signature!r}" if self.signature else \
            "host stage"
        raise HostStageError(f"{where}: {problem}")

    def _guard(self, node: HostNode, action):
        """Runs ``action`` for ``node``; any failure names the stage and the node."""
        try:
            return action()
        except HostStageError as e:
            self._fail(f"host op {node.name!r} ({node.op}): {e}")
        except Exception as e:
            self._fail(f"host op {node.name!r} ({node.op}) failed: {type(e).__name__}: {e}")

    def _parse(self, data: Mapping[str, Any]) -> None:
        try:
            n_nodes = len(data["nodes"])
        except (KeyError, TypeError) as e:
            self._fail(f"malformed: {e!r}")
        if n_nodes > self.limits.max_nodes:
            var = HostLimits.variable("max_nodes")
            self._fail(f"{n_nodes:,} nodes, over the limit of {self.limits.max_nodes:,} "
                       f"({var})")
        try:
            self.input_specs = {str(k): {"dtype": _input_dtype(v["dtype"]),
                                         "shape": list(v["shape"])}
                                for k, v in data["inputs"].items()}
            self.nodes = [HostNode(str(n["name"]), str(n["op"]),
                                   tuple((str(s), int(i)) for s, i in n.get("inputs", ())),
                                   dict(n.get("attrs") or {}), self.limits)
                          for n in data["nodes"]]
            self.init = [str(name) for name in data.get("init", ())]
            self.outputs = {str(k): (str(s), int(i)) for k, (s, i) in data["outputs"].items()}
            self.size_of = {str(k): (str(s), int(i))
                            for k, (s, i) in data.get("size_of", {}).items()}
            # Which of the signature's outputs each feed reaches, if recorded: the others
            # run when it is empty (see Module.apply).
            self.reaches = ({str(k): frozenset(map(str, v))
                             for k, v in data["reaches"].items()}
                            if "reaches" in data else None)
            # A stage typed by its converter keeps TF's dtypes (int64 as int64).
            self.output_dtypes = {str(k): np.dtype(_input_dtype(v["dtype"]))
                                  for k, v in data.get("output_specs", {}).items()
                                  if k in self.outputs}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            self._fail(f"malformed: {e!r}")
        unknown = sorted({n.op for n in self.nodes
                          if n.op not in ("Const", "Asset") and host_ops.lookup(n.op) is None})
        if unknown:
            self._fail(f"uses ops this jaxhub cannot run: {unknown}")

    def _sorted_nodes(self) -> list[HostNode]:
        """The nodes in an order that runs each after its inputs (checked: no cycle, depth)."""
        by_name: dict[str, HostNode] = {}
        for node in self.nodes:
            if node.name in by_name or node.name in self.input_specs:
                self._fail(f"two nodes (or a node and an input) are named {node.name!r}")
            by_name[node.name] = node
        known = by_name.keys() | self.input_specs.keys()
        for node in self.nodes:
            for source, _ in node.inputs:
                if source not in known:
                    self._fail(f"host op {node.name!r} reads {source!r}, which the stage "
                               f"does not define")
        for key, (source, _) in {**self.outputs, **self.size_of}.items():
            if source not in known:
                self._fail(f"output {key!r} is {source!r}, which the stage does not define")
        for name in self.init:
            if name not in by_name:
                self._fail(f"initializer {name!r} is not a node of the stage")
        # Kahn's algorithm: no recursion, so a long or cyclic program cannot overflow it.
        pending = {n.name: sum(s in by_name for s, _ in n.inputs) for n in self.nodes}
        consumers = collections.defaultdict(list)
        for node in self.nodes:
            for source, _ in node.inputs:
                if source in by_name:
                    consumers[source].append(node.name)
        ready = collections.deque(n.name for n in self.nodes if pending[n.name] == 0)
        depth: dict[str, int] = {}
        order = []
        while ready:
            node = by_name[ready.popleft()]
            depth[node.name] = 1 + max((depth[s] for s, _ in node.inputs if s in depth),
                                       default=0)
            if depth[node.name] > self.limits.max_depth:
                var = HostLimits.variable("max_depth")
                self._fail(f"host op {node.name!r} is {depth[node.name]:,} ops deep, over the "
                           f"limit of {self.limits.max_depth:,} ({var})")
            order.append(node)
            for consumer in consumers[node.name]:
                pending[consumer] -= 1
                if pending[consumer] == 0:
                    ready.append(consumer)
        if len(order) < len(self.nodes):
            cycle = sorted(name for name, n in pending.items() if n > 0)
            self._fail(f"the program is cyclic: nodes {cycle[:5]} wait on each other")
        return order

    def _check_files(self, order: list[HostNode]) -> None:
        """Files come only from ``Asset`` nodes, and an asset only feeds a file input."""
        carriers: set[str] = set()
        for node in order:
            if node.op == "Asset":
                if not isinstance(node.attrs.get("name"), str):
                    self._fail(f"asset node {node.name!r} names no asset")
                carriers.add(node.name)
                continue
            file_args = host_ops.file_inputs(node.op)
            for index, (source, _) in enumerate(node.inputs):
                if index in file_args and source not in carriers:
                    self._fail(
                        f"host op {node.name!r} ({node.op}) reads a file named by "
                        f"{source!r}, not by an Asset node; host stages read only the "
                        f"module's own assets")
                if index not in file_args and source in carriers:
                    if node.op not in _PASS_THROUGH:
                        self._fail(f"asset {source!r} feeds {node.name!r} ({node.op}); an "
                                   f"asset can only be read by a file-reading op")
                    carriers.add(node.name)
        for key, (source, _) in {**self.outputs, **self.size_of}.items():
            if source in carriers:
                self._fail(f"output {key!r} is an asset; assets never leave the stage")

    def _load_time_values(self, order: list[HostNode], store: AssetStore
                          ) -> dict[str, list[Any]]:
        """Constants, assets and tables: computed once, here, not on every call.

        Every table initializer runs now with all it reads, so a table is full before any
        lookup, and a file a stage could not read fails the load, not a later call.
        """
        by_name = {n.name: n for n in order}
        needed: set[str] = set()
        stack = self.init + [n.name for n in order if host_ops.is_initializer(n.op)]
        while stack:
            name = stack.pop()
            if name in self.input_specs:
                self._fail(f"a table initializer depends on the input {name!r}; tables "
                           f"are filled at load")
            if name not in needed:
                needed.add(name)
                stack.extend(s for s, _ in by_name[name].inputs)
        fixed: dict[str, list[Any]] = {}
        for node in order:
            if node.name in needed or node.op in ("Const", "Asset"):
                fixed[node.name] = self._evaluate(node, fixed, store)
        return fixed

    def _evaluate(self, node: HostNode, env: Mapping[str, list[Any]],
                  store: AssetStore | None = None) -> list[Any]:
        if node.op == "Const":
            value = self._guard(node, lambda: decode_array(node.attrs["value"]))
            self._check_result(node, value)
            return [value]
        if node.op == "Asset":
            name = node.attrs["name"]
            return [AssetFile(name, self._guard(node, lambda: store.read(name)))]
        args = []
        for source, index in node.inputs:
            if index >= len(env[source]):
                self._fail(f"host op {node.name!r} reads result {index} of {source!r}, "
                           f"which has {len(env[source])}")
            args.append(env[source][index])
        result = self._guard(node, lambda: host_ops.lookup(node.op)(node, *args))
        values = list(result) if isinstance(result, tuple) else [result]
        for value in values:
            self._check_result(node, value)
        return values

    def _check_result(self, node: HostNode, value: Any) -> None:
        if not isinstance(value, np.ndarray):
            return
        self._guard(node, lambda: check_elements(node, value.size))
        if value.dtype == object:
            text = sum(len(v) for v in value.reshape(-1) if isinstance(v, bytes))
            self._guard(node, lambda: check_elements(node, text, "bytes of text",
                                                     "max_string_bytes"))

    def run(self, inputs: Any) -> dict[str, np.ndarray]:
        """Runs the stage on ``inputs`` (one array or a dict by input name).

        Returns:
          The device function's inputs by name: the stage's results as numeric numpy
          arrays of the dtypes the stage declares (``output_specs``; without them int64
          as int32, the integer width JAX uses by default), and the inputs the stage does
          not take, unchanged.

        Raises:
          SignatureError: missing inputs, or an input that is not an array of the
            stage's dtype and rank (ragged lists, dicts, numbers for strings).
          HostStageError: an op failed or broke a limit (the node is named).
        """
        if not isinstance(inputs, Mapping):
            if len(self.input_specs) != 1:
                self._bad_input("got one unnamed input, but the host stage takes "
                                f"{len(self.input_specs)}")
            inputs = {next(iter(self.input_specs)): inputs}
        missing = sorted(set(self.input_specs) - set(inputs))
        if missing:
            self._bad_input(f"missing inputs {missing}")
        env: dict[str, list[Any]] = dict(self._fixed)
        env.update({k: [self._as_input(k, inputs[k], spec)]
                    for k, spec in self.input_specs.items()})
        for node in self._per_call:
            env[node.name] = self._evaluate(node, env)
        # Inputs the stage does not take (numbers) go to the device function unchanged.
        feeds = {k: v for k, v in inputs.items() if k not in self.input_specs}
        for key, (source, index) in self.outputs.items():
            feeds[key] = self._feed(key, lambda: _device_array(env[source][index],
                                                               self.output_dtypes.get(key)))
        for key, (source, index) in self.size_of.items():
            feeds[key] = self._feed(key, lambda: self._zeros_sized_by(env[source][index]))
        return feeds

    def describe_output(self, key: str) -> str:
        """What computes the stage's output ``key``, for messages: ``"output 0 of Unique
        node 'u' (feeding 'host_0')"``, or the input it passes on."""
        source, index = self.outputs[key]
        ops = {node.name: node.op for node in self.nodes}
        if source not in ops:
            return f"input {source!r} (feeding {key!r})"
        return f"output {index} of {ops[source]} node {source!r} (feeding {key!r})"

    def _feed(self, key: str, make) -> np.ndarray:
        try:
            return make()
        except (HostStageError, IndexError, ValueError, TypeError) as e:
            self._fail(f"output {key!r}: {type(e).__name__}: {e}")

    def _zeros_sized_by(self, values: Any) -> np.ndarray:
        """Zeros of length ``max(values) + 1``: a size the device function reads."""
        values = np.asarray(values)
        size = int(values.max()) + 1 if values.size else 0
        if size > self.limits.max_elements:
            var = HostLimits.variable("max_elements")
            raise HostStageError(f"would make {size:,} elements, over the limit of "
                                 f"{self.limits.max_elements:,} ({var})")
        return np.zeros(size, np.int8)

    def _bad_input(self, problem: str) -> NoReturn:
        specs = ", ".join(f"{k}: {TensorSpec(v['shape'], v['dtype'])}"
                          for k, v in self.input_specs.items())
        raise SignatureError(f"signature {self.signature or 'default'!r}: {problem}; "
                             f"expected inputs {{{specs}}}")

    def _as_input(self, name: str, value: Any, spec: Mapping[str, Any]) -> np.ndarray:
        """``value`` as an array of the input's dtype: strings as ``bytes`` (UTF-8)."""
        what = f"input {name!r}"
        try:
            if spec["dtype"] != "string":
                arr = np.asarray(value, dtype=spec["dtype"])
            else:
                arr = np.asarray(value, dtype=object)
                flat = arr.reshape(-1)
                if not all(isinstance(v, (str, bytes)) for v in flat):
                    bad = next(v for v in flat if not isinstance(v, (str, bytes)))
                    self._bad_input(f"{what} must hold only strings (a rectangular array "
                                    f"of str or bytes), not {type(bad).__name__}")
                out = np.empty(arr.size, dtype=object)
                out[:] = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in flat]
                arr = out.reshape(arr.shape)
        except (TypeError, ValueError) as e:
            if isinstance(e, SignatureError):
                raise
            self._bad_input(f"{what} is not a rectangular array of {spec['dtype']}: "
                            f"{type(e).__name__}: {e}")
        if arr.ndim != len(spec["shape"]):
            self._bad_input(f"{what} has shape {arr.shape}, not rank {len(spec['shape'])}")
        return arr


def _input_dtype(dtype: Any) -> str:
    if dtype == "string" or np.dtype(dtype).kind in "biuf":
        return str(dtype)
    raise ValueError(f"an input of dtype {dtype!r}; host inputs are numbers or strings")


def _device_array(value: Any, dtype: np.dtype | None = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object:
        raise HostStageError("a host stage output is a string tensor; only numbers reach "
                             "the device function")
    if dtype is not None:
        return arr.astype(dtype, copy=False)
    if arr.dtype == np.int64:
        return arr.astype(np.int32)
    if arr.dtype == np.uint64:
        return arr.astype(np.uint32)
    if arr.dtype == np.float64:
        return arr.astype(np.float32)
    return arr
