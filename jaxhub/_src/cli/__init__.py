"""The ``jaxhub`` command line: one sub-command per module in this package.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit status. Command
modules import nothing heavy at the top (JAX, TensorFlow): ``jaxhub --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import signal
import sys

from jaxhub._src.cli import tf_logging

# Command modules, in the order ``jaxhub --help`` lists them.
_COMMANDS = (
    "inspect",
    "convert",
    "upgrade",
    "cache",
    "pack",
    "publish",
    "catalog",
    "search",
)

# Packages of the `tf` extra: an ImportError naming one of them gets the install hint.
_TF_PACKAGES = ("tensorflow", "tensorflow_hub", "tf_keras", "keras")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxhub",
        description="Load, inspect, convert and publish jaxhub modules. TensorFlow's "
                    "start-up log lines are left out; TF_CPP_MIN_LOG_LEVEL (default here: "
                    "3) sets the level of the others.")
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status.

    Errors a user can act on (a missing file, a refused connection, a module that does
    not load, TensorFlow not installed) print one line, ``jaxhub COMMAND: error: ...``,
    and return 1; a reader that closes the pipe early (``| head``) ends the command
    quietly.
    """
    args = build_parser().parse_args(argv)
    tf_logging.set_environment()  # before anything imports TensorFlow
    try:
        status = args.func(args) or 0
        sys.stdout.flush()  # a closed pipe shows here rather than at interpreter exit
        return status
    except BrokenPipeError:
        # As `cat` and `grep` do when the reader is gone: stop, say nothing. Python would
        # otherwise fail again flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except ImportError as e:
        _error(args.command, _import_error_message(e))
        return 1
    except (OSError, ValueError, NotImplementedError) as e:  # HubError and jaxhub errors
        _error(args.command, str(e))
        return 1


def resolve_handle(handle: str) -> pathlib.Path:
    """The local directory of ``handle`` (path, URL, repository handle), fetched if needed.

    Raises:
      FileNotFoundError: ``handle`` is a local path that does not exist.
      jaxhub.HubError: the handle cannot be resolved or downloaded.
    """
    if "://" not in handle and not os.path.exists(handle):
        raise FileNotFoundError(f"{handle}: no such file or directory")
    import jaxhub  # the repository resolver is registered on first use
    return jaxhub.resolve(handle)


def _error(command: str, message: str) -> None:
    print(f"jaxhub {command}: error: {message}", file=sys.stderr)


def _import_error_message(error: ImportError) -> str:
    names = {error.name, getattr(error.__cause__, "name", None)}
    if names & set(_TF_PACKAGES) and "jaxhub[tf]" not in str(error):
        return f"{error}: this needs TensorFlow: pip install 'jaxhub[tf]'"
    return str(error)


def _version() -> str:
    from jaxhub._src.version import __version__
    return f"jaxhub {__version__}"
