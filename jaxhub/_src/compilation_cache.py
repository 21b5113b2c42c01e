"""A persistent XLA compilation cache, so a second process starts a module fast."""

from __future__ import annotations

import os
import pathlib

import jax


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> pathlib.Path:
    """Keeps compiled XLA programs on disk and reuses them in later processes.

    Loaded modules are compiled on their first call; with this cache a second process
    skips that (measured here: MobileNetV2's first call 1.74 s -> 0.45 s). It sets JAX's
    global ``jax_compilation_cache_dir``, so it affects every jitted function of the
    process, which is why it is not on by default.

    Args:
      directory: where to keep the programs (default: ``xla/`` in the jaxhub cache).

    Returns:
      The cache directory.

    Examples:
      >>> jaxhub.enable_compilation_cache("xla-cache")
      PosixPath('.../xla-cache')
      >>> module = jaxhub.create_module(
      ...     {"w": jnp.ones((4, 2))},
      ...     signatures={"default": (lambda p, x: x @ p["w"], jaxhub.TensorSpec([None, 4]))})
      >>> module(jnp.ones((1, 4)))   # compiled once per machine, not once per process
      Array([[4., 4.]], dtype=float32)
    """
    if directory is None:
        from jaxhub._src import hub
        directory = hub.cache_dir() / "xla"
    path = pathlib.Path(directory).absolute()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Small programs too: a module's functions are often fast to compile one by one, yet
    # a process compiles many of them at start.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
