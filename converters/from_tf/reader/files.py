"""Opening a SavedModel directory: its ``saved_model.pb`` parsed and checked, with errors
that name the file.

Reading registers each MetaGraphDef's op definitions (see
:mod:`jaxhub_tf.from_tf.reader.op_defs`) and refuses function libraries the
interpreter could not finish: functions that call themselves, through any chain of
calls, and chains of calls nested deeper than :data:`MAX_CALL_DEPTH`.

Examples:
  >>> proto = read_saved_model(pathlib.Path("/tmp/saved"))
  >>> proto.meta_graphs[0].signature_def["serving_default"]
"""

from __future__ import annotations

import errno
import functools
import os
import pathlib
import stat
from typing import Any, BinaryIO, Callable

from google.protobuf import message, text_format

from jaxhub_tf.from_tf.reader import op_defs, protos, tensors
from jaxhub import ModuleFormatError

#: The deepest chain of function calls a library may nest (Python's recursion limit
#: would stop the interpreter in a few hundred).
MAX_CALL_DEPTH = 100


def read_regular(path: pathlib.Path) -> bytes:
    """The bytes of ``path``, which must be a regular file.

    A FIFO in a module directory would block a plain ``open`` forever (no writer ever
    comes), and a device could stream without end; opened without blocking and checked
    before reading, either is refused.

    Raises:
      OSError: ``path`` cannot be read, or is not a regular file.
    """
    with open_regular(path) as f:
        return f.read()


def open_regular(path: pathlib.Path) -> BinaryIO:
    """``path`` opened for reading in binary mode; see :func:`read_regular`."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_saved_model(path: pathlib.Path) -> protos.SavedModel:
    """The ``SavedModel`` message of directory ``path`` (``saved_model.pb`` or ``.pbtxt``).

    Raises:
      ModuleFormatError: the file is missing, unparsable (corrupt, nested deeper than
        protobuf allows, not a SavedModel), holds no MetaGraphDef, or its function
        library is recursive or nested too deeply.
    """
    binary, text = path / "saved_model.pb", path / "saved_model.pbtxt"
    file = binary if binary.is_file() or not text.is_file() else text
    proto = protos.SavedModel()
    try:
        if file is binary:
            proto.ParseFromString(read_regular(file))
        else:
            text_format.Parse(read_regular(file).decode(), proto, allow_unknown_field=True)
    except OSError as e:
        raise ModuleFormatError(f"{file}: cannot read the SavedModel ({e.strerror})") from e
    except (message.DecodeError, text_format.ParseError, RecursionError,
            UnicodeDecodeError) as e:
        raise ModuleFormatError(f"{file}: not a readable SavedModel protobuf ({e}); the "
                                f"file may be truncated or corrupt") from None
    if not proto.meta_graphs:
        raise ModuleFormatError(f"{file}: the SavedModel holds no MetaGraphDef")
    for meta in proto.meta_graphs:
        op_defs.register(meta.meta_info_def.stripped_op_list)
        check_library(meta.graph_def.library, file)
    return proto


def asset_file(saved_model_dir: pathlib.Path, filename: str) -> pathlib.Path:
    """The file of the asset that a SavedModel names ``filename``, inside its ``assets/``.

    The name comes from the SavedModel's own protobuf, so it is checked like any other
    input: the file must be a regular file under ``assets/``, reached without leaving it
    (no absolute name, no ``..``, no symbolic link out), so converting never copies a file
    from elsewhere on the disk into the module.

    Raises:
      ModuleFormatError: naming the SavedModel directory and the asset.
    """
    assets = saved_model_dir / "assets"
    name = pathlib.PurePosixPath(filename)
    if (not filename or name.is_absolute() or ".." in name.parts or "\\" in filename
            or "\0" in filename):
        raise ModuleFormatError(f"{saved_model_dir}: asset {filename!r} names a file outside "
                                f"its assets/ directory; the SavedModel is damaged or hostile")
    target = (assets / filename).resolve()
    if assets.resolve() not in target.parents:
        raise ModuleFormatError(f"{saved_model_dir}: asset {filename!r} is a symbolic link "
                                f"out of its assets/ directory; copy the file itself there")
    if not target.is_file():  # missing, a directory, a FIFO or a device
        raise ModuleFormatError(f"{saved_model_dir}: asset {filename!r} is missing from "
                                f"assets/ or not a regular file; the SavedModel is incomplete")
    return target


def check_library(library, file: pathlib.Path | str) -> None:
    """Refuses a function library with recursion or calls nested past
    :data:`MAX_CALL_DEPTH`.

    Raises:
      ModuleFormatError: naming ``file`` and the chain of calls.
    """
    names = {f.signature.name for f in library.function}
    calls = {f.signature.name: sorted(_callees(f, names)) for f in library.function}
    depth: dict[str, int] = {}  # finished functions: the longest chain below them
    for root in calls:
        if root in depth:
            continue
        # Iterative depth-first search: ``path`` is the chain of calls being explored.
        path, on_path, stack = [], set(), [(root, iter(calls[root]))]
        path.append(root)
        on_path.add(root)
        while stack:
            name, pending = stack[-1]
            callee = next(pending, None)
            if callee is None:
                stack.pop()
                path.pop()
                on_path.discard(name)
                depth[name] = 1 + max((depth[c] for c in calls[name]), default=0)
                if depth[name] > MAX_CALL_DEPTH:
                    raise ModuleFormatError(
                        f"{file}: function {name!r} nests calls {depth[name]} deep, more "
                        f"than the {MAX_CALL_DEPTH} jaxhub converts")
                continue
            if callee in on_path:
                cycle = path[path.index(callee):] + [callee]
                raise ModuleFormatError(f"{file}: the function library is recursive: "
                                        f"{' -> '.join(cycle)}")
            if callee not in depth:
                path.append(callee)
                on_path.add(callee)
                stack.append((callee, iter(calls[callee])))


def _callees(fdef, names: set[str]) -> set[str]:
    """The functions of ``names`` that ``fdef`` calls: as ops or through attributes."""
    found = set()
    for node in fdef.node_def:
        if node.op in names:
            found.add(node.op)
        for value in node.attr.values():
            kind = value.WhichOneof("value")
            if kind == "func":
                found.add(value.func.name)
            elif kind == "list":
                found.update(f.name for f in value.list.func)
    return found & names


def names_source(convert: Callable[..., Any]) -> Callable[..., Any]:
    """Decorates ``convert(src, ...)`` so that a malformed tensor met while converting (a
    constant claiming an absurd shape, say) is reported as ``src``'s
    :class:`~jaxhub.ModuleFormatError`."""

    @functools.wraps(convert)
    def wrapper(src, *args, **kwargs):
        try:
            return convert(src, *args, **kwargs)
        except Exception as e:
            # The interpreter wraps a node's error in its own, naming the node.
            cause = e
            while cause is not None and not isinstance(cause, tensors.TensorFormatError):
                cause = cause.__cause__
            if cause is None or str(src) in str(e):
                raise
            raise ModuleFormatError(f"{src}: {str(e).splitlines()[0]}") from None

    return wrapper
