"""Which unknown sizes of a function's inputs the function ties together.

An unknown size (``None``) in an input spec is exported as a symbolic dimension. Inputs
whose sizes the function ties (it adds them, concatenates them along another axis,
multiplies them as matrices) must share a symbol, or ``jax.export`` cannot prove the sizes
equal and tracing fails; inputs whose sizes it leaves unrelated (a ragged tensor's values
and row splits, a sparse tensor's entries beside a dense batch, queries and keys of
different lengths) must not, or calls with different sizes are refused.

:func:`trace_tied` finds the groups by tracing: every unknown size starts with a symbol of
its own, and when a trace fails on a comparison that JAX could not decide (``a == b`` for
two different symbols), the two sizes it compared are tied and the function traced again.
The comparisons are seen through JAX's ``__eq__`` of symbolic dimensions, wrapped while a
trace runs (where JAX's internals are not as expected, all leading sizes share one symbol
from the start, as they did before the groups were found).

Symbols are named as a reader expects: the group with the most inputs' leading sizes is
``batch``; another group with a leading size is ``n_<input>`` after its first input; a
group of later axes only is ``d1``, ``d2``, ... A named size (a string in the spec) stays
as it is; an unknown size tied to it takes its name.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import re
import threading
from typing import Any, Callable, Iterator, Mapping, TypeVar

from jaxhub._src.specs import TensorSpec

try:
    from jax._src.export import shape_poly
    SUPPORTED = callable(getattr(shape_poly._DimExpr, "__eq__", None)) and all(
        hasattr(shape_poly._DimExpr, a) for a in ("_get_vars", "_evaluate"))
except ImportError:  # internals moved
    shape_poly, SUPPORTED = None, False

T = TypeVar("T")
Slot = tuple[str, int]  # (input name, axis) of an unknown size

#: How many of the latest undecided comparisons a failed trace looks back through.
_LOOK_BACK = 256


class UnknownSizes:
    """The unknown sizes of input specs, in groups that share a symbol.

    Args:
      specs: input name -> spec; ``None`` marks an unknown size.
      tied: groups to start from (those of an earlier trace of the same signature), as
        :attr:`groups` returned them; by default each size is a group of its own.

    Examples:
      >>> sizes = UnknownSizes({"x": TensorSpec([None, 3]), "y": TensorSpec([None, 3])})
      >>> {k: s.shape for k, s in sizes.named().items()}
      {'x': ('batch', 3), 'y': ('n_y', 3)}
      >>> sizes.tie("batch", "n_y")
      True
      >>> {k: s.shape for k, s in sizes.named().items()}
      {'x': ('batch', 3), 'y': ('batch', 3)}
    """

    def __init__(self, specs: Mapping[str, TensorSpec],
                 tied: tuple[tuple[Slot | str, ...], ...] = ()):
        self._specs = dict(sorted(specs.items()))
        self._slots = [(name, axis) for name, spec in self._specs.items()
                       for axis, dim in enumerate(spec.shape) if dim is None]
        self._named = {d for s in self._specs.values() for d in s.shape if isinstance(d, str)}
        self._parent: dict[Slot | str, Slot | str] = {s: s for s in self._slots}
        self._parent.update((n, n) for n in self._named)
        for group in tied:
            for member in group[1:]:
                if member in self._parent and group[0] in self._parent:
                    self._union(group[0], member)
        self._symbols: dict[Slot | str, str] = {}
        self._rename()

    @property
    def groups(self) -> tuple[tuple[Slot | str, ...], ...]:
        """The groups of more than one member (slots and named sizes), to start from."""
        members = collections.defaultdict(list)
        for key in self._parent:
            members[self._find(key)].append(key)
        return tuple(tuple(sorted(m, key=str)) for m in members.values() if len(m) > 1)

    def named(self) -> dict[str, TensorSpec]:
        """The specs with each unknown size replaced by its group's symbol."""
        return {name: TensorSpec([self._symbols[(name, axis)] if dim is None else dim
                                  for axis, dim in enumerate(spec.shape)], spec.dtype)
                for name, spec in self._specs.items()}

    def symbols(self) -> set[str]:
        """The symbols of :meth:`named`, named sizes included."""
        return set(self._symbols.values()) | self._named

    def tie(self, a: str, b: str) -> bool:
        """Puts the sizes named by symbols ``a`` and ``b`` into one group; False when they
        cannot be (the same group already, or two named sizes)."""
        keys = {symbol: key for key, symbol in self._symbols.items()}
        keys.update((n, n) for n in self._named)
        if a not in keys or b not in keys:
            return False
        root_a, root_b = self._find(keys[a]), self._find(keys[b])
        if root_a == root_b or (isinstance(root_a, str) and isinstance(root_b, str)):
            return False
        self._union(root_a, root_b)
        self._rename()
        return True

    def tie_leading(self) -> bool:
        """Puts every leading unknown size into one group (with the named ``batch``, if
        an input has it); False when they already were."""
        leading = [s for s in self._slots if s[1] == 0]
        if "batch" in self._named:
            leading.insert(0, "batch")
        roots = {self._find(s) for s in leading}
        if len(roots) < 2:
            return False
        for slot in leading[1:]:
            if isinstance(self._find(slot), str) and isinstance(self._find(leading[0]), str):
                continue  # two named sizes stay apart
            self._union(leading[0], slot)
        self._rename()
        return True

    def _find(self, key: Slot | str) -> Slot | str:
        while self._parent[key] != key:
            self._parent[key] = self._parent[self._parent[key]]
            key = self._parent[key]
        return key

    def _union(self, a: Slot | str, b: Slot | str) -> None:
        root_a, root_b = self._find(a), self._find(b)
        if root_a == root_b:
            return
        # A named size is the root of its group: the group keeps its name.
        if isinstance(root_b, str):
            root_a, root_b = root_b, root_a
        self._parent[root_b] = root_a

    def _rename(self) -> None:
        members = collections.defaultdict(list)
        for slot in self._slots:
            members[self._find(slot)].append(slot)
        used = set(self._named)

        def fresh(base: str, numbered: bool) -> str:
            names = (f"{base}{i}" for i in itertools.count(1)) if numbered else \
                itertools.chain([base], (f"{base}_{i}" for i in itertools.count(2)))
            name = next(n for n in names if n not in used)
            used.add(name)
            return name

        symbol = {root: root for root in members if isinstance(root, str)}
        leading = sorted((root for root in members if root not in symbol
                          and any(axis == 0 for _, axis in members[root])),
                         key=lambda r: (-sum(a == 0 for _, a in members[r]), members[r][0]))
        for i, root in enumerate(leading):
            first = next(name for name, axis in members[root] if axis == 0)
            base = "batch" if i == 0 and "batch" not in self._named else f"n_{_identifier(first)}"
            symbol[root] = fresh(base, False)
        for slot in self._slots:  # later axes, in input order
            root = self._find(slot)
            if root not in symbol:
                symbol[root] = fresh("d", True)
        self._symbols = {slot: symbol[self._find(slot)] for slot in self._slots}


def _identifier(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def trace_tied(trace: Callable[[dict[str, TensorSpec]], T], specs: Mapping[str, TensorSpec],
               tied: tuple = ()) -> tuple[T, UnknownSizes]:
    """``trace(named specs)`` with unrelated unknown sizes under symbols of their own.

    Each failed trace ties the two sizes of the latest undecided comparison between them
    that, tied, it would have decided, and traces again; a failed trace without one (or
    one that fails as the trace before it did) ties every leading size (each input's
    batch shares one symbol). So a function traces at most once more than it has
    unknown sizes, and once when it ties nothing, or when only one size is unknown; a
    function that cannot be traced at all fails after a few traces, not one per size.

    Args:
      trace: traces the function for the given specs (every size named); raises when
        the function cannot be traced.
      specs: the input specs, ``None`` for unknown sizes.
      tied: groups to start from (:attr:`UnknownSizes.groups` of an earlier trace).

    Returns:
      ``(what trace returned, the sizes)``; ``sizes.named()`` are the specs it traced.

    Raises:
      Whatever the last trace raised, when no more sizes can be tied.
    """
    sizes = UnknownSizes(specs, tied)
    if not SUPPORTED:
        sizes.tie_leading()
    failed = None
    while True:
        watch = len(sizes.symbols()) > 1
        comparisons: collections.deque = collections.deque(maxlen=_LOOK_BACK)
        try:
            with _undecided(comparisons) if watch else contextlib.nullcontext():
                return trace(sizes.named()), sizes
        except Exception as e:
            # The same failure again: the last tie did not cause it (an op the function
            # cannot run at all); only the leading sizes are left to try.
            again, failed = failed == (type(e), str(e)), (type(e), str(e))
            if not ((not again and _tie_compared(sizes, comparisons))
                    or sizes.tie_leading()):
                raise


def _tie_compared(sizes: UnknownSizes, comparisons: collections.deque) -> bool:
    """Ties the two sizes of the latest comparison that tying them decides."""
    symbols = sizes.symbols()
    for x, y in reversed(comparisons):
        try:
            diff = x - y
            names = sorted(diff._get_vars() & symbols)
        except Exception:  # noqa: BLE001  (not two dims JAX can subtract)
            continue
        for a, b in itertools.combinations(names, 2):
            if _zero_when_equal(diff, names, a, b) and sizes.tie(a, b):
                return True
    return False


def _zero_when_equal(diff: Any, names: list[str], a: str, b: str) -> bool:
    """Whether the dimension expression ``diff`` is 0 once symbol ``b`` equals ``a``."""
    scope = diff.scope
    env = {n: shape_poly._DimExpr._from_var(a if n == b else n, scope) for n in names}
    try:
        return diff._evaluate(env) == 0
    except Exception:  # noqa: BLE001  (an expression JAX cannot evaluate so)
        return False


_local = threading.local()
_lock = threading.Lock()
_depth = 0
_jax_eq: Callable[[Any, Any], bool] | None = None


def _recording_eq(self: Any, other: Any) -> bool:
    """JAX's ``__eq__`` of symbolic dimensions; records undecided comparisons (JAX
    answers False for those) of the current thread's trace."""
    equal = _jax_eq(self, other)
    if not equal:
        recorder = getattr(_local, "comparisons", None)
        if recorder is not None and not isinstance(other, int):
            recorder.append((self, other))
    return equal


@contextlib.contextmanager
def _undecided(comparisons: collections.deque) -> Iterator[None]:
    """Records into ``comparisons`` the comparisons of symbolic dimensions made inside
    that JAX answered False (re-entrant, per thread)."""
    global _depth, _jax_eq
    with _lock:
        if _depth == 0:
            _jax_eq = shape_poly._DimExpr.__eq__
            shape_poly._DimExpr.__eq__ = _recording_eq
        _depth += 1
    outer = getattr(_local, "comparisons", None)
    _local.comparisons = comparisons
    try:
        yield
    finally:
        _local.comparisons = outer
        with _lock:
            _depth -= 1
            if _depth == 0:
                shape_poly._DimExpr.__eq__ = _jax_eq
