"""``XlaCallModule``: the StableHLO that ``jax2tf`` (native serialization) puts in a graph.

The serialized module is wrapped as a :class:`jax.export.Exported` and called, so JAX
inlines the very computation that was exported; nothing is re-derived from TF ops.

Gradients: ``jax2tf`` saves its VJP as a TF custom gradient (an ``IdentityN`` with
``_gradient_op_type``, see :meth:`Interpreter._custom_gradient`), which the interpreter
turns into a ``jax.custom_vjp``. The call itself is therefore made on stopped-gradient
inputs: without a saved custom gradient a jax2tf function is not differentiable.

Platforms: a module lowered only for some platforms (``jax2tf`` defaults to the one it
ran on) can only be re-exported for those (the SavedModel reader checks).
"""

from __future__ import annotations

from typing import Iterable

import jax
from jax import export as jax_export

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax, is_static


#: Not implemented: called TF functions (``function_list``), side effects (tokens) and
#: the pre-shape-polymorphism ``dim_args_spec``. Checks and partitioners change no value.
_ATTRS = {"version": None, "module": None, "Sout": None, "platforms": None,
          "disabled_checks": None, "use_shardy_partitioner": None,
          "function_list": ([],), "has_token_input_output": (False,), "dim_args_spec": ([],)}


@register("XlaCallModule", attrs=_ATTRS)
def _xla_call_module(node, *args):
    args = [jax.lax.stop_gradient(as_jax(a)) if not is_static(a) else as_jax(a)
            for a in args]
    exported = _exported(node, args)
    return list(exported.call(*args))


def _exported(node, args) -> jax_export.Exported:
    in_avals = tuple(jax.core.ShapedArray(a.shape, a.dtype) for a in args)
    out_avals = tuple(jax.core.ShapedArray(_output_shape(shape, in_avals), dtype)
                      for shape, dtype in zip(node.attr("Sout"), node.attr("Tout")))
    n_in, n_out = len(in_avals), len(out_avals)
    module = node.attr("module")
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
        mlir_module_serialized=module.encode("utf-8", "surrogateescape"),
        calling_convention_version=node.attr("version"),
        module_kept_var_idx=tuple(range(n_in)),
        uses_global_constants=any(not isinstance(d, int) for a in in_avals for d in a.shape),
        _get_vjp=None)


def _output_shape(shape, in_avals) -> tuple:
    """``Sout`` with its unknown sizes filled in from the inputs' symbolic sizes.

    jax2tf records ``-1`` for every polymorphic output size. When the inputs hold exactly
    one symbolic size (the batch), that is what each ``-1`` stands for.
    """
    if shape is None:
        raise NotImplementedError("XlaCallModule output of unknown rank")
    if all(d is not None for d in shape):
        return tuple(shape)
    symbols = {str(d): d for a in in_avals for d in a.shape if not isinstance(d, int)}
    if len(symbols) != 1:
        raise NotImplementedError(
            f"XlaCallModule output shape {shape} with inputs of {len(symbols)} unknown "
            "sizes: cannot tell which size each unknown output size is")
    (symbol,) = symbols.values()
    return tuple(symbol if d is None else d for d in shape)


def platform_names(platforms: Iterable[str]) -> list[str]:
    """TF's platform names (``"CPU"``) as JAX's (``"cpu"``)."""
    return [p.lower() for p in platforms]
