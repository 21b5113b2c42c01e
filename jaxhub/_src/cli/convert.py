"""``jaxhub convert SRC DST``: a TF2 SavedModel or TF1 Hub module to a jaxhub module."""

from __future__ import annotations

import argparse
import pathlib
import sys

from jaxhub._src.cli import resolve_handle, tf_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a TF SavedModel or TF Hub module to a jaxhub module",
        description="Convert a TF2 SavedModel (tf.saved_model.save, Keras export) or a TF1 "
                    "Hub module to a jaxhub module that loads without TensorFlow. Needs "
                    "TensorFlow: pip install 'jaxhub[tf]'.")
    parser.add_argument("src", help="a SavedModel / TF Hub module directory or URL")
    parser.add_argument("dst", type=pathlib.Path, help="the jaxhub module directory to write")
    parser.add_argument("--to", choices=("jaxhub", "tf"), default="jaxhub",
                        help="what to write: a jaxhub module (default), or a TF2 SavedModel "
                             "that tensorflow_hub loads and fine-tunes (SRC: any module "
                             "jaxhub.load reads)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxhub._src import formats, loading

    if args.dst.exists() and any(args.dst.iterdir()):
        raise ValueError(f"{args.dst} exists and is not empty")
    if args.to == "tf":
        _require_tensorflow("writing a TF2 SavedModel")
        from jaxhub_tf import export_saved_model
        print(f"wrote {export_saved_model(args.src, args.dst)}: TF2 SavedModel")
        return 0
    path = resolve_handle(args.src)
    try:
        module = loading.read(formats.native(path, gradients=True).path)
    except NotImplementedError as e:  # unsupported TF ops: the message lists them all
        print(f"jaxhub convert: cannot convert {args.src}:\n{e}", file=sys.stderr)
        return 1
    module.export(args.dst)
    print(f"wrote {args.dst}: {module}")
    return 0


def _require_tensorflow(what: str) -> None:
    if not tf_logging.import_tensorflow_quietly():
        raise ImportError(f"{what} needs TensorFlow: pip install 'jaxhub[tf]'",
                          name="tensorflow")
