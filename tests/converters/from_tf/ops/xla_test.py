"""Conformance of XLA's own TF ops (``tf2xla``: ``XlaDot``, ``XlaConv``, ...) against TF.

TF runs these ops only inside XLA clusters, so each case calls a ``jit_compile`` function:
the op sits in the graph's function library, which the converter runs as any other call.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla
from tensorflow.compiler.xla import xla_data_pb2

from jaxhub_tf.from_tf.interpreter import run_graph
from jaxhub_tf.from_tf.ops.xla import proto_ints
from tests.converters.from_tf.ops._conformance import (Case, check, distinct, integers,
                                                       normal, params)


def _compiled(fn):
    return tf.function(fn, jit_compile=True, autograph=False)


def _dot_numbers(lhs_contract, rhs_contract, lhs_batch=(), rhs_batch=()):
    numbers = xla_data_pb2.DotDimensionNumbers()
    numbers.lhs_contracting_dimensions.extend(lhs_contract)
    numbers.rhs_contracting_dimensions.extend(rhs_contract)
    numbers.lhs_batch_dimensions.extend(lhs_batch)
    numbers.rhs_batch_dimensions.extend(rhs_batch)
    return numbers


def _conv_numbers():
    """NHWC inputs, HWIO kernels, NHWC outputs."""
    numbers = xla_data_pb2.ConvolutionDimensionNumbers(
        input_batch_dimension=0, input_feature_dimension=3,
        kernel_input_feature_dimension=2, kernel_output_feature_dimension=3,
        output_batch_dimension=0, output_feature_dimension=3)
    numbers.input_spatial_dimensions.extend([1, 2])
    numbers.kernel_spatial_dimensions.extend([0, 1])
    numbers.output_spatial_dimensions.extend([1, 2])
    return numbers


def _gather_rows():
    """Rows of a matrix, one per index (``tf.gather(x, i)`` as XLA writes it)."""
    numbers = xla_data_pb2.GatherDimensionNumbers(index_vector_dim=1)
    numbers.offset_dims.append(1)
    numbers.collapsed_slice_dims.append(0)
    numbers.start_index_map.append(0)
    return numbers


_DOT = _dot_numbers([2], [1], [0], [0])


def _no_tf_grad(*args, **kwargs) -> Case:
    """A case of an op that TF registers no gradient for (values only)."""
    return Case(*args, grad=False, **kwargs)

CASES = [
    _no_tf_grad("XlaDot", _compiled(lambda a, b: xla.dot_general(a, b, _DOT)),
         (((2, 3, 4), (2, 4, 5)),), rtol=1e-4, atol=1e-4),
    _no_tf_grad("XlaDotV2", _compiled(lambda a, b: xla.dot_general(
        a, b, _DOT, preferred_element_type=tf.float32, use_v2=True)),
         (((2, 3, 4), (2, 4, 5)),), rtol=1e-4, atol=1e-4),
    _no_tf_grad("XlaConv", _compiled(lambda x, k: xla.conv(
        x, k, [1, 2], [[1, 1], [0, 1]], [1, 1], [1, 1], _conv_numbers())),
         (((2, 5, 6, 3), (3, 2, 3, 4)),), rtol=1e-4, atol=1e-4),
    _no_tf_grad("XlaConvV2", _compiled(lambda x, k: xla.conv(
        x, k, [1, 1], [[0, 0], [1, 1]], [1, 1], [2, 1], _conv_numbers(), use_v2=True,
        preferred_element_type=tf.float32)),
         (((2, 5, 6, 3), (2, 2, 3, 4)),), rtol=1e-4, atol=1e-4),
    _no_tf_grad("XlaGather", _compiled(lambda x, i: xla.gather(x, i[:, None], _gather_rows(),
                                                        [1, 3])),
         (((4, 3), (5,)),), dtypes=(("float32", "int32"),), sample=(normal, integers(0, 4)),
         batched=False),
    _no_tf_grad("XlaDynamicSlice", _compiled(lambda x: xla.dynamic_slice(x, [1, 2], [2, 2])),
         (((4, 5),),), batched=False),
    _no_tf_grad("XlaDynamicUpdateSlice", _compiled(lambda x, u: xla.dynamic_update_slice(
        x, u, [2, 1])), (((4, 5), (2, 3)),), batched=False),
    _no_tf_grad("XlaPad", _compiled(lambda x: xla.pad(x, 1.5, [1, 0], [0, 2], [1, 0])),
         (((3, 4),),)),
    _no_tf_grad("XlaReducePrecision", _compiled(lambda x: xla.reduce_precision(x, 5, 10)),
         (((3, 4),),)),
    Case("XlaSharding", _compiled(lambda x: xla.sharding(x) * 2.0), (((3, 4),),)),
    _no_tf_grad("XlaOptimizationBarrier", _compiled(xla.optimization_barrier),
         (((3, 4), (3, 2)),)),
]


@tf.function(autograph=False)
def _max(a, b):
    return tf.maximum(a, b)


@tf.function(autograph=False)
def _sum_and_max(x, y, a, b):
    return x + a, tf.maximum(y, b)


@tf.function(autograph=False)
def _add(a, b):
    return a + b


def _scatter_rows():
    """Rows added into a matrix, one per index (``tf.tensor_scatter_nd_add`` on rows)."""
    numbers = xla_data_pb2.ScatterDimensionNumbers(index_vector_dim=1)
    numbers.update_window_dims.append(1)
    numbers.inserted_window_dims.append(0)
    numbers.scatter_dims_to_operand_dims.append(0)
    return numbers


@tf.function(autograph=False)
def _greater(a, b, unused_a, unused_b):
    return a > b


@tf.function(autograph=False)
def _at_least(a, b):
    return a >= b


_SCALARS = (tf.TensorSpec([]), tf.TensorSpec([]))

CASES += [
    _no_tf_grad("XlaSelectAndScatter", _compiled(lambda x, s: xla.select_and_scatter(
        x, [2, 2], [2, 1], [[0, 0], [1, 0]], s, 0.5, _at_least.get_concrete_function(*_SCALARS),
        _add.get_concrete_function(*_SCALARS))), (((4, 5), (2, 5)),), sample=distinct,
        batched=False),
    _no_tf_grad("XlaVariadicSort", _compiled(lambda x, y: xla.variadic_sort(
        [x, y], 1, _greater.get_concrete_function(*[tf.TensorSpec([])] * 4), True)),
        (((3, 5), (3, 5)),), sample=distinct),
    _no_tf_grad("XlaScatter", _compiled(lambda x, i, u: xla.scatter(
        x, i[:, None], u, _add.get_concrete_function(tf.TensorSpec([]), tf.TensorSpec([])),
        _scatter_rows())), (((4, 3), (5,), (5, 3)),), dtypes=(("float32", "int32", "float32"),),
        sample=(normal, integers(0, 4), normal), batched=False),
    _no_tf_grad("XlaReduceWindow", _compiled(lambda x: xla.reduce_window(
        x, -1e9, _max.get_concrete_function(tf.TensorSpec([]), tf.TensorSpec([])),
        [2, 2], [1, 2], padding=[(0, 1), (1, 0)])), (((4, 5),),)),
    _no_tf_grad("XlaVariadicReduceV2", _compiled(lambda x, y: xla.variadic_reduce(
        [x, y], [0.0, -1e9], [1], _sum_and_max.get_concrete_function(
            *[tf.TensorSpec([])] * 4))), (((3, 4), (3, 4)),)),
]


_STATE = np.array([0x123456789ABCDEF0, 42], np.uint64)


def _uniform_from_bits(algorithm):
    """``x`` plus floats in [0, 1) made of the generator's bits (exact if the bits are)."""
    def body(x):
        _, bits = xla.rng_bit_generator(algorithm, tf.constant(_STATE), [3], dtype=tf.uint32)
        return x + tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) * 2.0 ** -24
    return body


# tf.random.Algorithm ids: Philox, ThreeFry, and the platform's default (Philox on CPU).
CASES += [Case("XlaRngBitGenerator", _compiled(_uniform_from_bits(algorithm)),
               (((2, 3),),), name=name)
          for algorithm, name in ((1, "philox"), (2, "threefry"), (3, "auto_select"))]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)


def test_dimension_numbers_are_read_without_tensorflow():
    numbers = _dot_numbers([2, 3], [1], [0], [0])
    numbers.lhs_batch_dimensions.append(300)  # multi-byte varints
    assert proto_ints(numbers.SerializeToString()) == {1: [2, 3], 2: [1], 3: [0, 300], 4: [0]}



@pytest.fixture(params=[False, True], ids=["x64_off", "x64_on"])
def x64(request):
    with jax.enable_x64(request.param):
        yield request.param


def run_concrete(concrete, *args):
    """The converted ``concrete`` function's outputs on ``args``."""
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    return run({}, list(args))[0]


def _rng_bit_generator_graph(algorithm, dtype, state_spec):
    fn = _compiled(lambda state: xla.rng_bit_generator(algorithm, state, [4, 5], dtype=dtype))
    return fn, fn.get_concrete_function(state_spec)


@pytest.mark.parametrize("algorithm", [1, 2, 3])
@pytest.mark.parametrize("dtype", [tf.uint8, tf.uint32, tf.uint64])
def test_rng_bit_generator_gives_tfs_bits_and_state(algorithm, dtype, x64):
    """The same XLA op: the bits and the new state equal TF's exactly, for a state given
    as an argument (traced) or as a constant (static)."""
    fn, concrete = _rng_bit_generator_graph(algorithm, dtype, tf.TensorSpec([2], tf.uint64))
    tf_state, tf_bits = (t.numpy() for t in fn(tf.constant(_STATE)))
    converted = jax.jit(lambda state: run_concrete(concrete, state))
    state, bits = converted(_STATE if x64 else (_STATE & 0xFFFFFFFF).astype(np.uint32))
    if x64:
        np.testing.assert_array_equal(bits, tf_bits)
        np.testing.assert_array_equal(state, tf_state)
    else:   # the traced state lost its high word (the 64-bit rule): TF's bits for that
        # state, and 64-bit outputs drawn as 32-bit words (TF's uint32 draw)
        low = (_STATE & 0xFFFFFFFF).astype(np.uint64)
        narrow = tf.uint32 if dtype == tf.uint64 else dtype
        low_fn, _ = _rng_bit_generator_graph(algorithm, narrow, tf.TensorSpec([2], tf.uint64))
        low_state, low_bits = (t.numpy() for t in low_fn(tf.constant(low)))
        np.testing.assert_array_equal(bits, low_bits)
        np.testing.assert_array_equal(state, (low_state & 0xFFFFFFFF).astype(np.uint32))
        if dtype == tf.uint64:
            return   # a constant state's 64-bit draw cannot be held either
    constant = _compiled(lambda: xla.rng_bit_generator(algorithm, tf.constant(_STATE),
                                                       [4, 5], dtype=dtype))
    _, static_bits = jax.jit(lambda: run_concrete(constant.get_concrete_function()))()
    np.testing.assert_array_equal(static_bits, tf_bits)   # exact even with 64-bit types off


def test_rng_bit_generator_refuses_a_philox_three_word_state():
    _, concrete = _rng_bit_generator_graph(1, tf.uint32, tf.TensorSpec([3], tf.uint64))
    with pytest.raises(Exception, match="only u64\\[2\\] states"):
        run_concrete(concrete, np.zeros(3, np.uint32))
