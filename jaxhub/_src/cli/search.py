"""``jaxhub search QUERY --repo URL``: find modules in a repository's index."""

from __future__ import annotations

import argparse
import dataclasses
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search", help="find modules in a repository",
        description="List the modules of a repository whose name, task, license, "
                    "description or signature names contain every word of QUERY.")
    parser.add_argument("query", nargs="?", default="", help="words to look for "
                                                            "(empty: every module)")
    parser.add_argument("--repo", required=True,
                        help="repository root: an http(s) or file:// URL, or a directory")
    parser.add_argument("--task", help="only modules with this task")
    parser.add_argument("--license", help="only modules with this license")
    parser.add_argument("--signature", help="only modules with a signature of this name")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from jaxhub._src.catalog.search import search
    hits = search(args.query, args.repo, task=args.task, license=args.license,
                  signature=args.signature)
    if args.json:
        print(json.dumps([dataclasses.asdict(h) for h in hits], indent=2))
        return 0
    for hit in hits:
        print(f"{hit.name} {hit.version}  [{hit.task}, {hit.license}, "
              f"{hit.params:,} params, input {hit.input_size or '-'}]")
        if hit.description:
            print(f"    {hit.description}")
        print(f"    {hit.handle}")
    if not hits:
        print(f"no module matches {args.query!r}")
    return 0
