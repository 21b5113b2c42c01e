"""TensorFlow's protobuf messages, defined for jaxhub: only the fields the converter reads.

The messages are built at import time from the table below into a private descriptor pool
(no generated ``_pb2`` code, so no check against the protobuf runtime's version; used
with protobuf 6.31, the oldest TF 2.21 allows, and 7.36). Field numbers and wire types are those of TensorFlow's
``.proto`` files; fields left out are kept as unknown fields by the parser, so newer
SavedModels parse too. ``DataType`` fields read as plain integers, as all enums do
(see :mod:`jaxhub_tf.from_tf.reader.tensors`).

A field is ``(name, number, type)``; ``type`` is a scalar type (``string``, ``bytes``,
``int32``, ``int64``, ``uint32``, ``uint64``, ``sint64``, ``fixed32``, ``float``,
``double``, ``bool``), ``DataType``, a message name, ``"repeated T"`` or
``"map<K,V>"``. A field inside
``("oneof", name, [fields])`` belongs to that oneof.

Examples:
  >>> proto = protos.SavedModel.FromString(data)
  >>> proto.meta_graphs[0].graph_def.node[0].op
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool

try:  # protobuf >= 4.22
    from google.protobuf.message_factory import GetMessageClass as _message_class
except ImportError:  # pragma: no cover - older protobuf
    from google.protobuf import message_factory as _factory

    def _message_class(descriptor):
        return _factory.MessageFactory().GetPrototype(descriptor)

_PACKAGE = "jaxhub.tf"

#: TF's ``DataType`` values (a ref type, ``DT_FLOAT_REF``, adds 100), for the text format.
DATA_TYPES = (
    "DT_INVALID", "DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_UINT8", "DT_INT16", "DT_INT8",
    "DT_STRING", "DT_COMPLEX64", "DT_INT64", "DT_BOOL", "DT_QINT8", "DT_QUINT8",
    "DT_QINT32", "DT_BFLOAT16", "DT_QINT16", "DT_QUINT16", "DT_UINT16", "DT_COMPLEX128",
    "DT_HALF", "DT_RESOURCE", "DT_VARIANT", "DT_UINT32", "DT_UINT64", "DT_FLOAT8_E5M2",
    "DT_FLOAT8_E4M3FN", "DT_FLOAT8_E4M3FNUZ", "DT_FLOAT8_E4M3B11FNUZ", "DT_FLOAT8_E5M2FNUZ",
    "DT_INT4", "DT_UINT4", "DT_INT2", "DT_UINT2", "DT_FLOAT4_E2M1FN")

# Other enums are left out (or read as int32, which they are on the wire).
_MESSAGES: dict[str, list[Any]] = {
    # -- tensors (tensor.proto, tensor_shape.proto, resource_handle.proto) --------------
    "TensorShapeDim": [("size", 1, "int64"), ("name", 2, "string")],
    "TensorShapeProto": [("dim", 2, "repeated TensorShapeDim"), ("unknown_rank", 3, "bool")],
    "DtypeAndShape": [("dtype", 1, "DataType"), ("shape", 2, "TensorShapeProto")],
    "ResourceHandleProto": [
        ("device", 1, "string"), ("container", 2, "string"), ("name", 3, "string"),
        ("hash_code", 4, "uint64"), ("maybe_type_name", 5, "string"),
        ("dtypes_and_shapes", 6, "repeated DtypeAndShape")],
    "VariantTensorDataProto": [("type_name", 1, "string"), ("metadata", 2, "bytes"),
                               ("tensors", 3, "repeated TensorProto")],
    "TensorProto": [
        ("dtype", 1, "DataType"), ("tensor_shape", 2, "TensorShapeProto"),
        ("version_number", 3, "int32"), ("tensor_content", 4, "bytes"),
        ("half_val", 13, "repeated int32"), ("float_val", 5, "repeated float"),
        ("double_val", 6, "repeated double"), ("int_val", 7, "repeated int32"),
        ("string_val", 8, "repeated bytes"), ("scomplex_val", 9, "repeated float"),
        ("int64_val", 10, "repeated int64"), ("bool_val", 11, "repeated bool"),
        ("dcomplex_val", 12, "repeated double"),
        ("resource_handle_val", 14, "repeated ResourceHandleProto"),
        ("variant_val", 15, "repeated VariantTensorDataProto"),
        ("uint32_val", 16, "repeated uint32"), ("uint64_val", 17, "repeated uint64"),
        ("float8_val", 18, "bytes")],
    # -- graphs (attr_value.proto, node_def.proto, graph.proto, op_def.proto) -----------
    "AttrListValue": [
        ("s", 2, "repeated bytes"), ("i", 3, "repeated int64"), ("f", 4, "repeated float"),
        ("b", 5, "repeated bool"), ("type", 6, "repeated DataType"),
        ("shape", 7, "repeated TensorShapeProto"), ("tensor", 8, "repeated TensorProto"),
        ("func", 9, "repeated NameAttrList")],
    "AttrValue": [("oneof", "value", [
        ("s", 2, "bytes"), ("i", 3, "int64"), ("f", 4, "float"), ("b", 5, "bool"),
        ("type", 6, "DataType"), ("shape", 7, "TensorShapeProto"),
        ("tensor", 8, "TensorProto"), ("list", 1, "AttrListValue"),
        ("func", 10, "NameAttrList"), ("placeholder", 9, "string")])],
    "NameAttrList": [("name", 1, "string"), ("attr", 2, "map<string,AttrValue>")],
    "NodeDef": [("name", 1, "string"), ("op", 2, "string"), ("input", 3, "repeated string"),
                ("device", 4, "string"), ("attr", 5, "map<string,AttrValue>")],
    "VersionDef": [("producer", 1, "int32"), ("min_consumer", 2, "int32"),
                   ("bad_consumers", 3, "repeated int32")],
    "ArgDef": [("name", 1, "string"), ("type", 3, "DataType"), ("type_attr", 4, "string"),
               ("number_attr", 5, "string"), ("type_list_attr", 6, "string"),
               ("is_ref", 16, "bool")],
    "AttrDef": [("name", 1, "string"), ("type", 2, "string"),
                ("default_value", 3, "AttrValue"), ("has_minimum", 5, "bool"),
                ("minimum", 6, "int64"), ("allowed_values", 7, "AttrValue")],
    "OpDef": [("name", 1, "string"), ("input_arg", 2, "repeated ArgDef"),
              ("output_arg", 3, "repeated ArgDef"), ("control_output", 20, "repeated string"),
              ("attr", 4, "repeated AttrDef"), ("is_stateful", 17, "bool")],
    "OpList": [("op", 1, "repeated OpDef")],
    # -- function libraries (function.proto) --------------------------------------------
    "ArgAttrs": [("attr", 1, "map<string,AttrValue>")],
    "FunctionDef": [
        ("signature", 1, "OpDef"), ("attr", 5, "map<string,AttrValue>"),
        ("arg_attr", 7, "map<uint32,ArgAttrs>"),
        ("resource_arg_unique_id", 8, "map<uint32,uint32>"),
        ("node_def", 3, "repeated NodeDef"), ("ret", 4, "map<string,string>"),
        ("control_ret", 6, "map<string,string>")],
    "GradientDef": [("function_name", 1, "string"), ("gradient_func", 2, "string")],
    "RegisteredGradient": [("gradient_func", 1, "string"),
                           ("registered_op_type", 2, "string")],
    "FunctionDefLibrary": [("function", 1, "repeated FunctionDef"),
                           ("gradient", 2, "repeated GradientDef"),
                           ("registered_gradients", 3, "repeated RegisteredGradient")],
    "GraphDef": [("node", 1, "repeated NodeDef"), ("versions", 4, "VersionDef"),
                 ("library", 2, "FunctionDefLibrary")],
    # -- meta graphs (meta_graph.proto, saved_model.proto, variable.proto) --------------
    "Any": [("type_url", 1, "string"), ("value", 2, "bytes")],
    "MetaInfoDef": [("meta_graph_version", 1, "string"), ("stripped_op_list", 2, "OpList"),
                    ("tags", 4, "repeated string"), ("tensorflow_version", 5, "string"),
                    ("tensorflow_git_version", 6, "string"),
                    ("stripped_default_attrs", 7, "bool"),
                    ("function_aliases", 8, "map<string,string>")],
    "NodeList": [("value", 1, "repeated string")],
    "BytesList": [("value", 1, "repeated bytes")],
    "Int64List": [("value", 1, "repeated int64")],
    "FloatList": [("value", 1, "repeated float")],
    "AnyList": [("value", 1, "repeated Any")],
    "CollectionDef": [("oneof", "kind", [
        ("node_list", 1, "NodeList"), ("bytes_list", 2, "BytesList"),
        ("int64_list", 3, "Int64List"), ("float_list", 4, "FloatList"),
        ("any_list", 5, "AnyList")])],
    "CooSparse": [("values_tensor_name", 1, "string"), ("indices_tensor_name", 2, "string"),
                  ("dense_shape_tensor_name", 3, "string")],
    "CompositeTensor": [("type_spec", 1, "TypeSpecProto"),
                        ("components", 2, "repeated TensorInfo")],
    "TensorInfo": [("oneof", "encoding", [
        ("name", 1, "string"), ("coo_sparse", 4, "CooSparse"),
        ("composite_tensor", 5, "CompositeTensor")]),
        ("dtype", 2, "DataType"), ("tensor_shape", 3, "TensorShapeProto")],
    "SignatureDef": [("inputs", 1, "map<string,TensorInfo>"),
                     ("outputs", 2, "map<string,TensorInfo>"),
                     ("method_name", 3, "string"),
                     ("defaults", 4, "map<string,TensorProto>")],
    "AssetFileDef": [("tensor_info", 1, "TensorInfo"), ("filename", 2, "string")],
    "MetaGraphDef": [("meta_info_def", 1, "MetaInfoDef"), ("graph_def", 2, "GraphDef"),
                     ("collection_def", 4, "map<string,CollectionDef>"),
                     ("signature_def", 5, "map<string,SignatureDef>"),
                     ("asset_file_def", 6, "repeated AssetFileDef"),
                     ("object_graph_def", 7, "SavedObjectGraph")],
    "SavedModel": [("saved_model_schema_version", 1, "int64"),
                   ("meta_graphs", 2, "repeated MetaGraphDef")],
    "VariableDef": [("variable_name", 1, "string"), ("initial_value_name", 6, "string"),
                    ("initializer_name", 2, "string"), ("snapshot_name", 3, "string"),
                    ("is_resource", 5, "bool"), ("trainable", 7, "bool")],
    # -- nested structures (struct.proto) -----------------------------------------------
    "NoneValue": [],
    "StructListValue": [("values", 1, "repeated StructuredValue")],
    "TupleValue": [("values", 1, "repeated StructuredValue")],
    "DictValue": [("fields", 1, "map<string,StructuredValue>")],
    "PairValue": [("key", 1, "string"), ("value", 2, "StructuredValue")],
    "NamedTupleValue": [("name", 1, "string"), ("values", 2, "repeated PairValue")],
    "TensorSpecProto": [("name", 1, "string"), ("shape", 2, "TensorShapeProto"),
                        ("dtype", 3, "DataType")],
    "BoundedTensorSpecProto": [("name", 1, "string"), ("shape", 2, "TensorShapeProto"),
                               ("dtype", 3, "DataType"), ("minimum", 4, "TensorProto"),
                               ("maximum", 5, "TensorProto")],
    "TypeSpecProto": [("type_state", 2, "StructuredValue"),
                      ("type_spec_class_name", 3, "string"),
                      ("num_flat_components", 4, "int32")],
    "StructuredValue": [("oneof", "kind", [
        ("none_value", 1, "NoneValue"), ("float64_value", 11, "double"),
        ("int64_value", 12, "sint64"), ("string_value", 13, "string"),
        ("bool_value", 14, "bool"), ("tensor_shape_value", 31, "TensorShapeProto"),
        ("tensor_dtype_value", 32, "DataType"), ("tensor_spec_value", 33, "TensorSpecProto"),
        ("type_spec_value", 34, "TypeSpecProto"),
        ("bounded_tensor_spec_value", 35, "BoundedTensorSpecProto"),
        ("list_value", 51, "StructListValue"), ("tuple_value", 52, "TupleValue"),
        ("dict_value", 53, "DictValue"), ("named_tuple_value", 54, "NamedTupleValue"),
        ("tensor_value", 55, "TensorProto"), ("numpy_value", 56, "TensorProto")])],
    # -- object graphs (saved_object_graph.proto, trackable_object_graph.proto) ---------
    "ObjectReference": [("node_id", 1, "int32"), ("local_name", 2, "string")],
    "SerializedTensor": [("name", 1, "string"), ("full_name", 2, "string"),
                         ("checkpoint_key", 3, "string")],
    "SlotVariableReference": [("original_variable_node_id", 1, "int32"),
                              ("slot_name", 2, "string"),
                              ("slot_variable_node_id", 3, "int32")],
    "TrackableObject": [("children", 1, "repeated ObjectReference"),
                        ("attributes", 2, "repeated SerializedTensor"),
                        ("slot_variables", 3, "repeated SlotVariableReference")],
    "TrackableObjectGraph": [("nodes", 1, "repeated TrackableObject")],
    "SavedUserObject": [("identifier", 1, "string"), ("version", 2, "VersionDef"),
                        ("metadata", 3, "string")],
    "SavedAsset": [("asset_file_def_index", 1, "int32")],
    "FunctionSpec": [("fullargspec", 1, "StructuredValue"), ("is_method", 2, "bool"),
                     ("input_signature", 5, "StructuredValue")],
    "SavedFunction": [("concrete_functions", 1, "repeated string"),
                      ("function_spec", 2, "FunctionSpec")],
    "SavedBareConcreteFunction": [("concrete_function_name", 1, "string"),
                                  ("argument_keywords", 2, "repeated string"),
                                  ("allowed_positional_arguments", 3, "int64")],
    "SavedVariable": [("dtype", 1, "DataType"), ("shape", 2, "TensorShapeProto"),
                      ("trainable", 3, "bool"), ("name", 6, "string"),
                      ("device", 7, "string")],
    "SavedConstant": [("operation", 1, "string")],
    "SavedResource": [("device", 1, "string")],
    "CapturedTensor": [("name", 1, "string"), ("concrete_function", 2, "string")],
    "SavedObject": [
        ("children", 1, "repeated ObjectReference"),
        ("dependencies", 15, "repeated ObjectReference"),
        ("slot_variables", 3, "repeated SlotVariableReference"),
        ("oneof", "kind", [
            ("user_object", 4, "SavedUserObject"), ("asset", 5, "SavedAsset"),
            ("function", 6, "SavedFunction"), ("variable", 7, "SavedVariable"),
            ("bare_concrete_function", 8, "SavedBareConcreteFunction"),
            ("constant", 9, "SavedConstant"), ("resource", 10, "SavedResource"),
            ("captured_tensor", 12, "CapturedTensor")]),
        ("registered_name", 13, "string")],
    "SavedConcreteFunction": [("bound_inputs", 2, "repeated int32"),
                              ("canonicalized_input_signature", 3, "StructuredValue"),
                              ("output_signature", 4, "StructuredValue")],
    "SavedObjectGraph": [("nodes", 1, "repeated SavedObject"),
                         ("concrete_functions", 2, "map<string,SavedConcreteFunction>")],
    # -- checkpoints (tensor_bundle.proto, tensor_slice.proto) --------------------------
    "TensorSliceExtent": [("start", 1, "int64"), ("oneof", "has_length_hack", [
        ("length", 2, "int64")])],
    "TensorSliceProto": [("extent", 1, "repeated TensorSliceExtent")],
    "BundleHeaderProto": [("num_shards", 1, "int32"), ("endianness", 2, "int32"),
                          ("version", 3, "VersionDef")],
    "BundleEntryProto": [("dtype", 1, "DataType"), ("shape", 2, "TensorShapeProto"),
                         ("shard_id", 3, "int32"), ("offset", 4, "int64"),
                         ("size", 5, "int64"), ("crc32c", 6, "fixed32"),
                         ("slices", 7, "repeated TensorSliceProto")],
}

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES, "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64, "uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64,
    "sint64": _F.TYPE_SINT64, "fixed32": _F.TYPE_FIXED32, "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE, "bool": _F.TYPE_BOOL,
}


def _set_type(field: descriptor_pb2.FieldDescriptorProto, type_name: str) -> None:
    if type_name == "DataType":
        field.type = _F.TYPE_ENUM
        field.type_name = f".{_PACKAGE}.DataType"
    elif type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    else:
        field.type = _F.TYPE_MESSAGE
        field.type_name = f".{_PACKAGE}.{type_name}"


def _add_field(message: descriptor_pb2.DescriptorProto, name: str, number: int,
               kind: str, oneof: int | None = None) -> None:
    field = message.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL)
    if oneof is not None:
        field.oneof_index = oneof
    if kind.startswith("map<"):
        key, value = kind[4:-1].split(",")
        entry_name = "".join(p.capitalize() for p in name.split("_")) + "Entry"
        entry = message.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        _add_field(entry, "key", 1, key)
        _add_field(entry, "value", 2, value)
        field.label = _F.LABEL_REPEATED
        field.type = _F.TYPE_MESSAGE
        field.type_name = f".{_PACKAGE}.{message.name}.{entry_name}"
        return
    if kind.startswith("repeated "):
        field.label = _F.LABEL_REPEATED
        kind = kind[len("repeated "):]
    _set_type(field, kind)


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="jaxhub/tf_formats.proto", package=_PACKAGE, syntax="proto3")
    enum = proto.enum_type.add(name="DataType")
    for number, name in enumerate(DATA_TYPES):
        enum.value.add(name=name, number=number)
    for number, name in enumerate(DATA_TYPES[1:], start=101):
        enum.value.add(name=f"{name}_REF", number=number)
    for name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=name)
        for field in fields:
            if field[0] == "oneof":
                message.oneof_decl.add(name=field[1])
                index = len(message.oneof_decl) - 1
                for member in field[2]:
                    _add_field(message, *member, oneof=index)
            else:
                _add_field(message, *field)
    return proto


def _build() -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(_file_descriptor().SerializeToString())
    return {name: _message_class(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
            for name in _MESSAGES}


_CLASSES = _build()

TensorShapeProto = _CLASSES["TensorShapeProto"]
TensorProto = _CLASSES["TensorProto"]
AttrValue = _CLASSES["AttrValue"]
NameAttrList = _CLASSES["NameAttrList"]
NodeDef = _CLASSES["NodeDef"]
OpDef = _CLASSES["OpDef"]
OpList = _CLASSES["OpList"]
FunctionDef = _CLASSES["FunctionDef"]
FunctionDefLibrary = _CLASSES["FunctionDefLibrary"]
GraphDef = _CLASSES["GraphDef"]
MetaGraphDef = _CLASSES["MetaGraphDef"]
SavedModel = _CLASSES["SavedModel"]
AssetFileDef = _CLASSES["AssetFileDef"]
VariableDef = _CLASSES["VariableDef"]
StructuredValue = _CLASSES["StructuredValue"]
SavedObjectGraph = _CLASSES["SavedObjectGraph"]
TrackableObjectGraph = _CLASSES["TrackableObjectGraph"]
BundleHeaderProto = _CLASSES["BundleHeaderProto"]
BundleEntryProto = _CLASSES["BundleEntryProto"]


def message_class(name: str) -> type:
    """The message class called ``name`` in the table above (e.g. ``"TensorInfo"``)."""
    return _CLASSES[name]
