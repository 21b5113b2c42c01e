"""Upgrading a module: its functions lowered again by the running JAX.

``jax.export`` guarantees that a serialized function loads for about six months of newer
JAX releases. Calling a deserialized function inside a new export inlines its StableHLO
into a module serialized by the running JAX, so re-exporting every function renews that
window (and rewrites the manifest in the current format) without the publisher's code.
The functions are read as any load reads them: from their ``jax.export`` wrappers while
the running JAX reads those, else from their durable copies
(:mod:`jaxhub.format.durable`), which the upgraded module gets afresh.
"""

from __future__ import annotations

import dataclasses
import pathlib

from jaxhub import functions
from jaxhub.format import reader
from jaxhub.module import Module
from jaxhub.specs import TensorSpec


def upgrade(src: str | pathlib.Path, dst: str | pathlib.Path) -> Module:
    """Writes the module at ``src`` to ``dst`` with every function lowered anew.

    Args:
      src: a jaxhub module directory (any format version this jaxhub reads).
      dst: a new directory for the upgraded module.

    Returns:
      The upgraded module, loaded from ``dst``.
    """
    module = reader.read(pathlib.Path(src))
    # A function with a split VJP is called through its halves, so that its own VJP (the
    # new wrapper's) need not be read: a durable copy keeps none.
    split = {f.file: f.vjp for f in module.manifest.functions if f.vjp}
    exported = {file: _relower(exp, _callable(module._exported, file, split.get(file)))
                for file, exp in module._exported.items()}
    manifest = dataclasses.replace(module.manifest, origin={
        **module.manifest.origin, "upgraded_from": dict(module.manifest.written_by)})
    upgraded = Module(manifest, exported, module.params, module.assets)
    return reader.read(upgraded.export(dst))


def _callable(exported, file, vjp):
    """The function in ``file``, differentiated through its split VJP when it has one."""
    halves = None if vjp is None else functions.SplitVjp(
        exported[vjp.forward], exported[vjp.backward], vjp.saved_inputs, vjp.saved_outputs)
    return functions.make_callable(exported[file], halves)


def _relower(exported, call):
    specs = [TensorSpec.from_aval(aval) for aval in exported.in_avals]
    return functions.export(lambda *args: call(*args), specs,
                            platforms=exported.platforms)
