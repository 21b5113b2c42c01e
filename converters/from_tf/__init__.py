"""TensorFlow formats (TF2 SavedModels, Keras exports, TF1 Hub modules) to jaxhub modules."""
