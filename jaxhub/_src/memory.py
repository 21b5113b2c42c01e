"""Keeping freed host memory for reuse, so XLA:CPU's per-call buffers cost no page faults.

XLA:CPU allocates the temporaries and results of every call with ``malloc``. glibc hands
out each buffer over its mmap threshold (128 KiB, adapting up to 32 MiB) as a fresh
``mmap`` and unmaps it on ``free``, so every call faults its pages in again: writing a
38 MB result took 10 ms that way and 1.4 ms from reused memory on this project's test
machine. TensorFlow's allocator keeps its buffers, which is much of its edge on large
batches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt(3) parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_INT_MAX = 2**31 - 1  # mallopt takes an int; larger values wrap around
_TOP_PAD = 64 << 20  # grow the heap in large steps: fewer brk calls for big buffers


def enable_memory_reuse() -> bool:
    """Makes glibc keep freed memory in the process instead of returning it to the OS.

    Every later allocation comes from the heap (no per-buffer ``mmap``), and freed memory
    stays there for the next call to reuse, as TensorFlow's allocator does. It is a
    setting of the whole process, which is why it is not on by default: the process's
    resident memory stays near its peak. Call it before the first JAX computation, so
    that XLA's worker threads share the one heap it configures. Setting
    ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_ARENA_MAX=1`` in
    the environment before the process starts has the same effect.

    The peak can exceed the memory the computations need at once by a few times the
    largest call's temporaries. XLA:CPU allocates all temporaries of a call as one block
    (a ResNet50 training step at batch 32 and 96x96: 712 MiB) and frees it on a worker
    thread just after the outputs are ready, so the next call may allocate its block
    before the last one is free, and small allocations later take pieces of the freed
    block; the heap then grows by another such block, and keeps it. Fine-tuning large
    models with glibc's defaults instead costs page faults per call but no such growth
    (``benchmarks/PROFILE.md``, section 19).

    Returns:
      True when the allocator is glibc's and took the settings; False otherwise (other
      C libraries and operating systems are left alone).

    Examples:
      >>> jaxhub.enable_memory_reuse()   # then large batches on CPU reuse freed pages
      True
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    # One arena: XLA:CPU's worker threads would otherwise each get an arena of their own,
    # whose large blocks are still mapped and faulted in per call.
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _INT_MAX), (_M_TOP_PAD, _TOP_PAD),
                (_M_ARENA_MAX, 1))
    return all(libc.mallopt(option, value) == 1 for option, value in settings)
