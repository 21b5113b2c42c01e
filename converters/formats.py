"""The TensorFlow formats ``jaxhub.load`` reads, registered through ``jaxhub.extend``.

``register`` is the ``jaxhub.formats`` entry point of the jaxhub distribution. Neither
this module nor the converters import TensorFlow (they read TF's files with
``jaxhub_tf.from_tf.reader``): detection looks only at file names, and each converter is
imported when a directory of its format is first converted.
"""

from __future__ import annotations

import pathlib

from jaxhub import extend

#: The file that marks a TF1 Hub module (beside its ``saved_model.pb``).
TF1_MODULE_DEF_FILE = "tfhub_module.pb"
#: The files that mark a TF2 SavedModel, binary or text.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def register() -> None:
    """Registers the TF1 Hub module and TF2 SavedModel formats with ``jaxhub.load``."""
    # The TF1 format first: a TF1 Hub module also holds a saved_model.pb.
    # Gradients on demand: jaxhub.load converts without them, and again with them on
    # the first gradient (most of a small model's conversion time is its gradients).
    extend.register_format("TF1 Hub module", [TF1_MODULE_DEF_FILE], _convert_tf1_hub_module,
                           gradients_on_demand=True)
    extend.register_format("TF2 SavedModel", SAVED_MODEL_FILES, _convert_saved_model,
                           gradients_on_demand=True)


def _convert_tf1_hub_module(src: pathlib.Path, dst: pathlib.Path, *,
                            gradients: bool = True) -> None:
    from jaxhub_tf.from_tf.tf1.hub_module import convert_tf1_hub_module
    convert_tf1_hub_module(src, dst, gradients=gradients)


def _convert_saved_model(src: pathlib.Path, dst: pathlib.Path, *,
                         gradients: bool = True) -> None:
    from jaxhub_tf.from_tf.saved_model import convert_saved_model
    convert_saved_model(src, dst, gradients=gradients)
