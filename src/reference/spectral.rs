//! Reference twins of `kernels::spectral`, and the spectral-function op H = h(G) built from
//! them: forward by eigendecomposition, backward by the Loewner (Daleckii–Krein) formula
//! dG = V (Lw ∘ (Vᵀ sym(dH) V)) Vᵀ, plus the textbook eigh backward it replaces, and the top
//! eigenpair with the gradient of σ_max: the direct route to spectral normalisation, which
//! `SpectralFn::Normalize` must agree with.
//!
//! Matrices are row-major `batch × n × n` slices; eigenvalues `batch × n`, ascending;
//! eigenvectors are the columns of V. Slices whose lengths do not fit `n` are a caller bug
//! here (the graph checks shapes when it is built): the functions panic with a message.

use super::Real;
use crate::kernels::spectral::{SpectralFn, SpectrumScale, LAMBDA_TINY};
use nalgebra::{DMatrix, SymmetricEigen};

/// Number of n×n matrices in `len` elements.
fn batch_of(what: &str, len: usize, n: usize) -> usize {
    assert!(
        n > 0 && len.is_multiple_of(n * n),
        "{what}: {len} elements are not a batch of {n}×{n} matrices"
    );
    len / (n * n)
}

fn matrix<T: Real>(rows: &[T], n: usize) -> DMatrix<T> {
    DMatrix::from_row_slice(n, n, rows)
}

fn push_rows<T: Real>(out: &mut Vec<T>, m: &DMatrix<T>) {
    out.extend(m.transpose().iter().copied());
}

/// Eigendecomposition of sym(G) for every matrix of the batch, eigenvalues ascending.
fn eigh<T: Real>(g: &[T], n: usize) -> (Vec<T>, Vec<T>) {
    let batch = batch_of("eigh", g.len(), n);
    let (mut values, mut vectors) = (Vec::with_capacity(batch * n), Vec::with_capacity(g.len()));
    for a in g.chunks(n * n) {
        let a = matrix(a, n);
        let e = SymmetricEigen::new((&a + a.transpose()) * T::c(0.5));
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| {
            e.eigenvalues[i]
                .partial_cmp(&e.eigenvalues[j])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        values.extend(order.iter().map(|&k| e.eigenvalues[k]));
        let v = DMatrix::from_fn(n, n, |i, j| e.eigenvectors[(i, order[j])]);
        push_rows(&mut vectors, &v);
    }
    (values, vectors)
}

/// Twin of the `scale_columns` kernel: `out[b,i,j] = V[b,i,j]·g̃(λ[b,j])`.
pub fn scale_columns<T: Real>(f: SpectralFn, values: &[T], vectors: &[T], n: usize) -> Vec<T> {
    let batch = batch_of("scale_columns", vectors.len(), n);
    assert_eq!(values.len(), batch * n, "scale_columns: eigenvalue count");
    let mut out = Vec::with_capacity(vectors.len());
    for (lam, v) in values.chunks(n).zip(vectors.chunks(n * n)) {
        let scale = SpectrumScale::of(f, lam);
        let g: Vec<T> = (0..n).map(|j| f.value(lam[j], j, &scale)).collect();
        out.extend(v.iter().enumerate().map(|(e, &x)| x * g[e % n]));
    }
    out
}

/// The Loewner matrices Lw_ij = (g̃(λ_i) − g̃(λ_j))/(λ_i − λ_j), g̃′(λ_i) on the diagonal and
/// for near-equal pairs, `batch × n × n` for `batch × n` ascending eigenvalues (see
/// [`SpectralFn::loewner`] for the guards). For `Shrink` this is the part at fixed mean;
/// [`spectral_backward`] adds the mean's diagonal term (for `Normalize`, the part at fixed
/// λ_max, all 0, and λ_max's term).
pub fn loewner<T: Real>(values: &[T], n: usize, f: SpectralFn) -> Vec<T> {
    assert!(
        n > 0 && values.len().is_multiple_of(n),
        "loewner: length vs n"
    );
    let mut out = Vec::with_capacity(values.len() * n);
    for lam in values.chunks(n) {
        let scale = SpectrumScale::of(f, lam);
        for i in 0..n {
            out.extend((0..n).map(|j| f.loewner(lam[i], lam[j], i, j, &scale)));
        }
    }
    out
}

/// Twin of the `loewner_product` kernel: `out[b,i,j] = Lw_ij·(S_ij + S_ji)/2`, plus on the
/// diagonal, for `Shrink`, τ = (1/n)·Σ_k S_kk·∂g̃(λ_k)/∂μ (the dependence through the mean),
/// and at (n−1, n−1), for `Normalize`, (Σ_k S_kk)·∂g̃/∂λ_max (the dependence through λ_max,
/// whose gradient is v₁v₁ᵀ, the outer product of the last column of V).
pub fn loewner_product<T: Real>(f: SpectralFn, values: &[T], s: &[T], n: usize) -> Vec<T> {
    let batch = batch_of("loewner_product", s.len(), n);
    assert_eq!(values.len(), batch * n, "loewner_product: eigenvalue count");
    let lw = loewner(values, n, f);
    let shrink = matches!(f, SpectralFn::Shrink { .. });
    let normalize = f == SpectralFn::Normalize;
    let mut out = Vec::with_capacity(s.len());
    for (b, lam) in values.chunks(n).enumerate() {
        let m = &s[b * n * n..(b + 1) * n * n];
        let scale = SpectrumScale::of(f, lam);
        for i in 0..n {
            for j in 0..n {
                let sym = (m[i * n + j] + m[j * n + i]) * T::c(0.5);
                let mut r = lw[b * n * n + i * n + j] * sym;
                if shrink && i == j {
                    let mut tau = T::zero();
                    for k in 0..n {
                        tau += m[k * n + k] * f.mean_sensitivity(lam[k], &scale);
                    }
                    r += tau / T::c(n as f64);
                }
                if normalize && i == n - 1 && j == n - 1 {
                    let mut tr = T::zero();
                    for k in 0..n {
                        tr += m[k * n + k];
                    }
                    r += tr * f.top_sensitivity(&scale);
                }
                out.push(r);
            }
        }
    }
    out
}

/// H = V g̃(Λ) Vᵀ for every symmetric n×n matrix of the batch `g` (symmetrised first).
/// Returns (H, eigenvalues ascending `batch × n`, eigenvectors V `batch × n × n`).
pub fn spectral_forward<T: Real>(g: &[T], n: usize, f: SpectralFn) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (values, vectors) = eigh(g, n);
    let scaled = scale_columns(f, &values, &vectors, n);
    let mut h = Vec::with_capacity(g.len());
    for (sv, v) in scaled.chunks(n * n).zip(vectors.chunks(n * n)) {
        push_rows(&mut h, &(matrix(sv, n) * matrix(v, n).transpose()));
    }
    (h, values, vectors)
}

/// The backward of [`spectral_forward`]: dG = V (Lw ∘ (Vᵀ sym(dH) V) [+ τ·I for `Shrink`]
/// [+ tr(dH)·∂g̃/∂λ_max·e_ne_nᵀ for `Normalize`]) Vᵀ, finite for every spectrum, repeated
/// eigenvalues included (for `Normalize` with a repeated top eigenvalue it is the derivative
/// along the solver's choice of v₁, see [`SpectralFn::Normalize`]). Symmetric.
pub fn spectral_backward<T: Real>(
    values: &[T],
    vectors: &[T],
    dh: &[T],
    n: usize,
    f: SpectralFn,
) -> Vec<T> {
    let batch = batch_of("spectral_backward", dh.len(), n);
    assert_eq!(vectors.len(), dh.len(), "spectral_backward: V vs dH");
    let mut s = Vec::with_capacity(dh.len());
    for (v, d) in vectors.chunks(n * n).zip(dh.chunks(n * n)) {
        let v = matrix(v, n);
        push_rows(&mut s, &(v.transpose() * matrix(d, n) * &v));
    }
    let inner = loewner_product(f, values, &s, n);
    let mut dg = Vec::with_capacity(batch * n * n);
    for (v, m) in vectors.chunks(n * n).zip(inner.chunks(n * n)) {
        let v = matrix(v, n);
        push_rows(&mut dg, &(&v * matrix(m, n) * v.transpose()));
    }
    dg
}

/// What autodiff through an eigendecomposition gives for H = V g̃(Λ) Vᵀ — PyTorch's eigh
/// backward applied to the chain gV = (dH + dHᵀ)·V·g̃(Λ), gλ_i = g̃′(λ_i)·(Vᵀ dH V)_ii (plus,
/// for `Shrink`, the path through the mean eigenvalue, and for `Normalize` the one through
/// λ_max):
/// gA = V (F ∘ (Vᵀ gV) + diag(gλ)) Vᵀ with F_ij = 1/(λ_j − λ_i) off the diagonal, no guard.
/// Its symmetric part equals [`spectral_backward`] on distinct eigenvalues; on repeated ones
/// it is inf/NaN. Kept to demonstrate exactly that.
pub fn textbook_eigh_backward<T: Real>(
    values: &[T],
    vectors: &[T],
    dh: &[T],
    n: usize,
    f: SpectralFn,
) -> Vec<T> {
    batch_of("textbook_eigh_backward", dh.len(), n);
    let mut out = Vec::with_capacity(dh.len());
    for ((lam, v), d) in values
        .chunks(n)
        .zip(vectors.chunks(n * n))
        .zip(dh.chunks(n * n))
    {
        let scale = SpectrumScale::of(f, lam);
        let (v, d) = (matrix(v, n), matrix(d, n));
        let g = DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                f.value(lam[i], i, &scale)
            } else {
                T::zero()
            }
        });
        let gv = (&d + d.transpose()) * &v * g;
        let vtgv = v.transpose() * gv;
        let vtdv = v.transpose() * &d * &v;
        // Shrink's μ = Σλ/n: every gλ_i also gets (1/n)·Σ_k (VᵀdHV)_kk·∂g_k/∂μ.
        let mut tau = T::zero();
        for k in 0..n {
            tau += vtdv[(k, k)] * f.mean_sensitivity(lam[k], &scale);
        }
        let tau = tau / T::c(n as f64);
        // Normalize's g depends on λ_max = λ_{n−1}: gλ_{n−1} also gets tr(VᵀdHV)·∂g/∂λ_max.
        let top = vtdv.trace() * f.top_sensitivity(&scale);
        let inner = DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                let top = if i == n - 1 { top } else { T::zero() };
                f.derivative(lam[i], i, &scale) * vtdv[(i, i)] + tau + top
            } else {
                T::one() / (lam[j] - lam[i]) * vtgv[(i, j)]
            }
        });
        push_rows(&mut out, &(&v * inner * v.transpose()));
    }
    out
}

/// The largest eigenvalue and its unit eigenvector of every symmetric matrix of the batch:
/// (λ_max `batch`, v₁ `batch × n`). For G = WᵀW, σ_max(W) = √λ_max.
pub fn top_eigen<T: Real>(g: &[T], n: usize) -> (Vec<T>, Vec<T>) {
    let (values, vectors) = eigh(g, n);
    let mut top = Vec::new();
    let mut v1 = Vec::new();
    for (lam, v) in values.chunks(n).zip(vectors.chunks(n * n)) {
        top.push(lam[n - 1]);
        v1.extend((0..n).map(|i| v[i * n + n - 1]));
    }
    (top, v1)
}

/// Gradient with respect to G of σ = √λ_max(G), given dσ per batch item:
/// dG = dσ/(2σ)·v₁v₁ᵀ (σ taken at least √LAMBDA_TINY). Exact where the top eigenvalue is
/// simple; where it is repeated σ is not differentiable and this is one subgradient.
pub fn sigma_max_backward<T: Real>(lambda_max: &[T], v1: &[T], dsigma: &[T], n: usize) -> Vec<T> {
    assert!(
        lambda_max.len() == dsigma.len() && v1.len() == lambda_max.len() * n,
        "sigma_max_backward: lengths"
    );
    let mut out = Vec::with_capacity(v1.len() * n);
    for ((&lam, v), &ds) in lambda_max.iter().zip(v1.chunks(n)).zip(dsigma) {
        let sigma = lam.max(T::c(LAMBDA_TINY)).sqrt();
        let c = ds / (T::c(2.0) * sigma);
        for i in 0..n {
            out.extend((0..n).map(|j| c * v[i] * v[j]));
        }
    }
    out
}
