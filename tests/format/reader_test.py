"""A corrupt module directory gives a clear error, not a stack trace from deep inside."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import jaxhub
from jaxhub.format.manifest import FORMAT_VERSION


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


def test_garbled_function_file(module_copy):
    (module_copy / "functions" / "inference" / "default.jaxexport").write_bytes(b"garbage")
    with pytest.raises(jaxhub.ModuleFormatError, match="unreadable function file"):
        jaxhub.load(module_copy)


def test_file_names_cannot_leave_the_module(module_copy):
    manifest = json.loads((module_copy / "jaxhub_module.json").read_text())
    manifest["functions"][0]["file"] = "../../etc/passwd"
    (module_copy / "jaxhub_module.json").write_text(json.dumps(manifest))
    with pytest.raises(jaxhub.ModuleFormatError, match="outside itself"):
        jaxhub.load(module_copy)


def test_relative_path(module_copy, monkeypatch, x):
    from jaxhub.format import reader
    monkeypatch.chdir(module_copy.parent)
    module = reader.read("copy")
    assert module.path.is_absolute()
    np.testing.assert_allclose(module(x), jaxhub.load(module_copy)(x))
