"""TF's ``StructuredValue`` (the nested signatures of saved functions) as Python values.

Lists, tuples, dicts and named tuples become lists, tuples, dicts and tuples; tensor specs
become :class:`TensorSpec`; other type specs (ragged, sparse, ...) an opaque
:class:`TypeSpec`. :func:`flatten` orders leaves as ``tf.nest.flatten`` does.

Examples:
  >>> args = decode(concrete.canonicalized_input_signature)
  >>> [x for x in flatten(args) if isinstance(x, TensorSpec)]
  [TensorSpec(shape=(None, 224, 224, 3), dtype=dtype('float32'), name='inputs')]
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from jaxhub_tf.from_tf import graph as graph_lib
from jaxhub_tf.from_tf.reader import tensors


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A tensor's shape (``None`` for unknown sizes or rank), dtype and name."""

    shape: tuple[int | None, ...] | None
    dtype: Any
    name: str = ""


@dataclasses.dataclass(frozen=True)
class TypeSpec:
    """A composite tensor's spec (``RaggedTensorSpec``, ...): its class name, the number
    of tensors it flattens to, and its decoded ``type_state`` (for a ``RaggedTensorSpec``:
    ``(shape, dtype, ragged_rank, row_splits_dtype)``)."""

    class_name: str
    num_flat_components: int = 0
    state: Any = None


def decode(value) -> Any:
    """A ``StructuredValue`` message as Python values (see the module docstring)."""
    kind = value.WhichOneof("kind")
    if kind in (None, "none_value"):
        return None
    if kind in ("list_value", "tuple_value"):
        items = [decode(v) for v in getattr(value, kind).values]
        return items if kind == "list_value" else tuple(items)
    if kind == "dict_value":
        return {key: decode(v) for key, v in value.dict_value.fields.items()}
    if kind == "named_tuple_value":
        return tuple(decode(pair.value) for pair in value.named_tuple_value.values)
    if kind in ("tensor_spec_value", "bounded_tensor_spec_value"):
        spec = getattr(value, kind)
        return TensorSpec(graph_lib.decode_shape(spec.shape),
                          graph_lib.decode_dtype(spec.dtype), spec.name)
    if kind == "type_spec_value":
        spec = value.type_spec_value
        return TypeSpec(spec.type_spec_class_name or str(spec.type_spec_class),
                        spec.num_flat_components, decode(spec.type_state))
    if kind == "tensor_shape_value":
        return graph_lib.decode_shape(value.tensor_shape_value)
    if kind == "tensor_dtype_value":
        return graph_lib.decode_dtype(value.tensor_dtype_value)
    if kind in ("tensor_value", "numpy_value"):
        return tensors.to_numpy(getattr(value, kind))
    return getattr(value, kind)  # float64, int64, string, bool


def flatten(structure: Any) -> list[Any]:
    """The leaves of ``structure`` in ``tf.nest.flatten``'s order (dicts by sorted key)."""
    if isinstance(structure, Mapping):
        return [leaf for key in sorted(structure) for leaf in flatten(structure[key])]
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    return [structure]
