"""``python -m benchmarks.profile MODEL``: where a converted module spends its time on CPU.

Runs one benchmark model's ``serving_default`` signature through jaxhub (``jax.jit`` of
the loaded module) and through TensorFlow under their profilers, and prints:

* jaxhub's time per XLA kind of work (the heaviest op of each executed thunk:
  ``convolution``, ``dot``, elementwise loop fusions, ...) and TF's time per op type;
* the most expensive XLA thunks with their shapes and the Keras layers whose params they
  read;
* per Keras layer: jaxhub's time against TF's, for the layers where jaxhub loses most.

Thunk times come from XLA:CPU's per-thunk trace events (``jax.profiler`` with a Perfetto
trace), described from the compiled HLO; TF op times from its XPlane trace. Usage::

    python -m benchmarks.profile mobilenet_v2 [--batch 8] [--image-size 224] [--calls 3]

With ``--step`` both sides run one fine-tuning step instead (the gradient of a mean squared
loss w.r.t. the trainable params, as in the benchmark), and the per-layer table is left
out: TF's gradient ops are not named after the layers.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gzip
import json
import os
import pathlib
import re
import tempfile
import time
from typing import Callable, Iterable

import numpy as np

from benchmarks import harness
from benchmarks import models

# Ops that only move or relabel data: followed to find which param a thunk reads.
_PASS_THROUGH = {"bitcast", "copy", "transpose", "reshape", "broadcast", "convert"}
# The op that names a fusion's work, heaviest first.
_HEAVY = ("convolution", "dot", "custom-call", "reduce-window", "select-and-scatter",
          "scatter", "gather", "reduce", "sort", "transpose", "pad", "concatenate")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+) ([\w-]+)\((.*?)\)(.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%(\S+) .*\{$")


@dataclasses.dataclass(frozen=True)
class _Instruction:
    name: str
    shape: str
    opcode: str
    operands: tuple[str, ...]
    attributes: str

    @property
    def calls(self) -> str | None:
        found = re.search(r"calls=%([\w.\-]+)", self.attributes)
        return found.group(1) if found else None


class _Hlo:
    """The compiled HLO module's instructions, by computation."""

    def __init__(self, text: str):
        self.computations: dict[str, dict[str, _Instruction]] = {}
        self.entry = ""
        current: dict[str, _Instruction] = {}
        for line in text.splitlines():
            header = _COMPUTATION.match(line)
            if header:
                current = self.computations.setdefault(header.group(1), {})
                if line.startswith("ENTRY"):
                    self.entry = header.group(1)
                continue
            found = _INSTRUCTION.match(line)
            if found:
                name, shape, opcode, operands, rest = found.groups()
                current[name] = _Instruction(name, shape.split("{")[0], opcode,
                                             tuple(re.findall(r"%([\w.\-]+)", operands)),
                                             rest)

    def describe(self, name: str) -> str:
        """What an entry instruction computes: its heaviest op, with shapes."""
        instruction = self.computations[self.entry].get(name)
        if instruction is None:
            return "?"
        body = self.computations.get(instruction.calls or "", {})
        for opcode in _HEAVY:
            for inner in body.values():
                if inner.opcode == opcode:
                    return _op_text(inner, body)
        if instruction.opcode == "fusion":
            kinds = sorted({i.opcode for i in body.values()} - {"parameter", "constant"})
            return f"elementwise ({', '.join(kinds[:4])}) -> {instruction.shape}"
        return _op_text(instruction, self.computations[self.entry])

    def layers(self, name: str) -> list[str]:
        """The Keras layers whose params an entry instruction reads (through relabels)."""
        entry = self.computations[self.entry]
        found: list[str] = []
        pending = list(entry[name].operands) if name in entry else []
        while pending:
            operand = pending.pop()
            if operand.startswith("p__"):
                found.append(operand[3:].split("____")[0])
            elif operand in entry and entry[operand].opcode in _PASS_THROUGH:
                pending.extend(entry[operand].operands)
        return sorted(set(found))


def _op_text(instruction: _Instruction, scope: dict[str, _Instruction]) -> str:
    operands = [scope[o].shape if o in scope else o for o in instruction.operands]
    text = f"{instruction.opcode} {' x '.join(operands)} -> {instruction.shape}"
    window = re.search(r"window=\{([^}]*)\}", instruction.attributes)
    groups = re.search(r"feature_group_count=(\d+)", instruction.attributes)
    if window:
        text += f" [{window.group(1)}]"
    if groups:
        text += f" groups={groups.group(1)}"
    return text


def _trace_jax(fn: Callable[[], object], calls: int, names: Iterable[str]
               ) -> dict[str, float]:
    """Milliseconds per call of each entry instruction, from XLA:CPU's thunk events."""
    import jax
    wanted = set(names)
    with tempfile.TemporaryDirectory() as logdir:
        jax.profiler.start_trace(logdir, create_perfetto_trace=True)
        for _ in range(calls):
            fn()
        jax.profiler.stop_trace()
        (trace,) = pathlib.Path(logdir).rglob("perfetto_trace.json.gz")
        events = json.loads(gzip.decompress(trace.read_bytes()))
    events = events["traceEvents"] if isinstance(events, dict) else events
    totals: dict[str, float] = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and event.get("name") in wanted:
            totals[event["name"]] += event.get("dur", 0) / 1e3 / calls
    return dict(totals)


def _trace_tf(fn: Callable[[], object], calls: int) -> dict[tuple[str, str], float]:
    """Milliseconds per call of each TF op, by ``(layer, op type)``, from TF's XPlane."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(calls):
            fn()
        tf.profiler.experimental.stop()
        (path,) = pathlib.Path(logdir).rglob("*.xplane.pb")
        space = xplane_pb2.XSpace.FromString(path.read_bytes())
    totals: dict[tuple[str, str], float] = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:  # "layer/op:Type", not executor events
                    op, op_type = name.rsplit(":", 1)
                    totals[(_tf_layer(op), op_type)] += event.duration_ps / 1e9 / calls
    return dict(totals)


def _tf_layer(op: str) -> str:
    # ".../<model>/<layer>_1/<op>": Keras 3 names each layer's scope "<layer>_1" when exporting.
    parts = op.split("/")
    layer = parts[2] if len(parts) > 3 else parts[-1]
    return layer[:-2] if layer.endswith("_1") else layer


def _timed(fn: Callable[[], object], calls: int) -> float:
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def profile(model: str, saved_model: pathlib.Path, jaxhub_cache: pathlib.Path, batch: int,
            image_size: int, calls: int, top: int, step: bool = False) -> str:
    """The profile of one model as markdown (see the module docstring)."""
    x = models.example_input(model, batch, image_size)
    hlo, run_jax = _jax_work(saved_model, jaxhub_cache, x, step)
    jax_ms = _timed(run_jax, calls)
    thunks = _trace_jax(run_jax, calls, hlo.computations[hlo.entry])
    run_tf = _tf_work(saved_model, x, step)
    tf_ms = _timed(run_tf, calls)
    tf_ops = _trace_tf(run_tf, calls)

    what = "fine-tuning step" if step else "input"
    lines = [f"### {model}: {what} {x.dtype}{list(x.shape)}",
             "", f"Median wall time per call: jaxhub {jax_ms:.1f} ms, TF {tf_ms:.1f} ms "
             f"(TF / jaxhub = {tf_ms / jax_ms:.2f}). Thunk times sum to "
             f"{sum(thunks.values()):.1f} ms, TF op times to {sum(tf_ops.values()):.1f} ms "
             "(TF runs independent ops concurrently).", ""]
    lines += _by_kind(hlo, thunks, tf_ops)
    lines += _top_thunks(hlo, thunks, top)
    if not step:
        lines += _by_layer(hlo, thunks, tf_ops, top)
    return "\n".join(lines)


def _jax_work(saved_model: pathlib.Path, jaxhub_cache: pathlib.Path, x: np.ndarray,
              step: bool) -> tuple[_Hlo, Callable[[], object]]:
    """The compiled HLO and a blocking call of the loaded module's forward pass or step."""
    import jax
    import jax.numpy as jnp

    import jaxhub
    module = jaxhub.load(saved_model, cache_dir=jaxhub_cache)

    def forward(params, x):
        return module.apply(params, x, signature="serving_default")

    def loss(params, x):
        return sum(jnp.mean(jnp.square(y)) for y in jax.tree.leaves(forward(params, x)))

    work = jax.jit(jax.grad(loss) if step else forward)
    hlo = _Hlo(work.lower(module.params, x).compile().as_text())
    return hlo, lambda: jax.block_until_ready(work(module.params, x))


def _tf_work(saved_model: pathlib.Path, x: np.ndarray, step: bool) -> Callable[[], object]:
    """A call of the SavedModel's ``serving_default``, or its gradient as in the benchmark."""
    import tensorflow as tf
    loaded = tf.saved_model.load(str(saved_model))
    signature = loaded.signatures["serving_default"]
    input_name = models.build_info(saved_model)["input"]
    tx = tf.constant(x)
    # Each returned function holds `loaded`, which owns the signature's variables.
    if not step:
        def forward(owner=loaded):
            return [t.numpy() for t in signature(**{input_name: tx}).values()]
        return forward
    variables = signature.trainable_variables

    @tf.function(jit_compile=False)
    def gradient():
        with tf.GradientTape() as tape:
            outputs = signature(**{input_name: tx}).values()
            loss = tf.add_n([tf.reduce_mean(tf.square(y)) for y in outputs])
        return tape.gradient(loss, variables)

    def step_gradients(owner=loaded):
        return [g.numpy() if isinstance(g, tf.Tensor) else g.values.numpy()
                for g in gradient()]
    return step_gradients


def _kind(description: str) -> str:
    return description.split(" ")[0]


def _by_kind(hlo: _Hlo, thunks: dict[str, float], tf_ops: dict) -> list[str]:
    ours: dict[str, float] = collections.Counter()
    for name, ms in thunks.items():
        ours[_kind(hlo.describe(name))] += ms
    theirs: dict[str, float] = collections.Counter()
    for (_, op_type), ms in tf_ops.items():
        theirs[op_type] += ms
    total_ours, total_theirs = sum(ours.values()), sum(theirs.values())
    out = ["| jaxhub: XLA work | ms/call | share | TF: op type | ms/call | share |",
           "|---|---|---|---|---|---|"]
    left = sorted(ours.items(), key=lambda kv: -kv[1])[:10]
    right = sorted(theirs.items(), key=lambda kv: -kv[1])[:10]
    for i in range(max(len(left), len(right))):
        cells = []
        for side, total in ((left, total_ours), (right, total_theirs)):
            if i < len(side):
                cells += [side[i][0], f"{side[i][1]:.2f}", f"{side[i][1] / total:.0%}"]
            else:
                cells += ["", "", ""]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def _top_thunks(hlo: _Hlo, thunks: dict[str, float], top: int) -> list[str]:
    total = sum(thunks.values())
    out = ["| XLA thunk | ms/call | share | what | layers |", "|---|---|---|---|---|"]
    for name, ms in sorted(thunks.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"| {name} | {ms:.2f} | {ms / total:.0%} | {hlo.describe(name)} | "
                   f"{', '.join(hlo.layers(name)) or '–'} |")
    return out + [""]


def _by_layer(hlo: _Hlo, thunks: dict[str, float], tf_ops: dict, top: int) -> list[str]:
    """Layers where jaxhub spends the most time beyond TF's (thunks split evenly)."""
    ours: dict[str, float] = collections.Counter()
    for name, ms in thunks.items():
        layers = hlo.layers(name)
        for layer in layers:
            ours[_keras_layer(layer)] += ms / len(layers)
    theirs: dict[str, float] = collections.Counter()
    for (layer, _), ms in tf_ops.items():
        theirs[_keras_layer(layer)] += ms
    out = ["| layer | jaxhub ms | TF ms | jaxhub - TF |", "|---|---|---|---|"]
    for layer in sorted(ours, key=lambda k: theirs.get(k, 0) - ours[k])[:top]:
        out.append(f"| {layer} | {ours[layer]:.2f} | {theirs.get(layer, 0):.2f} | "
                   f"{ours[layer] - theirs.get(layer, 0):+.2f} |")
    return out + [""]


def _keras_layer(name: str) -> str:
    # Batch norm and activation layers belong with the conv before them.
    return re.sub(r"_(BN|bn|relu|batchnorm)$", "", name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(models.MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--workdir", type=pathlib.Path, default=harness.DEFAULT_WORKDIR)
    parser.add_argument("--step", action="store_true",
                        help="profile a fine-tuning step instead of the forward pass")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved_model = models.ensure_saved_model(args.model, args.workdir, args.image_size)
    print(profile(args.model, saved_model, harness.jaxhub_cache(args.workdir), args.batch,
                  args.image_size, args.calls, args.top, step=args.step))


if __name__ == "__main__":
    main()
