"""Every conformance case with a batch axis also converts with a symbolic batch size under
``jax.export`` (as modules are exported) and matches TF on a concrete batch."""

from __future__ import annotations

import pytest

from tests.converters.from_tf.ops import (activation_test, array_test, conv_test,
                                          elementwise_test, image_test, linalg_test,
                                          losses_test, normalization_test, quantization_test,
                                          reduction_test, sparse_test, tensor_lists_test,
                                          xla_test)
from tests.converters.from_tf.ops._conformance import check_symbolic_batch

_CASES = [case for module in (activation_test, array_test, conv_test, elementwise_test,
                              image_test, linalg_test, losses_test, normalization_test,
                              quantization_test, reduction_test, sparse_test,
                              tensor_lists_test, xla_test)
          for case in module.CASES]


def _batchable(shapes) -> bool:
    """The first input has a leading axis that no other axis of it must equal."""
    first = shapes[0] if shapes else ()
    return len(first) >= 2 and first[0] not in first[1:]


def _params():
    out = []
    for case in _CASES:
        candidates = [s for s in case.shapes if _batchable(s)]
        if not case.batched or not candidates:
            continue  # no batch axis (vectors, square matrices, or one the graph fixes)
        shapes, dtypes = candidates[0], case.dtypes[0]
        reason = case.xfail or case.symbolic_xfail
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        out.append(pytest.param(case, shapes, dtypes, marks=marks,
                                id=f"{case.name or case.op}"))
    return out


@pytest.mark.parametrize("case,shapes,dtypes", _params())
def test_symbolic_batch(case, shapes, dtypes):
    check_symbolic_batch(case, shapes, dtypes)
