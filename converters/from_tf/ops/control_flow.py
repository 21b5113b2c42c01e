"""Functional control flow: ``If``, ``Case`` and ``While`` as ``lax`` control flow.

* A static predicate or branch index picks the branch in Python: no ``lax.cond``.
* ``While`` first evaluates its loop *partially*: only the loop variables that are static
  (counters, limits) through the cond and body graphs. When that decides the trip count,
  the loop becomes a ``lax.scan`` of that length, which ``jax.grad`` differentiates (an
  LSTM's time loop), and the static loop variables keep their known final values.
  A counted loop whose limit is a symbolic size (an RNN over sequences of any length)
  becomes a ``lax.scan`` of symbolic length (:func:`_counted_trip_count`).
  Otherwise it becomes a ``lax.while_loop``, given a reverse-mode derivative that
  recomputes the loop (:func:`_differentiable_while`).
* Values that a body does not change (variable handles, weights passed through a loop)
  are closed over, not carried. Variable state is carried only when a body assigns.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.ops.tensor_lists import PendingList
from jaxhub_tf.from_tf.values import (UNKNOWN, Context, Resource, UnknowableError, as_jax,
                                       is_static)

#: How many iterations partial evaluation simulates before giving up on a static trip
#: count (each one interprets the cond and body graphs in Python).
MAX_STATIC_TRIPS = 10_000


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.Array)


# -- If / Case -----------------------------------------------------------------------------


@register("If", "StatelessIf", attrs=("then_branch", "else_branch", "output_shapes"),
          fold=False)
def _if(node, pred, *args):
    interp = node.ctx.interpreter
    branches = [interp.function(node.attr("else_branch")),
                interp.function(node.attr("then_branch"))]
    if is_static(pred):
        return _run_inline(node, branches[int(_truth(np.asarray(pred)))], args)
    index = jnp.asarray(pred).astype(bool)
    if index.ndim:  # TF: a non-scalar predicate is true when non-empty
        index = jnp.asarray(index.size > 0)
    if node.ctx.checks is not None:
        message = _guard_message(branches[0], pred, args)
        if message is not None:
            node.ctx.checks.append((message, index))
    return _switch(node, index.astype(jnp.int32), branches, args)


def _guard_message(else_branch, pred, args: Sequence[Any]) -> str | None:
    """The message of an assert guard's ``Assert``, or None if the ``If`` is no guard.

    ``tf.debugging.assert_*`` traces to ``If(ok, ...)`` whose else branch runs ``Assert``
    on ``ok`` itself, so it fails exactly when that branch is taken: the check is
    ``ok``. Branch bodies run in their own trace, so the check is taken here, outside.
    """
    # The predicate passed in again as an arg is the very same value.
    pred_args = {(name, 0) for name, value in zip(else_branch.args, args) if value is pred}
    for inner in else_branch.nodes.values():
        if inner.op == "Assert" and inner.inputs and inner.inputs[0] in pred_args:
            texts = [_const_text(else_branch, ref) for ref in inner.inputs[1:]]
            said = " ".join(t.strip() for t in texts if t and t.strip())
            return f"TF node {inner.name!r} (Assert) failed" + (f": {said}" if said else "")
    return None


def _const_text(fn, ref) -> str | None:
    """The text of a string constant of ``fn`` (an ``Assert``'s message), else None."""
    source = fn.nodes.get(ref[0])
    if source is None or source.op != "Const":
        return None
    value = np.asarray(source.attr("value"))
    if value.dtype != object or value.size != 1:
        return None
    text = value.reshape(-1)[0]
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _truth(pred: np.ndarray) -> bool:
    return bool(pred.reshape(-1)[0]) if pred.ndim == 0 or pred.size == 1 else pred.size > 0


@register("Case", "StatelessCase", attrs=("branches", "output_shapes"), fold=False)
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


# ``parallel_iterations`` is a scheduling hint.
@register("While", "StatelessWhile",
          attrs=("cond", "body", "output_shapes", "parallel_iterations"), fold=False)
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

    # Traced values the bodies read but do not carry, passed explicitly (see below).
    const_keys = [] if carry_state else [k for k, v in ctx.state.items() if _is_traced(v)]
    const_args = [i for i, inv in enumerate(invariant) if inv and _is_traced(loop_vars[i])]
    # A loop of unknown length draws its random numbers from one key and the iteration
    # number, so that no key is carried where it would have to be differentiated.
    loop_key = ctx.next_key(node.op) if trips is None and ctx.rng is not None else None
    consts = ([ctx.state[k] for k in const_keys], [loop_vars[i] for i in const_args],
              loop_key)
    written: set[str] = set()

    def context(consts, state, rng) -> Context:
        values = dict(ctx.state)
        values.update(zip(const_keys, consts[0]))
        values.update(state if carry_state else {})
        return Context(interp, values, rng)

    def args_of(consts, values):
        full = list(loop_vars)
        for i, value in zip(const_args, consts[1]):
            full[i] = value
        for i, value in zip(carried, values):
            full[i] = value
        return full

    def key_of(consts, rng):
        """The key a body draws from: carried (scan), or the loop key and iteration."""
        return rng if consts[2] is None else jax.random.fold_in(consts[2], rng)

    def body_of(consts, carry):
        state, rng, values = carry
        sub = context(consts, state, key_of(consts, rng))
        outs = interp.run(body_fn, args_of(consts, values), sub)
        new = [as_jax(outs[i], getattr(v, "dtype", None)) for i, v in zip(carried, values)]
        rng = sub.rng if consts[2] is None else rng + 1
        return _carried_state(sub, state, written), rng, new

    def cond_of(consts, carry):
        state, rng, values = carry
        sub = context(consts, state, key_of(consts, rng))
        pred = interp.run(cond_fn, args_of(consts, values), sub)[0]
        return as_jax(pred).reshape(()).astype(bool)

    def body(carry):
        return body_of(consts, carry)

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
        if loop_key is not None:
            init = (init[0], jnp.zeros((), jnp.int32), init[2])
        state, _, values = _differentiable_while(cond_of, body_of, consts, init)
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


def _differentiable_while(cond_fun, body_fun, consts, init):
    """``lax.while_loop`` with a reverse-mode derivative, for loops of unknown length.

    ``cond_fun(consts, carry)`` and ``body_fun(consts, carry)`` are pure; every traced value
    they read is in ``consts`` or ``carry``. The forward pass counts the iterations ``n``;
    the backward pass walks them from last to first, recomputing the carry before each
    step from ``init`` (O(n^2) body evaluations, O(1) memory) and pulling the cotangent
    back through it with ``jax.vjp``. Only floating-point leaves get cotangents.
    """
    const_leaves, const_tree = jax.tree_util.tree_flatten(consts)
    init_leaves, init_tree = jax.tree_util.tree_flatten(init)
    const_mask = [_is_float(x) for x in const_leaves]
    carry_mask = [_is_float(x) for x in init_leaves]

    def run(consts, init):
        return jax.lax.while_loop(lambda c: cond_fun(consts, c),
                                  lambda c: body_fun(consts, c), init)

    loop = jax.custom_vjp(run)

    def forward(consts, init):
        def step(state):
            carry, n = state
            return body_fun(consts, carry), n + 1
        final, n = jax.lax.while_loop(lambda state: cond_fun(consts, state[0]), step,
                                      (init, jnp.zeros((), jnp.int32)))
        return final, (consts, init, n)

    def backward(residuals, ct_final):
        consts, init, n = residuals
        consts_flat = jax.tree_util.tree_leaves(consts)

        def carry_after(k):
            return jax.lax.fori_loop(0, k, lambda _, c: body_fun(consts, c), init)

        def step_back(j, acc):
            ct_carry, ct_consts = acc
            before = jax.tree_util.tree_leaves(carry_after(n - 1 - j))

            def step(const_f, carry_f):
                c = jax.tree_util.tree_unflatten(const_tree,
                                                 _merge(consts_flat, const_mask, const_f))
                k = jax.tree_util.tree_unflatten(init_tree, _merge(before, carry_mask, carry_f))
                return _select(jax.tree_util.tree_leaves(body_fun(c, k)), carry_mask)

            _, vjp = jax.vjp(step, _select(consts_flat, const_mask),
                             _select(before, carry_mask))
            d_consts, d_carry = vjp(ct_carry)
            return d_carry, [a + b for a, b in zip(ct_consts, d_consts)]

        ct_carry = _select(jax.tree_util.tree_leaves(ct_final), carry_mask)
        zeros = [jnp.zeros_like(x) for x in _select(consts_flat, const_mask)]
        ct_init, ct_consts = jax.lax.fori_loop(0, n, step_back, (ct_carry, zeros))
        none = [None] * len(const_leaves)
        return (jax.tree_util.tree_unflatten(const_tree, _merge(none, const_mask, ct_consts)),
                jax.tree_util.tree_unflatten(init_tree,
                                             _merge([None] * len(init_leaves), carry_mask,
                                                    ct_init)))

    loop.defvjp(forward, backward)
    return loop(consts, init)


def _is_float(x: Any) -> bool:
    return jnp.issubdtype(x.dtype, jnp.inexact)


def _select(leaves: list, mask: list[bool]) -> list:
    return [x for x, keep in zip(leaves, mask) if keep]


def _merge(leaves: list, mask: list[bool], chosen: list) -> list:
    """``leaves`` with the masked positions replaced, in order, by ``chosen``."""
    chosen = iter(chosen)
    return [next(chosen) if keep else x for x, keep in zip(leaves, mask)]
