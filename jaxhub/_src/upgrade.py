"""Upgrading a module: its functions lowered again by the running JAX.

``jax.export`` guarantees that a serialized function loads for about six months of newer
JAX releases. Calling a deserialized function inside a new export inlines its StableHLO
into a module serialized by the running JAX, so re-exporting every function renews that
window (and rewrites the manifest in the current format) without the publisher's code.
"""

from __future__ import annotations

import dataclasses
import pathlib

from jaxhub._src import loading
from jaxhub._src import serialization
from jaxhub._src.module import Module
from jaxhub._src.specs import TensorSpec
from jaxhub._src.storage import writer


def upgrade(src: str | pathlib.Path, dst: str | pathlib.Path) -> Module:
    """Writes the module at ``src`` to ``dst`` with every function lowered anew.

    Args:
      src: a jaxhub module directory (any format version this jaxhub reads).
      dst: a new directory for the upgraded module.

    Returns:
      The upgraded module, loaded from ``dst``.
    """
    module = loading.read(src)
    functions = {file: _relower(exp) for file, exp in module.functions.items()}
    manifest = dataclasses.replace(module.manifest, origin={
        **module.manifest.origin, "upgraded_from": dict(module.manifest.written_by)})
    # Assets the host stages read are written from memory: what the module loaded.
    assets = {name: module.definition.asset_bytes.get(name, file)
              for name, file in module.assets.items()}
    return loading.read(writer.write(pathlib.Path(dst), manifest, functions, module.params,
                                     assets))


def _relower(exported):
    specs = [TensorSpec.from_aval(aval) for aval in exported.in_avals]
    call = serialization.make_callable(exported)
    return serialization.export(lambda *args: call(*args), specs,
                                platforms=exported.platforms)
