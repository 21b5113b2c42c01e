"""``jaxhub catalog build REPO_DIR``: the static catalog site of a repository."""

from __future__ import annotations

import argparse
import pathlib


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "catalog", help="build the browsable catalog of a module repository",
        description="Work on the static catalog of a module repository.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    build = actions.add_parser(
        "build", help="write the catalog's pages into the repository",
        description="Write index.html, one page per module version and the catalog's "
                    "scripts into REPO_DIR. The pages work from file:// and over HTTP.")
    build.add_argument("repo_dir", type=pathlib.Path, help="the repository root")
    build.add_argument("--base-url", help="URL the repository is served at, for the usage "
                                          "snippets (default: each page's own address)")
    build.add_argument("--title", default="jaxhub modules", help="the index page's heading")
    build.set_defaults(func=_build)
    again = actions.add_parser(
        "reindex", help="rebuild index.json and the latest aliases from the version records",
        description="Rebuild index.json and every latest.json from the <N>.json records, "
                    "after removing a version by hand.")
    again.add_argument("repo_dir", type=pathlib.Path, help="the repository root")
    again.add_argument("--upgrade", action="store_true",
                       help="first publish, for each module whose newest version the "
                            "running JAX cannot read or that has no durable copy of its "
                            "functions, an upgraded next version (jaxhub upgrade)")
    again.add_argument("--name", action="append", dest="names", metavar="ORG/MODEL",
                       help="with --upgrade: only this module (repeatable)")
    again.set_defaults(func=_reindex)


def _build(args: argparse.Namespace) -> int:
    from jaxhub._src.catalog.site import build_catalog
    print(build_catalog(args.repo_dir, base_url=args.base_url, title=args.title))
    return 0


def _reindex(args: argparse.Namespace) -> int:
    from jaxhub._src.catalog.publish import reindex, upgrade
    if args.upgrade:
        for published in upgrade(args.repo_dir, names=args.names):
            print(f"upgraded {published.name}: published version {published.version}")
    index = reindex(args.repo_dir)
    print(f"{len(index['modules'])} modules, "
          f"{sum(len(m['versions']) for m in index['modules'])} versions")
    return 0
