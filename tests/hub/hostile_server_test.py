"""Servers that trickle, lie or are not there: downloads end, locks are freed, errors are clear."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pathlib
import socket
import subprocess
import sys
import time
import zipfile

import filelock
import pytest

from jaxhub._src import hub
from jaxhub._src.hub.cache import entry_key

from .helpers import entries, make_module_dir, packed, staging, tree_digest
from .server import Route
from tests.conftest import repo_pythonpath

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _lock_is_free(cache: pathlib.Path, url: str) -> bool:
    lock = filelock.FileLock(cache / "locks" / f"{entry_key('handle', url)}.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return False
    lock.release()
    return True


def test_server_trickling_bytes_fails_the_minimum_rate(server, published, cache, monkeypatch):
    url, _, _ = published
    body = server.routes[_path(url)].body
    slow = server.add("/trickle/module.tar.gz", Route(body=body, byte_delay=0.4))
    monkeypatch.setenv("JAXHUB_DOWNLOAD_TIMEOUT", "1")
    monkeypatch.setenv("JAXHUB_DOWNLOAD_MIN_RATE", "100")
    monkeypatch.setenv("JAXHUB_DOWNLOAD_RETRIES", "1")
    monkeypatch.setenv("JAXHUB_DOWNLOAD_DEADLINE", "30")
    with pytest.raises(hub.DownloadError, match="below the minimum of 100 "
                                                r"\(JAXHUB_DOWNLOAD_MIN_RATE\)") as error:
        hub.resolve(slow, cache_dir=cache)
    assert str(error.value).startswith(f"Downloading {slow} failed after 2 attempts")
    assert server.requests["/trickle/module.tar.gz"] == 2
    assert entries(cache) == [] and staging(cache) == [] and _lock_is_free(cache, slow)


def test_download_deadline_bounds_every_attempt_together(server, published, cache, monkeypatch):
    url, _, _ = published
    body = server.routes[_path(url)].body
    slow = server.add("/deadline/module.tar.gz", Route(body=body, byte_delay=0.4))
    monkeypatch.setenv("JAXHUB_DOWNLOAD_MIN_RATE", "0")  # only the deadline stops it
    monkeypatch.setenv("JAXHUB_DOWNLOAD_DEADLINE", "1.5")
    start = time.monotonic()
    with pytest.raises(hub.DownloadError, match=r"did not finish within 1.5s \(\d+ of "
                                                f"{len(body)} bytes received\\); raise "
                                                "JAXHUB_DOWNLOAD_DEADLINE"):
        hub.resolve(slow, cache_dir=cache)
    assert time.monotonic() - start < 10
    assert entries(cache) == [] and staging(cache) == [] and _lock_is_free(cache, slow)


def test_deadline_holds_while_headers_trickle(server, cache, monkeypatch):
    # Every read returns within the timeout and no body has begun, so neither the read
    # timeout nor the minimum rate applies: only the deadline on the whole stops it.
    url = server.add("/slow-headers/module.tar.gz", Route(header_byte_delay=0.2))
    monkeypatch.setenv("JAXHUB_DOWNLOAD_DEADLINE", "1.5")
    start = time.monotonic()
    with pytest.raises(hub.DownloadError, match=f"Downloading {url} did not finish within "
                                                r"1.5s \(0 bytes received\)"):
        hub.resolve(url, cache_dir=cache)
    assert time.monotonic() - start < 10  # 1.5 s plus a loaded machine's slack
    assert entries(cache) == [] and staging(cache) == [] and _lock_is_free(cache, url)


# Resolves a URL in a child process, so that the child holds the entry's lock.
_LOADER = ("import sys; from jaxhub import hub; "
           "print(hub.resolve(sys.argv[1], cache_dir=sys.argv[2]))")


def test_lock_wait_names_the_holder_and_gives_up(server, tmp_path, cache, monkeypatch, caplog):
    body, _ = packed(make_module_dir(tmp_path / "src"), tmp_path / "m.tar.gz")
    path = "/held/module.tar.gz"
    url = server.add(path, Route(body=body, byte_delay=0.01))
    env = dict(os.environ, PYTHONPATH=repo_pythonpath(), JAXHUB_DOWNLOAD_MIN_RATE="0")
    child = subprocess.Popen([sys.executable, "-c", _LOADER, url, str(cache)], cwd=_ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while server.bytes_sent[path] < 100:  # the child holds the lock and is downloading
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        monkeypatch.setenv("JAXHUB_LOCK_TIMEOUT", "2.5")
        with caplog.at_level(logging.WARNING, logger="jaxhub._src.hub.cache"):
            with pytest.raises(hub.CacheLockError) as error:
                hub.resolve(url, cache_dir=cache)
    finally:
        child.kill()
        child.wait(timeout=30)
    holder = f"another process (pid {child.pid}, "
    assert f"Waiting for {holder}" in caplog.text and "downloaded so far" in caplog.text
    message = str(error.value)
    assert message.startswith(f"Gave up after 2.5s waiting for {holder}")
    assert f"working on {url}" in message and "JAXHUB_LOCK_TIMEOUT" in message
    # The killed holder's lock is free at once and its leftovers are cleared.
    server.routes[path].byte_delay = 0.0
    assert tree_digest(hub.resolve(url, cache_dir=cache)) == tree_digest(tmp_path / "src")
    assert staging(cache) == []


def test_resume_answered_from_byte_zero_is_not_spliced(server, tmp_path, cache, caplog):
    source = make_module_dir(tmp_path / "src", big=1_000_000)
    body, digest = packed(source, tmp_path / "m.tar.gz")
    path = "/wrong-range/module.tar.gz"
    url = server.add(path, Route(body=body, drop_first=1, ranges=True, range_from_start=True))
    with caplog.at_level(logging.WARNING, logger="jaxhub._src.hub.download"):
        resolved = hub.resolve(url, cache_dir=cache, sha256=digest)
    assert tree_digest(resolved) == tree_digest(source)
    assert f"asked to resume at byte {len(body) // 2}" in caplog.text
    assert "Content-Range 'bytes 0-" in caplog.text
    # Dropped at half, a 206 that was refused, then the whole file again without Range.
    assert server.bodies[path] == 3


def test_refused_connection_fails_at_once_and_asks_if_the_server_runs(cache, caplog):
    with socket.socket() as probe:  # a port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/module.tar.gz"
    with caplog.at_level(logging.WARNING, logger="jaxhub._src.hub.download"):
        with pytest.raises(hub.DownloadError) as error:
            hub.resolve(url, cache_dir=cache)
    assert str(error.value) == (f"Cannot connect to 127.0.0.1:{port}: connection refused. "
                                f"Is the server running, and is the URL right? ({url})")
    assert "retrying" not in caplog.text
    assert entries(cache) == [] and staging(cache) == []


@pytest.mark.parametrize("length", ["lots", "\u00b2"])  # "²" passes str.isdigit
def test_invalid_content_length_is_a_clear_error(server, published, cache, length):
    body = server.routes[_path(published[0])].body
    path = f"/bad-length-{ord(length[0])}/module.tar.gz"
    url = server.add(path, Route(body=body, content_length=length))
    with pytest.raises(hub.DownloadError, match=f"{url}: the server sent an invalid "
                                                f"Content-Length '{length}'"):
        hub.resolve(url, cache_dir=cache)
    assert server.requests[path] == 1
    assert entries(cache) == [] and staging(cache) == []


def test_html_page_instead_of_an_archive_names_the_url(server, cache):
    url = server.add("/a-page/module.tar.gz", Route(body=b"<!DOCTYPE html><html>login</html>"))
    with pytest.raises(hub.ArchiveError) as error:
        hub.resolve(url, cache_dir=cache)
    message = str(error.value)
    assert message.startswith(f"{url} is not a readable tar archive")
    assert "HTML or XML page" in message and "scratch" not in message
    assert entries(cache) == [] and staging(cache) == []


def test_zip_archive_is_named_with_the_fix(server, cache):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("jaxhub_module.json", "{}")
    url = server.add("/a-zip/module.tar.gz", Route(body=buffer.getvalue()))
    with pytest.raises(hub.ArchiveError) as error:
        hub.resolve(url, cache_dir=cache)
    assert str(error.value).startswith(f"{url} is not a readable tar archive")
    assert "it is a zip archive" in str(error.value) and "jaxhub pack" in str(error.value)
    assert entries(cache) == [] and staging(cache) == []


@pytest.mark.parametrize("name, value, expected", [
    ("JAXHUB_DOWNLOAD_RETRIES", "-1", "a whole number >= 0"),
    ("JAXHUB_DOWNLOAD_TIMEOUT", "0", "a number > 0"),
    ("JAXHUB_DOWNLOAD_TIMEOUT", "nan", "a number > 0"),
    ("JAXHUB_DOWNLOAD_DEADLINE", "soon", "a number > 0"),
    ("JAXHUB_MAX_ARCHIVE_MEMBERS", "1e3", "a whole number > 0"),
    ("JAXHUB_LOCK_TIMEOUT", "-5", "a number > 0"),
])
def test_invalid_setting_is_refused_before_any_work(server, published, cache, monkeypatch,
                                                    name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(hub.SettingsError, match=f"{name}='{value}' .*expected {expected}"):
        hub.resolve(published[0], cache_dir=cache)
    assert server.requests[_path(published[0])] == 0


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.mark.parametrize("url, reason", [
    ("http://", "names no host"),
    ("http://[::1/m.tar.gz", "not a valid .*Invalid IPv6 URL"),
    ("http://127.0.0.1:99999/m.tar.gz", "out of range"),
    ("http://exa mple.com/m.tar.gz", "percent-encode"),
    ("http://" + "a" * 64 + ".example.com/m.tar.gz", "longer than 63 characters"),
    ("http://example..com/m.tar.gz", "empty label"),
])
def test_malformed_url_is_a_handle_error_before_any_connection(cache, url, reason):
    with pytest.raises(hub.HandleError, match=reason) as error:
        hub.resolve(url, cache_dir=cache)
    assert repr(url) in str(error.value) and not (cache / "locks").exists()


@pytest.fixture
def listener():
    """A TCP socket on 127.0.0.1 that counts the connections made to it."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(0.05)
        accepted = []

        def count() -> int:
            with contextlib.suppress(TimeoutError):
                while True:
                    accepted.append(sock.accept()[0])
            return len(accepted)

        yield sock.getsockname()[1], count
        for connection in accepted:
            connection.close()


@pytest.mark.parametrize("scheme", ["ftp", "file"])
def test_redirect_to_another_scheme_is_refused_without_connecting(server, cache, listener,
                                                                   scheme):
    # An ftp:// download would reach any host and port, unencrypted, outside the deadline.
    port, connections = listener
    target = f"{scheme}://127.0.0.1:{port}/module.tar.gz"
    url = server.add(f"/to-{scheme}/module.tar.gz", Route(redirect=target))
    start = time.monotonic()
    with pytest.raises(hub.DownloadError) as error:
        hub.resolve(url, cache_dir=cache)
    assert time.monotonic() - start < 2
    assert url in str(error.value) and target in str(error.value)
    assert connections() == 0
    assert entries(cache) == [] and staging(cache) == []


@pytest.mark.parametrize("location, reason", [
    ("http://[::1/module.tar.gz", "Invalid IPv6 URL"),
    ("http://127.0.0.1:99999/module.tar.gz", "out of range"),
    ("http://" + "a" * 64 + ".example.com/module.tar.gz", "longer than 63 characters"),
])
def test_malformed_redirect_is_a_download_error(server, cache, location, reason):
    url = server.add(f"/bad-redirect-{len(location)}/module.tar.gz", Route(redirect=location))
    with pytest.raises(hub.DownloadError, match=reason) as error:
        hub.resolve(url, cache_dir=cache)
    assert str(error.value).startswith(f"{url} redirects to ")
    assert entries(cache) == [] and staging(cache) == []
