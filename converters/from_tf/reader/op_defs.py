"""The definitions of TF ops (``OpDef``): output lists and attribute defaults, without TF.

A SavedModel strips attributes left at their default and names a node's outputs by the
op's output lists, so reading a graph needs each op's ``OpDef``. Every MetaGraphDef
carries those of its own ops (``meta_info_def.stripped_op_list``), which the loaders
:func:`register`; graphs that come without one (a bare ``GraphDef``) use the table
``op_defs.binpb`` shipped with jaxhub, made from TensorFlow by ``scripts/make-op-defs``
for every op the converter implements.

Examples:
  >>> register(meta_graph.meta_info_def.stripped_op_list)
  >>> get("Conv2D").attr[0].name
"""

from __future__ import annotations

import functools
import pathlib

from jaxhub_tf.from_tf.reader import protos

TABLE = pathlib.Path(__file__).with_name("op_defs.binpb")

_FROM_MODULES: dict[str, protos.OpDef] = {}


def register(op_list) -> None:
    """Adds the ``OpDef`` messages of ``op_list`` (a module's own take precedence over the
    table; of two modules', the one with more attributes, the newer, wins)."""
    for op_def in op_list.op:
        known = _FROM_MODULES.get(op_def.name)
        if known is None or len(op_def.attr) > len(known.attr):
            _FROM_MODULES[op_def.name] = op_def


def get(op: str):
    """The ``OpDef`` of ``op``, or None for an op neither a module nor the table defines."""
    found = _FROM_MODULES.get(op)
    return found if found is not None else _table().get(op)


@functools.cache
def _table() -> dict[str, protos.OpDef]:
    op_list = protos.OpList.FromString(TABLE.read_bytes())
    return {op_def.name: op_def for op_def in op_list.op}
