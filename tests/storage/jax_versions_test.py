"""Modules whose functions were written by other JAX releases load, run, grad and vmap.

The fixtures (``tests/fixtures/modules/mlp-jax<version>``, written by
``scripts/make-jax-fixtures``) hold the same tiny MLP written by JAX 0.5.0, by the oldest
JAX jaxhub supports and by the newest; these tests run under both ends of that range
(the host and ``scripts/newest-jax``). A wrapper that the running JAX refuses (too old
for its six-month window, or written by a newer JAX) is replaced by its durable copy.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub
from jaxhub._src import serialization
from jaxhub._src.storage import durable
from jaxhub._src.storage.files import MANIFEST_FILE
from jaxhub._src.storage.manifest import Manifest, ModuleFormatError
from tests.fixtures.jax_fixtures import FUNCTION_FILE, mlp
from tests.fixtures.make_fixtures import FIXTURES

JAX_FIXTURES = sorted(FIXTURES.glob("mlp-jax*"))


def _written_by(path) -> str:
    return json.loads((path / MANIFEST_FILE).read_text())["written_by"]["jax"]


def _wrapper_readable(path) -> bool:
    """Whether the running JAX reads the fixture's ``jax.export`` wrapper itself."""
    try:
        serialization.deserialize((path / FUNCTION_FILE).read_bytes()).mlir_module()
    except Exception:  # noqa: BLE001 (expired, or newer than this JAX)
        return False
    return True


@pytest.fixture
def batch():
    return jax.random.normal(jax.random.key(5), (6, 3))


def test_fixtures_span_jax_0_5_the_oldest_supported_and_a_newer_one():
    versions = {_written_by(p) for p in JAX_FIXTURES}
    assert {"0.5.0", "0.10.2"} <= versions
    assert any(durable.version_tuple(v) >= (0, 12) for v in versions), versions


@pytest.mark.parametrize("path", JAX_FIXTURES, ids=lambda p: p.name)
def test_module_of_any_jax_runs_grads_and_vmaps(path, batch):
    module = jaxhub.load(path)
    params = module.params
    np.testing.assert_allclose(module(batch), mlp(params, batch), rtol=1e-5, atol=1e-6)
    loss = lambda p, x: jnp.sum(module.apply(p, x) ** 2)
    ref_loss = lambda p, x: jnp.sum(mlp(p, x) ** 2)
    grads, ref = jax.grad(loss)(params, batch), jax.grad(ref_loss)(params, batch)
    for name in ref:
        np.testing.assert_allclose(grads[name], ref[name], rtol=1e-4, atol=1e-5)
    stacked = jnp.stack([batch, 2 * batch, -batch])
    np.testing.assert_allclose(jax.vmap(module)(stacked),
                               jax.vmap(lambda x: mlp(params, x))(stacked),
                               rtol=1e-5, atol=1e-6)
    per_example = jax.vmap(jax.grad(lambda x: loss(params, x[None])))(batch)
    np.testing.assert_allclose(per_example,
                               jax.vmap(jax.grad(lambda x: ref_loss(params, x[None])))(batch),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(jax.jit(module)(batch), module(batch), rtol=1e-6)


def test_jax_0_5_wrapper_is_refused_from_jax_0_11_1_and_the_durable_copy_loads(batch):
    path = FIXTURES / "mlp-jax0.5.0"
    expired = durable.version_tuple(jax.__version__) >= (0, 11, 1)
    assert _wrapper_readable(path) is not expired
    module = jaxhub.load(path)  # through the durable copy when the wrapper has expired
    np.testing.assert_allclose(module(batch), mlp(module.params, batch), rtol=1e-5,
                               atol=1e-6)


def test_durable_copy_stands_in_for_an_unreadable_wrapper(tmp_path, batch):
    """Whatever JAX runs: a wrapper it cannot read (here: bytes it refuses) is replaced by
    the durable copy, for the function and for its gradient."""
    path = shutil.copytree(FIXTURES / "mlp-jax0.10.2", tmp_path / "m")
    _replace_function_file(path, FUNCTION_FILE, b"not a jax.export flatbuffer")
    module = jaxhub.load(path)
    params = module.params
    np.testing.assert_allclose(module(batch), mlp(params, batch), rtol=1e-5, atol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(module.apply(p, batch) ** 2))(params)
    ref = jax.grad(lambda p: jnp.sum(mlp(p, batch) ** 2))(params)
    np.testing.assert_allclose(grads["w1"], ref["w1"], rtol=1e-4, atol=1e-5)


def test_durable_copies_alone_carry_every_variant_signature_and_gradient(mlp_dir, tmp_path,
                                                                        x):
    """All wrappers refused: the conftest MLP (a second signature, a train variant with
    RNG and state, split VJPs, a regularizer) computes what it computed with them."""
    from tests.conftest import double
    path = shutil.copytree(mlp_dir, tmp_path / "m")
    for file in Manifest.from_json((path / MANIFEST_FILE).read_text()).function_files:
        _replace_function_file(path, file, b"refused")
    durable_only, original = jaxhub.load(path), jaxhub.load(mlp_dir)
    params = original.params
    np.testing.assert_allclose(durable_only(x), original(x), rtol=1e-6)
    out = durable_only({"a": x}, signature="double", as_dict=True)
    np.testing.assert_allclose(out["total"], double(params, {"a": x})["total"], rtol=1e-5)
    key = jax.random.key(3)
    (out, state), (ref, ref_state) = (m(x, tags="train", rng=key)
                                      for m in (durable_only, original))
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    np.testing.assert_allclose(state["stats"]["mean"], ref_state["stats"]["mean"], rtol=1e-6)
    np.testing.assert_allclose(durable_only.regularization_loss(),
                               original.regularization_loss(), rtol=1e-6)
    grad = lambda m, **kw: jax.grad(
        lambda p: jnp.sum(jnp.asarray(m.apply(p, x, **kw)[0] if kw else m.apply(p, x)) ** 2)
    )(params)
    for kw in ({}, {"tags": "train", "rng": key}):
        np.testing.assert_allclose(grad(durable_only, **kw)["dense1"]["kernel"],
                                   grad(original, **kw)["dense1"]["kernel"], rtol=1e-5,
                                   atol=1e-6)


def test_unreadable_wrapper_without_a_durable_copy_names_both_jax_versions_and_the_fix(
        tmp_path):
    path = shutil.copytree(FIXTURES / "mlp-jax0.10.2", tmp_path / "m")
    _replace_function_file(path, FUNCTION_FILE, b"not a jax.export flatbuffer")
    manifest = Manifest.from_json((path / MANIFEST_FILE).read_text())
    manifest = dataclasses.replace(manifest, durable_functions={},
                                   written_by={**manifest.written_by, "jax": "0.4.30"})
    (path / MANIFEST_FILE).write_text(manifest.to_json())
    with pytest.raises(ModuleFormatError) as e:
        jaxhub.load(path)
    message = str(e.value)
    assert "0.4.30" in message and jax.__version__ in message
    assert "jaxhub upgrade" in message and FUNCTION_FILE in message


def test_module_of_a_newer_jax_without_durable_copies_loads_or_names_both_versions(
        tmp_path, batch):
    """The 0.12.0.1 fixture without its durable copies: JAX 0.12 reads it; JAX 0.10.2
    cannot read its StableHLO (1.18.0 > 1.17.0) and says so at load, not at a call."""
    (newest,) = [p for p in JAX_FIXTURES if _written_by(p) == "0.12.0.1"]
    path = shutil.copytree(newest, tmp_path / "m")
    manifest = Manifest.from_json((path / MANIFEST_FILE).read_text())
    (path / MANIFEST_FILE).write_text(
        dataclasses.replace(manifest, durable_functions={}).to_json())
    if durable.version_tuple(jax.__version__) >= (0, 12, 0, 1):
        module = jaxhub.load(path)
        np.testing.assert_allclose(module(batch), mlp(module.params, batch), rtol=1e-5,
                                   atol=1e-6)
        return
    with pytest.raises(ModuleFormatError) as e:
        jaxhub.load(path)
    message = str(e.value)
    assert "0.12.0.1" in message and jax.__version__ in message
    assert "pip install -U jax jaxlib" in message


def test_durable_copy_newer_than_this_jax_reads_fails_naming_both_versions(tmp_path):
    path = shutil.copytree(FIXTURES / "mlp-jax0.10.2", tmp_path / "m")
    _replace_function_file(path, FUNCTION_FILE, b"not a jax.export flatbuffer")
    manifest = Manifest.from_json((path / MANIFEST_FILE).read_text())
    record = {**manifest.durable_functions[FUNCTION_FILE], "stablehlo_version": "99.0.0"}
    manifest = dataclasses.replace(
        manifest, durable_functions={**manifest.durable_functions, FUNCTION_FILE: record},
        written_by={**manifest.written_by, "jax": "99.1.0"})
    (path / MANIFEST_FILE).write_text(manifest.to_json())
    with pytest.raises(ModuleFormatError) as e:
        jaxhub.load(path)
    message = str(e.value)
    assert "99.1.0" in message and jax.__version__ in message and "99.0.0" in message
    assert "pip install -U jax jaxlib" in message


def test_durable_copies_target_the_oldest_stablehlo_and_cost_less_than_the_wrappers(
        mlp_dir):
    manifest = Manifest.from_json((mlp_dir / MANIFEST_FILE).read_text())
    assert set(manifest.durable_functions) == set(manifest.function_files)
    durable_bytes = sum(r["size"] for rec in manifest.durable_functions.values()
                        for r in durable.files_of(rec).values())
    wrapper_bytes = sum(r["size"] for r in manifest.function_files.values())
    assert durable_bytes < wrapper_bytes
    versions = {r["stablehlo_version"] for r in manifest.durable_functions.values()}
    assert all(durable.version_tuple(v) <= durable.version_tuple(durable.stablehlo_version())
               for v in versions)


def _replace_function_file(path, file, data: bytes) -> None:
    """Writes ``data`` as ``file`` and records its hash, as a writer of it would."""
    import hashlib
    (path / file).write_bytes(data)
    manifest = Manifest.from_json((path / MANIFEST_FILE).read_text())
    records = {**manifest.function_files,
               file: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}}
    (path / MANIFEST_FILE).write_text(
        dataclasses.replace(manifest, function_files=records).to_json())


@pytest.mark.parametrize("name", ["mlp-jax0.5.0", "mlp-format1"])
def test_upgrade_rewrites_for_the_running_jax_with_durable_copies(name, tmp_path, batch):
    from jaxhub._src.cli import main
    from jaxhub._src.storage.reader import stale_functions
    assert main(["upgrade", str(FIXTURES / name), str(tmp_path / "up")]) == 0
    upgraded = jaxhub.load(tmp_path / "up")
    assert upgraded.manifest.written_by["jax"] == jax.__version__
    assert stale_functions(tmp_path / "up") == []
    assert set(upgraded.manifest.durable_functions) == set(upgraded.manifest.function_files)
    original = jaxhub.load(FIXTURES / name)
    x = jax.random.normal(jax.random.key(5), (6, 50)) if name == "mlp-format1" else batch
    np.testing.assert_allclose(upgraded(x), original(x), rtol=1e-5, atol=1e-6)


def test_catalog_reindex_upgrade_publishes_next_versions_of_stale_modules_only(
        tmp_path, mlp_dir):
    from jaxhub.catalog import publish
    from jaxhub._src.catalog.index import read_local
    from jaxhub._src.cli import main
    from jaxhub._src.storage.reader import stale_functions
    repo = tmp_path / "repo"
    publish(FIXTURES / "mlp-format1", repo, "acme/old", 1, task="regression")
    publish(mlp_dir, repo, "acme/fresh", 1)
    assert main(["catalog", "reindex", "--upgrade", str(repo)]) == 0
    versions = {m["name"]: sorted(m["versions"]) for m in read_local(repo)["modules"]}
    assert versions == {"acme/old": ["1", "2"], "acme/fresh": ["1"]}
    module = jaxhub.load(repo / "acme" / "old" / "2.tar.gz")
    assert module.path is not None and stale_functions(module.path) == []
    assert module.manifest.origin["upgraded_from"]["jax"] == "0.10.2"


def test_converted_module_cache_refreshes_when_its_functions_cannot_be_read(
        tmp_path, batch):
    """A cached conversion whose functions the running JAX cannot read is upgraded once,
    from its durable copies, without converting again."""
    from jaxhub._src import formats
    stale = shutil.copytree(FIXTURES / "mlp-jax0.10.2", tmp_path / "stale")
    _replace_function_file(stale, FUNCTION_FILE, b"a wrapper this JAX refuses")
    conversions = []

    def convert(src, dst):  # a converter whose output the running JAX cannot read
        conversions.append(src)
        shutil.copytree(stale, dst, dirs_exist_ok=True)

    formats.register_format("stale test format", ["model.stale"], convert)
    source = tmp_path / "source"
    source.mkdir()
    (source / "model.stale").write_text("converted by copying a module")
    cache = tmp_path / "cache"
    try:
        module = jaxhub.load(source, cache_dir=cache)
        again = jaxhub.load(source, cache_dir=cache)
    finally:
        formats._registered[:] = [f for f in formats._registered
                                  if f.name != "stale test format"]
    assert len(conversions) == 1
    assert module.manifest.origin["upgraded_from"]["jax"] == "0.10.2"
    assert again.path == module.path  # upgraded once, then read from the cache
    np.testing.assert_allclose(module(batch), mlp(module.params, batch), rtol=1e-5,
                               atol=1e-6)
