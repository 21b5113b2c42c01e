"""``jaxhub.load``: from a handle (path or URL) to a :class:`Module`."""

from __future__ import annotations

import os
import pathlib

from jaxhub import formats
from jaxhub.format.params import ShardingFn
from jaxhub.module import Module


def load(handle: str | os.PathLike, *, sha256: str | None = None,
         offline: bool | None = None, sharding: ShardingFn | None = None) -> Module:
    """Loads a module from a local directory or a URL.

    URLs are downloaded, verified and cached (see :func:`jaxhub.resolve`). TF2
    SavedModels and TF1 Hub modules are converted when TensorFlow is installed.

    Args:
      handle: a directory, a ``file://`` URL, or an ``http(s)://`` URL of a tarball.
      sha256: the expected sha256 of the downloaded archive.
      offline: never touch the network (default: the ``JAXHUB_OFFLINE`` env var).
      sharding: how to place params: one ``jax.sharding.Sharding`` for all, or a
        function of (path, abstract value); default the first device.

    Returns:
      The module.

    Raises:
      ModuleFormatError: the handle holds no readable module.

    Examples:
      >>> m = jaxhub.load("https://example.org/models/mlp/1.tar.gz")
      >>> m(x)
    """
    path = resolve(handle, sha256=sha256, offline=offline)
    kwargs = {} if sharding is None else {"sharding": sharding}
    return formats.read(path, **kwargs)


def resolve(handle: str | os.PathLike, **kwargs) -> pathlib.Path:
    """The local directory holding the module at ``handle``, downloading it if needed."""
    try:
        from jaxhub.hub import resolve as hub_resolve
    except ImportError:
        return pathlib.Path(handle)
    return hub_resolve(handle, **kwargs)
