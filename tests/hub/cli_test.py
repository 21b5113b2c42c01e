"""`jaxhub cache ls|rm|prune|verify` and `jaxhub pack`, through the real command line."""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

from jaxhub._src import hub
from jaxhub._src.cli import main

from .helpers import make_module_dir, tree_digest
from tests.conftest import repo_pythonpath

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_pack_prints_the_sha256_of_the_archive(tmp_path):
    source = make_module_dir(tmp_path / "src")
    out = tmp_path / "m.tar.gz"
    run = subprocess.run([sys.executable, "-m", "jaxhub", "pack", str(source), str(out)],
                         cwd=_ROOT, env=dict(os.environ, PYTHONPATH=repo_pythonpath()),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == hashlib.sha256(out.read_bytes()).hexdigest()
    pinned = hub.resolve(out, cache_dir=tmp_path / "cache", sha256=run.stdout.strip())
    assert tree_digest(pinned) == tree_digest(source)


def test_pack_of_a_missing_directory_fails(tmp_path, capsys):
    assert main(["pack", str(tmp_path / "nope"), str(tmp_path / "m.tar.gz")]) == 1
    assert "not a directory" in capsys.readouterr().err


def test_ls_shows_handles_sizes_and_dates(published, cache, capsys):
    url, _, module_dir = published
    hub.resolve(url, cache_dir=cache)
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    size = sum((module_dir / p).stat().st_size for p in tree_digest(module_dir))
    assert url in out and f"{size / 1024:.1f} KiB" in out and "ok" in out
    assert "1 entries" in out


def test_rm_removes_the_entry_of_a_handle(published, cache, capsys):
    url = published[0]
    hub.resolve(url, cache_dir=cache)
    assert main(["cache", "rm", url, "--cache-dir", str(cache)]) == 0
    assert f"removed {url}" in capsys.readouterr().out
    with pytest.raises(hub.OfflineError):
        hub.resolve(url, cache_dir=cache, offline=True)
    assert main(["cache", "rm", url, "--cache-dir", str(cache)]) == 1
    assert "not in the cache" in capsys.readouterr().err


def test_prune_removes_stale_staging_directories(published, cache, capsys):
    path = hub.resolve(published[0], cache_dir=cache)
    stale = cache / "tmp" / f"{path.parent.name}~99999-abcdef12"
    (stale / "module").mkdir(parents=True)
    (stale / "scratch-archive").write_bytes(b"half a download")
    assert main(["cache", "prune", "--cache-dir", str(cache)]) == 0
    assert str(stale) in capsys.readouterr().out
    assert not stale.exists() and path.exists()


def test_verify_reports_and_removes_corrupt_entries(published, cache, capsys):
    url = published[0]
    path = hub.resolve(url, cache_dir=cache)
    assert main(["cache", "verify", "--cache-dir", str(cache)]) == 0
    assert "1 ok, 0 broken" in capsys.readouterr().out
    kernel = path / "params" / "layer_0" / "kernel.bin"
    kernel.write_bytes(bytes(kernel.stat().st_size))
    assert main(["cache", "verify", url, "--remove-broken", "--cache-dir", str(cache)]) == 1
    out = capsys.readouterr().out
    assert "BROKEN" in out and "params/layer_0/kernel.bin: sha256 differs" in out
    assert not path.exists()


def test_cache_commands_use_the_environment_cache(published, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXHUB_CACHE_DIR", str(tmp_path / "env_cache"))
    hub.resolve(published[0])
    assert main(["cache", "ls"]) == 0
    assert published[0] in capsys.readouterr().out


def test_derived_entries_are_named_and_removed_by_their_origin(tmp_path, cache, capsys,
                                                               monkeypatch):
    saved_model = tmp_path / "exported" / "saved_model"
    saved_model.mkdir(parents=True)
    key = "converted:TF2 SavedModel:jaxhub-0.2.0:" + "ab" * 32
    made = hub.cached_derivation(key, lambda out: (out / "m.json").write_text("{}"),
                                 cache_dir=cache, origin=saved_model)
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"{saved_model} (converted:TF2 SavedModel:jaxhub-0.2.0)" in out and "ab" * 32 not in out
    # The path as the user typed it, relative to the working directory.
    monkeypatch.chdir(tmp_path)
    assert main(["cache", "rm", "exported/saved_model", "--cache-dir", str(cache)]) == 0
    assert f"removed {saved_model} (converted" in capsys.readouterr().out
    assert not made.exists()


def test_rm_of_a_handle_also_removes_what_was_derived_from_it(published, cache, capsys):
    url = published[0]
    downloaded = hub.resolve(url, cache_dir=cache)
    derived = hub.cached_derivation("converted:x:" + "cd" * 32,
                                    lambda out: (out / "m.json").write_text("{}"),
                                    cache_dir=cache, origin=downloaded)
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    assert f"{url} (converted:x)" in capsys.readouterr().out
    assert main(["cache", "rm", url, "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"removed {url}\n" in out and f"removed {url} (converted:x)" in out
    assert not downloaded.exists() and not derived.exists()
