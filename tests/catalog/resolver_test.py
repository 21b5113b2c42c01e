"""jaxhub.load through a repository: versions, latest, sha256 checks, clear errors."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxhub
from jaxhub import catalog, hub
from jaxhub._src.catalog import layout

from .conftest import StaticServer
from tests.conftest import repo_pythonpath

_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def x():
    return jax.random.normal(jax.random.key(7), (3, 50))


def _expected(source, x):
    """What the publisher's own function computes with the published params."""
    return np.asarray(source.fn(source.params, x))


def test_load_a_version_by_repository_url(served, sources, x):
    module = jaxhub.load(served.url("acme/mlp/1"))
    np.testing.assert_allclose(module(x), _expected(sources["mlp1"], x), rtol=1e-5, atol=1e-6)


def test_latest_is_the_newest_version(served, sources, x):
    module = jaxhub.load(served.url("acme/mlp/latest"))
    np.testing.assert_allclose(module(x), _expected(sources["mlp2"], x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(module(x), _expected(sources["mlp1"], x))


def test_trailing_slash_and_nested_repository_root(tmp_path, repo, sources, x):
    (tmp_path / "site").mkdir()
    shutil.move(repo, tmp_path / "site" / "models")
    server = StaticServer(tmp_path / "site")
    try:
        module = jaxhub.load(server.url("models/acme/mlp/2/"))
    finally:
        server.close()
    np.testing.assert_allclose(module(x), _expected(sources["mlp2"], x), rtol=1e-5, atol=1e-6)


def test_unknown_version_lists_the_versions_that_exist(served):
    with pytest.raises(hub.HandleError) as info:
        jaxhub.load(served.url("acme/mlp/7"))
    message = str(info.value)
    assert "acme/mlp has no version 7" in message
    assert "versions that exist: 1, 2 (latest: 2)" in message


def test_unknown_module_lists_the_modules_that_exist(served):
    with pytest.raises(hub.HandleError, match="no module 'acme/nope'.*acme/mlp, "
                                              "vision/pool-embed"):
        jaxhub.load(served.url("acme/nope/1"))


def test_archive_that_does_not_match_the_index_is_refused(served, repo, tmp_path):
    # Someone replaced version 1's archive behind the index's back.
    shutil.copy(repo / "acme/mlp/2.tar.gz", repo / "acme/mlp/1.tar.gz")
    with pytest.raises(hub.IntegrityError, match="expected"):
        jaxhub.load(served.url("acme/mlp/1"))
    assert not list((tmp_path / "cache").glob("entries/*"))


def test_a_callers_pin_wins_over_the_index(served, repo):
    wrong = "0" * 64
    with pytest.raises(hub.IntegrityError, match=wrong):
        jaxhub.load(served.url("acme/mlp/1"), sha256=wrong)
    record = (repo / "acme/mlp/1.json").read_text()
    assert wrong not in record


def test_versions_share_the_cache_with_their_archive_url(served, sources, x):
    by_version = jaxhub.resolve(served.url("acme/mlp/2"))
    by_latest = jaxhub.resolve(served.url("acme/mlp/latest"))
    by_archive = jaxhub.resolve(served.url("acme/mlp/2.tar.gz"))
    assert by_version == by_latest == by_archive


def test_offline_serves_a_cached_version_and_explains_latest(served, sources, x):
    jaxhub.load(served.url("acme/mlp/1"))
    served.close()  # nothing can be fetched any more
    module = jaxhub.load(served.url("acme/mlp/1"), offline=True)
    np.testing.assert_allclose(module(x), _expected(sources["mlp1"], x), rtol=1e-5, atol=1e-6)
    with pytest.raises(hub.OfflineError, match="pin a version"):
        jaxhub.load(served.url("acme/mlp/latest"), offline=True)


def test_a_cached_version_loads_without_the_server(served, sources, x, monkeypatch):
    jaxhub.load(served.url("acme/mlp/2"))
    served.close()
    monkeypatch.setenv("JAXHUB_DOWNLOAD_RETRIES", "0")
    module = jaxhub.load(served.url("acme/mlp/2"))
    np.testing.assert_allclose(module(x), _expected(sources["mlp2"], x), rtol=1e-5, atol=1e-6)
    with pytest.raises(hub.DownloadError):
        jaxhub.load(served.url("acme/mlp/latest"))  # latest always asks the index


def test_file_url_of_a_repository(repo, sources, x):
    module = jaxhub.load(f"{repo.as_uri()}/acme/mlp/latest")
    np.testing.assert_allclose(module(x), _expected(sources["mlp2"], x), rtol=1e-5, atol=1e-6)
    with pytest.raises(hub.HandleError, match="versions that exist: 1, 2"):
        jaxhub.load(f"{repo.as_uri()}/acme/mlp/3")


def test_same_shaped_url_without_repository_falls_back_to_tf_hub_style(tmp_path, sources, x):
    # A TF-Hub-style server answers <handle>?tf-hub-format=compressed with the archive;
    # a static server ignores the query and serves the file named like the handle.
    site = tmp_path / "tfhub"
    (site / "google" / "mlp").mkdir(parents=True)
    hub.pack(sources["mlp1"].module_dir, site / "google" / "mlp" / "3")
    server = StaticServer(site)
    try:
        module = jaxhub.load(server.url("google/mlp/3"))
    finally:
        server.close()
    np.testing.assert_allclose(module(x), _expected(sources["mlp1"], x), rtol=1e-5, atol=1e-6)


def test_handles_the_resolver_takes(served):
    resolver = catalog.RepositoryResolver()
    for handle in ("http://h/acme/mlp/1", "https://h/p/q/acme/mlp/latest",
                   "file:///srv/repo/acme/mlp/12/"):
        assert resolver.is_supported(handle), handle
    for handle in ("http://h/acme/mlp/1.tar.gz", "http://h/mlp/1", "/srv/repo/acme/mlp/1",
                   "http://h/acme/mlp/v1", "http://h/acme/mlp/1?x=1", "gs://b/acme/mlp/1",
                   "http://h/acme/mlp/0"):
        assert not resolver.is_supported(handle), handle
    assert layout.split_handle("http://h/p/acme/mlp/3") == ("http://h/p/", "acme/mlp", "3")


def test_fresh_process_loads_by_repository_url(served, tmp_path):
    # `import jaxhub` alone registers the repository resolver.
    code = (f"import jaxhub; m = jaxhub.load({served.url('acme/mlp/2')!r}); "
            "print(sorted(m.signatures))")
    env = {**os.environ, "PYTHONPATH": repo_pythonpath()}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['default', 'double']"
