"""Safe extraction refuses every malicious archive; `pack` is reproducible and round-trips."""

from __future__ import annotations

import hashlib
import tarfile

import pytest

from jaxhub._src import hub

from .helpers import (entries, file_info, files_outside, link_info, make_module_dir, staging,
                      tar_bytes, tree_digest)
from .server import Route


def _oversized_header() -> tarfile.TarInfo:
    # Declares a terabyte without carrying it: the limit must trip on the header.
    info = file_info("weights.bin")
    info.size = 2**40
    return info


def _malicious(outside: str) -> dict[str, bytes]:
    """Archives that must be refused; `outside` is an absolute path beside the cache."""
    fine = (file_info("jaxhub_module.json"), b"{}")
    device = tarfile.TarInfo("dev0")
    device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 3
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    huge = tar_bytes([fine, (_oversized_header(), None)])
    # Truncate: the header promises 1 TB that never follows.
    return {
        "traversal": tar_bytes([fine, (file_info("../../../../escaped.txt"), b"pwned")]),
        "nested_traversal": tar_bytes([fine, (file_info("assets/../../../../../escaped.txt"),
                                              b"x")]),
        "absolute": tar_bytes([fine, (file_info(f"{outside}/escaped.txt"), b"pwned")]),
        "symlink_outside": tar_bytes([fine, (link_info("link", outside, tarfile.SYMTYPE), None),
                                      (file_info("link/escaped.txt"), b"pwned")]),
        "hardlink": tar_bytes([fine, (link_info("passwd", "/etc/passwd", tarfile.LNKTYPE),
                                      None)]),
        "device": tar_bytes([fine, (device, None)]),
        "fifo": tar_bytes([fine, (fifo, None)]),
        "oversized_member": huge[:len(huge) // 2],
        "duplicate_member": tar_bytes([fine, (file_info("a.txt"), b"1"),
                                       (file_info("a.txt"), b"2")]),
        "file_then_directory": tar_bytes([fine, (file_info("a"), b"1"),
                                          (file_info("a/b.txt"), b"2")]),
        # Deeper than Python's recursion: pathlib's mkdir, os.walk and rmtree recurse.
        "nested_too_deep": tar_bytes([fine, (file_info("a/" * 1500 + "f.txt"), b"x")]),
        "gnu_sparse": tar_bytes([fine, (_typed("weights.bin", tarfile.GNUTYPE_SPARSE), b"")]),
        # A PAX 1.0 sparse map promising a billion regions and never ending: tarfile
        # would read it all into a list, then fail with a bare ValueError.
        "pax_sparse_map": tar_bytes([fine, (_pax_sparse("weights.bin"),
                                            b"1000000000\n" + b"0\n" * 50_000)]),
    }


def _typed(name: str, kind: bytes) -> tarfile.TarInfo:
    info = file_info(name)
    info.type = kind
    return info


def _pax_sparse(name: str) -> tarfile.TarInfo:
    info = file_info(name)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                        "GNU.sparse.name": name, "GNU.sparse.realsize": "1"}
    return info


@pytest.mark.parametrize("kind", sorted(_malicious("/x")))
def test_malicious_archive_is_refused_and_writes_nothing_outside(server, tmp_path, kind):
    cache = tmp_path / "cache"
    outside = tmp_path / "outside"
    outside.mkdir()
    url = server.add(f"/evil-{kind}/module.tar.gz", Route(body=_malicious(str(outside))[kind]))
    before = files_outside(tmp_path, cache)
    with pytest.raises(hub.ArchiveError):
        hub.resolve(url, cache_dir=cache)
    assert files_outside(tmp_path, cache) == before
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path.parent / "escaped.txt").exists()
    assert entries(cache) == [] and staging(cache) == []


def test_archive_larger_than_the_limit_is_refused(server, tmp_path, monkeypatch):
    body = tar_bytes([(file_info("weights.bin"), bytes(100_000))])
    url = server.add("/big/module.tar.gz", Route(body=body))
    monkeypatch.setenv("JAXHUB_MAX_ARCHIVE_BYTES", "50000")
    with pytest.raises(hub.UnsafeArchiveError, match="more than 50000 bytes"):
        hub.resolve(url, cache_dir=tmp_path / "cache")
    monkeypatch.setenv("JAXHUB_MAX_ARCHIVE_BYTES", "200000")
    path = hub.resolve(url, cache_dir=tmp_path / "cache")
    assert (path / "weights.bin").read_bytes() == bytes(100_000)


def test_uncompressed_tar_and_dot_prefixed_names_are_accepted(server, tmp_path):
    body = tar_bytes([(file_info("./saved_model.pb"), b"graph"),
                      (file_info("./variables/variables.index"), b"index")], gz=False)
    url = server.add("/plain/module.tar", Route(body=body))
    path = hub.resolve(url, cache_dir=tmp_path / "cache")
    assert tree_digest(path) == {
        "saved_model.pb": hashlib.sha256(b"graph").hexdigest(),
        "variables/variables.index": hashlib.sha256(b"index").hexdigest()}


def test_pack_is_reproducible_and_reports_its_sha256(tmp_path):
    source = make_module_dir(tmp_path / "src")
    first = hub.pack(source, tmp_path / "a.tar.gz")
    (source / "assets" / "vocab.txt").touch()  # a new mtime must not change the archive
    second = hub.pack(source, tmp_path / "b.tar.gz")
    assert first == second == hashlib.sha256((tmp_path / "a.tar.gz").read_bytes()).hexdigest()


def test_pack_puts_contents_at_the_archive_root(tmp_path):
    source = make_module_dir(tmp_path / "src")
    hub.pack(source, tmp_path / "m.tar.gz")
    with tarfile.open(tmp_path / "m.tar.gz") as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
    assert names == set(tree_digest(source))


def test_pack_refuses_symlinks(tmp_path):
    source = make_module_dir(tmp_path / "src")
    (source / "link").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="only regular files"):
        hub.pack(source, tmp_path / "m.tar.gz")
    assert list(tmp_path.glob("*.tar.gz*")) == [] and not any(tmp_path.glob(".m.tar.gz*"))


def test_pack_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        hub.pack(tmp_path / "f", tmp_path / "m.tar.gz")


def test_pack_skips_its_own_output_inside_the_directory(tmp_path):
    source = make_module_dir(tmp_path / "src")
    first = hub.pack(source, source / "m.tar.gz")
    assert hub.pack(source, source / "m.tar.gz") == first
    with tarfile.open(source / "m.tar.gz") as tar:
        assert "m.tar.gz" not in tar.getnames()
