"""The ``params/`` directory: the params tree as an Orbax checkpoint.

Params are restored against a target built from the manifest, never from the shardings
saved with them, so a module loads onto whatever devices the reader has, or sharded.
"""

from __future__ import annotations

import os
import pathlib
import stat
from typing import Any, Callable, Iterator

import jax
import orbax.checkpoint as ocp

from jaxhub._src import tree
from jaxhub._src.storage.files import PARAMS_DIR
from jaxhub._src.storage.manifest import ModuleFormatError, ParamSpec


#: Maps a param's path and abstract value to the sharding to load it with.
ShardingFn = Callable[[tree.Path, jax.ShapeDtypeStruct], jax.sharding.Sharding]


def save(directory: pathlib.Path, params: dict[str, Any]) -> None:
    """Writes ``params`` to ``directory/params`` (nothing when there are none)."""
    if not tree.flatten(params):
        return
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / PARAMS_DIR, params)
        checkpointer.wait_until_finished()


def restore(directory: pathlib.Path, specs: tuple[ParamSpec, ...],
            sharding: jax.sharding.Sharding | ShardingFn | None = None) -> dict[str, Any]:
    """Reads the params that ``specs`` describe from ``directory/params``.

    Args:
      directory: the module directory.
      specs: the params in the manifest.
      sharding: one sharding for every param, a function of (path, abstract value), or
        None for the default device.

    Raises:
      ModuleFormatError: the params are missing or do not match the manifest.
    """
    if not specs:
        return {}
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = tree.unflatten(
        (spec.path, _abstract(spec, sharding)) for spec in specs)
    params_dir = directory / PARAMS_DIR
    if not params_dir.is_dir():
        raise ModuleFormatError(f"module at {directory} has no {PARAMS_DIR}/ directory")
    _check_plain_files(directory, params_dir)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            return checkpointer.restore(params_dir, target)
    except Exception as e:  # Orbax raises many kinds; none should escape unexplained.
        raise ModuleFormatError(
            f"cannot read the params of the module at {directory}: {type(e).__name__}: "
            f"{_first_line(e)}") from e


def _check_plain_files(directory: pathlib.Path, params_dir: pathlib.Path) -> None:
    """Refuses a ``params/`` that holds anything but regular files and directories.

    Orbax and TensorStore open whatever they find: a symbolic link would have them read
    outside the module, and a FIFO would block the load forever.
    """
    for path in _entries(params_dir):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise ModuleFormatError(
                f"module at {directory}: {path.relative_to(directory).as_posix()} is {kind}; "
                f"a module's {PARAMS_DIR}/ holds only regular files and directories, so "
                f"fetch the module again from its source")


def _entries(root: pathlib.Path) -> Iterator[pathlib.Path]:
    """``root`` and everything under it, without following symbolic links."""
    yield root
    for dirpath, dirnames, filenames in os.walk(root):  # lists links, never enters them
        for name in dirnames + filenames:
            yield pathlib.Path(dirpath, name)


def _abstract(spec: ParamSpec, sharding) -> jax.ShapeDtypeStruct:
    struct = jax.ShapeDtypeStruct(spec.shape, spec.dtype)
    chosen = sharding(spec.path, struct) if callable(sharding) else sharding
    return jax.ShapeDtypeStruct(spec.shape, spec.dtype, sharding=chosen)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
