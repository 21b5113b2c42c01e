"""TF op implementations, one module per op family.

Importing this package registers every family: add a new family module to ``_FAMILIES``.
"""

import importlib

_FAMILIES = (
    "math",
    "array",
    "nn",
    "random",
    "variables",
    "functions",
    "control_flow",
    "tensor_lists",
    "elementwise",
    "activation",
    "reduction",
    "conv",
    "normalization",
    "image",
    "linalg",
    "array_extra",
    "random_stateless",
    "losses",
    "spectral",
    "tf1",
    "xla",
)

for _family in _FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
