"""Upgrading a module: its functions lowered again by the running JAX.

``jax.export`` guarantees that a serialized function loads for about six months of newer
JAX releases; :mod:`jaxhub._src.storage.relower` lowers every function again (from its
wrapper, or its durable copy once the wrapper has expired), which renews that window and
writes fresh durable copies, and rewrites the manifest in the current format.
"""

from __future__ import annotations

import pathlib

from jaxhub._src import loading
from jaxhub._src.module import Module
from jaxhub._src.storage import relower, writer


def upgrade(src: str | pathlib.Path, dst: str | pathlib.Path) -> Module:
    """Writes the module at ``src`` to ``dst`` with every function lowered anew.

    Args:
      src: a jaxhub module directory (any format version this jaxhub reads).
      dst: a new directory for the upgraded module.

    Returns:
      The upgraded module, loaded from ``dst``.
    """
    module = loading.read(src)
    functions = relower.relower_functions(module.functions, module.manifest)
    manifest = relower.upgraded_manifest(module.manifest)
    # Assets the host stages read are written from memory: what the module loaded.
    assets = {name: module.definition.asset_bytes.get(name, file)
              for name, file in module.assets.items()}
    return loading.read(writer.write(pathlib.Path(dst), manifest, functions, module.params,
                                     assets))
