"""The environment of the processes a benchmark starts (measuring, building models)."""

from __future__ import annotations

import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    """The environment of measuring processes: quiet, and the repo importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["JAXHUB_DISABLE_PROGRESS"] = "1"
    return env
