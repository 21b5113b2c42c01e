"""Resource variables: handles, reads, and assignments that become returned state.

A variable handle is a :class:`~jaxhub_tf.from_tf.values.Resource` naming an entry of the
running context's ``state`` (the converter fills it from the model's params). Reads look
the entry up; assignments replace it, and the interpreter returns what changed, so a
train variant can hand back updated batch-norm statistics or seed counters.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import UNKNOWN, Resource, as_jax, is_static


@register("VarHandleOp", attrs=("container", "shared_name", "debug_name", "shape",
                                  "allowed_devices"))
def _var_handle(node):
    return Resource(node.attr("shared_name", "") or node.name)


def _value(node, handle: Resource):
    if not isinstance(handle, Resource):
        raise TypeError(f"expected a variable handle, got {type(handle).__name__}")
    try:
        return node.ctx.state[handle.key]
    except KeyError:
        raise KeyError(f"variable {handle.key!r} has no value (not among the params)"
                       ) from None


@register("ReadVariableOp")
def _read(node, handle):
    return _value(node, handle)


@register("AssignVariableOp", attrs=("validate_shape",))
def _assign(node, handle, value):
    _store(node, handle, value)
    return []


@register("AssignAddVariableOp", "AssignSubVariableOp")
def _assign_add(node, handle, delta):
    old = _value(node, handle)
    if old is UNKNOWN:  # partial evaluation: variables are not static
        return []
    _store(node, handle, old + delta if node.op == "AssignAddVariableOp" else old - delta)
    return []


def _store(node, handle: Resource, value) -> None:
    old = _value(node, handle)
    if old is UNKNOWN:
        return
    dtype = getattr(old, "dtype", None)
    # Keep static values static (a seed counter stays concrete) and the dtype unchanged.
    if is_static(value) and is_static(old):
        node.ctx.state[handle.key] = np.asarray(value, dtype=dtype)
    else:
        node.ctx.state[handle.key] = as_jax(value, dtype)


@register("VarIsInitializedOp")
def _is_initialized(node, handle):
    return np.asarray(True)


@register("DisableCopyOnRead")
def _disable_copy_on_read(node, handle):
    return []


# ``validate_indices`` is deprecated: TF ignores it.
@register("ResourceGather", attrs={"batch_dims": (0,), "validate_indices": None})
def _resource_gather(node, handle, indices):
    return jnp.take(as_jax(_value(node, handle)), as_jax(indices), axis=0, mode="clip")
