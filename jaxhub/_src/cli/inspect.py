"""``jaxhub inspect HANDLE``: what a module offers, without running it."""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import TYPE_CHECKING

from jaxhub._src.cli import resolve_handle
from jaxhub._src.units import format_bytes

if TYPE_CHECKING:
    from jaxhub._src.storage.manifest import FunctionSpec, Manifest


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect", help="show a module's signatures, variants, params and attachments",
        description="Show a module's signatures, variants, params and attachments. HANDLE "
                    "is a module directory, a .tar.gz, a file:// or http(s) URL, or a "
                    "repository handle (<repo>/<org>/<model>/<N>); URLs are fetched into "
                    "the cache. A TF2 SavedModel or TF1 Hub module is converted first "
                    "(cached), as jaxhub.load does.")
    parser.add_argument("handle", help="a module directory, archive, URL or handle")
    parser.add_argument("--json", action="store_true", help="print the raw manifest")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxhub._src import formats
    from jaxhub._src.storage.manifest import MANIFEST_FILE, Manifest

    path = resolve_handle(args.handle)
    fmt = formats.detect(path)
    title = str(path) if args.handle == str(path) else f"{args.handle} ({path})"
    if fmt.convert is not None:
        path = formats.converted(fmt, path).path
        title = f"{args.handle} ({fmt.name}, converted: {path})"
    text = (path / MANIFEST_FILE).read_text()
    if args.json:
        print(json.dumps(json.loads(text), indent=2))
        return 0
    print(describe(Manifest.from_json(text), title))
    return 0


def describe(manifest: Manifest, title: str | pathlib.Path) -> str:
    """A human-readable summary of a module; ``title`` names it on the first line."""
    n_params = sum(p.size for p in manifest.params)
    n_trainable = sum(p.size for p in manifest.params if p.trainable)
    n_bytes = _params_bytes(manifest)
    lines = [f"module: {title}",
             f"format version: {manifest.format_version} (written by "
             + ", ".join(f"{k} {v}" for k, v in manifest.written_by.items()) + ")",
             f"params: {n_params:,} ({n_trainable:,} trainable) in {len(manifest.params)} "
             f"arrays, {format_bytes(n_bytes)}"]
    for tags in sorted({f.tags for f in manifest.functions}, key=sorted):
        lines.append(f"variant {{{', '.join(sorted(tags))}}}:")
        for fn in manifest.functions:
            if fn.tags == tags:
                lines.extend(_signature_lines(fn))
    lines.append(f"regularizer: {'yes' if manifest.regularizer else 'no'}")
    if not manifest.gradients:
        lines.append("gradients: not stored (a conversion in the cache: jaxhub.load of its "
                     "source exports them on first use)")
    if not manifest.exported_vjps:
        lines.append("exported VJPs: not stored (a conversion in the cache, differentiated "
                     "through its split VJPs; jaxhub convert writes them, for readers that "
                     "predate split VJPs)")
    # A converter's notes: what the source lacked for a signature or variant.
    lines.extend(f"note: {note}" for note in manifest.origin.get("notes", []))
    for key, value in manifest.attachments.items():
        lines.append(f"attachment {key}: {json.dumps(value)}")
    for name, entry in manifest.assets.items():
        lines.append(f"asset {name}: {entry.get('size')} bytes, sha256 {entry.get('sha256')}")
    return "\n".join(lines)


def _signature_lines(fn: FunctionSpec) -> list[str]:
    lines = [f"  signature {fn.signature_name!r}" + (" (takes rng)" if fn.takes_rng else "")]
    if fn.forward_only is not None:
        lines.append(f"    forward-only: no gradient ({fn.forward_only})")
    lines += [f"    input  {k}: {s}" for k, s in fn.signature.inputs.items()]
    lines += [f"    output {k}: {s}" for k, s in fn.signature.outputs.items()]
    if fn.state:
        lines.append("    returns state: " + ", ".join("/".join(p) for p in fn.state))
    return lines


def _params_bytes(manifest: Manifest) -> int:
    import numpy as np
    return sum(p.size * np.dtype(p.dtype).itemsize for p in manifest.params)
