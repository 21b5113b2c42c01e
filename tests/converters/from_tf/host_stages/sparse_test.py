"""Sparse, ragged, set and table ops of a TF2 SavedModel's signatures, against TF.

``tf.sparse.fill_empty_rows``, ``tf.sets.intersection`` / ``union`` / ``difference`` (of
dense and sparse sets), ``tf.gather`` of a ragged tensor (``RaggedGather``) and tables
built inside the function from constant keys and values (``HashTableV2`` with
``InitializeTableV2``, ``MutableHashTableV2`` with ``LookupTableImportV2``) or held by the
module (``tf.lookup.StaticHashTable`` of a ``KeyValueTensorInitializer``) run in a host
stage; ``tf.sparse.reshape`` and ``RaggedTensor.to_sparse`` run on the device. What
follows them (a product with a variable) stays in the device function. Outputs are
compared with TF on several inputs, empty rows and results included, through ``apply``
and through ``preprocess`` + ``jax.jit(apply_device)``.
"""

from __future__ import annotations


import jax
import numpy as np
import pytest
import tensorflow as tf

import jaxhub
from tests.converters.from_tf.host_stages._outputs import (
    assert_outputs_match, saved_and_loaded, signature_arrays, tf_outputs)

_I64 = tf.int64


def _spec(shape, dtype=tf.int64):
    return tf.TensorSpec(shape, dtype)


def _parts(sparse: tf.sparse.SparseTensor, prefix: str) -> dict[str, tf.Tensor]:
    return {f"{prefix}_indices": sparse.indices, f"{prefix}_values": sparse.values,
            f"{prefix}_shape": sparse.dense_shape}


def _table(keys, values, mutable: bool = False) -> tf.Tensor:
    """A table made inside the function from constants (as TF1 graphs build them)."""
    keys, values = tf.constant(keys), tf.constant(values)
    if mutable:
        table = tf.raw_ops.MutableHashTableV2(key_dtype=keys.dtype, value_dtype=values.dtype)
        fill = tf.raw_ops.LookupTableImportV2(table_handle=table, keys=keys, values=values)
    else:
        table = tf.raw_ops.HashTableV2(key_dtype=keys.dtype, value_dtype=values.dtype)
        fill = tf.raw_ops.InitializeTableV2(table_handle=table, keys=keys, values=values)
    with tf.control_dependencies([fill]):
        return tf.identity(table)


class _Sparse(tf.Module):
    """One signature per op family, each followed by a product with a variable."""

    def __init__(self):
        super().__init__()
        self.scale = tf.Variable([1.5, -2.0], name="scale")
        # Tables the module holds, filled from constants (TF2's usual way).
        self.labels = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            ["cat", "dog", "emu"], tf.constant([4, 9, 2], tf.int64)), -1)
        self.weights = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant([3, 7, 11], tf.int64), [0.5, 1.5, 2.5]), 0.0)

    def _scaled(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cast(x, tf.float32) * self.scale[0] + self.scale[1]

    @tf.function(input_signature=[_spec([None, 2]), _spec([None], tf.float32), _spec([2]),
                                  _spec([], tf.float32)])
    def fill_empty_rows(self, indices, values, dense_shape, default):
        filled, empty = tf.sparse.fill_empty_rows(
            tf.sparse.SparseTensor(indices, values, dense_shape), default)
        return {"indices": filled.indices, "values": self._scaled(filled.values),
                "shape": filled.dense_shape, "empty": empty}

    @tf.function(input_signature=[_spec([None, 5], tf.int32)] * 2)
    def dense_sets(self, a, b):
        return {**_parts(tf.sets.intersection(a, b), "both"),
                "union": self._scaled(tf.sets.union(a, b).values),
                "a_minus_b": tf.sets.difference(a, b).values,
                "b_minus_a": tf.sets.difference(a, b, aminusb=False).values}

    @tf.function(input_signature=[_spec([None, 5], tf.int32)] * 2)
    def difference(self, a, b):
        found = tf.sets.difference(a, b)
        return {"indices": found.indices, "values": self._scaled(found.values)}

    @tf.function(input_signature=[_spec([2, 4]), _spec([None, 2]), _spec([None])])
    def sparse_sets(self, a, b_indices, b_values):
        b = tf.sparse.SparseTensor(b_indices, b_values, [2, 4])
        a_sparse = tf.sparse.from_dense(a)
        return {**_parts(tf.sets.union(a, b), "union"),
                **_parts(tf.sets.difference(b, a_sparse), "difference"),
                "sum": self._scaled(tf.sets.intersection(a_sparse, b).values)}

    @tf.function(input_signature=[_spec([5]), _spec([None, 3], tf.float32),
                                  _spec([None], tf.int32)])
    def ragged_gather(self, splits, values, indices):
        rows = tf.RaggedTensor.from_row_splits(values, splits, validate=True)
        gathered = tf.gather(rows, indices)
        return {"splits": gathered.row_splits, "values": self._scaled(gathered.flat_values)}

    @tf.function(input_signature=[_spec([None], tf.float32), _spec([5])])
    def ragged_to_sparse(self, values, splits):
        sparse = tf.RaggedTensor.from_row_splits(values, splits).to_sparse()
        return {"indices": sparse.indices, "values": self._scaled(sparse.values),
                "shape": sparse.dense_shape}

    @tf.function(input_signature=[_spec([None, 3]), _spec([3]), _spec([2])])
    def sparse_reshape(self, indices, shape, new_shape):
        reshaped = tf.sparse.reshape(
            tf.sparse.SparseTensor(indices, tf.ones(tf.shape(indices)[:1]), shape), new_shape)
        return {"indices": reshaped.indices, "shape": reshaped.dense_shape}

    # Unknown leading sizes are one batch size (docs/architecture.md): ids and words
    # come in pairs.
    @tf.function(input_signature=[_spec([None]), _spec([None, 2], tf.string)])
    def tables(self, ids, words):
        numbers = _table(np.array([3, 7, 11], np.int64), np.array([0.5, 1.5, 2.5], np.float32))
        vocabulary = _table(np.array([b"cat", b"dog"]), np.array([4, 9], np.int64), True)
        found = tf.raw_ops.LookupTableFindV2(table_handle=numbers, keys=ids, default_value=-1.0)
        word_ids = tf.raw_ops.LookupTableFindV2(table_handle=vocabulary, keys=words,
                                                default_value=tf.constant(-1, tf.int64))
        return {"found": self._scaled(found), "word_ids": word_ids,
                "size": tf.raw_ops.LookupTableSizeV2(table_handle=numbers)}

    @tf.function(input_signature=[_spec([None]), _spec([None], tf.string)])
    def captured_tables(self, ids, words):
        return {"weights": self._scaled(self.weights.lookup(ids)),
                "labels": self.labels.lookup(words), "size": self.labels.size()}


_RNG = np.random.default_rng(0)

#: signature -> inputs to compare on.
CASES = {
    "fill_empty_rows": [
        {"indices": [[3, 1], [0, 2], [3, 0], [1, 1]], "values": [1, 2, 3, 4],
         "dense_shape": [6, 3], "default": -1},  # unsorted, rows 2, 4, 5 empty
        {"indices": [[0, 0], [1, 2]], "values": [5, 6], "dense_shape": [2, 3], "default": 0},
        {"indices": np.zeros([0, 2]), "values": [], "dense_shape": [3, 2], "default": 7}],
    "dense_sets": [{"a": [[10, 2, 30, 2, 5], [10, 9, 1, 9, 3]],
                    "b": [[4, 5, 10, 8, 9], [1, 4, 1, 1, 5]]},
                   {"a": _RNG.integers(0, 6, [3, 5]), "b": _RNG.integers(0, 6, [3, 5])}],
    # An empty result: fine when every output follows its size (docs/tf1_and_text.md).
    "difference": [{"a": [[1, 2, 2, 1, 1], [3, 3, 4, 4, 5]], "b": [[2, 1, 1, 1, 2], [4] * 5]},
                   {"a": [[1, 2, 2, 1, 1]], "b": [[2, 1, 1, 1, 2]]}],
    "sparse_sets": [{"a": [[1, 2, 3, 0], [4, 5, 0, 0]], "b_indices": [[0, 0], [0, 3], [1, 1]],
                     "b_values": [2, 9, 5]},
                    {"a": [[0, 0, 0, 0], [7, 0, 0, 8]], "b_indices": [[1, 0], [1, 2]],
                     "b_values": [8, 1]}],
    "ragged_gather": [{"splits": [0, 3, 3, 5, 9], "values": _RNG.standard_normal([9, 3]),
                       "indices": [1, 3, 2, 0, 3]},
                      {"splits": [0, 1, 2, 2, 4], "values": _RNG.standard_normal([4, 3]),
                       "indices": [0]}],
    "ragged_to_sparse": [{"values": [1, 2, 3, 4, 5, 6], "splits": [0, 2, 2, 5, 6]},
                         {"values": [1, 2], "splits": [0, 0, 1, 1, 2]}],
    "sparse_reshape": [{"indices": [[1, 0, 0], [0, 1, 3], [1, 2, 1]], "shape": [2, 3, 4],
                        "new_shape": [4, -1]},
                       {"indices": [[0, 0, 1]], "shape": [1, 2, 2], "new_shape": [-1, 1]}],
    "tables": [{"ids": [3, 4, 11], "words": [["dog", "cow"], ["cat", "cat"], ["", "x"]]},
               {"ids": [0], "words": [["", "dog"]]}],
    "captured_tables": [{"ids": [3, 4, 11], "words": ["dog", "cow", "emu"]},
                        {"ids": [7], "words": [""]}],
}


def _arrays(signature: str, inputs: dict) -> dict[str, np.ndarray]:
    return signature_arrays(_Sparse, signature, inputs)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return saved_and_loaded(_Sparse(), CASES, tmp_path_factory.mktemp("sparse"))


@pytest.mark.parametrize("signature,index", [(s, i) for s, cases in CASES.items()
                                             for i in range(len(cases))])
def test_outputs_match_tf_through_apply_and_jitted_apply_device(saved, signature, index):
    model, module = saved
    arrays = _arrays(signature, CASES[signature][index])
    theirs = tf_outputs(model, signature, arrays)
    ours = module.apply(module.params, arrays, signature=signature, as_dict=True)
    assert_outputs_match(ours, theirs)
    feeds = module.preprocess(arrays, signature=signature)
    if not all(np.size(v) for v in feeds.values()):
        return  # an empty size cannot be traced: apply returned the empty results
    device = jax.jit(lambda params, feeds: module.apply_device(
        params, feeds, signature=signature, as_dict=True))
    assert_outputs_match(device(module.params, feeds), theirs)


@pytest.mark.parametrize("signature,host", [
    ("fill_empty_rows", True), ("dense_sets", True), ("difference", True),
    ("sparse_sets", True),
    ("ragged_gather", True), ("tables", True), ("captured_tables", True),
    ("ragged_to_sparse", False),
    ("sparse_reshape", False)])
def test_only_value_shaped_ops_and_tables_run_on_the_host(saved, signature, host):
    assert saved[1].has_host_stage(signature) == host


@pytest.mark.parametrize("signature,inputs,problem", [
    ("fill_empty_rows", {"indices": [[0, 0], [6, 1]], "values": [1, 2], "dense_shape": [6, 3],
                         "default": 0}, r"indices\(1, 0\) = 6 is not a row"),
    ("ragged_gather", {"splits": [0, 3, 3, 5, 9], "values": np.zeros([9, 3]),
                       "indices": [4]}, r"index 4 is out of range for 4 rows"),
    ("sparse_sets", {"a": [[1, 2, 3, 0], [4, 5, 0, 0]], "b_indices": [[1, 0], [0, 3]],
                     "b_values": [2, 9]}, r"index \[0, 3\] is out of order")])
def test_values_tf_refuses_fail_the_host_stage_naming_the_op(saved, signature, inputs,
                                                             problem):
    model, module = saved
    arrays = _arrays(signature, inputs)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_outputs(model, signature, arrays)
    with pytest.raises(jaxhub.HostStageError, match=rf"signature '{signature}': .*{problem}"):
        module.apply(module.params, arrays, signature=signature)


def test_a_traced_sparse_reshape_that_does_not_fit_fails_a_checked_call_as_tf(tmp_path):
    from jax.experimental import checkify
    from jaxhub_tf.from_tf.saved_model import convert_saved_model

    model = _Sparse()
    tf.saved_model.save(model, str(tmp_path / "sm"),
                        signatures={"sparse_reshape": model.sparse_reshape})
    convert_saved_model(tmp_path / "sm", tmp_path / "converted", checks=True)
    module = jaxhub.load(tmp_path / "converted")
    good = _arrays("sparse_reshape", CASES["sparse_reshape"][0])
    bad = {**good, "new_shape": np.array([5, -1], np.int64)}
    assert_outputs_match(module(good, signature="sparse_reshape"),
                         tf_outputs(model, "sparse_reshape", good))
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_outputs(model, "sparse_reshape", bad)
    with pytest.raises(checkify.JaxRuntimeError,
                       match=r"SparseReshape\) failed: the new shape does not hold"):
        module(bad, signature="sparse_reshape")
