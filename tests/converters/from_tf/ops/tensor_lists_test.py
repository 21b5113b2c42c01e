"""TF 1 TensorArrays (``TensorArrayV3`` and the ops on its handle and flow) against TF.

TF 2 cannot differentiate these raw ops in a ``tf.function`` (its TensorArray gradient
wants the TF 1 graph they were built in): the cases compare values; the gradients of a
TF 1 ``bidirectional_dynamic_rnn`` built on them are compared in ``control_flow_test.py``.
"""

from __future__ import annotations

import pytest
import tensorflow as tf

from tests.converters.from_tf.ops._conformance import Case, check, params

_RAW = tf.raw_ops


def _scatter_read_write_gather(x):
    """Unstacks ``x`` (3 rows) out of order, reads one row, writes two into an array of
    known element shape, gathers with a repeated index, and scales by the first's size."""
    handle, flow = _RAW.TensorArrayV3(size=3, dtype=tf.float32,
                                      element_shape=tf.TensorShape(None))
    flow = _RAW.TensorArrayScatterV3(handle=handle, indices=[2, 0, 1], value=x, flow_in=flow)
    row = _RAW.TensorArrayReadV3(handle=handle, index=1, flow_in=flow, dtype=tf.float32)
    out, out_flow = _RAW.TensorArrayV3(size=2, dtype=tf.float32, clear_after_read=False,
                                       element_shape=tf.TensorShape([x.shape[1]]))
    out_flow = _RAW.TensorArrayWriteV3(handle=out, index=1, value=row * 2, flow_in=out_flow)
    out_flow = _RAW.TensorArrayWriteV3(handle=out, index=0, value=row + 1, flow_in=out_flow)
    gathered = _RAW.TensorArrayGatherV3(handle=out, indices=[1, 0, 1], flow_in=out_flow,
                                        dtype=tf.float32)
    size = _RAW.TensorArraySizeV3(handle=handle, flow_in=flow)
    return gathered * tf.cast(size, tf.float32)


def _stack_of_writes(x):
    """Rows written one by one into an array of unknown element shape, then stacked."""
    handle, flow = _RAW.TensorArrayV3(size=2, dtype=tf.float32,
                                      element_shape=tf.TensorShape(None))
    for i in range(2):
        flow = _RAW.TensorArrayWriteV3(handle=handle, index=i, value=x[i] * (i + 1),
                                       flow_in=flow)
    return _RAW.TensorArrayGatherV3(handle=handle, indices=[0, 1], flow_in=flow,
                                    dtype=tf.float32)


def _unstack_restack(x):
    """Unstacks ``x`` into an array as long as its leading axis, whatever its size (as
    TF 1's ``dynamic_rnn`` sizes its arrays: ``tf.shape(inputs)[0]`` time steps), and
    stacks it back, doubled, plus its first row."""
    size = tf.shape(x)[0]
    handle, flow = _RAW.TensorArrayV3(size=size, dtype=tf.float32, clear_after_read=False,
                                      element_shape=tf.TensorShape(None))
    flow = _RAW.TensorArrayScatterV3(handle=handle, indices=tf.range(size), value=x,
                                     flow_in=flow)
    first = _RAW.TensorArrayReadV3(handle=handle, index=0, flow_in=flow, dtype=tf.float32)
    stacked = _RAW.TensorArrayGatherV3(handle=handle, indices=tf.range(size), flow_in=flow,
                                       dtype=tf.float32)
    return stacked * 2 + first


CASES = [
    Case("TensorArrayScatterV3", _scatter_read_write_gather, (((3, 4),),), grad=False,
         batched=False),
    Case("TensorArrayWriteV3", _stack_of_writes, (((2, 5),),), grad=False, batched=False,
         name="TensorArrayWriteV3-pending-element-shape"),
    # the array's size follows the input's leading axis: symbolic when converted so
    Case("TensorArrayV3", _unstack_restack, (((5, 3),),), grad=False,
         name="TensorArrayV3-size-of-leading-axis"),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)
