"""The table of TensorFlow ops the graph interpreter knows, and how to add one.

An op implementation is a plain function ``impl(node, *inputs)`` registered under one or
more TF op names. ``node`` describes the op being run (see :class:`Node`); ``inputs`` are
the values of its data inputs, in order (control inputs are never passed). It returns one
value, or a tuple/list of values for ops with several outputs.

Values flowing through the interpreter are of two kinds:

* **static** values: ``numpy.ndarray`` known while tracing (constants, and anything
  computed only from them, such as shapes). Keep them static: compute with numpy when
  every input is static, so ``Reshape``/``Transpose``/``Slice`` arguments stay concrete.
  Under ``jax.export`` shape polymorphism a static shape may hold symbolic dimensions: it is
  then a numpy ``object`` array whose entries are ints or JAX dimension expressions.
* **traced** values: ``jax.Array`` (tracers under ``jit``/``grad``/``export``).

Register an op of your own before converting::

    from jaxhub_tf.from_tf.ops import registry

    @registry.register("MyCustomOp")
    def _my_custom_op(node, x):
        return x * node.attr("scale")
"""

from __future__ import annotations

from typing import Any, Callable, Protocol


class Node(Protocol):
    """What an op implementation sees of the TF node it runs."""

    name: str
    op: str

    def attr(self, key: str, default: Any = ...) -> Any:
        """The attribute ``key``, decoded to Python/numpy.

        ints, floats, bools and strings as such; dtypes as ``numpy.dtype``; shapes as a
        tuple with ``None`` for unknown sizes (``None`` for unknown rank); tensors as
        ``numpy.ndarray``; lists as lists; functions by name. Raises ``KeyError`` when the
        attribute is absent and no default is given.
        """


OpImpl = Callable[..., Any]

_OPS: dict[str, OpImpl] = {}
#: Ops that no implementation can support, by name: why, and what the user can do.
_REFUSED: dict[str, str] = {}


def register(*op_names: str) -> Callable[[OpImpl], OpImpl]:
    """Registers the decorated function as the implementation of ``op_names``.

    Raises:
      ValueError: an op of that name is registered already.
    """

    def decorate(impl: OpImpl) -> OpImpl:
        for name in op_names:
            if name in _OPS:
                raise ValueError(
                    f"TF op {name!r} is registered already (by {_OPS[name].__module__})")
            _OPS[name] = impl
        return impl

    return decorate


def refuse(*op_names: str, reason: str) -> None:
    """Marks ``op_names`` as ops no implementation can support, with ``reason``.

    Running such a node raises ``UnsupportedOpsError`` with ``reason``, which should say
    what the user can do instead (registering an implementation is no help for them).
    Refused ops are not among :func:`registered_ops`.
    """

    def refused(node, *inputs):
        from jaxhub_tf.from_tf.interpreter import UnsupportedOpsError  # imports the ops
        raise UnsupportedOpsError(f"TF node {node.name!r} ({node.op}): {_REFUSED[node.op]}")

    register(*op_names)(refused)
    _REFUSED.update(dict.fromkeys(op_names, reason))


def lookup(op_name: str) -> OpImpl | None:
    """The implementation of ``op_name``, or None when no family registers it."""
    return _OPS.get(op_name)


def registered_ops() -> list[str]:
    """Every registered op name, sorted (refused ones left out)."""
    return sorted(set(_OPS) - set(_REFUSED))
