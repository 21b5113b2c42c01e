"""Conformance of image resizing against TF, for every sampling-grid convention."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow as tf
from jax import export

from jaxhub_tf.from_tf.interpreter import run_graph
from tests.converters.from_tf.ops._conformance import (Case, assert_vjp_matches_tf, check,
                                                       convert, integers, normal, params,
                                                       uniform)

_SHAPES = (((2, 5, 7, 3),), ((1, 8, 6, 2),))
_SIZES = ((9, 4), (3, 12))


def _resize(op, size, align_corners=False, half_pixel_centers=False):
    def fn(x):
        return getattr(tf.raw_ops, op)(images=x, size=size, align_corners=align_corners,
                                       half_pixel_centers=half_pixel_centers)
    return fn


CASES = []
for _op, _tol in (("ResizeBilinear", 1e-5), ("ResizeNearestNeighbor", 0.0),
                  ("ResizeBicubic", 1e-5)):
    for _size in _SIZES:
        for _align, _half in ((False, False), (True, False), (False, True)):
            CASES.append(Case(
                _op, _resize(_op, _size, _align, _half), _SHAPES,
                dtypes=("float32", "int32") if _op == "ResizeNearestNeighbor" else ("float32",),
                rtol=max(_tol, 1e-6), atol=max(_tol, 1e-6),
                name=f"{_op}-{_size[0]}x{_size[1]}-align{int(_align)}-half{int(_half)}"))
CASES.append(Case("ResizeBilinear", lambda x: tf.image.resize(x, (10, 3)), _SHAPES,
                  dtypes=("float32", "uint8"), name="tf.image.resize", rtol=1e-5, atol=1e-4))

# Area: shrinking (fractional boxes), enlarging, and corners aligned (boxes past the edge).
# TF defines no gradient for ResizeArea: values only (differentiable here).
for _size, _align in (((3, 4), False), ((2, 5), False), ((11, 9), False), ((3, 4), True)):
    CASES.append(Case("ResizeArea", lambda x, s=_size, a=_align: tf.raw_ops.ResizeArea(
        images=x, size=s, align_corners=a), _SHAPES, dtypes=("float32", "uint8"), grad=False,
        name=f"ResizeArea-{_size[0]}x{_size[1]}-align{int(_align)}"))


# Boxes partly outside the image (filled with the extrapolation value), a crop of one
# pixel per axis (the box's center), boxes from either image of the batch.
_CROP_INPUTS = dict(shapes=(((2, 5, 6, 3), (4, 4), (4,)),), dtypes=(("float32", "float32",
                    "int32"),), sample=(normal, uniform(-0.3, 1.2), integers(0, 2)),
                    batched=False)
CASES += [
    Case("CropAndResize", lambda x, b, i: tf.image.crop_and_resize(x, b, i, (3, 4)),
         **_CROP_INPUTS),
    # Constant boxes: TF's gradient for boxes is the bilinear one whatever the method.
    Case("CropAndResize", lambda x: tf.image.crop_and_resize(
        x, [[0.1, -0.2, 0.7, 0.9], [0.0, 0.3, 1.1, 0.8]], [1, 0], (1, 5), method="nearest",
        extrapolation_value=-1.0), (((2, 5, 6, 3),),), name="CropAndResize-nearest-one-row",
         batched=False),
]


# Colour: images in [0, 1] with a grey pixel row (zero chroma) and a black one, whose
# gradients are ties (values only there); factors and deltas computed from tensor values.
# TF defines no gradient for the adjust ops (differentiable here).
def _pixels(rng, shape, dtype):
    x = rng.random(shape)
    x[..., 0, :, :] = x[..., 0, :, :1]  # grey
    x[..., 1, 0, :] = 0  # black
    return x.astype(dtype)


_IMAGES = (((2, 3, 4, 3), ()),)
CASES += [
    Case("RGBToHSV", tf.image.rgb_to_hsv, (((2, 3, 4, 3),),), sample=uniform(0, 1)),
    Case("RGBToHSV", tf.image.rgb_to_hsv, (((2, 3, 4, 3),),), sample=_pixels, grad=False,
         name="RGBToHSV-grey-black"),
    # TF declares HSVToRGB not differentiable (zero gradients): values only.
    Case("HSVToRGB", tf.image.hsv_to_rgb, (((2, 3, 4, 3),),), sample=uniform(0, 1), grad=False),
    Case("AdjustHue", tf.image.adjust_hue, _IMAGES, sample=(_pixels, uniform(-1, 1)),
         grad=False),
    Case("AdjustSaturation", tf.image.adjust_saturation, _IMAGES,
         sample=(_pixels, uniform(0, 3)), grad=False),
    Case("AdjustContrastv2", tf.image.adjust_contrast, _IMAGES,
         sample=(_pixels, uniform(-1, 3)), grad=False),
]

CASES += [
    Case("ExtractImagePatches", lambda x: tf.image.extract_patches(
        x, [1, 3, 2, 1], [1, 2, 1, 1], [1, 1, 1, 1], "VALID"), _SHAPES),
    Case("ExtractImagePatches", lambda x: tf.image.extract_patches(
        x, [1, 2, 3, 1], [1, 3, 2, 1], [1, 2, 1, 1], "SAME"), _SHAPES,
         name="ExtractImagePatches-same-dilated"),
]



def _boxes(rng, shape, dtype):
    """Boxes in the unit square, a third of them with their corners given in reverse."""
    corner = rng.uniform(0, 1, (shape[0], 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.05, 0.4, (shape[0], 2))], 1)
    boxes[::3] = boxes[::3][:, [2, 3, 0, 1]]
    return boxes.astype(dtype)


def _nms(op, size, **kw):
    return lambda b, s, t: getattr(tf.raw_ops, op)(
        boxes=b, scores=s, max_output_size=size, iou_threshold=t[0], score_threshold=t[1],
        pad_to_max_output_size=True, **kw)


# Padded to a constant size (unpadded, the size depends on the scores). The thresholds
# are computed from tensor values: they decide values only. TF has no gradient.
_NMS_SHAPES = (((40, 4), (40,), (2,)), ((3, 4), (3,), (2,)))
CASES += [
    Case("NonMaxSuppressionV4", _nms("NonMaxSuppressionV4", 7), _NMS_SHAPES,
         sample=(_boxes, uniform(0, 1), uniform(0.2, 0.6)), grad=False, batched=False),
    Case("NonMaxSuppressionV5", _nms("NonMaxSuppressionV5", 50, soft_nms_sigma=0.0),
         _NMS_SHAPES, sample=(_boxes, uniform(0, 1), uniform(0.2, 0.6)), grad=False,
         batched=False),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)


@pytest.mark.parametrize("op", ["ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic"])
def test_corners_aligned_with_half_pixel_centers_is_refused_as_tf_refuses_it(op):
    with pytest.raises(tf.errors.InvalidArgumentError, match="align_corners must be False"):
        _resize(op, (4, 4), True, True)(tf.zeros((1, 3, 3, 1)))
    _, converted = convert(Case(op, _resize(op, (4, 4), True, True)), [(1, 3, 3, 1)],
                           [np.float32])
    with pytest.raises(Exception, match=f"TF node .*\\({op}\\).*align_corners and "
                                        "half_pixel_centers cannot both be true"):
        converted(np.zeros((1, 3, 3, 1), np.float32))


def _back_to_input_size(op, align_corners, half_pixel_centers):
    """A map pooled to a third of the image, resized back to the image's size (a dense
    prediction's side output, HED's): sizes a signature with free image sizes leaves
    symbolic."""
    def fn(x):
        pooled = tf.nn.avg_pool2d(x, 3, 3, "SAME")
        return getattr(tf.raw_ops, op)(images=pooled, size=tf.shape(x)[1:3],
                                       align_corners=align_corners,
                                       half_pixel_centers=half_pixel_centers)
    return fn


@pytest.mark.parametrize("align_corners, half_pixel_centers", [(False, False), (True, False),
                                                               (False, True)])
@pytest.mark.parametrize("op", ["ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic"])
def test_resizes_between_symbolic_sizes_match_tensorflow(op, align_corners,
                                                         half_pixel_centers):
    """One export with symbolic batch, height and width, run at several image sizes (and
    its gradient): the taps are computed on the device, as TF's kernels compute them."""
    fn = _back_to_input_size(op, align_corners, half_pixel_centers)
    concrete = tf.function(fn).get_concrete_function(tf.TensorSpec([None] * 3 + [2]))
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    exported = export.export(jax.jit(lambda x: run({}, [x])[0][0]))(
        jax.ShapeDtypeStruct((*export.symbolic_shape("b, h, w"), 2), np.float32))
    rng = np.random.default_rng(0)
    for shape in ((2, 7, 11, 2), (1, 12, 5, 2), (3, 1, 4, 2)):
        x = rng.standard_normal(shape).astype(np.float32)
        got, vjp = jax.vjp(exported.call, x)
        np.testing.assert_allclose(got, concrete(tf.constant(x)).numpy(), rtol=1e-5,
                                   atol=1e-5)
        cotangent = rng.standard_normal(got.shape).astype(np.float32)
        assert_vjp_matches_tf(concrete, vjp, x, cotangent)
