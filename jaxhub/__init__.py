"""jaxhub: reusable, self-contained pieces of trained models for JAX.

A module is pure functions with named signatures over one params tree, stored with Orbax
and ``jax.export``. Load one by path or URL, apply it like a function, fine-tune it with
``jax.grad``, export it again.

The public API is what this package, ``jaxhub.hub``, ``jaxhub.catalog``, ``jaxhub.nnx``,
``jaxhub.linen``, ``jaxhub.common_signatures`` and ``jaxhub.extend`` list in ``__all__``;
everything under ``jaxhub._src`` is private. The names below are imported on first use,
so ``import jaxhub`` (and the ``jaxhub`` command's ``--help``) does not import JAX. The
first use of any of them registers the repository resolver that :func:`load` uses for
``<repo>/<org>/<model>/<N>`` URLs (without importing the catalog's site builder).
"""

from __future__ import annotations

import importlib as _importlib
import importlib.util as _importlib_util
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from jaxhub._src.version import __version__ as __version__

# Public name -> (private module, attribute in it).
_LAZY = {
    "HostStageError": ("jaxhub._src.host", "HostStageError"),
    "HubError": ("jaxhub._src.hub", "HubError"),
    "Module": ("jaxhub._src.module", "Module"),
    "ModuleExporter": ("jaxhub._src.exporter", "ModuleExporter"),
    "ModuleFormatError": ("jaxhub._src.storage.manifest", "ModuleFormatError"),
    "Ragged": ("jaxhub._src.specs", "Ragged"),
    "Signature": ("jaxhub._src.specs", "Signature"),
    "SignatureError": ("jaxhub._src.specs", "SignatureError"),
    "TensorSpec": ("jaxhub._src.specs", "TensorSpec"),
    "create_module": ("jaxhub._src.create", "create_module"),
    "enable_compilation_cache": ("jaxhub._src.compilation_cache", "enable_compilation_cache"),
    "enable_memory_reuse": ("jaxhub._src.memory", "enable_memory_reuse"),
    "from_flax": ("jaxhub._src.flax.interop", "from_flax"),
    "load": ("jaxhub._src.loading", "load"),
    "merge_params": ("jaxhub._src.tree", "merge_params"),
    "pack": ("jaxhub._src.hub", "pack"),
    "register_format": ("jaxhub._src.formats", "register_format"),
    "resolve": ("jaxhub._src.loading", "resolve"),
    "upgrade": ("jaxhub._src.upgrade", "upgrade"),
}

__all__ = (
    "HostStageError",
    "HubError",
    "Module",
    "ModuleExporter",
    "ModuleFormatError",
    "Ragged",
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

if _TYPE_CHECKING:  # what type checkers and IDEs see
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
    from jaxhub._src.specs import Ragged as Ragged
    from jaxhub._src.specs import Signature as Signature
    from jaxhub._src.specs import SignatureError as SignatureError
    from jaxhub._src.specs import TensorSpec as TensorSpec
    from jaxhub._src.storage.manifest import ModuleFormatError as ModuleFormatError
    from jaxhub._src.tree import merge_params as merge_params
    from jaxhub._src.upgrade import upgrade as upgrade

_resolver_registered = False


def _register_repository_resolver() -> None:
    # Only the resolver: the catalog's site builder is imported when it is used.
    global _resolver_registered
    if not _resolver_registered:
        _resolver_registered = True
        from jaxhub._src.catalog.resolver import RepositoryResolver
        from jaxhub._src.hub import register_resolver
        register_resolver(RepositoryResolver())


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        module_name, attribute = _LAZY[name]
    elif not name.startswith("_") and _importlib_util.find_spec(f"jaxhub.{name}"):
        module_name, attribute = f"jaxhub.{name}", None  # a public module: ``jaxhub.hub``
    else:
        raise AttributeError(f"module 'jaxhub' has no attribute {name!r}")
    _register_repository_resolver()
    module = _importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
