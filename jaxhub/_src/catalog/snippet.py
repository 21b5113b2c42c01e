"""The copy-paste usage snippet on a version's catalog page: load, make inputs, apply."""

from __future__ import annotations

from typing import Any

# Symbolic and unknown sizes (batch, sequence length) get this size in example inputs.
_EXAMPLE_SIZE = 2
_TEXT_DTYPES = ("str", "string", "bytes", "object")


def usage(record: dict[str, Any], handle: str) -> str:
    """Python that loads the version, pinned to its sha256, and applies it to zeros.

    Args:
      record: The version's metadata record.
      handle: The URL to load, such as ``http://host/org/model/3``.

    Returns:
      A runnable script that prints the shapes of the outputs.
    """
    lines = ["import numpy as np", "import jaxhub", "",
             f'module = jaxhub.load("{handle}",',
             f'                     sha256="{record["sha256"]}")']
    signatures = _inference_signatures(record)
    if not signatures:
        return "\n".join(lines)
    name = "default" if "default" in signatures else sorted(signatures)[0]
    spec = signatures[name]
    inputs = spec["inputs"]
    if len(inputs) == 1:
        (input_name, input_spec), = inputs.items()
        arg = "x"
        lines.append(f"x = {_example(input_spec)}  # {input_name}: {_describe(input_spec)}")
    else:
        arg = "inputs"
        lines.append("inputs = {")
        lines += [f'    "{k}": {_example(s)},  # {_describe(s)}' for k, s in inputs.items()]
        lines.append("}")
    options = "" if name == "default" else f', signature="{name}"'
    if len(spec["outputs"]) == 1:
        lines += [f"y = module({arg}{options})", "print(y.shape)"]
    else:
        lines += [f"outputs = module({arg}{options}, as_dict=True)",
                  "print({name: y.shape for name, y in outputs.items()})"]
    return "\n".join(lines)


def _inference_signatures(record: dict[str, Any]) -> dict[str, Any]:
    return next((v["signatures"] for v in record["variants"] if not v["tags"]), {})


def _example(spec: dict[str, Any]) -> str:
    shape = tuple(d if isinstance(d, int) else _EXAMPLE_SIZE for d in spec["shape"])
    if spec["dtype"] in _TEXT_DTYPES:
        return f'np.full({shape!r}, "text")'
    return f'np.zeros({shape!r}, "{spec["dtype"]}")'


def _describe(spec: dict[str, Any]) -> str:
    return f"{spec['dtype']}{format_shape(spec['shape'])}"


def format_shape(shape: list[Any]) -> str:
    """Writes a spec's shape as the catalog shows it: ``[batch, 224, 224, 3]``, ``?`` unknown."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
