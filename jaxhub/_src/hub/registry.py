"""Resolvers turn handles into local directories; the registry picks one per handle.

Resolvers are asked newest first, so one registered by a user takes precedence over the
built-in ones; the local-path resolver is registered first and so is the catch-all.
``is_supported`` must look only at the handle's syntax: no I/O, no environment.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Protocol, runtime_checkable

from jaxhub._src.hub.config import Settings
from jaxhub._src.hub.errors import HandleError
from jaxhub._src.hub.urls import canonical_url


@runtime_checkable
class Resolver(Protocol):
    """Turns the handles it supports into local module directories.

    Examples:
      A resolver for a custom scheme that maps names onto a web server::

        class MyHubResolver:
          def is_supported(self, handle):
            return handle.startswith("myhub://")

          def resolve(self, handle, request):
            name = handle.removeprefix("myhub://")
            return request.resolve(f"https://models.example.com/{name}.tar.gz")

        jaxhub.hub.register_resolver(MyHubResolver())
    """

    def is_supported(self, handle: str) -> bool:
        """Whether this resolver handles ``handle``, judged by syntax alone."""

    def resolve(self, handle: str, request: Request) -> pathlib.Path:
        """Returns the local directory holding the module named by ``handle``."""


@dataclasses.dataclass(frozen=True)
class Request:
    """Everything a resolver needs besides the handle.

    Attributes:
      settings: Cache location, offline mode, download behaviour.
      sha256: Expected sha256 (lowercase hex) of the module's archive, if pinned.
      registry: The registry that chose the resolver, for resolvers that rewrite a
        handle into another one.
    """

    settings: Settings
    sha256: str | None = None
    registry: Registry | None = None

    def resolve(self, handle: str) -> pathlib.Path:
        """Resolves another handle with the same settings (for rewriting resolvers)."""
        if self.registry is None:
            raise HandleError(f"cannot resolve {canonical_url(handle)!r}: request has no registry")
        return self.registry.resolve(handle, self)


class Registry:
    """An ordered set of resolvers; the most recently added is asked first.

    Args:
      resolvers: Initial resolvers, oldest (lowest precedence) first.
    """

    def __init__(self, resolvers: tuple[Resolver, ...] = ()):
        self._resolvers: list[Resolver] = []
        for resolver in resolvers:
            self.add(resolver)

    def add(self, resolver: Resolver) -> None:
        """Adds ``resolver`` with precedence over every resolver added before it.

        Raises:
          TypeError: ``resolver`` lacks ``is_supported`` or ``resolve``.
        """
        if not isinstance(resolver, Resolver):
            raise TypeError(f"{resolver!r} needs is_supported(handle) and "
                            "resolve(handle, request) methods")
        self._resolvers.append(resolver)

    def resolve(self, handle: str, request: Request) -> pathlib.Path:
        """Resolves ``handle`` with the newest resolver that supports it.

        Raises:
          HandleError: No resolver supports the handle, or the one that does cannot find
            it; the message names every resolver asked.
        """
        declined = []
        for resolver in reversed(self._resolvers):
            if not _supports(resolver, handle):
                declined.append(_describe(resolver))
                continue
            try:
                return resolver.resolve(handle, request)
            except HandleError as e:
                if not declined:
                    raise
                raise HandleError(f"{e}\nResolvers that did not support it, newest first: "
                                  f"{'; '.join(declined)}.") from e
        raise HandleError(f"No resolver supports {canonical_url(handle)!r}. Asked, newest first: "
                          f"{'; '.join(declined)}. Add one with jaxhub.hub.register_resolver.")


def _supports(resolver: Resolver, handle: str) -> bool:
    # A syntax check that cannot parse the handle (urllib's "Invalid IPv6 URL") means
    # the handle is malformed; say so instead of letting a bare ValueError through.
    try:
        return resolver.is_supported(handle)
    except ValueError as e:
        raise HandleError(f"{canonical_url(handle)!r} is not a valid handle: {e} "
                          f"(found by {_describe(resolver)})") from e


def _describe(resolver: Resolver) -> str:
    doc = (type(resolver).__doc__ or "").strip().splitlines()
    name = type(resolver).__name__
    return f"{name} ({doc[0].rstrip('.')})" if doc else name
