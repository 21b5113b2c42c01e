"""``jaxhub cache ls|rm|prune|verify``: look after the module cache."""

from __future__ import annotations

import argparse
import datetime
import pathlib
import re

from jaxhub._src.hub.cache import Cache, Listing
from jaxhub._src.hub.config import Settings
from jaxhub._src.hub.urls import canonical_url
from jaxhub._src.units import format_bytes


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", type=pathlib.Path, default=None,
                        help="cache root (default: JAXHUB_CACHE_DIR, TFHUB_CACHE_DIR, "
                             "~/.cache/jaxhub)")
    parser = subparsers.add_parser(
        "cache", help="list, remove, prune and verify cached modules",
        description="List, remove, prune and verify cached modules.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    ls = actions.add_parser("ls", parents=[common], help="list entries with sizes and dates")
    ls.set_defaults(func=_ls)
    rm = actions.add_parser("rm", parents=[common], help="remove the entry of a handle")
    rm.add_argument("handle", help="handle (URL or path), entry key, or the source a "
                                   "converted module was made from, as `ls` shows it; "
                                   "removes every entry made from it")
    rm.set_defaults(func=_rm)
    prune = actions.add_parser(
        "prune", parents=[common],
        help="remove staging directories and locks of dead processes, and damaged entries")
    prune.set_defaults(func=_prune)
    verify = actions.add_parser("verify", parents=[common],
                                help="hash every file of every entry against its manifest")
    verify.add_argument("handles", nargs="*", help="only these handles or keys")
    verify.add_argument("--remove-broken", action="store_true",
                        help="delete entries that fail, so the next load fetches them again")
    verify.set_defaults(func=_verify)


def _cache(args: argparse.Namespace) -> Cache:
    settings = Settings.from_env(cache_dir=args.cache_dir)
    return Cache(settings.cache_dir, lock_timeout=settings.lock_timeout)


def _ls(args: argparse.Namespace) -> int:
    cache = _cache(args)
    items = cache.listing()
    if not items:
        print(f"no entries in {cache.root}")
        return 0
    print(f"{'SIZE':>10}  {'CREATED':16}  {'KIND':7}  {'STATUS':7}  HANDLE")
    for item in items:
        size = format_bytes(item.manifest.size) if item.manifest else "-"
        created = (datetime.datetime.fromtimestamp(item.manifest.created).strftime(
            "%Y-%m-%d %H:%M") if item.manifest else "-")
        kind = item.manifest.kind if item.manifest else "-"
        status = "damaged" if item.problems else "ok"
        print(f"{size:>10}  {created:16}  {kind:7}  {status:7}  {_name(item)}")
    total = sum(i.manifest.size for i in items if i.manifest)
    print(f"{len(items)} entries, {format_bytes(total)} in {cache.root}")
    return 0


def _rm(args: argparse.Namespace) -> int:
    cache = _cache(args)
    matches = _select(cache.listing(), [args.handle])
    if not matches:
        raise ValueError(f"{args.handle!r} is not in the cache at {cache.root}")
    for item in matches:
        cache.remove(item.key)
        print(f"removed {_name(item)}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    removed = _cache(args).prune()
    for path in removed:
        print(f"removed {path}")
    print(f"pruned {len(removed)} items")
    return 0


def _verify(args: argparse.Namespace) -> int:
    cache = _cache(args)
    items = _select(cache.listing(), args.handles) if args.handles else cache.listing()
    if args.handles and not items:
        raise ValueError(f"none of {args.handles} is in the cache at {cache.root}")
    broken = 0
    for item in items:
        problems = cache.verify(item.key)
        print(f"{'BROKEN' if problems else 'ok':6}  {_name(item)}")
        for problem in problems:
            print(f"        {problem}")
        if problems:
            broken += 1
            if args.remove_broken:
                cache.remove(item.key)
                print("        removed; the next load fetches it again")
    print(f"{len(items) - broken} ok, {broken} broken")
    return 1 if broken else 0


def _select(items: list[Listing], handles: list[str]) -> list[Listing]:
    # An argument matches an entry's key, its handle, or what a derived entry was made
    # from; a path also matches in its absolute form, a URL without its credentials.
    wanted = set()
    for handle in handles:
        wanted |= {handle, canonical_url(handle)}
        if "://" not in handle:
            wanted.add(str(pathlib.Path(handle).expanduser().absolute()))
    return [i for i in items if i.key in wanted or (i.manifest and (
        i.manifest.source in wanted or i.manifest.origin in wanted))]


def _name(item: Listing) -> str:
    """The entry as a user knows it: its handle, or what a derived entry was made from."""
    if item.manifest is None:
        return f"{item.key} (incomplete)"
    if item.manifest.origin is None:
        return item.manifest.source
    # "converted:TF2 SavedModel:jaxhub-0.2.0:<sha256>" -> "converted:TF2 SavedModel:jaxhub-0.2.0"
    how = re.sub(r":[0-9a-f]{32,}$", "", item.manifest.source)
    return f"{item.manifest.origin} ({how})"
