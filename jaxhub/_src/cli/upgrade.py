"""``jaxhub upgrade SRC DST``: rewrite a module with its functions lowered anew."""

from __future__ import annotations

import argparse
import pathlib


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "upgrade", help="rewrite a module in the current format, functions lowered anew",
        description="Rewrite a module in the current format with every function lowered "
                    "again by the installed JAX, renewing jax.export's compatibility window.")
    parser.add_argument("src", type=pathlib.Path, help="the module directory to upgrade")
    parser.add_argument("dst", type=pathlib.Path, help="a new directory for the result")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxhub._src.upgrade import upgrade
    module = upgrade(args.src, args.dst)
    print(f"upgraded {args.src} -> {module.path}")
    return 0
