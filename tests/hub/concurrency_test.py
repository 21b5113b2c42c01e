"""Many real processes loading at once, and a download killed with SIGKILL."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from jaxhub._src import hub
from jaxhub._src.hub.cache import Cache, entry_key

from .helpers import entries, make_module_dir, packed, staging, tree_digest
from .server import Route
from tests.conftest import repo_pythonpath

_ROOT = pathlib.Path(__file__).resolve().parents[2]

# Each child announces it is ready, waits for the go file so all start together, then
# resolves and prints the path it got.
_LOADER = """
import pathlib, sys, time
from jaxhub._src import hub
url, cache, ready, go = sys.argv[1:5]
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.01)
print(hub.resolve(url, cache_dir=cache))
"""


def _spawn(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=repo_pythonpath(), JAXHUB_DISABLE_PROGRESS="1",
               no_proxy="127.0.0.1,localhost")
    return subprocess.Popen([sys.executable, "-c", _LOADER, *args], cwd=_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


def test_eight_processes_download_once_and_agree(server, tmp_path):
    source = make_module_dir(tmp_path / "src", big=1_000_000)
    body, _ = packed(source, tmp_path / "m.tar.gz")
    # Slow enough that every process arrives while the first is still downloading.
    url = server.add("/eight/module.tar.gz", Route(body=body, chunk_delay=0.1))
    cache, go = tmp_path / "cache", tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(8)]
    children = [_spawn([url, str(cache), str(r), str(go)]) for r in ready]
    try:
        _wait_for(lambda: all(r.exists() for r in ready))
        go.touch()
        results = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            child.kill()
    assert [child.returncode for child in children] == [0] * 8, [err for _, err in results]
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    assert tree_digest(pathlib.Path(paths.pop())) == tree_digest(source)
    assert server.bodies["/eight/module.tar.gz"] == 1
    assert staging(cache) == []


def test_threads_in_one_process_download_once(server, tmp_path):
    source = make_module_dir(tmp_path / "src")
    body, _ = packed(source, tmp_path / "m.tar.gz")
    url = server.add("/threads/module.tar.gz", Route(body=body, chunk_delay=0.05))
    results: list[pathlib.Path] = []
    threads = [threading.Thread(target=lambda: results.append(
        hub.resolve(url, cache_dir=tmp_path / "cache"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 4 and len(set(results)) == 1
    assert tree_digest(results[0]) == tree_digest(source)
    assert server.bodies["/threads/module.tar.gz"] == 1


def test_download_killed_halfway_leaves_nothing_visible(server, tmp_path):
    source = make_module_dir(tmp_path / "src", big=2_000_000)
    body, digest = packed(source, tmp_path / "m.tar.gz")
    path = "/killed/module.tar.gz"
    url = server.add(path, Route(body=body, chunk_delay=0.05))
    cache, go = tmp_path / "cache", tmp_path / "go"
    go.touch()
    child = _spawn([url, str(cache), str(tmp_path / "ready"), str(go)])
    try:
        _wait_for(lambda: server.bytes_sent[path] > len(body) // 3)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL
    assert entries(cache) == [] and len(staging(cache)) == 1  # half a download, unpublished
    with pytest.raises(hub.OfflineError):
        hub.resolve(url, cache_dir=cache, offline=True)
    # The killed process held the lock; the kernel released it, so the next load neither
    # waits nor sees the leftovers, which it clears.
    server.routes[path].chunk_delay = 0.0
    retry = _spawn([url, str(cache), str(tmp_path / "ready2"), str(go)])
    out, err = retry.communicate(timeout=60)
    assert retry.returncode == 0, err
    assert "Waiting for another process" not in err
    assert tree_digest(pathlib.Path(out.strip())) == tree_digest(source)
    assert staging(cache) == []
    assert hub.resolve(url, cache_dir=cache, offline=True, sha256=digest) == pathlib.Path(
        out.strip())


def test_waiting_for_a_live_download_is_announced(published, cache, caplog):
    url, _, module_dir = published
    holding = threading.Event()
    release = threading.Event()

    def hold_lock():
        with Cache(cache).lock(entry_key("handle", url)):
            holding.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    holding.wait(timeout=30)
    threading.Timer(2.5, release.set).start()
    with caplog.at_level("WARNING", logger="jaxhub._src.hub.cache"):
        path = hub.resolve(url, cache_dir=cache)
    holder.join(timeout=30)
    assert "Waiting for another process" in caplog.text
    assert tree_digest(path) == tree_digest(module_dir)
