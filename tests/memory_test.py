"""With memory reuse on, large buffers come from the heap and stay there when freed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

_PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, json, sys
    import numpy as np
    import jax.numpy as jnp
    import jaxhub

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2
    enabled = jaxhub.enable_memory_reuse() if sys.argv[1] == "on" else None
    before = libc.mallinfo2()
    buffer = np.ones(100 << 18, np.float32)          # 100 MiB
    during = libc.mallinfo2()
    del buffer
    after = libc.mallinfo2()
    # An XLA:CPU result of 38 MB, computed twice: the same values either way.
    x = jnp.arange(8 * 112 * 112 * 96, dtype=jnp.float32).reshape(8, 112, 112, 96)
    total = float((x * 2.0).sum())
    print(json.dumps({"enabled": enabled, "total": total,
                      "mmapped": during.hblkhd - before.hblkhd,
                      "kept": after.arena + after.hblkhd - before.arena - before.hblkhd}))
""")


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_large_buffers_come_from_the_heap_and_are_kept():
    default, reuse = _probe("off"), _probe("on")
    assert reuse["enabled"] is True
    # By default glibc maps a 100 MiB buffer on its own and returns it on free ...
    assert default["mmapped"] >= 100 << 20
    assert default["kept"] < 1 << 20
    # ... with reuse on it comes from the heap, which keeps it for the next allocation.
    assert reuse["mmapped"] == 0
    assert reuse["kept"] >= 100 << 20
    assert reuse["total"] == default["total"]
