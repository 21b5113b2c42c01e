"""The tensor-bundle reader against TF's own checkpoint reader, and on corrupt files."""

from __future__ import annotations

import time

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from jaxhub_tf.from_tf.reader import bundle, protos

from ._files import header, write_index


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint with numbers of several dtypes, strings and many small tensors."""

    class Variables(tf.Module):
        def __init__(self):
            self.matrix = tf.Variable(np.arange(12, dtype=np.float32).reshape(3, 4))
            self.words = tf.Variable(["hello", "", "wörld" * 50])
            self.ids = tf.Variable(np.array([1, -2, 3], np.int64))
            self.half = tf.Variable(tf.constant([1.5, -2.0], tf.bfloat16))
            self.flags = tf.Variable([True, False])
            self.many = [tf.Variable(float(i)) for i in range(60)]

    path = tmp_path_factory.mktemp("ckpt") / "saved"
    tf.saved_model.save(Variables(), str(path))
    return path / "variables" / "variables"


def test_reads_every_tensor_as_tf_does(checkpoint):
    theirs = tf.train.load_checkpoint(str(checkpoint))
    ours = bundle.BundleReader(checkpoint)
    assert ours.keys() == sorted(theirs.get_variable_to_dtype_map())
    for key in ours.keys():
        want = theirs.get_tensor(key)
        got = ours.get_tensor(key)
        if isinstance(want, bytes):  # TF returns a scalar string as bytes
            assert got.shape == () and got.item() == want
            continue
        assert got.dtype == want.dtype and got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    assert ours.get_tensor("half/.ATTRIBUTES/VARIABLE_VALUE").dtype == ml_dtypes.bfloat16


def _copy(checkpoint, tmp_path):
    for file in checkpoint.parent.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    return tmp_path / "variables"


def _shard(prefix):
    return prefix.with_name("variables.data-00000-of-00001")


@pytest.mark.parametrize("key", ["matrix/.ATTRIBUTES/VARIABLE_VALUE",
                                 "words/.ATTRIBUTES/VARIABLE_VALUE"])
def test_a_flipped_byte_is_a_checksum_mismatch_naming_the_shard(checkpoint, tmp_path, key):
    prefix = _copy(checkpoint, tmp_path)
    entry = protos.BundleEntryProto.FromString(bundle.BundleReader(prefix)._entries[
        key.encode()])
    data = bytearray(_shard(prefix).read_bytes())
    data[entry.offset + entry.size - 1] ^= 0x40
    _shard(prefix).write_bytes(bytes(data))
    with pytest.raises(bundle.CheckpointError, match="checksum mismatch") as error:
        bundle.BundleReader(prefix).get_tensor(key)
    assert str(_shard(prefix)) in str(error.value)


def test_a_truncated_shard_is_named(checkpoint, tmp_path):
    prefix = _copy(checkpoint, tmp_path)
    data = _shard(prefix).read_bytes()
    _shard(prefix).write_bytes(data[:len(data) // 2])
    reader = bundle.BundleReader(prefix)
    with pytest.raises(bundle.CheckpointError, match="truncated") as error:
        for key in reader.keys():
            reader.get_tensor(key)
    assert str(_shard(prefix)) in str(error.value)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_index_is_named(checkpoint, tmp_path, damage):
    prefix = _copy(checkpoint, tmp_path)
    index = prefix.with_name("variables.index")
    data = bytearray(index.read_bytes())
    if damage == "truncate":
        data = data[:len(data) - 30]
    else:
        data[10] ^= 0x01
    index.write_bytes(bytes(data))
    with pytest.raises(bundle.CheckpointError) as error:
        bundle.BundleReader(prefix)
    assert str(index) in str(error.value)


def test_an_absurd_shape_is_refused_before_allocating(tmp_path):
    shape = protos.TensorShapeProto()
    for size in (10**6, 10**6):
        shape.dim.add(size=size)
    entry = protos.BundleEntryProto(dtype=1, shape=shape, size=4, crc32c=0)
    prefix = tmp_path / "variables"
    write_index(prefix.with_name("variables.index"),
                {b"": header(), b"huge": entry.SerializeToString()})
    _shard(prefix).write_bytes(b"\0" * 4)
    reader = bundle.BundleReader(prefix)
    assert reader.keys() == ["huge"]
    start = time.perf_counter()
    with pytest.raises(bundle.CheckpointError, match="1000000000000 elements"):
        reader.get_tensor("huge")
    assert time.perf_counter() - start < 1.0


def test_a_size_that_disagrees_with_the_shape_is_refused(tmp_path):
    shape = protos.TensorShapeProto()
    shape.dim.add(size=3)
    data = np.ones(2, np.float32).tobytes()
    entry = protos.BundleEntryProto(dtype=1, shape=shape, size=len(data),
                                    crc32c=bundle.masked_crc32c(data))
    prefix = tmp_path / "variables"
    write_index(prefix.with_name("variables.index"),
                {b"": header(), b"short": entry.SerializeToString()})
    _shard(prefix).write_bytes(data)
    with pytest.raises(bundle.CheckpointError, match="8 bytes for shape"):
        bundle.BundleReader(prefix).get_tensor("short")


def test_a_missing_index_is_named(tmp_path):
    with pytest.raises(bundle.CheckpointError, match="cannot read"):
        bundle.BundleReader(tmp_path / "variables")
