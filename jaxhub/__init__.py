"""jaxhub: reusable, self-contained pieces of trained models for JAX.

A module is pure functions with named signatures over one params tree, stored with Orbax
and ``jax.export``. Load one by path or URL, apply it like a function, fine-tune it with
``jax.grad``, export it again.

The public names below are imported on first use, so ``import jaxhub`` (and the
``jaxhub`` command's ``--help``) does not import JAX. The first use of any of them also
imports :mod:`jaxhub.catalog`, which registers the repository resolver that
:func:`load` uses for ``<repo>/<org>/<model>/<N>`` URLs.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from jaxhub.version import __version__ as __version__

# Public name -> (module, attribute in it).
_LAZY = {
    "catalog": ("jaxhub.catalog", None),
    "enable_compilation_cache": ("jaxhub.compilation_cache", "enable_compilation_cache"),
    "create_module": ("jaxhub.create", "create_module"),
    "ModuleExporter": ("jaxhub.exporter", "ModuleExporter"),
    "from_flax": ("jaxhub.flax_interop", "from_flax"),
    "ModuleFormatError": ("jaxhub.format.manifest", "ModuleFormatError"),
    "HubError": ("jaxhub.hub", "HubError"),
    "pack": ("jaxhub.hub", "pack"),
    "load": ("jaxhub.loading", "load"),
    "resolve": ("jaxhub.loading", "resolve"),
    "enable_memory_reuse": ("jaxhub.memory", "enable_memory_reuse"),
    "Module": ("jaxhub.module", "Module"),
    "Signature": ("jaxhub.specs", "Signature"),
    "SignatureError": ("jaxhub.specs", "SignatureError"),
    "TensorSpec": ("jaxhub.specs", "TensorSpec"),
    "merge_params": ("jaxhub.tree", "merge"),
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:  # what type checkers and IDEs see
    from jaxhub import catalog as catalog
    from jaxhub.compilation_cache import enable_compilation_cache as enable_compilation_cache
    from jaxhub.create import create_module as create_module
    from jaxhub.exporter import ModuleExporter as ModuleExporter
    from jaxhub.flax_interop import from_flax as from_flax
    from jaxhub.format.manifest import ModuleFormatError as ModuleFormatError
    from jaxhub.hub import HubError as HubError
    from jaxhub.hub import pack as pack
    from jaxhub.loading import load as load
    from jaxhub.loading import resolve as resolve
    from jaxhub.memory import enable_memory_reuse as enable_memory_reuse
    from jaxhub.module import Module as Module
    from jaxhub.specs import Signature as Signature
    from jaxhub.specs import SignatureError as SignatureError
    from jaxhub.specs import TensorSpec as TensorSpec
    from jaxhub.tree import merge as merge_params


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attribute = _LAZY[name]
    elif not name.startswith("_") and importlib.util.find_spec(f"jaxhub.{name}"):
        module_name, attribute = f"jaxhub.{name}", None  # a subpackage: ``jaxhub.hub``
    else:
        raise AttributeError(f"module 'jaxhub' has no attribute {name!r}")
    importlib.import_module("jaxhub.catalog")  # registers the repository resolver
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
