"""jaxhub_tf: converters between jaxhub modules and TensorFlow formats.

Installed with jaxhub (its ``tf`` extra installs TensorFlow). ``jaxhub.load`` finds the
TensorFlow formats through :mod:`jaxhub_tf.formats`, which imports no TensorFlow; the
converters below import it on first use.

- :func:`convert_saved_model`: a TF2 SavedModel (``tf.saved_model.save``, Keras export)
  to a jaxhub module directory.
- :func:`convert_tf1_hub_module`: a TF1 Hub module to a jaxhub module directory.
- :func:`export_saved_model`: a jaxhub module to a TF2 SavedModel that
  ``tensorflow_hub`` loads and fine-tunes.
"""

import importlib as _importlib

_LAZY = {
    "convert_saved_model": "jaxhub_tf.from_tf.saved_model",
    "convert_tf1_hub_module": "jaxhub_tf.from_tf.tf1.hub_module",
    "export_saved_model": "jaxhub_tf.to_tf.saved_model",
}

__all__ = ("convert_saved_model", "convert_tf1_hub_module", "export_saved_model")


def __getattr__(name: str):
    # Imported on first use, so that importing one converter does not load the others.
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
