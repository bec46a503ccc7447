//! Reference twin of `kernels::norm`: layer normalisation per row and its gradient.

use super::Real;

/// (mean, 1/√(variance + eps)) of one row, the variance as a second pass.
fn stats<T: Real>(row: &[T], eps: f64) -> (T, T) {
    let n = T::c(row.len() as f64);
    let mean = row.iter().fold(T::zero(), |a, &v| a + v) / n;
    let var = row
        .iter()
        .fold(T::zero(), |a, &v| a + (v - mean) * (v - mean))
        / n;
    (mean, T::one() / (var + T::c(eps)).sqrt())
}

/// (x − mean)/√(var + eps) for each row of `cols` values of `x`.
pub fn layer_norm<T: Real>(x: &[T], cols: usize, eps: f64) -> Vec<T> {
    x.chunks(cols)
        .flat_map(|row| {
            let (mean, rstd) = stats(row, eps);
            row.iter().map(move |&v| (v - mean) * rstd)
        })
        .collect()
}

/// dx = rstd·(dy − mean(dy) − y·mean(dy∘y)) per row, with y the normalised row.
pub fn layer_norm_backward<T: Real>(x: &[T], dy: &[T], cols: usize, eps: f64) -> Vec<T> {
    assert_eq!(x.len(), dy.len(), "reference layer_norm_backward: lengths");
    let n = T::c(cols as f64);
    x.chunks(cols)
        .zip(dy.chunks(cols))
        .flat_map(|(row, g)| {
            let (mean, rstd) = stats(row, eps);
            let y: Vec<T> = row.iter().map(|&v| (v - mean) * rstd).collect();
            let mean_g = g.iter().fold(T::zero(), |a, &v| a + v) / n;
            let mean_gy = g
                .iter()
                .zip(&y)
                .fold(T::zero(), |a, (&gi, &yi)| a + gi * yi)
                / n;
            y.into_iter()
                .zip(g)
                .map(move |(yi, &gi)| rstd * (gi - mean_g - yi * mean_gy))
                .collect::<Vec<T>>()
        })
        .collect()
}
