"""Fine-tune a published module on a small dataset, with Optax, in a flax.nnx model.

1. Publish: pretrain a feature extractor (Linear, BatchNorm, Dropout) on task A and
   export it as a module with ``jaxhub.from_flax``.
2. Reuse: on task B, which has few labelled examples, put the module under a new head with
   ``jaxhub.nnx.HubLayer``; train once with the module frozen and once fine-tuned
   (``trainable=True``: its train variant, dropout and batch statistics included). A
   :class:`jaxhub.ModuleExporter` keeps the best fine-tuned module by validation
   loss.
3. Report test accuracies and save the loss curves as a PNG.

The data is synthetic and made here: inputs ``x ~ N(0, I)``; hidden features
``f(x) = tanh(W x)`` that both tasks share; labels ``argmax(A f(x))`` (task A, plenty of
examples) and ``argmax(B f(x))`` (task B, few). Pretraining on A learns ``f``; task B is
then easy for a model that reuses it.

Run: ``python examples/fine_tune.py [--out DIR] [--steps N]`` (needs ``matplotlib``:
``pip install jaxhub[examples]``).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

import jaxhub
from jaxhub import ModuleExporter
from jaxhub.nnx import HubLayer

D_IN, D_HIDDEN, D_FEATURES = 64, 16, 64
CLASSES_A, CLASSES_B = 32, 4
VAL_EVERY = 10


# -- data -------------------------------------------------------------------------------

def make_tasks(seed: int, n_a: int, n_b: int, n_test: int) -> dict[str, Any]:
    """Task A (n_a train, n_test validation) and task B (n_b train, n_b validation,
    n_test test)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(D_IN, D_HIDDEN)) / np.sqrt(D_IN)
    heads = {"a": rng.normal(size=(D_HIDDEN, CLASSES_A)),
             "b": rng.normal(size=(D_HIDDEN, CLASSES_B))}

    def sample(n: int, task: str):
        x = rng.normal(size=(n, D_IN)).astype(np.float32)
        return x, np.argmax(np.tanh(x @ w) @ heads[task], axis=1).astype(np.int32)

    return {"a": sample(n_a, "a"), "a_val": sample(n_test, "a"), "b_train": sample(n_b, "b"),
            "b_val": sample(n_b, "b"), "b_test": sample(n_test, "b")}


def batches(data: tuple[np.ndarray, np.ndarray], batch_size: int, seed: int):
    """Endless shuffled batches."""
    x, y = data
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(x))
        for start in range(0, len(x) - batch_size + 1, batch_size):
            rows = order[start:start + batch_size]
            yield x[rows], y[rows]


# -- models -----------------------------------------------------------------------------

class FeatureExtractor(nnx.Module):
    """What the publisher trains and shares."""

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(D_IN, D_FEATURES, rngs=rngs)
        self.norm = nnx.BatchNorm(D_FEATURES, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)

    def __call__(self, x):
        return self.drop(nnx.relu(self.norm(self.hidden(x))))


class Classifier(nnx.Module):
    """Features and a linear head: the features either a FeatureExtractor or a HubLayer."""

    def __init__(self, features: nnx.Module, classes: int, rngs: nnx.Rngs):
        self.features = features
        self.head = nnx.Linear(D_FEATURES, classes, rngs=rngs)

    def __call__(self, x):
        return self.head(self.features(x))


# -- training ---------------------------------------------------------------------------

@nnx.jit
def train_step(model: Classifier, optimizer: nnx.Optimizer, x, y):
    def loss_fn(model):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def evaluate(model: Classifier, x, y) -> tuple[jax.Array, jax.Array]:
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)


@dataclasses.dataclass
class History:
    """Losses seen while training: every step's, and the validation loss now and then."""

    train: list[float] = dataclasses.field(default_factory=list)
    val_steps: list[int] = dataclasses.field(default_factory=list)
    val: list[float] = dataclasses.field(default_factory=list)


def train(model: Classifier, data, val, steps: int, learning_rate: float, desc: str,
          batch_size: int, exporter: ModuleExporter | None = None) -> History:
    """Trains ``model`` with AdamW on its ``nnx.Param``s; exports with ``exporter``."""
    optimizer = nnx.Optimizer(model, optax.adamw(learning_rate, weight_decay=1e-4),
                              wrt=nnx.Param)
    history = History()

    def val_metrics() -> dict[str, float]:
        model.eval()
        return {"val_loss": float(evaluate(model, *val)[0])}

    progress = tqdm(zip(range(1, steps + 1), batches(data, batch_size, seed=steps)),
                    total=steps, desc=desc, unit="step",
                    disable=None)  # None: a bar only when stderr is a terminal
    for step, (x, y) in progress:
        model.train()
        history.train.append(float(train_step(model, optimizer, x, y)))
        if step % VAL_EVERY == 0:
            history.val_steps.append(step)
            history.val.append(val_metrics()["val_loss"])
            progress.set_postfix(loss=f"{np.mean(history.train[-VAL_EVERY:]):.3f}",
                                 val_loss=f"{history.val[-1]:.3f}")
        if exporter is not None:
            exporter.maybe_export(step, _module_params(model), metrics=val_metrics)
    if exporter is not None:
        exporter.finish(steps, _module_params(model), metrics=val_metrics)
    model.eval()
    return history


def _module_params(model: Classifier) -> dict[str, Any]:
    model.eval()  # module_params reads variables only; eval mode for the val loss after
    return model.features.module_params()


# -- the example ------------------------------------------------------------------------

def publish(tasks, directory: pathlib.Path, steps: int, batch_size: int) -> pathlib.Path:
    """Pretrains the feature extractor on task A and exports it as a module."""
    rngs = nnx.Rngs(0, dropout=1)
    model = Classifier(FeatureExtractor(rngs), CLASSES_A, rngs)
    train(model, tasks["a"], tasks["a_val"], steps, 3e-3, "pretrain on A", batch_size)
    print(f"task A validation accuracy after pretraining: "
          f"{float(evaluate(model, *tasks['a_val'])[1]):.3f}")
    module = jaxhub.from_flax(model.features, jaxhub.TensorSpec([None, D_IN], "float32"),
                              attachments={"task": "feature-extraction"})
    return module.export(directory / "features")


Result = tuple[History, float]  # the training history and the test accuracy


def reuse(module: jaxhub.Module, tasks, steps: int, batch_size: int,
          exporter: ModuleExporter) -> dict[str, Result]:
    """Keras's transfer-learning recipe on task B: a new head over the frozen module, then
    the module fine-tuned under that head at a lower learning rate."""
    rngs = nnx.Rngs(2, dropout=3)
    frozen = Classifier(HubLayer(module, rngs=rngs), CLASSES_B, rngs)
    results = {"frozen module": _train_and_test(frozen, tasks, steps, 3e-3, "head on B",
                                                batch_size)}
    tuned = Classifier(HubLayer(module, trainable=True, rngs=rngs), CLASSES_B, rngs)
    tuned.head = frozen.head
    results["then fine-tuned"] = _train_and_test(tuned, tasks, steps, 3e-4, "fine-tune on B",
                                                 batch_size, exporter)
    return results


def scratch(tasks, steps: int, batch_size: int) -> Result:
    """The same classifier trained on task B alone, for comparison."""
    rngs = nnx.Rngs(2, dropout=3)
    model = Classifier(FeatureExtractor(rngs), CLASSES_B, rngs)
    return _train_and_test(model, tasks, steps, 3e-3, "from scratch on B", batch_size)


def _train_and_test(model: Classifier, tasks, steps: int, learning_rate: float, desc: str,
                    batch_size: int, exporter: ModuleExporter | None = None) -> Result:
    history = train(model, tasks["b_train"], tasks["b_val"], steps, learning_rate, desc,
                    batch_size, exporter)
    return history, float(evaluate(model, *tasks["b_test"])[1])


def plot(histories: dict[str, History], path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib import pyplot as plt

    fig, (train_ax, val_ax) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for label, history in histories.items():
        smooth = np.convolve(history.train, np.ones(VAL_EVERY) / VAL_EVERY, mode="valid")
        train_ax.plot(np.arange(len(smooth)) + VAL_EVERY, smooth, label=label)
        val_ax.plot(history.val_steps, history.val, label=label)
    train_ax.set_title(f"training loss ({VAL_EVERY}-step mean)")
    val_ax.set_title("validation loss")
    for ax in (train_ax, val_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    train_ax.set_ylabel("cross-entropy")
    val_ax.legend()
    fig.suptitle("Task B: a new head over a pretrained jaxhub module")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="where the PNG and the exports go (default: a temp dir)")
    parser.add_argument("--steps", type=int, default=300, help="training steps on task B")
    parser.add_argument("--pretrain-steps", type=int, default=1500)
    parser.add_argument("--examples-b", type=int, default=128,
                        help="labelled task B examples")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="jaxhub-fine-tune-"))
    out.mkdir(parents=True, exist_ok=True)

    tasks = make_tasks(seed=0, n_a=20_000, n_b=args.examples_b, n_test=5_000)
    module = jaxhub.load(publish(tasks, out, args.pretrain_steps, args.batch_size))
    exporter = ModuleExporter(out / "exports", module, every_n_steps=50, keep=2,
                              best_metric="val_loss")
    results = {"from scratch": scratch(tasks, args.steps, args.batch_size)}
    results.update(reuse(module, tasks, args.steps, args.batch_size, exporter))
    plot({name: history for name, (history, _) in results.items()}, out / "loss_curve.png")

    print(f"\ntask B: {args.examples_b} labelled examples, {args.steps} steps, "
          f"test accuracy on {len(tasks['b_test'][0])}")
    print(f"{'model':<18}{'train loss':>11}{'best val loss':>15}{'test acc':>10}"
          f"{'vs scratch':>12}")
    scratch_accuracy = results["from scratch"][1]
    for name, (history, accuracy) in results.items():
        print(f"{name:<18}{np.mean(history.train[-VAL_EVERY:]):>11.3f}"
              f"{min(history.val):>15.3f}{accuracy:>10.3f}"
              f"{accuracy / scratch_accuracy:>11.2f}x")
    best = exporter.best
    print(f"\nbest export: step {best.step}, val_loss {best.metrics['val_loss']:.3f} at "
          f"{best.path}")
    print(f"loss curves: {out / 'loss_curve.png'}")
    return {name: accuracy for name, (_, accuracy) in results.items()}


if __name__ == "__main__":
    main()
