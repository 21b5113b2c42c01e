"""Random ops, drawn from the explicit PRNG key of the running context.

TF's stateful random ops (``RandomUniform``, ...) and ``tf.random.Generator``s have no
JAX counterpart: each gets a fresh key split off the key the caller passes (a train
variant's ``rng``, a signature's), so the converted function stays pure. Values differ
from TF's, distributions do not: so for ``SampleDistortedBoundingBox`` (a random crop),
drawn as TF's kernel draws it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax, check_value, is_static, shape_tuple

#: The numbers come from the caller's JAX key, so TF's op seeds do not pick them.
_SEEDS = ("seed", "seed2")

#: The ops that need the caller's key: a function that may run one takes ``rng``.
#: A ``tf.random.Generator``'s ops (``RngReadAndSkip``, ``Stateful*``) are among them:
#: read from the stored state, a signature that does not return that state would draw
#: the same numbers on every call.
KEYED_OPS = frozenset({"RandomUniform", "RandomStandardNormal", "TruncatedNormal",
                       "RandomUniformInt", "Multinomial", "RandomShuffle",
                       "SampleDistortedBoundingBox", "SampleDistortedBoundingBoxV2",
                       "RngReadAndSkip", "StatefulUniform", "StatefulStandardNormalV2",
                       "StatefulTruncatedNormal", "StatefulUniformInt",
                       "StatefulUniformFullInt", "StatefulRandomBinomial"})


def draws_random(interp: Any, fn: Any) -> bool:
    """Whether graph ``fn`` may run one of :data:`KEYED_OPS`, itself or in a function it
    calls, the gradient functions of its ``tf.custom_gradient``s included (``interp`` is
    the :class:`~jaxhub_tf.from_tf.interpreter.Interpreter`)."""
    return any(node.op in KEYED_OPS for _, node in interp.reachable_nodes(fn))


def drawing(fn: Callable, draws: bool) -> Callable:
    """``fn``, a signature function ``fn(params, inputs, rng=None)``, marked as drawing
    random numbers when ``draws`` (:func:`draws_random` of its graph)."""
    fn.draws_random = draws
    return fn


def keyed_signatures(signatures: Mapping[str, tuple[Callable, Any]]) -> set[str]:
    """The names of the signatures whose functions draw random numbers.

    A converter makes every signature function with :func:`drawing`, however it came to
    be (a serving signature, the root's ``__call__``, a TF1 Hub module's signature): these
    names are ``jaxhub.create_module``'s ``with_rng``, so each of them is traced with a
    key and asks its callers for one.
    """
    return {name for name, (fn, _) in signatures.items() if fn.draws_random}


@register("RandomUniform", attrs=_SEEDS, fold=False)
def _uniform(node, shape, carrier=None):
    key = node.ctx.next_key(node.op)
    return jax.random.uniform(key, _drawn_shape(shape, carrier), node.attr("dtype"))


@register("RandomStandardNormal", attrs=_SEEDS, fold=False)
def _normal(node, shape, carrier=None):
    key = node.ctx.next_key(node.op)
    return jax.random.normal(key, _drawn_shape(shape, carrier), node.attr("dtype"))


@register("TruncatedNormal", attrs=_SEEDS, fold=False)
def _truncated_normal(node, shape, carrier=None):
    key = node.ctx.next_key(node.op)
    return jax.random.truncated_normal(key, -2.0, 2.0, _drawn_shape(shape, carrier),
                                       node.attr("dtype"))


@register("RandomUniformInt", attrs=_SEEDS, fold=False)
def _uniform_int(node, shape, minval, maxval, carrier=None):
    key = node.ctx.next_key(node.op)
    return jax.random.randint(key, _drawn_shape(shape, carrier), as_jax(minval),
                              as_jax(maxval),
                              np.asarray(minval).dtype if is_static(minval) else minval.dtype)


def _drawn_shape(shape, carrier) -> tuple:
    """The shape to draw: ``shape``'s values, or, when a host stage computed them (the
    signature's input values set them), the shape of the zeros it fed (``carrier``)."""
    return tuple(carrier.shape) if carrier is not None else shape_tuple(shape)


@register("Multinomial", attrs=_SEEDS + ("output_dtype",), fold=False)
def _multinomial(node, logits, num_samples):
    """``tf.random.categorical``: ``num_samples`` class indices per row of logits."""
    logits = as_jax(logits)
    samples = jax.random.categorical(node.ctx.next_key(node.op), logits[:, None, :], axis=-1,
                                     shape=(logits.shape[0], int(np.asarray(num_samples))))
    return samples.astype(jax.dtypes.canonicalize_dtype(node.attr("output_dtype")))


@register("RandomShuffle", attrs=_SEEDS, fold=False)
def _random_shuffle(node, x):
    """A random permutation of ``x`` along its first axis."""
    return jax.random.permutation(node.ctx.next_key(node.op), as_jax(x), axis=0)


#: How far TF's kernels move a generator's Philox counter per number drawn (measured:
#: ``uniform([3])`` adds 768), and per binomial sample (up to 200 tries of 256).
_COUNTER_STEPS = 256
_BINOMIAL_STEPS = 200 * _COUNTER_STEPS


def _advance(node, handle, steps) -> Any:
    """Moves the counter of the generator state ``handle`` ``steps`` ahead, as TF's
    kernels do (the carry into the counter's high word is not modelled); returns the
    state it had."""
    state = node.ctx.state[handle.key]
    dtype = np.asarray(state).dtype if is_static(state) else state.dtype
    node.ctx.state[handle.key] = as_jax(state).at[0].add(as_jax(steps).astype(dtype))
    return state


@register("RngReadAndSkip", fold=False)
def _rng_read_and_skip(node, handle, alg, delta):
    """A ``tf.random.Generator`` step: returns its state, advances the stored counter.

    The returned state (the key and counter of the stateless ops that draw the numbers)
    is drawn from the caller's key, so that key decides every random number, as for
    TF's stateful ops; the stored state still advances as in TF, and a signature that
    returns state returns it.
    """
    key = node.ctx.next_key(node.op)
    state = _advance(node, handle, as_jax(delta) * _COUNTER_STEPS)
    return jax.random.bits(key, np.shape(state), jnp.uint32).astype(state.dtype)


def _generator_draw(node, handle, shape, steps_per_number: int) -> tuple[jax.Array, tuple]:
    """The key and shape of one draw of a generator op that draws itself (older TF
    releases drew every ``tf.random.Generator`` number so; ``binomial`` still does), its generator
    advanced as TF's kernel advances it."""
    key = node.ctx.next_key(node.op)
    shape = shape_tuple(shape)
    _advance(node, handle, int(np.prod(shape)) * steps_per_number)
    return key, shape


@register("StatefulUniform", "StatefulStandardNormalV2", "StatefulTruncatedNormal",
          fold=False)
def _stateful_float(node, handle, alg, shape):
    key, shape = _generator_draw(node, handle, shape, _COUNTER_STEPS)
    dtype = node.attr("dtype")
    if node.op == "StatefulUniform":
        return jax.random.uniform(key, shape, dtype)
    if node.op == "StatefulStandardNormalV2":
        return jax.random.normal(key, shape, dtype)
    return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)


@register("StatefulUniformInt", fold=False)
def _stateful_uniform_int(node, handle, alg, shape, minval, maxval):
    key, shape = _generator_draw(node, handle, shape, _COUNTER_STEPS)
    return jax.random.randint(key, shape, as_jax(minval), as_jax(maxval),
                              jax.dtypes.canonicalize_dtype(node.attr("dtype")))


@register("StatefulUniformFullInt", fold=False)
def _stateful_uniform_full_int(node, handle, alg, shape):
    """Integers over the dtype's whole range: its bits, drawn as unsigned words."""
    key, shape = _generator_draw(node, handle, shape, _COUNTER_STEPS)
    dtype = jax.dtypes.canonicalize_dtype(node.attr("dtype"))
    unsigned = jnp.dtype(f"uint{8 * dtype.itemsize}")
    return jax.lax.bitcast_convert_type(jax.random.bits(key, shape, unsigned), dtype)


@register("StatefulRandomBinomial", fold=False)
def _stateful_binomial(node, handle, alg, shape, counts, probs):
    """``tf.random.Generator.binomial``: successes in ``counts`` tries of ``probs``."""
    key, shape = _generator_draw(node, handle, shape, _BINOMIAL_STEPS)
    counts, probs = as_jax(counts), as_jax(probs)
    drawn = jax.random.binomial(key, jnp.broadcast_to(counts, shape),
                                jnp.broadcast_to(probs, shape), shape, counts.dtype)
    return drawn.astype(jax.dtypes.canonicalize_dtype(node.attr("dtype")))


def _check_crop_attrs(node) -> tuple[list[float], list[float], int]:
    """``aspect_ratio_range``, ``area_range``, ``max_attempts``, checked as TF's kernel."""
    aspect = [float(v) for v in node.attr("aspect_ratio_range", (0.75, 1.33))]
    area = [float(v) for v in node.attr("area_range", (0.05, 1.0))]
    attempts = int(node.attr("max_attempts", 100))
    if len(aspect) != 2 or min(aspect) <= 0 or len(area) != 2 or min(area) <= 0 or \
            max(area) > 1 or attempts <= 0:
        raise ValueError(f"TF node {node.name!r} ({node.op}): aspect_ratio_range {aspect} "
                         f"must be 2 positive numbers, area_range {area} 2 numbers in (0, 1], "
                         f"max_attempts {attempts} positive (TF refuses the others)")
    return aspect, area, attempts


def _random_crops(key, width, height, aspect, area, attempts: int):
    """``attempts`` candidate crops as TF's ``GenerateRandomCrop`` draws them: an aspect
    ratio, a height between the smallest and largest that fit the area range (widths
    rounded as C's ``lrintf``), a position. Returns ``(x, y, w, h, ok)``, one per attempt."""
    u = jax.random.uniform(key, (4, attempts))
    ratio = u[0] * (aspect[1] - aspect[0]) + aspect[0]
    w_f, h_f = width.astype(jnp.float32), height.astype(jnp.float32)
    min_area, max_area = area[0] * w_f * h_f, area[1] * w_f * h_f
    h = jnp.round(jnp.sqrt(min_area / ratio)).astype(jnp.int32)
    max_h = jnp.round(jnp.sqrt(max_area / ratio)).astype(jnp.int32)
    # The largest height whose rounded width fits the image.
    fitted = ((w_f + 0.5 - 1e-7) / ratio).astype(jnp.int32)
    fitted -= (jnp.round(fitted * ratio) > w_f).astype(jnp.int32)
    max_h = jnp.where(jnp.round(max_h * ratio) > w_f, fitted, max_h)
    max_h = jnp.minimum(max_h, height)
    h = jnp.minimum(h, max_h)
    h += jnp.floor(u[1] * (max_h - h + 1)).astype(jnp.int32)
    w = jnp.round(h * ratio).astype(jnp.int32)
    # Off by one from rounding: one row more, then one fewer, as TF tries.
    bigger = w * h < min_area
    h = jnp.where(bigger, h + 1, h)
    w = jnp.where(bigger, jnp.round(h * ratio).astype(jnp.int32), w)
    smaller = w * h > max_area
    h = jnp.where(smaller, h - 1, h)
    w = jnp.where(smaller, jnp.round(h * ratio).astype(jnp.int32), w)
    ok = ((w * h >= min_area) & (w * h <= max_area) & (w <= width) & (h <= height)
          & (w > 0) & (h > 0) & (width > 0) & (height > 0))
    y = jnp.floor(u[2] * (height - h)).astype(jnp.int32)
    x = jnp.floor(u[3] * (width - w)).astype(jnp.int32)
    return x, y, w, h, ok


def _covers(x, y, w, h, boxes, min_covered):
    """Whether each crop covers at least ``min_covered`` of some box of one pixel or
    more (``boxes``: ``[n, 4]`` pixel rectangles ``x0, y0, x1, y1``)."""
    x0, y0, x1, y1 = (boxes[:, i][None, :] for i in range(4))
    inter_w = jnp.minimum(x[:, None] + w[:, None], x1) - jnp.maximum(x[:, None], x0)
    inter_h = jnp.minimum(y[:, None] + h[:, None], y1) - jnp.maximum(y[:, None], y0)
    inter = jnp.where((inter_w < 0) | (inter_h < 0), 0, inter_w * inter_h)
    box_area = ((x1 - x0) * (y1 - y0)).astype(jnp.float32)
    covered = (box_area >= 1) & (inter / jnp.maximum(box_area, 1) >= min_covered)
    return jnp.any(covered, axis=1) & (w * h >= 1)


def _sample_distorted_bounding_box(node, image_size, boxes, min_covered):
    aspect, area, attempts = _check_crop_attrs(node)
    size = as_jax(image_size)
    height, width = size[0].astype(jnp.int32), size[1].astype(jnp.int32)
    flat = as_jax(boxes, jnp.float32).reshape(-1, 4)
    if np.shape(flat)[0] == 0 and not node.attr("use_image_if_no_bounding_boxes", False):
        raise ValueError(f"TF node {node.name!r} ({node.op}): no bounding boxes; pass "
                         f"use_image_if_no_bounding_boxes=True to crop from the whole image")
    check_value(node, (boxes >= 0) & (boxes <= 1) if is_static(boxes) else
                (as_jax(boxes) >= 0) & (as_jax(boxes) <= 1),
                "bounding box coordinates must be in [0, 1]")
    check_value(node, np.asarray(min_covered) >= 0 if is_static(min_covered) else
                as_jax(min_covered) >= 0, "min_object_covered must be >= 0")
    if np.shape(flat)[0] == 0:
        flat = jnp.array([[0.0, 0.0, 1.0, 1.0]], jnp.float32)
    # Normalized [y0, x0, y1, x1] to pixel rectangles, truncated as TF's casts.
    scale = jnp.stack([width, height, width, height]).astype(jnp.float32)
    pixels = (flat[:, jnp.array([1, 0, 3, 2])] * scale).astype(jnp.int32)
    x, y, w, h, ok = _random_crops(node.ctx.next_key(node.op), width, height, aspect, area,
                                   attempts)
    ok &= _covers(x, y, w, h, pixels, as_jax(min_covered, jnp.float32))
    first = jnp.argmax(ok)
    found = ok[first]
    # No attempt fits: the whole image, as TF.
    x, y = jnp.where(found, x[first], 0), jnp.where(found, y[first], 0)
    w, h = jnp.where(found, w[first], width), jnp.where(found, h[first], height)
    dtype = jax.dtypes.canonicalize_dtype(node.attr("T"))
    begin = jnp.stack([y, x, jnp.zeros_like(x)]).astype(dtype)
    extent = jnp.stack([h, w, -jnp.ones_like(w)]).astype(dtype)
    corners = jnp.stack([y / height, x / width, (y + h) / height, (x + w) / width])
    return begin, extent, corners.astype(jnp.float32).reshape(1, 1, 4)


_CROP_ATTRS = _SEEDS + ("T", "aspect_ratio_range", "area_range", "max_attempts",
                        "use_image_if_no_bounding_boxes")


@register("SampleDistortedBoundingBoxV2", attrs=_CROP_ATTRS, fold=False)
def _sample_distorted_bounding_box_v2(node, image_size, boxes, min_object_covered):
    """``tf.image.sample_distorted_bounding_box``: a random crop of the image, as TF's
    kernel draws it (``max_attempts`` tries of an aspect ratio, a size in ``area_range``
    and a position, the first that covers ``min_object_covered`` of a box; else the whole
    image), from the caller's key. Returns ``begin`` and ``size`` for ``tf.slice`` and the
    crop as a normalized box ``[1, 1, 4]``."""
    return _sample_distorted_bounding_box(node, image_size, boxes, min_object_covered)


@register("SampleDistortedBoundingBox", attrs=_CROP_ATTRS + ("min_object_covered",),
          fold=False)
def _sample_distorted_bounding_box_v1(node, image_size, boxes):
    """As ``SampleDistortedBoundingBoxV2``, with ``min_object_covered`` an attribute."""
    return _sample_distorted_bounding_box(node, image_size, boxes,
                                          float(node.attr("min_object_covered", 0.1)))
