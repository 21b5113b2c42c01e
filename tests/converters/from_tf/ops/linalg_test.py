"""Conformance of matrix products and ``tf.linalg`` ops against TF."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow as tf

from jaxhub_tf.from_tf.interpreter import run_graph
from tests.converters.from_tf.ops._conformance import (Case, check, integers, normal, params,
                                                       spd)

_TOL = {"rtol": 1e-4, "atol": 1e-4}
_SQUARE = (((3, 3),), ((2, 4, 4),))


def _triangular(rng, shape, dtype):
    a = np.tril(rng.standard_normal(shape)) + 3 * np.eye(shape[-1])
    return a.astype(dtype)


CASES = [
    Case("MatMul", tf.matmul, (((2, 3), (3, 4)),), dtypes=("float32", "int32"), **_TOL),
    Case("MatMul", lambda a, b: tf.matmul(a, b, transpose_a=True, transpose_b=True),
         (((3, 2), (4, 3)),), name="MatMul-transposed", batched=False, **_TOL),
    Case("BatchMatMulV2", tf.matmul, (((2, 2, 3), (3, 4)), ((5, 1, 2, 3), (3, 3, 2))), **_TOL),
    Case("BatchMatMulV2", lambda a, b: tf.matmul(a, b, adjoint_a=True, adjoint_b=True),
         (((2, 3, 2), (2, 4, 3)),), name="BatchMatMul-adjoint", **_TOL),
    Case("BatchMatMul", lambda a, b: tf.raw_ops.BatchMatMul(x=a, y=b, adj_y=True),
         (((2, 2, 3), (2, 4, 3)),), **_TOL),
    Case("BatchMatMulV3", lambda a, b: tf.raw_ops.BatchMatMulV3(x=a, y=b, Tout=tf.float32),
         (((2, 2, 3), (2, 3, 4)),), **_TOL),
    Case("Einsum", lambda a, b: tf.einsum("bij,bjk->bik", a, b), (((2, 2, 3), (2, 3, 4)),),
         **_TOL),
    Case("Einsum", lambda a, b: tf.einsum("...ij,jk->...ik", a, b),
         (((2, 2, 3), (3, 4)),), name="Einsum-ellipsis", **_TOL),
    # Keras MultiHeadAttention's scores and weighted values: batch axes between the others.
    Case("Einsum", lambda k, q: tf.einsum("aecd,abcd->acbe", k, q),
         (((2, 5, 3, 4), (2, 6, 3, 4)),), dtypes=("float32", "int32"),
         name="Einsum-attention-scores", **_TOL),
    Case("Einsum", lambda p, v: tf.einsum("acbe,aecd->abcd", p, v),
         (((2, 3, 6, 5), (2, 5, 3, 4)),), name="Einsum-attention-values", **_TOL),
    Case("Einsum", lambda a, b: tf.einsum("abcd,cde->abe", a, b),
         (((2, 3, 4, 5), (4, 5, 6)),), name="Einsum-two-contracted", **_TOL),
    Case("Einsum", lambda a, b: tf.einsum("bik,bjk->kji", a, b),
         (((2, 3, 4), (2, 5, 4)),), name="Einsum-output-permuted", **_TOL),
    # Not plain contractions: jnp.einsum computes these.
    Case("Einsum", lambda a, b: tf.einsum("...ij,...jk->...ik", a, b),
         (((1, 2, 3), (2, 3, 4)),), name="Einsum-broadcast", batched=False, **_TOL),
    Case("Einsum", lambda a, b: tf.einsum("ij,kl->ijkl", a, b), (((2, 3), (4, 5)),),
         name="Einsum-outer", **_TOL),
    Case("Einsum", lambda a, b: tf.einsum("abc,cd->ad", a, b), (((2, 3, 4), (4, 5)),),
         name="Einsum-summed-label", **_TOL),
    Case("Cholesky", tf.linalg.cholesky, _SQUARE, sample=spd, **_TOL),
    Case("MatrixInverse", tf.linalg.inv, _SQUARE, sample=spd, **_TOL),
    Case("MatrixInverse", lambda x: tf.linalg.inv(x, adjoint=True), _SQUARE, sample=spd,
         name="MatrixInverse-adjoint", **_TOL),
    Case("MatrixDeterminant", tf.linalg.det, _SQUARE, sample=spd, rtol=1e-4, atol=1e-3),
    Case("LogMatrixDeterminant", lambda x: tf.linalg.slogdet(x), _SQUARE, sample=spd, **_TOL),
    Case("MatrixSolve", tf.linalg.solve, (((3, 3), (3, 2)), ((2, 4, 4), (2, 4, 1))),
         sample=(spd, normal), **_TOL),
    Case("MatrixTriangularSolve", tf.linalg.triangular_solve,
         (((3, 3), (3, 2)), ((2, 4, 4), (2, 4, 3))), sample=(_triangular, normal), **_TOL),
    Case("MatrixTriangularSolve", lambda a, b: tf.linalg.triangular_solve(
        tf.transpose(a), b, lower=False, adjoint=True), (((3, 3), (3, 2)),),
         sample=(_triangular, normal), name="TriangularSolve-upper-adjoint", **_TOL),
    Case("Qr", lambda x: tf.linalg.qr(x), (((4, 3),), ((2, 3, 3),)), batched=False, **_TOL),
    Case("Qr", lambda x: tf.linalg.qr(x, full_matrices=True), (((4, 3),),),
         name="Qr-full", grad=False, batched=False, **_TOL),
    Case("Svd", lambda x: tf.linalg.svd(x, compute_uv=False), (((4, 3),), ((2, 3, 3),)),
         **_TOL),
    Case("Svd", lambda x: tf.abs(tf.linalg.svd(x)[1]), (((4, 3),),), name="Svd-uv",
         grad=False, **_TOL),
    Case("SelfAdjointEigV2", lambda x: tf.linalg.eigvalsh(x), _SQUARE, sample=spd, **_TOL),
    # Eigenvalues in ascending order (the kernel's order is its own); real for SPD inputs.
    Case("Eig", lambda x: tf.sort(tf.math.real(tf.linalg.eigvals(x)), axis=-1), _SQUARE,
         sample=spd, grad=False, **_TOL),
    Case("SelfAdjointEigV2", lambda x: tf.abs(tf.linalg.eigh(x)[1]), _SQUARE, sample=spd,
         name="Eigh-vectors", grad=False, **_TOL),
    Case("MatrixBandPart", lambda x: tf.linalg.band_part(x, 1, 0), _SQUARE),
    Case("MatrixBandPart", lambda x: tf.linalg.band_part(x, -1, 1), (((3, 5),),),
         name="MatrixBandPart-upper", batched=False),
    # Bounds computed from tensor values: the band moves, the shape does not.
    Case("MatrixBandPart", lambda x, lo, hi: tf.linalg.band_part(x, lo, hi),
         (((2, 4, 5), (), ()),), (("float32", "int32", "int32"),),
         (normal, integers(-1, 3), integers(-1, 3)), name="MatrixBandPart-traced-bounds"),
    # Older versions (V2: LEFT_LEFT packing; V1: the main diagonal).
    Case("MatrixDiag", lambda d: tf.raw_ops.MatrixDiag(diagonal=d), (((2, 3),),)),
    Case("MatrixDiagPart", lambda x: tf.raw_ops.MatrixDiagPart(input=x), (((2, 3, 4),),)),
    Case("MatrixSetDiag", lambda x, d: tf.raw_ops.MatrixSetDiag(input=x, diagonal=d),
         (((2, 3, 4), (2, 3)),)),
    Case("MatrixDiagV2", lambda d: tf.raw_ops.MatrixDiagV2(
        diagonal=d, k=[-1, 1], num_rows=-1, num_cols=4, padding_value=0.5), (((2, 3, 3),),)),
    Case("MatrixDiagPartV2", lambda x: tf.raw_ops.MatrixDiagPartV2(
        input=x, k=[0, 2], padding_value=9.0), (((2, 3, 5),),)),
    # Diagonals of unequal lengths: values only, as TF's gradient of V2 packs them with
    # V3's default alignment (RIGHT_LEFT) instead of V2's LEFT_LEFT.
    Case("MatrixDiagPartV2", lambda x: tf.raw_ops.MatrixDiagPartV2(
        input=x, k=[-1, 2], padding_value=9.0), (((2, 3, 4),),), grad=False,
        name="MatrixDiagPartV2-padded"),
    Case("MatrixSetDiagV2", lambda x, d: tf.raw_ops.MatrixSetDiagV2(input=x, diagonal=d, k=[0, 1]),
         (((2, 3, 4), (2, 2, 3)),), batched=False),  # as MatrixSetDiagV3-band
    Case("MatrixDiagPartV3", tf.linalg.diag_part, (((3, 4),), ((2, 3, 3),)), batched=False),
    Case("MatrixDiagV3", tf.linalg.diag, (((3,),), ((2, 4),))),
    Case("MatrixSetDiagV3", tf.linalg.set_diag, (((3, 3), (3,)), ((2, 3, 4), (2, 3)))),
    Case("MatrixDiagPartV3", lambda x: tf.linalg.diag_part(x, k=(-1, 2)), (((2, 3, 4),),),
         name="MatrixDiagPartV3-band"),
    Case("MatrixDiagPartV3", lambda x: tf.linalg.diag_part(
        x, k=(-2, 1), padding_value=9, align="LEFT_RIGHT"), (((2, 4, 3),),),
         name="MatrixDiagPartV3-band-left-right"),
    Case("MatrixDiagPartV3", lambda x: tf.linalg.diag_part(x, k=1), (((2, 3, 4),),),
         name="MatrixDiagPartV3-superdiagonal"),
    Case("MatrixDiagV3", lambda d: tf.linalg.diag(d, k=-1), (((2, 3),),),
         name="MatrixDiagV3-subdiagonal"),
    Case("MatrixDiagV3", lambda d: tf.linalg.diag(d, k=(-1, 1), num_cols=4,
                                                  padding_value=-1.0),
         (((2, 3, 3),),), name="MatrixDiagV3-band"),
    Case("MatrixDiagV3", lambda d: tf.linalg.diag(d, k=(0, 2), align="LEFT_LEFT"),
         (((2, 3, 3),),), name="MatrixDiagV3-band-left-left"),
    # TF's shape function refuses a band of diagonals once the batch size is unknown.
    Case("MatrixSetDiagV3", lambda x, d: tf.linalg.set_diag(x, d, k=(-1, 1)),
         (((2, 3, 4), (2, 3, 3)),), name="MatrixSetDiagV3-band", batched=False),
    Case("MatrixSetDiagV3", lambda x, d: tf.linalg.set_diag(x, d, k=2, align="LEFT_RIGHT"),
         (((2, 3, 4), (2, 2)),), name="MatrixSetDiagV3-superdiagonal"),
    # k computed from tensor values: only where the diagonals go depends on it.
    Case("MatrixSetDiagV3", lambda x, d, k: tf.linalg.set_diag(x, d, k=k),
         (((2, 3, 4), (2, 3), (1,)), ((2, 3, 4), (2, 3), ())),
         (("float32", "float32", "int32"),), (normal, normal, integers(0, 2)),
         name="MatrixSetDiagV3-traced-k"),
    Case("MatrixSetDiagV3", lambda x, d, k: tf.linalg.set_diag(x, d, k=k, align="LEFT_RIGHT"),
         (((3, 3, 4), (3, 3, 3), (2,)),), (("float32", "float32", "int32"),),
         (normal, normal, lambda rng, shape, dtype: np.array([-1, 1], dtype)),
         name="MatrixSetDiagV3-traced-band"),
    Case("MatrixSetDiagV2",
         lambda x, d, k: tf.raw_ops.MatrixSetDiagV2(input=x, diagonal=d, k=k),
         (((3, 4), (2, 3), (2,)),), (("float32", "float32", "int32"),),
         (normal, normal, lambda rng, shape, dtype: np.array([0, 1], dtype)), batched=False,
         name="MatrixSetDiagV2-traced-band"),
    Case("Cross", tf.linalg.cross, (((3,), (3,)), ((4, 3), (4, 3)))),
    Case("Transpose", tf.linalg.matrix_transpose, (((2, 3, 4),),)),
    Case("OneHot", lambda i: tf.one_hot(i, 5), (((4,),),), dtypes=("int32",),
         sample=integers(-1, 6)),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)


@pytest.mark.parametrize("equation,shapes", [
    ("aecd,abcd->acbe", ((2, 5, 3, 4), (2, 6, 3, 4))),
    ("acbe,aecd->abcd", ((2, 3, 6, 5), (2, 5, 3, 4))),
])
def test_einsum_keeps_the_minor_axis_of_its_operands(equation, shapes):
    """Attention einsums become one dot_general with leading batch axes, and transposes
    that move whole rows of the minor axis (XLA:CPU then copies rows, not elements)."""
    concrete = tf.function(lambda a, b: tf.einsum(equation, a, b)).get_concrete_function(
        *[tf.TensorSpec(s, tf.float32) for s in shapes])
    run = run_graph(concrete.graph.as_graph_def(), [t.name for t in concrete.inputs],
                    [t.name for t in concrete.outputs])
    args = [np.zeros(s, np.float32) for s in shapes]
    eqns = jax.make_jaxpr(lambda *xs: run({}, list(xs))[0])(*args).eqns
    dots = [e for e in eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 1
    (_, _), (lhs_batch, rhs_batch) = dots[0].params["dimension_numbers"]
    assert tuple(lhs_batch) == tuple(rhs_batch) == (0, 1)
    for e in eqns:
        if e.primitive.name == "transpose":
            permutation = e.params["permutation"]
            assert permutation[-1] == len(permutation) - 1, permutation
