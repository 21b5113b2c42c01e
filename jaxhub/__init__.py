"""jaxhub: reusable, self-contained pieces of trained models for JAX.

A module is pure functions with named signatures over one params tree, stored with Orbax
and ``jax.export``. Load one by path or URL, apply it like a function, fine-tune it with
``jax.grad``, export it again.
"""

from jaxhub import catalog as catalog  # registers the repository resolver for load()
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
from jaxhub.version import __version__ as __version__
