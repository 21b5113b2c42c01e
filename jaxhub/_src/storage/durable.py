"""Durable copies of a module's functions, readable for years by any later JAX.

A ``.jaxexport`` file is ``jax.export``'s own wrapper (a flatbuffer) around a StableHLO
portable artifact. JAX reads such wrappers for about six months after it wrote them;
StableHLO promises that a portable artifact stays readable for five years. So each
function file gets a durable copy beside it: the portable artifact alone, in a file of
its own (``serve.jaxexport`` -> ``serve.stablehlo``), written for the oldest StableHLO
version that can express it, and described in the manifest by jaxhub's own words
(argument and result types with their symbolic dims, platforms, calling convention).
From those jaxhub rebuilds the callable with the running JAX; see
:func:`rebuild`. The manifest key is optional (``durable_functions``), so the format
version stays 1 and readers that predate it ignore it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

SUFFIX = ".stablehlo"


class DurableCopyError(ValueError):
    """A durable copy that this JAX cannot read (too new, or an unknown convention)."""


def version_tuple(text: str) -> tuple[int, ...]:
    """``"1.18.0"`` -> ``(1, 18, 0)``; ``"0.10.2rc1"`` -> ``(0, 10, 2)``."""
    match = re.match(r"\d+(\.\d+)*", str(text))
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


def stablehlo_version() -> str:
    """The newest StableHLO version the running JAX reads."""
    from jax._src.lib.mlir.dialects import hlo  # noqa: PLC0415 (JAX-internal, kept local)
    return hlo.get_current_version()


def describe(exported: jax_export.Exported, file: str, vjp: bool
             ) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    """The durable record of ``exported`` and the files it names.

    Args:
      exported: a function as ``jax.export`` deserialized it (or exported it).
      file: the function file it is stored in (``functions/serve.jaxexport``).
      vjp: also describe its VJP (when the function is differentiated through it).

    Returns:
      ``(record, {durable file: bytes})``, or None when the function uses something a
      durable copy does not carry (effects, shardings, disabled safety checks); such a
      function keeps only its ``.jaxexport`` file.
    """
    # JAX has kept shardings under several names; a durable copy carries none of them.
    shardings = [s for name in ("in_shardings_hlo", "out_shardings_hlo",
                                "_in_named_shardings", "_out_named_shardings")
                 for s in getattr(exported, name, ())]
    if (exported.ordered_effects or exported.unordered_effects
            or exported.disabled_safety_checks
            or any(s is not None for s in shardings)):
        return None
    stem = file[:-len(".jaxexport")] if file.endswith(".jaxexport") else file
    artifact, version = _portable_artifact(exported)
    durable_file = stem + SUFFIX
    record = {
        "file": durable_file,
        "sha256": hashlib.sha256(artifact).hexdigest(),
        "size": len(artifact),
        "stablehlo_version": version,
        "calling_convention": exported.calling_convention_version,
        "platforms": list(exported.platforms),
        "nr_devices": exported.nr_devices,
        "in_avals": [_aval_json(a) for a in exported.in_avals],
        "out_avals": [_aval_json(a) for a in exported.out_avals],
        "kept_args": list(exported.module_kept_var_idx),
        "uses_global_constants": bool(exported.uses_global_constants),
    }
    files = {durable_file: artifact}
    if vjp:
        described = describe(exported.vjp(), stem + ".vjp", vjp=False)
        if described is None:
            return None
        record["vjp"], vjp_files = described
        files.update(vjp_files)
    return record, files


def rebuild(record: Mapping[str, Any], read: Callable[[str], bytes]
            ) -> jax_export.Exported:
    """The function a durable record describes, as a ``jax.export.Exported`` of this JAX.

    Args:
      record: a record written by :func:`describe` (from the manifest).
      read: returns the checked bytes of a durable file named in the record.

    Raises:
      DurableCopyError: the artifact is newer than this JAX reads, or its calling
        convention is one this JAX does not call.
    """
    from jax._src.export import _export  # noqa: PLC0415 (the supported conventions)
    version = record["stablehlo_version"]
    if version_tuple(version) > version_tuple(stablehlo_version()):
        raise DurableCopyError(f"its StableHLO version {version} is newer than this JAX "
                               f"reads (up to {stablehlo_version()})")
    convention = int(record["calling_convention"])
    lo = _export.minimum_supported_calling_convention_version
    hi = _export.maximum_supported_calling_convention_version
    if not lo <= convention <= hi:
        raise DurableCopyError(f"its calling convention {convention} is outside the "
                               f"{lo}..{hi} this JAX calls")
    scope = jax_export.SymbolicScope()
    in_avals = tuple(_aval(a, scope) for a in record["in_avals"])
    out_avals = tuple(_aval(a, scope) for a in record["out_avals"])
    vjp_record = record.get("vjp")
    known = {
        "fun_name": record["file"],
        "in_tree": jax.tree.structure((tuple(in_avals), {})),
        "out_tree": jax.tree.structure(tuple(out_avals)),
        "in_avals": in_avals, "out_avals": out_avals,
        "_has_named_shardings": False,
        "_in_named_shardings": (None,) * len(in_avals),
        "_out_named_shardings": (None,) * len(out_avals),
        "in_shardings_hlo": (None,) * len(in_avals),
        "out_shardings_hlo": (None,) * len(out_avals),
        "nr_devices": int(record["nr_devices"]),
        "platforms": tuple(record["platforms"]),
        "ordered_effects": (), "unordered_effects": (), "disabled_safety_checks": (),
        "mlir_module_serialized": read(record["file"]),
        "calling_convention_version": convention,
        "module_kept_var_idx": tuple(int(i) for i in record["kept_args"]),
        "uses_global_constants": bool(record["uses_global_constants"]),
        "_get_vjp": (lambda _: rebuild(vjp_record, read)) if vjp_record else None,
    }
    # Exported's fields change between JAX releases; those this record does not know
    # keep their defaults.
    names = {f.name for f in dataclasses.fields(jax_export.Exported)}
    return jax_export.Exported(**{k: v for k, v in known.items() if k in names})


def files_of(record: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every durable file a record names -> the record that checks it."""
    files = {record["file"]: record}
    if record.get("vjp"):
        files.update(files_of(record["vjp"]))
    return files


def _portable_artifact(exported: jax_export.Exported) -> tuple[bytes, str]:
    """The function's StableHLO as a portable artifact for the oldest version that can
    express it, and that version.

    ``jax.export`` writes for a version about four weeks old, which older JAX releases
    cannot read; the oldest version StableHLO still writes is read by every JAX since
    early 2024. A function using newer operations is written for newer versions.
    """
    from jax._src.lib import xla_client  # noqa: PLC0415 (JAX-internal, kept local)
    from jax._src.lib.mlir.dialects import hlo  # noqa: PLC0415
    requirement = hlo.StablehloCompatibilityRequirement
    versions = [hlo.get_version_from_compatibility_requirement(wanted)
                for wanted in (requirement.MAX, requirement.WEEK_12, requirement.NONE)]
    # The bytecode jax.export wrote is read back directly: printing it as text and
    # parsing that text (exported.mlir_module()) took most of the time of writing a
    # module with large gradients, for the same StableHLO. The text is the fallback.
    for module in (exported.mlir_module_serialized, None):
        for version in versions:
            try:
                return bytes(xla_client._xla.mlir.serialize_portable_artifact(
                    exported.mlir_module() if module is None else module, version)), version
            except Exception:  # noqa: BLE001 (an op this version cannot express)
                continue
    raise DurableCopyError("StableHLO could not write the function at any version")


def _aval_json(aval) -> dict[str, Any]:
    return {"shape": [d if isinstance(d, int) else str(d) for d in aval.shape],
            "dtype": np.dtype(aval.dtype).name}


def _aval(data: Mapping[str, Any], scope: jax_export.SymbolicScope) -> jax.core.ShapedArray:
    dims = data["shape"]
    if all(isinstance(d, int) for d in dims):
        shape = tuple(dims)
    else:
        shape = jax_export.symbolic_shape(", ".join(str(d) for d in dims), scope=scope)
    return jax.core.ShapedArray(shape, jnp.dtype(data["dtype"]))
