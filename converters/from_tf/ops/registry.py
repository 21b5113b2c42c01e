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

    @registry.register("MyCustomOp", attrs=("scale",))
    def _my_custom_op(node, x):
        return x * node.attr("scale")

**Attributes are part of the contract.** A registration names every attribute its
implementation reads (``attrs``); before conversion starts, a graph whose node carries
an attribute that its op did not declare fails, in one error with every such node (see
:func:`attr_violations`). Declaring ``{"name": (v1, v2)}`` instead of ``"name"`` accepts
only those values and refuses the others, for an attribute whose other values change
what the op computes and are not implemented. Undeclared but always accepted: attributes
starting with ``_`` (TF-internal: ``_output_shapes``, ``_class``, ...) and those the caller
passes as ``implicit`` (the interpreter passes the op's dtype and argument-count
attributes, ``T``, ``Tidx``, ``N``, ..., which the input values already carry). For an op
that TF does not know (no OpDef), nothing is implicit: declare its dtype attributes too.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Container, Iterable, Mapping, Protocol

import jax
import numpy as np

from jaxhub.extend import ANY as ANY
from jaxhub.extend import AttrSpec, Registry
from jaxhub_tf.from_tf.values import has_symbolic, is_static

if TYPE_CHECKING:
    from jaxhub_tf.from_tf.values import Context


class Node(Protocol):
    """What an op implementation sees of the TF node it runs.

    Attributes:
      name: the node's name.
      op: its TF op name.
      num_inputs: how many data inputs it has.
      ctx: the running evaluation (variable state, RNG, the interpreter for calls).
    """

    name: str
    op: str
    num_inputs: int
    ctx: "Context"

    def attr(self, key: str, default: Any = ...) -> Any:
        """The attribute ``key``, decoded to Python/numpy.

        ints, floats, bools and strings as such; dtypes as ``numpy.dtype``; shapes as a
        tuple with ``None`` for unknown sizes (``None`` for unknown rank); tensors as
        ``numpy.ndarray``; lists as lists; functions by name. Raises ``KeyError`` when the
        attribute is absent and no default is given.
        """

    def has_attr(self, key: str) -> bool:
        """True when the node has ``key`` (set, or at its op's default)."""


OpImpl = Callable[..., Any]

_OPS = Registry("TF op")
#: Ops that no implementation can support, by name: why, and what the user can do.
_REFUSED: dict[str, str] = {}
#: Ops registered with ``fold=False``: traced outputs even on static inputs.
_UNFOLDED: set[str] = set()


def register(*op_names: str, attrs: AttrSpec = (), fold: bool = True
             ) -> Callable[[OpImpl], OpImpl]:
    """Registers the decorated function as the implementation of ``op_names``.

    Args:
      op_names: TF op names.
      attrs: the attributes the implementation reads: names (every value handled), or a
        mapping from name to a tuple of the handled values (or :data:`ANY`).
      fold: keep static inputs static (see :func:`folding`); false for ops that run
        functions or touch the context's state, whose values are not the inputs' alone.

    Raises:
      ValueError: an op of that name is registered already.
    """
    def decorate(impl: OpImpl) -> OpImpl:
        _OPS.register(*op_names, attrs=attrs)(folding(impl) if fold else impl)
        if not fold:
            _UNFOLDED.update(op_names)
        return impl

    return decorate


def folding(impl: OpImpl) -> OpImpl:
    """``impl``, made to give static outputs when every input is static.

    Static in, static out: an implementation written with JAX functions would trace even
    on constants (a ``Cumsum`` of sizes, a ``GatherNd`` of a shape), and a shape computed
    from them then fails under ``jit``. With concrete inputs (static, no symbolic
    dimension) ``impl`` runs eagerly, outside the trace, with 64-bit types on so that an
    int64/float64 constant keeps TF's dtype; its JAX outputs come back as numpy.
    """
    @functools.wraps(impl)
    def folded(node, *inputs):
        if not inputs or not is_static(*inputs) or any(has_symbolic(x) for x in inputs):
            return impl(node, *inputs)
        with jax.ensure_compile_time_eval(), jax.enable_x64(True):
            return _as_static(impl(node, *inputs))

    return folded


def _as_static(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_as_static(v) for v in value]
    if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
        return np.asarray(value)
    return value


def refuse(*op_names: str, reason: str) -> None:
    """Marks ``op_names`` as ops no implementation can support, with ``reason``.

    Running such a node raises ``UnsupportedOpsError`` with ``reason``, which should say
    what the user can do instead (registering an implementation is no help for them).
    Refused ops are not among :func:`registered_ops`.
    """

    def refused(node, *inputs):
        from jaxhub_tf.from_tf.interpreter import UnsupportedOpsError  # imports the ops
        raise UnsupportedOpsError(f"TF node {node.name!r} ({node.op}): {_REFUSED[node.op]}")

    register(*op_names, fold=False)(refused)
    _REFUSED.update(dict.fromkeys(op_names, reason))


def lookup(op_name: str) -> OpImpl | None:
    """The implementation of ``op_name``, or None when no family registers it."""
    return _OPS.lookup(op_name)


def folds(op_name: str) -> bool:
    """True when ``op_name`` gives static outputs on static inputs (see :func:`folding`)."""
    return op_name not in _UNFOLDED


def declared_attrs(op_name: str) -> Mapping[str, tuple | None]:
    """The attributes ``op_name`` declares: name -> handled values or :data:`ANY`.

    Raises:
      KeyError: ``op_name`` is not registered.
    """
    return _OPS.declared_attrs(op_name)


def registered_ops() -> list[str]:
    """Every registered op name, sorted (refused ones left out)."""
    return sorted(set(_OPS.names()) - set(_REFUSED))


def attr_violations(node: Node, present: Iterable[str], implicit: Container[str] = ()
                    ) -> list[str]:
    """What is wrong with the attributes of ``node``, whose op is registered.

    See :meth:`jaxhub.extend.Registry.attr_problems`. Nothing, for a refused op:
    its node fails with the reason, whatever its attributes.
    """
    if node.op in _REFUSED:
        return []
    return _OPS.attr_problems(node, present, implicit)
