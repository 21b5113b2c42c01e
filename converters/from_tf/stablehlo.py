"""The input and output shapes of the StableHLO module an ``XlaCallModule`` op holds.

TF records ``-1`` for every output size it does not know (the op's ``Sout``), which says
nothing of the input sizes it follows. A ``jax.export`` module knows: its ``main`` takes
``tensor<?x4xf32>`` where an input is polymorphic, and each shape assertion that
``jax.export`` writes into ``main`` quotes the specification it was exported for (``Using
the following polymorphic shapes specifications: args[0].shape = (b, 4),...``), in the
module's own size variables (``b``, ``d``). Each output size is a polynomial in those
variables (``b``, ``2*b``, ``n + b``, ``b*d``), or a floor division of one of degree one
(``(h + 1) // 2`` after a strided convolution); it is read from the module by refining it
(the shape refinement XLA runs before compiling a module) for concrete values of the
variables, all at once (``main`` called once per point): a polynomial of degree one from
``k + 1`` points (``k`` variables), of degree two from ``k * (k + 1) / 2`` more, a floor
division from its slopes over long steps and ``c`` points along each variable (``c`` the
divisor), each checked at two more points, one far.

Other sizes (``b * ((h + 1) // 2)``) are refused, naming the output and its size.

This module uses JAX's internal MLIR bindings and shape solver (``jax._src``): JAX has no
public API for refining a module's shapes.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from fractions import Fraction
from typing import Any, Callable, Sequence

import jax
from jax import export as jax_export
from jax._src.export import shape_poly
from jax._src.interpreters import mlir
from jax._src.lib import _jax
from jax._src.lib.mlir import ir
from jax._src.lib.mlir.dialects import func as func_dialect
from jax._src.lib.mlir.dialects import hlo

#: What precedes the specification in jax.export's shape assertion messages.
_SPECS = "Using the following polymorphic shapes specifications: "

#: Floor divisions of output sizes are read up to this divisor (strides and windows
#: compose: five stride-2 stages divide by 32)...
_MAX_DIVISOR = 64

#: ... over steps of this many: a multiple of every divisor up to 64 made of 2, 3, 5, 7.
_PERIOD = 2 ** 6 * 3 ** 2 * 5 * 7

#: The value of the first size variable at the probes (the next ones are 2, 4, ... more),
#: clear of small sizes a module may treat specially (1: broadcasting).
_FIRST_PROBE = 5


@dataclasses.dataclass(frozen=True)
class ModuleShapes:
    """The shapes a module's ``main`` takes and returns, in one symbolic scope.

    Attributes:
      inputs: one shape per array argument (the platform index left out): a size is an
        int where ``main`` takes a static size, else a symbol of the scope.
      outputs: one shape per result, its sizes ints or expressions of those symbols.
    """

    inputs: tuple[tuple[Any, ...], ...]
    outputs: tuple[tuple[Any, ...], ...]


@functools.lru_cache(maxsize=32)
def module_shapes(module: bytes, n_args: int) -> ModuleShapes:
    """The shapes of a serialized ``jax.export`` module (``XlaCallModule``'s ``module``).

    Args:
      module: the module, as a StableHLO portable artifact.
      n_args: how many array arguments it takes (the node's inputs).

    Returns:
      The shapes. A size ``main`` takes as unknown is the module's own variable when the
      specification it was exported for gives that size as a variable (``b``), else a
      symbol of its own (``d*128`` becomes ``_arg0_1``). Output sizes are polynomials of
      those symbols (``128*d`` is ``_arg0_1``), or where they cannot be, of the
      variables as ``jax.export`` solves them (``d`` is ``_arg0_1 // 128``).

    Raises:
      NotImplementedError: the module takes unknown sizes without quoting its shape
        specification, refuses the sizes its outputs are read at, or an output size is
        neither a polynomial of degree two or less in the module's size variables nor a
        floor division of one of degree one.

    Examples:
      >>> shapes = module_shapes(exported.mlir_module_serialized, 2)  # doctest: +SKIP
      >>> shapes.inputs, shapes.outputs  # doctest: +SKIP
      (((b, 4), (2, b, 4)), ((2, b, 4),))
    """
    arg_types, result_types, messages = _signature(module, n_args)
    specs = _specification(messages, [t for t in arg_types if None in t])
    inputs, variables = _inputs(arg_types, specs)
    probes = _Probes(module, arg_types, result_types, specs, variables)
    symbols = {str(d): d for s in inputs for d in s if not isinstance(d, int)}
    anchors = _anchors(specs, [s for s in inputs if any(str(d) in symbols for d in s)],
                       variables)
    values = _variable_values(specs, inputs, variables)
    outputs = [list(t) for t in result_types]
    unknown = [(i, j) for i, t in enumerate(result_types) for j, d in enumerate(t) if d is None]
    for k, (i, j) in enumerate(unknown):
        at = functools.partial(probes.size, k)
        poly, divisor = _fit(at, len(variables), probes.refine), 1
        if poly is None:
            poly, divisor = _fit_division(at, len(variables), probes.refine) or (None, 1)
        if poly is None:
            raise NotImplementedError(
                f"size {j} of output {i} of the StableHLO module is neither a polynomial "
                "of degree two or less nor an affine floor division in the sizes it takes "
                f"({', '.join(map(str, specs))}): it cannot be expressed in the input sizes")
        size = _in_symbols(poly, variables, anchors, symbols)
        if size is None:
            size = _evaluate(poly, [values[v] for v in variables])
        outputs[i][j] = size if divisor == 1 else size // divisor
    return ModuleShapes(tuple(inputs), tuple(tuple(o) for o in outputs))


@dataclasses.dataclass
class _Probes:
    """The unknown output sizes of a module at points of its size variables, refined for
    several points at once (:meth:`refine`) and then read (:meth:`size`)."""

    module: bytes
    arg_types: Sequence[tuple]
    result_types: Sequence[tuple]
    specs: Sequence[tuple]
    variables: Sequence[str]
    sizes: dict[tuple[int, ...], list[int]] = dataclasses.field(default_factory=dict)

    def refine(self, points: Sequence[tuple[int, ...]]) -> None:
        points = [p for p in dict.fromkeys(points) if p not in self.sizes]
        if not points:
            return
        envs = [dict(zip(self.variables, p)) for p in points]
        shapes = [[tuple(d if isinstance(d, int) else int(d._evaluate(env)) for d in spec)
                   for spec in self.specs] for env in envs]
        try:
            refined = _refined_results(self.module,
                                       [_arg_shapes(self.arg_types, s) for s in shapes])
        except ValueError as e:  # the module's own constraints refused the sizes
            cause = str(e.__cause__ or e).strip().splitlines()[0]
            raise NotImplementedError(
                f"the StableHLO module does not take inputs of shapes {shapes}, at which "
                f"its output sizes were to be read: {cause}") from e
        for p, results in zip(points, refined):
            self.sizes[p] = [d for t, r in zip(self.result_types, results)
                             for d, u in zip(r, t) if u is None]

    def size(self, k: int, point: tuple[int, ...]) -> int:
        """The ``k``-th unknown output size at ``point`` (refined already)."""
        return self.sizes[point][k]


def _signature(module: bytes, n_args: int):
    """``main``'s last ``n_args`` argument shapes and its result shapes (``None`` for an
    unknown size), and the messages of the shape assertions in its body."""
    with mlir.make_ir_context():
        parsed = _deserialize(module)
        main = ir.SymbolTable(parsed.operation)["main"]
        args = list(main.type.inputs)[len(main.type.inputs) - n_args:]
        messages = [ir.StringAttr(op.attributes["error_message"]).value
                    for op in main.regions[0].blocks[0].operations
                    if op.operation.name == "stablehlo.custom_call"
                    and "error_message" in op.attributes]
        return [_shape(t) for t in args], [_shape(t) for t in main.type.results], messages


def _deserialize(module: bytes) -> ir.Module:
    return _jax.mlir.deserialize_portable_artifact(module)


def _shape(t: ir.Type) -> tuple[int | None, ...]:
    t = ir.RankedTensorType(t)
    return tuple(None if t.is_dynamic_dim(k) else t.get_dim_size(k) for k in range(t.rank))


def _specification(messages: Sequence[str], dynamic: Sequence[tuple]) -> list[tuple]:
    """The polymorphic shapes the module was exported for, one per argument with unknown
    sizes, read from its shape assertion messages, in a new symbolic scope."""
    if not dynamic:
        return []
    quoted = next((m.split(_SPECS, 1)[1] for m in messages if _SPECS in m), None)
    if quoted is None:
        raise NotImplementedError(
            "the StableHLO module takes unknown sizes but quotes no polymorphic shapes "
            "specification (a module exported by a JAX older than 0.4.14?)")
    scope = jax_export.SymbolicScope()
    specs = [jax_export.symbolic_shape(s, scope=scope) for s in _shape_strings(quoted)]
    if len(specs) != len(dynamic) or any(
            len(s) != len(t) or any(isinstance(d, int) != (u is not None) or
                                    (u is not None and d != u) for d, u in zip(s, t))
            for s, t in zip(specs, dynamic)):
        raise NotImplementedError(
            f"the StableHLO module's polymorphic shapes specification {quoted!r} does "
            f"not fit its main's argument shapes {list(dynamic)}")
    return specs


def _shape_strings(quoted: str) -> list[str]:
    """``"(b, 4)"`` and ``"(2, b, 4)"`` from ``"args[0].shape = (b, 4),args[1].shape = (2,
    b, 4). Obtained ..."``: the parenthesized groups after each ``.shape = ``."""
    shapes = []
    for match in re.finditer(r"\.shape = \(", quoted):
        depth, start = 0, match.end() - 1
        for end in range(start, len(quoted)):
            depth += {"(": 1, ")": -1}.get(quoted[end], 0)
            if depth == 0:
                shapes.append(quoted[start:end + 1])
                break
    return shapes


def _inputs(arg_types: Sequence[tuple], specs: Sequence[tuple]):
    """The argument shapes in symbols, and the module's size variables (sorted).

    A spec size that is a variable stays that variable (an input size the module ties to
    another one keeps the same symbol, so the caller's sizes are compared with each
    other); any other (``d*128``) gets a symbol of its own, which the caller's size sets.
    """
    variables = sorted(set().union(*(d._get_vars() for s in specs for d in s
                                      if not isinstance(d, int))))
    scope = next((d.scope for s in specs for d in s if not isinstance(d, int)), None)
    inputs, spec_iter = [], iter(specs)
    for i, t in enumerate(arg_types):
        if None not in t:
            inputs.append(t)
            continue
        inputs.append(tuple(
            jax_export.symbolic_shape(f"_arg{i}_{j}", scope=scope)[0]
            if not isinstance(d, int) and str(d) not in variables else d
            for j, d in enumerate(next(spec_iter))))
    return inputs, variables


def _variable_values(specs: Sequence[tuple], inputs: Sequence[tuple],
                     variables: Sequence[str]) -> dict[str, Any]:
    """Each size variable of the module in the symbols of ``inputs``: itself where an
    input size is that variable, else solved from the sizes it appears in (as
    ``jax.export`` solves them when a module is called: ``d = _arg0_1 // 128``)."""
    if not specs:
        return {}
    avals = tuple(jax.core.ShapedArray(s, "float32") for s in specs)
    tree = jax.tree_util.tree_structure((tuple(range(len(avals))), {}))
    solution, _, synthetic = shape_poly.solve_dim_vars(avals, tree)
    dynamic = [s for s in inputs if any(not isinstance(d, int) for d in s)]
    env = {name: dynamic[i][j] for name, i, j in synthetic}
    symbols = {str(d): d for s in dynamic for d in s if not isinstance(d, int)}
    return {v: symbols[v] if v in symbols else
            shape_poly.ShapeEvaluator(env).evaluate(solution[v]) for v in variables}


Polynomial = dict[tuple[int, ...], int]  # monomial (variable indices) -> coefficient


def _fit(f: Callable[[tuple[int, ...]], int], n_vars: int,
         prepare: Callable[[list[tuple[int, ...]]], None] = lambda points: None
         ) -> Polynomial | None:
    """The integer polynomial of degree one, else two, that gives ``f`` at points of
    ``n_vars`` variables, checked at two more points; None when there is none.

    ``prepare(points)`` is called with the points of each degree before ``f`` is, so they
    can be computed at once (one refinement of the module for all).
    """
    base, checks = _base(n_vars)
    for degree in (1, 2):
        prepare([_step(base, s) for s in _steps(n_vars, degree)] + checks)
        poly = _coefficients(f, base, degree)
        if poly is not None and all(_evaluate(poly, q) == f(q) for q in checks):
            return poly
    return None


def _fit_division(f: Callable[[tuple[int, ...]], int], n_vars: int,
                  prepare: Callable[[list[tuple[int, ...]]], None]
                  ) -> tuple[Polynomial, int] | None:
    """``(numerator, c)`` such that ``f`` is ``numerator // c``, the numerator of degree
    one (a strided window's output size: ``(h - 1) // 2 + 1`` is ``(h + 1) // 2``); None
    when there is none with ``c`` up to :data:`_MAX_DIVISOR`.

    The numerator's slopes are exact over steps of :data:`_PERIOD` (a multiple of
    ``c``), its constant is the one that gives ``f`` at ``c`` consecutive points along
    each variable, and the whole is checked at two more points.
    """
    base, checks = _base(n_vars)
    far = [tuple(x + _PERIOD * (n == i) for n, x in enumerate(base)) for i in range(n_vars)]
    prepare([base, *far])
    slopes = [Fraction(f(q) - f(base), _PERIOD) for q in far]
    c = math.lcm(*(s.denominator for s in slopes))
    if not 1 < c <= _MAX_DIVISOR:
        return None
    numerator = {(i,): int(s * c) for i, s in enumerate(slopes) if s}
    near = [tuple(x + t * (n == i) for n, x in enumerate(base))
            for i in range(n_vars) for t in range(1, c)]
    prepare(near + checks)
    low = c * f(base) - _evaluate(numerator, base)
    fits = [b for b in range(low, low + c)
            if all(f(q) == (_evaluate(numerator, q) + b) // c for q in [base, *near, *checks])]
    if len(fits) != 1:
        return None
    return {**numerator, (): fits[0]}, c


def _base(n_vars: int) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """The point fits start from, and the points they are checked at: one near it, one
    far (a floor division by 6 is constant over the near points)."""
    base = tuple(_FIRST_PROBE + 2 * i for i in range(n_vars))
    return base, [tuple(b + 3 + i for i, b in enumerate(base)),
                  tuple(b + 1000 + 97 * i for i, b in enumerate(base))]


def _steps(n_vars: int, degree: int) -> list[tuple[int, ...]]:
    """The steps from the base point that :func:`_coefficients` reads ``f`` at: none, one
    along each variable, and for degree two two along each and one along each pair."""
    steps = [()] + [(i,) for i in range(n_vars)]
    if degree == 2:
        steps += [(i, i) for i in range(n_vars)]
        steps += list(itertools.combinations(range(n_vars), 2))
    return steps


def _step(p: tuple[int, ...], steps: tuple[int, ...]) -> tuple[int, ...]:
    """``p`` moved one unit along each variable of ``steps`` (a variable listed twice, two)."""
    return tuple(x + steps.count(n) for n, x in enumerate(p))


def _anchors(specs: Sequence[tuple], inputs: Sequence[tuple],
             variables: Sequence[str]) -> dict[str, dict[tuple[str, ...], Fraction]]:
    """Size variables as affine functions of input symbols: a variable an input size is
    stays itself; one an input symbol ``s`` stands for as ``a*v + c`` is ``(s - c) / a``.

    Returns:
      variable -> {monomial of symbol names: coefficient} (an affine polynomial).
    """
    anchors: dict[str, dict[tuple[str, ...], Fraction]] = {}
    for spec, shape in zip(specs, inputs):
        for d, symbol in zip(spec, shape):
            if isinstance(d, int):
                continue
            poly = _fit(lambda p: int(d._evaluate(dict(zip(variables, p)))), len(variables))
            linear = [m for m in (poly or {}) if m]
            if len(linear) != 1 or len(linear[0]) != 1:
                continue
            v, a = variables[linear[0][0]], poly[linear[0]]
            if str(symbol) == v or v not in anchors:
                anchors[v] = {(str(symbol),): Fraction(1, a), (): Fraction(-poly.get((), 0), a)}
    return anchors


def _in_symbols(poly: Polynomial, variables: Sequence[str],
                anchors: dict[str, dict[tuple[str, ...], Fraction]],
                symbols: dict[str, Any]) -> Any:
    """``poly`` of the size variables as a polynomial of the input symbols (``256*d`` is
    ``2*_arg0_1`` for ``_arg0_1 = 128*d``); None when its coefficients are not integers
    or a variable has no anchor."""
    total: dict[tuple[str, ...], Fraction] = {}
    for monomial, c in poly.items():
        if any(variables[i] not in anchors for i in monomial):
            return None
        term = {(): Fraction(c)}
        for i in monomial:
            term = {tuple(sorted(m + n)): x * y for m, x in term.items()
                    for n, y in anchors[variables[i]].items()}
        for m, x in term.items():
            total[m] = total.get(m, 0) + x
    if any(x.denominator != 1 for x in total.values()):
        return None
    return _evaluate({m: int(x) for m, x in total.items() if x}, symbols)


def _coefficients(f: Callable[[tuple[int, ...]], int], p: tuple[int, ...],
                  degree: int) -> Polynomial | None:
    """The integer polynomial of ``degree`` (1 or 2) through ``f``'s values at ``p`` and
    its neighbours one or two steps away, by finite differences; None when its
    coefficients are not integers."""
    def at(*steps: int) -> int:
        return f(_step(p, steps))

    n, f0 = len(p), at()
    quad: dict[tuple[int, ...], Fraction] = {}
    if degree == 2:
        for i in range(n):
            quad[(i, i)] = Fraction(at(i, i) - 2 * at(i) + f0, 2)
        for i, j in itertools.combinations(range(n), 2):
            quad[(i, j)] = Fraction(at(i, j) - at(i) - at(j) + f0)
    linear = {(i,): at(i) - f0 - quad.get((i, i), 0) * (2 * p[i] + 1)
              - sum(quad.get((min(i, j), max(i, j)), 0) * p[j] for j in range(n) if j != i)
              for i in range(n)}
    terms = {**linear, **quad}
    terms[()] = f0 - _evaluate(terms, p)
    if any(Fraction(c).denominator != 1 for c in terms.values()):
        return None
    return {m: int(c) for m, c in terms.items() if c}


def _evaluate(poly: dict, values: Sequence[Any] | dict[str, Any]) -> Any:
    """The polynomial at ``values`` (ints, or symbolic sizes), by monomial index or name."""
    total = 0
    for monomial, c in poly.items():
        total = total + c * math.prod((values[v] for v in monomial), start=1)
    return total


def _arg_shapes(arg_types: Sequence[tuple], dynamic: Sequence[tuple]) -> list[tuple]:
    """The shapes of all arguments: ``dynamic`` in turn for those with unknown sizes."""
    it = iter(dynamic)
    return [next(it) if None in t else t for t in arg_types]


def _refined_results(module: bytes, points: Sequence[Sequence[tuple[int, ...]]]
                     ) -> list[list[tuple]]:
    """The result shapes of ``main`` once refined for arguments of each list of shapes
    in ``points``.

    ``main`` is renamed and called, once per point, from a new ``main`` taking the static
    shapes (through a ``convert`` to its own types, as ``jax.export`` calls a module);
    one refinement specializes it for each call.
    """
    with mlir.make_ir_context(), ir.Location.unknown():
        parsed = _deserialize(module)
        table = ir.SymbolTable(parsed.operation)
        main = table["main"]
        table.set_symbol_name(main, "_jaxhub_probed_main")
        main.attributes["sym_visibility"] = ir.StringAttr.get("private")
        types, results = list(main.type.inputs), list(main.type.results)
        n_fixed = len(types) - len(points[0])  # the platform index
        static = [types[:n_fixed] + [
            ir.RankedTensorType.get(shape, ir.RankedTensorType(t).element_type)
            for shape, t in zip(shapes, types[n_fixed:])] for shapes in points]
        with ir.InsertionPoint(parsed.body):
            probe = func_dialect.FuncOp("main", ([t for s in static for t in s],
                                                 results * len(points)))
        block = probe.add_entry_block()
        with ir.InsertionPoint(block):
            outs, args = [], iter(block.arguments)
            for _ in points:
                call_args = [a if a.type == t else hlo.convert(t, a)
                             for t, a in zip(types, args)]  # types first: args stays put
                outs += func_dialect.CallOp(results, ir.FlatSymbolRefAttr.get(
                    "_jaxhub_probed_main"), call_args).results
            func_dialect.ReturnOp(outs)
        refined = mlir.refine_polymorphic_shapes(parsed)
    with refined.context:
        shapes = [_shape(t) for t in ir.SymbolTable(refined.operation)["main"].type.results]
    return [shapes[k:k + len(results)] for k in range(0, len(shapes), len(results))]
