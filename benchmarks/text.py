"""``python -m benchmarks.text``: BERT preprocessing, jaxhub's host stage against TF.

Builds BERT preprocessing SavedModels with tensorflow_text (``text.BertTokenizer`` with a
vocabulary asset, ``text.FastBertTokenizer`` with the vocabulary in the graph; both
uncased, packed to ``seq_length`` 128 with ``combine_segments`` and
``pad_model_inputs``), converts each with jaxhub, and times, in the same run and on the
same batches of generated English-like text:

* **jaxhub host stage**: ``module.preprocess(strings)``, the numpy program alone;
* **jaxhub call**: ``module(strings)``, the host stage then the (trivial) device function;
* **TF**: the SavedModel's signature, loaded with ``tf.saved_model.load``.

Prints a Markdown table of strings per second (median over repeats) and the ratio
jaxhub / TF (above 1: jaxhub is faster). Usage::

    python -m benchmarks.text [--tokenizers wordpiece,fast_wordpiece] [--batch 32]
                              [--repeats 5] [--budget 2] [--vocab 8000]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import tempfile
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SEQ_LENGTH = 128
TOKENIZERS = ("wordpiece", "fast_wordpiece")


def make_corpus(count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``count`` generated sentences and the vocabulary words they are made of.

    Words follow a Zipf-like law over generated syllable strings; some carry accents,
    capitals and punctuation, a few are CJK, so that every step of BERT's normalisation
    and splitting has work.
    """
    rng = np.random.default_rng(seed)
    syllables = ["ka", "to", "ri", "en", "sa", "mo", "lu", "pe", "ni", "da", "ch", "st",
                 "é", "ou", "ar", "in", "el", "on"]
    words = sorted({"".join(rng.choice(syllables, rng.integers(1, 5)))
                    for _ in range(20000)})
    weights = 1.0 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    sentences = []
    for _ in range(count):
        picked = rng.choice(words, size=rng.integers(8, 40), p=weights)
        tokens = [w.capitalize() if rng.random() < 0.1 else w for w in picked]
        if rng.random() < 0.2:
            tokens.insert(rng.integers(len(tokens)), "中文")
        sentences.append(" ".join(tokens) + rng.choice([".", "!", "?", ","]))
    return sentences, words


def make_vocab(words: list[str], size: int) -> list[str]:
    """A WordPiece vocabulary: special tokens, characters, the most frequent words and
    suffix pieces, ``size`` tokens at most."""
    chars = sorted({c for w in words for c in w.lower()} | set("abcdefghijklmnopqrstuvwxyz"
                                                               ".,!?中文"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars]
    pieces = sorted({w[i:] for w in words[:3000] for i in range(1, min(len(w), 4))})
    for token in [w.lower() for w in words] + [f"##{p}" for p in pieces]:
        if len(vocab) >= size:
            break
        if token not in vocab:
            vocab.append(token)
    return list(dict.fromkeys(vocab))


def save_preprocessor(path: pathlib.Path, vocab: list[str], tokenizer: str) -> None:
    """A one-signature BERT preprocessor: strings -> input_word_ids, input_mask,
    input_type_ids."""
    import tensorflow as tf
    import tensorflow_text as text

    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path.parent / f"{path.name}-vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")

    class Preprocessor(tf.Module):
        def __init__(self):
            super().__init__()
            if tokenizer == "fast_wordpiece":
                self.tokenizer = text.FastBertTokenizer(
                    vocab=vocab, lower_case_nfd_strip_accents=True, token_out_type=tf.int32)
            else:
                self.tokenizer = text.BertTokenizer(str(vocab_file), lower_case=True,
                                                    token_out_type=tf.int32)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, strings):
            tokens = self.tokenizer.tokenize(strings)
            if tokens.shape.rank == 3:
                tokens = tokens.merge_dims(-2, -1)
            tokens = text.RoundRobinTrimmer(SEQ_LENGTH - 2).trim([tokens])
            ids, types = text.combine_segments(tokens, vocab.index("[CLS]"),
                                               vocab.index("[SEP]"))
            word_ids, mask = text.pad_model_inputs(ids, SEQ_LENGTH)
            type_ids, _ = text.pad_model_inputs(types, SEQ_LENGTH)
            return {"input_word_ids": word_ids, "input_mask": mask,
                    "input_type_ids": type_ids}

    model = Preprocessor()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.__call__})


def strings_per_second(fn: Callable[[list[str]], object], batches: list[list[str]],
                       repeats: int, budget: float) -> float:
    """The median rate of ``fn`` over the batches: ``repeats`` passes at least, then more
    until ``budget`` seconds were spent."""
    fn(batches[0])  # warm-up (TF traces, caches fill)
    rates, spent = [], 0.0
    while len(rates) < repeats or spent < budget:
        start = time.perf_counter()
        for batch in batches:
            fn(batch)
        took = time.perf_counter() - start
        spent += took
        rates.append(sum(map(len, batches)) / took)
        if len(rates) >= 50:
            break
    return statistics.median(rates)


def measure(tokenizer: str, workdir: pathlib.Path, args: argparse.Namespace
            ) -> dict[str, float]:
    import tensorflow as tf

    import jaxhub
    from jaxhub_tf import convert_saved_model

    sentences, words = make_corpus(args.batch * args.batches)
    vocab = make_vocab(words, args.vocab)
    source = workdir / tokenizer
    save_preprocessor(source, vocab, tokenizer)
    convert_saved_model(source, workdir / f"{tokenizer}-jaxhub")
    module = jaxhub.load(str(workdir / f"{tokenizer}-jaxhub"))
    signature = tf.saved_model.load(str(source)).signatures["serving_default"]
    batches = [sentences[i:i + args.batch] for i in range(0, len(sentences), args.batch)]
    # The same ids, or the figures compare different work.
    ours = module(batches[0], as_dict=True)
    theirs = signature(strings=tf.constant(batches[0]))
    for key, value in theirs.items():
        np.testing.assert_array_equal(np.asarray(ours[key]), value.numpy(), err_msg=key)
    return {
        "jaxhub host stage": strings_per_second(module.preprocess, batches, args.repeats,
                                                args.budget),
        "jaxhub call": strings_per_second(
            lambda b: module(b, as_dict=True)["input_word_ids"].block_until_ready(),
            batches, args.repeats, args.budget),
        "TF + tensorflow_text": strings_per_second(
            lambda b: signature(strings=tf.constant(b))["input_word_ids"].numpy(), batches,
            args.repeats, args.budget),
        "tokens per string": float(np.mean(np.asarray(ours["input_mask"]).sum(-1))),
        "vocab": float(len(vocab)),
    }


def table(results: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    lines = [f"BERT preprocessing, batches of {args.batch} strings, seq_length {SEQ_LENGTH}: "
             "strings per second (median)", "",
             "| tokenizer | vocab | tokens/string | jaxhub host stage | jaxhub call | "
             "TF + tensorflow_text | host stage / TF |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        ratio = r["jaxhub host stage"] / r["TF + tensorflow_text"]
        lines.append(f"| {name} | {r['vocab']:.0f} | {r['tokens per string']:.1f} | "
                     f"{r['jaxhub host stage']:,.0f} | {r['jaxhub call']:,.0f} | "
                     f"{r['TF + tensorflow_text']:,.0f} | {ratio:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizers", default=",".join(TOKENIZERS),
                        help=f"comma-separated, from: {', '.join(TOKENIZERS)}")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8, help="distinct batches per pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=2.0,
                        help="seconds each figure is measured for at least")
    parser.add_argument("--vocab", type=int, default=8000, help="vocabulary size")
    parser.add_argument("--workdir", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    chosen = [t.strip() for t in args.tokenizers.split(",") if t.strip()]
    unknown = sorted(set(chosen) - set(TOKENIZERS))
    if unknown or not chosen:
        parser.error(f"unknown tokenizers {unknown}; known: {list(TOKENIZERS)}")
    with tempfile.TemporaryDirectory(prefix="bench-text-") as scratch:
        workdir = args.workdir or pathlib.Path(scratch)
        results = {name: measure(name, workdir, args) for name in chosen}
    print(table(results, args))


if __name__ == "__main__":
    main()
