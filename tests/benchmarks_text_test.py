"""Smoke test of ``python -m benchmarks.text``: a tiny run that must print both figures.

Speed is not asserted (it depends on the machine); only that the run compared the same
ids (the benchmark checks them) and reported a rate for jaxhub and for TF.
"""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow_text")

from benchmarks import text as bench_text  # noqa: E402


def test_a_tiny_run_reports_strings_per_second_for_both(capsys, tmp_path):
    bench_text.main(["--tokenizers", "fast_wordpiece", "--batch", "5", "--batches", "1",
                     "--repeats", "1", "--budget", "0", "--vocab", "300",
                     "--workdir", str(tmp_path)])
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("| fast_wordpiece |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert len(cells) == 7
    assert all(float(c.replace(",", "")) > 0 for c in cells[1:])
