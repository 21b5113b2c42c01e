"""A table of op implementations by TF op name, with the attributes each one handles.

One mechanism for both interpreters of TF ops: the host stage's numpy ops
(:mod:`jaxhub._src.host.ops`) and the TF graph converter's JAX ops, which keep their own table
of this kind (jaxhub never imports the converters). A name registers once; a second
registration is refused.

Each registration declares the node attributes its implementation reads (``attrs``):
names whose every value it handles, or a mapping from name to the tuple of values it
handles (or :data:`ANY`). :meth:`Registry.attr_problems` then finds, before anything runs,
a node's attributes that the implementation would silently ignore: undeclared ones (other
than TF-internal ones starting with ``_`` and those the caller knows to be implicit, such
as dtype attributes), and declared ones holding a value outside those handled.

Examples:
  >>> table = Registry("example op")
  >>> @table.register("Scale", attrs={"factor": ANY, "mode": ("plain",)})
  ... def _scale(node, x):
  ...     return node.attr("factor") * x
  >>> table.lookup("Scale").__name__
  '_scale'
  >>> table.names()
  ['Scale']
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Container, Iterable, Iterator, Mapping, Protocol

#: In an ``attrs`` mapping: every value of the attribute is handled.
ANY = None

Impl = Callable[..., Any]
#: What a registration may pass as ``attrs``.
AttrSpec = Iterable[str] | Mapping[str, Any]


class AttrNode(Protocol):
    """What :meth:`Registry.attr_problems` reads of a node."""

    op: str

    def attr(self, key: str) -> Any:
        """The attribute ``key`` (set, or at the op's default), decoded."""

    def has_attr(self, key: str) -> bool:
        """True when the node has ``key`` (set, or at the op's default)."""


@dataclasses.dataclass(frozen=True)
class Op:
    """A registered op: its implementation and the attributes it declares.

    Attributes:
      impl: ``impl(node, *inputs)``.
      attrs: attribute name -> the values handled (a tuple), or :data:`ANY`.
    """

    impl: Impl
    attrs: Mapping[str, tuple | None]


def declare(attrs: AttrSpec) -> dict[str, tuple | None]:
    """``attrs`` (names, or a mapping to handled values) as name -> tuple or :data:`ANY`."""
    if isinstance(attrs, str):
        attrs = (attrs,)
    declared = dict(attrs) if isinstance(attrs, Mapping) else dict.fromkeys(attrs, ANY)
    return {name: values if values is ANY else tuple(values)
            for name, values in declared.items()}


class Registry:
    """Op implementations by TF op name.

    Attributes:
      kind: what the entries are, for error messages (``"host op"``, ``"TF op"``).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._ops: dict[str, Op] = {}

    def register(self, *names: str, attrs: AttrSpec = ()) -> Callable[[Impl], Impl]:
        """A decorator registering ``impl(node, *inputs)`` under each of ``names``.

        Args:
          names: TF op names.
          attrs: the node attributes the implementation reads (see the module docstring).

        Raises:
          ValueError: one of ``names`` is registered already.
        """
        declared = declare(attrs)

        def decorate(impl: Impl) -> Impl:
            for name in names:
                if name in self._ops:
                    raise ValueError(f"{self.kind} {name!r} is registered already "
                                     f"(by {self._ops[name].impl.__module__})")
            op = Op(impl, declared)
            self._ops.update(dict.fromkeys(names, op))
            return impl

        return decorate

    def lookup(self, name: str) -> Impl | None:
        """The implementation of ``name``, or None."""
        op = self._ops.get(name)
        return op.impl if op is not None else None

    def declared_attrs(self, name: str) -> Mapping[str, tuple | None]:
        """The attributes op ``name`` declares: name -> handled values or :data:`ANY`.

        Raises:
          KeyError: ``name`` is not registered.
        """
        if name not in self._ops:
            raise KeyError(f"{self.kind} {name!r} is not registered")
        return self._ops[name].attrs

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._ops)

    def copy(self) -> "Registry":
        """An independent table with the same entries (to extend without side effects)."""
        other = Registry(self.kind)
        other._ops = dict(self._ops)
        return other

    def attr_problems(self, node: AttrNode, present: Iterable[str],
                      implicit: Container[str] = ()) -> list[str]:
        """What is wrong with the attributes of ``node``, whose op is registered.

        Args:
          node: the node; its attribute values are read through it.
          present: the names of the attributes the node carries.
          implicit: names accepted without a declaration (the op's dtype attributes).

        Returns:
          One line per attribute the implementation would ignore: undeclared ones, and
          declared ones whose value (set, or the op's default) is not among those handled.
        """
        declared = self.declared_attrs(node.op)
        problems = [f"attribute {name!r} is unknown to the implementation"
                    for name in sorted(present) if not name.startswith("_")
                    and name not in declared and name not in implicit]
        for name, handled in sorted(declared.items()):
            if handled is not ANY and node.has_attr(name):
                value = node.attr(name)
                if not any(type(value) is type(h) and value == h for h in handled):
                    problems.append(f"attribute {name!r} = {value!r} is not supported "
                                    f"(supported: {', '.join(map(repr, handled))})")
        return problems

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __iter__(self) -> Iterator[str]:
        return iter(self._ops)

    def __len__(self) -> int:
        return len(self._ops)
