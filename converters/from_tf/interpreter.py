"""Evaluates TF graphs and function libraries as pure JAX functions.

The interpreter walks a :class:`~jaxhub_tf.from_tf.graph.Function` in dependency order
(data and control edges), running each node through the op registry. Calls to library
functions are evaluated inline; control-flow ops (see ``ops/control_flow.py``) evaluate
their bodies through :meth:`Interpreter.run` with a forked :class:`Context`.

Examples:
  >>> fn = run_graph(graph_def, inputs=["x:0"], outputs=["y:0"])
  >>> (y,), state_updates = jax.jit(fn)({}, [x])
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf import atrous, clamps, graph
from jaxhub_tf.from_tf import ops as _ops  # noqa: F401  (registers every op family)
from jaxhub_tf.from_tf.ops import random as random_ops
from jaxhub_tf.from_tf.ops import registry
from jaxhub_tf.from_tf.reader import op_defs, protos
from jaxhub_tf.from_tf.tf1 import control_flow
from jaxhub_tf.from_tf.values import (UNKNOWN, Context, TracedValueError, UnknowableError,
                                      as_jax)

#: Ops that write variables: a body holding one must carry the state through control flow.
STATE_WRITING_OPS = frozenset({"AssignVariableOp", "AssignAddVariableOp",
                               "AssignSubVariableOp", "RngReadAndSkip"})

#: Attributes that name functions a node calls.
_FUNC_ATTRS = ("f", "then_branch", "else_branch", "cond", "body", "branches")


class UnsupportedOpsError(NotImplementedError):
    """The graph holds ops that no family registers; the message lists them all."""


class UnsupportedAttrsError(UnsupportedOpsError):
    """Nodes carry attributes their ops' implementations do not handle; the message lists
    each one with the nodes (``function/node``) carrying it."""


class StaticValueError(NotImplementedError):
    """A node needs an operand while tracing (a shape, a size, an axis, a slice bound) that
    the graph computes from tensor values.

    JAX traces with static shapes, so such an operand must come from constants or from
    tensor shapes. The message names the node, the operand, and the inputs of the
    converted function (the signature's, as far as calls can be followed) it comes from.

    Attributes:
      node, op: the failing node and its op.
      operands: the node's inputs that must be static (names from the op's definition).
      function: the outermost function the operands were followed out to.
      sources: that function's inputs the operands are computed from (none: computed from
        variables or random numbers only).
      detail: what the op said.
    """

    def __init__(self, node: str, op: str, operands: list[str], positions: list[int],
                 detail: str):
        super().__init__(node, op, operands, detail)
        self.node, self.op, self.operands, self.detail = node, op, operands, detail
        self.function, self.sources = "", []
        # Where the operands come from among the inputs of the node being unwound (the
        # failing node, then each call of the function holding it); None once a node that
        # is not a plain call (a loop, a conditional) stops the trail.
        self.positions: list[int] | None = positions

    def follow(self, fn: graph.Function, node: graph.Node) -> None:
        """Follows the operands from ``node``'s inputs back to ``fn``'s arguments."""
        if self.positions is None:
            return
        used = reached_args(fn, [node.inputs[i] for i in self.positions])
        self.function, self.sources = fn.name, [fn.args[i] for i in used]
        self.positions = used

    def name_sources(self, inputs: Mapping[str, Sequence[str]]) -> None:
        """Replaces the sources that are host stage results (keys of ``inputs``) by the
        signature's inputs they are computed from."""
        if any(source in inputs for source in self.sources):
            self.sources = sorted({name for source in self.sources
                                   for name in inputs.get(source, [source])})

    def __str__(self) -> str:
        operands = " and ".join(f"{name!r}" for name in self.operands) or "an operand"
        if self.sources:
            origin = f"computed from the values of input(s) {', '.join(map(repr, self.sources))}"
            if self.positions is None:  # the trail stopped at a loop's or conditional's body
                origin += f" of function {self.function!r}"
        else:
            origin = "computed from tensor values (variables or random numbers)"
        return (f"TF node {self.node!r} ({self.op}) needs its {operands} while tracing, "
                f"but it is {origin}: {self.detail}. JAX traces with static shapes, so a "
                f"shape, size, axis or slice bound must not depend on tensor values: make it "
                f"a constant of the TF function (tf.constant, or a Python value), or compute "
                f"it from tensor shapes (tf.shape) instead of values.")


#: JAX's errors for a tracer used where a concrete value is needed.
_CONCRETIZATION_ERRORS = (TracedValueError, jax.errors.ConcretizationTypeError,
                          jax.errors.TracerArrayConversionError,
                          jax.errors.TracerIntegerConversionError)

#: Ops that call a library function with the node's inputs as its arguments, in order.
_CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})


def _some(names: set[str]) -> str:
    """Up to five of ``names``, sorted, and how many more."""
    shown = ", ".join(sorted(names)[:5])
    return shown + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


class _AllUnknown:
    """The outputs of a node skipped during partial evaluation."""

    def __getitem__(self, index: int):
        return UNKNOWN


class _Running:
    """A node as an op implementation sees it while it runs: the node plus ``ctx``.

    The :class:`~jaxhub_tf.from_tf.ops.registry.Node` protocol, all of it.
    """

    __slots__ = ("_node", "ctx")

    def __init__(self, node: graph.Node, ctx: Context):
        self._node = node
        self.ctx = ctx

    name = property(lambda self: self._node.name)
    op = property(lambda self: self._node.op)
    num_inputs = property(lambda self: len(self._node.inputs))

    def attr(self, key: str, *default: Any) -> Any:
        return self._node.attr(key, *default)

    def has_attr(self, key: str) -> bool:
        return self._node.has_attr(key)


class Interpreter:
    """Runs the functions of one TF function library (and graphs that call into it)."""

    def __init__(self, library: protos.FunctionDefLibrary | None = None,
                 gradient_captures: Mapping[str, Sequence[str]] | None = None,
                 gradient_outputs: Mapping[str, Sequence[int]] | None = None):
        """
        Args:
          library: the functions that graphs may call.
          gradient_captures: for each custom-gradient function of the library, the tensors
            (``"node:index"`` in the forward function) it captures, in argument order
            (a SavedModel's object graph has them).
          gradient_outputs: for each custom-gradient function, the ``IdentityN`` input that
            each of its outputs is the gradient of. TF drops the ``None`` gradients from a
            saved gradient function's outputs; the SavedModel's object graph records where
            they were. Without an entry, the outputs are taken to be the gradients of the
            trailing inputs (TF's ``custom_gradient`` gives the results none).
        """
        self._fdefs = {f.signature.name: f for f in (library.function if library else ())}
        self._gradients = {g.registered_op_type: g.gradient_func
                           for g in (library.registered_gradients if library else ())}
        self._gradient_captures = dict(gradient_captures or {})
        self._gradient_outputs = dict(gradient_outputs or {})
        self._functions: dict[str, graph.Function] = {}
        self._orders: dict[int, tuple[graph.Function, list[graph.Node]]] = {}

    @classmethod
    def from_graph_def(cls, graph_def: protos.GraphDef) -> "Interpreter":
        return cls(graph_def.library)

    def function(self, name: str) -> graph.Function:
        """The library function ``name``, parsed once, its v1 control flow functional.

        TF1 graphs brought into TF2 (a TF1 SavedModel loaded and saved again, a
        ``wrap_function``) keep their ``Switch``/``Merge`` nodes inside TF2 functions, so
        every library function gets the rewrite TF1 Hub graphs get. Integer clamps that
        their bounds pin are folded (:func:`clamps.fold`), for the host-stage split too.
        """
        if name not in self._functions:
            if name not in self._fdefs:
                raise KeyError(f"function {name!r} is not in the graph's library")
            fn = graph.function_from_function_def(self._fdefs[name], self._fdefs)
            self._functions[name] = clamps.fold(control_flow.functionalize(fn, self))
        return self._functions[name]

    def is_function(self, name: str) -> bool:
        return name in self._fdefs or name in self._functions

    def add_function(self, fn: graph.Function) -> None:
        """Adds a function made outside the library (a rewritten v1 loop's body)."""
        self._functions[fn.name] = fn

    # -- checks before any work ----------------------------------------------------------

    def check_supported(self, *fns: graph.Function) -> None:
        """Raises one error listing every unsupported op or attribute ``fns`` can reach.

        Raises:
          UnsupportedOpsError: with each missing op and the nodes (``function/node``) using
            it, and each attribute that its op's implementation would ignore.
          UnsupportedAttrsError: when every op is registered but some attribute is not
            supported (a subclass of UnsupportedOpsError).
        """
        missing: dict[str, set[str]] = {}
        bad_attrs: dict[tuple[str, str], set[str]] = {}
        for fn in fns:
            for owner, node in self.reachable_nodes(fn):
                where = f"{owner}/{node.name}" if owner else node.name
                if registry.lookup(node.op) is not None:
                    for problem in registry.attr_violations(
                            node, node.attrs, graph.implicit_attrs(node.op)):
                        bad_attrs.setdefault((node.op, problem), set()).add(where)
                elif not self.is_function(node.op):
                    missing.setdefault(node.op, set()).add(where)
        sections = []
        if missing:
            sections.append(f"{len(missing)} TF op(s) have no JAX implementation:\n" + "\n".join(
                f"  {op}: {_some(names)}" for op, names in sorted(missing.items())))
        if bad_attrs:
            sections.append(
                f"{len(bad_attrs)} TF node attribute(s) are not supported, so converting "
                "would compute something else:\n" + "\n".join(
                    f"  {op} {problem}: {_some(names)}"
                    for (op, problem), names in sorted(bad_attrs.items())))
        if sections:
            error = UnsupportedOpsError if missing else UnsupportedAttrsError
            raise error("\n".join(sections)
                        + "\nRegister ops, or the attributes they handle, with "
                          "jaxhub_tf.from_tf.ops.registry.register (see docs/converters.md).")

    def writes_state(self, fn: graph.Function) -> bool:
        """True when ``fn`` (or a function it calls) assigns a variable."""
        return any(node.op in STATE_WRITING_OPS for _, node in self.reachable_nodes(fn))

    def reachable_nodes(self, fn: graph.Function):
        """``(function name, node)`` for every node ``fn`` may run, callees included."""
        seen, stack = {id(fn)}, [fn]
        while stack:
            current = stack.pop()
            for node in self._order(current):
                yield current.name, node
                for callee in self._callees(node):
                    callee_fn = self.function(callee)
                    if id(callee_fn) not in seen:
                        seen.add(id(callee_fn))
                        stack.append(callee_fn)

    def _callees(self, node: graph.Node) -> list[str]:
        names = [node.op] if self.is_function(node.op) else []
        gradient = self._custom_gradient(node)
        if gradient is not None:
            names.append(gradient)
        for key in _FUNC_ATTRS:
            if node.has_attr(key):
                value = node.attr(key)
                names.extend(value if isinstance(value, list) else [value])
        return [n for n in names if self.is_function(n)]

    # -- evaluation ----------------------------------------------------------------------

    def run(self, fn: graph.Function, args: Sequence[Any], ctx: Context) -> list[Any]:
        """Evaluates ``fn`` on ``args``; returns its outputs. Assignments update ``ctx``."""
        if len(args) != len(fn.args):
            raise ValueError(f"function {fn.name!r} takes {len(fn.args)} args, got {len(args)}")
        env: dict[str, Any] = {name: [value] for name, value in zip(fn.args, args)}
        for node in self._order(fn):
            inputs = [env[s][i] for s, i in node.inputs]
            gradient = self._custom_gradient(node)
            if gradient is not None and not ctx.partial:
                captures = [_lookup(env, ref, gradient) for ref in
                            self._gradient_captures.get(gradient, ())]
                env[node.name] = self._with_custom_gradient(gradient, inputs, captures, ctx)
                continue
            try:
                env[node.name] = self._run_node(node, inputs, ctx)
            except StaticValueError as e:
                e.follow(fn, node)
                raise
        return [env[s][i] for s, i in fn.outputs]

    def call(self, name: str, args: Sequence[Any], ctx: Context) -> list[Any]:
        """Evaluates the library function ``name`` inline, in ``ctx``."""
        return self.run(self.function(name), args, ctx)

    def _run_node(self, node: graph.Node, inputs: list[Any], ctx: Context):
        if ctx.partial and any(v is UNKNOWN for v in inputs):
            return _AllUnknown()
        impl = registry.lookup(node.op)
        try:
            if impl is None:
                outputs = self.call(node.op, inputs, ctx)
            else:
                outputs = impl(_Running(node, ctx), *inputs)
        except UnknowableError:
            return _AllUnknown()
        except StaticValueError as e:  # from a function this node runs
            if impl is not None and node.op not in _CALL_OPS:
                e.positions = None  # a loop's or conditional's inputs are not its args
            raise
        except (UnsupportedOpsError, _NodeError):
            raise
        except _CONCRETIZATION_ERRORS as e:
            positions = _static_operands(e, inputs, node.op)
            raise StaticValueError(node.name, node.op,
                                   [_operand_name(node, i) for i in positions], positions,
                                   str(e).split("\n")[0]) from e
        except Exception as e:
            raise _NodeError(f"TF node {node.name!r} ({node.op}) failed: "
                             f"{type(e).__name__}: {e}") from e
        return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]

    # -- custom gradients (tf.custom_gradient, saved with the SavedModel) ----------------

    def _custom_gradient(self, node: graph.Node) -> str | None:
        """The library function holding ``node``'s custom gradient, if it has one."""
        if node.op != "IdentityN" or "_gradient_op_type" not in node.attrs:
            return None
        return self._gradients.get(node.attr("_gradient_op_type"))

    def _with_custom_gradient(self, gradient: str, inputs: list[Any], captures: list[Any],
                              ctx: Context):
        """``IdentityN(inputs)`` whose VJP is the TF gradient function ``gradient``.

        TF's ``custom_gradient`` puts the forward results and the arguments through one
        ``IdentityN``; its gradient function takes the cotangents of all of them, then the
        tensors it captured, and returns the gradients of the arguments (the trailing
        inputs; see :meth:`_gradient_positions`). The results get zero: their producers are
        not differentiated. A gradient function that draws random numbers (noise in a
        straight-through estimator) draws from a key split off the forward call's (``ctx``),
        which is why such a function takes ``rng`` (:func:`random_ops.draws_random`).
        """
        if not all(isinstance(v, (jax.Array, np.ndarray, np.generic))
                   for v in inputs + captures):
            return list(inputs)
        grad_fn = self.function(gradient)
        # Only a gradient that draws takes a key; the others leave the caller's as it is.
        draws = ctx.rng is not None and random_ops.draws_random(self, grad_fn)
        key = ctx.next_key(gradient) if draws else None

        @jax.custom_vjp
        def identity(xs, caps, key):
            return xs

        def forward(xs, caps, key):
            return xs, (xs, caps, key)

        def backward(residuals, cotangents):
            xs, caps, key = residuals
            grads = self.run(grad_fn, list(cotangents) + list(caps), Context(self, {}, key))
            positions = self._gradient_positions(gradient, len(xs), len(grads))
            dxs = [None] * len(xs)
            for i, g in zip(positions, grads):
                if g is not None and _is_float(xs[i]):
                    dxs[i] = as_jax(g, xs[i].dtype).reshape(xs[i].shape)
            return tuple(dxs), tuple(None for _ in caps), None

        identity.defvjp(forward, backward)
        return list(identity(tuple(as_jax(v) for v in inputs),
                             tuple(as_jax(c) for c in captures), key))

    def _gradient_positions(self, gradient: str, n_inputs: int, n_grads: int) -> Sequence[int]:
        """The ``IdentityN`` input that each output of the gradient function belongs to."""
        positions = self._gradient_outputs.get(gradient, range(n_inputs - n_grads, n_inputs))
        if len(positions) != n_grads or not all(0 <= i < n_inputs for i in positions):
            raise ValueError(f"custom gradient {gradient!r} returns {n_grads} gradients, which "
                             f"cannot be matched to the {n_inputs} tensors it differentiates")
        return positions

    def _order(self, fn: graph.Function) -> list[graph.Node]:
        """The nodes that ``fn``'s outputs need, dependencies first (cached), with TF's
        phase-split dilated convolutions as single ones (:func:`atrous.fuse`: every
        function runs through here, whichever reader made it)."""
        if id(fn) not in self._orders:
            # The entry holds fn itself, so its id cannot be reused by another object.
            self._orders[id(fn)] = (fn, _topological_order(atrous.fuse(fn)))
        return self._orders[id(fn)][1]

    # -- as JAX functions ----------------------------------------------------------------

    def as_function(self, fn: graph.Function, check: bool = True
                    ) -> Callable[[Mapping[str, Any], Sequence[Any], Any], tuple]:
        """``fn`` as ``f(state, args, rng=None, checks=None) -> (outputs, new_state)``:
        pure JAX.

        ``state`` maps variable keys (see :class:`~jaxhub_tf.from_tf.values.Resource`) to
        values; ``new_state`` holds only the entries the graph assigned. When ``checks``
        is a list, each ``Assert`` on traced values appends ``(message, condition)`` to it
        instead of being dropped.

        Args:
          fn: the graph to run.
          check: run :meth:`check_supported` now. A caller converting several functions
            passes False and checks them all at once, for one complete error.
        """
        if check:
            self.check_supported(fn)

        def evaluate(state: Mapping[str, Any], args: Sequence[Any], rng: Any = None,
                     checks: list[tuple[str, Any]] | None = None):
            ctx = Context(self, dict(state), rng, checks=checks)
            outputs = self.run(fn, list(args), ctx)
            updates = {k: v for k, v in ctx.state.items() if v is not state.get(k)}
            return outputs, updates

        return evaluate


def _lookup(env: Mapping[str, Any], ref: str, gradient: str) -> Any:
    name, index = graph.parse_ref(ref)
    if name not in env:
        raise KeyError(f"custom gradient {gradient!r} captures {ref!r}, which the forward "
                       "function did not compute")
    return env[name][index]


def _is_float(x: Any) -> bool:
    return jnp.issubdtype(x.dtype, jnp.inexact)


def _static_operands(error: Exception, inputs: Sequence[Any], op: str) -> list[int]:
    """The positions of the inputs of an ``op`` node that ``error`` needed static.

    The operand itself when the op named it (:class:`TracedValueError`); else the traced
    ones among the op's static operands (:data:`STATIC_OPERANDS`); else the traced inputs
    that JAX's message describes (``traced array with shape int32[2]``), and among
    several the integer ones after the first (sizes and axes follow the data).
    """
    culprit = getattr(error, "value", None)
    traced = [i for i, x in enumerate(inputs) if isinstance(x, jax.core.Tracer)]
    if culprit is not None:
        return [i for i in traced if inputs[i] is culprit][:1] or traced
    known = [i for i in static_positions(op, len(inputs)) if i in traced]
    if known:
        return known
    described = [i for i in traced if inputs[i]._error_repr() in str(error)] or traced
    sizes = [i for i in described if i > 0 and jnp.issubdtype(inputs[i].dtype, jnp.integer)]
    return sizes or described


def _operand_name(node: graph.Node, position: int) -> str:
    """The name of ``node``'s input ``position`` in its op's definition (``shape``)."""
    op_def = op_defs.get(node.op)
    names = []
    for arg in op_def.input_arg if op_def is not None else ():
        count = 1
        if arg.number_attr:
            count = int(node.attr(arg.number_attr))
        elif arg.type_list_attr:
            count = len(node.attr(arg.type_list_attr))
        names += [arg.name] if count == 1 else [f"{arg.name}[{k}]" for k in range(count)]
    return names[position] if position < len(names) else f"input {position}"


#: The operands of an op that JAX must know while tracing (a shape, a size, an axis, a
#: count, paddings, a slice window), by op: their input positions (negative ones count
#: from the end: ``ConcatV2``'s axis), or None for every input (ops whose output shape
#: follows all their values: ``tf.where(x)``, ``tf.unique(x)``). The op implementations
#: raise a ``StaticValueError`` on a traced one; a signature whose inputs' values set one
#: computes that op on the host instead (``host_stages/split.py``). ``StridedSlice``'s
#: bounds are static only where they set a size, which ``split`` tells apart.
STATIC_OPERANDS: dict[str, tuple[int, ...] | None] = {
    # output shapes that follow the values of every input
    "Range": None, "Where": None, "Unique": None, "UniqueWithCounts": None,
    "ListDiff": None, "RaggedRange": None, "RaggedGather": None, "CTCGreedyDecoder": None,
    "NonMaxSuppressionV2": None, "NonMaxSuppressionV3": None, "NonMaxSuppressionV4": None,
    "NonMaxSuppressionV5": None, "DenseToDenseSetOperation": None,
    "DenseToSparseSetOperation": None, "SparseToSparseSetOperation": None,
    "DynamicStitch": None, "ParallelDynamicStitch": None,
    # (Not RaggedTensorToTensor: given its full shape, the device pads traced row partitions;
    # ``split`` moves it to the host stage when the partitions' values set that shape.)
    # shapes and sizes
    "Fill": (0,), "Reshape": (1,), "BroadcastTo": (1,), "Tile": (1,), "Slice": (1, 2),
    "Pad": (1,), "PadV2": (1,), "MirrorPad": (1,), "TopKV2": (1,), "OneHot": (1,),
    "LinSpace": (2,), "ScatterNd": (2,), "SparseToDense": (1,), "Bincount": (1,),
    "DenseBincount": (1,),
    "DynamicPartition": (1,), "SparseFillEmptyRows": (0, 2),
    "UnsortedSegmentSum": (2,), "UnsortedSegmentMax": (2,), "UnsortedSegmentMin": (2,),
    "UnsortedSegmentProd": (2,), "SegmentSum": (1,), "SegmentMean": (1,),
    "SegmentMax": (1,), "SegmentMin": (1,), "SegmentProd": (1,),
    "SpaceToBatchND": (1, 2), "BatchToSpaceND": (1, 2), "ResizeBilinear": (1,),
    "ResizeNearestNeighbor": (1,), "ResizeBicubic": (1,), "ResizeArea": (1,),
    "CropAndResize": (3,), "Conv2DBackpropInput": (0,), "Conv3DBackpropInputV2": (0,),
    "MatrixDiagV3": (1, 2, 3), "MatrixDiagPartV3": (1,), "MatrixSetDiagV3": (2,),
    "MatrixDiagV2": (1, 2, 3), "MatrixDiagPartV2": (1,), "MatrixSetDiagV2": (2,),
    # axes and permutations
    "Transpose": (1,), "ReverseV2": (1,), "Roll": (2,), "ExpandDims": (1,),
    "ConcatV2": (-1,), "Split": (0,), "SplitV": (1, 2), "GatherV2": (2,),
    "Sum": (1,), "Mean": (1,), "Max": (1,), "Min": (1,), "Prod": (1,), "All": (1,),
    "Any": (1,), "EuclideanNorm": (1,), "ArgMax": (1,), "ArgMin": (1,), "Cumsum": (1,),
    "Cumprod": (1,), "CumulativeLogsumexp": (1,),
}


def static_positions(op: str, num_inputs: int) -> list[int]:
    """The positions of the inputs of an ``op`` node with ``num_inputs`` inputs that must
    be static (:data:`STATIC_OPERANDS`; none for other ops)."""
    if op not in STATIC_OPERANDS:
        return []
    positions = STATIC_OPERANDS[op]
    if positions is None:
        return list(range(num_inputs))
    return sorted({p % num_inputs for p in positions if -num_inputs <= p < num_inputs})


#: Ops whose results are their input's shape, whatever its values (a TensorArray's or
#: TensorList's length is the size it was made with, whatever its elements: TF 1 RNNs'
#: ``TensorArrayStack`` reads it into a ``Range``).
SHAPE_OPS = frozenset({"Shape", "ShapeN", "Size", "Rank", "TensorArraySizeV3",
                       "TensorListLength"})


def reached_args(fn: graph.Function, refs: Sequence[tuple[str, int]]) -> list[int]:
    """The indices of ``fn``'s arguments whose values the tensors ``refs`` are computed
    from (not through the shape of one: shapes are static).

    Calls are not followed into (a ``PartitionedCall``'s inputs all count)."""
    reached = graph.upstream(fn.nodes, [name for name, _ in refs], SHAPE_OPS)
    return [i for i, name in enumerate(fn.args) if name in reached]


class _NodeError(RuntimeError):
    """An op failed; the message names the node (innermost first)."""


def _topological_order(fn: graph.Function) -> list[graph.Node]:
    """Nodes that outputs and control outputs depend on, each after its dependencies."""
    nodes = fn.nodes
    order, state = [], {}  # state: 1 = visiting, 2 = done
    roots = [s for s, _ in fn.outputs] + list(fn.control_outputs)
    for root in roots:
        if root not in nodes or state.get(root) == 2:
            continue
        stack = [(root, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                state[name] = 2
                order.append(nodes[name])
                continue
            if state.get(name):
                continue
            state[name] = 1
            stack.append((name, True))
            node = nodes[name]
            for dep in [s for s, _ in node.inputs] + node.control_inputs:
                if dep in nodes and not state.get(dep):
                    stack.append((dep, False))
    return order


def run_graph(graph_def: protos.GraphDef, inputs: Iterable[str], outputs: Iterable[str]
              ) -> Callable[..., tuple]:
    """A GraphDef from tensors ``inputs`` to tensors ``outputs`` as a pure JAX function.

    Returns:
      ``f(state, args, rng=None) -> (outputs, state updates)``, see
      :meth:`Interpreter.as_function`.
    """
    if not isinstance(graph_def, protos.GraphDef):  # TF's GraphDef: read through jaxhub's
        graph_def = protos.GraphDef.FromString(graph_def.SerializeToString())
    interp = Interpreter.from_graph_def(graph_def)
    fn = clamps.fold(graph.function_from_graph_def(graph_def, inputs, outputs))
    return interp.as_function(fn)
