"""Decompression bombs and a full disk: archives are bounded before and while they unpack."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tracemalloc
import zlib

import pytest

from jaxhub._src import hub

from .helpers import entries, file_info, staging, tar_bytes
from .server import Route
from tests.conftest import repo_pythonpath

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _zeros_bomb(mib: int) -> bytes:
    # One member of zeros: gzip shrinks it about a thousandfold.
    return tar_bytes([(file_info("jaxhub_module.json"), b"{}"),
                      (file_info("params/zeros.bin"), bytes(mib * 2**20))])


def _empty_files(count: int) -> bytes:
    return tar_bytes([(file_info(f"f{i:05d}"), b"") for i in range(count)])


def test_archive_that_expands_too_much_is_refused_before_writing(server, cache, monkeypatch):
    body = _zeros_bomb(80)
    assert len(body) < 2**20  # 80 MiB of zeros in under 1 MiB of archive
    url = server.add("/bomb/module.tar.gz", Route(body=body))
    with pytest.raises(hub.UnsafeArchiveError) as error:
        hub.resolve(url, cache_dir=cache)
    message = str(error.value)
    assert message.startswith(url) and "'params/zeros.bin'" in message
    assert "100 times its own" in message and "JAXHUB_MAX_EXPANSION_RATIO" in message
    assert entries(cache) == [] and staging(cache) == []
    # The same archive is accepted when the user says such a ratio is genuine.
    monkeypatch.setenv("JAXHUB_MAX_EXPANSION_RATIO", "5000")
    path = hub.resolve(url, cache_dir=cache)
    assert (path / "params" / "zeros.bin").stat().st_size == 80 * 2**20


def test_small_archive_of_zero_tensors_is_under_the_floor(server, cache):
    # Zero-initialised tensors compress far beyond any ratio; small modules stay loadable.
    body = _zeros_bomb(8)
    url = server.add("/zero-init/module.tar.gz", Route(body=body))
    assert (hub.resolve(url, cache_dir=cache) / "params" / "zeros.bin").stat().st_size == 8 * 2**20


def _header_bomb(kind: bytes, mib: int) -> bytes:
    # One extended header (a GNU long name, a PAX record set) of `mib` MiB of "a": tarfile
    # holds such a header in memory whole, and gzip shrinks it about a thousandfold.
    header = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax")
    header.type, header.size = kind, mib * 2**20
    compress = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing
    body = [compress.compress(header.tobuf(format=tarfile.GNU_FORMAT))]
    body += [compress.compress(b"a" * 2**20) for _ in range(mib)]
    body.append(compress.compress(tarfile.TarInfo("x").tobuf() + bytes(1024)))
    return b"".join(body) + compress.flush()


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE],
                         ids=["gnu_long_name", "pax"])
def test_extended_header_bomb_is_refused_before_it_is_read(server, cache, kind):
    body = _header_bomb(kind, 64)
    assert len(body) < 2**20
    url = server.add(f"/header-bomb-{kind.decode()}/module.tar.gz", Route(body=body))
    tracemalloc.start()
    try:
        with pytest.raises(hub.UnsafeArchiveError) as error:
            hub.resolve(url, cache_dir=cache)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20  # the header alone is 64 MiB
    assert str(error.value).startswith(url)
    assert f"extended header of {64 * 2**20} bytes" in str(error.value)
    assert entries(cache) == [] and staging(cache) == []


def test_archive_with_too_many_members_is_refused(server, cache, monkeypatch):
    url = server.add("/many/module.tar.gz", Route(body=_empty_files(50)))
    monkeypatch.setenv("JAXHUB_MAX_ARCHIVE_MEMBERS", "40")
    with pytest.raises(hub.UnsafeArchiveError, match="more than 40 members .*'f00040'.*"
                                                     "JAXHUB_MAX_ARCHIVE_MEMBERS"):
        hub.resolve(url, cache_dir=cache)
    assert entries(cache) == [] and staging(cache) == []


def test_default_limits_are_sensible():
    settings = hub.config.Settings.from_env({}, cache_dir="/c")
    assert settings.max_members == 20_000 and settings.max_expansion == 100
    assert settings.min_free_bytes == 128 * 2**20 and settings.max_archive_bytes == 64 * 2**30


@pytest.mark.parametrize("where", ["download", "local_archive"])
def test_unpacking_must_leave_free_disk_space(server, tmp_path, cache, monkeypatch, where):
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(tar_bytes([(file_info("weights.bin"), os.urandom(4096))]))
    cache.mkdir()
    # A reserve as large as the whole disk: nothing may be written, whatever else runs.
    monkeypatch.setenv("JAXHUB_MIN_FREE_BYTES", str(shutil.disk_usage(cache).total))
    if where == "download":
        handle = server.add("/reserve/module.tar.gz", Route(body=archive.read_bytes()))
        expected = hub.DownloadError
    else:
        handle, expected = str(archive), hub.UnsafeArchiveError
    with pytest.raises(expected, match="JAXHUB_MIN_FREE_BYTES") as error:
        hub.resolve(handle, cache_dir=cache)
    assert handle in str(error.value) and "free" in str(error.value)
    assert entries(cache) == [] and staging(cache) == []


def test_member_name_too_long_for_the_file_system_is_refused(server, cache):
    body = tar_bytes([(file_info("a" * 300), b"x")])
    url = server.add("/long-name/module.tar.gz", Route(body=body))
    with pytest.raises(hub.UnsafeArchiveError, match="longer than 255 bytes"):
        hub.resolve(url, cache_dir=cache)
    assert entries(cache) == [] and staging(cache) == []


def test_cache_path_too_long_is_a_clear_error(tmp_path, module_dir):
    hub.pack(module_dir, tmp_path / "m.tar.gz")
    cache = tmp_path / ("c" * 300)
    with pytest.raises(hub.CacheWriteError, match="shorter cache path.*JAXHUB_CACHE_DIR") as error:
        hub.resolve(tmp_path / "m.tar.gz", cache_dir=cache)
    assert str(tmp_path / "m.tar.gz") in str(error.value)


# Runs in its own user and mount namespace with a tiny tmpfs as the cache: a real full disk.
_FULL_DISK = """
import os, subprocess, sys
cache, archive = sys.argv[1:3]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=12", "tmpfs", cache],
               check=True)
from jaxhub._src import hub
try:
    hub.resolve(archive, cache_dir=cache)
except hub.HubError as e:
    print(type(e).__name__, e)
print("left:", sorted(os.listdir(os.path.join(cache, "tmp"))))
"""


def test_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unprivileged user namespaces (unshare -rm) for a private tmpfs")
    archive = tmp_path / "m.tar.gz"
    # Twenty files fit in the bytes but not in the twelve inodes of the file system.
    archive.write_bytes(tar_bytes([(file_info(f"f{i}"), b"x") for i in range(20)]))
    cache = tmp_path / "cache"
    cache.mkdir()
    run = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", _FULL_DISK, str(cache), str(archive)],
        cwd=_ROOT, env=dict(os.environ, PYTHONPATH=repo_pythonpath(), JAXHUB_MIN_FREE_BYTES="0"),
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"CacheWriteError Caching {archive} in {cache} failed: "
                                 "No space left on device; free some disk space"), run.stdout
    assert "left: []" in run.stdout


def test_directories_count_toward_the_member_limit(tmp_path, monkeypatch):
    # The limit trips on the count alone: directories carry no bytes.
    members = [tarfile.TarInfo(f"d{i}") for i in range(30)]
    for info in members:
        info.type = tarfile.DIRTYPE
    archive = tmp_path / "dirs.tar"
    archive.write_bytes(tar_bytes([(info, None) for info in members], gz=False))
    monkeypatch.setenv("JAXHUB_MAX_ARCHIVE_MEMBERS", "10")
    with pytest.raises(hub.UnsafeArchiveError, match="more than 10 members"):
        hub.resolve(archive, cache_dir=tmp_path / "cache")
    assert staging(tmp_path / "cache") == []
