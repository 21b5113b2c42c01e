"""The host stage's array ops whose static operands may follow a signature's input values
give what TF's kernels give, and refuse what they refuse: ``Pad``, ``PadV2``,
``MirrorPad``, ``TopKV2``, ``OneHot``, ``ArgMax``, ``ArgMin``, ``ReverseV2``, ``Roll``,
``Split``, ``SplitV``, ``DynamicStitch``, ``MatrixDiagV2/V3``, ``MatrixDiagPartV2/V3``,
``ResizeBilinear``, ``ResizeNearestNeighbor``, ``CropAndResize``, ``Conv2DBackpropInput``,
``Conv3DBackpropInputV2``, ``SpaceToBatchND``, ``BatchToSpaceND``, ``ExpandDims``,
``MatrixSetDiagV3``, ``ScatterNd``, ``SparseToDense``, the sorted segment reductions; and
the elementwise math that computes such operands."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.host.ops_test import assert_same, run

X = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5


def _tf(op: str, **kwargs) -> list[np.ndarray]:
    result = getattr(tf.raw_ops, op)(**kwargs)
    return [t.numpy() for t in (result if isinstance(result, (list, tuple)) else [result])]


@pytest.mark.parametrize("paddings", [[[0, 0], [1, 2], [3, 0]], [[1, 0], [2, 1], [0, 3]],
                                      [[0, 0], [0, 0], [0, 0]]])
def test_pads_match_tf(paddings):
    paddings = np.asarray(paddings, np.int32)
    assert_same(run("Pad", X, paddings), _tf("Pad", input=X, paddings=paddings))
    assert_same(run("PadV2", X, paddings, np.float32(-1.5)),
                _tf("PadV2", input=X, paddings=paddings, constant_values=np.float32(-1.5)))
    for mode in ("REFLECT", "SYMMETRIC"):
        assert_same(run("MirrorPad", X, paddings, mode=mode),
                    _tf("MirrorPad", input=X, paddings=paddings, mode=mode))


@pytest.mark.parametrize("op,paddings,attrs", [
    ("Pad", [[0, 0], [-1, 0], [0, 0]], {}), ("Pad", [[0, 0], [0, 0]], {}),
    ("MirrorPad", [[0, 0], [3, 0], [0, 0]], {"mode": "REFLECT"}),
    ("MirrorPad", [[0, 0], [0, 4], [0, 0]], {"mode": "SYMMETRIC"})])
def test_pads_refuse_what_tf_refuses(op, paddings, attrs):
    paddings = np.asarray(paddings, np.int32)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        _tf(op, input=X, paddings=paddings, **attrs)
    with pytest.raises(ValueError, match="paddings"):
        run(op, X, paddings, **attrs)


@pytest.mark.parametrize("k", [0, 1, 3, 4])
@pytest.mark.parametrize("index_type", ["int32", "int64"])
def test_top_k_matches_tf_with_ties_in_index_order(k, index_type):
    x = np.array([[3, 1, 3, 2], [0, 0, 5, 0]], np.float32)
    assert_same(run("TopKV2", x, np.int32(k), sorted=True, index_type=index_type),
                _tf("TopKV2", input=x, k=np.int32(k), index_type=tf.as_dtype(index_type)))


def test_top_k_refuses_a_k_above_the_axis_as_tf():
    with pytest.raises(tf.errors.InvalidArgumentError):
        _tf("TopKV2", input=X, k=np.int32(5))
    with pytest.raises(ValueError, match="k 5 must be in"):
        run("TopKV2", X, np.int32(5))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot_matches_tf(axis):
    indices = np.array([[0, 2, -1], [3, 1, 1]], np.int32)
    args = (indices, np.int32(3), np.float32(2.5), np.float32(-1))
    assert_same(run("OneHot", *args, axis=axis),
                _tf("OneHot", indices=indices, depth=args[1], on_value=args[2],
                    off_value=args[3], axis=axis))


def test_one_hot_refuses_a_negative_depth_as_tf():
    args = (np.int32([0, 1]), np.int32(-1), np.float32(1), np.float32(0))
    with pytest.raises(tf.errors.InvalidArgumentError):
        _tf("OneHot", indices=args[0], depth=args[1], on_value=args[2], off_value=args[3])
    with pytest.raises(ValueError, match="depth -1"):
        run("OneHot", *args)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_arg_extrema_match_tf_first_of_equal_ones(op, axis):
    x = np.array([[1, 5, 5], [5, 1, 1]], np.int32)
    assert_same(run(op, x, np.int32(axis)), _tf(op, input=x, dimension=np.int32(axis)))
    assert_same(run(op, x, np.int32(axis), output_type="int32"),
                _tf(op, input=x, dimension=np.int32(axis), output_type=tf.int32))


@pytest.mark.parametrize("axis", [[0], [1, 2], [-1], []])
def test_reverse_matches_tf(axis):
    axis = np.asarray(axis, np.int32)
    assert_same(run("ReverseV2", X, axis), _tf("ReverseV2", tensor=X, axis=axis))


def test_reverse_refuses_an_axis_out_of_range_as_tf():
    with pytest.raises(tf.errors.InvalidArgumentError):
        _tf("ReverseV2", tensor=X, axis=np.int32([3]))
    with pytest.raises(ValueError, match="out of range"):
        run("ReverseV2", X, np.int32([3]))


@pytest.mark.parametrize("shift,axis", [(2, 1), ([1, -3], [0, 2]), ([1, 2], [1, 1]), (-7, 2)])
def test_roll_matches_tf(shift, axis):
    shift, axis = np.asarray(shift, np.int32), np.asarray(axis, np.int32)
    assert_same(run("Roll", X, shift, axis), _tf("Roll", input=X, shift=shift, axis=axis))


@pytest.mark.parametrize("axis,count", [(0, 2), (2, 4), (-1, 2)])
def test_split_matches_tf(axis, count):
    assert_same(run("Split", np.int32(axis), X, num_split=count),
                _tf("Split", axis=np.int32(axis), value=X, num_split=count))


@pytest.mark.parametrize("sizes,axis", [([1, 2], 1), ([2, -1, 1], 2), ([0, 3], 1)])
def test_split_v_matches_tf(sizes, axis):
    sizes = np.asarray(sizes, np.int32)
    assert_same(run("SplitV", X, sizes, np.int32(axis), num_split=len(sizes)),
                _tf("SplitV", value=X, size_splits=sizes, axis=np.int32(axis),
                    num_split=len(sizes)))


@pytest.mark.parametrize("op,sizes", [("Split", None), ("SplitV", [1, 1])])
def test_splits_refuse_parts_that_do_not_add_up_as_tf(op, sizes):
    if op == "Split":
        with pytest.raises(tf.errors.InvalidArgumentError):
            _tf("Split", axis=np.int32(1), value=X, num_split=2)
        with pytest.raises(ValueError, match="does not split"):
            run("Split", np.int32(1), X, num_split=2)
    else:
        sizes = np.asarray(sizes, np.int32)
        with pytest.raises(tf.errors.InvalidArgumentError):
            _tf("SplitV", value=X, size_splits=sizes, axis=np.int32(1), num_split=2)
        with pytest.raises(ValueError, match="do not add up"):
            run("SplitV", X, sizes, np.int32(1), num_split=2)


@pytest.mark.parametrize("op", ["Neg", "Abs", "Square", "Sqrt", "Rsqrt", "Exp", "Log", "Sin",
                                "Cos", "Tanh", "Sigmoid", "Floor", "Ceil", "Round", "Sign",
                                "Reciprocal"])
def test_unary_math_matches_tf(op):
    x = np.array([-2.5, -0.5, 0.0, 0.5, 1.5, 2.5, 3.7], np.float32)
    (ours,), (theirs,) = run(op, x), _tf(op, x=x)
    assert ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", ["RealDiv", "Pow", "SquaredDifference", "DivNoNan"])
def test_binary_math_matches_tf(op):
    x = np.array([[-2.5, 0.5, 3.0], [1.0, 2.0, -4.0]], np.float32)
    y = np.array([2.0, 0.0, -1.5], np.float32) if op != "Pow" else np.float32(2)
    (ours,), (theirs,) = run(op, x, y), _tf(op, x=x, y=y)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_integer_division_rounds_towards_zero_as_tf():
    x, y = np.array([7, -7, 7, -7, 6], np.int32), np.array([2, 2, -2, -2, 3], np.int32)
    assert_same(run("Div", x, y), _tf("Div", x=x, y=y))


def test_dynamic_stitch_matches_tf():
    indices = [np.int32([0, 4]), np.int32([[1, 3], [2, 4]])]
    data = [np.float32([[1, 2], [3, 4]]), np.float32(np.arange(8).reshape(2, 2, 2))]
    for op in ("DynamicStitch", "ParallelDynamicStitch"):
        assert_same(run(op, *indices, *data), _tf(op, indices=indices, data=data))


@pytest.mark.parametrize("align", ["RIGHT_LEFT", "LEFT_RIGHT", "LEFT_LEFT", "RIGHT_RIGHT"])
@pytest.mark.parametrize("k,rows,cols", [([-1, 0], -1, -1), ([0, 1], 3, 4), ([-1, 0], 4, -1),
                                         ([1, 1], -1, -1)])
def test_matrix_diag_matches_tf(align, k, rows, cols):
    diagonal = np.arange(1, 13, dtype=np.float32).reshape(2, 2, 3)
    if k[0] == k[1]:
        diagonal = diagonal[:, 0]
    args = (diagonal, np.int32(k), np.int32(rows), np.int32(cols), np.float32(9))
    assert_same(run("MatrixDiagV3", *args, align=align),
                _tf("MatrixDiagV3", diagonal=args[0], k=args[1], num_rows=args[2],
                    num_cols=args[3], padding_value=args[4], align=align))


def test_matrix_diag_refuses_sizes_that_do_not_fit_as_tf():
    args = (np.float32([1, 2, 3]), np.int32(0), np.int32(2), np.int32(2), np.float32(0))
    with pytest.raises(tf.errors.InvalidArgumentError):
        _tf("MatrixDiagV3", diagonal=args[0], k=args[1], num_rows=args[2], num_cols=args[3],
            padding_value=args[4])
    with pytest.raises(ValueError, match="do not fit"):
        run("MatrixDiagV3", *args)


@pytest.mark.parametrize("op,align", [("MatrixDiagPartV3", "RIGHT_LEFT"),
                                      ("MatrixDiagPartV3", "LEFT_RIGHT"),
                                      ("MatrixDiagPartV2", None)])
@pytest.mark.parametrize("k", [[-1, 1], [0, 0], [-2, 3], [1, 2]])
def test_matrix_diag_part_matches_tf(op, align, k):
    x = np.arange(1, 25, dtype=np.float32).reshape(2, 3, 4)
    attrs = {"align": align} if align else {}
    assert_same(run(op, x, np.int32(k), np.float32(0), **attrs),
                _tf(op, input=x, k=np.int32(k), padding_value=np.float32(0), **attrs))


_IMAGES = np.random.default_rng(1).uniform(-5, 5, [2, 4, 5, 3]).astype(np.float32)


@pytest.mark.parametrize("op", ["ResizeBilinear", "ResizeNearestNeighbor"])
@pytest.mark.parametrize("align_corners,half_pixel_centers", [(False, False), (True, False),
                                                              (False, True)])
@pytest.mark.parametrize("size", [[7, 3], [4, 5], [1, 9]])
def test_resizes_match_tf(op, align_corners, half_pixel_centers, size):
    attrs = {"align_corners": align_corners, "half_pixel_centers": half_pixel_centers}
    (ours,), (theirs,) = (run(op, _IMAGES, np.int32(size), **attrs),
                          _tf(op, images=_IMAGES, size=np.int32(size), **attrs))
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("crop", [[3, 4], [1, 1]])
def test_crop_and_resize_matches_tf(method, crop):
    boxes = np.float32([[0, 0, 1, 1], [0.2, 0.1, 0.7, 0.9], [-0.5, 0.3, 1.2, 0.6],
                        [0.9, 0.8, 0.1, 0.2]])
    box_ind = np.int32([0, 1, 1, 0])
    attrs = {"method": method, "extrapolation_value": -7.0}
    (ours,), (theirs,) = (
        run("CropAndResize", _IMAGES, boxes, box_ind, np.int32(crop), **attrs),
        _tf("CropAndResize", image=_IMAGES, boxes=boxes, box_ind=box_ind,
            crop_size=np.int32(crop), **attrs))
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("strides,padding,dilations", [
    ([1, 1], "SAME", [1, 1]), ([2, 2], "SAME", [1, 1]), ([2, 1], "VALID", [1, 1]),
    ([1, 1], "VALID", [2, 1])])
def test_conv2d_backprop_input_matches_tf(strides, padding, dilations):
    rng = np.random.default_rng(2)
    kernel = rng.standard_normal([3, 2, 3, 4]).astype(np.float32)
    x = np.zeros([2, 7, 6, 3], np.float32)
    out = tf.nn.conv2d(x, kernel, [1, *strides, 1], padding, dilations=[1, *dilations, 1])
    dy = rng.standard_normal(out.shape).astype(np.float32)
    attrs = {"strides": [1, *strides, 1], "padding": padding,
             "dilations": [1, *dilations, 1]}
    (ours,), (theirs,) = (
        run("Conv2DBackpropInput", np.int32(x.shape), kernel, dy, **attrs),
        _tf("Conv2DBackpropInput", input_sizes=np.int32(x.shape), filter=kernel,
            out_backprop=dy, **attrs))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_conv3d_backprop_input_matches_tf():
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal([2, 3, 2, 2, 3]).astype(np.float32)
    dy = rng.standard_normal([1, 3, 2, 3, 3]).astype(np.float32)
    attrs = {"strides": [1, 2, 2, 1, 1], "padding": "SAME"}
    sizes = np.int32([1, 5, 4, 3, 2])
    (ours,), (theirs,) = (
        run("Conv3DBackpropInputV2", sizes, kernel, dy, **attrs),
        _tf("Conv3DBackpropInputV2", input_sizes=sizes, filter=kernel, out_backprop=dy,
            **attrs))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block,pairs", [([2, 2], [[0, 0], [1, 0]]), ([1, 3], [[1, 1], [0, 1]]),
                                         ([2], [[1, 1]])])
def test_space_to_batch_and_back_match_tf(block, pairs):
    x = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
    block, pairs = np.int32(block), np.int32(pairs)
    assert_same(run("SpaceToBatchND", x, block, pairs),
                _tf("SpaceToBatchND", input=x, block_shape=block, paddings=pairs))
    batched = run("SpaceToBatchND", x, block, pairs)[0]
    assert_same(run("BatchToSpaceND", batched, block, pairs),
                _tf("BatchToSpaceND", input=batched, block_shape=block, crops=pairs))


@pytest.mark.parametrize("axis", [np.int32(1), np.int32([-1]), np.int64([0])])
def test_expand_dims_takes_a_scalar_or_a_one_element_axis_as_tf(axis):
    assert_same(run("ExpandDims", X, axis), _tf("ExpandDims", input=X, axis=axis))


@pytest.mark.parametrize("align", ["RIGHT_LEFT", "LEFT_RIGHT"])
@pytest.mark.parametrize("k", [[-1, 1], [0, 0], [1, 2]])
def test_matrix_set_diag_matches_tf(align, k):
    x = np.arange(1, 25, dtype=np.float32).reshape(2, 3, 4)
    diagonal = run("MatrixDiagPartV3", x, np.int32(k), np.float32(0), align=align)[0] * 10
    assert_same(run("MatrixSetDiagV3", x, diagonal, np.int32(k), align=align),
                _tf("MatrixSetDiagV3", input=x, diagonal=diagonal, k=np.int32(k), align=align))


def test_scatter_nd_matches_tf_repeated_indices_adding_up():
    indices, updates = np.int32([[0], [2], [0]]), np.float32([[1, 2], [3, 4], [5, 6]])
    assert_same(run("ScatterNd", indices, updates, np.int32([4, 2])),
                _tf("ScatterNd", indices=indices, updates=updates, shape=np.int32([4, 2])))


@pytest.mark.parametrize("op", ["SegmentSum", "SegmentProd", "SegmentMax", "SegmentMin",
                                "SegmentMean"])
def test_segment_reductions_match_tf_empty_segments_included(op):
    data = np.float32([[1, -2], [3, 4], [-5, 6], [7, 8]])
    ids = np.int32([0, 0, 2, 2])
    assert_same(run(op, data, ids), _tf(op, data=data, segment_ids=ids))


@pytest.mark.parametrize("indices,values", [([[0, 1], [2, 3]], [5.0, 6.0]), ([1, 3], 2.5),
                                            (2, [7.0])])
def test_sparse_to_dense_matches_tf(indices, values):
    indices = np.int32(indices)
    shape = np.int32([3, 4] if indices.ndim == 2 else [4])
    values = np.float32(values)
    assert_same(run("SparseToDense", indices, shape, values, np.float32(-1)),
                _tf("SparseToDense", sparse_indices=indices, output_shape=shape,
                    sparse_values=values, default_value=np.float32(-1)))
