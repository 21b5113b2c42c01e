"""The import graph points one way: each layer imports only from the layers below it.

Read from the source with ``ast`` (imports inside functions count too), so a test fails
the moment a lower layer reaches up, before any cycle shows at run time.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

#: The components of ``jaxhub/_src``, lowest first. A component imports only from
#: components of lower layers (and from itself).
LAYERS = (
    ("version", "units", "shape_fast_paths"),  # no jaxhub imports at all
    ("specs", "tree", "hub"),             # specs and params trees; handles and the cache
    ("serialization", "sizes", "host"),   # jax.export calls; tied sizes; host stages
    ("storage",),                         # the on-disk format: file names, manifest, I/O
    ("module",),                          # Module: a description beside a params tree
    ("create", "formats", "exporter", "common_signatures", "compilation_cache",
     "memory"),                           # making modules; the table of formats
    ("loading",),                         # jaxhub.load: resolve, convert, read
    ("upgrade", "flax"),                  # re-lowering stored modules; Flax layers
    ("catalog",),                         # repositories, their index and site
    ("cli",),                             # the jaxhub command
)
_LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _imports(path: pathlib.Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _sources(folder: str) -> list[pathlib.Path]:
    return sorted((REPO / folder).rglob("*.py"))


def _component(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if parts[:2] == ["jaxhub", "_src"] and len(parts) > 2 else None


def test_every_component_has_a_layer():
    components = {p.relative_to(REPO / "jaxhub/_src").parts[0].removesuffix(".py")
                  for p in _sources("jaxhub/_src")} - {"__init__"}
    assert components == set(_LAYER_OF)


@pytest.mark.parametrize("path", _sources("jaxhub/_src"), ids=lambda p: str(p.relative_to(REPO)))
def test_private_code_imports_only_lower_layers(path):
    own = path.relative_to(REPO / "jaxhub/_src").parts[0].removesuffix(".py")
    for module in _imports(path):
        if not module.startswith(("jaxhub", "jaxhub_tf")) or module == "jaxhub._src":
            continue
        if own == "cli" and module in ("jaxhub", "jaxhub_tf", "jaxhub_tf.export_saved_model"):
            continue  # the command uses the public API (`jaxhub convert --to tf`: jaxhub_tf's)
        target = _component(module)
        assert target is not None, f"{path.name} imports the public {module}"
        assert target == own or _LAYER_OF[target] < _LAYER_OF[own], (
            f"jaxhub/_src/{own} (layer {_LAYER_OF[own]}) imports {module} "
            f"(layer {_LAYER_OF[target]})")


@pytest.mark.parametrize("path", sorted((REPO / "jaxhub").glob("*.py")), ids=lambda p: p.name)
def test_public_modules_only_re_export_private_code(path):
    for module in _imports(path):
        if module.startswith("jaxhub") and module not in ("jaxhub", "jaxhub._src"):
            assert module.startswith("jaxhub._src."), f"{path.name} imports {module}"


@pytest.mark.parametrize("path", _sources("converters"), ids=lambda p: str(p.relative_to(REPO)))
def test_converters_use_only_the_public_and_extension_api(path):
    for module in _imports(path):
        assert not module.startswith("jaxhub._src"), f"{path.name} imports {module}"
        assert not module.startswith("converters"), (
            f"{path.name} imports {module}: the folder is installed as jaxhub_tf")


def test_format_detection_imports_no_tensorflow():
    script = ("import sys, jaxhub_tf.formats, jaxhub._src.formats as f; "
              "names = [x.name for x in f.formats()]; "
              "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print(names)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TF2 SavedModel" in result.stdout


def test_benchmarks_have_no_import_cycle():
    graph = {}
    for path in _sources("benchmarks"):
        name = "benchmarks" if path.stem == "__init__" else f"benchmarks.{path.stem}"
        graph[name] = {m for m in _imports(path)
                       if m.startswith("benchmarks.") and m in {
                           f"benchmarks.{p.stem}" for p in _sources("benchmarks")}}
    for name, deps in graph.items():
        for dep in deps:
            assert name not in graph.get(dep, ()), f"{name} and {dep} import each other"
