"""numpy implementations of the TF ops a host stage runs: strings, tables, small integer
math, and ops whose output shapes follow their inputs' values (``Range``, ``Where``,
``Unique``, non-max suppression, CTC greedy decoding).

Each op is ``impl(node, *inputs) -> value or tuple of values`` where ``node`` is a
:class:`jaxhub._src.host.program.HostNode` (its ``attrs`` are JSON values) and inputs are numpy
arrays (strings as ``bytes`` in object arrays, as TF holds them). The results match
TensorFlow's kernels bit for bit: ``StringToHashBucketFast`` is farmhash ``Fingerprint64``
modulo the bucket count, as in TF. Regular expressions use RE2, as TF does: linear time in
the text, whatever the pattern.

No op opens a file: a file-reading op gets an :class:`jaxhub._src.host.program.AssetFile` (an
asset's bytes, read at load) at the inputs :func:`file_inputs` names. Ops that size an
array from values check it against the node's limits before allocating.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Container, Iterable, Mapping

import numpy as np
import re2

from jaxhub._src.host.limits import check_elements
from jaxhub._src.host.registry import ANY, AttrNode, AttrSpec, Registry

HostOp = Callable[..., Any]
_OPS = Registry("host op")
#: Load-time checks of a node's attrs, by op (static regex patterns compile here).
_CHECKS: dict[str, Callable[[Any], None]] = {}
#: Which inputs of an op are files (an Asset node's bytes), by op.
_FILE_INPUTS: dict[str, frozenset[int]] = {}
#: Ops that fill a table or load a model: they run once, at load.
_INITIALIZERS: set[str] = set()


def register(*names: str, attrs: AttrSpec = (), file_inputs: Iterable[int] = (),
             initializer: bool = False) -> Callable[[HostOp], HostOp]:
    """Registers a host op implementation under TF op ``names`` (no duplicates).

    Args:
      names: TF op names.
      attrs: the node attributes it reads (see :mod:`jaxhub._src.host.registry`); the
        converter refuses a graph whose host nodes carry others.
      file_inputs: the positions of its inputs that are files: the host stage feeds
        them only from ``Asset`` nodes.
      initializer: it fills a table or loads a model: it runs once, at load.

    Raises:
      ValueError: one of ``names`` is registered already.
    """
    decorate = _OPS.register(*names, attrs=attrs)

    def register_op(impl: HostOp) -> HostOp:
        decorate(impl)
        if file_inputs:
            _FILE_INPUTS.update(dict.fromkeys(names, frozenset(file_inputs)))
        if initializer:
            _INITIALIZERS.update(names)
        return impl

    return register_op


def declared_attrs(name: str) -> Mapping[str, tuple | None]:
    """The attributes host op ``name`` declares: name -> handled values or :data:`ANY`."""
    return _OPS.declared_attrs(name)


def attr_problems(node: AttrNode, present: Iterable[str],
                  implicit: Container[str] = ()) -> list[str]:
    """What is wrong with the attributes of ``node`` (see :meth:`Registry.attr_problems`)."""
    return _OPS.attr_problems(node, present, implicit)


def lookup(name: str) -> HostOp | None:
    """The host implementation of TF op ``name``, or None."""
    return _OPS.lookup(name)


def supported_ops() -> list[str]:
    """Every op a host stage can run, sorted."""
    return _OPS.names()


def file_inputs(name: str) -> frozenset[int]:
    """The input positions of op ``name`` that are files (empty for most ops)."""
    return _FILE_INPUTS.get(name, frozenset())


def is_initializer(name: str) -> bool:
    """True for ops that fill a table or load a model (run once, at load)."""
    return name in _INITIALIZERS


def check(node) -> None:
    """Checks ``node``'s attrs at load (a static regex must compile, for one).

    Raises:
      ValueError: the attrs are malformed (the host stage names the node).
    """
    if node.op in _CHECKS:
        _CHECKS[node.op](node)


def _checked_by(*names: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    def decorate(fn):
        _CHECKS.update(dict.fromkeys(names, fn))
        return fn
    return decorate


def _check_broadcast(node, *arrays) -> tuple[int, ...]:
    """The broadcast shape of ``arrays``, refused before allocating if over the limit."""
    shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
    check_elements(node, int(np.prod(shape, dtype=np.float64)))
    return shape


def _strings(x: Any) -> np.ndarray:
    """An object array of ``bytes`` (str inputs are UTF-8 encoded, as TF does)."""
    arr = np.asarray(x, dtype=object)
    if all(type(s) is bytes for s in arr.flat):  # the common case: as the ops return them
        return arr
    out = np.empty(arr.shape, dtype=object)
    for i, s in enumerate(arr.reshape(-1)):
        out.reshape(-1)[i] = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return out


def _map_strings(x: Any, fn: Callable[[bytes], bytes]) -> np.ndarray:
    arr = _strings(x)
    out = np.empty(arr.shape, dtype=object)
    for i, s in enumerate(arr.reshape(-1)):
        out.reshape(-1)[i] = fn(s)
    return out


# -- strings -------------------------------------------------------------------------------


@register("StringLower", attrs=("encoding",))
def _lower(node, x):
    # TF's StringLower with encoding="" lowers ASCII only; "utf-8" lowers every letter.
    if node.attrs.get("encoding", ""):
        return _map_strings(x, lambda s: s.decode("utf-8").lower().encode("utf-8"))
    return _map_strings(x, bytes.lower)


@register("StringUpper", attrs=("encoding",))
def _upper(node, x):
    if node.attrs.get("encoding", ""):
        return _map_strings(x, lambda s: s.decode("utf-8").upper().encode("utf-8"))
    return _map_strings(x, bytes.upper)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is reported by the error, not on stderr


def _compile(pattern: bytes) -> "re2._Regexp":
    """``pattern`` compiled by RE2 with TF's options (UTF-8, RE2's default memory budget).

    Raises:
      ValueError: RE2 rejects the pattern (a syntax error, or too large a program).
    """
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None


def _max_group(rewrite: bytes) -> int:
    """The highest ``\\N`` group a rewrite names (RE2's ``MaxSubmatch``)."""
    top, i = 0, 0
    while i < len(rewrite):
        if rewrite[i:i + 1] == b"\\" and rewrite[i + 1:i + 2].isdigit():
            top = max(top, int(rewrite[i + 1:i + 2]))
        i += 2 if rewrite[i:i + 1] == b"\\" else 1
    return top


def _rewrite(rewrite: bytes, text: bytes, match) -> tuple[bytes, bool]:
    """RE2's ``Rewrite``: ``\\N`` is group N (empty if it did not take part), ``\\\\`` a
    backslash; any other escape stops it. Returns what it wrote and whether it finished."""
    out, i = bytearray(), 0
    while i < len(rewrite):
        c = rewrite[i:i + 1]
        if c != b"\\":
            out += c
            i += 1
            continue
        nxt = rewrite[i + 1:i + 2]
        if nxt.isdigit():
            start, end = match.span(int(nxt))
            out += text[start:end] if start >= 0 else b""
        elif nxt == b"\\":
            out += b"\\"
        else:
            return bytes(out), False
        i += 2
    return bytes(out), True


def _utf8_length(text: bytes, pos: int) -> int:
    """Bytes of the UTF-8 character at ``pos``; 1 for a byte that starts none."""
    for n in (1, 2, 3, 4):
        try:
            text[pos:pos + n].decode("utf-8")
            return n
        except UnicodeDecodeError:
            continue
    return 1


def _replace(compiled, rewrite: bytes, text: bytes, replace_global: bool) -> bytes:
    """RE2's ``Replace`` (first match) or ``GlobalReplace`` (all), as TF's kernel calls."""
    if _max_group(rewrite) > compiled.groups:
        return text  # RE2 refuses a rewrite naming groups the pattern lacks
    if not replace_global:
        match = compiled.search(text)
        if match is None:
            return text
        written, ok = _rewrite(rewrite, text, match)
        return text[:match.start()] + written + text[match.end():] if ok else text
    out, pos, last_end, count = bytearray(), 0, -1, 0
    while pos <= len(text):
        match = compiled.search(text, pos)
        if match is None:
            break
        start, end = match.span()
        out += text[pos:start]
        if start == end == last_end:
            # No empty match right after the previous match: step over one character.
            step = _utf8_length(text, pos) if pos < len(text) else 1
            out += text[pos:pos + step]
            pos += step
            continue
        out += _rewrite(rewrite, text, match)[0]
        pos = last_end = end
        count += 1
    if count == 0:
        return text
    return bytes(out) + text[pos:]


def _regex_replace(x, pattern: bytes, rewrite: bytes, replace_global: bool) -> np.ndarray:
    compiled = _compile(pattern)
    return _map_strings(x, lambda s: _replace(compiled, rewrite, s, replace_global))


@_checked_by("StaticRegexReplace", "StaticRegexFullMatch")
def _check_static_pattern(node) -> None:
    _compile(node.attrs["pattern"].encode("utf-8", "surrogateescape"))


@register("StaticRegexReplace", attrs=("pattern", "rewrite", "replace_global"))
def _static_regex_replace(node, x):
    return _regex_replace(x, node.attrs["pattern"].encode("utf-8", "surrogateescape"),
                          node.attrs["rewrite"].encode("utf-8", "surrogateescape"),
                          node.attrs.get("replace_global", True))


@register("RegexReplace", attrs=("replace_global",))
def _dynamic_regex_replace(node, x, pattern, rewrite):
    return _regex_replace(x, bytes(np.asarray(pattern, object).item()),
                          bytes(np.asarray(rewrite, object).item()),
                          node.attrs.get("replace_global", True))


def _full_match(x, pattern: bytes) -> np.ndarray:
    compiled = _compile(pattern)
    arr = _strings(x)
    flat = [compiled.fullmatch(s) is not None for s in arr.reshape(-1)]
    return np.asarray(flat, dtype=bool).reshape(arr.shape)


@register("StaticRegexFullMatch", attrs=("pattern",))
def _static_regex_full_match(node, x):
    return _full_match(x, node.attrs["pattern"].encode("utf-8", "surrogateescape"))


@register("RegexFullMatch")
def _dynamic_regex_full_match(node, x, pattern):
    return _full_match(x, bytes(np.asarray(pattern, object).item()))


@register("StringStrip")
def _strip(node, x):
    return _map_strings(x, bytes.strip)


@register("StringToHashBucketFast", attrs=("num_buckets",))
def _hash_bucket_fast(node, x):
    import farmhash  # pyfarmhash: farmhash::Fingerprint64, as TF's kernel calls
    buckets = int(node.attrs["num_buckets"])
    flat = [farmhash.fingerprint64(s) % buckets for s in _strings(x).reshape(-1)]
    return np.asarray(flat, dtype=np.int64).reshape(np.shape(x))


def _sparse(rows: list[list[bytes]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token lists as TF's sparse triple: indices [n, 2], values [n], dense shape [2]."""
    indices = [(r, c) for r, row in enumerate(rows) for c in range(len(row))]
    values = np.empty(len(indices), dtype=object)
    values[:] = [t for row in rows for t in row]
    width = max((len(row) for row in rows), default=0)
    return (np.asarray(indices, np.int64).reshape(-1, 2), values,
            np.asarray([len(rows), width], np.int64))


@register("StringSplit", attrs=("skip_empty",))
def _string_split(node, x, delimiter):
    sep = bytes(np.asarray(delimiter, object).item())
    skip_empty = node.attrs.get("skip_empty", True)
    rows = []
    for s in _strings(x).reshape(-1):
        if not sep:  # an empty delimiter splits into characters (bytes)
            tokens = [s[i:i + 1] for i in range(len(s))]
        else:  # each character of the delimiter separates: map them all to the first
            tokens = s.translate(bytes.maketrans(sep, sep[:1] * len(sep))).split(sep[:1])
        rows.append([t for t in tokens if t or not skip_empty])
    return _sparse(rows)


@register("StringSplitV2", attrs=("maxsplit",))
def _string_split_v2(node, x, sep):
    sep = bytes(np.asarray(sep, object).item())
    maxsplit = int(node.attrs.get("maxsplit", -1))
    rows = []
    for s in _strings(x).reshape(-1):
        # An empty separator splits on runs of whitespace, dropping empty tokens.
        rows.append(s.split(None if not sep else sep, maxsplit))
    return _sparse(rows)


#: printf flags ``AsString`` takes as its ``fill``: TF adds the character to the format.
_FILL_FLAGS = frozenset(" +-0#")


def _as_string_format(attrs: Mapping[str, Any], dtype: np.dtype) -> str:
    """The printf format ``AsString`` applies to each element of ``dtype`` (TF's rules).

    Raises:
      ValueError: an attr TF refuses for ``dtype`` (a precision for an integer, a fill
        that is no printf flag, both scientific and shortest).
    """
    precision, width = int(attrs.get("precision", -1)), int(attrs.get("width", -1))
    scientific, shortest = attrs.get("scientific", False), attrs.get("shortest", False)
    fill = attrs.get("fill", "")
    if dtype.kind not in "fc" and (scientific or shortest or precision >= 0):
        raise ValueError(f"AsString of {dtype.name}: precision, scientific and shortest "
                         f"apply to floating point numbers only")
    if scientific and shortest:
        raise ValueError("AsString cannot use both scientific and shortest notation")
    if len(fill) > 1 or (fill and fill not in _FILL_FLAGS):
        raise ValueError(f"AsString fill {fill!r}: TF takes one of {sorted(_FILL_FLAGS)}")
    if dtype.kind == "u" and fill in ("+", " "):
        fill = ""  # C's %u writes no sign
    conversion = "d" if dtype.kind in "iub" else "g" if shortest else "e" if scientific \
        else "f"
    return (f"%{fill}{width if width >= 0 else ''}"
            f"{f'.{precision}' if precision >= 0 else ''}{conversion}")


def _format_number(form: str, value: Any) -> str:
    if not isinstance(value, float) or np.isfinite(value):
        return form % value
    # C's printf pads inf and nan with spaces, even with the 0 flag, and writes a negative
    # NaN's sign, which Python's % drops: format an infinity of the same sign instead.
    form = form.replace("%0", "%", 1)
    return (form % np.copysign(np.inf, value)).replace("inf", "nan" if np.isnan(value)
                                                        else "inf")


@_checked_by("AsString")
def _check_as_string(node) -> None:
    _as_string_format(node.attrs, np.dtype(node.attrs.get("T", "float32")))


@register("AsString", attrs=("precision", "scientific", "shortest", "width", "fill"))
def _as_string(node, x):
    x = np.asarray(x)
    form = _as_string_format(node.attrs, x.dtype)
    out = np.empty(x.shape, dtype=object)
    for i, value in enumerate(x.reshape(-1).tolist()):
        out.reshape(-1)[i] = _as_text(form, value).encode("ascii")
    return out


def _as_text(form: str, value: Any) -> str:
    """One element (a Python number) as ``AsString`` writes it with printf format ``form``."""
    if isinstance(value, bool):  # TF writes booleans as words, whatever the format
        return "true" if value else "false"
    if isinstance(value, complex):
        return f"({_format_number(form, value.real)},{_format_number(form, value.imag)})"
    return _format_number(form, value)


#: What ``StringToNumber`` parses (as C's ``strtod``/``strtol`` do, the whole string
#: with ASCII white space around it): decimal or hex floats, inf, infinity, nan; integers.
_FLOAT_TEXT = re.compile(
    rb"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
    rb"|0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?"
    rb"|(?i:inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?))\s*")
_INT_TEXT = re.compile(rb"\s*[+-]?\d+\s*")


def _parse_number(text: bytes, dtype: np.dtype) -> Any:
    """``text`` as a number of ``dtype``, as TF's ``StringToNumber`` parses it.

    Raises:
      ValueError: ``text`` is no number of that kind, or an integer out of its range.
    """
    if dtype.kind == "f" and _FLOAT_TEXT.fullmatch(text):
        body = text.strip().split(b"(")[0].decode("ascii")
        value = float.fromhex(body) if "x" in body.lower() else float(body)
        with np.errstate(over="ignore"):  # too large for float32: inf, as TF's strtof
            return dtype.type(value)
    if dtype.kind == "i" and _INT_TEXT.fullmatch(text):
        value = int(text)
        if np.iinfo(dtype).min <= value <= np.iinfo(dtype).max:
            return value
    raise ValueError(f"StringToNumber could not convert string {text!r} to {dtype.name}")


@register("StringToNumber")
def _string_to_number(node, x):
    dtype = np.dtype(node.attrs.get("out_type", "float32"))
    if dtype.name not in ("float32", "float64", "int32", "int64"):
        raise ValueError(f"StringToNumber to {dtype.name}; TF parses float32, float64, "
                         f"int32 and int64")
    arr = _strings(x)
    flat = [_parse_number(s, dtype) for s in arr.reshape(-1)]
    return np.asarray(flat, dtype=dtype).reshape(arr.shape)


# -- tables --------------------------------------------------------------------------------


class Table:
    """A key -> value hash table (TF's ``HashTableV2``), filled by an initializer."""

    def __init__(self, key_dtype: str, value_dtype: str):
        self.key_dtype, self.value_dtype = key_dtype, value_dtype
        self.data: dict[Any, Any] = {}


# Each module owns its tables: sharing by name across graphs does not apply. A mutable
# table is filled at load too (``LookupTableImportV2`` of constants): the host stage keeps
# no state between calls.
@register("HashTableV2", "MutableHashTableV2",
          attrs=("container", "shared_name", "use_node_name_sharing"))
def _hash_table(node):
    return Table(node.attrs["key_dtype"], node.attrs["value_dtype"])


def _table_items(table: Table, keys, values) -> list[tuple[Any, Any]]:
    """(key, value) pairs of equal-shaped ``keys`` and ``values`` for ``table``."""
    keys = _strings(keys) if table.key_dtype == "string" else np.asarray(keys)
    values = _strings(values) if table.value_dtype == "string" else np.asarray(values)
    if keys.shape != values.shape:
        raise ValueError(f"keys of shape {keys.shape} and values of shape {values.shape}; "
                         f"a table takes one value per key")
    plain = [v if isinstance(v, bytes) else v.item() for v in values.reshape(-1)]
    return list(zip((k if isinstance(k, bytes) else k.item() for k in keys.reshape(-1)),
                    plain))


@register("InitializeTableV2", initializer=True)
def _init_from_tensors(node, table, keys, values):
    # ``tf.lookup.KeyValueTensorInitializer``: a key given twice must map to one value.
    for key, value in _table_items(table, keys, values):
        if table.data.setdefault(key, value) != value:
            raise ValueError(f"table initializer {node.name!r}: key {key!r} has the values "
                             f"{table.data[key]!r} and {value!r}")
    return ()


@register("LookupTableImportV2", initializer=True)
def _table_import(node, table, keys, values):
    # The table's content replaced by the pairs; of a repeated key the last value wins.
    table.data = dict(_table_items(table, keys, values))
    return ()


def _line_field(line: bytes, index: int, line_number: int, delimiter: bytes, dtype: str):
    if index == -2:  # WHOLE_LINE
        value: Any = line
    elif index == -1:  # LINE_NUMBER
        value = line_number
    else:
        value = line.split(delimiter)[index]
    if dtype == "string":
        return value if isinstance(value, bytes) else str(value).encode()
    return np.dtype(dtype).type(value if not isinstance(value, bytes) else value.decode())


# ``offset`` (start reading that far into the file) is not implemented.
@register("InitializeTableFromTextFileV2",
          attrs={"key_index": ANY, "value_index": ANY, "vocab_size": ANY, "delimiter": ANY,
                 "offset": (0,)}, file_inputs=(1,), initializer=True)
def _init_from_text_file(node, table, file):
    if type(file).__name__ != "AssetFile":  # a path would let a module read any file
        raise TypeError("the file of a table initializer must be a module asset")
    path = file.name
    delimiter = node.attrs.get("delimiter", "\t").encode()
    vocab_size = int(node.attrs.get("vocab_size", -1))
    lines = file.data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # a final newline ends the last line; it starts no new one
    if vocab_size >= 0:
        lines = lines[:vocab_size]
    for number, line in enumerate(lines):
        line = line.rstrip(b"\r")
        key = _line_field(line, node.attrs["key_index"], number, delimiter, table.key_dtype)
        if key in table.data:
            raise ValueError(f"table initializer {node.name!r}: duplicate key {key!r} on "
                             f"line {number + 1} of {path}")
        table.data[key] = _line_field(line, node.attrs["value_index"], number, delimiter,
                                      table.value_dtype)
    return ()


@register("LookupTableFindV2")
def _table_find(node, table, keys, default):
    default = np.asarray(default)
    keys_arr = _strings(keys) if table.key_dtype == "string" else np.asarray(keys)
    flat = [table.data.get(k if isinstance(k, bytes) else k.item(), default.item())
            for k in keys_arr.reshape(-1)]
    dtype = object if table.value_dtype == "string" else np.dtype(table.value_dtype)
    return np.asarray(flat, dtype=dtype).reshape(keys_arr.shape)


@register("LookupTableSizeV2")
def _table_size(node, table):
    return np.asarray(len(table.data), np.int64)


# -- numbers and shapes (what text graphs do between string ops) ----------------------------


def _binary(fn: Callable[[Any, Any], Any]) -> HostOp:
    def op(node, x, y):
        _check_broadcast(node, x, y)
        return np.asarray(fn(np.asarray(x), np.asarray(y)))
    return op


for _names, _fn in ((("Add", "AddV2"), np.add), (("Sub",), np.subtract),
                    (("Mul",), np.multiply), (("Maximum",), np.maximum),
                    (("Minimum",), np.minimum), (("Equal",), np.equal),
                    (("NotEqual",), np.not_equal), (("Less",), np.less),
                    (("LessEqual",), np.less_equal), (("Greater",), np.greater),
                    (("GreaterEqual",), np.greater_equal), (("FloorMod",), np.mod),
                    (("FloorDiv",), np.floor_divide), (("LogicalAnd",), np.logical_and),
                    (("LogicalOr",), np.logical_or)):
    # ``incompatible_shape_error=False`` only changes shapes that do not broadcast, which
    # fail here with the node named.
    register(*_names, attrs=("incompatible_shape_error",) if _fn in (np.equal, np.not_equal)
             else ())(_binary(_fn))


@register("Identity", "StopGradient", "Snapshot")
def _identity(node, x):
    return x


@register("Select", "SelectV2")
def _select(node, cond, x, y):
    cond = np.asarray(cond)
    if node.op == "Select" and cond.ndim == 1 and np.ndim(x) > 1:
        cond = cond.reshape((-1,) + (1,) * (np.ndim(x) - 1))
    _check_broadcast(node, cond, x, y)
    return np.where(cond, x, y)


# ``Truncate`` (cut the mantissa instead of rounding) is not implemented.
@register("Cast", attrs={"Truncate": (False,)})
def _cast(node, x):
    return np.asarray(x).astype(node.attrs["DstT"])


@register("Shape", "Size", "Rank")
def _shape(node, x):
    dtype = node.attrs.get("out_type", "int32")
    shape = np.shape(x)
    value = {"Shape": shape, "Size": int(np.prod(shape)), "Rank": len(shape)}[node.op]
    return np.asarray(value, dtype=dtype)


@register("Reshape")
def _reshape(node, x, shape):
    return np.reshape(x, [int(d) for d in np.asarray(shape).reshape(-1)])


@register("ExpandDims")
def _expand_dims(node, x, axis):
    axis = np.asarray(axis).reshape(-1)  # a scalar, or TF's one-element vector
    if axis.size != 1:
        raise ValueError(f"ExpandDims of {axis.size} axes; TF takes one")
    return np.expand_dims(x, int(axis[0]))


@register("Squeeze", attrs=("squeeze_dims",))
def _squeeze(node, x):
    dims = node.attrs.get("squeeze_dims", [])
    return np.squeeze(x, axis=tuple(dims) if dims else None)


@register("Pack", attrs=("axis",))
def _pack(node, *xs):
    return np.stack([np.asarray(x) for x in xs], axis=node.attrs.get("axis", 0))


@register("ConcatV2")
def _concat(node, *args):
    *xs, axis = args
    return np.concatenate([np.asarray(x) for x in xs], axis=int(np.asarray(axis)))


@register("GatherV2", attrs={"batch_dims": (0,)})
def _gather(node, params, indices, axis):
    return np.take(params, np.asarray(indices), axis=int(np.asarray(axis)))


@register("GatherNd", attrs={"bad_indices_policy": ("", "DEFAULT", "ERROR")})
def _gather_nd(node, params, indices):
    # Each index row picks a slice of ``params``; one out of range fails, as on TF's CPU.
    params, indices = np.asarray(params), np.asarray(indices).astype(np.int64)
    depth = indices.shape[-1]
    rows = indices.reshape(-1, depth)
    bad = np.any((rows < 0) | (rows >= np.asarray(params.shape[:depth])), axis=1)
    if bad.any():
        raise ValueError(f"index {rows[bad][0].tolist()} is out of range for params of "
                         f"shape {list(params.shape)}")
    picked = params[tuple(rows.T)]
    return picked.reshape(indices.shape[:-1] + params.shape[depth:])


@register("Range")
def _range(node, start, limit, delta):
    # As TF's kernel: bounds that run away from the limit are an error, not empty; the
    # length and the values ``start + i * delta`` are computed in the output's type.
    dtype = np.dtype(node.attrs.get("Tidx") or np.result_type(start, limit, delta))
    if dtype.kind not in "iuf":
        raise ValueError(f"Range of {dtype}; TF's ranges are integers or floats")
    start, limit, delta = (np.asarray(v).astype(dtype)[()] for v in (start, limit, delta))
    if delta == 0:
        raise ValueError("Range requires delta != 0")
    if not (start <= limit if delta > 0 else start >= limit):
        raise ValueError(f"Range requires start {'<=' if delta > 0 else '>='} limit when "
                         f"delta {'>' if delta > 0 else '<'} 0: {start}/{limit}")
    if dtype.kind in "iu":
        size = (abs(int(limit) - int(start)) + abs(int(delta)) - 1) // abs(int(delta))
    else:
        span = np.abs((limit - start) / delta)
        if not np.isfinite(span):
            raise ValueError(f"Range from {start} to {limit} by {delta} has no finite length")
        size = int(np.ceil(span))
    check_elements(node, size)
    return start + np.arange(size, dtype=dtype) * delta


def _first_occurrences(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct values of 1-D ``x`` in order of first occurrence (as TF orders them;
    ``np.unique`` sorts), each element's index among them, and their counts."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"unique values of a tensor of rank {x.ndim}; TF takes a vector")
    # TF's hash map sees each NaN as a value of its own (NaN != NaN).
    _, first, inverse, counts = np.unique(x, return_index=True, return_inverse=True,
                                          return_counts=True, equal_nan=False)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return x[first[order]], rank[inverse.reshape(-1)], counts[order]


@register("Unique")
def _unique(node, x):
    values, idx, _ = _first_occurrences(x)
    return values, idx.astype(node.attrs.get("out_idx", "int32"))


@register("UniqueWithCounts")
def _unique_with_counts(node, x):
    values, idx, counts = _first_occurrences(x)
    out_idx = node.attrs.get("out_idx", "int32")
    return values, idx.astype(out_idx), counts.astype(out_idx)


@register("ListDiff")
def _list_diff(node, x, y):
    # ``tf.compat.v1.setdiff1d``: the values of x not in y, in x's order, and their indices.
    x = np.asarray(x)
    keep = np.flatnonzero(~np.isin(x, np.asarray(y)))
    return x[keep], keep.astype(node.attrs.get("out_idx", "int32"))


@register("DynamicPartition", attrs=("num_partitions",))
def _dynamic_partition(node, data, partitions):
    data, partitions = np.asarray(data), np.asarray(partitions)
    if data.shape[:partitions.ndim] != partitions.shape:
        raise ValueError(f"partitions of shape {partitions.shape} for data of shape "
                         f"{data.shape}: TF needs them to be a prefix of it")
    count = int(node.attrs["num_partitions"])
    outside = (partitions < 0) | (partitions >= count)
    if outside.any():
        raise ValueError(f"partition {partitions[outside][0]} is not in [0, {count})")
    return tuple(data[partitions == i] for i in range(count))


def _corners(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    """``ymin, xmin, ymax, xmax`` of boxes given by either pair of opposite corners."""
    return (np.minimum(boxes[:, 0], boxes[:, 2]), np.minimum(boxes[:, 1], boxes[:, 3]),
            np.maximum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 1], boxes[:, 3]))


def _iou(corners: tuple[np.ndarray, ...], areas: np.ndarray, i: int, others: list[int]
         ) -> np.ndarray:
    """Intersection over union of box ``i`` with each of ``others`` (0 for an empty box),
    in the boxes' type, as TF's kernel computes it."""
    ymin, xmin, ymax, xmax = corners
    inter = (np.maximum(np.minimum(ymax[i], ymax[others]) - np.maximum(ymin[i], ymin[others]), 0)
             * np.maximum(np.minimum(xmax[i], xmax[others]) - np.maximum(xmin[i], xmin[others]), 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (areas[i] + areas[others] - inter)
    return np.where((areas[i] <= 0) | (areas[others] <= 0), 0, iou)


def _hard_nms(boxes: np.ndarray, scores: np.ndarray, limit: int, threshold: float,
              score_threshold: Any) -> list[int]:
    """Greedy hard NMS as TF's kernels: candidates above the score threshold by falling
    score (ties: the lower index first), each kept unless it overlaps a kept box by more
    than the IoU threshold, until ``limit`` are kept. Returns the kept indices."""
    corners = _corners(boxes)
    areas = (corners[2] - corners[0]) * (corners[3] - corners[1])
    candidates = np.flatnonzero(scores > np.asarray(score_threshold, scores.dtype))
    kept: list[int] = []
    for i in candidates[np.lexsort((candidates, -scores[candidates]))]:
        if len(kept) == limit:
            break
        if not kept or np.all(_iou(corners, areas, i, kept) <= threshold):
            kept.append(int(i))
    return kept


def _check_nms_args(boxes: np.ndarray, scores: np.ndarray, limit: int,
                    threshold: float) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"boxes of shape {boxes.shape} and scores of shape {scores.shape}; "
                         f"TF takes [n, 4] and [n]")
    if limit < 0 or not 0 <= threshold <= 1:
        raise ValueError(f"max_output_size {limit} must be >= 0 and iou_threshold "
                         f"{threshold} in [0, 1]")


@register("NonMaxSuppressionV2")
def _non_max_suppression_v2(node, boxes, scores, max_output_size, iou_threshold):
    # V3 without a score threshold: every score above the type's lowest is a candidate.
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    limit, threshold = int(max_output_size), float(iou_threshold)
    _check_nms_args(boxes, scores, limit, threshold)
    lowest = np.finfo(scores.dtype).min
    return np.asarray(_hard_nms(boxes, scores, limit, threshold, lowest), np.int32)


@register("NonMaxSuppressionV3", "NonMaxSuppressionV4", "NonMaxSuppressionV5",
          attrs=("pad_to_max_output_size",))
def _non_max_suppression(node, boxes, scores, max_output_size, iou_threshold,
                         score_threshold, soft_nms_sigma=0.0):
    # Soft NMS (a sigma above 0) is not implemented.
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    limit, threshold = int(max_output_size), float(iou_threshold)
    _check_nms_args(boxes, scores, limit, threshold)
    if float(soft_nms_sigma) != 0:
        raise ValueError("soft NMS (soft_nms_sigma > 0) is not implemented on the host")
    kept = _hard_nms(boxes, scores, limit, threshold, score_threshold)
    count = len(kept)
    if node.attrs.get("pad_to_max_output_size", False):
        check_elements(node, limit)
        kept += [0] * (limit - count)
    indices = np.asarray(kept, np.int32)
    if node.op == "NonMaxSuppressionV3":
        return indices
    if node.op == "NonMaxSuppressionV4":
        return indices, np.int32(count)
    selected_scores = np.zeros(len(kept), scores.dtype)  # padding scores 0, as TF's
    selected_scores[:count] = scores[kept[:count]]
    return indices, selected_scores, np.int32(count)


@register("CTCGreedyDecoder", attrs=("merge_repeated", "blank_index"))
def _ctc_greedy_decoder(node, inputs, sequence_length):
    # Per batch entry, each step's most likely class (the first of equal ones), dropping
    # blanks and, with merge_repeated, a class equal to the previous step's; the log
    # probability is minus the sum of the steps' largest logits. A sparse result.
    inputs = np.asarray(inputs)
    lengths = np.asarray(sequence_length).reshape(-1)
    if inputs.ndim != 3 or lengths.shape != inputs.shape[1:2]:
        raise ValueError(f"inputs of shape {inputs.shape} and sequence_length of shape "
                         f"{lengths.shape}; TF takes [max_time, batch, classes] and [batch]")
    if np.any(lengths > inputs.shape[0]) or np.any(lengths < 0):
        raise ValueError(f"sequence_length {lengths.tolist()} outside [0, max_time = "
                         f"{inputs.shape[0]}]")
    blank = int(node.attrs.get("blank_index", -1))
    blank += inputs.shape[2] if blank < 0 else 0
    merge = node.attrs.get("merge_repeated", False)
    best = np.argmax(inputs, axis=2)
    sequences = []
    for b, length in enumerate(lengths):
        classes = best[:length, b]
        keep = classes != blank
        if merge:
            keep &= np.concatenate([[True], classes[1:] != classes[:-1]])
        sequences.append(classes[keep])
    steps = np.arange(inputs.shape[0])[:, None] < lengths[None, :]
    log_probability = -np.sum(np.where(steps, inputs.max(axis=2), 0), axis=0)
    indices = np.array([(b, i) for b, seq in enumerate(sequences) for i in range(len(seq))],
                       np.int64).reshape(-1, 2)
    values = np.concatenate([np.zeros(0, np.int64)] + sequences).astype(np.int64)
    shape = np.array([len(lengths), max(map(len, sequences), default=0)], np.int64)
    return indices, values, shape, log_probability[:, None].astype(inputs.dtype)


@register("CombinedNonMaxSuppression", attrs=("pad_per_class", "clip_boxes"))
def _combined_non_max_suppression(node, boxes, scores, max_output_size_per_class,
                                  max_total_size, iou_threshold, score_threshold):
    # Per image and class, hard NMS keeps up to ``max_output_size_per_class`` boxes (the
    # class's own boxes, or the shared ones when boxes has one per anchor); the image's
    # kept boxes of every class, by falling score, fill ``max_total_size`` rows, or
    # min(max_total_size, per class * classes) with ``pad_per_class``; the rest are 0.
    # Equal scores go in index order, then class order (TF's heaps leave ties unordered).
    boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
    per_class, total = int(max_output_size_per_class), int(max_total_size)
    threshold = float(iou_threshold)
    if boxes.ndim != 4 or boxes.shape[3] != 4 or scores.ndim != 3 or \
            scores.shape[:2] != boxes.shape[:2] or boxes.shape[2] not in (1, scores.shape[2]):
        raise ValueError(f"boxes of shape {boxes.shape} and scores of shape {scores.shape}; "
                         f"TF takes [batch, n, 1 or classes, 4] and [batch, n, classes]")
    if total <= 0 or per_class < 0 or not 0 <= threshold <= 1:
        raise ValueError(f"max_total_size {total} must be > 0, max_output_size_per_class "
                         f"{per_class} >= 0 and iou_threshold {threshold} in [0, 1]")
    batch, _, classes = scores.shape
    rows = min(total, per_class * classes) if node.attrs.get("pad_per_class", False) \
        else total
    check_elements(node, batch * rows * 4)
    out_boxes = np.zeros((batch, rows, 4), np.float32)
    out_scores = np.zeros((batch, rows), np.float32)
    out_classes = np.zeros((batch, rows), np.float32)
    valid = np.zeros(batch, np.int32)
    for b in range(batch):
        found = [(scores[b, i, c], c, boxes[b, i, c if boxes.shape[2] > 1 else 0])
                 for c in range(classes)
                 for i in _hard_nms(boxes[b, :, c if boxes.shape[2] > 1 else 0],
                                    scores[b, :, c], per_class, threshold, score_threshold)]
        found.sort(key=lambda f: -f[0])  # stable: ties keep class, then index order
        valid[b] = count = min(len(found), rows)
        for row, (score, c, box) in enumerate(found[:count]):
            out_boxes[b, row] = np.clip(box, 0, 1) if node.attrs.get("clip_boxes", True) \
                else box
            out_scores[b, row], out_classes[b, row] = score, c
    return out_boxes, out_scores, out_classes, valid


@register("StridedSlice", attrs=("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask",
                                  "shrink_axis_mask"))
def _strided_slice(node, x, begin, end, strides):
    x = np.asarray(x)
    begin, end, strides = (np.asarray(v).reshape(-1).tolist() for v in (begin, end, strides))
    masks = {k: int(node.attrs.get(k, 0)) for k in
             ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")}
    index: list[Any] = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        bit = 1 << i
        if masks["ellipsis_mask"] & bit:
            index.append(Ellipsis)
        elif masks["new_axis_mask"] & bit:
            index.append(np.newaxis)
        elif masks["shrink_axis_mask"] & bit:
            index.append(b)
        else:
            index.append(slice(None if masks["begin_mask"] & bit else b,
                               None if masks["end_mask"] & bit else e, s))
    return x[tuple(index)]


@register("Slice")
def _slice(node, x, begin, size):
    # ``size`` -1 runs to the end of the axis; a window outside ``x`` is an error, as TF's.
    x = np.asarray(x)
    begin, size = (np.asarray(v).reshape(-1).tolist() for v in (begin, size))
    if len(begin) != x.ndim or len(size) != x.ndim:
        raise ValueError(f"begin {begin} and size {size} for a tensor of rank {x.ndim}")
    index = []
    for axis, (start, length) in enumerate(zip(begin, size)):
        stop = x.shape[axis] if length == -1 else start + length
        if not 0 <= start <= stop <= x.shape[axis]:
            raise ValueError(f"slice {start}:{stop} of axis {axis} is outside its size "
                             f"{x.shape[axis]}")
        index.append(slice(start, stop))
    return x[tuple(index)]


@register("Fill")
def _fill(node, dims, value):
    check_elements(node, int(np.prod([float(d) for d in np.asarray(dims).reshape(-1)])))
    return np.full([int(d) for d in np.asarray(dims).reshape(-1)], np.asarray(value))


@register("ZerosLike", "OnesLike")
def _zeros_like(node, x):
    return (np.zeros_like if node.op == "ZerosLike" else np.ones_like)(np.asarray(x))


def _axes(axis) -> tuple[int, ...]:
    return tuple(int(a) for a in np.asarray(axis).reshape(-1))


_REDUCTIONS = {"Sum": np.sum, "Max": np.max, "Min": np.min, "Prod": np.prod,
               "Mean": np.mean, "All": np.all, "Any": np.any}


@register(*_REDUCTIONS, attrs=("keep_dims",))
def _reduce(node, x, axis):
    x = np.asarray(x)
    extra = {}
    if node.op in ("Max", "Min") and x.dtype.kind in "iuf":
        # TF's identity: the maximum of no values is the lowest one (-inf for floats).
        lowest, highest = ((-np.inf, np.inf) if x.dtype.kind == "f" else
                           (np.iinfo(x.dtype).min, np.iinfo(x.dtype).max))
        extra["initial"] = lowest if node.op == "Max" else highest
    keep = node.attrs.get("keep_dims", False)
    result = _REDUCTIONS[node.op](x, axis=_axes(axis), keepdims=keep, **extra)
    return np.asarray(result, dtype=x.dtype)


@register("Cumsum", attrs=("exclusive", "reverse"))
def _cumsum(node, x, axis):
    x, axis = np.asarray(x), int(np.asarray(axis))
    if node.attrs.get("reverse", False):
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis, dtype=x.dtype)
    if node.attrs.get("exclusive", False):
        out = out - x
    return np.flip(out, axis) if node.attrs.get("reverse", False) else out


def _check_bincount(node, values: np.ndarray, size: int) -> None:
    """Refuses what TF's bin counts refuse, and counts over the element limit."""
    if size < 0:
        raise ValueError(f"bin count of size {size}; TF takes a size >= 0")
    if values.size and values.min() < 0:
        raise ValueError(f"bin count of a negative value ({values.min()}); TF counts "
                         f"values >= 0")
    check_elements(node, size * (len(values) if values.ndim > 1 else 1))


def _bin_counts(values: np.ndarray, weights: np.ndarray, size: int,
                binary: bool = False) -> np.ndarray:
    """How often each of ``0 .. size - 1`` occurs in 1-D ``values`` (larger values are
    left out), or the sum of its ``weights`` (empty: counts), in the weights' dtype;
    with ``binary``, 1 for each that occurs."""
    kept = values < size
    out = np.zeros(size, weights.dtype)
    if binary:
        out[values[kept]] = 1
    else:
        np.add.at(out, values[kept], weights[kept] if weights.size else 1)
    return out


@register("Bincount")
def _bincount(node, arr, size, weights):
    # Values of any shape, counted together; weights have their shape, or none.
    arr, weights, size = np.asarray(arr), np.asarray(weights), int(np.asarray(size))
    _check_bincount(node, arr.reshape(-1), size)
    return _bin_counts(arr.reshape(-1), weights.reshape(-1), size)


@register("DenseBincount", attrs=("binary_output",))
def _dense_bincount(node, values, size, weights):
    # A vector, or a matrix counted row by row; weights have its shape, or none.
    values, weights, size = np.asarray(values), np.asarray(weights), int(np.asarray(size))
    _check_bincount(node, values, size)
    binary = node.attrs.get("binary_output", False)
    if values.ndim == 1:
        return _bin_counts(values, weights, size, binary)
    return np.stack([_bin_counts(row, weights[i] if weights.size else weights, size, binary)
                     for i, row in enumerate(values)]).reshape(len(values), size)


@register("Where")
def _where(node, x):
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("Where of a tensor of rank 0; TF takes rank 1 or more")
    return np.argwhere(x).astype(np.int64)


@register("StringJoin", attrs=("separator",))
def _string_join(node, *inputs):
    sep = node.attrs.get("separator", "").encode()
    _check_broadcast(node, *inputs)
    arrays = np.broadcast_arrays(*[_strings(x) for x in inputs])
    out = np.empty(arrays[0].shape, dtype=object)
    for i in np.ndindex(out.shape):
        out[i] = sep.join(a[i] for a in arrays)
    return out


# Positions count bytes: ``unit="UTF8_CHAR"`` is not implemented.
@register("Substr", attrs={"unit": ("BYTE",)})
def _substr(node, x, pos, length):
    _check_broadcast(node, x, pos, length)
    arrays = np.broadcast_arrays(_strings(x), np.asarray(pos), np.asarray(length))
    out = np.empty(arrays[0].shape, dtype=object)
    for i in np.ndindex(out.shape):
        s, p, n = arrays[0][i], int(arrays[1][i]), int(arrays[2][i])
        if p < 0:
            p += len(s)
        if not 0 <= p <= len(s):
            raise ValueError(f"Substr position {arrays[1][i]} out of range for {s!r}")
        out[i] = s[p:p + n]
    return out


@register("StringLength", attrs=("unit",))
def _string_length(node, x):
    if node.attrs.get("unit", "BYTE") == "UTF8_CHAR":
        return np.vectorize(lambda s: len(s.decode("utf-8")), otypes=[np.int32])(_strings(x))
    return np.vectorize(len, otypes=[np.int32])(_strings(x))
