//! Reference twin of `kernels::jacobi`: symmetric eigendecomposition with nalgebra's
//! `SymmetricEigen`, put in the GPU solver's conventions.

use super::Real;

/// Eigenvalues (ascending) and eigenvectors of the symmetric part (A + Aᵀ)/2 of the row-major
/// n×n matrix `a`. The vectors come back row-major, column j belonging to value j, each with
/// its largest-magnitude component positive (the first such component on ties) — the
/// conventions of [`crate::eigh`]. A matrix holding NaN or Inf gives NaN values and vectors,
/// as the GPU solver's do.
pub fn eigh<T: Real>(a: &[T], n: usize) -> (Vec<T>, Vec<T>) {
    assert_eq!(a.len(), n * n, "eigh reference: a is not n×n");
    if a.iter().any(|x| !x.is_finite()) {
        let nan = T::c(f64::NAN);
        return (vec![nan; n], vec![nan; n * n]);
    }
    let half = T::c(0.5);
    let m = nalgebra::DMatrix::from_fn(n, n, |i, j| half * (a[i * n + j] + a[j * n + i]));
    let eig = m.symmetric_eigen();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| {
        eig.eigenvalues[x]
            .partial_cmp(&eig.eigenvalues[y])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let values = order.iter().map(|&k| eig.eigenvalues[k]).collect();
    let mut vectors = vec![T::zero(); n * n];
    for (j, &k) in order.iter().enumerate() {
        let col = eig.eigenvectors.column(k);
        let mut lead = 0;
        for r in 1..n {
            if col[r].abs() > col[lead].abs() {
                lead = r;
            }
        }
        let sign = if col[lead] < T::zero() {
            -T::one()
        } else {
            T::one()
        };
        for r in 0..n {
            vectors[r * n + j] = sign * col[r];
        }
    }
    (values, vectors)
}

/// [`eigh`] over a batch of `a.len() / (n·n)` matrices stored one after another; returns the
/// values `[batch, n]` and vectors `[batch, n, n]` concatenated the same way.
pub fn eigh_batched<T: Real>(a: &[T], n: usize) -> (Vec<T>, Vec<T>) {
    assert_eq!(
        a.len() % (n * n),
        0,
        "eigh reference: batch is not a multiple of n×n"
    );
    let mut values = Vec::with_capacity(a.len() / n);
    let mut vectors = Vec::with_capacity(a.len());
    for m in a.chunks(n * n) {
        let (w, v) = eigh(m, n);
        values.extend(w);
        vectors.extend(v);
    }
    (values, vectors)
}
