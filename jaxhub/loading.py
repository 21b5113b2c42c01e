"""``jaxhub.load``: from a handle (path or URL) to a :class:`Module`."""

from __future__ import annotations

import os

from jaxhub import formats
from jaxhub import hub
from jaxhub.format.params import ShardingFn
from jaxhub.module import Module


def load(handle: str | os.PathLike, *, sha256: str | None = None,
         offline: bool | None = None, cache_dir: str | os.PathLike | None = None,
         progress: bool | None = None, sharding: ShardingFn | None = None) -> Module:
    """Loads a module from a local directory or a URL.

    URLs are downloaded, verified and cached (see :func:`jaxhub.resolve`). TF2
    SavedModels and TF1 Hub modules are converted when TensorFlow is installed, and the
    converted module is cached too.

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
      jaxhub.hub.HubError: the handle cannot be resolved or downloaded.

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
    kwargs = {} if sharding is None else {"sharding": sharding}
    return formats.read(path, cache_dir=cache_dir, **kwargs)


resolve = hub.resolve
