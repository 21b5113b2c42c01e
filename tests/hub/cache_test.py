"""Cache entries: damage is detected and repaired, derivations are atomic, prune and verify;
a hit's cost does not grow with the number of files."""

from __future__ import annotations

import collections
import io
import json
import os
import sys

import pytest

from jaxhub._src import hub
from jaxhub._src.hub.cache import Cache
from jaxhub._src.hub.entry_record import SAMPLE_FILES

from .helpers import entries, file_info, staging, tar_bytes, tree_digest
from .server import Route


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.mark.parametrize("damage", ["file_removed", "file_truncated", "directory_removed",
                                    "manifest_removed", "everything_purged"])
def test_damaged_entry_is_detected_and_fetched_again(server, published, cache, damage):
    url, _, module_dir = published
    path = hub.resolve(url, cache_dir=cache)
    if damage == "file_removed":
        (path / "params" / "layer_0" / "kernel.bin").unlink()
    elif damage == "file_truncated":
        (path / "assets" / "vocab.txt").write_text("short")
    elif damage == "directory_removed":
        for child in (path / "assets").iterdir():
            child.unlink()
        (path / "assets").rmdir()
    elif damage == "manifest_removed":
        (path.parent / "entry.json").unlink()
    else:  # what a periodic /tmp cleaner does: files go, directories stay
        for dirpath, _, filenames in os.walk(cache):
            for name in filenames:
                os.unlink(os.path.join(dirpath, name))
    repaired = hub.resolve(url, cache_dir=cache)
    assert repaired == path
    assert tree_digest(repaired) == tree_digest(module_dir)
    assert server.bodies[_path(url)] == 2


def test_manifest_records_sizes_and_hashes(published, cache):
    url, digest, module_dir = published
    path = hub.resolve(url, cache_dir=cache)
    manifest = json.loads((path.parent / "entry.json").read_text())
    files = json.loads((path.parent / "files.json").read_text())
    assert manifest["source"] == url and manifest["archive_sha256"] == digest
    assert {f["path"]: f["sha256"] for f in files} == tree_digest(module_dir)
    sizes = {p: (module_dir / p).stat().st_size for p in tree_digest(module_dir)}
    assert {f["path"]: f["size"] for f in files} == sizes
    # A small entry's summary samples every file, so each hit checks all their sizes.
    assert {f["path"]: f["size"] for f in manifest["sample"]} == sizes
    assert manifest["file_count"] == len(sizes) and manifest["size"] == sum(sizes.values())


def test_cached_entry_with_another_sha256_is_fetched_again(server, tmp_path, published, cache):
    url, digest, _ = published
    hub.resolve(url, cache_dir=cache)
    new_dir = tmp_path / "v2"
    new_dir.mkdir()
    (new_dir / "jaxhub_module.json").write_text('{"v": 2}')
    new_digest = hub.pack(new_dir, tmp_path / "v2.tar.gz")
    server.routes[_path(url)].body = (tmp_path / "v2.tar.gz").read_bytes()
    path = hub.resolve(url, cache_dir=cache, sha256=new_digest)
    assert tree_digest(path) == tree_digest(new_dir)
    with pytest.raises(hub.IntegrityError, match="offline"):
        hub.resolve(url, cache_dir=cache, sha256=digest, offline=True)


def test_cached_derivation_builds_once(cache):
    calls = []

    def build(out):
        calls.append(out)
        (out / "converted.json").write_text('{"ok": true}')

    first = hub.cached_derivation("tf2jax:v1:abc", build, cache_dir=cache)
    second = hub.cached_derivation("tf2jax:v1:abc", build, cache_dir=cache)
    assert first == second and len(calls) == 1
    assert (first / "converted.json").read_text() == '{"ok": true}'
    assert calls[0] != first  # built elsewhere, then renamed into place


def test_failing_derivation_leaves_nothing_behind(cache):
    def build(out):
        (out / "half.bin").write_bytes(b"partial")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        hub.cached_derivation("broken", build, cache_dir=cache)
    assert entries(cache) == [] and staging(cache) == []
    path = hub.cached_derivation("broken", lambda out: (out / "ok").write_text("1"),
                                 cache_dir=cache)
    assert (path / "ok").read_text() == "1"


def test_derivation_rebuilds_when_its_files_vanish(cache):
    calls = []

    def build(out):
        calls.append(1)
        (out / "a.bin").write_bytes(b"abc")

    path = hub.cached_derivation("k", build, cache_dir=cache)
    (path / "a.bin").unlink()
    assert (hub.cached_derivation("k", build, cache_dir=cache) / "a.bin").read_bytes() == b"abc"
    assert len(calls) == 2


def test_prune_removes_orphans_and_broken_entries_only(published, cache):
    url = published[0]
    good = hub.resolve(url, cache_dir=cache)
    broken = hub.cached_derivation("broken", lambda out: (out / "f").write_text("1"),
                                   cache_dir=cache)
    (broken / "f").unlink()
    orphan = cache / "tmp" / "somekey~1234-deadbeef"
    (orphan / "module").mkdir(parents=True)
    removed = Cache(cache).prune()
    assert orphan in removed and broken.parent in removed
    assert not orphan.exists() and not broken.parent.exists()
    assert good.exists() and entries(cache) == [good.parent.name]
    assert list((cache / "locks").iterdir()) == []


def test_verify_finds_changed_bytes_of_the_same_size(published, cache):
    path = hub.resolve(published[0], cache_dir=cache)
    store = Cache(cache)
    key = path.parent.name
    assert store.verify(key) == []
    vocab = path / "assets" / "vocab.txt"
    vocab.write_text(vocab.read_text().upper())
    assert store.verify(key) == ["assets/vocab.txt: sha256 differs"]


def test_remove_deletes_one_entry(server, published, cache):
    path = hub.resolve(published[0], cache_dir=cache)
    store = Cache(cache)
    assert store.remove(path.parent.name) and not path.exists()
    assert not store.remove(path.parent.name)


def test_entries_are_listed_with_their_handles(published, cache):
    url = published[0]
    hub.resolve(url, cache_dir=cache)
    hub.cached_derivation("derived-key", lambda out: (out / "f").write_text("1"), cache_dir=cache)
    listed = {(item.manifest.kind, item.manifest.source) for item in Cache(cache).listing()}
    assert listed == {("handle", url), ("derived", "derived-key")}


def _file_system_calls(action) -> collections.Counter:
    """Counts the stat/listdir/open calls `action` makes (Python's profiler sees each)."""
    watched = {os.stat: "stat", os.lstat: "stat", os.scandir: "listdir",
               os.listdir: "listdir", io.open: "open"}
    counted: collections.Counter = collections.Counter()

    def profile(frame, event, arg):
        if event == "c_call" and arg in watched:
            counted[watched[arg]] += 1

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return counted


def _many_files(count: int) -> bytes:
    # Files in three directories, of distinct sizes so the sample is the largest ones.
    return tar_bytes([(file_info(f"d{i % 3}/f{i:05d}"), b"x" * (i % 97)) for i in range(count)])


@pytest.fixture
def many_files_url(server, request):
    return server.add(f"/{request.node.name}/many.tar.gz", Route(body=_many_files(2000)))


def test_cache_hit_cost_does_not_grow_with_the_number_of_files(server, cache, many_files_url):
    few_url = server.add("/few-files/module.tar.gz", Route(body=_many_files(20)))
    for url in (many_files_url, few_url):
        hub.resolve(url, cache_dir=cache)
    many = _file_system_calls(lambda: hub.resolve(many_files_url, cache_dir=cache))
    few = _file_system_calls(lambda: hub.resolve(few_url, cache_dir=cache))
    # One stat per directory (root + 3) and per sampled file, however many files there are.
    assert many["stat"] <= SAMPLE_FILES + 4 + 5, many
    assert many["listdir"] == 0 and many["open"] == few["open"] <= 2, (many, few)
    assert many["stat"] - few["stat"] == SAMPLE_FILES - 20
    entry = hub.resolve(many_files_url, cache_dir=cache).parent
    assert (entry / "entry.json").stat().st_size < 16_000  # the full list is in files.json
    assert len(json.loads((entry / "files.json").read_text())) == 2000


def test_purge_of_an_unsampled_file_in_a_large_entry_is_detected(server, cache, many_files_url):
    path = hub.resolve(many_files_url, cache_dir=cache)
    sampled = {f["path"] for f in json.loads((path.parent / "entry.json").read_text())["sample"]}
    victim = next(p for p in sorted(path.rglob("f*")) if
                  p.relative_to(path).as_posix() not in sampled)
    victim.unlink()
    assert hub.resolve(many_files_url, cache_dir=cache) == path
    assert victim.exists() and server.bodies[_path(many_files_url)] == 2


def test_touched_directory_costs_one_full_check_then_hits_are_cheap_again(
        server, cache, many_files_url):
    # A copied or touched cache changes directory times without losing anything: the
    # full size check passes once, the new times are recorded, nothing is fetched again.
    path = hub.resolve(many_files_url, cache_dir=cache)
    os.utime(path / "d1", ns=(0, 0))
    slow = _file_system_calls(lambda: hub.resolve(many_files_url, cache_dir=cache))
    fast = _file_system_calls(lambda: hub.resolve(many_files_url, cache_dir=cache))
    assert slow["stat"] > 2000 > SAMPLE_FILES + 10 > fast["stat"]
    assert server.bodies[_path(many_files_url)] == 1


def test_file_rewritten_in_place_outside_the_sample_is_found_by_verify(cache, many_files_url):
    path = hub.resolve(many_files_url, cache_dir=cache)
    sampled = {f["path"] for f in json.loads((path.parent / "entry.json").read_text())["sample"]}
    victim = next(p for p in sorted(path.rglob("f*")) if p.stat().st_size and
                  p.relative_to(path).as_posix() not in sampled)
    victim.write_bytes(b"y" * (victim.stat().st_size + 1))  # no directory changes
    # The documented trade-off: a hit does not see it, `verify` does.
    assert hub.resolve(many_files_url, cache_dir=cache) == path
    problems = Cache(cache).verify(path.parent.name)
    assert problems == [f"{victim.relative_to(path).as_posix()}: "
                        f"{victim.stat().st_size} bytes, expected {victim.stat().st_size - 1}"]


def test_entry_written_by_an_older_version_is_still_served(published, cache):
    # Format 1 kept the whole file list in entry.json and no directory times.
    url, _, module_dir = published
    path = hub.resolve(url, cache_dir=cache)
    files = json.loads((path.parent / "files.json").read_text())
    summary = json.loads((path.parent / "entry.json").read_text())
    legacy = {"kind": summary["kind"], "source": summary["source"], "files": files,
              "archive_sha256": summary["archive_sha256"], "created": summary["created"],
              "format": 1}
    (path.parent / "entry.json").write_text(json.dumps(legacy))
    (path.parent / "files.json").unlink()
    assert hub.resolve(url, cache_dir=cache, offline=True) == path
    assert Cache(cache).verify(path.parent.name) == []
    (path / "assets" / "vocab.txt").unlink()
    assert Cache(cache).lookup(path.parent.name) is None


def test_cache_dir_that_is_a_file_is_a_clear_error(published, tmp_path):
    in_the_way = tmp_path / "cache-file"
    in_the_way.write_text("not a directory")
    with pytest.raises(hub.CacheWriteError, match=f"Caching {published[0]} in {in_the_way} "
                                                  "failed: Not a directory; point "
                                                  "JAXHUB_CACHE_DIR at a directory"):
        hub.resolve(published[0], cache_dir=in_the_way)
