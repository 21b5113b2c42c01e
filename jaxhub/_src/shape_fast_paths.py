"""Fast paths for the costliest steps of ``jax.export`` with symbolic shapes.

Exporting a converted model spent much of its time in three places of JAX's shape
polymorphism that do the general thing in the commonest case:

* Lowering an op whose shape has a symbolic dim (slicing a ``(batch, 939)`` array) turns
  each of its shapes into IR values by tracing and lowering a small function, even when
  every dim is a constant or a bare symbol, whose value is already at hand. The backward
  halves of basic_pitch's gradients have ~7,700 such shapes each.
* Those IR values become shape tensors with one constant per size, concatenated: ~90,000
  constants in basic_pitch's backward halves, which every later step walks.
* The shape assertions of a function whose args have derived dims (``(h - 3) // 2 + 1``:
  the residuals of a conv's gradient) try ``operator.index`` on traced sizes to spot a 0
  or a 1. Each try raises an error whose message walks the whole trace built so far, so
  the cost grows with the square of the number of dims: ~2,100 errors, half of
  mtcnn_pnet's conversion time.

:func:`installed` puts, for the time of an export, functions in place of JAX's that
compute the same values without that work: constants and bare symbols' values directly
(any other shape is handed to JAX's own function), one constant per run of constant
sizes, and tests of traced sizes that do not raise. Where JAX's internals are not as
expected (a newer JAX) nothing is installed and exports take JAX's own path.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import operator
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np

try:
    from jax._src import core
    from jax._src.export import shape_poly
    from jax._src.interpreters import mlir
    from jax._src.lib.mlir.dialects import hlo
except ImportError:  # internals moved: see SUPPORTED
    core = shape_poly = mlir = hlo = None

#: JAX's own functions, by name, while the fast paths are installed.
_jax: dict[str, Callable] = {}


def _eval_dynamic_shape(ctx: Any, shape: tuple) -> tuple:
    """``mlir.eval_dynamic_shape``: constants as ints, a bare symbol as the value of its
    dimension variable (what lowering ``core.evaluate_shape`` returns for it)."""
    dim_vars = ctx.module_context.shape_poly_state.dim_vars
    values = []
    for d in shape:
        if core.is_constant_dim(d):
            values.append(operator.index(d))
            continue
        var = d._to_var() if hasattr(d, "_to_var") else None
        if var not in dim_vars:
            return _jax["eval_dynamic_shape"](ctx, shape)
        values.append(ctx.dim_var_values[dim_vars.index(var)])
    return tuple(values)


def _shape_tensor(ctx: Any, sizes: Sequence[Any]) -> Any:
    """``mlir.shape_tensor``: the same 1-D int32 tensor, each run of constant sizes as
    one constant rather than one constant per size (and a concatenation of them all)."""
    pieces = []
    for constant, run in itertools.groupby(sizes, key=lambda d: type(d) is int):
        if constant:
            pieces.append(mlir.ir_constant(np.array(list(run), np.int32)))
        else:
            pieces.extend(_jax["shape_tensor"](ctx, [d]) for d in run)
    if len(pieces) == 1:
        return pieces[0]
    if not pieces:
        return _jax["shape_tensor"](ctx, [])
    return hlo.concatenate(pieces, mlir.i64_attr(0))


def _equals(size: Any, n: int) -> bool:
    """``operator.index(size) == n``, False when that raises (without raising for a
    traced size, whose error message is the cost avoided)."""
    if isinstance(size, core.Tracer) and not core.is_concrete(size):
        return False
    try:
        return operator.index(size) == n
    except Exception:  # noqa: BLE001 (JAX's own test swallows every error too)
        return False


def _evaluate_add(v1: Any, v2: Any) -> Any:
    """``shape_poly._evaluate_add``: ``v1 + v2``, skipping a zero."""
    if _equals(v1, 0):
        return v2
    if _equals(v2, 0):
        return v1
    return v1 + v2


def _evaluate_multiply(v1: Any, v2: Any) -> Any:
    """``shape_poly._evaluate_multiply``: ``v1 * v2``, skipping a one."""
    if _equals(v1, 1):
        return v2
    if _equals(v2, 1):
        return v1
    return v1 * v2


#: (owner, name, fast function, the parameters JAX's function is expected to have).
_FAST_PATHS: tuple[tuple[Any, str, Callable, tuple[str, ...]], ...] = (
    (mlir, "eval_dynamic_shape", _eval_dynamic_shape, ("ctx", "shape")),
    (mlir, "shape_tensor", _shape_tensor, ("ctx", "sizes")),
    (shape_poly, "_evaluate_add", _evaluate_add, ("v1", "v2")),
    (shape_poly, "_evaluate_multiply", _evaluate_multiply, ("v1", "v2")),
)


def _matches_jax() -> bool:
    """Whether JAX has each replaced function, with the expected parameters."""
    try:
        return (all(tuple(inspect.signature(getattr(owner, name)).parameters) == params
                    for owner, name, _, params in _FAST_PATHS)
                and hasattr(shape_poly._DimExpr, "_to_var")
                and hasattr(core, "is_concrete"))
    except (AttributeError, TypeError, ValueError):
        return False


SUPPORTED = _matches_jax()
_lock = threading.Lock()
_depth = 0


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """The fast paths in place of JAX's functions while inside (re-entrant)."""
    global _depth
    if not SUPPORTED:
        yield
        return
    with _lock:
        if _depth == 0:
            for owner, name, fast, _ in _FAST_PATHS:
                _jax[name] = getattr(owner, name)
                setattr(owner, name, fast)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for owner, name, _, _ in _FAST_PATHS:  # _jax stays: other threads
                    setattr(owner, name, _jax[name])  # may still be inside a fast path
