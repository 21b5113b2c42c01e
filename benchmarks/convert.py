"""Conversion time with jaxhub's own reader of TF files versus TensorFlow's.

Usage (with TensorFlow installed, for the comparison)::

    python scripts/no_tf_zoo.py build /tmp/zoo         # the modules to convert
    git archive BASE jaxhub converters | tar -x -C /tmp/base   # a tree that reads with TF
    python benchmarks/convert.py /tmp/zoo --baseline /tmp/base

For every module of the zoo it prints, for this tree and (with ``--baseline``) for a tree
whose converter reads through TensorFlow:

* ``import``: importing the converter in a fresh process (TensorFlow's import, if any);
* ``load``: ``load_*_module(path)`` in that process: parsing, reading the checkpoint,
  then tracing and exporting every function with JAX (that part, most of the time, is
  the same work for both readers);
* ``read ms`` / ``TF ms``: only parsing ``saved_model.pb`` and reading every checkpoint tensor, in
  this process, with jaxhub's reader and with TF's (``saved_model_pb2`` and
  ``tf.train.load_checkpoint``), best of 3.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent

_TIMED_LOAD = """
import json, sys, time
start = time.perf_counter()
import pathlib
from jaxhub_tf.from_tf import saved_model
from jaxhub_tf.from_tf.tf1 import hub_module
imported = time.perf_counter()
path = sys.argv[1]
if (pathlib.Path(path) / "tfhub_module.pb").is_file():
    hub_module.load_tf1_hub_module(path)
else:
    saved_model.load_saved_model(path)
done = time.perf_counter()
print(json.dumps({"import": imported - start, "load": done - imported,
                  "tensorflow": "tensorflow" in sys.modules}))
"""


def timed_load(source: pathlib.Path, path: str) -> dict:
    """``import`` and ``load`` seconds of converting ``path`` with the tree ``source``."""
    # The tree's converters/ folder is the package jaxhub_tf: a link makes it importable.
    links = pathlib.Path(tempfile.mkdtemp())
    (links / "jaxhub_tf").symlink_to(source / "converters")
    env = {**os.environ, "PYTHONPATH": f"{links}{os.pathsep}{source}",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _TIMED_LOAD, path], env=env, text=True,
                          capture_output=True, timeout=1800, cwd=str(source))
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.splitlines()[-1])


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def read_times(path: pathlib.Path) -> tuple[float, float | None]:
    """Seconds to parse ``saved_model.pb`` and read every checkpoint tensor: jaxhub's
    reader, TF's (None without TensorFlow)."""
    from jaxhub_tf.from_tf.reader import bundle, protos

    prefix = path / "variables" / "variables"
    has_checkpoint = prefix.with_name("variables.index").is_file()

    def ours():
        protos.SavedModel.FromString((path / "saved_model.pb").read_bytes())
        if has_checkpoint:
            reader = bundle.BundleReader(prefix)
            for key in reader.keys():
                reader.get_tensor(key)

    try:
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2
    except ImportError:
        return _best(ours), None

    def theirs():
        saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
        if has_checkpoint:
            reader = tf.train.load_checkpoint(str(prefix))
            for key in reader.get_variable_to_dtype_map():
                reader.get_tensor(key)

    return _best(ours), _best(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zoo", type=pathlib.Path, help="made by scripts/no_tf_zoo.py build")
    parser.add_argument("--baseline", type=pathlib.Path,
                        help="a jaxhub tree whose converter reads TF files with TF")
    args = parser.parse_args()
    cases = json.loads((args.zoo / "cases.json").read_text())
    paths = sorted({case["path"] for case in cases.values()})
    header = (f"{'module':22s} {'size MB':>7s} | {'read ms':>7s} {'TF ms':>7s} | "
              f"{'import':>6s} {'load':>6s} (jaxhub reader)")
    if args.baseline:
        header += f" | {'import':>6s} {'load':>6s} (TF reader)"
    print(header)
    for path in paths:
        size = sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())
        ours, theirs = read_times(pathlib.Path(path))
        new = timed_load(REPO, path)
        assert not new["tensorflow"], "the converter imported TensorFlow"
        theirs_ms = 1e3 * theirs if theirs is not None else float("nan")
        row = (f"{pathlib.Path(path).name:22s} {size / 1e6:7.1f} | {1e3 * ours:7.1f} "
               f"{theirs_ms:7.1f} | "
               f"{new['import']:6.1f} {new['load']:6.2f}")
        if args.baseline:
            old = timed_load(args.baseline, path)
            row += f"                  | {old['import']:6.1f} {old['load']:6.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
