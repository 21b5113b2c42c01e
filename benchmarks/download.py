"""Download-and-extract throughput and cache-hit latency: jaxhub vs tensorflow_hub.

Serves one ~100 MB module tarball over loopback (a stdlib HTTP server on 127.0.0.1) and
resolves it with `jaxhub.hub.resolve` and `tensorflow_hub.resolve` in the same run, each
into fresh cache directories, then times repeated resolves of the cached entry.

Usage:
    python benchmarks/download.py [--size-mb 100] [--repeats 3] [--hits 50]

Prints a markdown table; ratios above 1 mean jaxhub is faster.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from jaxhub._src import hub  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="cold downloads per client")
    parser.add_argument("--hits", type=int, default=50, help="cache hits timed per client")
    args = parser.parse_args()
    os.environ.setdefault("no_proxy", "127.0.0.1")
    os.environ["JAXHUB_DISABLE_PROGRESS"] = "1"
    import tensorflow_hub  # imported late: TensorFlow's start-up is not what we measure

    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        archive_dir = root / "www"
        archive_dir.mkdir()
        _make_module(root / "module", args.size_mb)
        hub.pack(root / "module", archive_dir / "module.tar.gz")
        size = (archive_dir / "module.tar.gz").stat().st_size
        with _serve(archive_dir) as base:
            url = f"{base}/module.tar.gz"
            clients = {
                "jaxhub": lambda cache: hub.resolve(url, cache_dir=cache, progress=False),
                "tensorflow_hub": functools.partial(_tfhub_resolve, tensorflow_hub, url),
            }
            results = {name: _measure(fn, root / name, args.repeats, args.hits)
                       for name, fn in clients.items()}
    _print_table(results, size)


def _make_module(path: pathlib.Path, size_mb: int) -> None:
    # Weights are float32 noise (incompressible, like trained weights), in a few files.
    rng = np.random.default_rng(0)
    (path / "params").mkdir(parents=True)
    per_file = size_mb * 2**20 // 4
    for i in range(4):
        data = rng.standard_normal(per_file // 4, dtype=np.float32)
        (path / "params" / f"shard_{i}.bin").write_bytes(data.tobytes())
    (path / "jaxhub_module.json").write_text('{"format_version": 1}')


@contextlib.contextmanager
def _serve(directory: pathlib.Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args) -> None:
        pass


def _tfhub_resolve(tensorflow_hub, url: str, cache: pathlib.Path) -> str:
    os.environ["TFHUB_CACHE_DIR"] = str(cache)
    return tensorflow_hub.resolve(url)


def _measure(resolve: Callable[[pathlib.Path], object], root: pathlib.Path, repeats: int,
             hits: int) -> dict[str, float]:
    cold = []
    for i in range(repeats):
        cache = root / f"cache{i}"
        cold.append(_timed(lambda: resolve(cache)))
    warm = [_timed(lambda: resolve(cache)) for _ in range(hits)]
    return {"cold": statistics.median(cold), "hit": statistics.median(warm)}


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _print_table(results: dict[str, dict[str, float]], size: int) -> None:
    ours, theirs = results["jaxhub"], results["tensorflow_hub"]
    mb = size / 2**20
    print(f"\nArchive: {mb:.1f} MiB over loopback; medians.\n")
    print("| metric | jaxhub | tensorflow_hub | ratio (tensorflow_hub / jaxhub time) |")
    print("|---|---|---|---|")
    print(f"| download + extract | {ours['cold']:.2f} s ({mb / ours['cold']:.0f} MiB/s) "
          f"| {theirs['cold']:.2f} s ({mb / theirs['cold']:.0f} MiB/s) "
          f"| {theirs['cold'] / ours['cold']:.2f}x |")
    print(f"| cache hit | {ours['hit'] * 1e3:.2f} ms | {theirs['hit'] * 1e3:.2f} ms "
          f"| {theirs['hit'] / ours['hit']:.2f}x |")


if __name__ == "__main__":
    main()
