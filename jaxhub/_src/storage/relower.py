"""Functions lowered again by the running JAX: what ``jaxhub upgrade`` rests on.

Calling a deserialized function inside a new export inlines its StableHLO into a module
serialized by the running JAX, so re-exporting every function renews ``jax.export``'s
compatibility window and writes fresh durable copies, without the publisher's code. The
functions are read as any load reads them: from their ``jax.export`` wrappers while the
running JAX reads those, else from their durable copies
(:mod:`jaxhub._src.storage.durable`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Mapping

from jaxhub._src import serialization
from jaxhub._src.specs import TensorSpec
from jaxhub._src.storage import reader, writer
from jaxhub._src.storage.manifest import Manifest


def relower_functions(functions: Mapping[str, Any], manifest: Manifest) -> dict[str, Any]:
    """Every function of a module (by file) exported anew by the running JAX.

    A function with a split VJP is called through its halves, so that its own VJP is not
    needed (a durable copy keeps none).
    """
    split = {f.file: f.vjp for f in manifest.functions if f.vjp}
    return {file: _relower(exp, _callable(functions, file, split.get(file)))
            for file, exp in functions.items()}


def upgraded_manifest(manifest: Manifest) -> Manifest:
    """``manifest`` noting, in its origin, who wrote the module before the upgrade."""
    return dataclasses.replace(manifest, origin={
        **manifest.origin, "upgraded_from": dict(manifest.written_by)})


def relower_dir(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    """Writes the module directory ``src`` to ``dst`` with its functions lowered anew.

    For modules whose assets need no reading (the converted-module cache); ``jaxhub
    upgrade`` goes through a loaded module instead.
    """
    contents = reader.read(pathlib.Path(src))
    functions = relower_functions(contents.functions, contents.manifest)
    return writer.write(pathlib.Path(dst), upgraded_manifest(contents.manifest), functions,
                        contents.params, contents.assets)


def _callable(functions: Mapping[str, Any], file: str, vjp):
    halves = None if vjp is None else serialization.SplitVjp(
        functions[vjp.forward], functions[vjp.backward], vjp.saved_inputs,
        vjp.saved_outputs)
    return serialization.make_callable(functions[file], halves)


def _relower(exported, call):
    specs = [TensorSpec.from_aval(aval) for aval in exported.in_avals]
    return serialization.export(lambda *args: call(*args), specs,
                                platforms=exported.platforms)
