"""What a format plug-in (a converter from another framework) builds on.

A plug-in declares an entry point in the group ``jaxhub.formats`` naming a function
that calls :func:`register_format`; ``jaxhub.load`` then detects the format by its marker
files and converts it once into a cached jaxhub module. The converter itself makes the
module with :func:`jaxhub.create_module` and writes it with :meth:`jaxhub.Module.export`;
what else it may need is here: the functions' default platforms, host stages for string
and table preprocessing, and the params-tree paths the manifest uses.

Examples:
  >>> import jaxhub.extend
  >>> def register():
  ...     jaxhub.extend.register_format("My format", ["my_model.bin"], my_convert)
"""

from __future__ import annotations

from typing import Any as _Any
from typing import Container as _Container
from typing import Iterable as _Iterable

from jaxhub._src.formats import Format as Format
from jaxhub._src.formats import register_format as register_format
from jaxhub._src import host as _host
from jaxhub._src.host import HostStage as HostStage
from jaxhub._src.host import HostStageError as HostStageError
from jaxhub._src.host.ops import attr_problems as _host_op_attr_problems
from jaxhub._src.host.ops import lookup as _lookup_host_op
from jaxhub._src.host.ops import supported_ops as _supported_host_ops
from jaxhub._src.host.program import encode_array as encode_array
from jaxhub._src.host.registry import ANY as ANY
from jaxhub._src.host.registry import AttrSpec as AttrSpec
from jaxhub._src.host.registry import Registry as Registry
from jaxhub._src.hub import cached_derivation as cached_derivation
from jaxhub._src.module import ModuleDef as ModuleDef
from jaxhub._src.serialization import DEFAULT_PLATFORMS as DEFAULT_PLATFORMS
from jaxhub._src.specs import ragged_component as ragged_component
from jaxhub._src.specs import ragged_component_names as ragged_component_names
from jaxhub._src.storage.manifest import FunctionSpec as FunctionSpec
from jaxhub._src.storage.manifest import ParamSpec as ParamSpec
from jaxhub._src.tree import Path as Path
from jaxhub._src.tree import flatten as flatten
from jaxhub._src.tree import unflatten as unflatten

__all__ = (
    "ANY",
    "AttrSpec",
    "DEFAULT_PLATFORMS",
    "Format",
    "FunctionSpec",
    "HOST_STAGES_ATTACHMENT",
    "HostStage",
    "HostStageError",
    "ModuleDef",
    "ParamSpec",
    "Path",
    "Registry",
    "cached_derivation",
    "encode_array",
    "flatten",
    "has_host_op",
    "host_op_attr_problems",
    "ragged_component",
    "ragged_component_names",
    "register_format",
    "supported_host_ops",
    "unflatten",
)


#: The attachment that holds a module's host stages, by signature name.
HOST_STAGES_ATTACHMENT = _host.ATTACHMENT_KEY


def has_host_op(op: str) -> bool:
    """True when a host stage can run the TF op ``op`` (with numpy)."""
    return _lookup_host_op(op) is not None


def host_op_attr_problems(node: _Any, present: _Iterable[str],
                          implicit: _Container[str] = ()) -> list[str]:
    """What is wrong with ``node``'s attributes for the host op it names (none: ``[]``).

    Args:
      node: the node, with ``op``, ``name`` and ``attrs``.
      present: the names of the attributes the node has.
      implicit: attributes TF adds to every node of the op, which no op reads.
    """
    return _host_op_attr_problems(node, present, implicit)


def supported_host_ops() -> list[str]:
    """Every TF op a host stage can run, sorted."""
    return _supported_host_ops()
