"""TF1 Hub modules: the reader and TF1 (v1) control flow."""
