"""Side by side with `tensorflow_hub.resolve` on the same real SavedModel tarballs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub

import jaxhub
from jaxhub._src import hub
from jaxhub._src.cli import main
from jaxhub._src.hub.cache import Cache

from .helpers import tree_digest
from .server import Route


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A TF2 SavedModel with a variable, a function and an asset, plus the model itself."""
    root = tmp_path_factory.mktemp("tf")
    vocab = root / "vocab.txt"
    vocab.write_text("a\nb\nc\n")

    class Scale(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal([3, 2], seed=[1, 2]))
            self.vocab = tf.saved_model.Asset(str(vocab))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            return tf.nn.relu(x @ self.w)

    model = Scale()
    tf.saved_model.save(model, str(root / "saved"))
    return root / "saved", model


@pytest.mark.parametrize("path", ["/tf/scale.tar.gz", "/tf/google/scale/1"],
                         ids=["tarball", "tf_hub_style"])
def test_same_tree_as_tensorflow_hub_and_tensorflow_loads_it(
        server, saved_model, tmp_path, monkeypatch, path):
    source, model = saved_model
    digest = hub.pack(source, tmp_path / "scale.tar.gz")
    route = Route(body=(tmp_path / "scale.tar.gz").read_bytes())
    if not path.endswith(".tar.gz"):
        route.require_query = "tf-hub-format=compressed"
    url = server.add(path, route)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub_cache"))
    theirs = tensorflow_hub.resolve(url)
    ours = hub.resolve(url, cache_dir=tmp_path / "cache", sha256=digest)
    assert tree_digest(ours) == tree_digest(theirs) == tree_digest(source)
    x = tf.random.stateless_normal([4, 3], seed=[3, 4])
    loaded = tf.saved_model.load(str(ours))
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_converted_saved_model_is_listed_and_removed_by_its_path(saved_model, tmp_path,
                                                                 monkeypatch, capsys):
    source, model = saved_model
    cache = tmp_path / "cache"
    module = jaxhub.load(source, cache_dir=cache)
    x = tf.random.stateless_normal([4, 3], seed=[3, 4])
    np.testing.assert_allclose(np.asarray(module(x.numpy())), model(x).numpy(), atol=1e-6)
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    listed = capsys.readouterr().out
    # Converted without gradients (jaxhub.load exports them on first use).
    assert (f"{source} (converted:TF2 SavedModel:jaxhub-{jaxhub.__version__}:"
            f"gradients-on-demand)") in listed
    monkeypatch.chdir(source.parent)
    assert main(["cache", "rm", source.name, "--cache-dir", str(cache)]) == 0
    assert f"removed {source} (converted:" in capsys.readouterr().out
    assert Cache(cache).listing() == []
