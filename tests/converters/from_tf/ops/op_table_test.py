"""docs/ops.md is generated from the registry and kept up to date."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from jaxhub_tf.from_tf.ops import op_table, registry

_REPO = pathlib.Path(__file__).resolve().parents[4]


def test_catalog_lists_every_registered_op():
    page = op_table.markdown()
    listed = {item.strip("`") for line in page.splitlines() if line.startswith("Ops: ")
              for item in line.removeprefix("Ops: ").split(", ")}
    assert listed == set(registry.registered_ops())
    assert f"**{len(registry.registered_ops())}**" in page


def test_docs_ops_md_is_current():
    generated = subprocess.run(
        [sys.executable, "-m", "jaxhub_tf.from_tf.ops.op_table"], cwd=_REPO, check=True,
        capture_output=True, text=True).stdout
    assert (_REPO / "docs" / "ops.md").read_text() == generated, (
        "regenerate: python -m jaxhub_tf.from_tf.ops.op_table > docs/ops.md")
