"""TF1 Hub fixtures (committed under tests/fixtures/tf1/), converted once per session."""

from __future__ import annotations

import pytest

from jaxhub_tf.from_tf.tf1.hub_module import load_tf1_hub_module

from ._session import FIXTURES, TF1Session


@pytest.fixture(scope="session")
def converted():
    """``converted(name)``: the fixture module ``name`` as a jaxhub module (cached)."""
    modules = {}

    def get(name: str):
        if name not in modules:
            modules[name] = load_tf1_hub_module(FIXTURES / name)
        return modules[name]

    return get


@pytest.fixture(scope="session")
def tf_session():
    """``tf_session(name, tags)``: the fixture's MetaGraphDef in a v1 Session (cached)."""
    sessions = {}

    def get(name: str, tags=()):
        key = (name, tuple(sorted(tags)))
        if key not in sessions:
            sessions[key] = TF1Session(FIXTURES / name, tags)
        return sessions[key]

    yield get
    for session in sessions.values():
        session.close()
