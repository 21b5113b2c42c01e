"""BERT preprocessing SavedModels built with tensorflow_text: converted, they give TF's ids.

The preprocessors are those of ``preprocessors.py`` (WordPiece with a vocabulary asset,
and Fast WordPiece with the vocabulary compiled into the graph), each with the
signatures TF Hub's ``bert_en_uncased_preprocess`` offers: the one-shot default,
``tokenize`` and ``bert_pack_inputs`` (two segments, round-robin trimmed to 128).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as text

import jaxhub
from jaxhub_tf import convert_saved_model
from jaxhub_tf.from_tf.host_stages.split import HostStageUnsupportedError
from tests.conftest import repo_pythonpath
from tests.converters.from_tf.text import preprocessors
from tests.converters.from_tf.text.preprocessors import SECOND, SEQ_LENGTH, TEXTS

#: Batches: all the texts (an odd count), one long text alone, three.
BATCHES = {"all": list(range(len(TEXTS))), "one": [5], "three": [1, 3, 4]}


@pytest.fixture(scope="module", params=["wordpiece", "fast_wordpiece"])
def preprocessor(request, tmp_path_factory):
    """``(SavedModel path, TF's loaded model, the converted jaxhub module)``."""
    root = tmp_path_factory.mktemp(request.param)
    path = preprocessors.save_preprocessor(root, fast=request.param == "fast_wordpiece")
    convert_saved_model(path, root / "converted")
    return path, tf.saved_model.load(str(path)), jaxhub.load(str(root / "converted"))


def tf_outputs(model, signature: str, **inputs) -> dict[str, np.ndarray]:
    fn = model.signatures[signature]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()})
            .items()}


def assert_equal_outputs(ours, theirs):
    assert sorted(ours) == sorted(theirs)
    for key, expected in theirs.items():
        got = np.asarray(ours[key])
        assert got.shape == expected.shape, key
        np.testing.assert_array_equal(got, expected, err_msg=key)


@pytest.mark.parametrize("batch", BATCHES)
def test_one_shot_preprocessing_gives_tf_ids_mask_and_types(preprocessor, batch):
    _, model, module = preprocessor
    strings = [TEXTS[i] for i in BATCHES[batch]]
    theirs = tf_outputs(model, "serving_default", strings=strings)
    assert theirs["input_word_ids"].shape == (len(strings), SEQ_LENGTH)
    assert_equal_outputs(module(strings, as_dict=True), theirs)
    assert_equal_outputs(module(strings, signature="serving_default", as_dict=True), theirs)


@pytest.mark.parametrize("batch", BATCHES)
def test_tokenize_gives_tf_token_ids_and_row_splits(preprocessor, batch):
    _, model, module = preprocessor
    strings = [TEXTS[i] for i in BATCHES[batch]]
    theirs = tf_outputs(model, "tokenize", strings=strings)
    ours = module(strings, signature="tokenize", as_dict=True)
    np.testing.assert_array_equal(ours["token_ids"], theirs["token_ids"])
    # Host results reach the device as int32 (JAX's default integer width).
    np.testing.assert_array_equal(ours["row_splits"], theirs["row_splits"])


@pytest.mark.parametrize("batch", BATCHES)
def test_two_segment_packing_trims_round_robin_as_tf(preprocessor, batch):
    _, model, module = preprocessor
    first = [TEXTS[i] for i in BATCHES[batch]]
    second = [SECOND[i] for i in BATCHES[batch]]
    theirs = tf_outputs(model, "bert_pack_inputs", first=first, second=second)
    assert set(theirs["input_type_ids"].reshape(-1)) <= {0, 1}
    ours = module({"first": first, "second": second}, signature="bert_pack_inputs",
                  as_dict=True)
    assert_equal_outputs(ours, theirs)


def test_the_signatures_have_fixed_length_outputs(preprocessor):
    module = preprocessor[2]
    outputs = module.signatures["bert_pack_inputs"].outputs
    assert {k: (tuple(s.shape), s.dtype) for k, s in outputs.items()} == {
        k: (("batch", SEQ_LENGTH), "int32")
        for k in ("input_word_ids", "input_mask", "input_type_ids")}


#: Run in a child process where TensorFlow cannot be imported: converts the SavedModel,
#: loads the result and prints the one-shot outputs as JSON.
_WITHOUT_TF = """
import json, sys
for name in ("tensorflow", "tensorflow_text", "tensorflow_hub", "tf_keras"):
    sys.modules[name] = None  # `import tensorflow` now raises ImportError
import jaxhub
from jaxhub_tf import convert_saved_model
convert_saved_model(sys.argv[1], sys.argv[2])
module = jaxhub.load(sys.argv[2])
outputs = module(json.loads(sys.argv[3]), as_dict=True)
assert not any(m.startswith("tensorflow") for m in sys.modules if sys.modules[m])
print(json.dumps({k: v.tolist() for k, v in outputs.items()}))
"""


def test_a_preprocessor_converts_and_runs_where_tensorflow_cannot_be_imported(
        preprocessor, tmp_path):
    path, model, _ = preprocessor
    env = {**os.environ, "PYTHONPATH": repo_pythonpath(), "JAXHUB_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TF, str(path), str(tmp_path / "out"),
         json.dumps(TEXTS)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ours = {k: np.asarray(v, np.int32) for k, v in json.loads(done.stdout).items()}
    assert_equal_outputs(ours, tf_outputs(model, "serving_default", strings=TEXTS))


def test_bytes_that_are_not_utf8_are_refused_naming_the_op(preprocessor):
    module = preprocessor[2]
    with pytest.raises(jaxhub.HostStageError, match=r"(CaseFoldUTF8|FastBertNormalize)"
                                                     r".*is not UTF-8 \(byte 2"):
        module([b"ok", b"ab\xff\xfe"], as_dict=True)


def test_a_missing_vocabulary_asset_is_named(tmp_path):
    path = preprocessors.save_preprocessor(tmp_path / "model")
    (path / "assets" / "vocab.txt").unlink()
    with pytest.raises(Exception, match=r"asset 'vocab.txt'") as failure:
        convert_saved_model(path, tmp_path / "converted")
    assert isinstance(failure.value, (jaxhub.HostStageError, jaxhub.ModuleFormatError))


class _Unsupported(tf.Module):
    """Text ops the host stage lacks: script tokenization (UnicodeDecode and ICU scripts)
    and string n-grams."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, strings):
        scripts = text.UnicodeScriptTokenizer().tokenize(strings)
        grams = text.ngrams(scripts, 2, reduction_type=text.Reduction.STRING_JOIN)
        return {"ids": tf.strings.to_hash_bucket_fast(grams, 100).to_tensor()}


def test_unsupported_text_ops_are_all_named_in_one_error(tmp_path):
    model = _Unsupported()
    tf.saved_model.save(model, str(tmp_path / "sm"))
    with pytest.raises(HostStageUnsupportedError) as failure:
        convert_saved_model(tmp_path / "sm", tmp_path / "out")
    message = str(failure.value)
    for op in ("UnicodeScriptTokenizeWithOffsets", "TFText>NgramsStringJoin",
               "UnicodeDecodeWithOffsets"):
        assert op in message
    assert "WordpieceTokenizeWithOffsets" in message  # the list of what runs


class _Tokenizers(tf.Module):
    """Regex and normalisation tokenizers, white space splitting and waterfall trimming."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def regex(self, strings):
        normalized = text.normalize_utf8(strings, "NFKC")
        tokens, begins, ends = text.regex_split_with_offsets(
            normalized, r"\s+|[[:punct:]]", r"[[:punct:]]")
        return {"ids": tf.strings.to_hash_bucket_fast(tokens, 997).to_tensor(-1),
                "begins": begins.to_tensor(-1), "ends": ends.to_tensor(-1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def whitespace(self, strings):
        tokens = text.WhitespaceTokenizer().tokenize(text.case_fold_utf8(strings))
        ids = tf.strings.to_hash_bucket_fast(tokens, 1000)
        trimmed = text.WaterfallTrimmer(6).trim([ids, ids])
        return {"first": trimmed[0].to_tensor(-1), "second_lengths": trimmed[1].row_lengths()}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """``(TF's loaded model, the converted module)`` of :class:`_Tokenizers`."""
    root = tmp_path_factory.mktemp("tokenizers")
    model = _Tokenizers()
    tf.saved_model.save(model, str(root / "sm"), signatures={
        "regex": model.regex, "whitespace": model.whitespace})
    convert_saved_model(root / "sm", root / "out")
    return tf.saved_model.load(str(root / "sm")), jaxhub.load(str(root / "out"))


@pytest.mark.parametrize("signature", ["regex", "whitespace"])
def test_regex_whitespace_and_normalisation_tokenizers_match_tf(tokenizers, signature):
    model, module = tokenizers
    for batch in BATCHES.values():
        strings = [TEXTS[i] for i in batch] + [SECOND[i] for i in batch]
        theirs = tf_outputs(model, signature, strings=strings)
        assert_equal_outputs(module(strings, signature=signature, as_dict=True), theirs)
