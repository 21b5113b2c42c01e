"""TensorLists (what ``tf.TensorArray`` is made of in TF2) as stacked arrays.

A list is one array whose leading axis indexes the elements, so that it can be carried
through ``lax.scan``: ``SetItem`` is a dynamic update, ``GetItem`` a dynamic index. A list
reserved with an element shape not known yet (Keras RNNs reserve ``[-1, units]``) is
:class:`PendingList` until its first ``SetItem`` tells the shape; ``While`` finds that
shape by tracing its body once (see ``ops/control_flow.py``).

TF 1's ``TensorArrayV3`` family (``tf.nn.dynamic_rnn``, ``tf.map_fn`` in TF 1 graphs)
keeps its elements behind a resource handle and threads a scalar "flow" through the ops
that change them, so that TF orders them: here the flow carries the stacked array itself
(loops carry it as they carry a TensorList), and the handle is a placeholder.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import ANY, register
from jaxhub_tf.from_tf.values import as_jax, is_static, shape_tuple


@dataclasses.dataclass(frozen=True)
class PendingList:
    """A reserved list whose element shape is not known yet."""

    num_elements: Any
    dtype: np.dtype

    def materialize(self, element_shape: tuple, dtype: Any = None) -> jax.Array:
        return jnp.zeros((self.num_elements,) + tuple(element_shape), dtype or self.dtype)


@dataclasses.dataclass(frozen=True)
class StepItem:
    """A list that a ``While`` body only reads, or only writes, at its loop counter.

    Such a loop scans over the list (``ops/control_flow.py``): the body sees one element
    of it (``value``), read at the counter, or the element it writes (``None`` until set).
    """

    value: Any = None


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
    if isinstance(handle, StepItem):
        return handle.value
    if isinstance(handle, PendingList):
        return jnp.zeros(shape_tuple(element_shape), handle.dtype)
    if is_static(index):
        return handle[int(np.asarray(index))]
    return jax.lax.dynamic_index_in_dim(handle, index, axis=0, keepdims=False)


# Setting past the end drops the item here: growing the list is not implemented.
@register("TensorListSetItem", attrs={"resize_if_index_out_of_bounds": (False,)})
def _set_item(node, handle, index, item):
    item = as_jax(item)
    if isinstance(handle, StepItem):
        return StepItem(item)
    # A list of constants folds to numpy: setting an item makes it a JAX array.
    handle = (handle.materialize(item.shape, item.dtype) if isinstance(handle, PendingList)
              else as_jax(handle))
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


# -- TF 1 TensorArrays ---------------------------------------------------------------------


def _array_handle() -> np.ndarray:
    """The handle output of ``TensorArrayV3``: the flow carries the elements, so the
    handle holds nothing (a static scalar, as a resource handle's value is)."""
    return np.zeros((), np.int32)


# A dynamically sized array grows past its size (not implemented). Clearing after read
# and identical element shapes only restrict what a valid graph does.
@register("TensorArrayV3", attrs={
    "dtype": ANY, "element_shape": ANY, "dynamic_size": (False,), "clear_after_read": ANY,
    "identical_element_shapes": ANY, "tensor_array_name": ANY})
def _tensor_array(node, size):
    shape = node.attr("element_shape", None)
    num = shape_tuple(size)[0]  # a symbolic size too: the length of a free time axis
    if shape is None or None in shape:
        return _array_handle(), PendingList(num, node.attr("dtype"))
    return _array_handle(), jnp.zeros((num, *shape), node.attr("dtype"))


@register("TensorArrayWriteV3")
def _array_write(node, handle, index, value, flow):
    return _set_item(node, flow, index, value)


@register("TensorArrayReadV3")
def _array_read(node, handle, index, flow):
    if isinstance(flow, PendingList):
        raise NotImplementedError(f"{node.name}: TensorArrayReadV3 before any write")
    return _get_item(node, flow, index, None)


@register("TensorArrayScatterV3")
def _array_scatter(node, handle, indices, value, flow):
    value = as_jax(value)
    if isinstance(flow, PendingList):
        flow = flow.materialize(value.shape[1:], value.dtype)
    if is_static(indices) and np.array_equal(indices, np.arange(flow.shape[0])):
        return value.astype(flow.dtype)  # unstacking a whole tensor
    return as_jax(flow).at[as_jax(indices)].set(value.astype(flow.dtype))


@register("TensorArrayGatherV3", attrs=("element_shape",))
def _array_gather(node, handle, indices, flow):
    if isinstance(flow, PendingList):
        flow = flow.materialize(node.attr("element_shape"))
    if is_static(indices) and np.array_equal(indices, np.arange(flow.shape[0])):
        return flow  # stacking the whole array
    return jnp.take(flow, as_jax(indices), axis=0)


@register("TensorArraySizeV3")
def _array_size(node, handle, flow):
    return _length(node, flow)


@register("TensorArrayCloseV3")
def _array_close(node, handle):
    return []
