//! Reference twin of `kernels::softmax` (softmax cross-entropy with soft targets).

use super::Real;

/// Row maximum and Σ exp(z − max) of one row of logits.
fn max_and_sum<T: Real>(z: &[T]) -> (T, T) {
    let m = z.iter().copied().fold(z[0], |a, v| a.max(v));
    let s = z.iter().fold(T::zero(), |a, &v| a + (v - m).exp());
    (m, s)
}

/// Per-row loss T·logsumexp(z) − Σ t z (T = Σ t) of `rows × classes` logits and targets,
/// computed as Σ t (max − z) + T·log Σ exp(z − max).
pub fn softmax_xent<T: Real>(logits: &[T], targets: &[T], rows: usize, classes: usize) -> Vec<T> {
    assert_eq!(
        logits.len(),
        rows * classes,
        "reference softmax_xent: logits"
    );
    assert_eq!(
        targets.len(),
        rows * classes,
        "reference softmax_xent: targets"
    );
    logits
        .chunks(classes)
        .zip(targets.chunks(classes))
        .map(|(z, t)| {
            let (m, s) = max_and_sum(z);
            let total = t.iter().fold(T::zero(), |a, &v| a + v);
            let dot = z
                .iter()
                .zip(t)
                .fold(T::zero(), |a, (&zj, &tj)| a + tj * (m - zj));
            dot + total * s.ln()
        })
        .collect()
}

/// Gradient dz_ij = (softmax(z_i)_j · Σ_k t_ik − t_ij) · dloss_i.
pub fn softmax_xent_backward<T: Real>(
    logits: &[T],
    targets: &[T],
    dloss: &[T],
    rows: usize,
    classes: usize,
) -> Vec<T> {
    assert_eq!(logits.len(), rows * classes, "reference backward: logits");
    assert_eq!(targets.len(), rows * classes, "reference backward: targets");
    assert_eq!(dloss.len(), rows, "reference backward: dloss");
    let mut dz = Vec::with_capacity(rows * classes);
    for ((z, t), &dl) in logits
        .chunks(classes)
        .zip(targets.chunks(classes))
        .zip(dloss)
    {
        let (m, s) = max_and_sum(z);
        let total = t.iter().fold(T::zero(), |a, &v| a + v);
        dz.extend(
            z.iter()
                .zip(t)
                .map(|(&zj, &tj)| ((zj - m).exp() / s * total - tj) * dl),
        );
    }
    dz
}
