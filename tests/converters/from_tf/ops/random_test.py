"""Random ops: TF's shapes and dtypes, determinism in the seed (the caller's key, for
stateful ops and ``tf.random.Generator``s), and the right distributions.

Values cannot match TF's (TF draws with Philox, JAX with its own PRNG), so these tests
check what a caller relies on instead, on large samples.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow as tf

from jaxhub_tf.from_tf.interpreter import run_graph

_N = (200, 100)


def _convert(fn, *specs):
    concrete = tf.function(fn).get_concrete_function(*specs)
    graph_def = concrete.graph.as_graph_def()
    ops = {n.op for n in graph_def.node}
    run = run_graph(graph_def, [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    return concrete, ops, jax.jit(lambda args, rng=None: run({}, args, rng)[0])


_SEED = tf.TensorSpec([2], tf.int32)

# (op the graph must use, TF function of a seed, check of a sample)
STATELESS = [
    ("StatelessRandomUniformV2", lambda s: tf.random.stateless_uniform(_N, s),
     lambda x: (x.min() >= 0) & (x.max() < 1) & (abs(x.mean() - 0.5) < 0.01)),
    ("StatelessRandomNormalV2", lambda s: tf.random.stateless_normal(_N, s),
     lambda x: (abs(x.mean()) < 0.02) & (abs(x.std() - 1) < 0.02)),
    ("StatelessTruncatedNormalV2", lambda s: tf.random.stateless_truncated_normal(_N, s),
     lambda x: (abs(x).max() <= 2) & (abs(x.std() - 0.88) < 0.02)),
    ("StatelessRandomUniformIntV2", lambda s: tf.random.stateless_uniform(
        _N, s, minval=-3, maxval=4, dtype=tf.int32),
     lambda x: (x.min() == -3) & (x.max() == 3) & (abs(x.mean()) < 0.05)),
    ("StatelessRandomUniform", lambda s: tf.raw_ops.StatelessRandomUniform(
        shape=_N, seed=s), lambda x: (x.min() >= 0) & (x.max() < 1)),
    ("StatelessRandomNormal", lambda s: tf.raw_ops.StatelessRandomNormal(shape=_N, seed=s),
     lambda x: abs(x.std() - 1) < 0.02),
    ("StatelessTruncatedNormal", lambda s: tf.raw_ops.StatelessTruncatedNormal(
        shape=_N, seed=s), lambda x: abs(x).max() <= 2),
    ("StatelessRandomUniformInt", lambda s: tf.raw_ops.StatelessRandomUniformInt(
        shape=_N, seed=s, minval=0, maxval=5), lambda x: (x.min() == 0) & (x.max() == 4)),
    ("StatelessRandomUniformFullIntV2", lambda s: tf.random.stateless_uniform(
        _N, s, minval=None, maxval=None, dtype=tf.int32),
     lambda x: (x.min() < -2**30) & (x.max() > 2**30) & (abs(x.mean()) < 2**31 * 0.01)),
    ("StatelessMultinomial", lambda s: tf.random.stateless_categorical(
        tf.math.log([[0.2, 0.8], [0.9, 0.1]]), 5000, s),
     lambda x: (abs(x[0].mean() - 0.8) < 0.03) & (abs(x[1].mean() - 0.1) < 0.03)),
    ("StatelessRandomGetKeyCounterAlg", lambda s: tf.raw_ops.StatelessRandomUniformV2(
        shape=_N, **dict(zip(("key", "counter", "alg"),
                             tf.raw_ops.StatelessRandomGetKeyCounterAlg(seed=s)))),
     lambda x: (x.min() >= 0) & (x.max() < 1)),
    ("StatelessRandomGetAlg", lambda s: tf.raw_ops.StatelessRandomNormalV2(
        shape=_N, key=tf.raw_ops.StatelessRandomGetKeyCounter(seed=s)[0],
        counter=tf.raw_ops.StatelessRandomGetKeyCounter(seed=s)[1],
        alg=tf.raw_ops.StatelessRandomGetAlg()), lambda x: abs(x.mean()) < 0.02),
]

STATEFUL = [
    ("RandomUniform", lambda x: x + tf.random.uniform(_N),
     lambda x: (x.min() >= 0) & (x.max() < 1)),
    ("RandomStandardNormal", lambda x: x + tf.random.normal(_N),
     lambda x: abs(x.std() - 1) < 0.02),
    ("TruncatedNormal", lambda x: x + tf.random.truncated_normal(_N),
     lambda x: abs(x).max() <= 2),
    ("RandomUniformInt", lambda x: x + tf.cast(tf.random.uniform(_N, -2, 3, tf.int32),
                                               tf.float32),
     lambda x: (x.min() == -2) & (x.max() == 2)),
    ("Multinomial", lambda x: x + tf.cast(tf.random.categorical(
        tf.math.log([[0.2, 0.8]] * _N[0]), _N[1], dtype=tf.int32), tf.float32),
     lambda x: (x.min() == 0) & (x.max() == 1) & (abs(x.mean() - 0.8) < 0.01)),
    # Each column a permutation of 0..199: sorted back, it is the column exactly.
    ("RandomShuffle", lambda x: x + tf.random.shuffle(
        tf.tile(tf.range(_N[0], dtype=tf.float32)[:, None], [1, _N[1]])),
     lambda x: np.all(np.sort(x, axis=0) == np.arange(_N[0])[:, None])
     & np.any(x != np.arange(_N[0])[:, None])),
]


def _generator_op(op, **args):
    """TF's generator op ``op`` on a generator's state, as ``tf.random.Generator`` drew
    in older TF releases (and ``binomial`` still draws)."""
    return lambda g: getattr(tf.raw_ops, op)(resource=g.state.handle, algorithm=g.algorithm,
                                             shape=_N, **args)


_INT_RANGE = {"minval": tf.constant(-2, tf.int64), "maxval": tf.constant(3, tf.int64)}

# (op the graph must use, TF function of a tf.random.Generator, check of a sample)
GENERATOR = [
    ("RngReadAndSkip", lambda g: g.uniform(_N),
     lambda x: (x.min() >= 0) & (x.max() < 1) & (abs(x.mean() - 0.5) < 0.01)),
    ("StatefulUniform", _generator_op("StatefulUniform"),
     lambda x: (x.min() >= 0) & (x.max() < 1) & (abs(x.mean() - 0.5) < 0.01)),
    ("StatefulStandardNormalV2", _generator_op("StatefulStandardNormalV2"),
     lambda x: (abs(x.mean()) < 0.02) & (abs(x.std() - 1) < 0.02)),
    ("StatefulTruncatedNormal", _generator_op("StatefulTruncatedNormal"),
     lambda x: (abs(x).max() <= 2) & (abs(x.std() - 0.88) < 0.02)),
    ("StatefulUniformInt", _generator_op("StatefulUniformInt", **_INT_RANGE),
     lambda x: (x.min() == -2) & (x.max() == 2) & (abs(x.mean()) < 0.05)),
    ("StatefulUniformFullInt", _generator_op("StatefulUniformFullInt", dtype=tf.int32),
     lambda x: (x.min() < -2**30) & (x.max() > 2**30) & (abs(x.mean()) < 2**31 * 0.02)),
    ("StatefulRandomBinomial", lambda g: g.binomial(_N, counts=tf.fill(_N, 10.0),
                                                    probs=tf.fill(_N, 0.3)),
     lambda x: (x.min() == 0) & (x.max() <= 10) & (abs(x.mean() - 3) < 0.05)
     & (abs(x.var() - 2.1) < 0.1)),
]

OPS = [op for op, _, _ in STATELESS + STATEFUL + GENERATOR] + [
    "StatelessRandomGetKeyCounter", "SampleDistortedBoundingBoxV2"]


@pytest.mark.parametrize("op,fn,ok", STATELESS, ids=[c[0] for c in STATELESS])
def test_stateless_is_a_function_of_the_seed(op, fn, ok):
    concrete, ops, converted = _convert(fn, _SEED)
    assert op in ops
    seed_a, seed_b = np.array([1, 2], np.int32), np.array([3, 4], np.int32)
    a, = converted([seed_a])
    expected = concrete(tf.constant(seed_a))
    assert a.shape == tuple(expected.shape)
    assert np.dtype(a.dtype) == jax.dtypes.canonicalize_dtype(expected.dtype.as_numpy_dtype)
    np.testing.assert_array_equal(converted([seed_a])[0], a)
    assert np.any(np.asarray(converted([seed_b])[0]) != np.asarray(a))
    assert ok(np.asarray(a, np.float64))


@pytest.mark.parametrize("op,fn,ok", STATEFUL, ids=[c[0] for c in STATEFUL])
def test_stateful_draws_from_the_callers_key(op, fn, ok):
    concrete, ops, converted = _convert(fn, tf.TensorSpec([], tf.float32))
    assert op in ops
    zero = np.float32(0)
    a, = converted([zero], jax.random.key(0))
    assert a.shape == _N and a.dtype == np.float32
    np.testing.assert_array_equal(converted([zero], jax.random.key(0))[0], a)
    assert np.any(np.asarray(converted([zero], jax.random.key(1))[0]) != np.asarray(a))
    assert ok(np.asarray(a, np.float64))
    with pytest.raises(Exception, match="RNG key"):
        converted([zero])


class _Drawing(tf.Module):
    """A serving signature that draws with ``fn`` from a ``tf.random.Generator``."""

    def __init__(self, fn):
        super().__init__()
        self.generator = tf.random.Generator.from_seed(1)
        self.draw = tf.function(lambda: fn(self.generator), input_signature=[])


@pytest.mark.parametrize("op,fn,ok", GENERATOR, ids=[c[0] for c in GENERATOR])
def test_a_generator_draws_from_the_callers_key_and_advances_as_tf(op, fn, ok, tmp_path):
    import jaxhub
    from jaxhub_tf.from_tf.saved_model import load_saved_model

    model = _Drawing(fn)
    assert op in {n.op for n in model.draw.get_concrete_function().graph.as_graph_def().node}
    tf.saved_model.save(model, str(tmp_path), signatures={"draw": model.draw})
    module = load_saved_model(tmp_path)

    def draw(key):
        outputs, state = module.apply(module.params, {}, signature="draw", rng=key,
                                      as_dict=True)
        (out,) = outputs.values()
        return np.asarray(out), jax.tree.leaves(state)

    (a, (state,)), expected = draw(jax.random.key(0)), model.draw()
    assert a.shape == tuple(expected.shape)
    assert a.dtype == jax.dtypes.canonicalize_dtype(expected.dtype.as_numpy_dtype)
    assert ok(a.astype(np.float64)) and ok(expected.numpy().astype(np.float64))
    np.testing.assert_array_equal(state, model.generator.state.numpy())  # advanced as TF's
    np.testing.assert_array_equal(draw(jax.random.key(0))[0], a)
    assert np.mean(draw(jax.random.key(1))[0] == a) < 0.5
    with pytest.raises(jaxhub.SignatureError, match="signature 'draw' draws random"):
        module.apply(module.params, {}, signature="draw")


# -- SampleDistortedBoundingBoxV2: random crops --------------------------------------------

_IMAGE = np.array([60, 80, 3], np.int32)
_BOXES = np.array([[[0.1, 0.2, 0.6, 0.5], [0.5, 0.5, 0.9, 0.95]]], np.float32)
_CROP = {"aspect_ratio_range": (0.5, 2.0), "area_range": (0.1, 0.8), "max_attempts": 50}


def _crop_fn(**attrs):
    def crop(size, boxes, covered):
        begin, extent, box = tf.raw_ops.SampleDistortedBoundingBoxV2(
            image_size=size, bounding_boxes=boxes, min_object_covered=covered,
            **{**_CROP, **attrs})
        return begin, extent, box
    return crop


def _crops(begin, extent, image=_IMAGE):
    """The crops' ``(y, x, h, w)`` and their area over the image's."""
    y, x, h, w = begin[:, 0], begin[:, 1], extent[:, 0], extent[:, 1]
    return y, x, h, w, (h * w) / float(image[0] * image[1])


def _tf_samples(fn, covered, n):
    results = [fn(tf.constant(_IMAGE), tf.constant(_BOXES), tf.constant(covered))
               for _ in range(n)]
    return [np.stack([r[i].numpy() for r in results]) for i in range(3)]


@pytest.mark.parametrize("covered", [0.0, 0.5])
def test_sample_distorted_bounding_box_draws_crops_as_tf_does(covered):
    fn = _crop_fn()
    concrete, ops, converted = _convert(fn, tf.TensorSpec([3], tf.int32),
                                        tf.TensorSpec([1, 2, 4], tf.float32),
                                        tf.TensorSpec([], tf.float32))
    assert "SampleDistortedBoundingBoxV2" in ops
    keys = jax.random.split(jax.random.key(0), 400)
    ours = jax.vmap(lambda k: converted([_IMAGE, _BOXES, np.float32(covered)], k))(keys)
    begin, extent, box = (np.asarray(v) for v in ours)
    tf.random.set_seed(0)
    theirs = _tf_samples(fn, covered, 400)
    assert begin.shape == (400, 3) and box.shape == (400, 1, 1, 4)
    assert begin.dtype == theirs[0].dtype and box.dtype == theirs[2].dtype
    # What every crop is: inside the image, all channels, its box the same rectangle.
    y, x, h, w, area = _crops(begin, extent)
    assert np.all(begin[:, 2] == 0) and np.all(extent[:, 2] == -1)
    assert np.all((y >= 0) & (x >= 0) & (y + h <= _IMAGE[0]) & (x + w <= _IMAGE[1]))
    np.testing.assert_allclose(box[:, 0, 0], np.stack(
        [y / _IMAGE[0], x / _IMAGE[1], (y + h) / _IMAGE[0], (x + w) / _IMAGE[1]], -1),
        rtol=1e-6)
    # Within the ranges (the whole image when no attempt fits), as TF's.
    drawn = area < 1
    assert np.all((area[drawn] >= 0.1 - 1e-6) & (area[drawn] <= 0.8 + 1e-6))
    assert np.all((w[drawn] / h[drawn] >= 0.5 - 0.5 / h[drawn])
                  & (w[drawn] / h[drawn] <= 2.0 + 0.5 / h[drawn]))
    # The same distribution as TF's draws: mean area and aspect ratio, fallback rate.
    *_, t_h, t_w, t_area = _crops(*theirs[:2])
    assert abs(area.mean() - t_area.mean()) < 0.04
    assert abs(np.mean(w / h) - np.mean(t_w / t_h)) < 0.1
    assert abs(np.mean(area == 1) - np.mean(t_area == 1)) < 0.05


def test_sample_distorted_bounding_box_falls_back_to_the_whole_image_as_tf():
    # A crop of at most 10% cannot cover all of a box of 25%: every attempt fails.
    fn = _crop_fn(area_range=(0.05, 0.1))
    _, _, converted = _convert(fn, tf.TensorSpec([3], tf.int32),
                               tf.TensorSpec([1, 2, 4], tf.float32),
                               tf.TensorSpec([], tf.float32))
    args = [_IMAGE, _BOXES, np.float32(1.0)]
    theirs = fn(*[tf.constant(a) for a in args])
    for ours, want in zip(converted(args, jax.random.key(3)), theirs):
        np.testing.assert_array_equal(ours, want.numpy())


def test_sample_distorted_bounding_box_refuses_what_tf_refuses():
    fn = _crop_fn()
    no_boxes = np.zeros([1, 0, 4], np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError):
        fn(tf.constant(_IMAGE), tf.constant(no_boxes), tf.constant(0.1))
    _, _, converted = _convert(fn, tf.TensorSpec([3], tf.int32),
                               tf.TensorSpec([1, 0, 4], tf.float32),
                               tf.TensorSpec([], tf.float32))
    with pytest.raises(Exception, match="no bounding boxes; pass use_image_if_no_bounding"):
        converted([_IMAGE, no_boxes, np.float32(0.1)], jax.random.key(0))
    # With use_image_if_no_bounding_boxes the whole image is the box.
    fn = _crop_fn(use_image_if_no_bounding_boxes=True)
    _, _, converted = _convert(fn, tf.TensorSpec([3], tf.int32),
                               tf.TensorSpec([1, 0, 4], tf.float32),
                               tf.TensorSpec([], tf.float32))
    begin, extent, _ = converted([_IMAGE, no_boxes, np.float32(0.1)], jax.random.key(0))
    assert np.all(np.asarray(begin) + np.maximum(np.asarray(extent), 0) <= _IMAGE)


class _Cropper(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32),
                                  tf.TensorSpec([1, None, 4], tf.float32)])
    def crop(self, image, boxes):
        # Resized to a fixed size: the crop's own size is random.
        begin, size, box = tf.image.sample_distorted_bounding_box(
            tf.shape(image), boxes, min_object_covered=0.3, area_range=(0.2, 0.9))
        resized = tf.image.crop_and_resize(image[None], box[0], [0], [8, 8])
        return {"crop": resized, "begin": begin, "size": size, "box": box}

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32),
                                  tf.TensorSpec([1, None, 4], tf.float32)])
    def sliced(self, image, boxes):
        begin, size, _ = tf.image.sample_distorted_bounding_box(tf.shape(image), boxes)
        return tf.slice(image, begin, size)


def test_a_serving_signature_crops_with_the_callers_key(tmp_path):
    import jaxhub

    model = _Cropper()
    tf.saved_model.save(model, str(tmp_path / "sm"), signatures={"crop": model.crop})
    module = jaxhub.load(tmp_path / "sm", cache_dir=tmp_path / "cache")
    image = np.random.default_rng(0).standard_normal([12, 16, 3]).astype(np.float32)
    inputs = {"image": image, "boxes": _BOXES}
    out = module.apply(module.params, inputs, signature="crop", as_dict=True,
                       rng=jax.random.key(1))
    # TF's crop_and_resize of the box drawn here gives the crop.
    want = tf.image.crop_and_resize(image[None], np.asarray(out["box"])[0], [0], [8, 8])
    np.testing.assert_allclose(out["crop"], want.numpy(), rtol=1e-5, atol=1e-5)
    begin, size = np.asarray(out["begin"]), np.asarray(out["size"])
    assert np.all(begin[:2] + size[:2] <= image.shape[:2])
    again = module.apply(module.params, inputs, signature="crop", as_dict=True,
                         rng=jax.random.key(1))
    np.testing.assert_array_equal(again["begin"], begin)
    with pytest.raises(Exception, match="rng"):
        module.apply(module.params, inputs, signature="crop")


def test_a_slice_of_a_random_size_is_refused_naming_the_random_op(tmp_path):
    from jaxhub_tf.from_tf.host_stages.split import HostStageUnsupportedError
    from jaxhub_tf.from_tf.saved_model import load_saved_model

    model = _Cropper()
    tf.saved_model.save(model, str(tmp_path), signatures={"sliced": model.sliced})
    with pytest.raises(HostStageUnsupportedError,
                       match=r"Slice node .*SampleDistortedBoundingBoxV2 '[^']*' \(params or "
                             r"random numbers\)"):
        load_saved_model(tmp_path)
