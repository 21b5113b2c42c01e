"""Entries of the converted-module cache carry split VJPs only; a module leaving the
cache gets its exported VJPs back, for the readers that predate split VJPs. Their params
are stored uncompressed, and the load that wrote an entry takes the params it saved
instead of reading them back."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub
from jaxhub._src import serialization
from jaxhub._src.storage import reader, writer
from tests.conftest import as_read_before_split_vjps, mlp, mlp_params


def loss_of(module):
    return lambda params, x: jnp.sum(module.apply(params, x) ** 2)


def manifest_json(path) -> dict:
    return json.loads((path / "jaxhub_module.json").read_text())


def has_exported_vjp(path, file) -> bool:
    return serialization.deserialize((path / file).read_bytes()).has_vjp()


@pytest.fixture
def entry(mlp_dir, tmp_path):
    """The test MLP written as an entry of the cache."""
    path = tmp_path / "entry"
    with writer.cache_entry(path):
        jaxhub.load(mlp_dir).export(path)
    return path


def test_a_cache_entry_keeps_the_halves_and_leaves_out_the_exported_vjps(entry):
    manifest = jaxhub.load(entry).manifest
    split = [f for f in manifest.functions if f.vjp is not None]
    assert split and not manifest.exported_vjps
    assert manifest_json(entry)["exported_vjps"] is False
    assert not any(has_exported_vjp(entry, f.file) for f in split)
    assert all(not has_exported_vjp(entry, half) for f in split for half in f.files[1:])


def test_a_cache_entry_differentiates_through_its_halves_as_the_complete_module(
        entry, mlp_dir, x):
    complete, cached = jaxhub.load(mlp_dir), jaxhub.load(entry)
    ours = jax.jit(jax.grad(loss_of(cached), (0, 1)))(cached.params, x)
    theirs = jax.grad(loss_of(complete), (0, 1))(complete.params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 ours, theirs)


def test_a_module_exported_out_of_the_cache_has_its_exported_vjps_again(entry, tmp_path, x):
    published = jaxhub.load(entry).export(tmp_path / "published")
    assert "exported_vjps" not in manifest_json(published)
    module = jaxhub.load(published)
    assert all(has_exported_vjp(published, f.file)
               for f in module.manifest.functions if f.vjp is not None)
    # A reader that predates split VJPs differentiates through them: the MLP's gradient.
    old = as_read_before_split_vjps(published, tmp_path / "old-reader")
    grads = jax.grad(loss_of(old))(old.params, x)
    expected = jax.grad(lambda p: jnp.sum(mlp(p, x) ** 2))(mlp_params())
    for name in ("dense1", "dense2"):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                     grads[name], expected[name])


def test_only_the_entry_being_written_leaves_them_out(mlp_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    with writer.cache_entry(tmp_path / "entry"):
        jaxhub.load(mlp_dir).export(elsewhere)
    assert jaxhub.load(elsewhere).manifest.exported_vjps


def params_bytes(path) -> int:
    return sum(f.stat().st_size for f in (path / "params").rglob("*") if f.is_file())


def test_a_cache_entry_stores_its_params_uncompressed_and_reads_them_the_same(tmp_path):
    zeros = {"w": jnp.zeros((512, 512))}  # 1 MiB that zstd makes a few bytes
    module = jaxhub.create_module(
        zeros, signatures={"default": (lambda p, x: x @ p["w"], jaxhub.TensorSpec([None, 512]))})
    with writer.cache_entry(tmp_path / "entry"):
        module.export(tmp_path / "entry")
    module.export(tmp_path / "published")
    assert params_bytes(tmp_path / "entry") > 512 * 512 * 4 > 100 * params_bytes(
        tmp_path / "published")
    for path in ("entry", "published"):
        np.testing.assert_array_equal(jaxhub.load(tmp_path / path).params["w"], zeros["w"])
    # A published module's params are Orbax's standard checkpoint, as every jaxhub reads.
    metadata = json.loads((tmp_path / "published/params/_CHECKPOINT_METADATA").read_text())
    assert metadata["item_handlers"].endswith(".StandardCheckpointHandler")


def test_writing_a_cache_entry_hands_back_the_params_it_saved(mlp_dir, tmp_path):
    module = jaxhub.load(mlp_dir)
    with writer.cache_entry(tmp_path / "entry") as written:
        assert written.params is None
        module.export(tmp_path / "entry")
    jax.tree.map(np.testing.assert_array_equal, written.params, module.params)
    with writer.cache_entry(tmp_path / "entry2") as elsewhere:
        module.export(tmp_path / "published")
    assert elsewhere.params is None


def test_params_just_written_are_taken_as_they_are_unless_they_do_not_match(entry):
    read_back = reader.read(entry).params
    shifted = jax.tree.map(lambda v: v + 1, read_back)
    taken = reader.read(entry, written_params=shifted).params
    jax.tree.map(np.testing.assert_array_equal, taken, shifted)
    reshaped = jax.tree.map(lambda v: v.reshape(-1), shifted)
    for other in (reshaped, {"other": shifted}, jax.tree.map(lambda v: v.astype(jnp.float16),
                                                               shifted)):
        jax.tree.map(np.testing.assert_array_equal,
                     reader.read(entry, written_params=other).params, read_back)

