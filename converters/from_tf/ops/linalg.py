"""Linear algebra on (batches of) matrices: matrix products, ``tf.linalg``.

Each op works on the two innermost axes and maps over the leading ones, as TF does.
Matrix products of static inputs stay static (numpy).
"""

from __future__ import annotations

import string

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax, is_static, static_ints, xnp


def _adjoint(x):
    return jnp.conj(jnp.swapaxes(x, -1, -2))


# ``grad_a``/``grad_b`` mark gradient matmuls for TF's kernels.
@register("MatMul", attrs=("transpose_a", "transpose_b", "grad_a", "grad_b"))
def _matmul(node, a, b):
    if node.attr("transpose_a", False):
        a = a.T
    if node.attr("transpose_b", False):
        b = b.T
    return xnp(a, b).matmul(a, b)


@register("BatchMatMulV2", "BatchMatMulV3", "BatchMatMul",
          attrs=("adj_x", "adj_y", "grad_x", "grad_y"))
def _batch_matmul(node, x, y):
    m = xnp(x, y)
    if node.attr("adj_x", False):
        x = m.conj(m.swapaxes(x, -1, -2))
    if node.attr("adj_y", False):
        y = m.conj(m.swapaxes(y, -1, -2))
    out = m.matmul(x, y)
    if node.has_attr("Tout"):
        out = out.astype(node.attr("Tout"))
    return out


@register("Einsum", attrs=("equation",))
def _einsum(node, *operands):
    equation = node.attr("equation").replace(" ", "")
    if len(operands) == 2:
        labels = _contraction_labels(equation, np.ndim(operands[0]), np.ndim(operands[1]))
        if labels is not None and _is_matrix_product(*labels, *operands):
            return _contract(*labels, as_jax(operands[0]), as_jax(operands[1]))
    return jnp.einsum(equation, *operands)


def _contraction_labels(equation: str, lhs_ndim: int, rhs_ndim: int
                        ) -> tuple[str, str, str] | None:
    """The labels of a plain two-operand contraction, with ``...`` spelled out.

    Plain means: an explicit output, no label repeated within one term, and every input
    label either in the output or in both inputs. Anything else returns None (and goes
    to ``jnp.einsum``).
    """
    if "->" not in equation:
        return None
    inputs, out = equation.split("->")
    terms = inputs.split(",")
    if len(terms) != 2:
        return None
    spare = [c for c in string.ascii_letters if c not in equation]
    widths = [ndim - len(t.replace("...", "")) for t, ndim in zip(terms, (lhs_ndim, rhs_ndim))]
    # Ellipsis dims align from the right, as in broadcasting.
    ellipsis = "".join(spare[:max(widths + [0])])
    lhs, rhs = (t.replace("...", ellipsis[len(ellipsis) - w:]) for t, w in zip(terms, widths))
    out = out.replace("...", ellipsis)
    if (len(lhs), len(rhs)) != (lhs_ndim, rhs_ndim) or any(
            len(set(t)) != len(t) for t in (lhs, rhs, out)):
        return None
    if any(c not in out and c not in (rhs if c in lhs else lhs) for c in lhs + rhs):
        return None  # a label summed within one operand
    if any(c not in lhs + rhs for c in out):
        return None
    return lhs, rhs, out


def _is_matrix_product(lhs: str, rhs: str, out: str, a, b) -> bool:
    """Whether something is contracted, and shared labels have one size (no broadcasting)."""
    if not set(lhs) & set(rhs) - set(out):
        return False  # an outer or elementwise product: jnp.einsum multiplies
    # Symbolic sizes compare equal only when they are the same expression.
    return all(a.shape[lhs.index(c)] == b.shape[rhs.index(c)] for c in set(lhs) & set(rhs))


def _contract(lhs: str, rhs: str, out: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """``einsum(lhs,rhs->out)`` as one ``dot_general`` whose operands keep their minor axis.

    ``jnp.einsum`` hands XLA a ``dot_general`` with batch axes anywhere; XLA:CPU then
    transposes each operand to [batch, free, contracting] / [batch, contracting, free],
    which for attention (``BTNH,BSNH->BNTS``) moves the head axis H from minor to major: a
    full transpose of the keys. Here each operand becomes [batch, ...] with its other
    axes in their own order (free and contracting groups kept where they are), so the
    transposes only move whole rows of the minor axis, and XLA takes the ``dot_general``
    as it is.
    """
    batch = [c for c in out if c in lhs and c in rhs]
    free = [c for c in out if c not in batch]
    if free and free[0] not in lhs:
        # The output's free axes come rhs first: swapping operands saves transposing it.
        lhs, rhs, a, b = rhs, lhs, b, a
    contracting = [c for c in lhs if c in rhs and c not in out]
    layouts = []
    for term in (lhs, rhs):
        own = [c for c in term if c not in batch and c not in contracting]
        rest = [c for c in term if c not in batch]
        contracting_last = not rest or rest[-1] in contracting
        layouts.append(batch + (own + contracting if contracting_last
                                else contracting + own))
    (lhs_t, rhs_t), dtype = layouts, jnp.result_type(a, b)
    a = jnp.transpose(a.astype(dtype), [lhs.index(c) for c in lhs_t])
    b = jnp.transpose(b.astype(dtype), [rhs.index(c) for c in rhs_t])
    n = len(batch)
    dims = (([lhs_t.index(c) for c in contracting], [rhs_t.index(c) for c in contracting]),
            (list(range(n)), list(range(n))))
    result = jax.lax.dot_general(a, b, dims)
    produced = batch + [c for c in lhs_t if c not in rhs] + [c for c in rhs_t if c not in lhs]
    return jnp.transpose(result, [produced.index(c) for c in out])


@register("Cholesky")
def _cholesky(node, x):
    return jnp.linalg.cholesky(as_jax(x))


@register("MatrixInverse", attrs=("adjoint",))
def _matrix_inverse(node, x):
    x = as_jax(x)
    return jnp.linalg.inv(_adjoint(x) if node.attr("adjoint", False) else x)


@register("MatrixDeterminant")
def _matrix_determinant(node, x):
    return jnp.linalg.det(as_jax(x))


@register("LogMatrixDeterminant")
def _log_matrix_determinant(node, x):
    sign, log_abs = jnp.linalg.slogdet(as_jax(x))
    return [sign, log_abs]


@register("MatrixSolve", attrs=("adjoint",))
def _matrix_solve(node, matrix, rhs):
    matrix = as_jax(matrix)
    if node.attr("adjoint", False):
        matrix = _adjoint(matrix)
    return jnp.linalg.solve(matrix, as_jax(rhs))


@register("MatrixTriangularSolve", attrs=("lower", "adjoint"))
def _matrix_triangular_solve(node, matrix, rhs):
    matrix, rhs = as_jax(matrix), as_jax(rhs)
    batch = jnp.broadcast_shapes(matrix.shape[:-2], rhs.shape[:-2])
    return jax.lax.linalg.triangular_solve(
        jnp.broadcast_to(matrix, batch + matrix.shape[-2:]),
        jnp.broadcast_to(rhs, batch + rhs.shape[-2:]), left_side=True,
        lower=node.attr("lower", True), transpose_a=node.attr("adjoint", False),
        conjugate_a=node.attr("adjoint", False))


@register("Qr", attrs=("full_matrices",))
def _qr(node, x):
    mode = "complete" if node.attr("full_matrices", False) else "reduced"
    q, r = jnp.linalg.qr(as_jax(x), mode=mode)
    return [q, r]


@register("Svd", attrs=("compute_uv", "full_matrices"))
def _svd(node, x):
    x = as_jax(x)
    full = node.attr("full_matrices", False)
    if not node.attr("compute_uv", True):
        s = jnp.linalg.svd(x, compute_uv=False)
        empty = jnp.zeros((0,), x.dtype)
        return [s, empty, empty]
    u, s, vh = jnp.linalg.svd(x, full_matrices=full)
    return [s, u, _adjoint(vh)]  # TF returns v, not its adjoint


@register("SelfAdjointEigV2", attrs=("compute_v",))
def _self_adjoint_eig(node, x):
    # TF reads the lower triangle only (so its gradient is lower triangular too).
    x = as_jax(x)
    lower = jnp.tril(x)
    w, v = jnp.linalg.eigh(lower + _adjoint(jnp.tril(x, -1)), symmetrize_input=False)
    return [w, v if node.attr("compute_v", True) else jnp.zeros((0,), x.dtype)]


# JAX computes general eigendecompositions on the CPU only, as TF's kernel does.
@register("Eig", attrs=("compute_v",))
def _eig(node, x):
    dtype = node.attr("Tout")
    w, v = jnp.linalg.eig(as_jax(x))
    v = v.astype(dtype) if node.attr("compute_v", True) else jnp.zeros((0,), dtype)
    return [w.astype(dtype), v]


@register("MatrixBandPart")
def _matrix_band_part(node, x, num_lower, num_upper):
    """The band; its bounds may be computed from tensor values (the shape does not move)."""
    x = as_jax(x)
    lower, upper = (int(np.asarray(b)) if is_static(b) else as_jax(b)
                    for b in (num_lower, num_upper))
    rows, cols = x.shape[-2:]
    i = np.arange(rows)[:, None]
    j = np.arange(cols)[None, :]
    keep = ((lower < 0) | (i - j <= lower)) & ((upper < 0) | (j - i <= upper))
    return jnp.where(keep, x, jnp.zeros_like(x))


def _diag_range(k) -> tuple[int, int]:
    """``k`` (one diagonal, or ``[low, high]``) as the range ``(low, high)``."""
    k = static_ints(k)
    return k[0], k[-1]


def _band(k, rows: int, cols: int, align: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the packed diagonals of a band sit in a ``rows x cols`` matrix.

    TF packs the diagonals ``k[1]`` down to ``k[0]`` as rows of ``max_len`` entries; a
    diagonal shorter than that is padded at the side ``align`` says (``"RIGHT_LEFT"``:
    superdiagonals right-aligned, subdiagonals left-aligned). Returns ``rows_of``,
    ``cols_of`` (``[diagonals, max_len]``: each packed entry's matrix position, clipped)
    and ``valid`` (false for padding).
    """
    low, high = _diag_range(k)
    max_len = min(rows + min(high, 0), cols - max(low, 0))
    i, j, valid = _band_positions(np.arange(high, low - 1, -1), max_len, rows, cols, align)
    return np.clip(i, 0, rows - 1), np.clip(j, 0, cols - 1), valid


def _band_positions(d, max_len: int, rows: int, cols: int, align: str):
    """Row, column (unclipped) and validity of each packed entry of the diagonals ``d``
    (a vector, static or traced), as :func:`_band` describes."""
    xp = xnp(d)
    d = d[:, None]
    length = xp.minimum(rows + xp.minimum(d, 0), cols - xp.maximum(d, 0))
    sup, sub = align.split("_")
    right = ((d > 0) & (sup == "RIGHT")) | ((d < 0) & (sub == "RIGHT"))
    m = xp.arange(max_len)[None, :] - xp.where(right, max_len - length, 0)
    return m - xp.minimum(d, 0), m + xp.maximum(d, 0), (m >= 0) & (m < length)


def _packed(x, k):
    """``x``'s trailing diagonals axis added for a single ``k`` (TF drops it)."""
    return x[..., None, :] if np.size(k) == 1 else x


def _unpacked(x, k):
    return x[..., 0, :] if np.size(k) == 1 else x


def _diag_part(x, k, padding_value, align: str):
    x = as_jax(x)
    i, j, valid = _band(k, *x.shape[-2:], align)
    band = jnp.where(valid, x[..., i, j], as_jax(padding_value).astype(x.dtype))
    return _unpacked(band, k)


def _scatter_band(diagonals, k, base, align: str):
    """``base`` (``[..., rows, cols]``) with the packed ``diagonals`` of band ``k`` set."""
    rows, cols = base.shape[-2:]
    if not all(isinstance(d, int) for d in (rows, cols, diagonals.shape[-1])):
        # Sizes set by a host stage (``tf.eye(n)``): the positions are computed in the
        # graph, as for a traced ``k``.
        return _scatter_traced(diagonals, np.asarray(_diag_range(k)[1]), base, align)
    i, j, valid = _band(k, rows, cols, align)
    b, n = np.nonzero(valid)  # each matrix position of the band once
    return base.at[..., i[b, n], j[b, n]].set(diagonals[..., b, n])


def _scatter_traced(diagonals, high, base, align: str):
    """``base`` with the packed ``diagonals`` set, the highest of them ``high``, where
    their positions are known only while running (a traced ``k``, symbolic sizes): the
    diagonals' shape gives their count and length; padding entries are sent out of
    bounds, and dropped."""
    (count, max_len), (rows, cols) = diagonals.shape[-2:], base.shape[-2:]
    high = jnp.asarray(high)
    i, j, valid = _band_positions(high - jnp.arange(count, dtype=high.dtype), max_len, rows,
                                  cols, align)
    return base.at[..., jnp.where(valid, i, rows), j].set(diagonals, mode="drop")


def _diag(diagonal, k, num_rows, num_cols, padding_value, align: str):
    diagonal = _packed(as_jax(diagonal), k)
    low, high = _diag_range(k)
    max_len = diagonal.shape[-1]
    (rows,), (cols,) = static_ints(num_rows), static_ints(num_cols)
    min_rows, min_cols = max_len - min(high, 0), max_len + max(low, 0)
    if rows < 0 and cols < 0:
        rows = cols = max(min_rows, min_cols)
    rows, cols = (min_rows if rows < 0 else rows), (min_cols if cols < 0 else cols)
    base = jnp.full(diagonal.shape[:-2] + (rows, cols), as_jax(padding_value), diagonal.dtype)
    return _scatter_band(diagonal, k, base, align)


def _set_diag(x, diagonal, k, align: str):
    diagonals, x = _packed(as_jax(diagonal), k), as_jax(x)
    if is_static(k):
        return _scatter_band(diagonals, k, x, align)
    # k computed from tensor values: the output's shape is the input's.
    return _scatter_traced(diagonals, as_jax(k).reshape(-1)[-1], x, align)


@register("MatrixDiagPartV3", attrs=("align",))
def _matrix_diag_part(node, x, k, padding_value):
    return _diag_part(x, k, padding_value, node.attr("align", "RIGHT_LEFT"))


@register("MatrixDiagV3", attrs=("align",))
def _matrix_diag(node, diagonal, k, num_rows, num_cols, padding_value):
    return _diag(diagonal, k, num_rows, num_cols, padding_value,
                 node.attr("align", "RIGHT_LEFT"))


@register("MatrixSetDiagV3", attrs=("align",))
def _matrix_set_diag(node, x, diagonal, k):
    return _set_diag(x, diagonal, k, node.attr("align", "RIGHT_LEFT"))


# The older versions: V2 is V3 with LEFT_LEFT alignment (it has no ``align``); V1 is the
# main diagonal alone, zero-padded, of square matrices.
_V2_ALIGN = "LEFT_LEFT"
_MAIN = np.int32(0)


@register("MatrixDiagPartV2")
def _matrix_diag_part_v2(node, x, k, padding_value):
    return _diag_part(x, k, padding_value, _V2_ALIGN)


@register("MatrixDiagV2")
def _matrix_diag_v2(node, diagonal, k, num_rows, num_cols, padding_value):
    return _diag(diagonal, k, num_rows, num_cols, padding_value, _V2_ALIGN)


@register("MatrixSetDiagV2")
def _matrix_set_diag_v2(node, x, diagonal, k):
    return _set_diag(x, diagonal, k, _V2_ALIGN)


@register("MatrixDiagPart")
def _matrix_diag_part_v1(node, x):
    return _diag_part(x, _MAIN, 0, _V2_ALIGN)


@register("MatrixDiag")
def _matrix_diag_v1(node, diagonal):
    return _diag(diagonal, _MAIN, -1, -1, 0, _V2_ALIGN)


@register("MatrixSetDiag")
def _matrix_set_diag_v1(node, x, diagonal):
    return _set_diag(x, diagonal, _MAIN, _V2_ALIGN)


@register("Cross")
def _cross(node, a, b):
    return jnp.cross(as_jax(a), as_jax(b))
