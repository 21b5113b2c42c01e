"""``jaxhub --help`` is fast: it imports neither JAX nor TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jaxhub._src.cli import _COMMANDS

_HEAVY = ("jax", "jaxlib", "numpy", "tensorflow", "flax", "orbax", "optax")

# Runs the command line's --help in a fresh interpreter, then lists the packages imported.
_PROBE = """
import contextlib, io, json, sys
from jaxhub._src.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
packages = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"help": out.getvalue(), "packages": packages}))
"""


def _help(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", _PROBE, *args, "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert "jaxhub" in probe["packages"]  # the probe does see what gets imported
    probe["heavy"] = sorted(set(probe["packages"]) & set(_HEAVY))
    return probe


def test_help_lists_every_command_without_importing_jax():
    probe = _help()
    assert probe["heavy"] == []
    for command in _COMMANDS:
        assert command in probe["help"]


@pytest.mark.parametrize("command", _COMMANDS)
def test_command_help_imports_neither_jax_nor_tensorflow(command):
    probe = _help(command)
    assert probe["heavy"] == []
    assert probe["help"].startswith(f"usage: jaxhub {command}")


def test_import_jaxhub_is_lazy_and_the_first_use_registers_the_repository_resolver():
    code = ("import sys, jaxhub; assert 'jax' not in sys.modules; jaxhub.load; "
            "print('jaxhub._src.catalog.resolver' in sys.modules, 'jax' in sys.modules, "
            "'jaxhub._src.catalog.site' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "False"]  # the resolver, not the site
