"""Conformance of matrix products and ``tf.linalg`` ops against TF."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

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
    Case("SelfAdjointEigV2", lambda x: tf.abs(tf.linalg.eigh(x)[1]), _SQUARE, sample=spd,
         name="Eigh-vectors", grad=False, **_TOL),
    Case("MatrixBandPart", lambda x: tf.linalg.band_part(x, 1, 0), _SQUARE),
    Case("MatrixBandPart", lambda x: tf.linalg.band_part(x, -1, 1), (((3, 5),),),
         name="MatrixBandPart-upper", batched=False),
    Case("MatrixDiagPartV3", tf.linalg.diag_part, (((3, 4),), ((2, 3, 3),)), batched=False),
    Case("MatrixDiagV3", tf.linalg.diag, (((3,),), ((2, 4),))),
    Case("MatrixSetDiagV3", tf.linalg.set_diag, (((3, 3), (3,)), ((2, 3, 4), (2, 3)))),
    Case("Cross", tf.linalg.cross, (((3,), (3,)), ((4, 3), (4, 3)))),
    Case("Transpose", tf.linalg.matrix_transpose, (((2, 3, 4),),)),
    Case("OneHot", lambda i: tf.one_hot(i, 5), (((4,),),), dtypes=("int32",),
         sample=integers(-1, 6)),
]


@pytest.mark.parametrize("case,shapes,dtypes", params(CASES))
def test_matches_tensorflow(case, shapes, dtypes):
    check(case, shapes, dtypes)
