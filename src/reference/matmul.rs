//! Reference twin of `kernels::matmul`, on nalgebra's GEMM.

use super::Real;
use crate::kernels::matmul::MatmulDims;
use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut};

/// `C[b] = op(A[b]) · op(B[b])` over row-major slices laid out as [`MatmulDims`] describes
/// (a shared operand is one matrix, read for every batch item). Returns C, [batch, m, n].
///
/// nalgebra is column-major, so a row-major r×c slice is viewed in place as its c×r
/// transpose, and the product is formed as Cᵀ = op(B)ᵀ · op(A)ᵀ written straight into C's
/// row-major storage. Untransposed operands are used in place (no copy, so the bench measures
/// GEMM alone); a transposed operand is copied into column-major order first, because
/// nalgebra's small-matrix GEMM path mishandles views whose rows are not contiguous.
///
/// # Panics
/// If a slice is shorter than `dims` needs (a bug in the caller, not a user input).
pub fn matmul<T: Real>(a: &[T], b: &[T], dims: &MatmulDims) -> Vec<T> {
    let &MatmulDims { m, n, k, .. } = dims;
    assert!(
        a.len() >= dims.a_len() && b.len() >= dims.b_len(),
        "reference::matmul: slices of {} and {} elements are too short for {dims:?}",
        a.len(),
        b.len()
    );
    let mut c = vec![T::zero(); dims.c_len()];
    for (i, c) in c.chunks_exact_mut(m * n).enumerate() {
        let a_off = if dims.a_batched { i * m * k } else { 0 };
        let b_off = if dims.b_batched { i * k * n } else { 0 };
        let a = &a[a_off..a_off + m * k];
        let b = &b[b_off..b_off + k * n];
        // op(A)ᵀ, k×m, and op(B)ᵀ, n×k, column-major.
        let a_copy: DMatrix<T>;
        let at = if dims.trans_a {
            a_copy = DMatrixView::from_slice(a, m, k).transpose();
            a_copy.as_view()
        } else {
            DMatrixView::from_slice(a, k, m)
        };
        let b_copy: DMatrix<T>;
        let bt = if dims.trans_b {
            b_copy = DMatrixView::from_slice(b, k, n).transpose();
            b_copy.as_view()
        } else {
            DMatrixView::from_slice(b, n, k)
        };
        DMatrixViewMut::from_slice(c, n, m).gemm(T::one(), &bt, &at, T::zero());
    }
    c
}
