"""``jaxhub_module.json``: the versioned description of a module directory.

Everything a consumer needs to know without running anything: the params tree (paths,
shapes, dtypes, trainable flags), each function per variant and signature with its specs,
attachments, assets with their hashes, and who wrote the module.
"""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Any, Mapping

import jax.numpy as jnp

from jaxhub._src.specs import Signature
from jaxhub._src.storage.files import MANIFEST_FILE
from jaxhub._src.tree import Path

FORMAT_NAME = "jaxhub.module"
#: Bumped whenever a reader of the previous version could misread a new module.
FORMAT_VERSION = 1

Tags = frozenset[str]


class ModuleFormatError(ValueError):
    """A module directory is missing, corrupt, or in a format this jaxhub cannot read."""


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One leaf of the params tree."""

    path: Path
    shape: tuple[int, ...]
    dtype: str
    trainable: bool

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclasses.dataclass(frozen=True)
class VjpSpec:
    """A function's gradient as two serialized halves that share residuals (optional).

    ``forward`` takes the function's args and returns its results, then the residuals;
    ``backward`` takes the residuals, then the args at ``saved_inputs``, then the results
    at ``saved_outputs``, then the cotangents of the float results (in result order), and
    returns the cotangents of the float args (in arg order). Residuals that are args or
    results of the call are not returned by ``forward`` but passed back in. See
    :class:`jaxhub._src.serialization.SplitVjp`.
    """

    forward: str
    backward: str
    saved_inputs: tuple[int, ...] = ()
    saved_outputs: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"forward": self.forward, "backward": self.backward,
                "saved_inputs": list(self.saved_inputs),
                "saved_outputs": list(self.saved_outputs)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "VjpSpec":
        return cls(data["forward"], data["backward"],
                   tuple(int(i) for i in data.get("saved_inputs", ())),
                   tuple(int(j) for j in data.get("saved_outputs", ())))


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """One serialized function: a signature of a variant.

    Its flat arguments are the params leaves (in manifest order), then the inputs sorted
    by name, then the RNG key data when ``takes_rng``; its flat results are the outputs
    sorted by name, then the new values of the params at ``state`` paths.

    ``vjp``, when present, names the two files that compute its gradient without running
    the forward pass twice; modules without it differentiate through ``file``'s own VJP.

    ``forward_only``, when present, says why the function has no gradient (JAX could not
    differentiate one of its ops when it was exported): it runs, but ``jax.grad``
    through it raises a ``SignatureError`` with that reason. Stored only when present,
    so modules with it keep format version 1 (older readers ignore the key).

    ``checks``, when not empty, holds one message per boolean result after the state:
    conditions that :meth:`jaxhub.Module.apply` hands to ``checkify.check`` (older
    readers ignore the key and those results, so they run without the checks).
    """

    tags: Tags
    signature_name: str
    signature: Signature
    file: str
    takes_rng: bool = False
    state: tuple[Path, ...] = ()
    vjp: VjpSpec | None = None
    forward_only: str | None = None
    checks: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        """Every file this function is stored in."""
        return (self.file,) + ((self.vjp.forward, self.vjp.backward) if self.vjp else ())


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The parsed ``jaxhub_module.json``."""

    params: tuple[ParamSpec, ...]
    functions: tuple[FunctionSpec, ...]
    regularizer: str | None = None
    attachments: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    assets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    origin: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    written_by: Mapping[str, str] = dataclasses.field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    #: Function file -> {"sha256", "size"}, recorded when written and checked
    #: when read (absent in modules written before jaxhub recorded them).
    function_files: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    #: Function file -> the record of its durable copy (a StableHLO portable artifact
    #: and the types to call it with; see :mod:`jaxhub._src.storage.durable`), absent in
    #: modules written before jaxhub wrote durable copies.
    durable_functions: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=dict)
    #: False when the signature functions were written without their gradients (no
    #: split VJP, no VJP of their own): a module converted into the cache, whose
    #: gradients are exported on first use (see :mod:`jaxhub._src.formats`). Written
    #: only when False; readers that predate it find no VJP when asked for a gradient.
    gradients: bool = True
    #: False when the functions that have a split VJP were written without their
    #: exported VJP (``vjp_order=0``): an entry of the converted-module cache, which only
    #: the jaxhub that keyed it reads, differentiating through the halves. Written only
    #: when False; :meth:`jaxhub.Module.export` writes the exported VJPs again (built
    #: from the halves) for the readers that predate split VJPs.
    exported_vjps: bool = True

    def __post_init__(self):
        for name in ("attachments", "assets", "origin", "written_by", "function_files",
                     "durable_functions"):
            object.__setattr__(self, name, types.MappingProxyType(dict(getattr(self, name))))

    def __hash__(self) -> int:
        return hash((self.params, self.functions, self.regularizer))

    def function(self, tags: Tags, signature_name: str) -> FunctionSpec | None:
        for fn in self.functions:
            if fn.tags == tags and fn.signature_name == signature_name:
                return fn
        return None

    def to_json(self) -> str:
        data = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "written_by": dict(self.written_by),
            "origin": dict(self.origin),
            "params": [{"path": list(p.path), "shape": list(p.shape), "dtype": p.dtype,
                        "trainable": p.trainable} for p in self.params],
            "functions": [_function_json(f) for f in self.functions],
            "regularizer": self.regularizer,
            "attachments": dict(self.attachments),
            "assets": {k: dict(v) for k, v in self.assets.items()},
        }
        # Written only when known: readers that predate it ignore unknown keys.
        if self.function_files:
            data["function_files"] = {k: dict(v) for k, v in self.function_files.items()}
        if self.durable_functions:
            data["durable_functions"] = {k: dict(v)
                                         for k, v in self.durable_functions.items()}
        if not self.gradients:
            data["gradients"] = False
        if not self.exported_vjps:
            data["exported_vjps"] = False
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        """Parses a manifest.

        Raises:
          ModuleFormatError: not JSON, not a jaxhub manifest, a newer format version, or a
            required field is missing.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModuleFormatError(f"{MANIFEST_FILE} is not valid JSON: {e}") from None
        except RecursionError:
            raise ModuleFormatError(f"{MANIFEST_FILE} nests lists or objects too deeply to "
                                    f"read; the file is damaged or hostile") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ModuleFormatError(f"{MANIFEST_FILE} does not describe a {FORMAT_NAME}")
        version = data.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise ModuleFormatError(f"{MANIFEST_FILE} has no valid format_version: {version!r}")
        if version > FORMAT_VERSION:
            raise ModuleFormatError(
                f"module format version {version} is newer than this jaxhub reads "
                f"(up to {FORMAT_VERSION}); upgrade jaxhub: pip install -U jaxhub")
        try:
            return cls._parse(data)
        except (KeyError, TypeError, ValueError) as e:
            raise ModuleFormatError(f"{MANIFEST_FILE} is malformed: {e!r}") from None

    @classmethod
    def _parse(cls, data: dict[str, Any]) -> "Manifest":
        params = tuple(_param_spec(p) for p in data["params"])
        functions = tuple(
            FunctionSpec(frozenset(f["tags"]), f["signature"], Signature.from_json(f),
                         f["file"], bool(f.get("takes_rng", False)),
                         tuple(tuple(p) for p in f.get("state", ())),
                         VjpSpec.from_json(f["vjp"]) if f.get("vjp") else None,
                         _optional_str(f.get("forward_only"), "forward_only"),
                         tuple(str(m) for m in f.get("checks", ())))
            for f in data["functions"])
        return cls(params=params, functions=functions, regularizer=data.get("regularizer"),
                   attachments=data.get("attachments", {}), assets=data.get("assets", {}),
                   origin=data.get("origin", {}), written_by=data.get("written_by", {}),
                   format_version=data["format_version"],
                   function_files=_file_records(data.get("function_files", {})),
                   durable_functions=_durable_records(data.get("durable_functions", {})),
                   gradients=data.get("gradients", True) is not False,
                   exported_vjps=data.get("exported_vjps", True) is not False)


def _param_spec(data: Mapping[str, Any]) -> ParamSpec:
    """One entry of ``params``, checked: a path of names, sizes >= 0, a numeric dtype."""
    path = tuple(data["path"])
    name = "/".join(map(str, path))
    if not path or not all(isinstance(k, str) for k in path):
        raise ValueError(f"param path {list(path)!r} is not a list of names")
    if any(_names_a_file_elsewhere(k) for k in path):
        # Orbax joins a param's names into a file path under params/: "/etc" or ".."
        # would read an array from anywhere on the disk.
        raise ValueError(f"param path {list(path)!r} holds a name that is empty, absolute "
                         f"or climbs with '..'; the module is damaged or hostile")
    shape = tuple(data["shape"])
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"param {name} has shape {list(shape)!r}, not sizes >= 0")
    try:
        dtype = jnp.dtype(data["dtype"])
    except TypeError:
        dtype = None
    if dtype is None or not (jnp.issubdtype(dtype, jnp.number) or dtype == jnp.bool_):
        raise ValueError(f"param {name} has dtype {data['dtype']!r}, not a numeric dtype "
                         f"that jax knows")
    return ParamSpec(path, shape, dtype.name, bool(data["trainable"]))


def _names_a_file_elsewhere(key: str) -> bool:
    return (not key or key.startswith(("/", "~")) or "\0" in key or "\\" in key
            or ".." in key.split("/"))


def _optional_str(value: Any, key: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} is {value!r}, not a string")
    return value


def _file_records(data: Any) -> dict[str, dict[str, Any]]:
    records = {}
    for file, record in dict(data).items():
        if not isinstance(record.get("sha256"), str) or not isinstance(record.get("size"), int):
            raise ValueError(f"function_files[{file!r}] needs a sha256 and a size")
        records[str(file)] = {"sha256": record["sha256"], "size": record["size"]}
    return records


def _durable_records(data: Any) -> dict[str, dict[str, Any]]:
    """The ``durable_functions`` entries, each checked to name a file, its hash and size
    (the rest is read when a durable copy is needed)."""
    records = {}
    for file, record in dict(data).items():
        record = dict(record)
        for part in (record, *([record["vjp"]] if record.get("vjp") else [])):
            if not (isinstance(part.get("file"), str) and isinstance(part.get("sha256"), str)
                    and isinstance(part.get("size"), int)):
                raise ValueError(f"durable_functions[{file!r}] needs a file, a sha256 "
                                 f"and a size")
        records[str(file)] = record
    return records


def _function_json(f: FunctionSpec) -> dict[str, Any]:
    # "vjp" is written only when present: readers that predate it ignore unknown keys.
    data = {"tags": sorted(f.tags), "signature": f.signature_name, **f.signature.to_json(),
            "file": f.file, "takes_rng": f.takes_rng, "state": [list(p) for p in f.state]}
    if f.vjp is not None:
        data["vjp"] = f.vjp.to_json()
    if f.forward_only is not None:
        data["forward_only"] = f.forward_only
    if f.checks:
        data["checks"] = list(f.checks)
    return data
