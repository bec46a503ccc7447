//! Reference twin of `kernels::finite`.

use super::Real;

/// `None` if every value is finite, else `Some((how many are NaN/Inf, first such index))` —
/// what `kernels::finite::decode_flags` reports for a check of `x`.
pub fn non_finite<T: Real>(x: &[T]) -> Option<(u64, u64)> {
    let first = x.iter().position(|v| !v.is_finite())?;
    let count = x.iter().filter(|v| !v.is_finite()).count();
    Some((count as u64, first as u64))
}
