"""TF ``DataType`` values and ``TensorProto`` messages as numpy, within memory bounds.

Examples:
  >>> numpy_dtype(1)
  dtype('float32')
  >>> to_numpy(protos.TensorProto(dtype=3, int_val=[7]))
  array(7, dtype=int32)
"""

from __future__ import annotations

import math
from typing import Any

import ml_dtypes
import numpy as np

from jaxhub import ModuleFormatError

#: The largest tensor a proto or a checkpoint may expand to (a constant filled from one
#: value can claim any shape): past it, the file is refused rather than memory exhausted.
MAX_TENSOR_BYTES = 1 << 34

DT_STRING, DT_RESOURCE, DT_VARIANT = 7, 20, 21
_REF_OFFSET = 100  # DT_FLOAT_REF = 101: the dtype of a TF1 ref tensor

_NUMPY = {
    1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
    8: np.complex64, 9: np.int64, 10: np.bool_, 14: ml_dtypes.bfloat16, 17: np.uint16,
    18: np.complex128, 19: np.float16, 22: np.uint32, 23: np.uint64,
    24: ml_dtypes.float8_e5m2, 25: ml_dtypes.float8_e4m3fn, 26: ml_dtypes.float8_e4m3fnuz,
    27: ml_dtypes.float8_e4m3b11fnuz, 28: ml_dtypes.float8_e5m2fnuz, 29: ml_dtypes.int4,
    30: ml_dtypes.uint4, 31: ml_dtypes.int2, 32: ml_dtypes.uint2, 33: ml_dtypes.float4_e2m1fn,
}
#: Quantized types: stored as their integer counterparts (as TF's numpy view of them).
_QUANTIZED = {11: np.int8, 12: np.uint8, 13: np.int32, 15: np.int16, 16: np.uint16}
_SPECIAL = {DT_RESOURCE: "resource", DT_VARIANT: "variant"}

# The repeated field of TensorProto that holds values of each kind, when not packed in
# tensor_content.
_FIELD = {np.float32: "float_val", np.float64: "double_val", np.int64: "int64_val",
          np.bool_: "bool_val", np.uint32: "uint32_val", np.uint64: "uint64_val",
          np.complex64: "scomplex_val", np.complex128: "dcomplex_val"}
_HALF_TYPES = (np.float16, ml_dtypes.bfloat16)  # bit patterns in half_val


class TensorFormatError(ModuleFormatError):
    """A tensor in a TF file is malformed or too large; the message says which."""


def base_dtype(enum: int) -> int:
    """``enum`` without the ``_REF`` of a TF1 ref tensor."""
    return enum - _REF_OFFSET if enum > _REF_OFFSET else enum


def numpy_dtype(enum: int) -> Any:
    """A ``DataType`` as a ``numpy.dtype`` (strings: object; resources, variants: a name).

    Raises:
      TensorFormatError: no such DataType.
    """
    enum = base_dtype(enum)
    if enum in _SPECIAL:
        return _SPECIAL[enum]
    if enum == DT_STRING:
        return np.dtype(object)
    kind = _NUMPY.get(enum) or _QUANTIZED.get(enum)
    if kind is None:
        raise TensorFormatError(f"unknown TF DataType {enum}")
    return np.dtype(kind)


def shape_of(proto, what: str = "tensor") -> tuple[int, ...]:
    """A fully known ``TensorShapeProto`` as a tuple, checked.

    Raises:
      TensorFormatError: unknown or negative sizes.
    """
    shape = tuple(int(d.size) for d in proto.dim)
    if proto.unknown_rank or any(d < 0 for d in shape):
        raise TensorFormatError(f"{what} has a partially unknown shape {shape}")
    return shape


def check_size(shape: tuple[int, ...], itemsize: int, what: str = "tensor") -> int:
    """The element count of ``shape``, refusing more than :data:`MAX_TENSOR_BYTES`."""
    count = math.prod(shape)
    if count * max(itemsize, 1) > MAX_TENSOR_BYTES:
        raise TensorFormatError(
            f"{what} claims shape {list(shape)} ({count} elements), more than the "
            f"{MAX_TENSOR_BYTES} bytes jaxhub reads into memory: the file is corrupt")
    return count


def to_numpy(proto) -> np.ndarray:
    """A ``TensorProto`` as a numpy array (strings as an object array of ``bytes``).

    As TF does, a proto with fewer values than its shape holds is filled with its last
    value (zeros when it has none).

    Raises:
      TensorFormatError: a malformed proto, a resource or variant tensor, or one larger
        than :data:`MAX_TENSOR_BYTES`.
    """
    dtype = numpy_dtype(proto.dtype)
    if isinstance(dtype, str):
        raise TensorFormatError(f"a constant {dtype} tensor has no numpy value")
    shape = shape_of(proto.tensor_shape)
    count = check_size(shape, 8 if dtype == object else dtype.itemsize)
    if dtype == object:
        return _filled(np.array(list(proto.string_val) or [b""], dtype=object), count,
                       shape, bool(proto.string_val))
    if proto.tensor_content:
        content = proto.tensor_content
        if len(content) != count * dtype.itemsize:
            raise TensorFormatError(f"tensor_content holds {len(content)} bytes for shape "
                                    f"{list(shape)} of {dtype}")
        return np.frombuffer(content, dtype=dtype).reshape(shape).copy()
    values = _repeated_values(proto, dtype)
    return _filled(values, count, shape, values.size > 0)


def _repeated_values(proto, dtype: np.dtype) -> np.ndarray:
    if dtype.type in _HALF_TYPES:
        return np.asarray(proto.half_val, dtype=np.uint16).view(dtype)
    if dtype.type in (ml_dtypes.float8_e5m2, ml_dtypes.float8_e4m3fn,
                      ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e4m3b11fnuz,
                      ml_dtypes.float8_e5m2fnuz):
        return np.frombuffer(proto.float8_val, dtype=np.uint8).view(dtype)
    field = _FIELD.get(dtype.type, "int_val")
    raw = np.asarray(getattr(proto, field))
    if dtype.kind == "c":  # (real, imaginary) pairs
        if raw.size % 2:
            raise TensorFormatError("a complex tensor with an odd count of parts")
        return (raw[0::2] + 1j * raw[1::2]).astype(dtype)
    return raw.astype(dtype)


def _filled(values: np.ndarray, count: int, shape: tuple[int, ...],
            any_values: bool) -> np.ndarray:
    if values.size > count:
        raise TensorFormatError(f"{values.size} values for shape {list(shape)}")
    if not any_values:
        return np.zeros(shape, dtype=values.dtype) if values.dtype != object else \
            np.full(shape, b"", dtype=object)
    if values.size < count:
        values = np.concatenate([values, np.full(count - values.size, values[-1],
                                                 dtype=values.dtype)])
    return values.reshape(shape)
