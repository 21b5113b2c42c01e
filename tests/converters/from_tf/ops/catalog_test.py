"""docs/ops.md is generated from the registry and kept up to date."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from converters.from_tf.ops import catalog, registry

_REPO = pathlib.Path(__file__).resolve().parents[4]


def test_catalog_lists_every_registered_op():
    page = catalog.markdown()
    listed = {item.strip("`") for line in page.splitlines() if line.startswith("Ops: ")
              for item in line.removeprefix("Ops: ").split(", ")}
    assert listed == set(registry.registered_ops())
    assert f"**{len(registry.registered_ops())}**" in page


def test_docs_ops_md_is_current():
    generated = subprocess.run(
        [sys.executable, "-m", "converters.from_tf.ops.catalog"], cwd=_REPO, check=True,
        capture_output=True, text=True).stdout
    assert (_REPO / "docs" / "ops.md").read_text() == generated, (
        "regenerate: python -m converters.from_tf.ops.catalog > docs/ops.md")
