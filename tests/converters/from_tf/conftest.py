"""Settings shared by the TF converter tests (the comparison helpers are in _helpers.py)."""

from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter would otherwise bury test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
