//! Reference twin of `kernels::reduce`.

use super::Real;
use crate::kernels::reduce::{Axis, ReduceOp};

/// Reduces the `rows × cols` row-major matrix `x` along `axis` (`rows` values for
/// `Axis::Rows`, `cols` for `Axis::Cols`), with plain running sums: run in `f64` it is the
/// ground truth the pairwise f32 kernel is measured against.
pub fn reduce<T: Real>(op: ReduceOp, axis: Axis, x: &[T], rows: usize, cols: usize) -> Vec<T> {
    assert_eq!(x.len(), rows * cols, "reference reduce: length of x");
    let (outer, inner) = match axis {
        Axis::Rows => (rows, cols),
        Axis::Cols => (cols, rows),
    };
    (0..outer)
        .map(|o| {
            let mut values = (0..inner).map(|i| match axis {
                Axis::Rows => x[o * cols + i],
                Axis::Cols => x[i * cols + o],
            });
            match op {
                ReduceOp::Sum => values.fold(T::zero(), |a, v| a + v),
                ReduceOp::Mean => values.fold(T::zero(), |a, v| a + v) / T::c(inner as f64),
                ReduceOp::SumSquares => values.fold(T::zero(), |a, v| a + v * v),
                ReduceOp::Max => {
                    let first = values.next().expect("reference reduce: empty reduction");
                    values.fold(first, |a, v| a.max(v))
                }
            }
        })
        .collect()
}
