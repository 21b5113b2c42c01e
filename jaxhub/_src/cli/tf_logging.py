"""Keeps TensorFlow's start-up log lines off stderr, for the command line and the demo.

TensorFlow logs from C++ when it is imported: CPU features, missing CUDA drivers, oneDNN
notes, and an E-level "failed call to cuInit" on machines without a GPU. None of it says
anything about the user's model. The standard switch, ``TF_CPP_MIN_LOG_LEVEL``, is set
before TensorFlow is imported; the lines TensorFlow writes before its logging reads that
switch ("All log messages before absl::InitializeLog() is called are written to STDERR")
are dropped by importing it with the stderr file descriptor pointed at /dev/null.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator

# The standard switches; a value the user set wins.
_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # 3: not even E-level lines such as "failed call to cuInit"
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "2",
}


def set_environment() -> None:
    """Sets TensorFlow's logging switches, unless already set.

    Call it before TensorFlow is imported, and before JAX is: jaxlib shares TensorFlow's
    C++ logging, which reads the level once, when the first of them is imported.
    """
    for name, value in _ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def import_tensorflow_quietly() -> bool:
    """Imports TensorFlow, when installed, without its start-up log lines.

    An exception raised by the import still propagates (after stderr is restored).

    Returns:
      Whether TensorFlow is importable.
    """
    set_environment()
    if "tensorflow" in sys.modules:
        return True
    if importlib.util.find_spec("tensorflow") is None:
        return False
    with _stderr_to_devnull():
        import tensorflow  # noqa: F401
    return True


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
