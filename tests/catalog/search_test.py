"""search: finding modules in a repository's index.json, over HTTP and on disk."""

from __future__ import annotations

import json

import pytest

import jaxhub
from jaxhub import catalog, hub


def _names(hits) -> list[str]:
    return [hit.name for hit in hits]


def test_every_word_must_match(served):
    assert _names(catalog.search("perceptron", served.url())) == ["acme/mlp"]
    assert _names(catalog.search("IMAGE embeddings", served.url())) == ["vision/pool-embed"]
    assert _names(catalog.search("image perceptron", served.url())) == []


def test_empty_query_lists_every_module(served, built_repo):
    index = json.loads((built_repo / "index.json").read_text())
    assert _names(catalog.search("", served.url())) == [m["name"] for m in index["modules"]]


def test_name_matches_rank_first(served):
    # Both describe themselves with an "o" ("regression"), only one has it in its name.
    assert _names(catalog.search("o", served.url())) == ["vision/pool-embed", "acme/mlp"]
    assert _names(catalog.search("a", served.url())) == ["acme/mlp", "vision/pool-embed"]


def test_filters(served):
    assert _names(catalog.search("", served.url(), license="MIT")) == ["vision/pool-embed"]
    assert _names(catalog.search("", served.url(), task="regression")) == ["acme/mlp"]
    assert _names(catalog.search("", served.url(), signature="double")) == ["acme/mlp"]
    assert _names(catalog.search("", served.url(), signature="nope")) == []


def test_result_describes_the_latest_version_and_loads(served, built_repo, sources):
    (hit,) = catalog.search("perceptron", served.url())
    record = json.loads((built_repo / "acme/mlp/2.json").read_text())
    assert (hit.version, hit.versions, hit.sha256) == (2, (1, 2), record["sha256"])
    assert hit.handle == served.url("acme/mlp/2")
    assert hit.params == record["params"]["count"]
    module = jaxhub.load(hit.handle, sha256=hit.sha256)
    assert sorted(module.signatures) == list(hit.signatures)


def test_local_directory_and_file_url(built_repo):
    by_path = catalog.search("pooled", built_repo)
    by_url = catalog.search("pooled", built_repo.as_uri())
    assert by_path == by_url
    assert by_path[0].handle == f"{built_repo.as_uri()}/vision/pool-embed/1"


def test_not_a_repository(tmp_path, served):
    with pytest.raises(hub.HandleError, match="not a jaxhub repository"):
        catalog.search("x", tmp_path)
    with pytest.raises(hub.HandleError, match="HTTP 404"):
        catalog.search("x", served.url("acme/"))


def test_offline_refuses_the_network(served):
    with pytest.raises(hub.OfflineError):
        catalog.search("x", served.url(), offline=True)
