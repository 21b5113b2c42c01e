"""jaxhub: reusable, self-contained pieces of trained models for JAX.

A module is pure functions with named signatures over one params tree, stored with Orbax
and ``jax.export``. Load one by path or URL, apply it like a function, fine-tune it with
``jax.grad``, export it again.

The public API is what this package, ``jaxhub.hub``, ``jaxhub.catalog``, ``jaxhub.nnx``,
``jaxhub.linen``, ``jaxhub.common_signatures`` and ``jaxhub.extend`` list in ``__all__``;
everything under ``jaxhub._src`` is private.
"""

import importlib as _importlib

from jaxhub._src.compilation_cache import enable_compilation_cache as enable_compilation_cache
from jaxhub._src.create import create_module as create_module
from jaxhub._src.exporter import ModuleExporter as ModuleExporter
from jaxhub._src.flax.interop import from_flax as from_flax
from jaxhub._src.formats import register_format as register_format
from jaxhub._src.host import HostStageError as HostStageError
from jaxhub._src.hub import HubError as HubError
from jaxhub._src.hub import pack as pack
from jaxhub._src.loading import load as load
from jaxhub._src.loading import resolve as resolve
from jaxhub._src.memory import enable_memory_reuse as enable_memory_reuse
from jaxhub._src.module import Module as Module
from jaxhub._src.specs import Signature as Signature
from jaxhub._src.specs import SignatureError as SignatureError
from jaxhub._src.specs import TensorSpec as TensorSpec
from jaxhub._src.storage.manifest import ModuleFormatError as ModuleFormatError
from jaxhub._src.tree import merge_params as merge_params
from jaxhub._src.upgrade import upgrade as upgrade
from jaxhub._src.version import __version__ as __version__


def _register_repository_resolver() -> None:
    # Only the resolver: the catalog's site builder is imported when it is used.
    from jaxhub._src.catalog.resolver import RepositoryResolver
    from jaxhub._src.hub import register_resolver
    register_resolver(RepositoryResolver())


_register_repository_resolver()

_SUBMODULES = ("catalog", "common_signatures", "extend", "hub", "linen", "nnx")


def __getattr__(name: str):
    # ``jaxhub.catalog`` and friends are imported on first use, keeping ``import jaxhub``
    # free of the site builder and of Flax's layer modules.
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = (
    "HostStageError",
    "HubError",
    "Module",
    "ModuleExporter",
    "ModuleFormatError",
    "Signature",
    "SignatureError",
    "TensorSpec",
    "__version__",
    "create_module",
    "enable_compilation_cache",
    "enable_memory_reuse",
    "from_flax",
    "load",
    "merge_params",
    "pack",
    "register_format",
    "resolve",
    "upgrade",
)
