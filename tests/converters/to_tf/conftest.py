"""Modules to export, and their SavedModels (exported once per test process)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub
from jaxhub_tf.to_tf import export_saved_model

DROPOUT_KEEP = 0.8
BN_MOMENTUM = 0.9
BN_EPS = 1e-3


def _bn_hidden(params, inputs):
    return (inputs["x"] * inputs["gain"]) @ params["dense"]["kernel"] + params["dense"]["bias"]


def _normalize(params, h, mean, var):
    bn = params["bn"]
    return jax.nn.relu((h - mean) * jax.lax.rsqrt(var + BN_EPS) * bn["scale"] + bn["offset"])


def bn_classifier(params, inputs):
    """Inference: dict inputs, batch norm with running statistics, two outputs."""
    h = _bn_hidden(params, inputs)
    h = _normalize(params, h, params["bn"]["mean"], params["bn"]["var"])
    return {"logits": h @ params["head"]["kernel"], "embedding": h}


def bn_classifier_train(params, inputs, rng):
    """Training: batch statistics (returned as state), then dropout."""
    h = _bn_hidden(params, inputs)
    mean, var = jnp.mean(h, 0), jnp.var(h, 0)
    out = _normalize(params, h, mean, var)
    keep = jax.random.bernoulli(rng, DROPOUT_KEEP, out.shape)
    out = jnp.where(keep, out / DROPOUT_KEEP, 0.0)
    bn = params["bn"]
    state = {"bn": {"mean": BN_MOMENTUM * bn["mean"] + (1 - BN_MOMENTUM) * mean,
                    "var": BN_MOMENTUM * bn["var"] + (1 - BN_MOMENTUM) * var}}
    return {"logits": out @ params["head"]["kernel"], "embedding": out}, state


def bn_params(seed: int = 1, d_in: int = 8, d_hidden: int = 16, n_classes: int = 3):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    return {
        "dense": {"kernel": jax.random.normal(k1, (d_in, d_hidden)) / np.sqrt(d_in),
                  "bias": jnp.zeros(d_hidden)},
        "bn": {"scale": jnp.ones(d_hidden), "offset": jnp.zeros(d_hidden),
               "mean": jax.random.normal(k3, (d_hidden,)) * 0.1,
               "var": jnp.ones(d_hidden) + jax.random.uniform(k4, (d_hidden,))},
        "head": {"kernel": jax.random.normal(k2, (d_hidden, n_classes)) / np.sqrt(d_hidden)},
    }


def make_bn_module():
    specs = {"x": jaxhub.TensorSpec([None, 8], "float32"),
             "gain": jaxhub.TensorSpec([None, 1], "float32")}
    return jaxhub.create_module(
        bn_params(), signatures={"default": (bn_classifier, specs)},
        variants={"train": bn_classifier_train},
        trainable=lambda path, _: path[:2] not in (("bn", "mean"), ("bn", "var")),
        regularizer=lambda p: 1e-2 * jnp.sum(p["head"]["kernel"] ** 2))


def bn_inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(batch, 8)).astype(np.float32),
            "gain": rng.uniform(0.5, 1.5, size=(batch, 1)).astype(np.float32)}


@pytest.fixture(scope="session")
def bn_module():
    return make_bn_module()


@pytest.fixture(scope="session")
def mlp_saved_model(tmp_path_factory, mlp_module):
    return export_saved_model(mlp_module, tmp_path_factory.mktemp("to_tf") / "mlp")


@pytest.fixture(scope="session")
def bn_saved_model(tmp_path_factory, bn_module):
    return export_saved_model(bn_module, tmp_path_factory.mktemp("to_tf") / "bn")


VOCAB = ["<pad>", "the", "cat", "sat", "on", "mat"]


def embed_tokens(params, tokens):
    """Mean of token embeddings over a sequence of any length, padding (id 0) masked."""
    vectors = params["embedding"][tokens]
    mask = (tokens > 0).astype(vectors.dtype)[..., None]
    total = jnp.sum(vectors * mask, axis=1)
    return {"embedding": total / jnp.maximum(jnp.sum(mask, axis=1), 1.0),
            "length": jnp.sum(tokens > 0, axis=1).astype(jnp.int32)}


def make_text_module(tmp_dir):
    vocab = tmp_dir / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    table = jax.random.normal(jax.random.key(5), (len(VOCAB), 4))
    return jaxhub.create_module(
        {"embedding": table},
        signatures={"embed": (embed_tokens, jaxhub.TensorSpec([None, None], "int32"))},
        attachments={"vocabulary_size": len(VOCAB)}, assets={"vocab.txt": vocab})


@pytest.fixture(scope="session")
def text_module(tmp_path_factory):
    return make_text_module(tmp_path_factory.mktemp("text_src"))


@pytest.fixture(scope="session")
def text_saved_model(tmp_path_factory, text_module):
    return export_saved_model(text_module, tmp_path_factory.mktemp("to_tf") / "text")
