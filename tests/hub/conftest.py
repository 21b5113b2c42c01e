"""Fixtures for the hub tests: a clean environment, a live server, a private cache."""

from __future__ import annotations

import pathlib
import re

import pytest

from .helpers import make_module_dir, packed
from .server import HubServer, Route


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No settings leak in from the machine; loopback never goes through a proxy."""
    for name in ("JAXHUB_CACHE_DIR", "TFHUB_CACHE_DIR", "JAXHUB_OFFLINE",
                 "JAXHUB_DOWNLOAD_TIMEOUT", "JAXHUB_DOWNLOAD_RETRIES",
                 "JAXHUB_MAX_ARCHIVE_BYTES", "JAXHUB_DOWNLOAD_DEADLINE",
                 "JAXHUB_DOWNLOAD_MIN_RATE", "JAXHUB_MAX_EXPANSION_RATIO",
                 "JAXHUB_MAX_ARCHIVE_MEMBERS", "JAXHUB_MIN_FREE_BYTES", "JAXHUB_LOCK_TIMEOUT",
                 "JAXHUB_ALLOW_INSECURE_REDIRECTS", "JAXHUB_URL_SECRET_PARAMS", "SSL_CERT_FILE",
                 "http_proxy", "https_proxy", "HTTP_PROXY",
                 "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("JAXHUB_DISABLE_PROGRESS", "1")


@pytest.fixture(scope="module")
def server():
    with HubServer() as running:
        yield running


@pytest.fixture
def cache(tmp_path) -> pathlib.Path:
    return tmp_path / "cache"


@pytest.fixture
def module_dir(tmp_path) -> pathlib.Path:
    return make_module_dir(tmp_path / "module_src")


@pytest.fixture
def published(tmp_path, module_dir, server, request):
    """A packed module served at a path unique to the test; returns (url, sha256, dir)."""
    body, digest = packed(module_dir, tmp_path / "module.tar.gz")
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)
    url = server.add(f"/{name}/module.tar.gz", Route(body=body))
    return url, digest, module_dir
