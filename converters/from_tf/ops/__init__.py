"""TF op implementations, one module per op family.

Importing this package registers every family: add a new family module to ``_FAMILIES``.

Conventions for every family (extend them in the same way):

* Static in, static out: when every input is static (numpy), the outputs are static, so
  shape arithmetic stays concrete under ``jit`` and ``jax.export``. The registry does it
  for every op (:func:`~jaxhub_tf.from_tf.ops.registry.folding` runs the implementation
  eagerly on concrete inputs) but those registered with ``fold=False`` (ops that run
  library functions or draw from the caller's RNG key). Computing with numpy where it is
  as easy (:func:`~jaxhub_tf.from_tf.values.xnp` picks the module) also keeps symbolic
  dimensions static, which folding cannot.
* Attributes are read with ``node.attr(name)``; a dtype attribute comes back as a numpy
  dtype, to pass to ``astype``.
* Trivial ops go in tables, one line each (``_UNARY``/``_BINARY`` in ``elementwise.py``,
  ``_REDUCTIONS`` in ``reduction.py``).
"""

import importlib

_FAMILIES = (
    "array",
    "nn",
    "random",
    "variables",
    "functions",
    "control_flow",
    "tensor_lists",
    "elementwise",
    "reduction",
    "conv",
    "normalization",
    "image",
    "linalg",
    "random_stateless",
    "losses",
    "quantization",
    "spectral",
    "sparse",
    "tf1",
    "xla",
)

for _family in _FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
