"""``jaxhub pack DIR OUT.tar.gz``: archive a module directory and print its sha256."""

from __future__ import annotations

import argparse
import pathlib
import sys

from jaxhub._src.hub.archive import pack


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pack", help="pack a module directory into a tar.gz and print its sha256",
        description="Pack a module directory's contents into a reproducible tar.gz and "
                    "print its sha256, to publish with it (jaxhub.load(url, sha256=...)).")
    parser.add_argument("directory", type=pathlib.Path, help="module directory")
    parser.add_argument("output", type=pathlib.Path, help="archive to write (.tar.gz)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    digest = pack(args.directory, args.output)
    size = args.output.stat().st_size
    print(f"packed {args.directory} into {args.output} ({size:,} bytes)", file=sys.stderr)
    print(digest)
    return 0
