"""jaxhub end to end, on this machine only (no internet needed).

1. Publish: a Flax model becomes a module, exported and packed as a tarball.
2. Serve the tarball from a local HTTP server and ``jaxhub.load`` it by URL.
3. Apply it, fine-tune it with Optax, export the fine-tuned module.
4. Convert a Keras model saved as a TF SavedModel; compare with TensorFlow.
5. Export the module back to TensorFlow and load it with ``tensorflow_hub``.

Run: ``python examples/end_to_end.py`` (``scripts/demo`` sets everything up first).
"""

from __future__ import annotations

import functools
import http.server
import os
import pathlib
import tempfile
import threading

from jaxhub._src.cli import tf_logging

# TensorFlow's C++ log level must be set before JAX is imported too: both read it once.
tf_logging.set_environment()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import jaxhub  # noqa: E402
from jaxhub import hub  # noqa: E402


class Classifier(nnx.Module):
    """A small MLP classifier with batch norm and dropout."""

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(20, 64, rngs=rngs)
        self.norm = nnx.BatchNorm(64, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)
        self.out = nnx.Linear(64, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(nnx.relu(self.norm(self.hidden(x)))))


def step(title: str) -> None:
    print(f"\n== {title}")


def publish(workdir: pathlib.Path) -> tuple[pathlib.Path, str]:
    step("1. publish a Flax model as a module")
    module = jaxhub.from_flax(Classifier(nnx.Rngs(0, dropout=1)),
                              jaxhub.TensorSpec([None, 20], "float32"),
                              attachments={"task": "classification", "classes": 3})
    module_dir = module.export(workdir / "classifier")
    tarball = workdir / "site" / "classifier.tar.gz"
    tarball.parent.mkdir()
    sha256 = hub.pack(module_dir, tarball)
    print(module)
    print(f"packed {tarball.name}: {tarball.stat().st_size:,} bytes, sha256 {sha256}")
    return tarball, sha256


def serve(directory: pathlib.Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def load_and_fine_tune(url: str, sha256: str, workdir: pathlib.Path) -> jaxhub.Module:
    step(f"2. jaxhub.load({url!r})")
    module = jaxhub.load(url, sha256=sha256)
    print(f"loaded from cache: {module.path}")

    step("3. apply and fine-tune with Optax")
    x, labels = _toy_dataset(jax.random.key(0), 512)
    print("logits of 2 examples:\n", np.asarray(module(x[:2])).round(3))
    optimizer = optax.masked(optax.adam(1e-2), module.trainable_mask)
    params, opt_state = module.params, None
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, rng):
        def loss_fn(p):
            logits, state = module.apply(p, x, tags="train", rng=rng)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, state

        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = jaxhub.merge_params(optax.apply_updates(params, updates), state)
        return params, opt_state, loss

    accuracy = lambda p: float(jnp.mean(jnp.argmax(module.apply(p, x), -1) == labels))
    before = accuracy(params)
    for i in range(100):
        params, opt_state, loss = train_step(params, opt_state, jax.random.key(i))
    print(f"accuracy {before:.2f} -> {accuracy(params):.2f}, final loss {float(loss):.3f}")
    tuned = jaxhub.load(module.export(workdir / "classifier-tuned", params=params))
    np.testing.assert_allclose(tuned(x), module.apply(params, x), atol=1e-5)
    print(f"fine-tuned module exported to {tuned.path}")
    return tuned


def _toy_dataset(key, n):
    centers = jax.random.normal(key, (3, 20)) * 2.0
    labels = jnp.arange(n) % 3
    noise = jax.random.normal(jax.random.fold_in(key, 1), (n, 20))
    return centers[labels] + noise, labels


def convert_keras(workdir: pathlib.Path) -> None:
    step("4. convert a Keras model saved as a TF SavedModel")
    from jaxhub._src.cli import tf_logging
    tf_logging.import_tensorflow_quietly()  # no start-up log lines, as in `jaxhub convert`
    import tensorflow as tf
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None, classes=10,
                                           classifier_activation=None)
    _randomize_batch_norm(model)
    saved = workdir / "mobilenet_savedmodel"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    module = jaxhub.load(saved)
    print(module)
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    ours = np.asarray(module(images, signature="serve"))
    theirs = model(images, training=False).numpy()
    print("logits (TF):    ", theirs[0, :4].round(4))
    print("logits (jaxhub):", ours[0, :4].round(4))
    print(f"max |jaxhub - TF| / max |TF|: {np.abs(ours - theirs).max() / np.abs(theirs).max():.1e}")
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
    tf.keras.backend.clear_session()


def _randomize_batch_norm(model) -> None:
    """Fresh batch-norm layers are identities; trained-looking statistics make the
    comparison meaningful (untrained MobileNetV2 logits at 32x32 are ~1e-12)."""
    import keras
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            layer.set_weights([rng.uniform(0.5, 1.5, shapes[0]), rng.normal(0, 0.1, shapes[1]),
                               rng.normal(0, 0.1, shapes[2]), rng.uniform(0.5, 1.5, shapes[3])])


def export_to_tf(module: jaxhub.Module, workdir: pathlib.Path) -> None:
    step("5. export back to TensorFlow and load with tensorflow_hub")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow_hub as tf_hub
    from jaxhub_tf.to_tf import export_saved_model

    saved = export_saved_model(module, workdir / "classifier_tf")
    layer = tf_hub.KerasLayer(str(saved), trainable=True)
    x, _ = _toy_dataset(jax.random.key(0), 4)
    theirs, ours = layer(np.asarray(x)).numpy(), np.asarray(module(x))
    print(f"hub.KerasLayer outputs vs jaxhub: max diff {np.abs(theirs - ours).max():.2e}")
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)
    print(f"trainable variables in TF: {len(layer.trainable_variables)}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        os.environ.setdefault("JAXHUB_CACHE_DIR", str(workdir / "cache"))
        tarball, sha256 = publish(workdir)
        server = serve(tarball.parent)
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/{tarball.name}"
            tuned = load_and_fine_tune(url, sha256, workdir)
        finally:
            server.shutdown()
        convert_keras(workdir)
        export_to_tf(tuned, workdir)
    print("\nall steps done")


if __name__ == "__main__":
    main()
