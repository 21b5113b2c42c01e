"""TF Hub's usage pattern for BERT preprocessors, in JAX.

The preprocessor is shaped like TF Hub's ``bert_en_uncased_preprocess``: ``tokenize``
and ``bert_pack_inputs`` are tf.functions of the SavedModel's root object, not
signatures; ``tokenize`` returns a RaggedTensor ``[batch, words, wordpieces]`` and
``bert_pack_inputs`` takes a list of them and a scalar ``seq_length`` tensor, traced for
1 and 2 segments (two concrete functions). Converted, ``tokenize`` becomes a signature of
its name and each concrete function of ``bert_pack_inputs`` one named after its number of
segments (``bert_pack_inputs_1``, ``bert_pack_inputs_2``; calling ``bert_pack_inputs``
picks the one for the segments given), with ragged values as :class:`jaxhub.Ragged` and
``seq_length`` a host stage input; TF Hub's compositions give TF's ids:

    preprocess(strings)                                             # the one-shot __call__
    pack([tokenize(first), tokenize(second)], seq_length=64)        # two segments
    encoder(preprocess(strings))                                    # the dict feeds the encoder
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import jaxhub
from jaxhub_tf import convert_saved_model
from tests.converters.from_tf.text import preprocessors
from tests.converters.from_tf.text.bert_test import assert_equal_outputs
from tests.converters.from_tf.text.preprocessors import SECOND, SEQ_LENGTH, TEXTS

#: Batches: all texts (odd count), one long text alone, three.
BATCHES = {"all": list(range(len(TEXTS))), "one": [5], "three": [1, 3, 4]}


@pytest.fixture(scope="module")
def hub_style(tmp_path_factory):
    """``(TF's loaded preprocessor, the converted jaxhub module)``."""
    root = tmp_path_factory.mktemp("hub_style")
    path = preprocessors.save_hub_style_preprocessor(root)
    convert_saved_model(path, root / "converted")
    return tf.saved_model.load(str(path)), jaxhub.load(str(root / "converted"))


def numpy_outputs(outputs) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in outputs.items()}


def test_root_functions_become_signatures_with_ragged_components(hub_style):
    module = hub_style[1]
    assert {"default", "tokenize", "bert_pack_inputs_1", "bert_pack_inputs_2"} <= set(
        module.signatures)
    assert "bert_pack_inputs" not in module.signatures
    tokenize = module.signatures["tokenize"]
    assert set(tokenize.outputs) == {"default.values", "default.row_splits.0",
                                     "default.row_splits.1"}
    for count in (1, 2):
        pack = module.signatures[f"bert_pack_inputs_{count}"]
        assert pack.inputs["seq_length"] == jaxhub.TensorSpec([], "int32")
        assert {k.split(".")[0] for k in pack.inputs} == {
            *(f"segments/{i}" for i in range(count)), "seq_length"}
        assert set(pack.outputs) == {"input_word_ids", "input_mask", "input_type_ids"}


@pytest.mark.parametrize("batch", BATCHES)
def test_tokenize_returns_tf_ragged_token_ids(hub_style, batch):
    model, module = hub_style
    strings = [TEXTS[i] for i in BATCHES[batch]]
    theirs = model.tokenize(tf.constant(strings))
    ours = module(strings, signature="tokenize")
    assert isinstance(ours, jaxhub.Ragged) and ours.ragged_rank == 2
    assert ours.to_list() == theirs.to_list()
    for got, want in zip(ours.row_splits, theirs.nested_row_splits):
        np.testing.assert_array_equal(got, want.numpy())


def pack(module, segments, seq_length):
    """TF Hub's ``pack(segments, seq_length=...)``: the signature for that many segments."""
    return module({"segments": segments, "seq_length": np.int32(seq_length)},
                  signature=f"bert_pack_inputs_{len(segments)}")


def pack_by_name(module, segments, seq_length):
    """``bert_pack_inputs`` called by the tf.function's own name (it picks the trace)."""
    return module({"segments": segments, "seq_length": seq_length},
                  signature="bert_pack_inputs")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("segments, seq_length", [(1, SEQ_LENGTH), (2, 64)])
def test_pack_of_tokenize_gives_tf_bert_inputs(hub_style, batch, segments, seq_length):
    """One segment at 128 and two at 64 (long texts trimmed): the ``seq_length`` tensor
    sets the outputs' length, as in TF."""
    model, module = hub_style
    texts = [[TEXTS[i] for i in BATCHES[batch]], [SECOND[i] for i in BATCHES[batch]]]
    theirs = numpy_outputs(model.bert_pack_inputs(
        [model.tokenize(tf.constant(t)) for t in texts[:segments]],
        seq_length=tf.constant(seq_length)))
    assert theirs["input_word_ids"].shape == (len(texts[0]), seq_length)

    def tokenize(strings):
        return module(strings, signature="tokenize")

    assert_equal_outputs(pack(module, [tokenize(t) for t in texts[:segments]], seq_length),
                         theirs)


def test_pack_takes_ragged_values_made_in_python(hub_style):
    """A Ragged built by hand (int64 row splits, as TF's) packs as TF's RaggedTensor."""
    model, module = hub_style
    segment = tf.RaggedTensor.from_nested_row_splits(
        tf.constant([7, 8, 9, 10, 11], tf.int32),
        [tf.constant([0, 2, 3], tf.int64), tf.constant([0, 1, 3, 5], tf.int64)])
    ragged = jaxhub.Ragged(segment.flat_values.numpy(),
                           tuple(s.numpy() for s in segment.nested_row_splits))
    assert ragged.to_list() == segment.to_list()
    theirs = numpy_outputs(model.bert_pack_inputs([segment, segment],
                                                  seq_length=tf.constant(SEQ_LENGTH)))
    assert_equal_outputs(pack(module, [ragged, ragged], SEQ_LENGTH), theirs)


@pytest.mark.parametrize("segments", [1, 2])
def test_calling_the_function_name_picks_the_concrete_function_by_segment_count(
        hub_style, segments):
    """As TF Hub's ``preprocessor.bert_pack_inputs(segments, seq_length=...)``: the
    signature named after the tf.function picks the one for that many segments."""
    model, module = hub_style
    texts = [TEXTS, SECOND][:segments]
    theirs = numpy_outputs(model.bert_pack_inputs(
        [model.tokenize(tf.constant(t)) for t in texts], seq_length=tf.constant(32)))
    segments = [module(t, signature="tokenize") for t in texts]
    assert_equal_outputs(pack_by_name(module, segments, 32), theirs)


def test_a_segment_count_that_was_not_traced_is_a_signature_error(hub_style):
    module = hub_style[1]
    segment = module(TEXTS, signature="tokenize")
    with pytest.raises(jaxhub.SignatureError, match=r"no signature 'bert_pack_inputs'.*"
                                                    r"bert_pack_inputs_2"):
        module({"segments": [segment] * 3, "seq_length": np.int32(32)},
               signature="bert_pack_inputs")


def test_traces_for_two_ragged_ranks_as_tf_hubs_are_picked_by_their_inputs(tmp_path):
    """TF Hub's ``bert_pack_inputs`` has four concrete functions: 1 or 2 segments of
    ragged rank 1 (``[batch, tokens]``) or 2. Their list lengths do not tell them apart,
    so they are ``bert_pack_inputs_0`` ... ``_3``; calling ``bert_pack_inputs`` picks the
    one whose inputs are given (``segments/k.row_splits.1`` only for rank 2)."""
    path = preprocessors.save_hub_style_preprocessor(tmp_path, ragged_ranks=(1, 2))
    convert_saved_model(path, tmp_path / "converted")
    model, module = tf.saved_model.load(str(path)), jaxhub.load(str(tmp_path / "converted"))
    assert {f"bert_pack_inputs_{i}" for i in range(4)} <= set(module.signatures)
    for rank in (1, 2):
        for count in (1, 2):
            segments = [model.tokenize(tf.constant(t)) for t in (TEXTS, SECOND)[:count]]
            if rank == 1:
                segments = [s.merge_dims(-2, -1) for s in segments]
            theirs = numpy_outputs(model.bert_pack_inputs(segments,
                                                          seq_length=tf.constant(40)))
            ragged = [jaxhub.Ragged(s.flat_values.numpy(),
                                    tuple(x.numpy() for x in s.nested_row_splits))
                      for s in segments]
            assert_equal_outputs(pack_by_name(module, ragged, 40), theirs)


def test_the_one_shot_call_gives_tf_ids(hub_style):
    model, module = hub_style
    theirs = numpy_outputs(model(tf.constant(TEXTS)))
    assert_equal_outputs(module(TEXTS), theirs)


def test_encoder_of_preprocess_chains_as_in_tf_hub(hub_style, tmp_path):
    """``encoder(preprocess(strings))``: the preprocessor's dict feeds the encoder's
    inputs by name; its ``default`` output (the pooled one) within 2e-4 of TF's."""
    model, preprocess = hub_style
    vocab = preprocessors.make_vocab(tmp_path / "vocab.txt")
    path, tf_encoder = preprocessors.save_encoder(tmp_path, len(vocab))
    encoder = jaxhub.load(str(path))
    theirs = tf_encoder(**model(tf.constant(TEXTS)))["pooled_output"].numpy()
    ours = encoder(preprocess(TEXTS), signature="serving_default")
    np.testing.assert_allclose(ours, theirs, atol=2e-4, rtol=2e-4)


def test_a_ragged_input_of_the_wrong_kind_is_a_signature_error(hub_style):
    module = hub_style[1]
    with pytest.raises(jaxhub.SignatureError, match="bert_pack_inputs_1"):
        pack(module, [jaxhub.Ragged(np.array([1, 2]), (np.array([0, 2]),))], SEQ_LENGTH)


def test_an_empty_batch_preprocesses_to_empty_arrays_as_tf(hub_style):
    model, module = hub_style
    theirs = numpy_outputs(model(tf.constant([], tf.string)))
    assert theirs["input_word_ids"].shape == (0, SEQ_LENGTH)
    assert_equal_outputs(module([]), theirs)


def test_tokenize_with_zero_tokens_gives_tf_row_splits(hub_style):
    # No token: the row splits do not read the (empty) token ids, so the device function
    # runs for them on a stand-in token (jax.export's sizes are at least 1).
    model, module = hub_style
    theirs = model.tokenize(tf.constant(["", ""]))
    ours = module(["", ""], signature="tokenize")
    assert ours.to_list() == theirs.to_list()
    for got, want in zip(ours.row_splits, theirs.nested_row_splits):
        np.testing.assert_array_equal(got, want.numpy())


def test_an_encoder_whose_call_takes_a_dict_gets_a_default_signature(hub_style, tmp_path):
    """TF Hub's encoders: ``__call__`` takes one dict of the three BERT inputs, so the
    ``default`` signature takes them by name, and ``encoder(preprocess(strings))``
    chains without naming a signature."""
    model, preprocess = hub_style
    vocab = preprocessors.make_vocab(tmp_path / "vocab.txt")
    path, tf_encoder = preprocessors.save_dict_input_encoder(tmp_path, len(vocab))
    encoder = jaxhub.load(str(path))
    assert set(encoder.signatures["default"].inputs) == {
        "input_word_ids", "input_mask", "input_type_ids"}
    theirs = tf_encoder(model(tf.constant(TEXTS)))["pooled_output"].numpy()
    np.testing.assert_allclose(encoder(preprocess(TEXTS)), theirs, atol=2e-4, rtol=2e-4)
