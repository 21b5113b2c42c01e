"""With the compilation cache on, a second process reuses the first one's programs."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_second_process_finds_compiled_programs(mlp_dir, tmp_path):
    cache = tmp_path / "xla"
    script = textwrap.dedent(f"""
        import numpy as np, jaxhub
        path = jaxhub.enable_compilation_cache({str(cache)!r})
        module = jaxhub.load({str(mlp_dir)!r})
        print(float(np.asarray(module(np.ones((3, 50), np.float32))).sum()))
    """)
    run = lambda: subprocess.run([sys.executable, "-c", script], capture_output=True,
                                 text=True, timeout=300, check=True).stdout.split()[-1]
    first = run()
    entries = {p.name for p in cache.iterdir()}
    assert entries, "the first process wrote no compiled program"
    second = run()
    assert second == first
    assert {p.name for p in cache.iterdir()} == entries  # nothing new to compile
