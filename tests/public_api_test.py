"""The public surface, pinned: what each public module exports, and nothing more.

Adding or removing a public name is a decision; this test makes it a visible one.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC = {
    "jaxhub": (
        "HostStageError", "HubError", "Module", "ModuleExporter", "ModuleFormatError",
        "Ragged", "Signature", "SignatureError", "TensorSpec", "__version__", "create_module",
        "enable_compilation_cache", "enable_memory_reuse", "from_flax", "load",
        "merge_params", "pack", "register_format", "resolve", "upgrade"),
    "jaxhub.hub": (
        "ArchiveError", "CacheLockError", "CacheWriteError", "DownloadError", "HandleError",
        "HubError", "IntegrityError", "OfflineError", "Request", "Resolver", "SettingsError",
        "UnsafeArchiveError", "cache_dir", "cached_derivation", "pack", "register_resolver",
        "resolve"),
    "jaxhub.catalog": (
        "Published", "RepositoryResolver", "SearchResult", "build_catalog", "publish",
        "reindex", "search"),
    "jaxhub.nnx": ("HubLayer", "HubState"),
    "jaxhub.linen": ("HubLayer", "module_params"),
    "jaxhub.common_signatures": (
        "EMBEDDING_DIM", "IMAGE_CHANNELS", "IMAGE_SIZE", "IMAGE_VALUE_RANGE",
        "get_embedding_dim", "get_expected_image_size", "get_num_image_channels",
        "image_input", "takes_text", "text_embedding_input"),
    "jaxhub.extend": (
        "ANY", "AttrSpec", "DEFAULT_PLATFORMS", "Format", "FunctionSpec",
        "HOST_STAGES_ATTACHMENT", "HostStage", "HostStageError", "ModuleDef", "ParamSpec",
        "Path", "Registry", "cached_derivation", "encode_array", "flatten", "has_host_op",
        "host_op_attr_problems", "ragged_component", "ragged_component_names",
        "register_format", "supported_host_ops", "unflatten"),
    "jaxhub_tf": ("convert_saved_model", "convert_tf1_hub_module", "export_saved_model"),
}
#: Public modules a package may hold as attributes without listing them in ``__all__``.
SUBMODULES = {"jaxhub": {"catalog", "common_signatures", "extend", "hub", "linen", "nnx"},
              "jaxhub_tf": {"formats", "from_tf", "to_tf"}}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_all_is_pinned(name):
    module = importlib.import_module(name)
    assert tuple(sorted(module.__all__)) == PUBLIC[name]


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_listed_name_exists_and_nothing_else_is_public(name):
    module = importlib.import_module(name)
    for public in module.__all__:
        assert hasattr(module, public), public
    unlisted = {n for n in vars(module) if not n.startswith("_")} - set(module.__all__)
    assert unlisted <= SUBMODULES.get(name, set()) | {"annotations"}, unlisted


def test_public_names_come_from_private_modules():
    import jaxhub
    for name in jaxhub.__all__:
        origin = getattr(getattr(jaxhub, name), "__module__", "jaxhub._src")
        assert origin.startswith("jaxhub._src"), (name, origin)


def test_import_is_light():
    script = ("import sys, jaxhub; "
              "heavy = [m for m in ('jaxhub._src.catalog.site', 'jaxhub._src.catalog._markdown',"
              " 'jaxhub._src.cli', 'jaxhub_tf', 'tensorflow', 'flax.nnx') if m in sys.modules]; "
              "print(heavy)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_submodules_load_on_first_use():
    import jaxhub
    assert jaxhub.catalog.search is importlib.import_module("jaxhub.catalog").search
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jaxhub.nope  # noqa: B018
