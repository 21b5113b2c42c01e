"""Static in, static out, over the whole registry.

Every op folds (see :func:`jaxhub_tf.from_tf.ops.registry.folding`) but those in
:data:`TRACED`, each with its reason. Every conformance case runs once more with its inputs
given as numpy values (static, as constants are while tracing): its outputs must come back
static, with TF's values and dtypes, so that a shape computed from constants stays usable
under ``jit``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jaxhub_tf.from_tf.ops import registry
from jaxhub_tf.from_tf.values import is_static
from tests.converters.from_tf.ops import (activation_test, array_test, conv_test,
                                          elementwise_test, image_test, linalg_test,
                                          losses_test, normalization_test, reduction_test,
                                          sparse_test, xla_test)
from tests.converters.from_tf.ops._conformance import convert

_CASES = [case for module in (activation_test, array_test, conv_test, elementwise_test,
                              image_test, linalg_test, losses_test, normalization_test,
                              reduction_test, sparse_test, xla_test)
          for case in module.CASES if not case.xfail]

_STATEFUL_RANDOM = "draws from the caller's RNG key, a traced value"
_GENERATOR = "reads and advances a generator's state variable, draws from the caller's key"

#: Ops whose outputs stay traced on static inputs, and why that is right.
TRACED: dict[str, str] = {
    "If": "runs functions of the library, which may read variables and draw random numbers",
    "StatelessIf": "runs functions of the library (lax.cond on a traced predicate)",
    "Case": "runs functions of the library, which may read variables",
    "StatelessCase": "runs functions of the library (lax.switch on a traced index)",
    "While": "runs functions of the library; folding would unroll the loop eagerly",
    "StatelessWhile": "runs functions of the library; folding would unroll the loop eagerly",
    "PartitionedCall": "runs a function of the library, whose nodes fold one by one",
    "StatefulPartitionedCall": "runs a function of the library, whose nodes fold one by one",
    "RandomUniform": _STATEFUL_RANDOM,
    "RandomStandardNormal": _STATEFUL_RANDOM,
    "TruncatedNormal": _STATEFUL_RANDOM,
    "RandomUniformInt": _STATEFUL_RANDOM,
    "Multinomial": _STATEFUL_RANDOM,
    "RandomShuffle": _STATEFUL_RANDOM,
    "SampleDistortedBoundingBox": _STATEFUL_RANDOM,
    "SampleDistortedBoundingBoxV2": _STATEFUL_RANDOM,
    "RngReadAndSkip": _GENERATOR,
    "StatefulUniform": _GENERATOR,
    "StatefulStandardNormalV2": _GENERATOR,
    "StatefulTruncatedNormal": _GENERATOR,
    "StatefulUniformInt": _GENERATOR,
    "StatefulUniformFullInt": _GENERATOR,
    "StatefulRandomBinomial": _GENERATOR,
}


def _static_run(case):
    """The case's outputs computed from static inputs, and TF's on the same inputs.

    The first shapes and dtypes of the case (None for bfloat16, which numpy lacks).
    """
    shapes, dtypes = case.shapes[0], case.dtypes[0]
    dtypes = [dtypes] * len(shapes) if isinstance(dtypes, str) else list(dtypes)
    if "bfloat16" in dtypes:
        return None
    samplers = case.sample if isinstance(case.sample, (tuple, list)) else [case.sample] * len(
        shapes)
    rng = np.random.default_rng(0)
    args = [sample(rng, tuple(s), np.dtype(d)) for sample, s, d in zip(samplers, shapes, dtypes)]
    concrete, converted = convert(case, shapes, dtypes)
    expected = [t.numpy() for t in tf.nest.flatten(concrete(*[tf.constant(a) for a in args]))]
    return converted(*args), expected


def test_only_the_listed_ops_are_registered_as_not_folding():
    unfolded = {op for op in registry.registered_ops() if not registry.folds(op)}
    assert unfolded == set(TRACED)


def test_static_inputs_give_static_outputs_in_every_op():
    traced, wrong = set(), {}
    for case in _CASES:
        run = _static_run(case)
        if run is None:
            continue
        got, expected = run
        if not all(is_static(g) for g in got):
            traced.add(case.op)
            continue
        for g, e in zip(got, expected):
            if np.shape(g) != e.shape or np.asarray(g).dtype != e.dtype or not np.allclose(
                    np.asarray(g, np.float64), np.asarray(e, np.float64),
                    rtol=max(case.rtol, 1e-4), atol=max(case.atol, 1e-4)):
                wrong[case.name or case.op] = (np.asarray(g).dtype, e.dtype)
    assert not wrong, f"static values differ from TF: {wrong}"
    assert not traced, f"traced on static inputs: {sorted(traced)}"
