"""`jaxhub.hub.resolve` against a real HTTP server: handles, network behaviour, pins, offline."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from jaxhub._src import hub

from .helpers import entries, make_module_dir, packed, staging, tree_digest
from .server import Route
from tests.conftest import repo_pythonpath


def test_local_directory_is_returned_as_is(module_dir, cache):
    assert hub.resolve(module_dir, cache_dir=cache) == module_dir.absolute()
    assert entries(cache) == []


def test_local_and_file_url_archives_unpack_to_the_same_tree(tmp_path, module_dir, cache):
    packed(module_dir, tmp_path / "m.tar.gz")
    from_path = hub.resolve(tmp_path / "m.tar.gz", cache_dir=cache)
    from_url = hub.resolve((tmp_path / "m.tar.gz").as_uri(), cache_dir=cache)
    assert tree_digest(from_path) == tree_digest(module_dir)
    assert from_url == from_path
    assert hub.resolve(module_dir.as_uri(), cache_dir=cache) == module_dir


def test_edited_local_archive_is_unpacked_again(tmp_path, cache):
    archive = tmp_path / "m.tar.gz"
    packed(make_module_dir(tmp_path / "a", seed=1), archive)
    first = tree_digest(hub.resolve(archive, cache_dir=cache))
    packed(make_module_dir(tmp_path / "b", seed=2), archive)
    second = tree_digest(hub.resolve(archive, cache_dir=cache))
    assert first == tree_digest(tmp_path / "a")
    assert second == tree_digest(tmp_path / "b")


def test_http_archive_downloads_once(server, published, cache):
    url, _, module_dir = published
    path = hub.resolve(url, cache_dir=cache)
    again = hub.resolve(url, cache_dir=cache)
    assert tree_digest(path) == tree_digest(module_dir)
    assert again == path
    assert server.bodies[_path(url)] == 1
    assert cache in path.parents


def test_tf_hub_style_url_asks_for_compressed_format(server, tmp_path, module_dir, cache):
    body, _ = packed(module_dir, tmp_path / "m.tar.gz")
    url = server.add("/google/some-model/1", Route(body=body,
                                                   require_query="tf-hub-format=compressed"))
    assert tree_digest(hub.resolve(url, cache_dir=cache)) == tree_digest(module_dir)


def test_page_that_is_not_an_archive_is_a_clear_error(server, cache):
    url = server.add("/html/model/1", Route(body=b"<html></html>"))
    with pytest.raises(hub.ArchiveError, match="not a readable tar archive"):
        hub.resolve(url, cache_dir=cache)
    assert entries(cache) == [] and staging(cache) == []


def test_redirect_is_followed(server, published, cache):
    url, _, module_dir = published
    moved = server.add("/moved/module.tar.gz", Route(redirect=url))
    assert tree_digest(hub.resolve(moved, cache_dir=cache)) == tree_digest(module_dir)


def test_server_errors_are_retried(server, tmp_path, module_dir, cache):
    body, _ = packed(module_dir, tmp_path / "m.tar.gz")
    url = server.add("/flaky/module.tar.gz", Route(body=body, fail_first=2))
    assert tree_digest(hub.resolve(url, cache_dir=cache)) == tree_digest(module_dir)
    assert server.requests["/flaky/module.tar.gz"] == 3


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "restarted"])
def test_connection_dropped_halfway_is_retried(server, tmp_path, cache, ranges):
    source = make_module_dir(tmp_path / "src", big=1_000_000)
    body, digest = packed(source, tmp_path / "m.tar.gz")
    path = f"/dropped-{ranges}/module.tar.gz"
    url = server.add(path, Route(body=body, drop_first=1, ranges=ranges))
    # The pin proves the resumed or restarted body is byte-identical to the archive.
    assert tree_digest(hub.resolve(url, cache_dir=cache, sha256=digest)) == tree_digest(source)
    assert server.bodies[path] == 2
    # Resuming asks only for the missing half; restarting sends everything again.
    expected = len(body) if ranges else len(body) + len(body) // 2
    assert server.bytes_sent[path] == expected


def test_file_changed_between_attempts_is_taken_whole(server, tmp_path, cache):
    old, _ = packed(make_module_dir(tmp_path / "old", seed=1, big=1_000_000), tmp_path / "o.tgz")
    new, _ = packed(make_module_dir(tmp_path / "new", seed=2, big=1_000_000), tmp_path / "n.tgz")
    path = "/changed/module.tar.gz"
    url = server.add(path, Route(body=old, drop_first=1, ranges=True, replace_after_drop=new))
    assert tree_digest(hub.resolve(url, cache_dir=cache)) == tree_digest(tmp_path / "new")
    assert server.bytes_sent[path] == len(old) // 2 + len(new)


@pytest.mark.parametrize("status", [404, 403])
def test_client_errors_fail_at_once_and_clearly(server, cache, status):
    url = server.add(f"/denied-{status}/module.tar.gz", Route(status=status))
    with pytest.raises(hub.DownloadError, match=f"HTTP {status}"):
        hub.resolve(url, cache_dir=cache)
    assert server.requests[f"/denied-{status}/module.tar.gz"] == 1
    assert entries(cache) == [] and staging(cache) == []


def test_unresponsive_server_times_out(server, cache, monkeypatch):
    monkeypatch.setenv("JAXHUB_DOWNLOAD_TIMEOUT", "0.3")
    monkeypatch.setenv("JAXHUB_DOWNLOAD_RETRIES", "1")
    url = server.add("/silent/module.tar.gz", Route(body=b"x", header_delay=1.5))
    with pytest.raises(hub.DownloadError, match="no data for 0.3s"):
        hub.resolve(url, cache_dir=cache)
    assert server.requests["/silent/module.tar.gz"] == 2
    assert entries(cache) == []


def test_proxy_from_environment_is_used(server, published, cache, monkeypatch):
    _, _, module_dir = published
    name = _path(published[0])
    monkeypatch.setenv("http_proxy", server.url(""))
    monkeypatch.setenv("no_proxy", "")
    url = f"http://models.example.invalid{name}"
    assert tree_digest(hub.resolve(url, cache_dir=cache)) == tree_digest(module_dir)
    assert server.proxied == [url]


def test_sha256_pin_that_matches_passes(published, cache):
    url, digest, module_dir = published
    path = hub.resolve(url, cache_dir=cache, sha256=digest.upper())
    assert tree_digest(path) == tree_digest(module_dir)


def test_sha256_pin_that_differs_fails_and_caches_nothing(published, cache):
    url, digest, _ = published
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    with pytest.raises(hub.IntegrityError, match="expected"):
        hub.resolve(url, cache_dir=cache, sha256=wrong)
    assert entries(cache) == [] and staging(cache) == []


def test_malformed_pin_is_rejected(published, cache):
    with pytest.raises(ValueError, match="64 hexadecimal"):
        hub.resolve(published[0], cache_dir=cache, sha256="abc")


def test_offline_serves_cached_entry_without_network(server, published, cache, monkeypatch):
    url = published[0]
    path = hub.resolve(url, cache_dir=cache)
    before = server.requests[_path(url)]
    assert hub.resolve(url, cache_dir=cache, offline=True) == path
    monkeypatch.setenv("JAXHUB_OFFLINE", "1")
    assert hub.resolve(url, cache_dir=cache) == path
    assert server.requests[_path(url)] == before


def test_offline_without_entry_fails_clearly(server, published, cache, monkeypatch):
    url = published[0]
    with pytest.raises(hub.OfflineError, match="not in the cache"):
        hub.resolve(url, cache_dir=cache, offline=True)
    monkeypatch.setenv("JAXHUB_OFFLINE", "1")
    with pytest.raises(hub.OfflineError):
        hub.resolve(url, cache_dir=cache)
    assert server.requests[_path(url)] == 0


def test_progress_bar_is_shown_only_when_asked(published, cache, tmp_path, capsys):
    url = published[0]
    hub.resolve(url, cache_dir=cache)
    assert capsys.readouterr().err == ""
    hub.resolve(url, cache_dir=tmp_path / "other", progress=True)
    assert "module.tar.gz" in capsys.readouterr().err


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert hub.cache_dir() == tmp_path / "home" / ".cache" / "jaxhub"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub"))
    assert hub.cache_dir() == tmp_path / "tfhub"
    monkeypatch.setenv("JAXHUB_CACHE_DIR", str(tmp_path / "jaxhub"))
    assert hub.cache_dir() == tmp_path / "jaxhub"


def test_default_cache_is_used_when_none_given(published, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXHUB_CACHE_DIR", str(tmp_path / "env_cache"))
    path = hub.resolve(published[0])
    assert tmp_path / "env_cache" in path.parents


class _Rewriter:
    """myhub:// names served by the test server."""

    def __init__(self, base: str):
        self.base = base

    def is_supported(self, handle: str) -> bool:
        return handle.startswith("myhub://")

    def resolve(self, handle: str, request: hub.Request) -> pathlib.Path:
        return request.resolve(self.base + handle.removeprefix("myhub://") + "/module.tar.gz")


def test_registered_resolver_is_asked_first(server, published, cache):
    url, _, module_dir = published
    base = url.removesuffix("module.tar.gz").rsplit("/", 2)[0] + "/"
    name = url.removesuffix("/module.tar.gz").rsplit("/", 1)[1]
    hub.register_resolver(_Rewriter(base))
    assert tree_digest(hub.resolve(f"myhub://{name}", cache_dir=cache)) == tree_digest(module_dir)


def test_unknown_handle_lists_resolvers_tried(cache):
    with pytest.raises(hub.HandleError) as error:
        hub.resolve("gs://bucket/model", cache_dir=cache)
    message = str(error.value)
    assert "'gs://bucket/model'" in message
    assert "HttpArchiveResolver" in message and "FileUrlResolver" in message


def test_register_resolver_checks_its_argument():
    with pytest.raises(TypeError, match="is_supported"):
        hub.register_resolver(object())


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def test_bad_numeric_setting_names_the_variable(published, cache, monkeypatch):
    monkeypatch.setenv("JAXHUB_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="JAXHUB_DOWNLOAD_TIMEOUT='soon'"):
        hub.resolve(published[0], cache_dir=cache)


def test_resolving_never_imports_tensorflow(published, cache):
    code = ("import sys; from jaxhub import hub; hub.resolve(sys.argv[1], cache_dir=sys.argv[2]);"
            "print('tensorflow' in sys.modules)")
    root = pathlib.Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", code, published[0], str(cache)], cwd=root,
                         env=dict(os.environ, PYTHONPATH=repo_pythonpath()), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
