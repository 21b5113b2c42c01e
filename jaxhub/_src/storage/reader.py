"""Reads a module directory: manifest, functions, params, assets. Runs no code from it."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import Any, Mapping

import jax

from jaxhub._src import serialization
from jaxhub._src.storage import durable
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


def read(path: pathlib.Path, sharding: params_io.ShardingFn | None = None,
         written_params: dict[str, Any] | None = None) -> Contents:
    """Reads the module in directory ``path``.

    Args:
      path: a module directory.
      sharding: how to place params (see :func:`jaxhub._src.storage.params.restore`).
      written_params: the params this process saved in ``path`` just before (a
        conversion into the cache): taken instead of read back when they match the
        manifest.

    Raises:
      ModuleFormatError: the directory is not a complete, readable module.
    """
    path = pathlib.Path(path).absolute()  # Orbax refuses relative checkpoint paths
    manifest, exported = read_functions(path)
    params = None if written_params is None else params_io.placed(
        written_params, manifest.params, sharding)
    if params is None:
        params = params_io.restore(path, manifest.params, sharding)
    return Contents(path, manifest, exported, params, _assets(path, manifest))


def read_functions(path: pathlib.Path) -> tuple[Manifest, dict[str, Any]]:
    """The manifest of the module in directory ``path`` and its deserialized functions,
    by file (its params are not read).

    Raises:
      ModuleFormatError: the directory holds no readable manifest, or a function file is
        missing, damaged or unreadable.
    """
    path = pathlib.Path(path).absolute()
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModuleFormatError(f"{path} is not a jaxhub module: no {MANIFEST_FILE}")
    manifest_path = _inside(path, MANIFEST_FILE)  # not a link to a file elsewhere
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
    return manifest, {file: _read_function(path, file, manifest) for file in sorted(files)}


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


def _read_function(module_dir: pathlib.Path, file: str, manifest: Manifest):
    """The function in ``file``: its ``jax.export`` wrapper when this JAX reads it, else
    its durable copy (see :mod:`jaxhub._src.storage.durable`).

    Raises:
      ModuleFormatError: a file is missing or damaged, or neither the wrapper nor a
        durable copy can be read by this JAX (the message names both JAX versions).
    """
    data = _checked_bytes(module_dir, file, manifest.function_files.get(file))
    durable_record = manifest.durable_functions.get(file)
    try:
        exported = serialization.deserialize(data)
    except Exception as e:  # flatbuffer/StableHLO errors; report the file, not the guts.
        failure: Exception = e
    else:
        if durable_record is None:
            failure = _unreadable_artifact(exported, manifest)
            if failure is None:
                return exported
        elif not _newer_writer(manifest):
            return exported
    if durable_record is not None:
        # Every file read and checked now: a damaged one fails the load, not a grad.
        stored = {name: _checked_bytes(module_dir, name, record)
                  for name, record in durable.files_of(durable_record).items()}
        try:
            return durable.rebuild(durable_record, stored.__getitem__)
        except (KeyError, TypeError, ValueError) as e:  # too new, or a malformed record
            failure = e
    raise ModuleFormatError(_unreadable_message(module_dir, file, manifest, failure))


def stale_functions(path: pathlib.Path, *, without_durable_copy: bool = True) -> list[str]:
    """The function files of the module at ``path`` that need ``jaxhub upgrade``.

    A file needs it when the running JAX cannot read its ``jax.export`` wrapper (the
    module then loads from its durable copy, or not at all) or, unless
    ``without_durable_copy`` is False, when it has no durable copy (it stops loading
    once its wrapper expires).

    Raises:
      ModuleFormatError: ``path`` holds no readable manifest.
    """
    manifest = Manifest.from_json(pathlib.Path(path, MANIFEST_FILE).read_text())
    stale = []
    for file in sorted({file for f in manifest.functions for file in f.files}
                       | ({manifest.regularizer} if manifest.regularizer else set())):
        if file not in manifest.durable_functions and without_durable_copy:
            stale.append(file)
            continue
        try:
            exported = serialization.deserialize(_inside(pathlib.Path(path), file).read_bytes())
        except Exception:  # noqa: BLE001 (whatever JAX refuses it for)
            stale.append(file)
            continue
        if _unreadable_artifact(exported, manifest) is not None:
            stale.append(file)
    return stale


def _checked_bytes(module_dir: pathlib.Path, file: str,
                   record: Mapping[str, Any] | None) -> bytes:
    """The bytes of ``file``, checked against its manifest record when there is one."""
    source = _inside(module_dir, file)
    if not source.is_file():
        raise ModuleFormatError(f"module at {module_dir} is missing function file {file}")
    data = source.read_bytes()
    if record is not None and (len(data) != record["size"] or
                               hashlib.sha256(data).hexdigest() != record["sha256"]):
        raise ModuleFormatError(
            f"module at {module_dir}: function file {file} is damaged (its size or sha256 "
            f"differs from the manifest's); {_REFETCH}")
    return data


def _newer_writer(manifest: Manifest) -> bool:
    """Whether the module was written by a newer JAX than the running one."""
    written = durable.version_tuple(manifest.written_by.get("jax", ""))
    return written > durable.version_tuple(jax.__version__)


def _unreadable_artifact(exported, manifest: Manifest) -> Exception | None:
    """Why this JAX cannot read the StableHLO inside a wrapper written by a newer JAX
    (None when it can): found at load time, not at the first call."""
    if not _newer_writer(manifest):
        return None
    try:
        exported.mlir_module()
    except Exception as e:  # noqa: BLE001 (a StableHLO version this JAX does not read)
        return e
    return None


def _unreadable_message(module_dir: pathlib.Path, file: str, manifest: Manifest,
                        failure: Exception | None) -> str:
    writer_jax = manifest.written_by.get("jax", "an unknown version")
    reason = str(failure).splitlines()[0][:300] if failure and str(failure) else ""
    head = (f"module at {module_dir} has an unreadable function file {file}: written by "
            f"JAX {writer_jax}, it cannot be read by the running JAX {jax.__version__} "
            f"({type(failure).__name__}{': ' + reason if reason else ''})")
    if _newer_writer(manifest):
        fix = (f"install JAX {writer_jax} or newer (pip install -U jax jaxlib), or ask the "
               f"publisher to write it with a jaxhub that stores durable copies")
    elif manifest.durable_functions:
        fix = _REFETCH
    else:
        fix = (f"the module has no durable copy of its functions: if the file was damaged, "
               f"{_REFETCH}; if it has expired, run `jaxhub upgrade SRC DST` with a JAX "
               f"that still reads it (pip install 'jax=={writer_jax}' in another "
               f"environment), which writes one")
    return f"{head}; {fix}"


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
