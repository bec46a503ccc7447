//! Reference twin of `kernels::finite`.

use super::Real;

/// `None` if every value is finite, else `Some((how many are NaN/Inf, first such index))` —
/// what `kernels::finite::decode_flags` reports for a check of `x`.
pub fn non_finite<T: Real>(x: &[T]) -> Option<(u64, u64)> {
    let first = x.iter().position(|v| !v.is_finite())?;
    let count = x.iter().filter(|v| !v.is_finite()).count();
    Some((count as u64, first as u64))
}

/// The twin of the guard in the optimizer kernels: wherever an element of one of `new` (a
/// parameter and its optimizer state, or a running statistic, computed from `old`) is NaN or
/// Inf, every tensor takes back its `old` value there. Returns what was found, as
/// [`non_finite`] reports it.
pub fn keep_finite<T: Real>(old: &[&[T]], new: &mut [Vec<T>]) -> Option<(u64, u64)> {
    let len = new.first().map_or(0, Vec::len);
    let bad: Vec<usize> = (0..len)
        .filter(|&i| new.iter().any(|t| !t[i].is_finite()))
        .collect();
    for &i in &bad {
        for (t, o) in new.iter_mut().zip(old) {
            t[i] = o[i];
        }
    }
    Some((bad.len() as u64, *bad.first()? as u64))
}
