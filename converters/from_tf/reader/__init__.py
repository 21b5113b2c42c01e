"""Reading TensorFlow's file formats without TensorFlow: protobufs, checkpoints, structures."""
