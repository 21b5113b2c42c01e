"""Hostile SavedModels and TF1 Hub modules: each is refused with a ModuleFormatError
naming the file, fast; unknown fields are ignored."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

import jaxhub
from jaxhub_tf.from_tf import saved_model as savedmodel
from jaxhub_tf.from_tf.tf1 import hub_module as tf1_hub
from jaxhub_tf.from_tf.reader import files, protos

from tests.converters.from_tf.tf1._session import FIXTURES

from ._files import field, varint


class _Affine(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2), name="w")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def __call__(self, x):
        return {"y": tf.matmul(x, self.w) + tf.constant(0.5)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "affine"
    module = _Affine()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


@pytest.fixture
def copy(saved, tmp_path):
    shutil.copytree(saved, tmp_path / "copy")
    return tmp_path / "copy"


def _rewrite(path, edit):
    """Re-serializes ``path``'s saved_model.pb after ``edit(proto)``."""
    pb = path / "saved_model.pb"
    proto = protos.SavedModel.FromString(pb.read_bytes())
    edit(proto)
    pb.write_bytes(proto.SerializeToString())


def _refused(path, match: str) -> str:
    start = time.perf_counter()
    with pytest.raises(jaxhub.ModuleFormatError, match=match) as error:
        savedmodel.load_saved_model(path)
    assert time.perf_counter() - start < 5.0
    assert str(path) in str(error.value)
    return str(error.value)


def test_unknown_fields_everywhere_are_ignored(copy):
    x = np.ones((2, 3), np.float32)
    expected = np.asarray(savedmodel.load_saved_model(copy)(x, as_dict=True)["y"])
    unknown = varint(4000 << 3 | 2) + varint(3) + b"new" + varint(4001 << 3) + varint(7)

    def add_unknown(proto):
        meta = proto.meta_graphs[0]
        for message in [proto, meta, meta.graph_def, *meta.graph_def.node,
                        *meta.graph_def.library.function, meta.object_graph_def,
                        *meta.object_graph_def.nodes]:
            message.MergeFromString(unknown)

    _rewrite(copy, add_unknown)
    raw = protos.SavedModel.FromString((copy / "saved_model.pb").read_bytes())
    assert raw.meta_graphs[0].graph_def.node[0].UnknownFields  # really there
    module = savedmodel.load_saved_model(copy)
    np.testing.assert_array_equal(module(x, as_dict=True)["y"], expected)


def test_a_truncated_saved_model_pb(copy):
    pb = copy / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:1000])
    _refused(copy, "not a readable SavedModel protobuf")


def test_a_corrupt_checkpoint_is_a_module_format_error(copy):
    shard = copy / "variables" / "variables.data-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(jaxhub.ModuleFormatError, match="checksum mismatch") as error:
        savedmodel.load_saved_model(copy)
    assert str(shard) in str(error.value)


def test_a_constant_with_an_absurd_shape(copy, tmp_path):
    def huge_constant(proto):
        for fdef in proto.meta_graphs[0].graph_def.library.function:
            for node in fdef.node_def:
                if node.op == "Const" and node.attr["dtype"].type == 1:
                    shape = node.attr["value"].tensor.tensor_shape
                    del shape.dim[:]
                    shape.dim.add(size=10**6)
                    shape.dim.add(size=10**6)

    _rewrite(copy, huge_constant)
    start = time.perf_counter()
    with pytest.raises(jaxhub.ModuleFormatError, match="1000000000000 elements") as error:
        savedmodel.convert_saved_model(copy, tmp_path / "out")
    assert time.perf_counter() - start < 30.0
    assert str(copy) in str(error.value)


def _calls(name: str, callee: str):
    fdef = protos.FunctionDef()
    fdef.signature.name = name
    fdef.node_def.add(name="call", op=callee)
    return fdef


def test_a_recursive_function_library(copy):
    def cycle(proto):
        library = proto.meta_graphs[0].graph_def.library
        library.function.extend([_calls("f_a", "f_b"), _calls("f_b", "f_c"),
                                 _calls("f_c", "f_a")])

    _rewrite(copy, cycle)
    assert "f_a -> f_b -> f_c -> f_a" in _refused(copy, "recursive")


def test_calls_nested_too_deep(copy):
    depth = files.MAX_CALL_DEPTH + 20

    def chain(proto):
        library = proto.meta_graphs[0].graph_def.library
        library.function.extend(_calls(f"f{i}", f"f{i + 1}") for i in range(depth))
        library.function.add().signature.name = f"f{depth}"

    _rewrite(copy, chain)
    _refused(copy, "nests calls")


def test_protobuf_nesting_deeper_than_protobuf_parses(copy):
    # A StructuredValue of 100000 nested lists in a concrete function's input signature.
    value = b""
    for _ in range(100_000):
        value = field(51, field(1, value))
    concrete = field(3, value)
    entry = field(1, b"deep") + field(2, concrete)
    meta = field(7, field(2, entry))
    pb = copy / "saved_model.pb"
    pb.write_bytes(pb.read_bytes() + field(2, meta))
    _refused(copy, "not a readable SavedModel protobuf")


def test_an_empty_saved_model_pb(copy):
    (copy / "saved_model.pb").write_bytes(b"")
    _refused(copy, "no MetaGraphDef")


@pytest.fixture
def tf1_copy(tmp_path):
    shutil.copytree(FIXTURES / "mlp", tmp_path / "mlp")
    return tmp_path / "mlp"


def test_a_truncated_tf1_module_def(tf1_copy):
    (tf1_copy / "tfhub_module.pb").write_bytes(b"\x08\x03\x12\x40ab")
    with pytest.raises(jaxhub.ModuleFormatError, match="tfhub_module.pb: not a TF Hub"):
        tf1_hub.load_tf1_hub_module(tf1_copy)


def test_a_corrupt_tf1_checkpoint_names_the_shard(tf1_copy):
    shard = tf1_copy / "variables" / "variables.data-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    with pytest.raises(jaxhub.ModuleFormatError, match="checksum mismatch") as error:
        tf1_hub.load_tf1_hub_module(tf1_copy)
    assert str(shard) in str(error.value)


class _Vocabulary(tf.Module):
    """A string lookup in a table filled from a vocabulary file (an asset)."""

    def __init__(self, vocab):
        super().__init__()
        self.table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
            str(vocab), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER), -1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, words):
        return self.table.lookup(words)


@pytest.fixture(scope="module")
def with_vocab(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    (root / "vocab.txt").write_text("the\ncat\nsat\n")
    tf.saved_model.save(_Vocabulary(root / "vocab.txt"), str(root / "saved"))
    return root / "saved"


@pytest.fixture
def vocab_copy(with_vocab, tmp_path):
    shutil.copytree(with_vocab, tmp_path / "saved")
    (tmp_path / "secret.txt").write_text("password\nhunter2\n")
    return tmp_path / "saved"


def _name_asset(path, filename):
    def edit(proto):
        for asset in proto.meta_graphs[0].asset_file_def:
            asset.filename = filename
    _rewrite(path, edit)


def test_the_vocabulary_asset_converts(vocab_copy):
    words = np.array([b"cat", b"dog", b"the"])
    got = savedmodel.load_saved_model(vocab_copy)(words)
    np.testing.assert_array_equal(got, tf.saved_model.load(str(vocab_copy))(words).numpy())


@pytest.mark.parametrize("where", ["climbing", "absolute"])
def test_an_asset_named_outside_the_saved_model_is_not_read(vocab_copy, where):
    secret = vocab_copy.parent / "secret.txt"
    _name_asset(vocab_copy, "../../secret.txt" if where == "climbing" else str(secret))
    message = _refused(vocab_copy, "names a file outside its assets/ directory")
    assert "secret.txt" in message


def test_an_asset_linked_out_of_the_saved_model_is_not_read(vocab_copy):
    (vocab_copy / "assets" / "vocab.txt").unlink()
    (vocab_copy / "assets" / "vocab.txt").symlink_to(vocab_copy.parent / "secret.txt")
    _refused(vocab_copy, "'vocab.txt' is a symbolic link out of its assets/ directory")


@pytest.mark.parametrize("kind", ["fifo", "directory", "missing"])
def test_an_asset_that_is_not_a_regular_file_is_named(vocab_copy, kind):
    asset = vocab_copy / "assets" / "vocab.txt"
    asset.unlink()
    if kind == "fifo":
        os.mkfifo(asset)
    elif kind == "directory":
        asset.mkdir()
    _refused(vocab_copy, "'vocab.txt' is missing from assets/ or not a regular file")


def test_a_tf1_asset_linked_out_of_the_module_is_not_read(tmp_path):
    module = shutil.copytree(FIXTURES / "text", tmp_path / "text")
    (tmp_path / "secret.txt").write_text("password\n")
    (module / "assets" / "vocab.txt").unlink()
    (module / "assets" / "vocab.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(jaxhub.ModuleFormatError, match="symbolic link out of its assets/"):
        tf1_hub.load_tf1_hub_module(module)


def test_ops_that_touch_files_are_refused_and_never_run(tmp_path):
    # Converting never executes graph code: a SavedModel that reads, lists and writes
    # files is refused by name, and nothing it names is touched.
    secret, written = tmp_path / "secret.txt", tmp_path / "written.txt"
    secret.write_text("hunter2")

    class Files(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x):
            tf.io.write_file(str(written), tf.io.read_file(str(secret)))
            return x + tf.cast(tf.size(tf.io.matching_files(str(tmp_path / "*"))), tf.float32)

    tf.saved_model.save(Files(), str(tmp_path / "saved"))
    from jaxhub_tf.from_tf.interpreter import UnsupportedOpsError
    with pytest.raises(UnsupportedOpsError) as error:
        savedmodel.load_saved_model(tmp_path / "saved")(np.ones(2, np.float32))
    for op in ("ReadFile", "WriteFile", "MatchingFiles"):
        assert op in str(error.value)
    assert not written.exists()


def test_a_tf1_module_without_its_checkpoint_index_names_it(tf1_copy):
    (tf1_copy / "variables" / "variables.index").unlink()
    with pytest.raises(jaxhub.ModuleFormatError, match="variables.index is missing, yet the "
                                                       "module has variable"):
        tf1_hub.load_tf1_hub_module(tf1_copy)


def _refused_without_blocking(load, path, match: str) -> None:
    """``load(path)`` fails with a ModuleFormatError matching ``match``, in bounded time
    (a plain ``open`` of a FIFO waits forever for a writer)."""
    outcome = []

    def run():
        try:
            load(path)
        except Exception as e:  # noqa: BLE001 (checked below)
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert outcome, f"loading {path} blocked"
    assert isinstance(outcome[0], jaxhub.ModuleFormatError), repr(outcome[0])
    assert re.search(match, str(outcome[0])), str(outcome[0])


@pytest.mark.parametrize("file", ["saved_model.pb", "variables/variables.index",
                                  "variables/variables.data-00000-of-00001"])
def test_a_fifo_in_a_saved_model_is_refused_without_blocking(copy, file):
    (copy / file).unlink()
    os.mkfifo(copy / file)
    _refused_without_blocking(savedmodel.load_saved_model, copy,
                              f"{re.escape(str(copy / file))}.*not a regular file")


def test_a_fifo_as_a_tf1_module_def_is_refused_without_blocking(tf1_copy):
    (tf1_copy / "tfhub_module.pb").unlink()
    os.mkfifo(tf1_copy / "tfhub_module.pb")
    _refused_without_blocking(tf1_hub.load_tf1_hub_module, tf1_copy,
                              "tfhub_module.pb: cannot read the ModuleDef .not a regular file")
