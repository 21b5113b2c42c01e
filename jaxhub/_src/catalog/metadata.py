"""What a published version is, read from its module directory without running anything.

The record is plain JSON, written beside the archive as ``<N>.json`` and gathered into the
repository's ``index.json``: the catalog pages, ``jaxhub search`` and the repository
resolver all read it, never the archive.
"""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import numpy as np

from jaxhub._src.storage.files import MANIFEST_FILE, README_FILE
from jaxhub._src.storage.manifest import FunctionSpec, Manifest, ModuleFormatError
from jaxhub._src.catalog.layout import ARCHIVE_SUFFIX

RECORD_FORMAT = "jaxhub.repository.version"
RECORD_FORMAT_VERSION = 1
UNKNOWN = "unknown"


def read_manifest(module_dir: pathlib.Path) -> Manifest:
    """Parses the manifest of a jaxhub module directory.

    Raises:
      ModuleFormatError: The directory holds no jaxhub module (a TF SavedModel, say).
    """
    path = module_dir / MANIFEST_FILE
    if not path.is_file():
        raise ModuleFormatError(
            f"{module_dir} is not a jaxhub module directory (no {MANIFEST_FILE}); to publish "
            "a TensorFlow module, convert it first: jaxhub.load(dir).export(new_dir)")
    return Manifest.from_json(path.read_text())


def describe(module_dir: pathlib.Path, *, name: str, version: int, sha256: str,
             archive_bytes: int, task: str | None = None, license: str | None = None,
             description: str | None = None) -> dict[str, Any]:
    """Builds the metadata record of one published version.

    ``task``, ``license`` and ``description`` default to the module's attachments of the same
    names; the description then falls back to the model card's first paragraph.

    Args:
      module_dir: The jaxhub module directory that was packed.
      name: ``org/model``.
      version: The version number.
      sha256: Hex sha256 of the archive.
      archive_bytes: Size of the archive.
      task: What the module does ("image-classification", "text-embedding", ...).
      license: The license of the module's weights (an SPDX identifier, say).
      description: One paragraph for listings.

    Returns:
      The record, a JSON-compatible dict.
    """
    manifest = read_manifest(module_dir)
    card_path = module_dir / README_FILE
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else None
    attachments = dict(manifest.attachments)
    variants = _variants(manifest.functions)
    inference = next((v["signatures"] for v in variants if not v["tags"]), {})
    return {
        "format": RECORD_FORMAT,
        "format_version": RECORD_FORMAT_VERSION,
        "name": name,
        "version": version,
        "archive": f"{version}{ARCHIVE_SUFFIX}",
        "sha256": sha256,
        "archive_bytes": archive_bytes,
        "published": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "task": task or _text(attachments.get("task")) or UNKNOWN,
        "license": license or _text(attachments.get("license")) or UNKNOWN,
        "description": (description or _text(attachments.get("description"))
                        or first_paragraph(card or "")),
        "model_card": card,
        "input_size": input_size(inference),
        "signatures": sorted(inference),
        "variants": variants,
        "params": _params_summary(manifest),
        "regularizer": manifest.regularizer is not None,
        "attachments": attachments,
        "assets": {k: dict(v) for k, v in manifest.assets.items() if k != README_FILE},
        "module_format_version": manifest.format_version,
        "written_by": dict(manifest.written_by),
    }


def input_size(signatures: dict[str, Any]) -> str:
    """The sizes of one example's inputs to the ``"default"`` (else first) signature.

    The leading (batch) axis is dropped; unknown sizes show as ``?``. An image input
    ``[batch, 224, 224, 3]`` gives ``"224x224x3"``; several inputs are joined with ``"; "``.
    """
    if not signatures:
        return ""
    chosen = signatures.get("default") or signatures[sorted(signatures)[0]]
    sizes = []
    for spec in chosen["inputs"].values():
        dims = spec["shape"][1:]
        sizes.append("x".join(d if isinstance(d, str) else "?" if d is None else str(d)
                              for d in dims) or "scalar")
    return "; ".join(dict.fromkeys(sizes))


def first_paragraph(markdown: str) -> str:
    """The first paragraph of a model card that is prose (not a heading, list or code)."""
    paragraph: list[str] = []
    for line in markdown.splitlines():
        stripped = line.strip()
        if not stripped:
            if paragraph:
                break
            continue
        if stripped.startswith(("#", "```", "-", "*", "|", "<", ">")) and not paragraph:
            continue
        paragraph.append(stripped)
    return " ".join(paragraph)


def _variants(functions: tuple[FunctionSpec, ...]) -> list[dict[str, Any]]:
    by_tags: dict[frozenset[str], dict[str, Any]] = {}
    for fn in functions:
        by_tags.setdefault(fn.tags, {})[fn.signature_name] = {
            **fn.signature.to_json(),
            "takes_rng": fn.takes_rng,
            "state": ["/".join(path) for path in fn.state],
        }
    return [{"tags": sorted(tags), "signatures": dict(sorted(sigs.items()))}
            for tags, sigs in sorted(by_tags.items(), key=lambda item: sorted(item[0]))]


def _params_summary(manifest: Manifest) -> dict[str, int]:
    return {
        "count": sum(p.size for p in manifest.params),
        "trainable": sum(p.size for p in manifest.params if p.trainable),
        "bytes": sum(p.size * np.dtype(p.dtype).itemsize for p in manifest.params),
        "arrays": len(manifest.params),
    }


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
