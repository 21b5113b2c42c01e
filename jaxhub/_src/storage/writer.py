"""Writes a module directory: manifest, params, functions and assets, atomically."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import pathlib
import shutil
import tempfile
from typing import Any, Iterator, Mapping

import jax
from jax import export as jax_export

from jaxhub._src import serialization
from jaxhub._src import version
from jaxhub._src.storage import durable
from jaxhub._src.storage import params as params_io
from jaxhub._src.storage import files
from jaxhub._src.storage.manifest import Manifest, VjpSpec


@dataclasses.dataclass
class WrittenEntry:
    """What :func:`write` wrote as an entry of the cache, in this process.

    Attributes:
      params: the params tree it saved, once written (in a single-process run): the
        arrays that reading the entry back would restore.
    """

    params: dict[str, Any] | None = None


#: The directories being written as entries of the converted-module cache.
_CACHE_ENTRIES: contextvars.ContextVar[tuple[tuple[pathlib.Path, WrittenEntry], ...]] = (
    contextvars.ContextVar("jaxhub_cache_entries", default=()))


@contextlib.contextmanager
def cache_entry(path: pathlib.Path, written: WrittenEntry | None = None
                ) -> Iterator[WrittenEntry]:
    """A module written at ``path`` in this context is written without exported VJPs,
    and with its params uncompressed.

    A function that has a split VJP carries its exported VJP (built from the halves) only
    for readers that predate split VJPs; lowering and serializing it takes up to a third
    of converting a model with gradients. An entry of the converted-module cache is read
    by the jaxhub that keyed it, which differentiates through the halves, so it goes
    without them (manifest ``"exported_vjps": false``); :func:`write` builds them again
    when such a module is written anywhere else (``Module.export``, ``jaxhub convert``).
    An entry is read on the machine that wrote it, where compressing its params would
    cost more time than the disk it saves (``params.saving``). The converter is a
    plug-in that writes the entry itself, hence a context rather than an argument.

    Yields ``written`` (a new :class:`WrittenEntry` by default), which holds the params
    once the module is written: the load that converts a model reads its functions
    from the entry, and takes these params instead of reading them back.
    """
    written = WrittenEntry() if written is None else written
    token = _CACHE_ENTRIES.set((*_CACHE_ENTRIES.get(), (path.resolve(), written)))
    try:
        yield written
    finally:
        _CACHE_ENTRIES.reset(token)


def write(path: pathlib.Path, manifest: Manifest, exported: Mapping[str, jax_export.Exported],
          params: dict[str, Any], assets: Mapping[str, pathlib.Path | bytes]
          ) -> pathlib.Path:
    """Writes a complete module directory at ``path``, replacing nothing.

    Everything is written into a temporary directory beside ``path`` and renamed into
    place, so readers see the whole module or none of it. In a multi-process JAX run,
    every process must call this (saving params is collective); they share one
    temporary directory, and process 0 writes the rest and renames it.

    Raises:
      FileExistsError: ``path`` exists and is not an empty directory.
    """
    path = path.absolute()
    leader = jax.process_index() == 0
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists; export into a new directory")
    resolved = path.resolve()
    entry = next((written for p, written in _CACHE_ENTRIES.get() if p == resolved), None)
    in_cache = entry is not None
    tmp = _temporary_dir(path, leader)
    try:
        with params_io.saving(tmp, params, compressed=not in_cache):
            if leader:
                _write_description(tmp, manifest, exported, assets, not in_cache)
        if leader:
            if path.exists():
                path.rmdir()
            tmp.rename(path)
    except BaseException:
        if leader:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    _sync_processes(f"jaxhub export {path}")
    if entry is not None and jax.process_count() == 1:  # others restore their shards
        entry.params = params
    return path


def _temporary_dir(path: pathlib.Path, leader: bool) -> pathlib.Path:
    """A fresh directory beside ``path``: unique per call, or agreed on by all processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if jax.process_count() == 1:
        return pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=path.parent))
    tmp = path.parent / f".{path.name}.export.tmp"
    if leader:
        shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier, killed export
        tmp.mkdir()
    _sync_processes(f"jaxhub export start {path}")
    return tmp


def _write_description(tmp: pathlib.Path, manifest: Manifest,
                       exported: Mapping[str, jax_export.Exported],
                       assets: Mapping[str, pathlib.Path | bytes],
                       exported_vjps: bool = True) -> None:
    """Writes everything but the params; ``exported_vjps``: see :func:`cache_entry`."""
    manifest = _with_provenance(manifest, _copy_assets(tmp, assets))
    split = {f.file: f.vjp for f in manifest.functions if f.vjp}
    # Written without a VJP of their own: the halves of a split VJP (never
    # differentiated), forward-only functions (JAX cannot differentiate them), the
    # functions of a module written without gradients (differentiated through another
    # copy of the module) and, in an entry of the cache, those with a split VJP.
    no_vjp = {file for vjp in split.values() for file in (vjp.forward, vjp.backward)}
    no_vjp |= {f.file for f in manifest.functions
               if f.forward_only is not None or not manifest.gradients}
    if not exported_vjps:
        no_vjp |= split.keys()
    records, durable_records = {}, {}
    for file, exp in sorted(exported.items()):
        if file in split and file not in no_vjp:
            exp = _with_exported_vjp(exp, split[file], exported)
        data = serialization.serialize(exp, vjp_order=0 if file in no_vjp else 1)
        _write_file(tmp, file, data)
        records[file] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        # Described from the bytes just written, so that the VJP is the stored one. A
        # function with a split VJP is differentiated through its halves: its own VJP
        # needs no durable copy.
        described = durable.describe(serialization.deserialize(data), file,
                                     vjp=file not in no_vjp and file not in split)
        if described is not None:
            durable_records[file], durable_files = described
            for name, artifact in durable_files.items():
                _write_file(tmp, name, artifact)
    # Readers check the hashes: a damaged function file fails the load, not a later call.
    manifest = dataclasses.replace(manifest, function_files=records,
                                   durable_functions=durable_records,
                                   exported_vjps=exported_vjps or not split)
    (tmp / files.MANIFEST_FILE).write_text(manifest.to_json())


def _with_exported_vjp(exp: jax_export.Exported, vjp: VjpSpec,
                       exported: Mapping[str, jax_export.Exported]) -> jax_export.Exported:
    """``exp``, or when it has no VJP (read from an entry of the cache) ``exp`` with the
    VJP built from its split VJP's halves, for readers that predate split VJPs."""
    if exp.has_vjp():
        return exp
    halves = serialization.SplitVjp(exported[vjp.forward], exported[vjp.backward],
                                    vjp.saved_inputs, vjp.saved_outputs)
    return serialization.with_vjp_from_halves(exp, halves)


def _write_file(tmp: pathlib.Path, name: str, data: bytes) -> None:
    target = tmp / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _sync_processes(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def _copy_assets(tmp: pathlib.Path, assets: Mapping[str, pathlib.Path | bytes]
                 ) -> dict[str, dict[str, Any]]:
    """Copies assets, given as files or bytes (a model card ``README.md`` goes to the
    top); returns their hashes."""
    entries = {}
    for name, source in sorted(assets.items()):
        target = tmp / files.asset_file(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
        data = target.read_bytes()
        entries[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return entries


def _with_provenance(manifest: Manifest, assets: dict[str, dict[str, Any]]) -> Manifest:
    return dataclasses.replace(
        manifest, assets=assets,
        written_by={"jaxhub": version.__version__, "jax": jax.__version__})
