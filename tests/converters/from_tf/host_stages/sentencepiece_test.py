"""tensorflow_text's SentencePiece tokenizers in SavedModels: converted, run without
TensorFlow, and equal to TF (ids, pieces, offsets, packing, logits and gradients).

The SentencePiece models are trained here, on generated text, with the ``sentencepiece``
package (unigram and BPE, small vocabularies); every expected value comes from TF.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

tft = pytest.importorskip("tensorflow_text")

import jaxhub  # noqa: E402
import jaxhub.extend  # noqa: E402
from jaxhub_tf.from_tf.saved_model import load_saved_model  # noqa: E402
from jaxhub._src.host import HostStage, HostStageError  # noqa: E402
from tests.conftest import repo_pythonpath  # noqa: E402

SEQ_LENGTH = 16
_WORDS = ["alpha", "beta", "gamma", "delta", "héllo", "naïve", "café", "Zürich", "日本語",
          "テキスト", "中文", "😀", "🚀", "world", "token", "piece", "über", "façade"]
#: Empty strings, accents, CJK, emoji, unknown characters, non-UTF-8 bytes, long texts.
TEXTS = [b"", "alpha beta".encode(), "  Café naïve  Zürich ".encode(),
         "日本語のテキスト 中文".encode(), "🚀 world 😀😀 token".encode(),
         "qqq xyz Ω ∑ unknown".encode(), b"ab\xffcd \xc3 alpha",
         " ".join(_WORDS * 3).encode(), "gamma\tdelta\npiece".encode()]
#: Batch 1 and odd batches.
BATCHES = [TEXTS[1:2], TEXTS[:3], TEXTS[2:7], TEXTS]


def _train(model_type: str, vocab_size: int) -> bytes:
    rng = random.Random(0)
    corpus = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))
              for _ in range(400)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, minloglevel=2, num_threads=1)
    return model.getvalue()


def _after(value, call):
    """``call()`` made to run after ``value`` (a tensor or a ragged tensor) is computed.

    tensorflow_text's tokenizers over the same model bytes share one TF resource, which
    keeps the options (BOS/EOS, reverse) of the call that set them last: two tokenizers
    with different options running at once in one graph can give each other's results in
    TF. Running them one after another keeps TF's reference deterministic.
    """
    with tf.control_dependencies([getattr(value, "flat_values", value)]):
        return call()


class _SentencePieceModel(tf.Module):
    """Signatures over one tokenizer: ids, offsets, round trips, packing, a classifier."""

    def __init__(self, model: bytes):
        super().__init__()
        self.tok = tft.SentencepieceTokenizer(model=model)
        self.tok_bos_eos = tft.SentencepieceTokenizer(model=model, add_bos=True,
                                                      add_eos=True)
        self.tok_reversed = tft.SentencepieceTokenizer(model=model, add_eos=True,
                                                       reverse=True)
        self.tok_pieces = tft.SentencepieceTokenizer(model=model, out_type=tf.string)
        vocab = int(self.tok.vocab_size())
        init = tf.random.stateless_normal
        self.emb = tf.Variable(init([vocab, 8], seed=[1, 2]), name="emb")
        self.w = tf.Variable(init([8, 3], seed=[3, 4]), name="dense_w")
        self.b = tf.Variable(init([3], seed=[5, 6]), name="dense_b")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(self, text):
        ids = self.tok.tokenize(text)
        bos_eos = _after(ids, lambda: self.tok_bos_eos.tokenize(text))
        reversed_ = _after(bos_eos, lambda: self.tok_reversed.tokenize(text))
        return {"ids": ids.to_tensor(),
                "ids_bos_eos": bos_eos.to_tensor(default_value=-1),
                "ids_reversed": reversed_.to_tensor(),
                "vocab_size": tf.fill([tf.size(text)], self.tok.vocab_size())}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize_fixed(self, text):
        return {"ids": self.tok.tokenize(text).to_tensor(shape=[None, SEQ_LENGTH])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def offsets(self, text):
        ids, starts, ends = self.tok_bos_eos.tokenize_with_offsets(text)
        return {"ids": ids.to_tensor(default_value=-1),
                "starts": starts.to_tensor(default_value=-1),
                "ends": ends.to_tensor(default_value=-1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def round_trip(self, text):
        """Strings stay on the host, so they are compared through exact hashes."""
        ids = self.tok.tokenize(text)
        pieces = _after(ids, lambda: self.tok_pieces.tokenize(text))
        back = _after(pieces, lambda: self.tok.detokenize(ids))
        back_from_pieces = _after(back, lambda: self.tok_reversed.detokenize(pieces))
        as_strings = self.tok.id_to_string(ids)
        return {"detokenized": tf.strings.to_hash_bucket_fast(back, 2**62),
                "from_pieces": tf.strings.to_hash_bucket_fast(back_from_pieces, 2**62),
                "pieces": tf.strings.to_hash_bucket_fast(pieces, 2**62).to_tensor(),
                "id_to_string": tf.strings.to_hash_bucket_fast(as_strings, 2**62)
                .to_tensor(),
                "string_to_id": self.tok.string_to_id(as_strings).to_tensor(default_value=-1)}

    def _pack(self, text):
        """The encoder inputs of TF Hub's preprocessors: <s> ids </s>, padded."""
        ids = self.tok.tokenize(text)[:, :SEQ_LENGTH - 2]
        bos, eos = self.tok.string_to_id("<s>"), self.tok.string_to_id("</s>")
        ids, types = tft.combine_segments([ids], start_of_sequence_id=bos,
                                          end_of_segment_id=eos)
        word_ids, mask = tft.pad_model_inputs(ids, max_seq_length=SEQ_LENGTH)
        type_ids, _ = tft.pad_model_inputs(types, max_seq_length=SEQ_LENGTH)
        return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def preprocess(self, text):
        return self._pack(text)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)] * 2)
    def preprocess_pair(self, first, second):
        """Two segments, as ALBERT-style preprocessors pack them: case-folded, trimmed
        round-robin, ``<s> a </s> b </s>``, padded."""
        segments = [self.tok.tokenize(tft.case_fold_utf8(t)) for t in (first, second)]
        trimmed = tft.RoundRobinTrimmer(max_seq_length=SEQ_LENGTH - 3).trim(segments)
        ids, types = tft.combine_segments(
            trimmed, start_of_sequence_id=self.tok.string_to_id("<s>"),
            end_of_segment_id=self.tok.string_to_id("</s>"))
        word_ids, mask = tft.pad_model_inputs(ids, max_seq_length=SEQ_LENGTH)
        type_ids, _ = tft.pad_model_inputs(types, max_seq_length=SEQ_LENGTH)
        return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify(self, text):
        inputs = self._pack(text)
        mask = tf.cast(inputs["input_mask"], tf.float32)[:, :, None]
        embedded = tf.gather(self.emb, inputs["input_word_ids"]) * mask
        pooled = tf.reduce_sum(embedded, axis=1) / tf.reduce_sum(mask, axis=1)
        return {"logits": tf.matmul(tf.tanh(pooled), self.w) + self.b}


_SIGNATURES = ("tokenize", "tokenize_fixed", "offsets", "round_trip", "preprocess",
               "preprocess_pair", "classify")


@pytest.fixture(scope="module", params=[("unigram", 48), ("bpe", 60)],
                ids=["unigram", "bpe"])
def saved(request, tmp_path_factory):
    model_type, vocab_size = request.param
    root = tmp_path_factory.mktemp(f"sentencepiece_{model_type}")
    model = _SentencePieceModel(_train(model_type, vocab_size))
    tf.saved_model.save(model, str(root / "sm"),
                        signatures={name: getattr(model, name) for name in _SIGNATURES})
    converted = load_saved_model(root / "sm")
    return root, model, converted


def _tf_outputs(model, signature: str, texts) -> dict[str, np.ndarray]:
    out = getattr(model, signature)(tf.constant(texts, tf.string))
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize("signature", ["tokenize", "tokenize_fixed", "offsets",
                                       "round_trip", "preprocess"])
def test_integer_outputs_equal_tf(saved, signature):
    _, model, converted = saved
    for texts in BATCHES:
        theirs = _tf_outputs(model, signature, texts)
        ours = converted(texts, signature=signature, as_dict=True)
        assert sorted(ours) == sorted(theirs)
        for key, value in theirs.items():
            np.testing.assert_array_equal(np.asarray(ours[key]), value.astype(np.int32)
                                          if value.dtype == np.int64 else value,
                                          err_msg=f"{signature}/{key}, {len(texts)} texts")


def _is_utf8(text: bytes) -> bool:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_two_segment_packing_equals_tf(saved):
    _, model, converted = saved
    for batch in BATCHES:
        # case_fold_utf8 takes UTF-8 only (the host stage says so; see the text ops' tests)
        texts = [t for t in batch if _is_utf8(t)]
        seconds = list(reversed(texts))
        theirs = model.preprocess_pair(tf.constant(texts), tf.constant(seconds))
        ours = converted({"first": texts, "second": seconds}, signature="preprocess_pair",
                         as_dict=True)
        for key, value in theirs.items():
            np.testing.assert_array_equal(np.asarray(ours[key]), value.numpy(),
                                          err_msg=f"{key}, {len(texts)} texts")


def test_offsets_cover_the_input_bytes(saved):
    """A sanity check on TF's own numbers: offsets are byte positions in the input."""
    _, model, _ = saved
    theirs = _tf_outputs(model, "offsets", TEXTS)
    for text, starts, ends in zip(TEXTS, theirs["starts"], theirs["ends"]):
        assert ends.max() <= len(text)  # trailing spaces are normalised away
        assert np.all(starts[starts >= 0] <= ends[starts >= 0])


def test_strings_to_logits_and_gradients_match_tf(saved):
    _, model, converted = saved
    texts = TEXTS[:5]
    names = converted.attachments["tf_variable_names"]
    variables = {v.name.split(":")[0]: v for v in (model.emb, model.w, model.b)}
    logits = converted(texts, signature="classify")
    theirs = _tf_outputs(model, "classify", texts)["logits"]
    np.testing.assert_allclose(np.asarray(logits), theirs, rtol=2e-4, atol=2e-4)

    cotangent = np.random.default_rng(0).standard_normal(theirs.shape).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model.classify(tf.constant(texts))["logits"] * cotangent)
    tf_grads = dict(zip(variables, tape.gradient(loss, list(variables.values()))))
    grads = jax.grad(lambda p: jnp.sum(converted.apply(p, texts, signature="classify")
                                       * cotangent))(converted.params)
    flat = dict(jaxhub.extend.flatten(grads))
    assert len(names) == 3
    for path, tf_name in names.items():
        ours = np.asarray(flat[tuple(path.split("/"))])
        expected = tf.convert_to_tensor(tf_grads[tf_name]).numpy()
        error = np.linalg.norm(ours - expected) / max(np.linalg.norm(expected), 1e-12)
        assert error < 5e-2, f"{tf_name}: relative L2 error {error:.3g}"


def test_preprocess_then_encoder_as_two_modules(saved):
    """TF Hub's pattern: ``encoder(preprocess(strings))``; the encoder here is the
    classifier's own device function, fed the preprocessor's outputs."""
    _, model, converted = saved
    packed = converted(TEXTS[:3], signature="preprocess", as_dict=True)
    theirs = _tf_outputs(model, "preprocess", TEXTS[:3])
    for key in ("input_word_ids", "input_mask", "input_type_ids"):
        np.testing.assert_array_equal(np.asarray(packed[key]), theirs[key])
    assert np.asarray(packed["input_word_ids"]).shape == (3, SEQ_LENGTH)


_NO_TF = textwrap.dedent("""
    import importlib.abc, json, sys

    BLOCKED = ("tensorflow", "tensorflow_text", "tf_keras", "tensorflow_hub")

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked")

    sys.meta_path.insert(0, Blocked())
    for name in BLOCKED:
        sys.modules[name] = None
    import numpy as np
    import jaxhub
    from jaxhub_tf import formats

    formats.register()
    path, cache, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    module = jaxhub.load(path, cache_dir=cache)
    texts = [t.encode("latin-1") for t in texts]
    results = {}
    for signature in ("tokenize", "offsets", "preprocess", "classify"):
        outs = module(texts, signature=signature, as_dict=True)
        results[signature] = {k: np.asarray(v).tolist() for k, v in outs.items()}
    leaked = sorted(m for m, v in sys.modules.items() if m.split(".")[0] in BLOCKED
                    and v is not None)
    print(json.dumps({"results": results, "leaked": leaked}))
""")


def test_converts_and_runs_without_tensorflow(saved, tmp_path):
    root, model, _ = saved
    texts = TEXTS[:6]
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TF, str(root / "sm"), str(tmp_path / "cache"),
         json.dumps([t.decode("latin-1") for t in texts])],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": repo_pythonpath(), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["leaked"] == []
    for signature, outs in report["results"].items():
        theirs = _tf_outputs(model, signature, texts)
        for key, value in theirs.items():
            if value.dtype.kind == "f":
                np.testing.assert_allclose(outs[key], value, rtol=2e-4, atol=2e-4)
            else:
                np.testing.assert_array_equal(outs[key], value, err_msg=f"{signature}/{key}")


class _NBest(tf.Module):
    """The n best segmentations (deterministic), with and without offsets and options."""

    def __init__(self, model: bytes):
        super().__init__()
        self.tok = tft.SentencepieceTokenizer(model=model, nbest_size=3, return_nbest=True)
        self.tok_options = tft.SentencepieceTokenizer(
            model=model, nbest_size=3, return_nbest=True, add_bos=True, reverse=True,
            out_type=tf.string)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text):
        ids, starts, ends = self.tok.tokenize_with_offsets(text)
        pieces = _after(ids, lambda: self.tok_options.tokenize(text))
        return {"ids": ids.to_tensor(default_value=-1), "rows": ids.row_lengths(),
                "starts": starts.to_tensor(default_value=-1),
                "ends": ends.to_tensor(default_value=-1),
                "pieces": tf.strings.to_hash_bucket_fast(pieces, 2**62).to_tensor()}


def test_nbest_segmentations_equal_tf(tmp_path):
    model = _NBest(_train("unigram", 48))
    tf.saved_model.save(model, str(tmp_path / "sm"),
                        signatures={"serving_default": model.__call__})
    converted = load_saved_model(tmp_path / "sm")
    for texts in BATCHES:
        theirs = {k: v.numpy() for k, v in model(tf.constant(texts)).items()}
        ours = converted(texts, signature="serving_default", as_dict=True)
        assert len(theirs["rows"]) > len(texts)  # several segmentations of a text
        for key, value in theirs.items():
            np.testing.assert_array_equal(np.asarray(ours[key]), value.astype(np.int32)
                                          if value.dtype == np.int64 else value,
                                          err_msg=f"{key}, {len(texts)} texts")


# -- bad input -------------------------------------------------------------------------------


def test_a_model_that_does_not_parse_is_named(saved, tmp_path):
    root, _, _ = saved
    proto = saved_model_pb2.SavedModel.FromString((root / "sm" / "saved_model.pb")
                                                  .read_bytes())
    damaged = 0
    for function in proto.meta_graphs[0].graph_def.library.function:
        for node in function.node_def:
            if node.op == "SentencepieceOp":
                node.attr["model"].s = b"\x08not a model proto"
                damaged += 1
    assert damaged
    broken = tmp_path / "broken"
    for item in (root / "sm").iterdir():
        target = broken / item.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.is_dir():
            target.symlink_to(item, target_is_directory=True)
    (broken / "saved_model.pb").write_bytes(proto.SerializeToString())
    with pytest.raises(HostStageError, match=r"SentencepieceOp.*asset "
                                             r"'sentencepiece/[0-9a-f]+\.model'.*not a "
                                             r"SentencePiece model"):
        load_saved_model(broken)


def _stage(model: bytes, texts_op: str = "SentencepieceTokenizeOp", nbest: int = 0):
    program = {
        "inputs": {"text": {"dtype": "string", "shape": [None]}},
        "nodes": [
            {"name": "file", "op": "Asset", "attrs": {"name": "spm.model"}},
            {"name": "model", "op": "SentencepieceOp", "inputs": [["file", 0]]},
            {"name": "nbest", "op": "Const",
             "attrs": {"value": {"dtype": "int32", "shape": [], "values": [nbest]}}},
            {"name": "alpha", "op": "Const",
             "attrs": {"value": {"dtype": "float32", "shape": [], "values": [0.5]}}},
            {"name": "no", "op": "Const",
             "attrs": {"value": {"dtype": "bool", "shape": [], "values": [False]}}},
            {"name": "tok", "op": texts_op,
             "inputs": [["model", 0], ["text", 0], ["nbest", 0], ["alpha", 0], ["no", 0],
                        ["no", 0], ["no", 0]]},
        ],
        "outputs": {"ids": ["tok", 0], "splits": ["tok", 1]},
    }
    return HostStage(program, {"spm.model": model}, signature="tokenize")


def test_a_damaged_model_asset_fails_the_load_naming_it():
    with pytest.raises(HostStageError, match=r"host op 'model' \(SentencepieceOp\).*asset "
                                             r"'spm.model' \(18 bytes\) is not a "
                                             r"SentencePiece model"):
        _stage(b"\x08not a model proto")


def test_a_model_from_anything_but_a_module_asset_is_refused():
    """A hostile program cannot make the op read a file by path: its model input must
    be an Asset node, checked when the stage is built."""
    program = {
        "inputs": {"text": {"dtype": "string", "shape": [None]}},
        "nodes": [{"name": "path", "op": "Const",
                   "attrs": {"value": {"dtype": "string", "shape": [],
                                       "values": ["/etc/passwd"]}}},
                  {"name": "model", "op": "SentencepieceOp", "inputs": [["path", 0]]},
                  {"name": "size", "op": "SentencepieceVocabSizeOp",
                   "inputs": [["model", 0]]}],
        "outputs": {"size": ["size", 0]},
    }
    with pytest.raises(HostStageError, match=r"'model' \(SentencepieceOp\) reads a file "
                                             r"named by 'path', not by an Asset node"):
        HostStage(program, {})


def test_sampling_is_refused_with_the_fix():
    stage = _stage(_train("unigram", 48), nbest=4)
    with pytest.raises(HostStageError, match=r"nbest_size=4 .* random.*nbest_size=0"):
        stage.run({"text": np.asarray([b"alpha"], object)})


def test_host_stage_ops_match_the_sentencepiece_package_directly():
    """The stage's ids are SentencePiece's own (a check without TF, on a raw program)."""
    model = _train("bpe", 60)
    feeds = _stage(model).run({"text": np.asarray(TEXTS, object)})
    processor = sentencepiece.SentencePieceProcessor()
    processor.LoadFromSerializedProto(model)
    expected = [processor.encode(t) for t in TEXTS]
    np.testing.assert_array_equal(feeds["ids"], [i for row in expected for i in row])
    np.testing.assert_array_equal(feeds["splits"],
                                  np.cumsum([0] + [len(r) for r in expected]))
