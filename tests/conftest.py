"""Shared fixtures: small modules built from plain JAX functions."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def repo_pythonpath() -> str:
    """``PYTHONPATH`` for a child process: this checkout first, then the caller's own."""
    return os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


@contextlib.contextmanager
def deep_dirs(root, levels: int):
    """``root/a/a/...`` ``levels`` deep; removed bottom-up on exit, since shutil.rmtree
    (and so pytest's own clean-up) recurses once per level before Python 3.12."""
    made = [root]
    for _ in range(levels):
        made.append(made[-1] / "a")
        made[-1].mkdir()
    try:
        yield made[-1]
    finally:
        for directory in reversed(made[1:]):
            for child in directory.iterdir():
                if not child.is_dir() or child.is_symlink():
                    child.unlink()
            directory.rmdir()


def as_read_before_split_vjps(path: pathlib.Path, copy_to: pathlib.Path) -> jaxhub.Module:
    """The module at ``path`` as a reader that predates split VJPs loads it: its functions
    without their halves, differentiated through their exported VJPs (copied to
    ``copy_to``, where the manifest loses its ``vjp`` entries)."""
    copy = shutil.copytree(path, copy_to)
    manifest = json.loads((copy / "jaxhub_module.json").read_text())
    for fn in manifest["functions"]:
        fn.pop("vjp", None)
    (copy / "jaxhub_module.json").write_text(json.dumps(manifest))
    return jaxhub.load(copy)


#: Warnings that mean a test passed over a bug. A test that expects one says so with
#: ``pytest.warns``.
WARNINGS_AS_ERRORS = (
    # The module still runs, but its gradient is gone (a converter that misplaces
    # gradients ends up here).
    "error:a function's gradient could not be traced:UserWarning",
)


#: Test files that take minutes in one worker, longest first. Under ``--dist loadfile
#: --no-loadscope-reorder`` (``scripts/test``) files are handed to workers in collection
#: order; started first, none of them leaves one worker running alone at the end.
LONGEST_FILES = (
    "tests/converters/from_tf/real_models_test.py",
    "tests/converters/from_tf/zoo_test.py",
    "tests/converters/from_tf/ops/static_test.py",
    "tests/converters/from_tf/saved_model_sizes_test.py",
    "tests/benchmarks_test.py",
    "tests/distributed/training_doc_test.py",
    "tests/distributed/multi_device_test.py",
    "tests/distributed/multi_process_test.py",
)


def pytest_configure(config):
    for entry in WARNINGS_AS_ERRORS:
        config.addinivalue_line("filterwarnings", entry)


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FILES.index(path) if path in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)  # stable: each file's tests keep their order


def mlp(params, x):
    """The publisher's function: a two-layer MLP."""
    h = jnp.tanh(x @ params["dense1"]["kernel"] + params["dense1"]["bias"])
    return h @ params["dense2"]["kernel"] + params["dense2"]["bias"]


def double(params, inputs):
    return {"doubled": 2.0 * inputs["a"], "total": jnp.sum(inputs["a"] * params["scale"], -1)}


def mlp_train(params, x, rng):
    """Train variant: dropout on the hidden layer and batch statistics as state."""
    h = jnp.tanh(x @ params["dense1"]["kernel"] + params["dense1"]["bias"])
    keep = jax.random.bernoulli(rng, 0.75, h.shape)
    h = jnp.where(keep, h / 0.75, 0.0)
    mean = 0.9 * params["stats"]["mean"] + 0.1 * jnp.mean(h, 0)
    return h @ params["dense2"]["kernel"] + params["dense2"]["bias"], {"stats": {"mean": mean}}


def l2(params):
    return 1e-3 * sum(jnp.sum(params[k]["kernel"] ** 2) for k in ("dense1", "dense2"))


def mlp_params(seed: int = 0, d_in: int = 50, d_hidden: int = 16, d_out: int = 10):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return {
        "dense1": {"kernel": jax.random.normal(k1, (d_in, d_hidden)) / np.sqrt(d_in),
                   "bias": jnp.zeros(d_hidden)},
        "dense2": {"kernel": jax.random.normal(k2, (d_hidden, d_out)) / np.sqrt(d_hidden),
                   "bias": jax.random.normal(k3, (d_out,)) * 0.1},
        "scale": jnp.linspace(0.5, 1.5, d_in),
        "stats": {"mean": jnp.zeros(d_hidden)},
    }


def not_stats(path, _):
    return path[0] != "stats"


def make_mlp_module(params=None, **kwargs):
    params = mlp_params() if params is None else params
    spec = jaxhub.TensorSpec([None, 50], "float32")
    return jaxhub.create_module(
        params,
        signatures={"default": (mlp, spec), "double": (double, {"a": spec})},
        variants={"train": mlp_train}, trainable=not_stats, regularizer=l2,
        attachments={"task": "regression"}, **kwargs)


@pytest.fixture(scope="session")
def mlp_module():
    return make_mlp_module()


@pytest.fixture(scope="session")
def mlp_dir(tmp_path_factory, mlp_module):
    return mlp_module.export(tmp_path_factory.mktemp("modules") / "mlp")


@pytest.fixture
def x():
    return jax.random.normal(jax.random.key(42), (4, 50))
