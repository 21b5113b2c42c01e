"""Module directories, archives and tree comparisons shared by the hub tests."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import tarfile

import numpy as np

from jaxhub._src import hub


def make_module_dir(root: pathlib.Path, seed: int = 0, big: int = 200_000) -> pathlib.Path:
    """Writes a small module-like tree (json, nested binary files, an asset) under `root`."""
    rng = np.random.default_rng(seed)
    (root / "params" / "layer_0").mkdir(parents=True)
    (root / "assets").mkdir()
    (root / "jaxhub_module.json").write_text(f'{{"format_version": 1, "seed": {seed}}}')
    (root / "params" / "layer_0" / "kernel.bin").write_bytes(
        rng.standard_normal(big // 4).astype(np.float32).tobytes())
    (root / "params" / "layer_0" / "bias.bin").write_bytes(rng.bytes(64))
    (root / "assets" / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(100)))
    return root


def packed(module_dir: pathlib.Path, out: pathlib.Path) -> tuple[bytes, str]:
    """Packs with `jaxhub.hub.pack`; returns the archive bytes and the sha256 it printed."""
    digest = hub.pack(module_dir, out)
    return out.read_bytes(), digest


def tree_digest(root: pathlib.Path) -> dict[str, str]:
    """Maps each regular file under `root` (relative posix path) to its sha256."""
    result = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = pathlib.Path(dirpath, name)
            result[path.relative_to(root).as_posix()] = hashlib.sha256(
                path.read_bytes()).hexdigest()
    return result


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], gz: bool = True) -> bytes:
    """Builds an archive from explicit tar headers (for archives `pack` would never make)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif info.isreg() and info.size:
                # A header promising content that never follows; Python 3.13's addfile
                # refuses to write one, so the header goes in by hand.
                header = info.tobuf(tar.format, tar.encoding, tar.errors)
                tar.fileobj.write(header)
                tar.offset += len(header)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def file_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info


def link_info(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def files_outside(root: pathlib.Path, cache: pathlib.Path) -> set[str]:
    """Every path under `root` that is not inside `cache` (to spot escaped writes)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = pathlib.Path(dirpath, name)
            if cache not in path.parents and path != cache:
                found.add(path.relative_to(root).as_posix())
    return found


def entries(cache_root: pathlib.Path) -> list[str]:
    """Names of the cache's entry directories."""
    return _names(cache_root / "entries")


def staging(cache_root: pathlib.Path) -> list[str]:
    """Names of the cache's staging directories."""
    return _names(cache_root / "tmp")


def _names(path: pathlib.Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []
