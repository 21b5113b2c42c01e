"""Host stages as data: programs that name unknown ops, lack inputs or assets, fail clearly."""

from __future__ import annotations

import numpy as np
import pytest

from jaxhub._src.host import HostStage, HostStageError
from jaxhub._src.host.program import decode_array, encode_array
from jaxhub._src.specs import SignatureError


def _program(nodes, outputs, **extra):
    return {"inputs": {"text": {"dtype": "string", "shape": [None]}}, "nodes": nodes,
            "outputs": outputs, **extra}


def test_arrays_round_trip_through_json():
    for value in (np.arange(6, dtype=np.int64).reshape(2, 3), np.float32(1.5),
                  np.asarray([b"a", "ü".encode(), b""], object)):
        back = decode_array(encode_array(value))
        np.testing.assert_array_equal(back, value)
        assert back.shape == np.shape(value)


def test_unknown_ops_are_named_before_running():
    program = _program([{"name": "n", "op": "MyCustomStringOp", "inputs": [["text", 0]]}],
                       {"out": ["n", 0]})
    with pytest.raises(HostStageError, match="MyCustomStringOp"):
        HostStage(program)


def test_missing_inputs_assets_and_nodes_are_reported():
    lower = {"name": "lower", "op": "StringLower", "inputs": [["text", 0]]}
    hashed = {"name": "h", "op": "StringToHashBucketFast", "inputs": [["lower", 0]],
              "attrs": {"num_buckets": 10}}
    stage = HostStage(_program([lower, hashed], {"ids": ["h", 0]}))
    with pytest.raises(SignatureError, match="missing"):
        stage.run({"other": ["x"]})
    ids = stage.run(["Hello", "hello"])["ids"]
    assert ids.dtype == np.int32 and ids[0] == ids[1]  # lower-cased before hashing
    with pytest.raises(HostStageError, match="v.txt"):
        HostStage(_program([{"name": "f", "op": "Asset", "attrs": {"name": "v.txt"}}],
                           {}))
    with pytest.raises(HostStageError, match="nowhere"):
        HostStage(_program([{"name": "h", "op": "StringLower", "inputs": [["nowhere", 0]]}],
                           {"h": ["h", 0]}))


def test_declared_output_dtypes_are_kept_and_undeclared_int64_is_narrowed():
    where = {"name": "w", "op": "Where", "inputs": [["x", 0]]}
    program = {"inputs": {"x": {"dtype": "bool", "shape": [None]}}, "nodes": [where],
               "outputs": {"typed": ["w", 0], "untyped": ["w", 0]},
               "output_specs": {"typed": {"shape": ["n1", 1], "dtype": "int64"}}}
    feeds = HostStage(program).run({"x": np.asarray([True, False, True])})
    assert feeds["typed"].dtype == np.int64 and feeds["untyped"].dtype == np.int32
    np.testing.assert_array_equal(feeds["typed"], [[0], [2]])


def test_string_results_never_reach_the_device():
    stage = HostStage(_program([{"name": "l", "op": "StringLower", "inputs": [["text", 0]]}],
                               {"l": ["l", 0]}))
    with pytest.raises(HostStageError, match="string tensor"):
        stage.run(["x"])


def test_table_from_vocabulary_file(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\nc\n")
    nodes = [
        {"name": "table", "op": "HashTableV2",
         "attrs": {"key_dtype": "string", "value_dtype": "int64"}},
        {"name": "file", "op": "Asset", "attrs": {"name": "vocab.txt"}},
        {"name": "init", "op": "InitializeTableFromTextFileV2",
         "inputs": [["table", 0], ["file", 0]], "attrs": {"key_index": -2, "value_index": -1}},
        {"name": "default", "op": "Const", "attrs": {"value": encode_array(np.int64(-1))}},
        {"name": "find", "op": "LookupTableFindV2",
         "inputs": [["table", 0], ["text", 0], ["default", 0]]},
        {"name": "size", "op": "LookupTableSizeV2", "inputs": [["table", 0]]},
    ]
    stage = HostStage(_program(nodes, {"ids": ["find", 0], "n": ["size", 0]}, init=["init"]),
                      {"vocab.txt": vocab})
    out = stage.run(["c", "a", "zz"])
    np.testing.assert_array_equal(out["ids"], [2, 0, -1])
    assert int(out["n"]) == 3
