"""Limits on what a host stage may hold and compute, so that a hostile module cannot
exhaust memory or time.

A host stage is data from the module. Every bound below is checked at load (program size
and depth, asset bytes) or before an op allocates (array elements, string bytes), and a
breach is a :class:`jaxhub.HostStageError` naming the node and the limit's
environment variable.

========================  ==============================  =========================
limit                     environment variable            default
========================  ==============================  =========================
``max_nodes``             ``JAXHUB_HOST_MAX_NODES``       10,000 nodes per stage
``max_depth``             ``JAXHUB_HOST_MAX_DEPTH``       1,000 ops on the longest path
``max_asset_bytes``       ``JAXHUB_HOST_MAX_ASSET_BYTES`` 256 MiB of assets per module
``max_elements``          ``JAXHUB_HOST_MAX_ELEMENTS``    2**27 elements per array
``max_string_bytes``      ``JAXHUB_HOST_MAX_STRING_BYTES`` 1 GiB of text per array
========================  ==============================  =========================
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

_ENV = {
    "max_nodes": "JAXHUB_HOST_MAX_NODES",
    "max_depth": "JAXHUB_HOST_MAX_DEPTH",
    "max_asset_bytes": "JAXHUB_HOST_MAX_ASSET_BYTES",
    "max_elements": "JAXHUB_HOST_MAX_ELEMENTS",
    "max_string_bytes": "JAXHUB_HOST_MAX_STRING_BYTES",
}


class HostStageError(ValueError):
    """A host stage is malformed, names an unknown op, breaks a limit, or an op failed."""


@dataclasses.dataclass(frozen=True)
class HostLimits:
    """Bounds on one module's host stages.

    Attributes:
      max_nodes: ops in one stage's program.
      max_depth: ops on the longest chain of the program (its inputs to an output).
      max_asset_bytes: bytes of asset files the module's host stages read (all of them
        together); they are read into memory at load.
      max_elements: elements of any array an op makes (checked before it allocates).
      max_string_bytes: bytes of text in any string array an op makes.
    """

    max_nodes: int = 10_000
    max_depth: int = 1_000
    max_asset_bytes: int = 256 << 20
    max_elements: int = 1 << 27
    max_string_bytes: int = 1 << 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "HostLimits":
        """The defaults, overridden by the ``JAXHUB_HOST_MAX_*`` environment variables.

        Raises:
          ValueError: a variable is not a positive integer (the message names it).
        """
        env = os.environ if env is None else env
        values = {}
        for field, var in _ENV.items():
            text = env.get(var, "").strip()
            if not text:
                continue
            try:
                values[field] = int(text.replace("_", ""))
            except ValueError:
                values[field] = 0
            if values[field] < 1:
                raise ValueError(f"{var}={text!r}: expected a positive integer (default "
                                 f"{getattr(cls, field)})")
        return cls(**values)

    @staticmethod
    def variable(field: str) -> str:
        """The environment variable that sets limit ``field``."""
        return _ENV[field]


def check_elements(node: Any, count: int, what: str = "elements",
                   field: str = "max_elements") -> None:
    """Refuses an array of ``count`` elements (or bytes) from ``node`` over its limit.

    Ops call it before they allocate: sizes can come from the module's data.

    Raises:
      HostStageError: over the limit; the message names the limit's variable.
    """
    limit = getattr(node.limits, field)
    if count > limit:
        var = HostLimits.variable(field)
        raise HostStageError(
            f"would make {count:,} {what}, over the limit of {limit:,} ({var}); the module "
            f"is damaged or hostile (raise {var} only for a module you trust)")
