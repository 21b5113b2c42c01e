"""v1 control flow (``Switch``/``Merge``/``Enter``/``Exit``/``NextIteration``/``LoopCond``)
rewritten into the functional form the interpreter runs.

Graphs built with ``tf.compat.v1.disable_control_flow_v2()`` express control flow as
dataflow between frames: TF1 Hub graphs, and TF2 functions that hold a TF1 graph (a TF1
SavedModel loaded into TF2 and saved again, ``tf.compat.v1.wrap_function``). Before
interpretation a :class:`~jaxhub_tf.from_tf.graph.Function` is rewritten (the TF1 Hub
reader rewrites its graphs, the interpreter every library function it parses):

* **Loops.** Each frame (the ``Enter`` nodes sharing a ``frame_name``) becomes one
  functional ``While`` node: its loop variables are the non-constant ``Enter`` inputs, then
  the constant ones (weights the body reads). The ``cond`` function is the subgraph from
  the ``Merge`` outputs to the ``LoopCond`` input; the ``body`` function the subgraph from
  the ``Switch`` true outputs to the ``NextIteration`` inputs. Each ``Exit`` becomes an
  ``Identity`` of the ``While``'s output. ``ops/control_flow.py`` then runs it as a
  ``lax.scan`` when its trip count is static (differentiable) or a ``lax.while_loop``.
  Inner frames are rewritten before outer ones.
* **Conditionals.** A ``Switch`` passes its input to both outputs, so both branches are
  computed, and each ``Merge`` of a ``tf.cond`` becomes ``_V1CondMerge(false, true, pred)``,
  a select by the predicate of the ``Switch`` nodes of the same name scope (``tf.cond``
  puts them there, or the ``pred_id`` they read). A predicate fixed in the graph (a
  constant, or a ``PlaceholderWithDefault`` of one) picks its branch here, so the other
  branch never runs (nor its random ops); a static traced predicate picks its branch
  without a select.

Nested frames with several loop levels work as long as inner frame names extend outer ones
(TF's naming); a ``Merge`` without a ``Switch`` in its scope is reported.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Protocol

from jaxhub_tf.from_tf import graph
from jaxhub_tf.from_tf.reader import protos

_COUNTER = itertools.count()


class FunctionSink(Protocol):
    """Where the rewrite puts the functions it makes (the interpreter running the graph)."""

    def add_function(self, fn: graph.Function) -> None: ...


def has_v1_control_flow(fn: graph.Function) -> bool:
    return any(n.op in ("Switch", "RefSwitch", "Merge", "Enter") for n in fn.nodes.values())


def functionalize(fn: graph.Function, interp: FunctionSink) -> graph.Function:
    """``fn`` with its v1 loops as ``While`` nodes and its cond merges as selects.

    Raises:
      NotImplementedError: a structure this rewrite does not know (the message says which).
    """
    if not has_v1_control_flow(fn):
        return fn
    nodes = dict(fn.nodes)
    _rewrite_cond_merges(nodes)
    frames: dict[str, list[graph.Node]] = {}
    for node in nodes.values():
        if node.op in ("Enter", "RefEnter"):
            frames.setdefault(node.attr("frame_name"), []).append(node)
    for frame in sorted(frames, key=len, reverse=True):  # inner frames first
        _rewrite_loop(nodes, frame, frames[frame], interp)
    return dataclasses.replace(fn, nodes=nodes)


def _consumers(nodes, ref: tuple[str, int]) -> list[graph.Node]:
    return [n for n in nodes.values() if ref in n.inputs]


def _scope(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _rewrite_cond_merges(nodes: dict[str, graph.Node]) -> None:
    for name, node in list(nodes.items()):
        if node.op != "Merge":
            continue
        sources = [nodes[s].op if s in nodes else "" for s, _ in node.inputs]
        if "NextIteration" in sources or "Enter" in sources:
            continue  # a loop's merge: the loop rewrite removes it
        pred = _cond_predicate(nodes, _scope(name))
        if len(node.inputs) != 2 or pred is None:
            raise NotImplementedError(f"v1 Merge {name!r}: no tf.cond Switch in its scope")
        taken = _static_predicate(nodes, pred)
        if taken is None:
            nodes[name] = graph.Node(name, "_V1CondMerge", [*node.inputs, pred],
                                     node.control_inputs, {})
        else:  # the other branch is never reached: not even its random ops run
            nodes[name] = graph.Node(name, "Identity", [node.inputs[int(taken)]],
                                     node.control_inputs, {})


def _cond_predicate(nodes: dict[str, graph.Node], scope: str) -> tuple[str, int] | None:
    """The predicate of the ``tf.cond`` whose nodes are in ``scope``, or None.

    ``tf.cond`` puts a ``Switch`` of the predicate in its scope. A graph pruned to its
    outputs (a TF1 graph saved as a TF2 function) can lose that node, which only fed
    control edges, and keep the ``pred_id`` identity every branch's switches read.
    """
    for n in nodes.values():
        if n.op in ("Switch", "RefSwitch") and _scope(n.name) == scope:
            return n.inputs[1]
    pred_id = f"{scope}/pred_id"
    return (pred_id, 0) if pred_id in nodes else None


def _static_predicate(nodes: dict[str, graph.Node], ref: tuple[str, int]) -> bool | None:
    """The value of a predicate fixed in the graph (a constant, through identities), or None.

    A ``PlaceholderWithDefault`` counts as its default: inside a function nothing can
    feed it (TF1 code's ``is_training`` flags saved as TF2 functions).
    """
    node = nodes.get(ref[0])
    while node is not None and node.op in ("Identity", "PlaceholderWithDefault"):
        node = nodes.get(node.inputs[0][0])
    if node is None or node.op != "Const":
        return None
    value = node.attr("value")
    return bool(value) if getattr(value, "size", 1) == 1 else None


def _rewrite_loop(nodes, frame: str, enters: list[graph.Node], interp) -> None:
    loop_enters = [e for e in enters if not e.attr("is_constant", False)]
    const_enters = [e for e in enters if e.attr("is_constant", False)]
    merges, switches, exits, next_iters = [], [], [], []
    for enter in loop_enters:
        merge = next(n for n in _consumers(nodes, (enter.name, 0)) if n.op == "Merge")
        switch = next(n for n in _consumers(nodes, (merge.name, 0)) if n.op == "Switch")
        exit_ = next((n for n in _consumers(nodes, (switch.name, 0)) if n.op == "Exit"), None)
        next_iter = next(nodes[s] for s, _ in merge.inputs if nodes[s].op == "NextIteration")
        merges.append(merge)
        switches.append(switch)
        exits.append(exit_)
        next_iters.append(next_iter)
    loop_cond = nodes[switches[0].inputs[1][0]]
    n_vars, tag = len(loop_enters), f"{frame}_{next(_COUNTER)}".replace("/", "_")
    args = [f"arg{i}" for i in range(n_vars + len(const_enters))]
    consts = {(e.name, 0): (args[n_vars + j], 0) for j, e in enumerate(const_enters)}
    cond_map = {(m.name, 0): (args[i], 0) for i, m in enumerate(merges)} | consts
    body_map = {(s.name, 1): (args[i], 0) for i, s in enumerate(switches)} | consts
    cond = _subgraph(nodes, f"v1_cond_{tag}", args, [loop_cond.inputs[0]], cond_map)
    body_outputs = [n.inputs[0] for n in next_iters] + [(a, 0) for a in args[n_vars:]]
    body = _subgraph(nodes, f"v1_body_{tag}", args, body_outputs, body_map)
    interp.add_function(cond)
    interp.add_function(body)
    loop_name = f"{frame}/_v1_while"
    nodes[loop_name] = graph.Node(
        loop_name, "While", [e.inputs[0] for e in loop_enters + const_enters], [],
        {"cond": _func_attr(cond.name), "body": _func_attr(body.name)})
    for i, exit_ in enumerate(exits):
        if exit_ is not None:
            nodes[exit_.name] = graph.Node(exit_.name, "Identity", [(loop_name, i)], [],
                                               {})


def _func_attr(name: str) -> protos.AttrValue:
    return protos.AttrValue(func=protos.NameAttrList(name=name))


def _subgraph(nodes, name: str, args: list[str], outputs: list[tuple[str, int]],
              boundary: dict[tuple[str, int], tuple[str, int]]) -> graph.Function:
    """The nodes that ``outputs`` need, with ``boundary`` tensors replaced by args."""
    picked: dict[str, graph.Node] = {}

    def remap(ref: tuple[str, int]) -> tuple[str, int]:
        return boundary.get(ref, ref)

    stack = [remap(r)[0] for r in outputs]
    while stack:
        current = stack.pop()
        if current in picked or current in args:
            continue
        if current not in nodes:
            raise NotImplementedError(f"v1 loop {name}: {current!r} is not in the graph")
        node = nodes[current]
        if node.op in ("Enter", "Merge", "Switch", "Exit", "NextIteration", "LoopCond"):
            raise NotImplementedError(f"v1 loop {name}: {node.op} {current!r} inside a loop "
                                      f"body is not supported")
        inputs = [remap(r) for r in node.inputs]
        picked[current] = dataclasses.replace(node, inputs=inputs, control_inputs=[],
                                              _decoded={})
        stack.extend(s for s, _ in inputs)
    return graph.Function(name, list(args), [None] * len(args), picked,
                              [remap(r) for r in outputs], [f"out{i}" for i in
                                                            range(len(outputs))], [])
