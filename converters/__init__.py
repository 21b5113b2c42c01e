"""Converters between jaxhub modules and TensorFlow formats.

This package imports TensorFlow; the core ``jaxhub`` package never does.
"""


def __getattr__(name: str):
    # Imported on first use, so that importing one converter does not load the others.
    if name == "convert_saved_model":
        from converters.from_tf.savedmodel import convert_saved_model
        return convert_saved_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
