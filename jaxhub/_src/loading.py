"""``jaxhub.load``: from a handle (path or URL) to a :class:`Module`."""

from __future__ import annotations

import os
import pathlib
from typing import Callable

from jaxhub._src import formats
from jaxhub._src import hub
from jaxhub._src.host import HostStageError
from jaxhub._src.module import Module
from jaxhub._src.storage import reader
from jaxhub._src.storage.manifest import ModuleFormatError
from jaxhub._src.storage.params import ShardingFn


def load(handle: str | os.PathLike, *, sha256: str | None = None,
         offline: bool | None = None, cache_dir: str | os.PathLike | None = None,
         progress: bool | None = None, sharding: ShardingFn | None = None) -> Module:
    """Loads a module from a local directory or a URL.

    URLs are downloaded, verified and cached (see :func:`jaxhub.resolve`). Other formats
    (TF2 SavedModels and TF1 Hub modules) are converted, and the converted module is
    cached too; their gradients are exported the first time one is asked for (under
    ``jax.grad``, ``jax.vjp``, inside ``jit`` or not) and cached as well (docs/cache.md).

    Args:
      handle: a directory, a ``file://`` URL, or an ``http(s)://`` URL of a tarball.
      sha256: the expected sha256 of the downloaded archive.
      offline: never touch the network (default: the ``JAXHUB_OFFLINE`` env var).
      cache_dir: the cache root (default: :func:`jaxhub.hub.cache_dir`).
      progress: show a download progress bar (default: when stderr is a terminal and
        ``JAXHUB_DISABLE_PROGRESS`` is unset).
      sharding: how to place params: one ``jax.sharding.Sharding`` for all, or a
        function of (path, abstract value); default the first device.

    Returns:
      The module.

    Raises:
      ModuleFormatError: the handle holds no readable module.
      HubError: the handle cannot be resolved or downloaded.

    Examples:
      >>> module = jaxhub.create_module(
      ...     {"w": jnp.ones((4, 2))},
      ...     signatures={"default": (lambda p, x: x @ p["w"], jaxhub.TensorSpec([None, 4]))})
      >>> m = jaxhub.load(module.export("mlp"))   # or an http(s):// URL of a .tar.gz
      >>> m(jnp.ones((1, 4)))
      Array([[4., 4.]], dtype=float32)
    """
    path = hub.resolve(handle, sha256=sha256, offline=offline, cache_dir=cache_dir,
                       progress=progress)
    native = formats.native(path, cache_dir=cache_dir)
    return read(native.path, sharding=sharding, gradients=native.with_gradients,
                written_params=native.written_params)


def read(path: str | os.PathLike, sharding: ShardingFn | None = None,
         gradients: Callable[[], pathlib.Path] | None = None,
         written_params: dict | None = None) -> Module:
    """The jaxhub module in directory ``path``.

    ``gradients``: for a module written without gradients, returns the directory of the
    same module written with them (see :class:`jaxhub._src.module.WithGradients`).
    ``written_params``: the params this process just saved there (see
    :func:`jaxhub._src.storage.reader.read`).

    Raises:
      ModuleFormatError: the directory is not a complete, readable module, or a host
        stage in it is malformed.
    """
    contents = reader.read(pathlib.Path(path), sharding=sharding,
                           written_params=written_params)
    try:
        return Module(contents.manifest, contents.functions, contents.params,
                      contents.assets, path=contents.path, gradients=gradients)
    except HostStageError as e:
        raise ModuleFormatError(f"module at {contents.path}: {e}") from None


resolve = hub.resolve
