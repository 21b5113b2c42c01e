"""``python -m benchmarks.convert_phases SAVED_MODEL``: where ``jaxhub.load``'s time goes.

Converts a SavedModel into an empty jaxhub cache (imports excluded) and prints the wall
time of each phase of the convert path, measured by wrapping its functions: reading the
SavedModel and building the module (tracing the graph; every signature's forward export
and split-VJP halves), then writing it (serializing each function, with the VJP built
from the halves; durable StableHLO copies; deserializing what was written; the params
are saved meanwhile, and "write the module" includes waiting for them), hashing the
entry's files, and reading the module back (the params the conversion saved are taken
as they are; a load from the cache restores them). The rest of the total is checking
the source and writing the cache's records. ``jaxhub.load`` converts
without gradients (they are exported on the first gradient), so the split-VJP phases
show zero; ``jaxhub convert`` and the first gradient pay them. ``--first-gradient``
measures the conversion with gradients that the first gradient runs (after the load,
outside the clock), which writes the cache entry without exported VJPs.

Usage:
    python -m benchmarks.convert_phases /tmp/real_models/fer [--first-gradient]
"""

from __future__ import annotations

import argparse
import collections
import functools
import tempfile
import time
from typing import Any

PHASES = (  # (module, function, label); nested phases are indented
    ("jaxhub_tf.from_tf.saved_model", "load_saved_model", "read the SavedModel, build"),
    ("jaxhub._src.create", "create_module", "  build the module"),
    ("jaxhub._src.serialization", "trace", "    trace"),
    ("jaxhub._src.serialization", "export", "    forward exports"),
    ("jaxhub._src.serialization", "export_split_vjp", "    split-VJP halves"),
    ("jaxhub._src.storage.writer", "write", "write the module"),
    ("jaxhub._src.serialization", "serialize", "  serialize (+ VJP from halves)"),
    ("jaxhub._src.storage.durable", "describe", "  durable copies"),
    ("jaxhub._src.serialization", "deserialize", "  deserialize"),
    ("jaxhub._src.hub.entry_record", "scan", "hash the entry's files"),
    ("jaxhub._src.storage.reader", "read", "read the module"),
    ("jaxhub._src.storage.params", "restore", "  restore params"),
)


def _wrap(owner: Any, name: str, label: str, totals: dict, counts: dict,
          active: set) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        if label in active:  # a recursive call is inside the outer one's time
            return original(*args, **kwargs)
        active.add(label)
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - start
            counts[label] += 1
            active.discard(label)

    setattr(owner, name, timed)


def measure(saved_model: str, first_gradient: bool = False) -> dict[str, tuple[float, int]]:
    """``{phase: (seconds, calls)}`` of one ``jaxhub.load`` of ``saved_model``, or with
    ``first_gradient`` of the conversion with gradients that follows it."""
    import importlib
    import jaxhub
    totals: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.Counter()
    active: set[str] = set()
    for module, name, label in PHASES:
        _wrap(importlib.import_module(module), name, label, totals, counts, active)
    start = time.perf_counter()
    module = jaxhub.load(saved_model, cache_dir=tempfile.mkdtemp(prefix="jaxhub-phases-"))
    result = {"jaxhub.load": (time.perf_counter() - start, 1)}
    if first_gradient:
        totals.clear()
        counts.clear()
        start = time.perf_counter()
        module.definition.gradients.read()  # what the first jax.grad through it runs
        result = {"convert with gradients, read": (time.perf_counter() - start, 1)}
    result.update({label: (totals[label], counts[label]) for _, _, label in PHASES})
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model")
    parser.add_argument("--first-gradient", action="store_true",
                        help="measure the conversion with gradients the first gradient runs")
    args = parser.parse_args(argv)
    for label, (seconds, calls) in measure(args.saved_model, args.first_gradient).items():
        print(f"{label:34s} {seconds:7.2f} s  ({calls} calls)")


if __name__ == "__main__":
    main()
