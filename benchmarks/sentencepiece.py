"""SentencePiece preprocessing: jaxhub's host stage against TF + tensorflow_text.

Builds a SavedModel like TF Hub's SentencePiece preprocessors (tokenize, trim to
``seq_length - 2``, ``<s>`` ids ``</s>``, pad: ``input_word_ids``, ``input_mask``,
``input_type_ids``) around a SentencePiece model trained here on generated text, converts
it with jaxhub, and measures strings per second in one process, same batches, same
machine, the runtimes taking turns:

* ``TF + tensorflow_text``: the loaded SavedModel's signature (eager call of its graph);
* ``jaxhub host stage``: ``module.preprocess(strings)``, the numpy host stage alone;
* ``jaxhub module``: ``module(strings)``, host stage and device function.

Every output of jaxhub is checked equal to TF's before anything is timed.

Usage::

    python -m benchmarks.sentencepiece [--batch 256] [--seconds 5] [--vocab 2000]
    python -m benchmarks.sentencepiece --quick       # a smoke run: small sizes

Prints a markdown table; ``--write`` also writes it, with the machine and the versions,
to ``benchmarks/RESULTS-sentencepiece.md``.
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import platform
import random
import sys
import tempfile
import time
from importlib import metadata
from typing import Callable

import numpy as np

_RESULTS = pathlib.Path(__file__).resolve().parent / "RESULTS-sentencepiece.md"
_PACKAGES = ("jax", "numpy", "sentencepiece", "tensorflow", "tensorflow-text", "jaxhub")


def corpus(sentences: int, seed: int = 0) -> list[str]:
    """Generated sentences over a made-up vocabulary with accents, CJK and emoji."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzéèüöñçø"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9)))
             for _ in range(3000)]
    words += ["日本語", "テキスト", "中文", "한국어", "😀", "🚀", "Zürich", "naïve"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 60)))
            for _ in range(sentences)]


def train(texts: list[str], vocab: int) -> bytes:
    """A unigram SentencePiece model of ``vocab`` pieces, as bytes."""
    import sentencepiece
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab,
        model_type="unigram", minloglevel=2)
    return model.getvalue()


def build_saved_model(model: bytes, seq_length: int, path: pathlib.Path) -> None:
    """The preprocessing SavedModel (signature ``preprocess``)."""
    import tensorflow as tf
    import tensorflow_text as tft

    class Preprocess(tf.Module):
        def __init__(self):
            super().__init__()
            self.tok = tft.SentencepieceTokenizer(model=model)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def preprocess(self, text):
            ids = self.tok.tokenize(text)[:, :seq_length - 2]
            ids, types = tft.combine_segments(
                [ids], start_of_sequence_id=self.tok.string_to_id("<s>"),
                end_of_segment_id=self.tok.string_to_id("</s>"))
            word_ids, mask = tft.pad_model_inputs(ids, max_seq_length=seq_length)
            type_ids, _ = tft.pad_model_inputs(types, max_seq_length=seq_length)
            return {"input_word_ids": word_ids, "input_mask": mask,
                    "input_type_ids": type_ids}

    module = Preprocess()
    tf.saved_model.save(module, str(path), signatures={"preprocess": module.preprocess})


def throughput(fns: dict[str, Callable[[], object]], strings: int, seconds: float,
               rounds: int = 5) -> dict[str, float]:
    """Strings per second of each of ``fns`` (one call: one batch of ``strings``).

    The runtimes take turns, ``rounds`` times, each for about ``seconds / rounds`` a turn,
    so that a change in the machine's load touches all of them alike; the figure is the
    fastest call (the least disturbed by other work on a shared machine). One warm-up
    call each comes first.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            deadline = time.perf_counter() + seconds / rounds
            while time.perf_counter() < deadline or not times[name]:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: strings / min(t) for name, t in times.items()}


def measure(batch: int, seconds: float, vocab: int, seq_length: int,
            workdir: pathlib.Path) -> dict[str, float]:
    """Strings per second of TF, the host stage and the whole module, checked equal."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (its ops, for loading the SavedModel)
    from jaxhub_tf.from_tf.saved_model import load_saved_model

    texts = corpus(4 * batch + 2000)
    build_saved_model(train(texts[: max(2000, batch)], vocab), seq_length, workdir / "sm")
    batch_texts = np.asarray([t.encode() for t in texts[-batch:]], object)
    theirs = tf.saved_model.load(str(workdir / "sm")).signatures["preprocess"]
    module = load_saved_model(workdir / "sm")
    expected = {k: v.numpy() for k, v in theirs(text=tf.constant(batch_texts)).items()}
    ours = module(batch_texts, signature="preprocess", as_dict=True)
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(ours[key]), value, err_msg=key)
    tf_input = tf.constant(batch_texts)
    return throughput({
        "TF + tensorflow_text": lambda: theirs(text=tf_input),
        "jaxhub host stage": lambda: module.preprocess(batch_texts, signature="preprocess"),
        "jaxhub module": lambda: {k: np.asarray(v) for k, v in module(
            batch_texts, signature="preprocess", as_dict=True).items()},
    }, batch, seconds)


def table(figures: dict[str, float], batch: int, seq_length: int, vocab: int) -> str:
    tf_rate = figures["TF + tensorflow_text"]
    lines = [f"SentencePiece preprocessing (unigram, {vocab} pieces, seq_length "
             f"{seq_length}), batches of {batch} strings of 3 to 60 words:", "",
             "| runtime | strings/s | vs TF |", "| --- | ---: | ---: |"]
    for name, rate in figures.items():
        lines.append(f"| {name} | {rate:,.0f} | {rate / tf_rate:.2f}x |")
    return "\n".join(lines)


def _versions() -> str:
    found = []
    for name in _PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="small sizes, short timing")
    parser.add_argument("--write", action="store_true", help=f"write {_RESULTS.name}")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.seconds, args.vocab, args.seq_length = 8, 0.2, 300, 16
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sentencepiece-bench-") as scratch:
        figures = measure(args.batch, args.seconds, args.vocab, args.seq_length,
                          pathlib.Path(scratch))
    text = table(figures, args.batch, args.seq_length, args.vocab)
    print(text)
    if args.write:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python " \
                  f"{platform.python_version()}, load average {load_before:.1f} before " \
                  f"the run and {os.getloadavg()[0]:.1f} after"
        command = "python -m benchmarks.sentencepiece " + " ".join(argv or sys.argv[1:])
        _RESULTS.write_text(f"# SentencePiece preprocessing throughput\n\n{text}\n\n"
                            f"Machine: {machine}. Versions: {_versions()}.\n"
                            f"Command: `{command.strip()}`.\n")


if __name__ == "__main__":
    main()
