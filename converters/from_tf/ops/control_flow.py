"""Functional control flow: ``If``, ``Case`` and ``While`` as ``lax`` control flow.

* A static predicate or branch index picks the branch in Python: no ``lax.cond``.
* ``While`` first evaluates its loop *partially*: only the loop variables that are static
  (counters, limits) through the cond and body graphs. When that decides the trip count,
  the loop becomes a ``lax.scan`` of that length, which ``jax.grad`` differentiates (an
  LSTM's time loop), and the static loop variables keep their known final values.
  A counted loop whose limit is a symbolic size (an RNN over sequences of any length)
  becomes a ``lax.scan`` of symbolic length (:func:`_counted_trip_count`).
  Otherwise it becomes a ``lax.while_loop`` (forward only, as in JAX).
* Values that a body does not change (variable handles, weights passed through a loop)
  are closed over, not carried. Variable state is carried only when a body assigns.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from converters.from_tf.ops.registry import register
from converters.from_tf.ops.tensor_lists import PendingList
from converters.from_tf.values import (UNKNOWN, Context, Resource, UnknowableError, as_jax,
                                       is_static)

#: How many iterations partial evaluation simulates before giving up on a static trip
#: count (each one interprets the cond and body graphs in Python).
MAX_STATIC_TRIPS = 10_000


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.Array)


# -- If / Case -----------------------------------------------------------------------------


@register("If", "StatelessIf")
def _if(node, pred, *args):
    interp = node.ctx.interpreter
    branches = [interp.function(node.attr("else_branch")),
                interp.function(node.attr("then_branch"))]
    if is_static(pred):
        return _run_inline(node, branches[int(_truth(np.asarray(pred)))], args)
    index = jnp.asarray(pred).astype(bool)
    if index.ndim:  # TF: a non-scalar predicate is true when non-empty
        index = jnp.asarray(index.size > 0)
    return _switch(node, index.astype(jnp.int32), branches, args)


def _truth(pred: np.ndarray) -> bool:
    return bool(pred.reshape(-1)[0]) if pred.ndim == 0 or pred.size == 1 else pred.size > 0


@register("Case", "StatelessCase")
def _case(node, index, *args):
    interp = node.ctx.interpreter
    branches = [interp.function(name) for name in node.attr("branches")]
    last = len(branches) - 1
    if is_static(index):
        i = int(np.asarray(index))
        return _run_inline(node, branches[i if 0 <= i <= last else last], args)
    index = jnp.asarray(index, jnp.int32)
    # TF runs the last branch for an index out of range; lax.switch would clamp.
    index = jnp.where((index < 0) | (index > last), last, index)
    return _switch(node, index, branches, args)


def _run_inline(node, fn, args: Sequence[Any]) -> list[Any]:
    return node.ctx.interpreter.run(fn, list(args), node.ctx)


def _switch(node, index: jax.Array, branches, args: Sequence[Any]) -> list[Any]:
    ctx: Context = node.ctx
    if ctx.partial:
        raise UnknowableError(node.op)
    interp = ctx.interpreter
    out_dtypes = node.attr("Tout")
    carry_state = any(interp.writes_state(fn) for fn in branches)
    traced = [i for i, a in enumerate(args) if _is_traced(a)]
    written: set[str] = set()

    def make_branch(fn):
        def branch(operand):
            state, rng, values = operand
            sub = ctx.fork(state if carry_state else None, rng)
            full = list(args)
            for i, value in zip(traced, values):
                full[i] = value
            outs = interp.run(fn, full, sub)
            outs = [as_jax(o, dtype) for o, dtype in zip(outs, out_dtypes)]
            return outs, _carried_state(sub, state, written), sub.rng
        return branch

    operand = (_state_values(ctx, carry_state), ctx.rng, [args[i] for i in traced])
    outs, state, ctx.rng = jax.lax.switch(index, [make_branch(f) for f in branches], operand)
    ctx.state.update({k: state[k] for k in written})
    return outs


def _state_values(ctx: Context, carry: bool) -> dict[str, jax.Array]:
    """The state a body carries: all of it when it assigns, nothing otherwise."""
    return {k: as_jax(v) for k, v in ctx.state.items()} if carry else {}


def _carried_state(sub: Context, given: dict[str, Any], written: set[str]) -> dict[str, Any]:
    """A body's state out, noting which entries it assigned (only those go back)."""
    written.update(k for k, v in given.items() if sub.state[k] is not v)
    return {k: as_jax(sub.state[k], given[k].dtype) for k in given}


# -- While ---------------------------------------------------------------------------------


@register("While", "StatelessWhile")
def _while(node, *loop_vars):
    ctx: Context = node.ctx
    interp = ctx.interpreter
    cond_fn = interp.function(node.attr("cond"))
    body_fn = interp.function(node.attr("body"))
    invariant = [body_fn.resolve_identity(out) == (arg, 0)
                 for out, arg in zip(body_fn.outputs, body_fn.args)]
    trips, finals = _static_trip_count(ctx, cond_fn, body_fn, loop_vars)
    if trips is None and not ctx.partial:
        trips = _counted_trip_count(ctx, cond_fn, body_fn, loop_vars, invariant)
    if ctx.partial:
        if trips is None or any(v is UNKNOWN for v in finals):
            raise UnknowableError(node.op)
        return finals
    carried = [i for i, inv in enumerate(invariant) if not inv]
    for i in carried:
        if isinstance(loop_vars[i], Resource):
            raise NotImplementedError(f"While loop variable {i} is a handle the body replaces")
    carry_state = interp.writes_state(body_fn)

    def args_of(values):
        full = list(loop_vars)
        for i, value in zip(carried, values):
            full[i] = value
        return full

    written: set[str] = set()

    def body(carry):
        state, rng, values = carry
        sub = ctx.fork(state if carry_state else None, rng)
        outs = interp.run(body_fn, args_of(values), sub)
        new = [as_jax(outs[i], getattr(v, "dtype", None)) for i, v in zip(carried, values)]
        return _carried_state(sub, state, written), sub.rng, new

    state0 = _state_values(ctx, carry_state)
    values0 = [loop_vars[i] for i in carried]
    if any(isinstance(v, PendingList) for v in values0):
        # The body's first SetItem tells a pending list's element shape: trace it once.
        shapes = jax.eval_shape(lambda: body((state0, ctx.rng, values0))[2])
        values0 = [v.materialize(s.shape[1:], s.dtype) if isinstance(v, PendingList) else v
                   for v, s in zip(values0, shapes)]
    init = (state0, ctx.rng, [as_jax(v) for v in values0])
    if trips is not None:
        if isinstance(trips, int) and trips <= 0:
            return list(loop_vars)
        # Scanning over an empty-featured sequence lets the length be a symbolic size.
        state, ctx.rng, values = jax.lax.scan(lambda c, _: (body(c), None), init,
                                              jnp.zeros((trips, 0), jnp.float32))[0]
    else:
        def cond(carry):
            state, rng, values = carry
            sub = ctx.fork(state if carry_state else None, rng)
            pred = interp.run(cond_fn, args_of(values), sub)[0]
            return as_jax(pred).reshape(()).astype(bool)
        state, ctx.rng, values = jax.lax.while_loop(cond, body, init)
    ctx.state.update({k: state[k] for k in written})
    outputs = list(loop_vars)
    for i, value in zip(carried, values):
        known = finals[i] if finals is not None else UNKNOWN
        outputs[i] = known if known is not UNKNOWN else value
    return outputs


def _static_trip_count(ctx: Context, cond_fn, body_fn, loop_vars: Sequence[Any]):
    """Runs the loop on its static variables only.

    Returns:
      ``(trips, finals)``: the number of iterations and the final loop variables
      (:data:`UNKNOWN` where not static), or ``(None, None)`` when the static variables
      do not decide the condition.
    """
    interp = ctx.interpreter
    probe = Context(interp, {k: UNKNOWN for k in ctx.state}, None, partial=True)
    values = [v if is_static(v) or isinstance(v, Resource) else UNKNOWN for v in loop_vars]
    for trips in range(MAX_STATIC_TRIPS + 1):
        try:
            pred = interp.run(cond_fn, values, probe.fork())[0]
            if not is_static(pred):
                return None, None
            if not _truth(np.asarray(pred)):
                return trips, values
            outs = interp.run(body_fn, values, probe.fork())
        except Exception:  # e.g. a comparison with a symbolic size: not decidable here
            return None, None
        values = [o if is_static(o) or isinstance(o, Resource) else UNKNOWN for o in outs]
    return None, None


def _counted_trip_count(ctx: Context, cond_fn, body_fn, loop_vars: Sequence[Any],
                        invariant: Sequence[bool]):
    """The trip count of a counted loop, even when its limit is a symbolic size.

    Recognizes the condition TF writes for ``tf.while_loop`` with ``maximum_iterations``
    and for Keras RNNs: a conjunction of ``counter < limit``, where each counter starts at
    a static integer and grows by the same static step each iteration, and each limit is
    loop-invariant. Returns ``min((limit - start) / step)`` rounded up (an int or a
    symbolic expression), or None.
    """
    conjuncts = _less_conjuncts(cond_fn, cond_fn.outputs[0])
    if not conjuncts:
        return None
    interp = ctx.interpreter
    probe = Context(interp, {k: UNKNOWN for k in ctx.state}, None, partial=True)
    history = [[v if is_static(v) or isinstance(v, Resource) else UNKNOWN for v in loop_vars]]
    try:
        for _ in range(2):
            outs = interp.run(body_fn, history[-1], probe.fork())
            history.append([o if is_static(o) or isinstance(o, Resource) else UNKNOWN
                            for o in outs])
    except Exception:
        return None
    trips = []
    for counter, limit in conjuncts:
        start, first, second = (h[counter] for h in history)
        limit = _invariant_value(cond_fn, limit, loop_vars, invariant)
        if any(v is UNKNOWN or v is None for v in (start, first, second, limit)):
            return None
        start, first, second = (np.asarray(v).reshape(()).item() for v in (start, first,
                                                                             second))
        step = first - start
        if not isinstance(step, int) or step <= 0 or second - first != step:
            return None
        limit = np.asarray(limit).reshape(()).item()
        trips.append((limit - start + step - 1) // step)
    trip = trips[0]
    for other in trips[1:]:
        trip = jax.core.min_dim(trip, other)
    return trip


def _less_conjuncts(fn, ref) -> list[tuple[int, tuple[str, int]]] | None:
    """``[(loop var index, limit ref)]`` for a condition ``a < l and b < m ...``."""
    name, _ = fn.resolve_identity(ref)
    node = fn.nodes.get(name)
    if node is None:
        return None
    if node.op == "LogicalAnd":
        parts = [_less_conjuncts(fn, r) for r in node.inputs]
        return None if None in parts else parts[0] + parts[1]
    if node.op == "Less":
        counter, _ = fn.resolve_identity(node.inputs[0])
        if counter in fn.args:
            return [(fn.args.index(counter), fn.resolve_identity(node.inputs[1]))]
    return None


def _invariant_value(fn, ref: tuple[str, int], loop_vars: Sequence[Any],
                     invariant: Sequence[bool]):
    """The static value of a condition input that does not change in the loop, or None."""
    name, _ = ref
    if name in fn.args:
        index = fn.args.index(name)
        value = loop_vars[index]
        return value if invariant[index] and is_static(value) else None
    node = fn.nodes.get(name)
    return node.attr("value") if node is not None and node.op == "Const" else None
