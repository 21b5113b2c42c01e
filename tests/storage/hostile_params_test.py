"""A hostile ``params/`` or param path cannot make a load read outside the module or hang.

Orbax and TensorStore open whatever a checkpoint names: a param whose name is an absolute
path is read from that path, a symbolic link is followed, a FIFO blocks forever. The
reader refuses them before Orbax opens anything.
"""

from __future__ import annotations

import json
import os
import shutil
import threading

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import jaxhub
from tests.conftest import deep_dirs


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    module = jaxhub.create_module(
        {"w": jnp.ones((2, 3))},
        signatures={"default": (lambda p, x: x @ p["w"], jaxhub.TensorSpec([None, 2]))})
    return module.export(tmp_path_factory.mktemp("hostile_params") / "small")


@pytest.fixture
def small_copy(small_dir, tmp_path):
    return shutil.copytree(small_dir, tmp_path / "module")


def _rename_param(module_dir, name: str) -> None:
    """Makes the module's only param ``[name]`` in the manifest and in Orbax's metadata."""
    manifest = json.loads((module_dir / "jaxhub_module.json").read_text())
    manifest["params"][0]["path"] = [name]
    (module_dir / "jaxhub_module.json").write_text(json.dumps(manifest))
    metadata_file = module_dir / "params" / "_METADATA"
    metadata = json.loads(metadata_file.read_text())
    (value,) = metadata["tree_metadata"].values()
    metadata["tree_metadata"] = {str((name,)): {
        **value, "key_metadata": [{"key": name, "key_type": 2}]}}
    metadata_file.write_text(json.dumps(metadata))


@pytest.mark.parametrize("where", ["absolute", "climbing"])
def test_a_param_named_like_a_path_outside_is_not_read(small_copy, tmp_path, where):
    # A checkpoint without OCDBT keeps each param in a directory named by its path, which
    # Orbax joins to params/: a secret array beside the module must stay unread.
    shutil.rmtree(small_copy / "params")
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_ocdbt=False)) as checkpointer:
        checkpointer.save(small_copy / "params", args=ocp.args.PyTreeSave(
            {"w": np.full((2, 3), 7.0, np.float32)}))
    shutil.move(small_copy / "params" / "w", tmp_path / "secret")
    name = str(tmp_path / "secret") if where == "absolute" else "../../secret"
    _rename_param(small_copy, name)
    with pytest.raises(jaxhub.ModuleFormatError) as error:
        jaxhub.load(small_copy)
    assert str(small_copy) in str(error.value)
    assert "absolute or climbs with '..'" in str(error.value)


@pytest.mark.parametrize("file", ["manifest.ocdbt", "_METADATA"])
def test_a_fifo_in_params_fails_the_load_instead_of_blocking_it(small_copy, file):
    (small_copy / "params" / file).unlink()
    os.mkfifo(small_copy / "params" / file)
    outcome = []

    def load():
        try:
            jaxhub.load(small_copy)
        except Exception as e:  # noqa: BLE001 (checked below)
            outcome.append(e)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout=30)  # before the check, opening the FIFO never returned
    assert outcome, "the load blocked on a FIFO"
    assert isinstance(outcome[0], jaxhub.ModuleFormatError)
    assert f"params/{file} is not a regular file" in str(outcome[0])
    assert str(small_copy) in str(outcome[0])


@pytest.mark.parametrize("linked", ["params", "params/d"])
def test_a_symbolic_link_in_params_is_refused(small_copy, tmp_path, linked):
    elsewhere = tmp_path / "elsewhere"
    shutil.move(small_copy / linked, elsewhere)
    (small_copy / linked).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(jaxhub.ModuleFormatError, match=f"{linked} is a symbolic link"):
        jaxhub.load(small_copy)
    # The same files, in place, load.
    (small_copy / linked).unlink()
    shutil.move(elsewhere, small_copy / linked)
    np.testing.assert_allclose(jaxhub.load(small_copy)(np.ones((1, 2), np.float32)), [[2, 2, 2]])


def test_a_manifest_linked_from_outside_is_not_read(small_copy, tmp_path):
    manifest = small_copy / "jaxhub_module.json"
    outside = shutil.move(manifest, tmp_path / "elsewhere.json")
    manifest.symlink_to(outside)
    with pytest.raises(jaxhub.ModuleFormatError, match="outside itself: jaxhub_module.json"):
        jaxhub.load(small_copy)


def _declare_shape(module_dir, shape) -> None:
    manifest = json.loads((module_dir / "jaxhub_module.json").read_text())
    manifest["params"][0]["shape"] = shape
    (module_dir / "jaxhub_module.json").write_text(json.dumps(manifest))


def test_params_declaring_far_more_than_they_hold_are_refused(small_copy, monkeypatch):
    # Orbax allocates what is declared: 4 GiB from a few KiB would be a memory bomb.
    _declare_shape(small_copy, [2**15, 2**15])
    with pytest.raises(jaxhub.ModuleFormatError) as error:
        jaxhub.load(small_copy)
    message = str(error.value)
    assert str(small_copy) in message and "declare 4.0 GiB" in message
    assert "w, has shape [32768, 32768]" in message
    assert "JAXHUB_MAX_PARAMS_EXPANSION" in message
    # Raised, the limit lets Orbax look, which finds the stored array smaller.
    monkeypatch.setenv("JAXHUB_MAX_PARAMS_EXPANSION", "1e9")
    with pytest.raises(jaxhub.ModuleFormatError, match="cannot read the params"):
        jaxhub.load(small_copy)
    monkeypatch.setenv("JAXHUB_MAX_PARAMS_EXPANSION", "-1")
    with pytest.raises(ValueError, match="JAXHUB_MAX_PARAMS_EXPANSION='-1': expected"):
        jaxhub.load(small_copy)


def test_constant_params_under_the_floor_load(tmp_path):
    # Zeros compress thousands of times over; modules under the floor load all the same.
    module = jaxhub.create_module(
        {"w": jnp.zeros((2048, 2048))},
        signatures={"default": (lambda p, x: x @ p["w"], jaxhub.TensorSpec([None, 2048]))})
    path = module.export(tmp_path / "zeros")
    on_disk = sum(f.stat().st_size for f in (path / "params").rglob("*") if f.is_file())
    assert 2048 * 2048 * 4 > 1000 * on_disk
    assert jaxhub.load(path).params["w"].shape == (2048, 2048)


def test_params_nested_deeper_than_python_recurses_are_checked(small_copy):
    with deep_dirs(small_copy / "params", 1200) as deep:  # os.walk recurses per level
        os.mkfifo(deep / "pipe")
        with pytest.raises(jaxhub.ModuleFormatError, match="not a regular file"):
            jaxhub.load(small_copy)
