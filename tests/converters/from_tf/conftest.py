"""Fixtures for the TF converter tests: SavedModels built from code, with a fixed seed."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
