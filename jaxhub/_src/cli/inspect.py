"""``jaxhub inspect PATH``: what a module offers, without running it."""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from jaxhub._src.storage.files import MANIFEST_FILE
from jaxhub._src.storage.manifest import Manifest
from jaxhub._src.specs import Signature
from jaxhub._src.units import format_bytes


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect", help="show a module's signatures, variants, params and attachments",
        description="Show a module's signatures, variants, params and attachments.")
    parser.add_argument("path", type=pathlib.Path, help="a jaxhub module directory")
    parser.add_argument("--json", action="store_true", help="print the raw manifest")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (args.path / MANIFEST_FILE).is_file():
        raise ValueError(f"{args.path} is not a jaxhub module directory (no {MANIFEST_FILE})")
    text = (args.path / MANIFEST_FILE).read_text()
    manifest = Manifest.from_json(text)
    if args.json:
        print(json.dumps(json.loads(text), indent=2))
        return 0
    print(describe(manifest, args.path))
    return 0


def describe(manifest: Manifest, path: pathlib.Path) -> str:
    """A human-readable summary of a module."""
    n_params = sum(p.size for p in manifest.params)
    n_trainable = sum(p.size for p in manifest.params if p.trainable)
    n_bytes = _params_bytes(manifest)
    lines = [f"module: {path}",
             f"format version: {manifest.format_version} (written by "
             + ", ".join(f"{k} {v}" for k, v in manifest.written_by.items()) + ")",
             f"params: {n_params:,} ({n_trainable:,} trainable) in {len(manifest.params)} "
             f"arrays, {format_bytes(n_bytes)}"]
    for tags in sorted({f.tags for f in manifest.functions}, key=sorted):
        lines.append(f"variant {{{', '.join(sorted(tags))}}}:")
        for fn in manifest.functions:
            if fn.tags == tags:
                lines.extend(_signature_lines(fn.signature_name, fn.signature, fn.takes_rng))
    lines.append(f"regularizer: {'yes' if manifest.regularizer else 'no'}")
    for key, value in manifest.attachments.items():
        lines.append(f"attachment {key}: {json.dumps(value)}")
    for name, entry in manifest.assets.items():
        lines.append(f"asset {name}: {entry.get('size')} bytes, sha256 {entry.get('sha256')}")
    return "\n".join(lines)


def _signature_lines(name: str, signature: Signature, takes_rng: bool) -> list[str]:
    lines = [f"  signature {name!r}" + (" (takes rng)" if takes_rng else "")]
    lines += [f"    input  {k}: {s}" for k, s in signature.inputs.items()]
    lines += [f"    output {k}: {s}" for k, s in signature.outputs.items()]
    return lines


def _params_bytes(manifest: Manifest) -> int:
    return sum(p.size * np.dtype(p.dtype).itemsize for p in manifest.params)
