"""TensorLists (what ``tf.TensorArray`` is made of in TF2) as stacked arrays.

A list is one array whose leading axis indexes the elements, so that it can be carried
through ``lax.scan``: ``SetItem`` is a dynamic update, ``GetItem`` a dynamic index. A list
reserved with an element shape not known yet (Keras RNNs reserve ``[-1, units]``) is
:class:`PendingList` until its first ``SetItem`` tells the shape; ``While`` finds that
shape by tracing its body once (see ``ops/control_flow.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax, is_static, shape_tuple


@dataclasses.dataclass(frozen=True)
class PendingList:
    """A reserved list whose element shape is not known yet."""

    num_elements: Any
    dtype: np.dtype

    def materialize(self, element_shape: tuple, dtype: Any = None) -> jax.Array:
        return jnp.zeros((self.num_elements,) + tuple(element_shape), dtype or self.dtype)


@register("TensorListReserve")
def _reserve(node, element_shape, num_elements):
    dtype = node.attr("element_dtype")
    shape = shape_tuple(element_shape) if np.ndim(element_shape) else None
    num = shape_tuple(num_elements)[0]
    if shape is None or any(isinstance(d, (int, np.integer)) and d < 0 for d in shape):
        return PendingList(num, dtype)
    return jnp.zeros((num,) + shape, dtype)


@register("TensorListFromTensor")
def _from_tensor(node, tensor, element_shape):
    return as_jax(tensor)


# ``num_elements`` is a hint (-1 when unknown); the list knows its length.
@register("TensorListStack", attrs=("num_elements",))
def _stack(node, handle, element_shape):
    if isinstance(handle, PendingList):
        return handle.materialize(shape_tuple(element_shape))
    return handle


@register("TensorListGetItem")
def _get_item(node, handle, index, element_shape):
    if isinstance(handle, PendingList):
        return jnp.zeros(shape_tuple(element_shape), handle.dtype)
    if is_static(index):
        return handle[int(np.asarray(index))]
    return jax.lax.dynamic_index_in_dim(handle, index, axis=0, keepdims=False)


# Setting past the end drops the item here: growing the list is not implemented.
@register("TensorListSetItem", attrs={"resize_if_index_out_of_bounds": (False,)})
def _set_item(node, handle, index, item):
    item = as_jax(item)
    if isinstance(handle, PendingList):
        handle = handle.materialize(item.shape, item.dtype)
    if is_static(index):
        return handle.at[int(np.asarray(index))].set(item)
    return jax.lax.dynamic_update_index_in_dim(handle, item.astype(handle.dtype), index, 0)


@register("TensorListLength")
def _length(node, handle):
    if isinstance(handle, PendingList):
        return np.asarray(handle.num_elements, np.int32)
    return np.asarray(handle.shape[0], dtype=object if not isinstance(handle.shape[0], int)
                      else np.int32)


@register("TensorListElementShape")
def _element_shape(node, handle):
    dims = handle.shape[1:]
    if all(isinstance(d, int) for d in dims):
        return np.asarray(dims, dtype=node.attr("shape_type"))
    return np.asarray(list(dims), dtype=object)
