"""jaxhub modules as TensorFlow SavedModels (TF Hub's Reusable SavedModel conventions)."""

from converters.to_tf.savedmodel import export_saved_model as export_saved_model
