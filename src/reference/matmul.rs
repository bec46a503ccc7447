//! Reference twin of `kernels::matmul`, on nalgebra's GEMM, with its epilogues.

use super::elementwise::{binary, unary};
use super::Real;
use crate::kernels::elementwise::{BinaryOp, Broadcast, UnaryOp};
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

/// What the reference does after the product: the twin of
/// [`Epilogue`](crate::kernels::matmul::Epilogue), over slices.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a, T> {
    /// C = op(A)·op(B).
    None,
    /// C = f(op(A)·op(B) + bias), the bias one value per column.
    Forward {
        /// One value per column of C.
        bias: Option<&'a [T]>,
        /// f: ReLU, tanh or GELU (none: the identity).
        activation: Option<UnaryOp>,
    },
    /// C = rule(saved, op(A)·op(B)).
    Backward {
        /// An activation's backward rule.
        rule: BinaryOp,
        /// The forward value the rule reads, C's shape.
        saved: &'a [T],
    },
    /// C = op(A)·op(B) and the column sums of op(B) (unbatched).
    ColumnSums,
}

/// The twin of a fused matmul: (C, the argument of the activation — or for
/// [`Epilogue::ColumnSums`] the column sums of op(B)) for `epilogue` — the product, bias and
/// map computed one after the other as the unfused ops would.
pub fn fused<T: Real>(
    a: &[T],
    b: &[T],
    dims: &MatmulDims,
    epilogue: Epilogue<'_, T>,
) -> (Vec<T>, Vec<T>) {
    let c = matmul(a, b, dims);
    match epilogue {
        Epilogue::None => (c.clone(), c),
        Epilogue::Forward { bias, activation } => {
            let pre = match bias {
                Some(bias) => binary(BinaryOp::Add, &c, bias, Broadcast::row_vector(dims.n)),
                None => c,
            };
            let out = match activation {
                Some(f) => unary(f, &pre),
                None => pre.clone(),
            };
            (out, pre)
        }
        Epilogue::Backward { rule, saved } => {
            let out = binary(rule, saved, &c, Broadcast::full(c.len()));
            (out, c)
        }
        Epilogue::ColumnSums => (c, column_sums(b, dims)),
    }
}

/// Σ_p op(B)\[p\]\[j\] for every column j of op(B) (k×n) of the first batch item.
pub fn column_sums<T: Real>(b: &[T], dims: &MatmulDims) -> Vec<T> {
    let &MatmulDims { n, k, trans_b, .. } = dims;
    (0..n)
        .map(|j| {
            (0..k)
                .map(|p| if trans_b { b[j * k + p] } else { b[p * n + j] })
                .fold(T::zero(), |sum, x| sum + x)
        })
        .collect()
}
