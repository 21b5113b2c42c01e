"""Op coverage: every op of the conformance tables is registered, and every op of the
op families listed in :data:`FAMILIES` is in a conformance table.
"""

from __future__ import annotations

from jaxhub_tf.from_tf.ops import registry
from tests.converters.from_tf.ops import (activation_test, array_test, conv_test,
                                          elementwise_test, image_test, linalg_test,
                                          losses_test, normalization_test, random_test,
                                          reduction_test)
from tests.converters.from_tf.ops._conformance import ops_of

CONFORMANCE_OPS = set(random_test.OPS).union(*(ops_of(m.CASES) for m in (
    activation_test, array_test, conv_test, elementwise_test, image_test, linalg_test,
    losses_test, normalization_test, reduction_test)))

#: The op families whose every op must have a conformance entry here.
FAMILIES = ("array", "conv", "elementwise", "image", "linalg", "losses", "nn",
            "normalization", "random_stateless", "reduction", "spectral")


def _family(op: str) -> str:
    return registry.lookup(op).__module__.rsplit(".", 1)[-1]


def test_every_conformance_op_is_registered():
    missing = sorted(op for op in CONFORMANCE_OPS if registry.lookup(op) is None)
    assert not missing


def test_every_op_of_the_families_has_a_conformance_entry():
    untested = sorted(op for op in registry.registered_ops()
                      if _family(op) in FAMILIES and op not in CONFORMANCE_OPS)
    assert not untested, f"ops without a conformance entry: {untested}"
