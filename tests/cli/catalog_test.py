"""``jaxhub publish``, ``jaxhub catalog build`` and ``jaxhub search``, run as commands."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from tests.catalog.conftest import StaticServer


def run(*args):
    return subprocess.run([sys.executable, "-m", "jaxhub", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_publish_build_and_search(mlp_dir, tmp_path):
    repo = tmp_path / "repo"
    for version in (1, 2):
        done = run("publish", mlp_dir, repo, "--name", "acme/mlp", "--version", version,
                   "--license", "MIT", "--description", "A small regressor.")
        assert done.returncode == 0, done.stderr
        digest = hashlib.sha256((repo / f"acme/mlp/{version}.tar.gz").read_bytes()).hexdigest()
        assert done.stdout.strip() == f"acme/mlp/{version} sha256:{digest}"
    built = run("catalog", "build", repo, "--base-url", "https://models.example.org/")
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == str(repo / "index.html")
    page = (repo / "acme/mlp/2/index.html").read_text()
    assert "https://models.example.org/acme/mlp/2" in page
    server = StaticServer(repo)
    try:
        found = run("search", "regressor", "--repo", server.url(), "--json")
        listed = run("search", "small", "--repo", server.url(), "--license", "MIT")
        missed = run("search", "regressor", "--repo", server.url(), "--license", "GPL")
    finally:
        server.close()
    assert found.returncode == 0, found.stderr
    (hit,) = json.loads(found.stdout)
    assert (hit["name"], hit["version"], hit["handle"]) == ("acme/mlp", 2,
                                                            server.url("acme/mlp/2"))
    assert hit["sha256"] == digest
    assert listed.stdout.splitlines()[0].startswith("acme/mlp 2  [regression, MIT,")
    assert server.url("acme/mlp/2") in listed.stdout
    assert missed.returncode == 0 and "no module matches" in missed.stdout


def test_errors_are_one_clear_line(mlp_dir, tmp_path):
    repo = tmp_path / "repo"
    assert run("publish", mlp_dir, repo, "--name", "acme/mlp", "--version", 1).returncode == 0
    again = run("publish", mlp_dir, repo, "--name", "acme/mlp", "--version", 1)
    assert again.returncode == 1
    assert "already published" in again.stderr and "publish version 2" in again.stderr
    bad = run("publish", mlp_dir, repo, "--name", "mlp", "--version", 2)
    assert bad.returncode == 1 and "must look like 'org/model'" in bad.stderr
    nothing = run("catalog", "build", tmp_path / "empty")
    assert nothing.returncode == 1 and "not a jaxhub repository" in nothing.stderr
    (repo / "acme/mlp/1.json").unlink()
    reindexed = run("catalog", "reindex", repo)
    assert reindexed.returncode == 0 and reindexed.stdout.strip() == "0 modules, 0 versions"
