"""``jaxhub publish MODULE_DIR REPO_DIR --name org/model --version N``."""

from __future__ import annotations

import argparse
import pathlib
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish", help="add a module version to a repository that a web server can host",
        description="Pack a jaxhub module into REPO_DIR as <org>/<model>/<N>.tar.gz with its "
                    "metadata, and update the repository's index.json and latest alias. "
                    "Serve REPO_DIR over HTTP; jaxhub.load('http://host/org/model/N') then "
                    "finds the module. Refresh the catalog with: jaxhub catalog build.")
    parser.add_argument("module_dir", type=pathlib.Path, help="a jaxhub module directory")
    parser.add_argument("repo_dir", type=pathlib.Path, help="the repository root")
    parser.add_argument("--name", required=True, help="org/model")
    parser.add_argument("--version", required=True, help="a new positive integer version")
    parser.add_argument("--task", help="what the module does (default: its 'task' attachment)")
    parser.add_argument("--license", help="license of the weights (default: its 'license' "
                                          "attachment)")
    parser.add_argument("--description", help="one paragraph for listings (default: the "
                                              "model card's first paragraph)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from jaxhub._src.catalog.publish import publish
    done = publish(args.module_dir, args.repo_dir, args.name, args.version, task=args.task,
                   license=args.license, description=args.description)
    print(f"published {done.handle} as {done.archive} "
          f"({done.record['archive_bytes']:,} bytes)", file=sys.stderr)
    print(f"{done.handle} sha256:{done.sha256}")
    return 0
