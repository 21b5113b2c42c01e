"""publish: the repository layout, the version records, the index and the latest alias."""

from __future__ import annotations

import hashlib
import json
import tarfile
import threading

import jax
import pytest

import jaxhub
from jaxhub import catalog
from jaxhub._src.catalog import layout


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_layout_holds_archives_records_index_and_alias(built_repo):
    files = {p.relative_to(built_repo).as_posix() for p in built_repo.rglob("*")
             if p.is_file() and not p.name.startswith(".")}
    assert {"index.json", "acme/mlp/1.tar.gz", "acme/mlp/1.json", "acme/mlp/2.tar.gz",
            "acme/mlp/2.json", "acme/mlp/latest.json", "vision/pool-embed/1.tar.gz",
            "vision/pool-embed/1.json", "vision/pool-embed/latest.json"} <= files


def test_record_sha256_is_the_archives(built_repo):
    for name, version in (("acme/mlp", 1), ("acme/mlp", 2), ("vision/pool-embed", 1)):
        record = json.loads((built_repo / layout.record_path(name, version)).read_text())
        archive = built_repo / layout.archive_path(name, version)
        assert record["sha256"] == _sha256(archive)
        assert record["archive_bytes"] == archive.stat().st_size


def test_archive_unpacks_to_the_module(built_repo, sources, tmp_path):
    with tarfile.open(built_repo / "acme/mlp/2.tar.gz") as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    original = sources["mlp2"].module_dir
    for path in original.rglob("*"):
        if path.is_file():
            copy = tmp_path / "unpacked" / path.relative_to(original)
            assert copy.read_bytes() == path.read_bytes(), path


def test_record_describes_the_module(built_repo, sources):
    record = json.loads((built_repo / "acme/mlp/1.json").read_text())
    module = jaxhub.load(sources["mlp1"].module_dir)
    leaves = jax.tree.leaves(module.params)
    assert record["params"]["count"] == sum(leaf.size for leaf in leaves)
    assert record["params"]["bytes"] == sum(leaf.nbytes for leaf in leaves)
    assert record["params"]["arrays"] == len(leaves)
    trainable = jax.tree.leaves(module.trainable_mask)
    assert record["params"]["trainable"] == sum(
        leaf.size for leaf, t in zip(leaves, trainable) if t)
    assert record["signatures"] == sorted(module.signatures)
    variants = {tuple(v["tags"]): v["signatures"] for v in record["variants"]}
    assert set(variants) == {tuple(sorted(t)) for t in module.variants}
    for tags in module.variants:
        for name, signature in module.variant_signatures(tags).items():
            described = variants[tuple(sorted(tags))][name]
            assert {k: described[k] for k in ("inputs", "outputs")} == signature.to_json()
    assert record["input_size"] == "50"
    assert record["model_card"] == (sources["mlp1"].module_dir / "README.md").read_text()
    assert record["description"].startswith("A two-layer perceptron")
    assert record["license"] == "Apache-2.0"
    assert record["task"] == module.attachments["task"]


def test_metadata_defaults_come_from_attachments(built_repo):
    record = json.loads((built_repo / "vision/pool-embed/1.json").read_text())
    assert (record["task"], record["license"], record["description"]) == (
        "image-feature-vector", "MIT", "Pooled image embeddings.")
    assert record["input_size"] == "32x32x3"


def test_index_lists_every_version_and_latest(built_repo):
    index = json.loads((built_repo / "index.json").read_text())
    entries = {m["name"]: m for m in index["modules"]}
    assert set(entries) == {"acme/mlp", "vision/pool-embed"}
    assert entries["acme/mlp"]["latest"] == 2
    assert list(entries["acme/mlp"]["versions"]) == ["1", "2"]
    for name, entry in entries.items():
        for version, summary in entry["versions"].items():
            record = json.loads((built_repo / layout.record_path(name, version)).read_text())
            assert summary["sha256"] == record["sha256"]
            assert "model_card" not in summary and "attachments" not in summary


def test_latest_alias_is_the_newest_record(built_repo):
    assert (json.loads((built_repo / "acme/mlp/latest.json").read_text())
            == json.loads((built_repo / "acme/mlp/2.json").read_text()))


def test_a_published_version_is_never_replaced(repo, sources):
    before = _sha256(repo / "acme/mlp/1.tar.gz")
    with pytest.raises(FileExistsError, match="publish version 3"):
        catalog.publish(sources["image"].module_dir, repo, "acme/mlp", 1)
    assert _sha256(repo / "acme/mlp/1.tar.gz") == before


def test_a_new_version_becomes_latest(repo, sources):
    done = catalog.publish(sources["mlp1"].module_dir, repo, "acme/mlp", 10)
    assert done.handle == "acme/mlp/10"
    assert done.sha256 == _sha256(repo / "acme/mlp/10.tar.gz")
    index = json.loads((repo / "index.json").read_text())
    entry = next(m for m in index["modules"] if m["name"] == "acme/mlp")
    assert entry["latest"] == 10 and list(entry["versions"]) == ["1", "2", "10"]
    assert json.loads((repo / "acme/mlp/latest.json").read_text())["version"] == 10


@pytest.mark.parametrize("name", ["mlp", "a/b/c", "../x", "acme/.hidden", "acme/m l p",
                                  "/abs/name", ""])
def test_bad_names_are_refused(tmp_path, sources, name):
    with pytest.raises(ValueError, match="org/model"):
        catalog.publish(sources["mlp1"].module_dir, tmp_path / "repo", name, 1)
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("version", [0, -1, "1.0", "latest", True, "01"])
def test_bad_versions_are_refused(tmp_path, sources, version):
    with pytest.raises(ValueError, match="positive integer"):
        catalog.publish(sources["mlp1"].module_dir, tmp_path / "repo", "acme/mlp", version)


def test_only_jaxhub_modules_are_published(tmp_path):
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "saved_model.pb").write_bytes(b"\0")
    with pytest.raises(jaxhub.ModuleFormatError, match="convert it first"):
        catalog.publish(tmp_path / "saved_model", tmp_path / "repo", "acme/tf", 1)
    assert not (tmp_path / "repo").exists()


def test_an_entry_of_the_conversion_cache_is_published_once_exported(tmp_path, sources):
    """Cache entries lack the exported VJPs that readers before split VJPs use."""
    from jaxhub._src.storage import writer
    entry = tmp_path / "entry"
    with writer.cache_entry(entry):
        jaxhub.load(sources["mlp1"].module_dir).export(entry)
    with pytest.raises(jaxhub.ModuleFormatError, match=r"jaxhub.load\(dir\).export"):
        catalog.publish(entry, tmp_path / "repo", "acme/mlp", 1)
    assert not (tmp_path / "repo").exists()
    exported = jaxhub.load(entry).export(tmp_path / "exported")
    assert catalog.publish(exported, tmp_path / "repo", "acme/mlp", 1).version == 1


def test_concurrent_publishers_all_reach_the_index(tmp_path, sources):
    errors = []

    def publish(version):
        try:
            catalog.publish(sources["image"].module_dir, tmp_path / "repo", "acme/many",
                            version)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=publish, args=(v,)) for v in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    index = json.loads((tmp_path / "repo" / "index.json").read_text())
    assert list(index["modules"][0]["versions"]) == [str(v) for v in range(1, 7)]
    assert index["modules"][0]["latest"] == 6


def test_reindex_after_removing_a_version_by_hand(repo):
    for suffix in (".tar.gz", ".json"):
        (repo / f"acme/mlp/2{suffix}").unlink()
    index = catalog.reindex(repo)
    entry = next(m for m in index["modules"] if m["name"] == "acme/mlp")
    assert entry["latest"] == 1 and list(entry["versions"]) == ["1"]
    assert json.loads((repo / "acme/mlp/latest.json").read_text())["version"] == 1
    assert json.loads((repo / "index.json").read_text()) == index


def test_reproducible_archives(tmp_path, sources):
    first = catalog.publish(sources["image"].module_dir, tmp_path / "a", "acme/x", 1)
    second = catalog.publish(sources["image"].module_dir, tmp_path / "b", "acme/x", 1)
    assert first.sha256 == second.sha256
    assert first.archive.read_bytes() == second.archive.read_bytes()
