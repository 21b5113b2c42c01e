"""``jaxhub.load`` of TF1 Hub modules: tarballs over HTTP on 127.0.0.1, through the cache."""

from __future__ import annotations

import numpy as np
import pytest

import jaxhub
from jaxhub._src import hub
from tests.hub.server import HubServer, Route

from ._session import FIXTURES


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("JAXHUB_CACHE_DIR", "JAXHUB_OFFLINE", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("JAXHUB_DISABLE_PROGRESS", "1")


@pytest.mark.parametrize("name,inputs,signature", [
    ("text", ["A long sentence.", "single-word", "http://example-url.com"], "default"),
    ("mlp", {"x": np.ones((2, 6), np.float32)}, "default"),
])
def test_tarball_over_http_loads_converts_once_and_matches_tf(
        tmp_path, tf_session, name, inputs, signature):
    digest = hub.pack(FIXTURES / name, tmp_path / f"{name}.tar.gz")
    cache = tmp_path / "cache"
    with HubServer() as server:
        url = server.add(f"/models/{name}/1.tar.gz",
                         Route(body=(tmp_path / f"{name}.tar.gz").read_bytes()))
        first = jaxhub.load(url, sha256=digest, cache_dir=cache)
        again = jaxhub.load(url, sha256=digest, cache_dir=cache)
        assert server.bodies[f"/models/{name}/1.tar.gz"] == 1  # the second came from cache
    assert first.path == again.path  # the converted module is cached too
    assert (first.path / "jaxhub_module.json").is_file()
    feed = inputs if isinstance(inputs, dict) else {"default": inputs}
    theirs = tf_session(name).run(signature, feed)
    ours = again(inputs, signature=signature, as_dict=True)
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-5, atol=1e-6)
    offline = jaxhub.load(url, cache_dir=cache, offline=True)
    np.testing.assert_array_equal(offline(inputs, signature=signature),
                                  again(inputs, signature=signature))
