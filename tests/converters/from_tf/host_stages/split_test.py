"""Host stages for ops whose output shape follows their inputs' values (TF2 SavedModels).

``tf.range`` and ``tf.ragged.range`` with tensor bounds, ``tf.fill`` with a tensor shape,
one-argument ``tf.where``, ``tf.unique`` (with counts), ``tf.compat.v1.setdiff1d``,
``tf.dynamic_partition``, ``tf.image.non_max_suppression``, ``tf.boolean_mask`` and
``x[:n]``, ``tf.slice``, ``tf.math.bincount`` (its size the largest value + 1) of a
signature's inputs run in a host stage; what follows them (here a product with a
variable) stays in the device function, which takes their results with a symbolic size.
Outputs are compared with TF eager on several inputs, empty results included, through
``apply`` and through ``preprocess`` + ``jax.jit(apply_device)``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow as tf

import jaxhub
from tests.converters.from_tf.host_stages._outputs import (
    assert_matches_tf, assert_outputs_match, save_signatures, signature_arrays, tf_outputs)
from jaxhub_tf.from_tf.host_stages.split import HostStageUnsupportedError
from jaxhub_tf.from_tf.saved_model import load_saved_model

_INT = tf.TensorSpec([], tf.int32)
_FLOAT = tf.TensorSpec([], tf.float32)


class _ValueShaped(tf.Module):
    """One signature per value-shaped op, each followed by a product with a variable."""

    def __init__(self):
        super().__init__()
        self.scale = tf.Variable([1.5, -2.0], name="scale")

    def _scaled(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cast(x, tf.float32) * self.scale[0] + self.scale[1]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        return self._scaled(tf.boolean_mask(x, x > 0))

    @tf.function(input_signature=[_INT])
    def count(self, n):
        return {"y": self._scaled(tf.range(n)), "filled": self._scaled(tf.fill([n], 3))}

    @tf.function(input_signature=[_INT, _INT, _INT])
    def int_range(self, start, limit, delta):
        return {"y": self._scaled(tf.range(start, limit, delta))}

    @tf.function(input_signature=[_FLOAT, _FLOAT, _FLOAT])
    def float_range(self, start, limit, delta):
        return {"y": self._scaled(tf.range(start, limit, delta))}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def nonzero(self, x):
        where = tf.where(x)
        return {"indices": where, "values": self._scaled(tf.gather_nd(x, where))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def unique(self, x):
        values, index = tf.unique(x)
        _, _, counts = tf.unique_with_counts(x)
        return {"values": self._scaled(values), "index": index, "counts": counts * 2}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def ragged_count(self, n):
        ranges = tf.ragged.range(n)
        return {"values": self._scaled(ranges.flat_values), "splits": ranges.row_splits}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def partition(self, x, parts):
        low, high = tf.dynamic_partition(x, parts, 2)
        return {"low": self._scaled(low), "high": self._scaled(high)}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32),
                                  tf.TensorSpec([None], tf.float32)])
    def detections(self, boxes, scores):
        kept = tf.image.non_max_suppression(boxes, scores, 3, iou_threshold=0.5)
        return {"boxes": self._scaled(tf.gather(boxes, kept)), "kept": kept}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)] * 2)
    def difference(self, x, y):
        kept, positions = tf.compat.v1.setdiff1d(x, y)
        return {"kept": self._scaled(kept), "positions": positions}

    # What no fixed sample input covers: bounds on either side of a constant, deltas of
    # either sign, an IoU threshold in [0, 1]. The sizes come from the graph, not from runs.
    @tf.function(input_signature=[_INT])
    def up_to_ten(self, start):
        return {"y": self._scaled(tf.range(start, 10))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)] * 3)
    def ragged_steps(self, starts, limits, deltas):
        ranges = tf.ragged.range(starts, limits, deltas, row_splits_dtype=tf.int64)
        return {"values": self._scaled(ranges.flat_values), "splits": ranges.row_splits}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.bool)])
    def true_cells(self, mask):
        where = tf.where(mask)
        return {"where": where, "count": self._scaled(tf.shape(where)[0])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def unique_int64(self, x):
        values, index = tf.unique(x, out_idx=tf.int64)
        # ``index`` has the batch's size: the device adds it to the input.
        return {"values": self._scaled(values), "index": index,
                "shifted": index + tf.cast(x, tf.int64)}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32),
                                  tf.TensorSpec([None], tf.float32), _INT, _FLOAT, _FLOAT])
    def scored_detections(self, boxes, scores, limit, iou, score_threshold):
        kept, kept_scores = tf.image.non_max_suppression_with_scores(
            boxes, scores, limit, iou, score_threshold)
        return {"kept": kept, "scores": self._scaled(kept_scores)}

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 1, 4], tf.float32),
                                  tf.TensorSpec([None, 6, 3], tf.float32)])
    def combined_detections(self, boxes, scores):
        found = tf.image.combined_non_max_suppression(boxes, scores, 2, 4, iou_threshold=0.5,
                                                      score_threshold=0.1)
        return {"boxes": self._scaled(found.nmsed_boxes), "classes": found.nmsed_classes,
                "valid": found.valid_detections}

    @tf.function(input_signature=[tf.TensorSpec([None, 2, 4], tf.float32),
                                  tf.TensorSpec([2], tf.int32)])
    def greedy_decoded(self, logits, lengths):
        (decoded,), log_probability = tf.nn.ctc_greedy_decoder(logits, lengths)
        return {"indices": decoded.indices, "values": decoded.values,
                "shape": decoded.dense_shape, "log_probability": self._scaled(log_probability)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32), _INT])
    def head(self, x, n):
        # ``x[:n]`` has n rows; ``x[n - 1]`` (one row) stays on the device.
        return {"rows": self._scaled(x[:n]), "last": self._scaled(x[n - 1])}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32), _INT, _INT])
    def window(self, x, start, size):
        return {"rows": self._scaled(tf.slice(x, [start, 0], [size, -1]))}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32),
                                  tf.TensorSpec([None], tf.float32)])
    def positive_rows(self, x, weights):
        rows = tf.boolean_mask(x, x[:, 0] > 0)
        return {"rows": self._scaled(rows), "total": tf.reduce_sum(weights * self.scale[0])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def bin_counts(self, x):
        # The count's size is the largest value + 1: a host stage's result.
        return {"counts": self._scaled(tf.math.bincount(x))}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.int32),
                                  tf.TensorSpec([None, 4], tf.float32)])
    def row_bin_counts(self, rows, weights):
        by_row = tf.math.bincount(rows, weights=weights, axis=-1)
        return {"by_row": by_row * self.scale[0],
                "binary": tf.math.bincount(rows, axis=-1, binary_output=True)}


_RNG = np.random.default_rng(0)

#: signature -> inputs to compare on, empty results included.
CASES = {
    "count": [{"n": 5}, {"n": 1}, {"n": 0}],
    "int_range": [{"start": 3, "limit": 17, "delta": 4}, {"start": 10, "limit": -2, "delta": -3},
                  {"start": 7, "limit": 7, "delta": 2}],
    "float_range": [{"start": 0.5, "limit": 3.2, "delta": 0.3},
                    {"start": 2.0, "limit": -1.0, "delta": -0.75},
                    {"start": 1.0, "limit": 1.0, "delta": 0.5}],
    "nonzero": [{"x": [[0, 1.5, 0], [2, 0, -3], [0, 0, 4]]}, {"x": [[0, 0, 7]]},
                {"x": [[0, 0, 0], [0, 0, 0]]}],
    "unique": [{"x": [4, 1, 4, 4, -2, 1, 9]}, {"x": [3]}, {"x": np.zeros([0])}],
    "ragged_count": [{"n": [3, 0, 2]}, {"n": [1]}],
    "partition": [{"x": [1, 2, 3, 4, 5], "parts": [1, 0, 0, 1, 1]},
                  {"x": [0.5, -1], "parts": [0, 1]}],
    "detections": [{"boxes": [[0, 0, 1, 1], [0, 0.1, 1, 1.1], [2, 2, 3, 3], [5, 5, 6, 7]],
                    "scores": [0.9, 0.8, 0.7, 0.95]},
                   {"boxes": [[0, 0, 1, 1]], "scores": [0.3]},
                   {"boxes": np.zeros([0, 4]), "scores": np.zeros([0])}],
    "difference": [{"x": [1, 5, 2, 5, 7], "y": [5, 9]}, {"x": [3, 3], "y": [1, 3]}],
    "up_to_ten": [{"start": 3}, {"start": -40}, {"start": 9}],
    "ragged_steps": [{"starts": [0, 5, 10], "limits": [4, -3, 10], "deltas": [1, -2, 3]},
                     {"starts": [7], "limits": [2], "deltas": [-1]}],
    "true_cells": [{"mask": [[True, False, True], [False, False, True]]},
                   {"mask": [[False, True, False]]}],
    "unique_int64": [{"x": [4, 1, 4, 4, -2, 1, 9]}, {"x": [3]}],
    "scored_detections": [
        {"boxes": [[0, 0, 1, 1], [0, 0.1, 1, 1.1], [2, 2, 3, 3], [5, 5, 6, 7], [0, 0, 0.9, 1]],
         "scores": [0.9, 0.8, 0.7, 0.95, 0.1], "limit": 4, "iou": 0.5,
         "score_threshold": 0.3},
        {"boxes": [[0, 0, 1, 1], [0, 0.1, 1, 1.1], [2, 2, 3, 3]], "scores": [0.9, 0.8, 0.7],
         "limit": 2, "iou": 0.95, "score_threshold": -1.0}],
    "combined_detections": [
        {"boxes": _RNG.uniform(-0.1, 1.1, [images, 6, 1, 4]),
         "scores": _RNG.permutation(images * 18).reshape(images, 6, 3) / (images * 18)}
        for images in (1, 3)],
    "greedy_decoded": [{"logits": _RNG.integers(0, 3, [6, 2, 4]), "lengths": [6, 4]},
                       {"logits": _RNG.standard_normal([3, 2, 4]), "lengths": [0, 2]}],
    "head": [{"x": [[1, 2], [-1, 5], [3, -4]], "n": 2}, {"x": [[1, 2], [-1, 5]], "n": -1},
             {"x": [[1, 2]], "n": 1}],
    "window": [{"x": [[1, 2], [-1, 5], [3, -4]], "start": 1, "size": 2},
               {"x": [[1, 2], [-1, 5], [3, -4]], "start": 0, "size": -1}],
    "bin_counts": [{"x": [5, 2, 3, 1, 3, 2, 7, 5, 9, 10]}, {"x": [0]}],
    "row_bin_counts": [{"rows": [[5, 2, 3, 1], [0, 7, 7, 2]],
                        "weights": [[2.0, 1.5, 3.5, 4.5], [5.5, 6.5, 7.5, 8.5]]},
                       {"rows": [[3, 3, 3, 3]], "weights": [[1, 1, 1, 1]]}],
    "positive_rows": [{"x": [[1, 2], [-1, 5], [3, -4]], "weights": [1, 2, 3]},
                      {"x": [[-1, 2], [3, 4]], "weights": [0.5, 0.25]}],
}


def _arrays(signature: str, inputs: dict) -> dict[str, np.ndarray]:
    return signature_arrays(_ValueShaped, signature, inputs)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    model = _ValueShaped()
    return model, save_signatures(model, CASES, tmp_path_factory.mktemp("value_shaped"))


@pytest.fixture(scope="module")
def saved(saved_model, tmp_path_factory):
    model, path = saved_model
    return model, jaxhub.load(path, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("signature,index", [(s, i) for s, cases in CASES.items()
                                             for i in range(len(cases))])
def test_outputs_match_tf_through_apply_and_jitted_apply_device(saved, signature, index):
    model, module = saved
    assert module.has_host_stage(signature)
    arrays = _arrays(signature, CASES[signature][index])
    if all(np.size(v) for v in module.preprocess(arrays, signature=signature).values()):
        _assert_matches_tf(model, module, signature, CASES[signature][index])
    else:  # an empty size cannot be traced
        ours = module.apply(module.params, arrays, signature=signature, as_dict=True)
        assert_outputs_match(ours, tf_outputs(model, signature, arrays))


def _assert_matches_tf(model: _ValueShaped, module: jaxhub.Module, signature: str,
                       inputs: dict) -> None:
    """``apply`` and ``preprocess`` + ``jit(apply_device)`` give what TF computes."""
    assert_matches_tf(model, module, signature, _arrays(signature, inputs))


@pytest.mark.parametrize("signature", ["unique_int64", "true_cells", "ragged_steps"])
def test_int64_results_stay_int64_with_64_bit_types_on(saved_model, tmp_path, signature):
    model, path = saved_model
    with jax.enable_x64(True):
        module = jaxhub.load(path, cache_dir=tmp_path)  # converted in this mode
        for inputs in CASES[signature]:
            _assert_matches_tf(model, module, signature, inputs)
        feeds = module.preprocess(_arrays(signature, CASES[signature][0]),
                                  signature=signature)
        assert any(np.asarray(v).dtype == np.int64 for v in feeds.values())


@pytest.mark.parametrize("x", [[3, -1, 0.5, 2], [-1, -2]])
def test_call_becomes_the_default_signature_with_a_host_stage(saved, x):
    model, module = saved
    x = np.asarray(x, np.float32)
    assert module.has_host_stage("default")
    assert_outputs_match({"y": module(x)}, {"y": model(tf.constant(x)).numpy()})


def test_an_empty_result_leaves_the_outputs_that_do_not_read_it_to_the_device(saved):
    # jax.export's symbolic sizes are at least 1: with no row selected, the device function
    # runs on a stand-in row for ``total`` (which does not read the selection), and
    # ``rows`` is cut to none.
    model, module = saved
    arrays = _arrays("positive_rows", {"x": [[-1, 2], [-3, 4]], "weights": [0.5, 0.25]})
    theirs = tf_outputs(model, "positive_rows", arrays)
    assert theirs["rows"].shape == (0, 2)
    assert_outputs_match(module.apply(module.params, arrays, signature="positive_rows",
                                      as_dict=True), theirs)
    feeds = module.preprocess(arrays, signature="positive_rows")
    device = jax.jit(lambda params, feeds: module.apply_device(
        params, feeds, signature="positive_rows", as_dict=True))
    assert_outputs_match(device(module.params, feeds), theirs)


class _EmptyResults(tf.Module):
    """Results of a host stage that are empty for some inputs, beside others that are not,
    and an output that is computed from one but is not empty itself."""

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32),
                                  tf.TensorSpec([None], tf.float32)])
    def suppressed(self, boxes, scores):
        return {"kept": tf.image.non_max_suppression(boxes, scores, 2),
                "none": tf.image.non_max_suppression(boxes, scores, 0) * 2}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokens(self, texts):
        ids = tf.strings.to_hash_bucket_fast(tf.strings.split(texts), 100)
        return {"ids": ids.values, "splits": ids.row_splits}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def summed(self, x):
        rows = tf.boolean_mask(x, x[:, 0] > 0)
        return {"rows": rows * 2.0, "sum": tf.reduce_sum(rows, axis=0)}


def test_empty_results_beside_others_match_tf(tmp_path):
    model = _EmptyResults()
    tf.saved_model.save(model, str(tmp_path / "sm"),
                        signatures={"suppressed": model.suppressed})
    module = jaxhub.load(tmp_path / "sm", cache_dir=tmp_path / "cache")
    for boxes, scores in [([[0, 0, 1, 1], [0, 0.1, 1, 1.1], [2, 2, 3, 3]], [0.9, 0.8, 0.7]),
                          (np.zeros([0, 4]), np.zeros([0]))]:
        arrays = {"boxes": np.asarray(boxes, np.float32),
                  "scores": np.asarray(scores, np.float32)}
        theirs = tf_outputs(model, "suppressed", arrays)
        assert theirs["none"].shape == (0,)
        ours = module.apply(module.params, arrays, signature="suppressed", as_dict=True)
        assert_outputs_match(ours, theirs)


def test_texts_without_tokens_give_their_row_splits(tmp_path):
    # No token: the row splits do not read the (empty) ids, and are TF's.
    model = _EmptyResults()
    tf.saved_model.save(model, str(tmp_path / "sm"), signatures={"tokens": model.tokens})
    module = jaxhub.load(tmp_path / "sm", cache_dir=tmp_path / "cache")
    for texts in [[b"a b", b"", b"c"], [b"", b" "]]:
        texts = np.asarray(texts, object)
        theirs = tf_outputs(model, "tokens", {"texts": texts})
        assert_outputs_match(module.apply(module.params, texts, signature="tokens",
                                          as_dict=True), theirs)


def test_an_empty_result_that_an_output_which_is_not_empty_reads_is_refused(tmp_path):
    # The sum of no rows reads the empty selection: a stand-in row would change it.
    model = _EmptyResults()
    tf.saved_model.save(model, str(tmp_path / "sm"), signatures={"summed": model.summed})
    module = jaxhub.load(tmp_path / "sm", cache_dir=tmp_path / "cache")
    arrays = {"x": np.asarray([[-1, 2], [-3, 4]], np.float32)}
    assert tf_outputs(model, "summed", arrays)["rows"].shape == (0, 2)
    message = (r"signature 'summed': for these inputs the host stage's output 0 of "
               r"Where node '[^']*boolean_mask[^']*' \(feeding 'host_\d'\) is empty "
               r"\(axis 0, n\d+=0\).* outputs \['sum'\], computed from it, would not be "
               r"empty")
    with pytest.raises(jaxhub.SignatureError, match=message):
        module.apply(module.params, arrays, signature="summed")
    feeds = module.preprocess(arrays, signature="summed")
    with pytest.raises(jaxhub.SignatureError, match=message):
        module.apply_device(module.params, feeds, signature="summed")


def test_a_host_stage_under_jit_is_refused_naming_the_split_to_use(saved):
    model, module = saved
    arrays = _arrays("unique", CASES["unique"][0])
    jitted = jax.jit(lambda params, x: module.apply(params, x, signature="unique"))
    with pytest.raises(jaxhub.SignatureError,
                       match=r"signature 'unique' runs a host stage .* cannot be traced.*"
                             r"module.preprocess\(inputs, signature='unique'\) outside it "
                             r"and module.apply_device\(params, feeds, signature='unique'\) "
                             r"inside it"):
        jitted(module.params, arrays)
    _assert_matches_tf(model, module, "unique", CASES["unique"][0])  # that split works


def test_value_sized_results_get_symbolic_sizes_of_their_own(saved):
    _, module = saved
    assert module.signatures["count"].inputs == {"n": jaxhub.TensorSpec([], "int32")}
    unique = module.signatures["unique"]
    assert unique.inputs["x"].dtype == "int32"  # callers pass the input, not the stage's
    (distinct,) = unique.outputs["values"].shape
    (batch,) = unique.outputs["index"].shape
    assert isinstance(distinct, str) and isinstance(batch, str) and distinct != batch
    rows, width = module.signatures["positive_rows"].outputs["rows"].shape
    assert isinstance(rows, str) and width == 2


def test_a_range_longer_than_the_host_limit_is_refused(saved, monkeypatch):
    model, module = saved
    with pytest.raises(jaxhub.HostStageError,
                       match=r"signature 'int_range': host op .*\(Range\): would make "
                             r"2,147,483,647 elements.*JAXHUB_HOST_MAX_ELEMENTS"):
        module.apply(module.params, {"start": 0, "limit": 2 ** 31 - 1, "delta": 1},
                     signature="int_range")
    with pytest.raises(jaxhub.HostStageError, match=r"\(Range\).*no finite length"):
        module.apply(module.params, {"start": 0.0, "limit": np.inf, "delta": 1.0},
                     signature="float_range")
    with pytest.raises(jaxhub.HostStageError, match=r"\(Range\).*requires delta != 0"):
        module.apply(module.params, {"start": 0, "limit": 4, "delta": 0},
                     signature="int_range")
    with pytest.raises(tf.errors.InvalidArgumentError):  # as TF refuses it
        model.int_range(tf.constant(5), tf.constant(0), tf.constant(1))
    with pytest.raises(jaxhub.HostStageError, match=r"requires start <= limit"):
        module.apply(module.params, {"start": 5, "limit": 0, "delta": 1},
                     signature="int_range")


class _OnTheDevice(tf.Module):
    """Ranges whose bounds the host stage cannot compute, and a combined NMS of boxes
    that only the device computes."""

    def __init__(self):
        super().__init__()
        self.offset = tf.Variable(3)
        self.scale = tf.Variable(0.5)

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 1, 4], tf.float32),
                                  tf.TensorSpec([None, 6, 3], tf.float32)])
    def scaled_detections(self, boxes, scores):
        found = tf.image.combined_non_max_suppression(boxes * self.scale, scores, 2, 4)
        return found.nmsed_boxes

    @tf.function(input_signature=[_INT])
    def from_params(self, n):
        return tf.range(n + self.offset)

    @tf.function(input_signature=[_FLOAT])
    def from_erf(self, x):
        return tf.range(tf.cast(10 * tf.math.erf(x), tf.int32))


@pytest.mark.parametrize("signature,blocker", [
    ("from_params", r"ReadVariableOp '[^']*' \(params or random numbers\)"),
    ("from_erf", r"Erf '[^']*' \(no host implementation\)")])
def test_a_range_computed_on_the_device_is_refused_naming_the_op(tmp_path, signature,
                                                                 blocker):
    model = _OnTheDevice()
    tf.saved_model.save(model, str(tmp_path), signatures={signature: getattr(model, signature)})
    with pytest.raises(HostStageUnsupportedError,
                       match=rf"Range node '.*range.*' has an output shape set by the values "
                             rf"of the signature's inputs.*{blocker}"):
        load_saved_model(tmp_path)


def test_a_combined_nms_of_device_values_is_refused_naming_the_op(tmp_path):
    model = _OnTheDevice()
    tf.saved_model.save(model, str(tmp_path), signatures=model.scaled_detections)
    with pytest.raises(HostStageUnsupportedError,
                       match=r"CombinedNonMaxSuppression node '[^']*' has no device "
                             r"implementation; .*ReadVariableOp '[^']*' \(params"):
        load_saved_model(tmp_path)


class _PaddedDetections(tf.Module):
    """Padded non-max suppressions of boxes computed from params: their shape is
    ``max_output_size``, a constant, so the device function runs them."""

    def __init__(self):
        super().__init__()
        self.shift = tf.Variable([0.05, -0.1, 0.05, -0.1])

    @tf.function(input_signature=[tf.TensorSpec([5, 4], tf.float32),
                                  tf.TensorSpec([5], tf.float32), _FLOAT])
    def __call__(self, boxes, scores, score_threshold):
        moved = boxes + self.shift
        v4, count4 = tf.raw_ops.NonMaxSuppressionV4(
            boxes=moved, scores=scores, max_output_size=4, iou_threshold=0.5,
            score_threshold=score_threshold, pad_to_max_output_size=True)
        v5, scores5, count5 = tf.raw_ops.NonMaxSuppressionV5(
            boxes=moved, scores=scores, max_output_size=3, iou_threshold=0.3,
            score_threshold=score_threshold, soft_nms_sigma=0.0, pad_to_max_output_size=True)
        return {"v4": v4, "count4": count4, "v5": v5, "scores5": scores5, "count5": count5}


@pytest.mark.parametrize("score_threshold", [0.0, 0.75])
def test_padded_nms_of_boxes_from_params_runs_on_the_device(tmp_path, score_threshold):
    model = _PaddedDetections()
    tf.saved_model.save(model, str(tmp_path / "sm"), signatures=model.__call__)
    module = jaxhub.load(tmp_path / "sm", cache_dir=tmp_path / "cache")
    assert not module.has_host_stage()
    inputs = {"boxes": np.asarray(CASES["scored_detections"][0]["boxes"], np.float32),
              "scores": np.asarray(CASES["scored_detections"][0]["scores"], np.float32),
              "score_threshold": np.float32(score_threshold)}
    theirs = {k: v.numpy() for k, v in model(**inputs).items()}
    assert_outputs_match(module.apply(module.params, inputs, as_dict=True), theirs)
    assert_outputs_match(jax.jit(lambda p, x: module.apply(p, x, as_dict=True))(module.params,
                                                                         inputs), theirs)
