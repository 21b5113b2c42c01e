"""The ``jaxhub`` command line: one sub-command per module in this package.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command modules, in the order ``jaxhub --help`` lists them. Importing lazily keeps
# ``jaxhub --help`` fast and keeps TensorFlow out of commands that do not need it.
_COMMANDS = (
    "inspect",
    "convert",
    "upgrade",
    "cache",
    "pack",
    "publish",
    "catalog",
    "search",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxhub",
        description="Load, inspect, convert and publish jaxhub modules.")
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (OSError, ValueError) as e:
        print(f"jaxhub {args.command}: error: {e}", file=sys.stderr)
        return 1


def _version() -> str:
    from jaxhub._src.version import __version__
    return f"jaxhub {__version__}"
