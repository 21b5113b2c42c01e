"""The host stage's numeric ops whose output shape follows their inputs' values give what
TF's kernels give: ``Range``, ``Unique``, ``UniqueWithCounts``, ``ListDiff``, ``Where``,
``DynamicPartition``, ``Slice``, ``NonMaxSuppressionV2`` to ``V5`` (hard NMS) and
``CombinedNonMaxSuppression``; and the conversions between numbers and text, ``AsString``
and ``StringToNumber``; bin counts (``Bincount``, ``DenseBincount``); ``CTCGreedyDecoder``;
``GatherNd``; reductions of no values (``Max``, ``Min``: TF's identities)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from jaxhub._src.host import ops as host_ops
from jaxhub._src.host.limits import HostLimits, HostStageError
from jaxhub._src.host.program import HostNode


def run(op: str, *inputs, limits: HostLimits = HostLimits(), **attrs):
    """The host op ``op`` on numpy ``inputs``; a tuple of results."""
    result = host_ops.lookup(op)(HostNode("n", op, (), attrs, limits), *inputs)
    return result if isinstance(result, tuple) else (result,)


def assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        b = np.asarray(b)
        assert np.asarray(a).shape == b.shape and np.asarray(a).dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.parametrize("bounds,dtype", [
    ((0, 7, 1), "int32"), ((3, 17, 4), "int32"), ((10, -2, -3), "int64"), ((5, 5, 2), "int32"),
    ((0.1, 1.0, 0.3), "float32"), ((0.0, 10.0, 0.7), "float32"),
    ((1.5, -2.0, -0.7), "float64"), ((1.0, 1.0, 0.5), "float32")])
def test_range_matches_tf(bounds, dtype):
    args = [np.asarray(v, dtype) for v in bounds]
    theirs = tf.range(*[tf.constant(a) for a in args])
    assert_same(run("Range", *args, Tidx=dtype), [theirs.numpy()])


@pytest.mark.parametrize("bounds,problem", [
    ((0, 4, 0), "requires delta != 0"), ((5, 0, 1), "requires start <= limit"),
    ((0, 5, -1), "requires start >= limit")])
def test_range_refuses_what_tf_refuses(bounds, problem):
    args = [np.asarray(v, np.int32) for v in bounds]
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.range(*[tf.constant(a) for a in args])
    with pytest.raises(ValueError, match=problem):
        run("Range", *args, Tidx="int32")


def test_a_range_of_another_type_is_refused():
    with pytest.raises(ValueError, match="Range of object"):
        run("Range", np.int32(0), np.int32(3), np.int32(1), Tidx="object")


@pytest.mark.parametrize("limit", [np.inf, np.nan, 1e30])
def test_a_range_without_a_bounded_length_is_refused_before_it_allocates(limit):
    args = [np.float32(0), np.float32(limit), np.float32(1)]
    with pytest.raises((ValueError, HostStageError),
                       match="no finite length|requires start|JAXHUB_HOST_MAX_ELEMENTS"):
        run("Range", *args, Tidx="float32", limits=HostLimits(max_elements=1000))


@pytest.mark.parametrize("x", [[4, 1, 4, 4, -2, 1, 9], [3], [], [2.5, -1.0, 2.5, 0.0],
                               [float("nan"), 1.0, float("nan"), 1.0, -0.0, 0.0]])
@pytest.mark.parametrize("out_idx", ["int32", "int64"])
def test_unique_and_unique_with_counts_match_tf(x, out_idx):
    x = np.asarray(x, np.float32 if any(isinstance(v, float) for v in x) else np.int32)
    theirs = tf.raw_ops.Unique(x=x, out_idx=tf.as_dtype(out_idx))
    assert_same(run("Unique", x, out_idx=out_idx), [t.numpy() for t in theirs])
    theirs = tf.raw_ops.UniqueWithCounts(x=x, out_idx=tf.as_dtype(out_idx))
    assert_same(run("UniqueWithCounts", x, out_idx=out_idx), [t.numpy() for t in theirs])


@pytest.mark.parametrize("x,y", [([1, 5, 2, 5, 7], [5, 9]), ([1, 2], []), ([], [1]),
                                 ([3, 3], [3]), ([float("nan"), 1.0, 0.0], [float("nan"), -0.0])])
def test_list_diff_matches_tf(x, y):
    dtype = np.float32 if any(isinstance(v, float) for v in x) else np.int32
    x, y = np.asarray(x, dtype), np.asarray(y, dtype)
    theirs = tf.raw_ops.ListDiff(x=x, y=y)
    assert_same(run("ListDiff", x, y, out_idx="int32"), [t.numpy() for t in theirs])


@pytest.mark.parametrize("x", [[[0, 1.5, 0], [2, 0, -3]], [0, 0], [[True, False]], []])
def test_where_matches_tf(x):
    x = np.asarray(x)
    assert_same(run("Where", x), [tf.raw_ops.Where(condition=x).numpy()])


def test_where_of_a_scalar_is_refused_as_tf():
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.raw_ops.Where(condition=np.float32(4))
    with pytest.raises(ValueError, match="rank 0"):
        run("Where", np.float32(4))


@pytest.mark.parametrize("data,partitions", [
    ([[1, 2], [3, 4], [5, 6]], [1, 0, 1]), ([1.5, 2.5, 3.5, 4.5], [2, 2, 0, 2]),
    ([[1, 2], [3, 4]], [[0, 1], [1, 2]]), ([], [])])
def test_dynamic_partition_matches_tf(data, partitions):
    data, partitions = np.asarray(data, np.float32), np.asarray(partitions, np.int32)
    theirs = tf.raw_ops.DynamicPartition(data=data, partitions=partitions, num_partitions=3)
    assert_same(run("DynamicPartition", data, partitions, num_partitions=3),
                [t.numpy() for t in theirs])


def test_dynamic_partition_refuses_a_partition_outside_the_count_as_tf():
    data, partitions = np.float32([1, 2]), np.int32([0, 5])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.raw_ops.DynamicPartition(data=data, partitions=partitions, num_partitions=2)
    with pytest.raises(ValueError, match=r"partition 5 is not in \[0, 2\)"):
        run("DynamicPartition", data, partitions, num_partitions=2)


@pytest.mark.parametrize("begin,size", [([1, 0], [2, -1]), ([0, 2], [-1, 1]), ([3, 1], [0, 2]),
                                        ([2, 3], [1, 0])])
def test_slice_matches_tf(begin, size):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    theirs = tf.raw_ops.Slice(input=x, begin=np.int32(begin), size=np.int32(size))
    assert_same(run("Slice", x, np.int32(begin), np.int32(size)), [theirs.numpy()])


def test_slice_refuses_a_window_outside_as_tf():
    x = np.zeros([4, 3], np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.raw_ops.Slice(input=x, begin=np.int32([3, 0]), size=np.int32([2, -1]))
    with pytest.raises(ValueError, match=r"slice 3:5 of axis 0 is outside its size 4"):
        run("Slice", x, np.int32([3, 0]), np.int32([2, -1]))


def _boxes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` boxes, some with their corners swapped or of no area, and scores with ties."""
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 1, (n, 2, 2)).astype(np.float32)
    sizes = rng.uniform(0, 0.5, (n, 1, 2)).astype(np.float32)
    boxes = np.concatenate([corners[:, 0], corners[:, 0] + sizes[:, 0]], axis=1)
    boxes[::5] = boxes[::5][:, [2, 3, 0, 1]]  # the other corners first
    boxes[3::7, 2] = boxes[3::7, 0]  # no height
    scores = np.round(rng.uniform(0, 1, n), 1).astype(np.float32)  # ties
    return boxes, scores


@pytest.mark.parametrize("n,limit,iou,score", [
    (40, 10, 0.5, 0.0), (40, 40, 0.3, 0.4), (25, 5, 0.0, -1.0), (30, 30, 1.0, 0.2),
    (0, 3, 0.5, 0.0)])
def test_non_max_suppression_matches_tf(n, limit, iou, score):
    boxes, scores = _boxes(n, seed=n + limit)
    args = (boxes, scores, np.int32(limit), np.float32(iou), np.float32(score))
    theirs = tf.raw_ops.NonMaxSuppressionV3(boxes=boxes, scores=scores, max_output_size=limit,
                                            iou_threshold=iou, score_threshold=score)
    assert_same(run("NonMaxSuppressionV3", *args), [theirs.numpy()])
    for pad in (False, True):
        theirs = tf.raw_ops.NonMaxSuppressionV4(
            boxes=boxes, scores=scores, max_output_size=limit, iou_threshold=iou,
            score_threshold=score, pad_to_max_output_size=pad)
        assert_same(run("NonMaxSuppressionV4", *args, pad_to_max_output_size=pad),
                    [t.numpy() for t in theirs])
        theirs = tf.raw_ops.NonMaxSuppressionV5(
            boxes=boxes, scores=scores, max_output_size=limit, iou_threshold=iou,
            score_threshold=score, soft_nms_sigma=0.0, pad_to_max_output_size=pad)
        assert_same(run("NonMaxSuppressionV5", *args, np.float32(0),
                        pad_to_max_output_size=pad), [t.numpy() for t in theirs])


@pytest.mark.parametrize("n,limit,iou", [(40, 10, 0.5), (30, 30, 0.0), (12, 4, 1.0), (0, 3, 0.5)])
def test_non_max_suppression_v2_matches_tf(n, limit, iou):
    boxes, scores = _boxes(n, seed=n + limit)
    scores[::6] = -np.inf  # no score threshold, but TF's lowest float still bounds it
    theirs = tf.raw_ops.NonMaxSuppressionV2(boxes=boxes, scores=scores,
                                            max_output_size=limit, iou_threshold=iou)
    assert_same(run("NonMaxSuppressionV2", boxes, scores, np.int32(limit), np.float32(iou)),
                [theirs.numpy()])


def _detections(images: int, n: int, classes: int, per_class_boxes: bool, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``[images, n, classes or 1, 4]`` (some reaching outside [0, 1]) and distinct
    scores ``[images, n, classes]``."""
    rng = np.random.default_rng(seed)
    q = classes if per_class_boxes else 1
    low = rng.uniform(-0.2, 1.0, (images, n, q, 2))
    boxes = np.concatenate([low, low + rng.uniform(0, 0.6, (images, n, q, 2))], axis=-1)
    scores = rng.permutation(images * n * classes).reshape(images, n, classes)
    return boxes.astype(np.float32), (scores / scores.size).astype(np.float32)


@pytest.mark.parametrize("per_class_boxes", [False, True])
@pytest.mark.parametrize("per_class,total,iou,score,pad,clip", [
    (3, 5, 0.5, 0.1, False, True), (10, 8, 0.3, 0.0, True, False),
    (2, 50, 0.6, 0.5, True, True), (4, 4, 1.0, -1.0, False, False),
    (1, 9, 0.0, 0.2, False, True)])
def test_combined_non_max_suppression_matches_tf(per_class_boxes, per_class, total, iou,
                                                 score, pad, clip):
    boxes, scores = _detections(2, 12, 3, per_class_boxes, seed=per_class + total)
    theirs = tf.raw_ops.CombinedNonMaxSuppression(
        boxes=boxes, scores=scores, max_output_size_per_class=per_class,
        max_total_size=total, iou_threshold=iou, score_threshold=score, pad_per_class=pad,
        clip_boxes=clip)
    ours = run("CombinedNonMaxSuppression", boxes, scores, np.int32(per_class),
               np.int32(total), np.float32(iou), np.float32(score), pad_per_class=pad,
               clip_boxes=clip)
    assert_same(ours, [t.numpy() for t in theirs])


def test_combined_non_max_suppression_refuses_what_tf_refuses():
    boxes, scores = _detections(1, 4, 2, False, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.raw_ops.CombinedNonMaxSuppression(
            boxes=boxes, scores=scores, max_output_size_per_class=2, max_total_size=0,
            iou_threshold=0.5, score_threshold=0.0)
    with pytest.raises(ValueError, match="max_total_size 0 must be > 0"):
        run("CombinedNonMaxSuppression", boxes, scores, np.int32(2), np.int32(0),
            np.float32(0.5), np.float32(0))
    with pytest.raises(ValueError, match=r"TF takes \[batch, n, 1 or classes, 4\]"):
        run("CombinedNonMaxSuppression", boxes[:, :, :, :3], scores, np.int32(2),
            np.int32(3), np.float32(0.5), np.float32(0))


def test_non_max_suppression_refuses_what_it_does_not_compute():
    boxes, scores = _boxes(4, seed=0)
    with pytest.raises(ValueError, match="soft NMS"):
        run("NonMaxSuppressionV5", boxes, scores, np.int32(2), np.float32(0.5),
            np.float32(0), np.float32(0.5))
    with pytest.raises(ValueError, match=r"iou_threshold 1.5 in \[0, 1\]"):
        run("NonMaxSuppressionV3", boxes, scores, np.int32(2), np.float32(1.5), np.float32(0))
    with pytest.raises(HostStageError, match="JAXHUB_HOST_MAX_ELEMENTS"):
        run("NonMaxSuppressionV4", boxes, scores, np.int32(10 ** 9), np.float32(0.5),
            np.float32(0), pad_to_max_output_size=True, limits=HostLimits(max_elements=100))


_NUMBER_TEXTS = [
    "12", " 12 ", "\t7\n", "\v5\f", "+5", "-5", "07", ".5", "5.", "1.e5", "1e3", "1E+5",
    "1e-50", "1e400", "-1e400", "3.4028236e38", "1.7976931348623157e308", "0x1A", "-0X1f",
    "0x1.8p3", "inf", "-Inf", "+infinity", "NaN", "-nan", "nan(1)", "  -0.0",
    "2147483647", "2147483648", "-2147483648", "-2147483649", "9223372036854775807",
    "9223372036854775808", "", " ", "abc", "1.5f", "1_000", "+-5", "- 5", "1e", "e5",
    "12abc", "0b1", "1,5", "0x", "0x-1", "infin", "inf inity", "\xa05", "\u0663"]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_string_to_number_parses_and_refuses_what_tf_does(dtype):
    for text in _NUMBER_TEXTS:
        try:
            theirs = tf.strings.to_number(text, dtype).numpy()
        except tf.errors.InvalidArgumentError:
            with pytest.raises(ValueError, match="StringToNumber could not convert"):
                run("StringToNumber", np.asarray([text.encode()], object), out_type=dtype)
            continue
        (ours,) = run("StringToNumber", np.asarray([text.encode()], object), out_type=dtype)
        assert ours.dtype == theirs.dtype, text
        np.testing.assert_array_equal(ours, [theirs], err_msg=repr(text))


_AS_STRING_ATTRS = [
    {}, {"precision": 3}, {"precision": 0}, {"scientific": True}, {"shortest": True},
    {"width": 8}, {"width": 8, "fill": "0"}, {"width": 8, "fill": "-"}, {"fill": "+"},
    {"fill": " "}, {"fill": "#", "precision": 0},
    {"width": 12, "precision": 2, "scientific": True, "fill": "#"},
    {"shortest": True, "precision": 3, "width": 10},
    {"fill": "x"}, {"scientific": True, "shortest": True}, {"fill": "00"}]

_FLOATS = np.asarray([1.5, -2.25e-7, 123456789.0, np.inf, -np.inf, np.nan, -np.nan, 0.1,
                      0.0, -0.0, 1e30], np.float32)
_AS_STRING_INPUTS = [_FLOATS, _FLOATS.astype(np.float64), np.asarray([3, -42, 0], np.int32),
                     np.asarray([2 ** 40, -7], np.int64), np.asarray([250, 3], np.uint8),
                     np.asarray([-5], np.int8), np.asarray([True, False]),
                     np.asarray([1 + 2j, -0.5 - 1e-9j], np.complex64)]


@pytest.mark.parametrize("attrs", _AS_STRING_ATTRS, ids=str)
def test_as_string_formats_and_refuses_what_tf_does(attrs):
    for x in _AS_STRING_INPUTS:
        try:
            theirs = tf.strings.as_string(x, **attrs).numpy()
        except tf.errors.InvalidArgumentError:
            with pytest.raises(ValueError, match="AsString"):
                run("AsString", x, **attrs)
            continue
        (ours,) = run("AsString", x, **attrs)
        assert ours.dtype == object and list(ours) == list(theirs), x.dtype


@pytest.mark.parametrize("op,arr,size,weights,attrs", [
    ("Bincount", [5, 2, 3, 1, 3, 2, 7], 6, np.zeros(0, np.float32), {}),
    ("Bincount", [[1, 5], [2, 2]], 3, np.asarray([[0.5, 1], [2, 4]], np.float64), {}),
    ("Bincount", [1, 2], 0, np.zeros(0, np.int32), {}),
    ("DenseBincount", [5, 2, 3, 1, 3], 4, np.zeros(0, np.int64), {}),
    ("DenseBincount", [[5, 2, 3], [2, 2, 0]], 6, np.asarray([[1, 2, 3], [4, 5, 6]], np.float32),
     {}),
    ("DenseBincount", [[5, 2, 3], [2, 2, 0]], 6, np.zeros(0, np.int32),
     {"binary_output": True}),
    ("Bincount", [1, -1], 3, np.zeros(0, np.float32), {}),
    ("DenseBincount", [[1, -1]], 3, np.zeros(0, np.float32), {}),
    ("Bincount", [1], -1, np.zeros(0, np.float32), {})])
def test_bin_counts_match_tf(op, arr, size, weights, attrs):
    arr, size = np.asarray(arr, np.int32), np.int32(size)
    names = ("arr", "size", "weights") if op == "Bincount" else ("input", "size", "weights")
    try:
        theirs = getattr(tf.raw_ops, op)(**dict(zip(names, (arr, size, weights))), **attrs)
    except tf.errors.InvalidArgumentError:
        with pytest.raises(ValueError, match="bin count of"):
            run(op, arr, size, weights, **attrs)
        return
    assert_same(run(op, arr, size, weights, **attrs), [theirs.numpy()])


@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("blank", [-1, 0, 2])
def test_ctc_greedy_decoder_matches_tf(merge, blank):
    rng = np.random.default_rng(blank + 1 + 3 * merge)
    logits = rng.integers(0, 3, (7, 4, 5)).astype(np.float32)  # ties and repeats
    logits[:, 1] = np.log(rng.dirichlet(np.ones(5), 7))
    lengths = np.array([7, 3, 0, 5], np.int32)
    theirs = tf.raw_ops.CTCGreedyDecoder(inputs=logits, sequence_length=lengths,
                                         merge_repeated=merge, blank_index=blank)
    assert_same(run("CTCGreedyDecoder", logits, lengths, merge_repeated=merge,
                    blank_index=blank), [t.numpy() for t in theirs])


def test_ctc_greedy_decoder_refuses_sequences_longer_than_the_inputs():
    with pytest.raises(ValueError, match="outside"):
        run("CTCGreedyDecoder", np.zeros((3, 2, 4), np.float32), np.array([3, 4], np.int32))


@pytest.mark.parametrize("indices", [[[1, 0], [0, 2]], [[1]], [[[0, 1]], [[1, 2]]],
                                     np.zeros((0, 2))])
def test_gather_nd_matches_tf(indices):
    params = np.arange(12, dtype=np.float32).reshape(2, 2, 3)[0]
    indices = np.asarray(indices, np.int64)
    theirs = tf.raw_ops.GatherNd(params=params, indices=indices)
    assert_same(run("GatherNd", params, indices), [theirs.numpy()])


def test_gather_nd_refuses_an_index_out_of_range_as_tf():
    params, indices = np.zeros((2, 3), np.float32), np.array([[0, 1], [2, 0]], np.int64)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.raw_ops.GatherNd(params=params, indices=indices)
    with pytest.raises(ValueError, match=r"index \[2, 0\] is out of range"):
        run("GatherNd", params, indices)


@pytest.mark.parametrize("op", ["Max", "Min", "Sum", "Prod"])
@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_reductions_of_no_values_match_tf(op, dtype):
    # A ragged tensor of empty strings: its row ids' maximum (RaggedFromValueRowIds).
    x, axis = np.zeros([0, 3], dtype), np.asarray([0], np.int32)
    theirs = getattr(tf.raw_ops, op)(input=tf.constant(x), axis=tf.constant(axis))
    assert_same(run(op, x, axis), [theirs.numpy()])
