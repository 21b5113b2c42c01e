"""Fixtures for the catalog tests: published modules, a repository, a static web server.

The repository is built once per test process from real modules (exported with
`jaxhub.create_module`) and served by Python's own static file server, which knows
nothing about jaxhub: what works against it works from any web server or bucket.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import pathlib
import shutil
import threading
from typing import Any

import jax
import jax.numpy as jnp
import pytest

import jaxhub
from jaxhub import catalog
from tests.conftest import make_mlp_module, mlp, mlp_params

MLP_CARD = """# Tiny MLP

A two-layer perceptron that regresses ten values from fifty features.

## Usage

- Call `module(x)` with `x` of shape `[batch, 50]`.
- Fine-tune with **jax.grad**; see [the docs](https://example.org/docs).

<script>alert("card")</script>
"""


def image_embed(params, images):
    """Global average pooling, then a dense layer: an image feature vector."""
    pooled = jnp.mean(images, axis=(1, 2))
    return {"embedding": pooled @ params["kernel"], "norm": jnp.linalg.norm(pooled, axis=-1)}


def image_params(seed: int = 3):
    return {"kernel": jax.random.normal(jax.random.key(seed), (3, 8))}


@dataclasses.dataclass(frozen=True)
class Source:
    """A module published into the test repository, and what computes its outputs."""

    name: str
    version: int
    module_dir: pathlib.Path
    params: Any
    fn: Any


class StaticServer:
    """Python's static file server on 127.0.0.1, serving one directory."""

    def __init__(self, root: pathlib.Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{path}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """A private cache per test; no settings or proxies leak in from the machine."""
    for name in ("TFHUB_CACHE_DIR", "JAXHUB_OFFLINE", "JAXHUB_DOWNLOAD_TIMEOUT",
                 "JAXHUB_DOWNLOAD_RETRIES", "http_proxy", "https_proxy", "HTTP_PROXY",
                 "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JAXHUB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("JAXHUB_DISABLE_PROGRESS", "1")


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> dict[str, Source]:
    """Three modules, two of them versions of one model, exported to directories."""
    root = tmp_path_factory.mktemp("sources")
    card = root / "README.md"
    card.write_text(MLP_CARD)
    spec = jaxhub.TensorSpec([None, 32, 32, 3], "float32")
    made = {
        "mlp1": ("acme/mlp", 1, mlp_params(0), mlp,
                 make_mlp_module(mlp_params(0), assets={"README.md": card})),
        "mlp2": ("acme/mlp", 2, mlp_params(1), mlp,
                 make_mlp_module(mlp_params(1), assets={"README.md": card})),
        "image": ("vision/pool-embed", 1, image_params(), image_embed,
                  jaxhub.create_module(image_params(), signatures={"default": (image_embed,
                                                                                spec)},
                                       attachments={"task": "image-feature-vector",
                                                    "license": "MIT",
                                                    "description": "Pooled image "
                                                                   "embeddings."})),
    }
    return {key: Source(name, version, module.export(root / key), params, fn)
            for key, (name, version, params, fn, module) in made.items()}


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory, sources) -> pathlib.Path:
    """A repository with every source published and its catalog built. Do not modify."""
    repo = tmp_path_factory.mktemp("repo") / "repo"
    for key, source in sources.items():
        catalog.publish(source.module_dir, repo, source.name, source.version,
                        license="Apache-2.0" if key.startswith("mlp") else None)
    catalog.build_catalog(repo)
    return repo


@pytest.fixture
def repo(tmp_path, built_repo) -> pathlib.Path:
    """A private copy of the repository, for tests that change it."""
    return pathlib.Path(shutil.copytree(built_repo, tmp_path / "repo"))


@pytest.fixture
def served(repo):
    """The private repository copy, served over HTTP; yields the server."""
    server = StaticServer(repo)
    yield server
    server.close()
