"""jaxhub's TF messages, tensors and structures against TensorFlow's own."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import (attr_value_pb2, function_pb2, graph_pb2,
                                       node_def_pb2, op_def_pb2, resource_handle_pb2,
                                       tensor_pb2, tensor_shape_pb2, tensor_slice_pb2,
                                       types_pb2, variable_pb2, versions_pb2)
from tensorflow.core.protobuf import (meta_graph_pb2, saved_model_pb2,
                                      saved_object_graph_pb2, struct_pb2, tensor_bundle_pb2,
                                      trackable_object_graph_pb2)
from tensorflow.python.saved_model import nested_structure_coder

from jaxhub_tf.from_tf.reader import protos, structure, tensors

# jaxhub's message -> TensorFlow's.
_THEIRS = {
    "TensorShapeDim": tensor_shape_pb2.TensorShapeProto.Dim,
    "TensorShapeProto": tensor_shape_pb2.TensorShapeProto,
    "DtypeAndShape": resource_handle_pb2.ResourceHandleProto.DtypeAndShape,
    "ResourceHandleProto": resource_handle_pb2.ResourceHandleProto,
    "VariantTensorDataProto": tensor_pb2.VariantTensorDataProto,
    "TensorProto": tensor_pb2.TensorProto,
    "AttrListValue": attr_value_pb2.AttrValue.ListValue,
    "AttrValue": attr_value_pb2.AttrValue,
    "NameAttrList": attr_value_pb2.NameAttrList,
    "NodeDef": node_def_pb2.NodeDef,
    "VersionDef": versions_pb2.VersionDef,
    "ArgDef": op_def_pb2.OpDef.ArgDef,
    "AttrDef": op_def_pb2.OpDef.AttrDef,
    "OpDef": op_def_pb2.OpDef,
    "OpList": op_def_pb2.OpList,
    "ArgAttrs": function_pb2.FunctionDef.ArgAttrs,
    "FunctionDef": function_pb2.FunctionDef,
    "GradientDef": function_pb2.GradientDef,
    "RegisteredGradient": function_pb2.RegisteredGradient,
    "FunctionDefLibrary": function_pb2.FunctionDefLibrary,
    "GraphDef": graph_pb2.GraphDef,
    "MetaInfoDef": meta_graph_pb2.MetaGraphDef.MetaInfoDef,
    "NodeList": meta_graph_pb2.CollectionDef.NodeList,
    "BytesList": meta_graph_pb2.CollectionDef.BytesList,
    "Int64List": meta_graph_pb2.CollectionDef.Int64List,
    "FloatList": meta_graph_pb2.CollectionDef.FloatList,
    "AnyList": meta_graph_pb2.CollectionDef.AnyList,
    "CollectionDef": meta_graph_pb2.CollectionDef,
    "CooSparse": meta_graph_pb2.TensorInfo.CooSparse,
    "CompositeTensor": meta_graph_pb2.TensorInfo.CompositeTensor,
    "TensorInfo": meta_graph_pb2.TensorInfo,
    "SignatureDef": meta_graph_pb2.SignatureDef,
    "AssetFileDef": meta_graph_pb2.AssetFileDef,
    "MetaGraphDef": meta_graph_pb2.MetaGraphDef,
    "SavedModel": saved_model_pb2.SavedModel,
    "VariableDef": variable_pb2.VariableDef,
    "NoneValue": struct_pb2.NoneValue,
    "StructListValue": struct_pb2.ListValue,
    "TupleValue": struct_pb2.TupleValue,
    "DictValue": struct_pb2.DictValue,
    "PairValue": struct_pb2.PairValue,
    "NamedTupleValue": struct_pb2.NamedTupleValue,
    "TensorSpecProto": struct_pb2.TensorSpecProto,
    "BoundedTensorSpecProto": struct_pb2.BoundedTensorSpecProto,
    "TypeSpecProto": struct_pb2.TypeSpecProto,
    "StructuredValue": struct_pb2.StructuredValue,
    "ObjectReference":
        trackable_object_graph_pb2.TrackableObjectGraph.TrackableObject.ObjectReference,
    "SerializedTensor":
        trackable_object_graph_pb2.TrackableObjectGraph.TrackableObject.SerializedTensor,
    "SlotVariableReference":
        trackable_object_graph_pb2.TrackableObjectGraph.TrackableObject.SlotVariableReference,
    "TrackableObject": trackable_object_graph_pb2.TrackableObjectGraph.TrackableObject,
    "TrackableObjectGraph": trackable_object_graph_pb2.TrackableObjectGraph,
    "SavedUserObject": saved_object_graph_pb2.SavedUserObject,
    "SavedAsset": saved_object_graph_pb2.SavedAsset,
    "FunctionSpec": saved_object_graph_pb2.FunctionSpec,
    "SavedFunction": saved_object_graph_pb2.SavedFunction,
    "SavedBareConcreteFunction": saved_object_graph_pb2.SavedBareConcreteFunction,
    "SavedVariable": saved_object_graph_pb2.SavedVariable,
    "SavedConstant": saved_object_graph_pb2.SavedConstant,
    "SavedResource": saved_object_graph_pb2.SavedResource,
    "CapturedTensor": saved_object_graph_pb2.CapturedTensor,
    "SavedObject": saved_object_graph_pb2.SavedObject,
    "SavedConcreteFunction": saved_object_graph_pb2.SavedConcreteFunction,
    "SavedObjectGraph": saved_object_graph_pb2.SavedObjectGraph,
    "TensorSliceExtent": tensor_slice_pb2.TensorSliceProto.Extent,
    "TensorSliceProto": tensor_slice_pb2.TensorSliceProto,
    "BundleHeaderProto": tensor_bundle_pb2.BundleHeaderProto,
    "BundleEntryProto": tensor_bundle_pb2.BundleEntryProto,
}


@pytest.mark.parametrize("name", sorted(set(protos._MESSAGES) - {"Any"}))
def test_fields_have_tf_numbers_and_types(name):
    theirs = _THEIRS[name].DESCRIPTOR
    for mine in protos.message_class(name).DESCRIPTOR.fields:
        field = theirs.fields_by_name[mine.name]
        # Enums other than DataType are read as int32, their wire type.
        kinds = ({mine.TYPE_ENUM, mine.TYPE_INT32} if field.type == field.TYPE_ENUM
                 else {field.type})
        assert (mine.number, mine.is_repeated) == (field.number, field.is_repeated)
        assert mine.type in kinds, mine.name
        if mine.containing_oneof is not None:
            assert mine.containing_oneof.name == field.containing_oneof.name


def test_data_types_have_tf_names_and_numbers():
    mine = protos.TensorProto.DESCRIPTOR.fields_by_name["dtype"].enum_type
    assert {v.name: v.number for v in mine.values} == {
        v.name: v.number for v in types_pb2.DataType.DESCRIPTOR.values}


def test_a_tf_saved_model_reads_the_same(tmp_path):
    module = tf.Module()
    module.v = tf.Variable([1.0, 2.0])
    module.f = tf.function(lambda x: {"out": x * module.v},
                           input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.f})
    data = (tmp_path / "saved_model.pb").read_bytes()
    ours = protos.SavedModel.FromString(data)
    theirs = saved_model_pb2.SavedModel.FromString(data)
    assert ours.SerializeToString(deterministic=True) != b""
    # Re-serialized (known fields and unknown ones kept), TF reads what it wrote.
    again = saved_model_pb2.SavedModel.FromString(ours.SerializeToString())
    assert again == theirs


@pytest.mark.parametrize("value", [
    np.float32(3), np.arange(6, dtype=np.float32).reshape(2, 3),
    np.array([1, -2], np.int64), np.array([True, False]), np.array([1, 2], np.uint8),
    np.array([b"a", b"bc"], dtype=object), np.array(3 + 4j, np.complex64),
    np.ones(3, np.float16), np.ones(3, ml_dtypes.bfloat16), np.array([7], np.uint64),
])
def test_tensors_decode_as_tf_does(value):
    proto = tf.make_tensor_proto(value)
    ours = tensors.to_numpy(protos.TensorProto.FromString(proto.SerializeToString()))
    theirs = tf.make_ndarray(proto)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_constants_filled_from_one_value_decode_as_tf_does():
    graph = tf.Graph()
    with graph.as_default():
        tf.constant(2.5, shape=[3, 4])
        tf.constant("x", shape=[2])
        tf.zeros([2, 2], tf.int32)
    for node in graph.as_graph_def().node:
        proto = node.attr["value"].tensor
        ours = tensors.to_numpy(protos.TensorProto.FromString(proto.SerializeToString()))
        np.testing.assert_array_equal(ours, tf.make_ndarray(proto))


def test_a_constant_claiming_too_many_elements_is_refused():
    proto = protos.TensorProto(dtype=1, float_val=[1.0])
    for size in (10**6, 10**6):
        proto.tensor_shape.dim.add(size=size)
    with pytest.raises(tensors.TensorFormatError, match="1000000000000 elements"):
        tensors.to_numpy(proto)


def test_structures_decode_and_flatten_as_tf_nest_does():
    value = {"b": [tf.TensorSpec([None, 3], tf.float32, "x"), True],
             "a": (None, 2.5, "s", {"z": tf.TensorSpec([], tf.int64)})}
    encoded = nested_structure_coder.encode_structure(value)
    ours = structure.decode(protos.StructuredValue.FromString(encoded.SerializeToString()))
    flat = structure.flatten(ours)
    expected = tf.nest.flatten(value)
    assert len(flat) == len(expected)
    for mine, theirs in zip(flat, expected):
        if isinstance(theirs, tf.TensorSpec):
            assert mine == structure.TensorSpec(tuple(theirs.shape.as_list()),
                                                theirs.dtype.as_numpy_dtype, theirs.name or "")
        else:
            assert mine == theirs
