"""The ``params/`` directory: the params tree as an Orbax checkpoint.

Params are restored against a target built from the manifest, never from the shardings
saved with them, so a module loads onto whatever devices the reader has, or sharded.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import stat
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jaxhub._src import tree, units
from jaxhub._src.storage.files import PARAMS_DIR, entries_below
from jaxhub._src.storage.manifest import ModuleFormatError, ParamSpec


ENV_MAX_PARAMS_EXPANSION = "JAXHUB_MAX_PARAMS_EXPANSION"
DEFAULT_MAX_PARAMS_EXPANSION = 1000.0
#: Params may always declare this many bytes, whatever they take on disk.
PARAMS_EXPANSION_FLOOR_BYTES = 1 << 30

#: Maps a param's path and abstract value to the sharding to load it with.
ShardingFn = Callable[[tree.Path, jax.ShapeDtypeStruct], jax.sharding.Sharding]


@contextlib.contextmanager
def saving(directory: pathlib.Path, params: dict[str, Any], *,
           compressed: bool = True) -> Iterator[None]:
    """Writes ``params`` to ``directory/params`` while the body runs (nothing when there
    are none); they are written when the context exits, even on an error.

    Orbax copies the arrays to the host before the body starts and writes them on its
    own threads, which spend most of their time in TensorStore and the file system, so
    the body (lowering and serializing a module's functions) runs meanwhile.
    ``compressed``: zstd-compress the chunks; a few per cent smaller for trained
    weights, at a tenth of a second per 50 MB written and per 50 MB read. Orbax records
    the codec, so either is read the same way.

    Examples:
      >>> directory = pathlib.Path("module").absolute()  # Orbax needs absolute paths
      >>> with saving(directory, {"w": jnp.ones(3)}):
      ...     pass  # write the rest of the module meanwhile
      >>> restore(directory, (ParamSpec(("w",), (3,), "float32", True),))["w"]
      Array([1., 1., 1.], dtype=float32)
    """
    if not tree.flatten(params):
        yield
        return
    # A module that may leave the machine keeps Orbax's standard checkpoint, which every
    # jaxhub restores; only the pytree handler can leave the compression out. restore()
    # reads what either writes.
    if compressed:
        handler, args = ocp.StandardCheckpointHandler(), ocp.args.StandardSave(params)
    else:
        handler = ocp.PyTreeCheckpointHandler(use_compression=False)
        args = ocp.args.PyTreeSave(params)
    with ocp.AsyncCheckpointer(handler) as checkpointer:  # waits for the write on exit
        checkpointer.save(directory / PARAMS_DIR, args=args)
        yield


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
    _check_declared_size(directory, specs, _check_plain_files(directory, params_dir))
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            return checkpointer.restore(params_dir, target)
    except Exception as e:  # Orbax raises many kinds; none should escape unexplained.
        raise ModuleFormatError(
            f"cannot read the params of the module at {directory}: {type(e).__name__}: "
            f"{_first_line(e)}") from e


def placed(params: dict[str, Any], specs: tuple[ParamSpec, ...],
           sharding: jax.sharding.Sharding | ShardingFn | None = None
           ) -> dict[str, Any] | None:
    """``params``, which this process just saved as ``specs`` describe, placed as
    :func:`restore` would place them read back; None unless they match the specs
    (every path, shape and dtype)."""
    flat = dict(tree.flatten(params))
    if len(flat) != len(specs):
        return None
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    leaves = []
    for spec in specs:
        value = flat.get(spec.path)
        if (value is None or tuple(value.shape) != spec.shape
                or value.dtype != jnp.dtype(spec.dtype)):
            return None
        leaves.append((spec.path, jax.device_put(value, _abstract(spec, sharding).sharding)))
    return tree.unflatten(leaves)


def max_params_expansion(env: Mapping[str, str] | None = None) -> float:
    """How many times its bytes on disk ``params/`` may declare, above
    ``PARAMS_EXPANSION_FLOOR_BYTES``: ``JAXHUB_MAX_PARAMS_EXPANSION``, default 1000."""
    env = os.environ if env is None else env
    text = env.get(ENV_MAX_PARAMS_EXPANSION, "").strip()
    if not text:
        return DEFAULT_MAX_PARAMS_EXPANSION
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"{ENV_MAX_PARAMS_EXPANSION}={text!r}: expected a number > 0 "
                         f"(default {DEFAULT_MAX_PARAMS_EXPANSION:g})")
    return value


def _check_declared_size(directory: pathlib.Path, specs: tuple[ParamSpec, ...],
                         on_disk: int) -> None:
    """Refuses params that declare far more bytes than ``params/`` holds.

    Orbax allocates what the manifest and the checkpoint's metadata declare, so a few KiB
    of compressed chunks could otherwise claim all the memory of the machine. Random
    weights barely compress; only constant tensors do, which is what the floor is for.
    """
    def nbytes(spec: ParamSpec) -> int:
        return spec.size * jnp.dtype(spec.dtype).itemsize

    declared, ratio = sum(map(nbytes, specs)), max_params_expansion()
    if declared <= max(PARAMS_EXPANSION_FLOOR_BYTES, ratio * on_disk):
        return
    largest = max(specs, key=nbytes)
    raise ModuleFormatError(
        f"module at {directory}: its params declare {units.format_bytes(declared)} (the "
        f"largest, {'/'.join(largest.path)}, has shape {list(largest.shape)}) from "
        f"{units.format_bytes(on_disk)} in {PARAMS_DIR}/, more than {ratio:g} times as "
        f"much; the module is damaged or hostile, or, if you trust it, raise "
        f"{ENV_MAX_PARAMS_EXPANSION}")


def _check_plain_files(directory: pathlib.Path, params_dir: pathlib.Path) -> int:
    """Refuses a ``params/`` that holds anything but regular files and directories;
    returns the bytes of its files.

    Orbax and TensorStore open whatever they find: a symbolic link would have them read
    outside the module, and a FIFO would block the load forever.
    """
    total = 0
    for path in [params_dir, *entries_below(params_dir)]:
        info = path.lstat()
        mode = info.st_mode
        if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise ModuleFormatError(
                f"module at {directory}: {path.relative_to(directory).as_posix()} is {kind}; "
                f"a module's {PARAMS_DIR}/ holds only regular files and directories, so "
                f"fetch the module again from its source")
        total += info.st_size if stat.S_ISREG(mode) else 0
    return total


def _abstract(spec: ParamSpec, sharding) -> jax.ShapeDtypeStruct:
    struct = jax.ShapeDtypeStruct(spec.shape, spec.dtype)
    chosen = sharding(spec.path, struct) if callable(sharding) else sharding
    return jax.ShapeDtypeStruct(spec.shape, spec.dtype, sharding=chosen)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
