"""A table of implementations by TF op name, refusing duplicates.

One mechanism for both interpreters of TF ops: the host stage's numpy ops
(:mod:`jaxhub.host.ops`) and the TF graph converter's JAX ops, which keep their own
table of this kind (jaxhub never imports the converters).

Examples:
  >>> table = Registry("example op")
  >>> @table.register("Double")
  ... def _double(node, x):
  ...     return 2 * x
  >>> table.lookup("Double")(None, 21)
  42
  >>> table.names()
  ['Double']
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """Entries (op implementations, or records holding them) by op name.

    Attributes:
      kind: what the entries are, for error messages (``"host op"``, ``"TF op"``).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, entry: Entry) -> None:
        """Adds ``entry`` under ``name``.

        Raises:
          ValueError: ``name`` has an entry already.
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered already "
                             f"(by {_owner(self._entries[name])})")
        self._entries[name] = entry

    def register(self, *names: str) -> Callable[[Entry], Entry]:
        """A decorator adding the decorated object under each of ``names``."""

        def decorate(entry: Entry) -> Entry:
            for name in names:
                self.add(name, entry)
            return entry

        return decorate

    def lookup(self, name: str) -> Entry | None:
        """The entry of ``name``, or None."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def copy(self) -> "Registry[Entry]":
        """An independent table with the same entries (to extend without side effects)."""
        other = Registry(self.kind)
        other._entries = dict(self._entries)
        return other

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _owner(entry: object) -> str:
    """The module that registered ``entry`` (its implementation's, for a record)."""
    impl = getattr(entry, "impl", entry)
    return getattr(impl, "__module__", None) or type(entry).__name__
