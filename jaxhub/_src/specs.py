"""Tensor specs and signatures: what a module's functions take and return.

A dimension is an ``int`` (fixed), ``None`` (unknown) or a string naming a symbolic size
(``"batch"``, ``"seq"``). Inputs that share a name must agree on that size when called;
dimension expressions computed by JAX (``"2*batch"``) may appear in output specs.
"""

from __future__ import annotations

import dataclasses
import re
import types
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import jax
import numpy as np

Dim = int | str | None

_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SignatureError(ValueError):
    """Inputs do not match a signature, or the signature or variant does not exist."""


class NoGradientError(SignatureError, LookupError):
    """A gradient was asked of a signature stored forward-only.

    Also a ``LookupError``: what TF raises when it differentiates an op without a
    gradient (or with ``PreventGradient``), so code written for TF catches it too.
    """


@dataclasses.dataclass(frozen=True, init=False)
class TensorSpec:
    """The shape and dtype of one input or output.

    Attributes:
      shape: one entry per axis: an int, ``None`` (any size) or a symbolic name.
      dtype: a numpy dtype name, such as ``"float32"``, or ``"string"`` for text (taken
        by host stages, never by device functions).

    Examples:
      >>> TensorSpec([None, 50], "float32")
      TensorSpec(shape=(None, 50), dtype=float32)
    """

    shape: tuple[Dim, ...]
    dtype: str

    def __init__(self, shape, dtype: Any = "float32"):
        dims = tuple(_canonical_dim(d) for d in shape)
        object.__setattr__(self, "shape", dims)
        object.__setattr__(self, "dtype", _canonical_dtype(dtype))

    def __repr__(self) -> str:
        return f"TensorSpec(shape={self.shape!r}, dtype={self.dtype})"

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TensorSpec":
        return cls(data["shape"], data["dtype"])

    @classmethod
    def from_aval(cls, aval: Any) -> "TensorSpec":
        """The spec of an abstract value, symbolic dimensions written as strings."""
        return cls([d if isinstance(d, int) else str(d) for d in aval.shape], aval.dtype)


def _canonical_dtype(dtype: Any) -> str:
    if dtype in ("string", str, bytes, object):
        return "string"
    return np.dtype(dtype).name


def _canonical_dim(dim: Any) -> Dim:
    if dim is None or isinstance(dim, str):
        return dim
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool):
        return int(dim)
    raise TypeError(f"a dimension is an int, None or a symbolic name, not {dim!r}")


@dataclasses.dataclass(frozen=True)
class Signature:
    """A named entry point: input specs by name and output specs by name.

    Attributes:
      inputs: input name -> spec.
      outputs: output name -> spec.
    """

    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]

    def __post_init__(self):
        for name in ("inputs", "outputs"):
            specs = dict(sorted(getattr(self, name).items()))
            object.__setattr__(self, name, types.MappingProxyType(specs))

    def __hash__(self) -> int:
        return hash((tuple(self.inputs.items()), tuple(self.outputs.items())))

    def __eq__(self, other) -> bool:
        return (isinstance(other, Signature) and dict(self.inputs) == dict(other.inputs)
                and dict(self.outputs) == dict(other.outputs))

    def __repr__(self) -> str:
        return f"Signature(inputs={_specs_str(self.inputs)}, outputs={_specs_str(self.outputs)})"

    def to_json(self) -> dict[str, Any]:
        return {"inputs": {k: s.to_json() for k, s in self.inputs.items()},
                "outputs": {k: s.to_json() for k, s in self.outputs.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Signature":
        return cls({k: TensorSpec.from_json(s) for k, s in data["inputs"].items()},
                   {k: TensorSpec.from_json(s) for k, s in data["outputs"].items()})


class Ragged(NamedTuple):
    """A ragged tensor at a signature's boundary: TF's ``RaggedTensor`` as plain arrays.

    A signature converted from a TF function that takes or returns a ``RaggedTensor``
    (tensorflow_text's ``tokenize``, ``bert_pack_inputs``) has one input or output per
    component, named ``<name>.values`` and ``<name>.row_splits.<k>``; calls take and
    return a ``Ragged`` in their place. ``values`` are the flat values; ``row_splits``
    are TF's ``nested_row_splits``, outermost first: row ``i`` of level ``k`` spans
    ``row_splits[k][i]:row_splits[k][i + 1]`` of the next level.

    A converted BERT preprocessor's ``tokenize`` returns one (``[batch, words,
    wordpieces]``), and ``bert_pack_inputs`` takes a list of them:
    ``preprocess([tokens, tokens], signature="bert_pack_inputs")``.

    Examples:
      >>> tokens = Ragged(np.array([7, 8, 9]), (np.array([0, 2, 3]),))
      >>> tokens.to_list()
      [[7, 8], [9]]
      >>> tokens.ragged_rank
      1
    """

    values: Any
    row_splits: tuple[Any, ...]

    @property
    def ragged_rank(self) -> int:
        return len(self.row_splits)

    def to_list(self) -> list:
        """The nested Python lists the ragged tensor stands for (as ``tf.RaggedTensor``'s)."""
        rows = np.asarray(self.values).tolist()
        for splits in reversed(self.row_splits):
            bounds = np.asarray(splits).tolist()
            rows = [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return rows


def ragged_component_names(name: str, ragged_rank: int) -> list[str]:
    """The component names of ragged value ``name``, in TF's order (values, then the row
    splits, outermost first)."""
    return [f"{name}.values"] + [f"{name}.row_splits.{k}" for k in range(ragged_rank)]


def ragged_component(name: str) -> tuple[str | None, int | None]:
    """``(ragged value's name, row-splits level or None for the values)`` of a component
    name; ``(None, None)`` for another name."""
    if name.endswith(".values"):
        return name[:-len(".values")], None
    base, sep, level = name.rpartition(".row_splits.")
    if sep and level.isdigit():
        return base, int(level)
    return None, None


def flatten_ragged(inputs: Any, names: Iterable[str]) -> Any:
    """``inputs`` with each :class:`Ragged` (and each list of them) replaced by its
    components, named as among ``names`` (a signature's input names).

    A list or tuple stands for inputs named ``<arg>/0``, ``<arg>/1``, ...; unnamed inputs
    for a signature whose inputs all belong to one argument are that argument.
    """
    if not _holds_ragged(inputs):
        return inputs
    if not isinstance(inputs, Mapping):
        args = {_argument(n) for n in names}
        if len(args) != 1:
            return inputs  # check_inputs reports it
        inputs = {args.pop(): inputs}
    flat: dict[str, Any] = {}

    def add(name: str, value: Any) -> None:
        if isinstance(value, Ragged):
            flat.update(zip(ragged_component_names(name, value.ragged_rank),
                            (value.values, *value.row_splits)))
        elif isinstance(value, (list, tuple)) and _holds_ragged(value):
            for i, item in enumerate(value):
                add(f"{name}/{i}", item)
        else:
            flat[name] = value

    for key, value in inputs.items():
        add(key, value)
    return flat


def nest_ragged(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """``outputs`` with the components of each ragged value gathered into a :class:`Ragged`."""
    nested: dict[str, Any] = {}
    levels: dict[str, dict[int, Any]] = {}
    for name, value in outputs.items():
        base, level = ragged_component(name)
        if base is None or f"{base}.values" not in outputs:
            nested[name] = value
        elif level is not None:
            levels.setdefault(base, {})[level] = value
    for base, splits in levels.items():
        nested[base] = Ragged(outputs[f"{base}.values"],
                              tuple(splits[k] for k in sorted(splits)))
    return nested


def _holds_ragged(value: Any) -> bool:
    if isinstance(value, Ragged):
        return True
    if isinstance(value, Mapping):
        return any(_holds_ragged(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_ragged(v) for v in value)
    return False


def _argument(name: str) -> str:
    """The argument an input name belongs to (``segments`` of ``segments/0.values``)."""
    base, _ = ragged_component(name)
    return (name if base is None else base).split("/")[0]


def _specs_str(specs: Mapping[str, TensorSpec]) -> str:
    return "{" + ", ".join(f"{k}: {s}" for k, s in specs.items()) + "}"


#: 64-bit dtypes and what JAX makes of them with x64 off (``jnp.asarray``'s dtype).
_NARROWED = {"int64": "int32", "uint64": "uint32", "float64": "float32",
             "complex128": "complex64"}


#: The dtypes the 64-bit rule is about.
WIDE_DTYPES = frozenset(_NARROWED)


def canonical_dtype(dtype: str) -> str:
    """The dtype that JAX computes a ``dtype`` input in: itself, or its 32-bit
    counterpart when 64-bit types are off (JAX's default, ``jax_enable_x64=False``)."""
    if jax.config.jax_enable_x64:
        return dtype
    return _NARROWED.get(dtype, dtype)


def check_inputs(signature_name: str, signature: Signature, inputs: Any, *,
                 allow_empty: bool = False) -> dict[str, Any]:
    """Checks ``inputs`` against ``signature``; returns them as a dict of arrays.

    A bare array is accepted for a signature with a single input. Python scalars and lists
    are converted to the spec's dtype; arrays must already have it. A symbolic size of 0
    is refused (jax.export assumes sizes of at least 1) unless ``allow_empty``, for a
    caller that then uses :func:`empty_outputs`.

    The 64-bit rule: with 64-bit types off (JAX's default), an input declared
    ``int64``/``uint64``/``float64``/``complex128`` takes what JAX computes in, the 32-bit
    dtype that ``jnp.asarray`` gives (under ``jit``, ``grad`` and ``vmap`` there is no
    other), and also a 64-bit numpy array, narrowed to it. An integer value that does
    not fit is refused, not wrapped around. With 64-bit types on, the declared dtype is
    the only one.

    Raises:
      SignatureError: the names, dtypes, ranks or sizes do not match. The message names
        the signature and shows the expected specs.
    """
    def fail(problem: str):
        raise SignatureError(
            f"signature {signature_name!r}: {problem}; expected inputs "
            f"{_specs_str(signature.inputs)}")

    if not isinstance(inputs, Mapping):
        if len(signature.inputs) != 1:
            fail(f"got one unnamed input, but the signature has {len(signature.inputs)}")
        inputs = {next(iter(signature.inputs)): inputs}
    missing = sorted(set(signature.inputs) - set(inputs))
    extra = sorted(set(inputs) - set(signature.inputs))
    if missing or extra:
        fail(f"missing inputs {missing}, unexpected inputs {extra}")

    arrays, sizes = {}, {}
    for name, spec in signature.inputs.items():
        try:
            value = _as_array(inputs[name], spec)
        except (TypeError, ValueError) as e:  # ragged lists, dicts, text for numbers
            fail(f"input {name!r} is not a rectangular array of {spec.dtype}: "
                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        value = _narrowed(value, spec, name, fail)
        if len(value.shape) != spec.rank:
            fail(f"input {name!r} has shape {tuple(value.shape)} of rank {len(value.shape)}, "
                 f"not {spec.rank}")
        for axis, (size, dim) in enumerate(zip(value.shape, spec.shape)):
            if isinstance(dim, int) and size != dim:
                fail(f"input {name!r} has size {size} on axis {axis}, not {dim}")
            if isinstance(dim, str) and size == 0 and not allow_empty:
                fail(f"input {name!r} has {dim}=0 on axis {axis}; a symbolic size is at "
                     f"least 1 (jax.export assumes it): skip the call for an empty batch")
            if isinstance(dim, str) and _SYMBOL.match(dim):
                seen = sizes.setdefault(dim, (size, name))
                if seen[0] != size:
                    fail(f"input {name!r} has {dim}={size} on axis {axis}, but input "
                         f"{seen[1]!r} has {dim}={seen[0]}")
        arrays[name] = value
    return arrays


def _narrowed(value: Any, spec: TensorSpec, name: str, fail: Callable[[str], Any]) -> Any:
    """``value`` in the dtype JAX computes ``spec`` in (see :func:`check_inputs`)."""
    dtype, canonical = np.dtype(value.dtype).name, canonical_dtype(spec.dtype)
    if dtype == canonical:
        return value
    if dtype != spec.dtype or not isinstance(value, (np.ndarray, np.generic)):
        also = f" (or {canonical}, since 64-bit types are off)" if canonical != spec.dtype else ""
        fail(f"input {name!r} has dtype {dtype}, not {spec.dtype}{also}")
    info = np.iinfo(canonical) if np.issubdtype(value.dtype, np.integer) else None
    if info is not None and value.size and (value.min() < info.min or value.max() > info.max):
        fail(f"input {name!r} holds {spec.dtype} values outside {canonical}'s range "
             f"[{info.min}, {info.max}], which JAX computes it in while 64-bit types are "
             f"off: enable them (jax.config.update('jax_enable_x64', True) before any JAX "
             f"work) to pass such values")
    return np.asarray(value, canonical)


def _as_array(value: Any, spec: TensorSpec):
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # tracers, ShapeDtypeStructs
        return value
    return np.asarray(value, dtype=spec.dtype)


def empty_outputs(signature_name: str, signature: Signature, arrays: Mapping[str, Any]
                  ) -> dict[str, np.ndarray] | None:
    """The outputs of a call in which a symbolic size is 0, known without making it.

    jax.export's symbolic sizes are at least 1, so such a call cannot run. When every
    output has a size-0 axis and sizes known from the inputs (an empty batch through
    outputs shaped ``[batch, ...]``), the outputs are empty arrays of those shapes.

    Returns:
      The outputs by name, or None when no symbolic size of ``arrays`` is 0.

    Raises:
      SignatureError: a size is 0 and some output's shape is not known or not empty.
    """
    sizes = {dim: np.shape(arrays[name])[axis] for name, spec in signature.inputs.items()
             for axis, dim in enumerate(spec.shape) if isinstance(dim, str)}
    zero = sorted(dim for dim, size in sizes.items() if size == 0)
    if not zero:
        return None
    outputs = {}
    for name, spec in signature.outputs.items():
        shape = [dim if isinstance(dim, int) else sizes.get(dim) for dim in spec.shape]
        if None in shape or 0 not in shape:
            raise SignatureError(
                f"signature {signature_name!r}: inputs with {zero[0]}=0, and output "
                f"{name!r} ({spec}) would not be empty; a symbolic size is at least 1 "
                f"(jax.export assumes it): skip the call for an empty batch")
        outputs[name] = np.zeros(shape, canonical_dtype(spec.dtype))
    return outputs
