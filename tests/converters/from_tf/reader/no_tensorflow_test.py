"""Converting never imports TensorFlow: a fresh process where ``import tensorflow`` fails
converts a TF2 SavedModel and a TF1 Hub module and gives TF's numbers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from tests.converters.from_tf.tf1._session import FIXTURES, TF1Session

_CONVERT = textwrap.dedent("""
    import importlib.abc, json, sys

    BLOCKED = ("tensorflow", "tf_keras", "tensorflow_hub")

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked")

    # As if not installed: `import tensorflow` raises, importlib.util.find_spec (which
    # orbax asks) says None; any submodule import reaches the blocking finder.
    sys.meta_path.insert(0, NoTensorFlow())
    for name in BLOCKED:
        sys.modules[name] = None
    import numpy as np
    import jaxhub
    from jaxhub_tf import formats

    formats.register()  # as the entry point does (idempotent; a stale dev install lacks it)

    jobs, cache = json.loads(sys.argv[1]), sys.argv[2]
    results = {}
    for name, (path, signature, inputs) in jobs.items():
        module = jaxhub.load(path, cache_dir=cache)
        outs = module({k: np.asarray(v, np.float32) for k, v in inputs.items()},
                      signature=signature, as_dict=True)
        results[name] = {k: np.asarray(v).tolist() for k, v in outs.items()}
    leaked = sorted(m for m, v in sys.modules.items() if m.split(".")[0] in BLOCKED
                    and v is not None)
    print(json.dumps({"results": results, "leaked": leaked}))
""")


class _Blocks(tf.Module):
    """A loop, a branch and a variable: enough of the converter to matter."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def __call__(self, x):
        y = tf.matmul(x, self.w)
        _, y = tf.while_loop(lambda i, h: i < 3, lambda i, h: (i + 1, tf.tanh(h) + h),
                             [tf.constant(0), y])
        return {"y": tf.cond(tf.reduce_sum(y) > 0, lambda: y * 2.0, lambda: -y)}


def test_conversion_runs_with_tensorflow_blocked(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    module = _Blocks()
    tf.saved_model.save(module, str(tmp_path / "tf2"),
                        signatures={"serving_default": module.__call__})
    expected = {"tf2": {"y": module(tf.constant(x))["y"].numpy()}}
    session = TF1Session(FIXTURES / "mlp")
    x1 = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    expected["tf1"] = session.run("default", {"x": x1})
    session.close()
    jobs = {"tf2": [str(tmp_path / "tf2"), "serving_default", {"x": x.tolist()}],
            "tf1": [str(FIXTURES / "mlp"), "default", {"x": x1.tolist()}]}
    proc = subprocess.run([sys.executable, "-c", _CONVERT, json.dumps(jobs),
                           str(tmp_path / "cache")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["leaked"] == []
    for name, outputs in expected.items():
        assert set(report["results"][name]) == set(outputs)
        for key, value in outputs.items():
            np.testing.assert_allclose(report["results"][name][key], value, rtol=1e-5,
                                       atol=1e-5, err_msg=f"{name}/{key}")
