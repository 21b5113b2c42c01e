"""A corrupt module directory gives a clear error, not a stack trace from deep inside."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import jaxhub
from jaxhub._src.storage.manifest import FORMAT_VERSION


@pytest.fixture
def module_copy(mlp_dir, tmp_path):
    return shutil.copytree(mlp_dir, tmp_path / "copy")


def edit_manifest(path, **changes):
    manifest = json.loads((path / "jaxhub_module.json").read_text())
    manifest.update(changes)
    (path / "jaxhub_module.json").write_text(json.dumps(manifest))


def test_not_a_module(tmp_path):
    with pytest.raises(jaxhub.ModuleFormatError, match="holds no module jaxhub can read"):
        jaxhub.load(tmp_path)


def test_missing_params(module_copy):
    shutil.rmtree(module_copy / "params")
    with pytest.raises(jaxhub.ModuleFormatError, match="no params/ directory"):
        jaxhub.load(module_copy)


def test_damaged_params(module_copy):
    for file in (module_copy / "params").rglob("*"):
        if file.is_file() and file.stat().st_size > 0:
            file.write_bytes(b"\0" * 8)
    with pytest.raises(jaxhub.ModuleFormatError, match="cannot read the params"):
        jaxhub.load(module_copy)


def test_bad_manifest_json(module_copy):
    (module_copy / "jaxhub_module.json").write_text("{not json")
    with pytest.raises(jaxhub.ModuleFormatError, match="not valid JSON"):
        jaxhub.load(module_copy)


def test_manifest_missing_fields(module_copy):
    manifest = json.loads((module_copy / "jaxhub_module.json").read_text())
    del manifest["params"]
    (module_copy / "jaxhub_module.json").write_text(json.dumps(manifest))
    with pytest.raises(jaxhub.ModuleFormatError, match="malformed"):
        jaxhub.load(module_copy)


def test_newer_format_version(module_copy):
    edit_manifest(module_copy, format_version=FORMAT_VERSION + 1)
    with pytest.raises(jaxhub.ModuleFormatError, match="newer than this jaxhub reads"):
        jaxhub.load(module_copy)


def test_missing_function_file(module_copy):
    (module_copy / "functions" / "inference" / "default.jaxexport").unlink()
    with pytest.raises(jaxhub.ModuleFormatError, match="missing function file"):
        jaxhub.load(module_copy)


DEFAULT_FILE = "functions/inference/default.jaxexport"
REFETCH = "remove the damaged entry with `jaxhub cache verify --remove-broken`"


def test_garbled_function_file(module_copy):
    (module_copy / DEFAULT_FILE).write_bytes(b"garbage")
    with pytest.raises(jaxhub.ModuleFormatError, match="is damaged") as error:
        jaxhub.load(module_copy)
    assert REFETCH in str(error.value)
    edit_manifest(module_copy, function_files={})  # as modules written before the hashes
    jaxhub.load(module_copy)  # an unreadable wrapper is stood in for by its durable copy
    edit_manifest(module_copy, durable_functions={})  # ... before durable copies too
    with pytest.raises(jaxhub.ModuleFormatError, match="unreadable function file") as error:
        jaxhub.load(module_copy)
    assert REFETCH in str(error.value)


def test_a_flipped_byte_in_a_function_file_fails_the_load(module_copy, x):
    data = bytearray((module_copy / DEFAULT_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF  # without the recorded hash this loads and runs
    (module_copy / DEFAULT_FILE).write_bytes(bytes(data))
    with pytest.raises(jaxhub.ModuleFormatError,
                       match=f"{module_copy}: function file {DEFAULT_FILE} is damaged") as error:
        jaxhub.load(module_copy)
    assert REFETCH in str(error.value)


def test_function_hashes_are_an_optional_key_of_format_1(mlp_dir, module_copy, x):
    manifest = json.loads((mlp_dir / "jaxhub_module.json").read_text())
    assert manifest["format_version"] == 1
    files = {f["file"] for f in manifest["functions"]} | {manifest["regularizer"]}
    assert files <= set(manifest["function_files"])
    for file, record in manifest["function_files"].items():
        assert record["size"] == (mlp_dir / file).stat().st_size
    edit_manifest(module_copy, function_files={}, some_later_key={"x": 1})
    np.testing.assert_allclose(jaxhub.load(module_copy)(x), jaxhub.load(mlp_dir)(x))


def test_deeply_nested_manifest(module_copy):
    text = (module_copy / "jaxhub_module.json").read_text().rstrip()
    nested = "[" * 100_000 + "]" * 100_000
    (module_copy / "jaxhub_module.json").write_text(text[:-1] + f', "x": {nested}}}')
    with pytest.raises(jaxhub.ModuleFormatError, match="nests lists or objects too deeply"):
        jaxhub.load(module_copy)


def test_manifest_over_the_size_limit(module_copy, monkeypatch):
    monkeypatch.setenv("JAXHUB_MAX_MANIFEST_BYTES", "100")
    with pytest.raises(jaxhub.ModuleFormatError,
                       match=r"over the limit of 100 \(JAXHUB_MAX_MANIFEST_BYTES\)"):
        jaxhub.load(module_copy)


@pytest.mark.parametrize("change, message", [
    ({"dtype": "bogus"}, "has dtype 'bogus', not a numeric dtype that jax knows"),
    ({"dtype": "object"}, "has dtype 'object', not a numeric dtype"),
    ({"shape": [-1, 3]}, "has shape [-1, 3], not sizes >= 0"),
])
def test_bogus_param_spec(module_copy, change, message):
    manifest = json.loads((module_copy / "jaxhub_module.json").read_text())
    manifest["params"][0].update(change)
    (module_copy / "jaxhub_module.json").write_text(json.dumps(manifest))
    with pytest.raises(jaxhub.ModuleFormatError, match="malformed") as error:
        jaxhub.load(module_copy)
    assert message in str(error.value)


def test_file_names_cannot_leave_the_module(module_copy):
    manifest = json.loads((module_copy / "jaxhub_module.json").read_text())
    manifest["functions"][0]["file"] = "../../etc/passwd"
    (module_copy / "jaxhub_module.json").write_text(json.dumps(manifest))
    with pytest.raises(jaxhub.ModuleFormatError, match="outside itself"):
        jaxhub.load(module_copy)


def test_relative_path(module_copy, monkeypatch, x):
    from jaxhub._src import loading
    monkeypatch.chdir(module_copy.parent)
    module = loading.read("copy")
    assert module.path.is_absolute()
    np.testing.assert_allclose(module(x), jaxhub.load(module_copy)(x))
