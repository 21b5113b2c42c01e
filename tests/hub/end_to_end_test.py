"""A real module exported, packed, served over HTTP, loaded with `jaxhub.load` and applied."""

from __future__ import annotations

import numpy as np

import jaxhub
from jaxhub._src import hub
from tests.conftest import mlp, mlp_params

from .server import Route


def test_module_published_over_http_loads_and_applies(server, tmp_path, mlp_dir, x,
                                                      monkeypatch):
    digest = hub.pack(mlp_dir, tmp_path / "mlp.tar.gz")
    url = server.add("/e2e/mlp.tar.gz", Route(body=(tmp_path / "mlp.tar.gz").read_bytes()))
    monkeypatch.setenv("JAXHUB_CACHE_DIR", str(tmp_path / "cache"))
    module = jaxhub.load(url, sha256=digest)
    np.testing.assert_allclose(module(x), mlp(mlp_params(), x), atol=1e-5, rtol=1e-5)
    offline = jaxhub.load(url, offline=True)
    np.testing.assert_allclose(offline(x), module(x), atol=0)
    assert server.bodies["/e2e/mlp.tar.gz"] == 1
