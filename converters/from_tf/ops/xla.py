"""XLA's ops in TF graphs: ``XlaCallModule`` and the ``tf2xla`` ops (``XlaDot``, ...).

``XlaCallModule`` is the StableHLO that ``jax2tf`` (native serialization) puts in a graph.

The serialized module is wrapped as a :class:`jax.export.Exported` and called, so JAX
inlines the very computation that was exported; nothing is re-derived from TF ops.

Gradients: ``jax2tf`` saves its VJP as a TF custom gradient (an ``IdentityN`` with
``_gradient_op_type``, see :meth:`Interpreter._custom_gradient`), which the interpreter
turns into a ``jax.custom_vjp``, so the call itself is never differentiated. Without a
saved custom gradient (``jax2tf.convert(..., with_gradient=False)``, or a SavedModel
written with ``experimental_custom_gradients=False``) TF has no gradient for the op, and
neither has the conversion: differentiating through it raises, naming the node, and the
function is stored forward-only (a gradient of zero would be wrong).

Shapes: the call takes and returns what the module's ``main`` does, read from the module
(:mod:`jaxhub_tf.from_tf.stablehlo`), not from TF's ``Sout`` (``-1`` for every unknown
size, whichever input size it follows).

Platforms: a module lowered only for some platforms (``jax2tf`` defaults to the one it
ran on) can only be re-exported for those (the SavedModel reader checks).
"""

from __future__ import annotations

from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from jaxhub_tf.from_tf import stablehlo
from jaxhub_tf.from_tf.ops.array import without_gradient
from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax, is_static, shape_tuple


#: Not implemented: called TF functions (``function_list``), side effects (tokens) and
#: the pre-shape-polymorphism ``dim_args_spec``. Checks and partitioners change no value;
#: ``Sout`` is what the module says of its results.
_ATTRS = {"version": None, "module": None, "Sout": None, "platforms": None,
          "disabled_checks": None, "use_shardy_partitioner": None,
          "function_list": ([],), "has_token_input_output": (False,), "dim_args_spec": ([],)}


@register("XlaCallModule", attrs=_ATTRS)
def _xla_call_module(node, *args):
    reason = (f"TF node {node.name!r} (XlaCallModule) has no gradient: its SavedModel "
              "holds no custom gradient for it (jax2tf.convert with with_gradient=True, "
              "saved with experimental_custom_gradients=True, stores one)")
    args = [as_jax(a) for a in args]
    exported = _exported(node, args)
    return list(without_gradient(exported.call, reason)(*args))


def _exported(node, args) -> jax_export.Exported:
    """The module as an ``Exported`` typed as its ``main`` is (see
    :mod:`jaxhub_tf.from_tf.stablehlo`): JAX solves its symbols from the args' sizes."""
    module = node.attr("module").encode("utf-8", "surrogateescape")
    shapes = stablehlo.module_shapes(module, len(args))
    in_avals = tuple(jax.core.ShapedArray(s, a.dtype) for s, a in zip(shapes.inputs, args))
    out_avals = tuple(jax.core.ShapedArray(s, dtype)
                      for s, dtype in zip(shapes.outputs, node.attr("Tout")))
    n_in, n_out = len(in_avals), len(out_avals)
    return jax_export.Exported(
        fun_name=node.name.replace("/", "_"),
        in_tree=jax.tree_util.tree_structure((tuple(range(n_in)), {})),
        in_avals=in_avals,
        out_tree=jax.tree_util.tree_structure(tuple(range(n_out))),
        out_avals=out_avals,
        _has_named_shardings=False,
        _in_named_shardings=(None,) * n_in,
        _out_named_shardings=(None,) * n_out,
        in_shardings_hlo=(None,) * n_in,
        out_shardings_hlo=(None,) * n_out,
        nr_devices=1,
        platforms=tuple(platform_names(node.attr("platforms", []))),
        ordered_effects=(),
        unordered_effects=(),
        disabled_safety_checks=(),
        mlir_module_serialized=module,
        calling_convention_version=node.attr("version"),
        module_kept_var_idx=tuple(range(n_in)),
        uses_global_constants=any(not isinstance(d, int) for a in in_avals for d in a.shape),
        _get_vjp=None)


def platform_names(platforms: Iterable[str]) -> list[str]:
    """TF's platform names (``"CPU"``) as JAX's (``"cpu"``)."""
    return [p.lower() for p in platforms]


# -- XLA's own ops (``tf2xla``): what ``jit_compile`` graphs and XLA-aware libraries hold --
#
# Their attributes ``dimension_numbers`` and ``precision_config`` are serialized XLA
# protos; the few integer fields read here are decoded from the protobuf wire format, so
# conversion needs neither TensorFlow nor XLA's Python protos.


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


def proto_ints(data: str | bytes) -> dict[int, list[int]]:
    """The integer fields of a serialized proto: field number -> values, in order.

    Reads varint fields and packed repeated varints, the only kinds dimension-number
    protos have; other wire types are skipped.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    fields: dict[int, list[int]] = {}
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            fields.setdefault(number, []).append(value)
        elif wire == 2:
            size, at = _varint(data, at)
            end, packed = at + size, fields.setdefault(number, [])
            while at < end:
                value, at = _varint(data, at)
                packed.append(value)
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in an XLA attribute")
    return fields


def _dims(fields: dict[int, list[int]], number: int) -> tuple[int, ...]:
    return tuple(fields.get(number, ()))


def _dim(fields: dict[int, list[int]], number: int) -> int:
    return fields.get(number, [0])[-1]


def _ints(value) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


#: ``precision_config`` asks for a precision of the products; XLA:CPU computes float32
#: products in full precision whatever it says.
_DOT_ATTRS = ("dimension_numbers", "precision_config")


@register("XlaDot", "XlaDotV2", attrs=(*_DOT_ATTRS, "preferred_element_type"))
def _xla_dot(node, lhs, rhs):
    f = proto_ints(node.attr("dimension_numbers"))
    numbers = ((_dims(f, 1), _dims(f, 2)), (_dims(f, 3), _dims(f, 4)))
    dtype = node.attr("preferred_element_type", None)
    return jax.lax.dot_general(as_jax(lhs), as_jax(rhs), numbers, preferred_element_type=dtype)


@register("XlaConv", "XlaConvV2",
          attrs=(*_DOT_ATTRS, "preferred_element_type", "batch_group_count"))
def _xla_conv(node, lhs, rhs, strides, padding, lhs_dilation, rhs_dilation, groups):
    f = proto_ints(node.attr("dimension_numbers"))
    numbers = jax.lax.ConvDimensionNumbers(
        lhs_spec=(_dim(f, 7), _dim(f, 8)) + _dims(f, 11),
        rhs_spec=(_dim(f, 4), _dim(f, 3)) + _dims(f, 6),
        out_spec=(_dim(f, 9), _dim(f, 10)) + _dims(f, 12))
    pads = [tuple(p) for p in np.asarray(padding).reshape(-1, 2).astype(int).tolist()]
    return jax.lax.conv_general_dilated(
        as_jax(lhs), as_jax(rhs), _ints(strides), pads, _ints(lhs_dilation),
        _ints(rhs_dilation), numbers, feature_group_count=int(np.asarray(groups)),
        batch_group_count=node.attr("batch_group_count", 1),
        preferred_element_type=node.attr("preferred_element_type", None))


def _index_vectors_last(indices, index_vector_dim: int) -> jax.Array:
    """``indices`` with its index vectors on the last axis, where ``lax`` wants them.

    XLA lets ``index_vector_dim`` name any axis, or the rank (scalar indices).
    """
    indices = as_jax(indices)
    if index_vector_dim == indices.ndim:
        return indices[..., None]
    return jnp.moveaxis(indices, index_vector_dim, -1)


@register("XlaGather", attrs=("dimension_numbers", "indices_are_sorted"))
def _xla_gather(node, operand, start_indices, slice_sizes):
    f = proto_ints(node.attr("dimension_numbers"))
    numbers = jax.lax.GatherDimensionNumbers(
        offset_dims=_dims(f, 1), collapsed_slice_dims=_dims(f, 2), start_index_map=_dims(f, 3),
        operand_batching_dims=_dims(f, 5), start_indices_batching_dims=_dims(f, 6))
    indices = _index_vectors_last(start_indices, _dim(f, 4))
    return jax.lax.gather(as_jax(operand), indices, numbers, tuple(_ints(slice_sizes)),
                          indices_are_sorted=node.attr("indices_are_sorted", False),
                          mode=jax.lax.GatherScatterMode.CLIP)


@register("XlaDynamicSlice")
def _xla_dynamic_slice(node, x, start_indices, size_indices):
    return jax.lax.dynamic_slice(as_jax(x), list(as_jax(start_indices)), _ints(size_indices))


@register("XlaDynamicUpdateSlice")
def _xla_dynamic_update_slice(node, x, update, indices):
    return jax.lax.dynamic_update_slice(as_jax(x), as_jax(update), list(as_jax(indices)))


@register("XlaPad")
def _xla_pad(node, x, value, low, high, interior):
    config = list(zip(_ints(low), _ints(high), _ints(interior)))
    x = as_jax(x)
    return jax.lax.pad(x, as_jax(value).astype(x.dtype), config)


@register("XlaReducePrecision", attrs=("exponent_bits", "mantissa_bits"))
def _xla_reduce_precision(node, x):
    return jax.lax.reduce_precision(as_jax(x), node.attr("exponent_bits"),
                                    node.attr("mantissa_bits"))


# Sharding annotations and barriers change no value on one device.
@register("XlaSharding", attrs=("sharding", "unspecified_dims"))
def _xla_sharding(node, x):
    return x


@register("XlaOptimizationBarrier")
def _xla_optimization_barrier(node, *xs):
    return list(jax.lax.optimization_barrier(tuple(as_jax(x) for x in xs)))


#: ``tf.random.Algorithm`` ids (what ``XlaRngBitGenerator`` takes) -> XLA's algorithms.
_RNG_ALGORITHMS = {1: jax.lax.RandomAlgorithm.RNG_PHILOX,
                   2: jax.lax.RandomAlgorithm.RNG_THREE_FRY,
                   3: jax.lax.RandomAlgorithm.RNG_DEFAULT}


@register("XlaRngBitGenerator", attrs=("dtype", "Tshape"))
def _xla_rng_bit_generator(node, algorithm, initial_state, shape):
    """XLA's ``RngBitGenerator``: the same HLO op TF compiles, so the same bits.

    The ``u64[2]`` state is handed to JAX as four 32-bit words (low word first, as JAX's
    lowering bitcasts them back). With JAX's 64-bit types off (the 64-bit rule) a traced
    state arrives as 32-bit words: its high words are taken as zero, exact for states that
    fit in 32 bits; a static state is exact whatever its value. The returned state is then
    given as its low words, and 64-bit outputs are drawn as 32-bit words (TF's differ).
    """
    if not is_static(algorithm) or int(np.asarray(algorithm)) not in _RNG_ALGORITHMS:
        raise NotImplementedError(
            f"XlaRngBitGenerator algorithm must be a constant among "
            f"{sorted(_RNG_ALGORITHMS)} (tf.random.Algorithm ids)")
    if tuple(np.shape(initial_state)) != (2,):
        raise NotImplementedError(
            "XlaRngBitGenerator with a state of shape "
            f"{tuple(np.shape(initial_state))}: only u64[2] states are supported (JAX's "
            "RngBitGenerator takes no Philox u64[3] state)")
    dtype = np.dtype(node.attr("dtype", np.dtype(np.uint64)))
    bits_dtype = jax.dtypes.canonicalize_dtype(np.dtype(f"uint{dtype.itemsize * 8}"))
    new_words, bits = jax.lax.rng_bit_generator(
        _state_words(initial_state), shape_tuple(shape), bits_dtype,
        _RNG_ALGORITHMS[int(np.asarray(algorithm))])
    out_dtype = jax.dtypes.canonicalize_dtype(dtype)
    if out_dtype != bits_dtype:  # signed outputs: the same bits, reinterpreted
        bits = jax.lax.bitcast_convert_type(bits, out_dtype)
    pairs = new_words.reshape(2, 2)
    if jax.config.jax_enable_x64:
        new_state = jax.lax.bitcast_convert_type(pairs, jnp.uint64)
    else:
        new_state = pairs[:, 0]
    return [new_state, bits]


def _state_words(state) -> jax.Array:
    """A ``u64[2]`` state as JAX's ``u32[4]`` key: each word's low half, then its high half."""
    if is_static(state):
        words = np.asarray(state).astype(np.uint64)
        return jnp.asarray(np.stack([words & 0xFFFFFFFF, words >> 32], -1)
                           .astype(np.uint32).reshape(4))
    state = as_jax(state)
    if state.dtype == jnp.uint64:
        return jax.lax.bitcast_convert_type(state, jnp.uint32).reshape(4)
    low = state.astype(jnp.uint32)
    return jnp.stack([low, jnp.zeros_like(low)], -1).reshape(4)


def _computation(node, attr: str):
    """The TF function ``attr`` names, as ``f(*scalars) -> tuple`` for a ``lax`` reducer."""
    def run(*args):
        outputs = node.ctx.interpreter.call(node.attr(attr), list(args), node.ctx.fork())
        return tuple(as_jax(o) for o in outputs)
    return run


@register("XlaReduceWindow", attrs=("computation",))
def _xla_reduce_window(node, x, init, window, strides, base_dilations, window_dilations,
                       padding):
    reducer = _computation(node, "computation")
    pads = [tuple(p) for p in np.asarray(padding).reshape(-1, 2).astype(int).tolist()]
    return jax.lax.reduce_window(
        as_jax(x), as_jax(init), lambda a, b: reducer(a, b)[0], tuple(_ints(window)),
        tuple(_ints(strides)), pads, tuple(_ints(base_dilations)),
        tuple(_ints(window_dilations)))


@register("XlaVariadicReduceV2", attrs=("dimensions_to_reduce", "reducer"))
def _xla_variadic_reduce(node, *args):
    n = len(args) // 2
    reducer = _computation(node, "reducer")
    out = jax.lax.reduce([as_jax(a) for a in args[:n]], [as_jax(a) for a in args[n:]],
                         lambda xs, ys: list(reducer(*xs, *ys)),
                         tuple(node.attr("dimensions_to_reduce")))
    return list(out)


#: The ``lax`` scatter for each update computation made of one primitive.
_SCATTERS = {"add": jax.lax.scatter_add, "mul": jax.lax.scatter_mul,
             "max": jax.lax.scatter_max, "min": jax.lax.scatter_min}


def _traced_computation(node, attr: str, dtypes) -> jax.core.Jaxpr:
    """The jaxpr of the TF function ``attr`` on scalars of ``dtypes``."""
    computation = _computation(node, attr)
    scalars = [jax.ShapeDtypeStruct((), d) for d in dtypes]
    return jax.make_jaxpr(lambda *xs: computation(*xs)[0])(*scalars).jaxpr


def _scatter_kind(node, dtype) -> Callable:
    """The ``lax`` scatter doing what ``update_computation`` does to (old, update).

    ``lax`` has no scatter with an arbitrary combiner: the computation is traced on
    scalars and recognized (keep the update: a plain scatter; one add/mul/max/min).
    """
    jaxpr = _traced_computation(node, "update_computation", (dtype, dtype))
    old, update = jaxpr.invars
    if not jaxpr.eqns and jaxpr.outvars[0] is update:
        return jax.lax.scatter
    if (len(jaxpr.eqns) == 1 and jaxpr.eqns[0].primitive.name in _SCATTERS
            and set(jaxpr.eqns[0].invars) == {old, update}):
        return _SCATTERS[jaxpr.eqns[0].primitive.name]
    raise NotImplementedError(
        f"XlaScatter with an update computation other than replace, add, mul, max or min "
        f"({[e.primitive.name for e in jaxpr.eqns]})")


@register("XlaScatter", attrs=("update_computation", "dimension_numbers",
                               "indices_are_sorted"))
def _xla_scatter(node, operand, indices, updates):
    f = proto_ints(node.attr("dimension_numbers"))
    numbers = jax.lax.ScatterDimensionNumbers(
        update_window_dims=_dims(f, 1), inserted_window_dims=_dims(f, 2),
        scatter_dims_to_operand_dims=_dims(f, 3), operand_batching_dims=_dims(f, 5),
        scatter_indices_batching_dims=_dims(f, 6))
    operand = as_jax(operand)
    scatter = _scatter_kind(node, operand.dtype)
    return scatter(operand, _index_vectors_last(indices, _dim(f, 4)), as_jax(updates),
                   numbers, indices_are_sorted=node.attr("indices_are_sorted", False),
                   mode=jax.lax.GatherScatterMode.CLIP)


@register("XlaVariadicSort", attrs=("comparator", "is_stable"))
def _xla_variadic_sort(node, *args):
    """Operands sorted together along ``dimension`` by the order of the first.

    ``lax.sort`` has no arbitrary comparator: the comparator is traced on scalars
    ``(lhs0, rhs0, lhs1, rhs1, ...)`` and must be one ``lt``/``gt`` of the first pair.
    """
    operands, dimension = [as_jax(a) for a in args[:-1]], int(np.asarray(args[-1]))
    jaxpr = _traced_computation(node, "comparator",
                                [o.dtype for o in operands for _ in range(2)])
    lhs, rhs = jaxpr.invars[:2]
    (eqn,) = jaxpr.eqns if len(jaxpr.eqns) == 1 else (None,)
    if eqn is None or eqn.primitive.name not in ("lt", "gt") or eqn.invars != [lhs, rhs]:
        raise NotImplementedError(
            "XlaVariadicSort with a comparator other than lhs0 < rhs0 or lhs0 > rhs0")
    descending = eqn.primitive.name == "gt"
    key = operands[0]
    if descending:  # an order-reversing map of the key: sort it ascending
        key = -key if jnp.issubdtype(key.dtype, jnp.inexact) else ~key
    out = jax.lax.sort([key] + operands, dimension=dimension,
                       is_stable=node.attr("is_stable", False), num_keys=1)
    return list(out[1:])


def _one_primitive(node, attr: str, dtype) -> str | None:
    """The primitive that the binary TF function ``attr`` is, applied to (lhs, rhs)."""
    jaxpr = _traced_computation(node, attr, (dtype, dtype))
    if len(jaxpr.eqns) == 1 and jaxpr.eqns[0].invars == list(jaxpr.invars):
        return jaxpr.eqns[0].primitive.name
    return None


#: A select of the window's greatest (least) element: the gradient of a max (min) pool.
_SELECTS = {"ge": (jax.lax.max, -np.inf), "le": (jax.lax.min, np.inf)}


@register("XlaSelectAndScatter", attrs=("select", "scatter"))
def _xla_select_and_scatter(node, x, window, strides, padding, source, init):
    """``source`` added at each window's selected element, onto ``init``.

    Done as the gradient of a max (min) pool, which is exactly that for a ``>=``
    (``<=``) select and an add scatter, the only kinds implemented.
    """
    x = as_jax(x)
    select, scatter = _one_primitive(node, "select", x.dtype), _one_primitive(
        node, "scatter", x.dtype)
    if select not in _SELECTS or scatter != "add":
        raise NotImplementedError(
            "XlaSelectAndScatter other than a >= or <= select with an add scatter")
    reduce, identity = _SELECTS[select]
    pads = [tuple(p) for p in np.asarray(padding).reshape(-1, 2).astype(int).tolist()]
    pool = lambda v: jax.lax.reduce_window(v, np.asarray(identity, x.dtype), reduce,
                                           tuple(_ints(window)), tuple(_ints(strides)), pads)
    _, vjp = jax.vjp(pool, x)
    return vjp(as_jax(source).astype(x.dtype))[0] + as_jax(init).astype(x.dtype)
