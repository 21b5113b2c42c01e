"""Runtime values of the graph interpreter, and helpers that op implementations share.

Besides static values (numpy) and traced values (``jax.Array``), described in
:mod:`jaxhub_tf.from_tf.ops.registry`, two kinds flow between nodes:

* :class:`Resource`: a variable handle. It names an entry of the running
  :class:`Context`'s ``state``; reading and assigning go through that dict, so variable
  updates are ordinary values that the caller gets back.
* :data:`UNKNOWN`: only while the interpreter evaluates a graph *partially* (to find a
  ``While`` loop's trip count from its static loop counters); any op with an unknown
  input yields unknown outputs without running.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Resource:
    """A handle to the variable ``key`` of the running context's state."""

    key: str


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


#: The value of a tensor that partial evaluation cannot know.
UNKNOWN = _Unknown()


class UnknowableError(Exception):
    """Raised by an op that cannot run during partial evaluation (random, effects)."""


class TracedValueError(ValueError):
    """An op needs a value while tracing (a shape, a size, a slice bound) that the graph
    computes from tensor values, so it is a tracer.

    The interpreter turns it (and JAX's errors for a tracer used as a concrete value) into
    a ``StaticValueError`` naming the node, the operand and where it comes from.

    Attributes:
      value: the operand that must be static, when the op knows it.
    """

    def __init__(self, message: str, value: Any = None):
        super().__init__(message)
        self.value = value


@dataclasses.dataclass
class Context:
    """What one evaluation of a graph carries besides the tensors.

    Attributes:
      interpreter: the interpreter running the graph (calls functions of its library).
      state: variable key -> current value; assignments replace entries.
      rng: a typed JAX PRNG key for random ops, or None (random ops then fail).
      partial: True while evaluating only what is static (see :data:`UNKNOWN`).
      checks: where ``Assert`` nodes on traced values put ``(message, condition)``, or
        None to drop them. Bodies of control flow (their own contexts) drop theirs: a
        condition traced inside a loop cannot leave it.
    """

    interpreter: Any
    state: dict[str, Any]
    rng: jax.Array | None = None
    partial: bool = False
    checks: list[tuple[str, Any]] | None = None

    def next_key(self, op_name: str) -> jax.Array:
        """A fresh PRNG key for one random op; the context keeps the rest."""
        if self.partial:
            raise UnknowableError(op_name)
        if self.rng is None:
            raise ValueError(
                f"random op {op_name!r} needs an RNG key, and none was passed")
        self.rng, key = jax.random.split(self.rng)
        return key

    def fork(self, state: dict[str, Any] | None = None, rng: Any = None) -> "Context":
        """A context for a control-flow body traced separately (own state dict)."""
        return Context(self.interpreter, dict(self.state if state is None else state),
                       rng, self.partial)


def check_value(node: Any, ok: Any, message: str) -> None:
    """A check TF's kernel makes of a value: raised now when ``ok`` is static, else kept
    as a check when the evaluation collects them (``node.ctx.checks``, as for ``Assert``;
    a traced value cannot stop an exported call).

    Raises:
      ValueError: ``ok`` is static and false somewhere; the message names the node.
    """
    if is_static(ok):
        if not np.all(ok):
            raise ValueError(f"TF node {node.name!r} ({node.op}): {message}")
    elif node.ctx.checks is not None:
        node.ctx.checks.append((f"TF node {node.name!r} ({node.op}) failed: {message}",
                                jnp.all(ok)))


def with_size(x: jax.Array, axis: int, size: Any) -> jax.Array:
    """``x`` with ``size`` as the size of its axis ``axis``, where an op needs that size
    equal to another one and tracing cannot tell (one or both are symbols that only a call
    decides, as a host stage's results have).

    A reshape of that one axis: the other sizes are the same on both sides, so the call
    fails unless the two sizes agree (``Error refining shapes``), as TF's kernel does.
    """
    axis = axis % x.ndim
    if x.shape[axis] == size:
        return x
    return jax.lax.reshape(x, x.shape[:axis] + (size,) + x.shape[axis + 1:])


def is_static(*values: Any) -> bool:
    """True when every value is known while tracing (numpy, or a Python scalar)."""
    return all(isinstance(v, (np.ndarray, np.generic, int, float, bool)) for v in values)


def has_symbolic(value: np.ndarray) -> bool:
    """True for a static object array holding symbolic dimensions."""
    return isinstance(value, np.ndarray) and value.dtype == object


def xnp(*values: Any):
    """``numpy`` when every value is static, else ``jax.numpy``: compute where it belongs."""
    return np if is_static(*values) else jnp


def as_jax(value: Any, dtype: Any = None) -> jax.Array:
    """``value`` as a JAX array (symbolic dimensions become traced integers)."""
    if has_symbolic(value):
        items = [jnp.asarray(d, dtype=dtype or jnp.int32) for d in value.ravel()]
        stacked = jnp.stack(items) if items else jnp.zeros((0,), dtype or jnp.int32)
        return stacked.reshape(value.shape)
    return jnp.asarray(value, dtype=dtype)


def static_ints(value: Any) -> list[int]:
    """A static integer tensor (sizes, axes, diagonals, multiples) as a flat list of ints.

    Raises:
      TracedValueError: ``value`` is traced (computed from tensor values) and not empty
        (an empty one has no values to know).
    """
    if not is_static(value) and np.size(value):
        raise TracedValueError("a size or axis computed from tensor values cannot be used "
                               "under jit", value)
    return [int(v) for v in np.asarray(value).reshape(-1)] if np.size(value) else []


def shape_tuple(value: Any) -> tuple:
    """A static shape vector as a tuple of ints / symbolic dims, for ``reshape`` etc.

    Raises:
      TracedValueError: the shape is traced (computed from tensor values, not shapes), and
        not empty (a scalar's).
    """
    if not np.size(value):
        return ()
    if not is_static(value):
        raise TracedValueError("a shape computed from tensor values cannot be used under jit",
                               value)
    return tuple(int(d) if isinstance(d, (int, np.integer)) else d
                 for d in np.asarray(value).reshape(-1))
