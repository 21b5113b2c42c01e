"""``python -m benchmarks.lowering_ab MODEL``: a converter lowering on and off, in one process.

Converts one shipped model (:mod:`benchmarks.real_models`) twice into fresh caches: once
with the chosen lowerings of ``converters/from_tf/ops/conv.py`` switched off (the program
the converter emitted before them), once as the converter stands; then alternates, call
by call, the jitted forward pass and the jitted gradient (of the summed mean squared
outputs w.r.t. the params) of both modules with TensorFlow's ``serving_default`` and its
``GradientTape`` gradient. On a machine shared with other work only such alternating
figures compare. Lowerings that can be switched off:

* ``few-inputs``: convs over few input channels as broadcast multiply-adds
  (``MAX_BROADCAST_TERMS``), then ``lax.conv_general_dilated``;
* ``barriers``: the optimization barriers around those multiply-adds;
* ``max-pool-vjp``: 2-D max pooling's written-out VJP, then autodiff of its JVP;
* ``unpadded``: the cell of padding given to unpadded convolutions (``_free_padding``);
* ``depth-taps``: 3-D convolutions as one 2-D convolution, their depth taps stacked in
  the channels (transposed ones per stride phase), then XLA's 3-D ones;
* ``atrous``: ``SpaceToBatchND`` -> conv -> ``BatchToSpaceND`` as one dilated conv
  (``converters/from_tf/atrous.py``), then the three ops one by one;
* ``step-lists``: counted ``While`` loops scanning over the lists they read and write at
  their counter (``_StepLists`` in ``converters/from_tf/ops/control_flow.py``), then
  lists carried whole and indexed per step.
* ``patches-kernel-grad``: kernel gradients of up to 9 taps over up to 32 input channels
  as one product of the patches (``_takes_patches_kernel_grad``), then XLA's swapped
  convolution;
* ``max-pool-winners``: 2-D max pooling's input gradient summed at the input's resolution
  (``_winners_gradient``), then per stride phase, interleaved by interior pads.
* ``kernel-grad-border``: kernel gradients of convs with symbolic sizes convolving the
  input's interior with its static padding (``_zero_border``), then the padded input
  unpadded with a cell.
* ``inflated-kernel-grad``: 2-D kernel gradients as a convolution stretched along its
  last spatial axis (``_eigen_kernel_grad``, ``_inflated_conv``), then unstretched.
* ``depth-slabs``: a 3-D convolution's stacked depth-tap outputs computed slab by slab of
  depth rows in a loop (``_depth_slab_rows``, ``_depth_slabs_conv``), then whole.
* ``ynn-boundary``: the clamp that keeps broadcast multiply-adds out of XLA:CPU's
  YNNPACK fusions (``_outside_ynn_fusions``), then none.
* ``unswapped-windows``: convs whose output is smaller than the window, at stride 1
  along it with fewer taps than input positions, as XLA's convolution forward
  (``_takes_patches``, ``_patches_grad_conv``), then as patches.

Prints the medians (ms) and the ratios TF / jaxhub. Usage::

    python -m benchmarks.lowering_ab tempocnn [--batch 32] [--calls 10]
        [--off few-inputs,barriers,max-pool-vjp]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import pathlib
import tempfile
import time
from typing import Callable, Iterator

import numpy as np

from benchmarks import real_models
from benchmarks.real_models_bench import DEFAULT_WORKDIR

LOWERINGS = ("few-inputs", "barriers", "max-pool-vjp", "unpadded", "depth-taps", "atrous",
             "step-lists", "patches-kernel-grad", "max-pool-winners", "kernel-grad-border",
             "inflated-kernel-grad", "depth-slabs", "ynn-boundary",
             "unswapped-windows")


@contextlib.contextmanager
def switched_off(lowerings: list[str]) -> Iterator[None]:
    """The converter as it was without ``lowerings`` while the block converts."""
    import jax
    from jaxhub_tf.from_tf import atrous
    from jaxhub_tf.from_tf.ops import control_flow, conv
    saved = (conv.MAX_BROADCAST_TERMS, conv._spatial_2d, jax.lax.optimization_barrier,
             conv._free_padding, conv._depth_taps_conv, atrous.fuse,
             control_flow._StepLists.of, conv._takes_patches_kernel_grad,
             conv._winners_gradient, conv._zero_border, conv._eigen_kernel_grad,
             conv._depth_slab_rows, conv._outside_ynn_fusions, conv._takes_patches)
    if "few-inputs" in lowerings:
        conv.MAX_BROADCAST_TERMS = 0
    if "max-pool-vjp" in lowerings:
        conv._spatial_2d = lambda *args: False
    if "barriers" in lowerings:
        jax.lax.optimization_barrier = lambda value: value
    if "unpadded" in lowerings:
        conv._free_padding = lambda sizes, window, strides, dilations: (
            tuple(strides), [(0, 0)] * len(sizes), None)
    if "depth-taps" in lowerings:
        conv._depth_taps_conv = lambda x, kernel, strides, dilations, pads: conv._xla_conv(
            x, kernel, conv._ConvDims("NDHWC", tuple(strides), tuple(dilations)), pads)
    if "atrous" in lowerings:
        atrous.fuse = lambda fn: fn
    if "step-lists" in lowerings:
        control_flow._StepLists.of = classmethod(lambda cls, *args: cls())
    if "patches-kernel-grad" in lowerings:
        conv._takes_patches_kernel_grad = lambda kernel_shape: False
    if "max-pool-winners" in lowerings:
        conv._winners_gradient = _phases_interleaved
    if "kernel-grad-border" in lowerings:
        conv._zero_border = lambda pads, strides: ()
    if "inflated-kernel-grad" in lowerings:
        conv._eigen_kernel_grad = lambda window, dims: False
    if "depth-slabs" in lowerings:
        conv._depth_slab_rows = lambda x, kernel_shape, strides, dilations, pads: 0
    if "ynn-boundary" in lowerings:
        conv._outside_ynn_fusions = lambda x: x
    if "unswapped-windows" in lowerings:
        conv._takes_patches = lambda in_sizes, window, strides, out_sizes: True
    try:
        yield
    finally:
        (conv.MAX_BROADCAST_TERMS, conv._spatial_2d, jax.lax.optimization_barrier,
         conv._free_padding, conv._depth_taps_conv, atrous.fuse,
         control_flow._StepLists.of, conv._takes_patches_kernel_grad,
         conv._winners_gradient, conv._zero_border, conv._eigen_kernel_grad,
         conv._depth_slab_rows, conv._outside_ynn_fusions, conv._takes_patches) = saved


def _phases_interleaved(winner, dy, window, strides, pads, in_sizes):
    """2-D max pooling's input gradient as it was before ``max-pool-winners``: per stride
    phase of the input, the cotangent's slices where each tap won, interleaved."""
    import jax.numpy as jnp
    from jaxhub_tf.from_tf.ops import conv
    (kh, kw), grid = window, []
    plans = [conv._phase_plan(k, s, 1, lo, n, o) for k, s, (lo, _), n, o in zip(
        window, strides, pads, in_sizes, dy.shape[1:3])]
    (count0, pads0, phases0), (count1, pads1, phases1) = plans
    dyp = conv._pad_spatial(dy, (pads0, pads1))
    winner = conv._pad_axes(winner, ((0, 0), pads0, pads1, (0, 0)), -1)
    counts = (count0, count1)
    for taps0 in phases0:
        row = []
        for taps1 in phases1:
            total = jnp.zeros((dy.shape[0], count0, count1, dy.shape[3]), dy.dtype)
            for (i, start0), (j, start1) in itertools.product(taps0, taps1):
                won = conv._strided(winner, (start0, start1), counts, (1, 1)) == i * kw + j
                total = total + jnp.where(won, conv._strided(dyp, (start0, start1), counts,
                                                             (1, 1)), 0)
            row.append(total)
        grid.append(row)
    return conv._strided(conv._interleave(grid), (0, 0), in_sizes, (1, 1))


def _jax_calls(saved_model: pathlib.Path, inputs: dict[str, np.ndarray], grad: bool = True
               ) -> tuple[Callable[[], object], Callable[[], object]]:
    """Blocking calls of the converted module's jitted forward pass and gradient, each
    called once (the gradient if ``grad``)."""
    import jax
    import jax.numpy as jnp
    import jaxhub
    module = jaxhub.load(saved_model, cache_dir=pathlib.Path(tempfile.mkdtemp()))

    def apply(params, x):
        return module.apply(params, x, signature="serving_default", as_dict=True)

    def loss(params, x):
        return sum(jnp.mean(jnp.square(y)) for y in apply(params, x).values())

    forward, grad = jax.jit(apply), jax.jit(jax.grad(loss))
    calls = (lambda: jax.block_until_ready(forward(module.params, inputs)),
             lambda: jax.block_until_ready(grad(module.params, inputs)))
    # Traced here, inside `switched_off`: the first gradient converts the model again.
    for call in calls[:2 if grad else 1]:
        call()
    return calls


def _tf_calls(saved_model: pathlib.Path, inputs: dict[str, np.ndarray]
              ) -> tuple[Callable[[], object], Callable[[], object]]:
    import tensorflow as tf
    loaded = tf.saved_model.load(str(saved_model))
    signature = loaded.signatures["serving_default"]
    x = {k: tf.constant(v) for k, v in inputs.items()}
    variables = signature.trainable_variables

    @tf.function
    def gradient():
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_mean(tf.square(y)) for y in signature(**x).values()])
        return tape.gradient(loss, variables)

    # Each call holds `loaded`, which owns the signature's variables.
    return (lambda owner=loaded: [y.numpy() for y in signature(**x).values()],
            lambda owner=loaded: [g.numpy() for g in gradient()])


def alternate(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median milliseconds of each call, timed in turn ``rounds`` times after 2 warm-ups."""
    for call in calls.values():
        call()
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(real_models.MODELS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--calls", type=int, default=10, help="alternating rounds")
    parser.add_argument("--off", default=",".join(LOWERINGS),
                        help=f"lowerings switched off in 'before': {', '.join(LOWERINGS)}")
    parser.add_argument("--no-grad", action="store_true", help="forward passes only")
    parser.add_argument("--no-tf-grad", action="store_true",
                        help="no TF gradient (fer's aborts the process with oneDNN on)")
    parser.add_argument("--workdir", type=pathlib.Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    off = [name.strip() for name in args.off.split(",") if name.strip()]
    if set(off) - set(LOWERINGS):
        parser.error(f"unknown lowerings {sorted(set(off) - set(LOWERINGS))}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved_model = real_models.ensure_saved_models([args.model], args.workdir)[args.model]
    inputs = real_models.example_inputs(args.model, args.batch)
    with switched_off(off):
        before = _jax_calls(saved_model, inputs, not args.no_grad)
    after = _jax_calls(saved_model, inputs, not args.no_grad)
    tf_calls = _tf_calls(saved_model, inputs)
    calls = {"before": before[0], "after": after[0], "tf": tf_calls[0]}
    if not args.no_grad:
        calls.update({"before grad": before[1], "after grad": after[1]})
        if not args.no_tf_grad:
            calls["tf grad"] = tf_calls[1]
    ms = alternate(calls, args.calls)
    print(f"{args.model}, batch {args.batch}, off in 'before': {', '.join(off)}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for suffix in ("", " grad"):
        if "before" + suffix not in ms:
            continue
        b, a, t = ms["before" + suffix], ms["after" + suffix], ms.get("tf" + suffix)
        line = (f"  {suffix.strip() or 'forward'}: before {b:.2f} ms, after {a:.2f} ms, "
                f"after / before {a / b:.2f}")
        if t is not None:
            line += f"; TF {t:.2f} ms, TF / jaxhub {t / b:.2f} -> {t / a:.2f}"
        print(line)


if __name__ == "__main__":
    main()
