"""Reads a module directory: manifest, functions, params, assets. Runs no code from it."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import Any, Mapping

from jaxhub._src import serialization
from jaxhub._src.storage import params as params_io
from jaxhub._src.storage.files import MANIFEST_FILE, asset_file
from jaxhub._src.storage.manifest import Manifest, ModuleFormatError

ENV_MAX_MANIFEST_BYTES = "JAXHUB_MAX_MANIFEST_BYTES"
DEFAULT_MAX_MANIFEST_BYTES = 64 << 20
#: What to do about a damaged file of a cached module.
_REFETCH = ("if the module is cached, remove the damaged entry with `jaxhub cache verify "
            "--remove-broken` and load it again")


@dataclasses.dataclass(frozen=True)
class Contents:
    """What a module directory holds, read and checked.

    Attributes:
      path: the module directory (absolute).
      manifest: its manifest.
      functions: the deserialized functions, by file name.
      params: the params tree.
      assets: the asset files, by name.
    """

    path: pathlib.Path
    manifest: Manifest
    functions: dict[str, Any]
    params: dict[str, Any]
    assets: dict[str, pathlib.Path]


def read(path: pathlib.Path, sharding: params_io.ShardingFn | None = None) -> Contents:
    """Reads the module in directory ``path``.

    Args:
      path: a module directory.
      sharding: how to place params (see :func:`jaxhub._src.storage.params.restore`).

    Raises:
      ModuleFormatError: the directory is not a complete, readable module.
    """
    path = pathlib.Path(path).absolute()  # Orbax refuses relative checkpoint paths
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModuleFormatError(f"{path} is not a jaxhub module: no {MANIFEST_FILE}")
    size, limit = manifest_path.stat().st_size, max_manifest_bytes()
    if size > limit:
        raise ModuleFormatError(f"module at {path}: {MANIFEST_FILE} has {size:,} bytes, over "
                                f"the limit of {limit:,} ({ENV_MAX_MANIFEST_BYTES})")
    try:
        manifest = Manifest.from_json(manifest_path.read_text())
    except ModuleFormatError as e:
        raise ModuleFormatError(f"module at {path}: {e}") from None
    files = {file for f in manifest.functions for file in f.files}
    if manifest.regularizer:
        files.add(manifest.regularizer)
    exported = {file: _read_function(path, file, manifest.function_files.get(file))
                for file in sorted(files)}
    params = params_io.restore(path, manifest.params, sharding)
    return Contents(path, manifest, exported, params, _assets(path, manifest))


def max_manifest_bytes(env: Mapping[str, str] | None = None) -> int:
    """The largest manifest read: ``JAXHUB_MAX_MANIFEST_BYTES``, default 64 MiB."""
    env = os.environ if env is None else env
    text = env.get(ENV_MAX_MANIFEST_BYTES, "").strip()
    if not text:
        return DEFAULT_MAX_MANIFEST_BYTES
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{ENV_MAX_MANIFEST_BYTES}={text!r}: expected a positive integer "
                         f"(default {DEFAULT_MAX_MANIFEST_BYTES})")
    return int(text)


def _read_function(module_dir: pathlib.Path, file: str,
                   record: Mapping[str, Any] | None = None):
    """The function in ``file``, checked against its manifest record when there is one."""
    source = _inside(module_dir, file)
    if not source.is_file():
        raise ModuleFormatError(f"module at {module_dir} is missing function file {file}")
    data = source.read_bytes()
    if record is not None and (len(data) != record["size"] or
                               hashlib.sha256(data).hexdigest() != record["sha256"]):
        raise ModuleFormatError(
            f"module at {module_dir}: function file {file} is damaged (its size or sha256 "
            f"differs from the manifest's); {_REFETCH}")
    try:
        return serialization.deserialize(data)
    except Exception as e:  # flatbuffer/StableHLO errors; report the file, not the guts.
        raise ModuleFormatError(
            f"module at {module_dir} has an unreadable function file {file}: "
            f"{type(e).__name__}; {_REFETCH}") from e


def _assets(module_dir: pathlib.Path, manifest: Manifest) -> dict[str, pathlib.Path]:
    assets = {}
    for name, entry in manifest.assets.items():
        file = _inside(module_dir, asset_file(name))
        if not file.is_file() or file.stat().st_size != entry.get("size"):
            raise ModuleFormatError(f"module at {module_dir}: asset {name} is missing or "
                                    f"has the wrong size")
        assets[name] = file
    return assets


def _inside(module_dir: pathlib.Path, rel: str) -> pathlib.Path:
    """``module_dir / rel``, refusing names that would leave the module directory."""
    root = module_dir.resolve()
    target = (root / rel).resolve()
    if root not in target.parents:
        raise ModuleFormatError(f"module at {module_dir} names a file outside itself: {rel}")
    return target
