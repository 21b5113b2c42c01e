"""Linear algebra on (batches of) matrices: matrix products, ``tf.linalg``.

Each op works on the two innermost axes and maps over the leading ones, as TF does.
Matrix products of static inputs stay static (numpy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from converters.from_tf.ops.registry import register
from converters.from_tf.values import as_jax, xnp


def _adjoint(x):
    return jnp.conj(jnp.swapaxes(x, -1, -2))


@register("MatMul")
def _matmul(node, a, b):
    if node.attr("transpose_a", False):
        a = a.T
    if node.attr("transpose_b", False):
        b = b.T
    return xnp(a, b).matmul(a, b)


@register("BatchMatMulV2", "BatchMatMulV3", "BatchMatMul")
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


@register("Einsum")
def _einsum(node, *operands):
    return jnp.einsum(node.attr("equation"), *operands)


@register("Cholesky")
def _cholesky(node, x):
    return jnp.linalg.cholesky(as_jax(x))


@register("MatrixInverse")
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


@register("MatrixSolve")
def _matrix_solve(node, matrix, rhs):
    matrix = as_jax(matrix)
    if node.attr("adjoint", False):
        matrix = _adjoint(matrix)
    return jnp.linalg.solve(matrix, as_jax(rhs))


@register("MatrixTriangularSolve")
def _matrix_triangular_solve(node, matrix, rhs):
    matrix, rhs = as_jax(matrix), as_jax(rhs)
    batch = jnp.broadcast_shapes(matrix.shape[:-2], rhs.shape[:-2])
    return jax.lax.linalg.triangular_solve(
        jnp.broadcast_to(matrix, batch + matrix.shape[-2:]),
        jnp.broadcast_to(rhs, batch + rhs.shape[-2:]), left_side=True,
        lower=node.attr("lower", True), transpose_a=node.attr("adjoint", False),
        conjugate_a=node.attr("adjoint", False))


@register("Qr")
def _qr(node, x):
    mode = "complete" if node.attr("full_matrices", False) else "reduced"
    q, r = jnp.linalg.qr(as_jax(x), mode=mode)
    return [q, r]


@register("Svd")
def _svd(node, x):
    x = as_jax(x)
    full = node.attr("full_matrices", False)
    if not node.attr("compute_uv", True):
        s = jnp.linalg.svd(x, compute_uv=False)
        empty = jnp.zeros((0,), x.dtype)
        return [s, empty, empty]
    u, s, vh = jnp.linalg.svd(x, full_matrices=full)
    return [s, u, _adjoint(vh)]  # TF returns v, not its adjoint


@register("SelfAdjointEigV2")
def _self_adjoint_eig(node, x):
    # TF reads the lower triangle only (so its gradient is lower triangular too).
    x = as_jax(x)
    lower = jnp.tril(x)
    w, v = jnp.linalg.eigh(lower + _adjoint(jnp.tril(x, -1)), symmetrize_input=False)
    return [w, v if node.attr("compute_v", True) else jnp.zeros((0,), x.dtype)]


@register("MatrixBandPart")
def _matrix_band_part(node, x, num_lower, num_upper):
    x = as_jax(x)
    lower, upper = int(np.asarray(num_lower)), int(np.asarray(num_upper))
    rows, cols = x.shape[-2:]
    i = np.arange(rows)[:, None]
    j = np.arange(cols)[None, :]
    keep = ((lower < 0) | (i - j <= lower)) & ((upper < 0) | (j - i <= upper))
    return jnp.where(keep, x, jnp.zeros_like(x))


@register("MatrixDiagPartV3")
def _matrix_diag_part(node, x, k, padding_value):
    x = as_jax(x)
    if np.asarray(k).size != 1:
        raise NotImplementedError("MatrixDiagPartV3 with a band of diagonals")
    return jnp.diagonal(x, offset=int(np.asarray(k).reshape(())), axis1=-2, axis2=-1)


@register("MatrixDiagV3")
def _matrix_diag(node, diagonal, k, num_rows, num_cols, padding_value):
    diagonal = as_jax(diagonal)
    if np.asarray(k).size != 1 or int(np.asarray(k).reshape(())) != 0:
        raise NotImplementedError("MatrixDiagV3 off the main diagonal")
    n = diagonal.shape[-1]
    rows = n if int(np.asarray(num_rows)) < 0 else int(np.asarray(num_rows))
    cols = n if int(np.asarray(num_cols)) < 0 else int(np.asarray(num_cols))
    j = np.arange(cols)
    on_diagonal = np.eye(rows, cols, dtype=bool) & (j < n)
    values = jnp.take(diagonal, np.minimum(j, n - 1), axis=-1)[..., None, :]
    return jnp.where(on_diagonal, values, jnp.asarray(padding_value, diagonal.dtype))


@register("MatrixSetDiagV3")
def _matrix_set_diag(node, x, diagonal, k):
    x, diagonal = as_jax(x), as_jax(diagonal)
    if int(np.asarray(k).reshape(-1)[0]) != 0 or np.asarray(k).size != 1:
        raise NotImplementedError("MatrixSetDiagV3 off the main diagonal")
    rows, cols = x.shape[-2:]
    n = min(rows, cols)
    eye = np.eye(rows, cols, dtype=bool)
    padded = jnp.pad(diagonal, [(0, 0)] * (diagonal.ndim - 1) + [(0, cols - n)])
    return jnp.where(eye, padded[..., None, :], x)


@register("Cross")
def _cross(node, a, b):
    return jnp.cross(as_jax(a), as_jax(b))
