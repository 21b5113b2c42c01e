"""jaxhub modules as TensorFlow SavedModels (TF Hub's Reusable SavedModel conventions)."""

from jaxhub_tf.to_tf.saved_model import export_saved_model as export_saved_model
