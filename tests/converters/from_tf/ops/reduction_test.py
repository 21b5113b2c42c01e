"""Conformance of reductions, scans and segment ops against TF."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tests.converters.from_tf.ops._conformance import (Case, check, distinct, integers,
                                                       normal, params, uniform)

_SHAPES = (((3, 4),), ((2, 3, 5),))


def _reduce(op, fn, dtypes=("float32",), sample=distinct, **kw) -> Case:
    return Case(op, fn, _SHAPES, dtypes, sample, **kw)


CASES = [
    _reduce("Sum", lambda x: tf.reduce_sum(x, axis=-1), ("float32", "int32"), normal),
    _reduce("Sum", lambda x: tf.reduce_sum(x, axis=[0, 1], keepdims=True), name="Sum-keep"),
    _reduce("Mean", lambda x: tf.reduce_mean(x, axis=0)),
    _reduce("Max", lambda x: tf.reduce_max(x, axis=1), ("float32", "int32")),
    _reduce("Min", lambda x: tf.reduce_min(x, axis=-1)),
    _reduce("Prod", lambda x: tf.reduce_prod(x, axis=1), sample=uniform(0.5, 1.5)),
    _reduce("All", lambda x: tf.reduce_all(x, axis=1), ("bool",), normal),
    _reduce("Any", lambda x: tf.reduce_any(x, axis=0), ("bool",), normal),
    _reduce("Sqrt", lambda x: tf.norm(x, axis=-1), name="Norm"),
    _reduce("EuclideanNorm", lambda x: tf.raw_ops.EuclideanNorm(input=x, axis=[0, 1],
                                                                   keep_dims=True)),
    _reduce("ArgMax", lambda x: tf.argmax(x, axis=-1), ("float32", "int32")),
    _reduce("ArgMin", lambda x: tf.argmin(x, axis=0, output_type=tf.int32)),
    _reduce("Cumsum", lambda x: tf.cumsum(x, axis=1), ("float32", "int32")),
    _reduce("Cumsum", lambda x: tf.cumsum(x, axis=-1, exclusive=True, reverse=True),
            name="Cumsum-exclusive-reverse"),
    _reduce("Cumprod", lambda x: tf.math.cumprod(x, axis=0, exclusive=True),
            sample=uniform(0.5, 1.5)),
    _reduce("Cumprod", lambda x: tf.math.cumprod(x, axis=1, reverse=True),
            sample=uniform(0.5, 1.5), name="Cumprod-reverse"),
    _reduce("CumulativeLogsumexp", lambda x: tf.math.cumulative_logsumexp(x, axis=1),
            rtol=1e-4),
    _reduce("Exp", lambda x: tf.math.reduce_logsumexp(x, axis=-1), name="LogSumExp"),
    _reduce("Mean", lambda x: tf.math.reduce_variance(x, axis=-1), name="Variance"),
    # Axes computed from tensor values, but none: nothing to know.
    Case("Sum", lambda x, axes: tf.reduce_sum(x, axis=axes), (((3, 4), (0,)),),
         (("float32", "int32"),), name="Sum-no-traced-axes"),
]

_SEGMENT_SHAPES = (((6, 3), (6,)), ((4, 2, 3), (4, 2)))
_SEGMENT_DTYPES = (("float32", "int32"),)
for _op, _fn in (("UnsortedSegmentSum", tf.math.unsorted_segment_sum),
                 ("UnsortedSegmentProd", tf.math.unsorted_segment_prod),
                 ("UnsortedSegmentMax", tf.math.unsorted_segment_max),
                 ("UnsortedSegmentMin", tf.math.unsorted_segment_min)):
    CASES.append(Case(_op, lambda x, ids, _fn=_fn: _fn(x, ids, num_segments=5),
                      _SEGMENT_SHAPES, _SEGMENT_DTYPES, (distinct, integers(0, 4))))
# Sorted segments: the ids are constant (they decide the output's size); segment 3 is empty.
for _op, _fn in (("SegmentSum", tf.math.segment_sum), ("SegmentMean", tf.math.segment_mean),
                 ("SegmentMax", tf.math.segment_max), ("SegmentMin", tf.math.segment_min),
                 ("SegmentProd", tf.math.segment_prod)):
    CASES.append(Case(_op, lambda x, _fn=_fn: _fn(x, tf.constant([0, 0, 1, 2, 2, 4])),
                      (((6,),), ((6, 3),)), ("float32",), distinct, batched=False))

# A constant size: tf.math.bincount computes it from the largest value (a traced size).
# Values at or past the size are not counted. TF has no gradient for the bincounts.
_IDS = integers(0, 8)
CASES += [
    Case("Bincount", lambda x: tf.raw_ops.Bincount(arr=x, size=6, weights=[]), (((9,),),),
         ("int32",), _IDS, batched=False),
    Case("Bincount", lambda x, w: tf.raw_ops.Bincount(arr=x, size=6, weights=w),
         (((9,), (9,)),), (("int32", "float32"),), (_IDS, normal), grad=False,
         batched=False, name="Bincount-weights"),
    Case("DenseBincount", lambda x: tf.raw_ops.DenseBincount(input=x, size=6, weights=[]),
         (((3, 9),), ((7,),)), ("int32", "int64"), _IDS),
    Case("DenseBincount", lambda x: tf.raw_ops.DenseBincount(input=x, size=6, weights=[],
                                                             binary_output=True),
         (((3, 9),),), ("int32",), _IDS, name="DenseBincount-binary"),
    Case("DenseBincount", lambda x, w: tf.raw_ops.DenseBincount(input=x, size=6, weights=w),
         (((3, 9), (3, 9)),), (("int32", "float32"),), (_IDS, normal), grad=False,
         name="DenseBincount-weights"),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)
