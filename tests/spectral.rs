//! Spectral functions H = h(G) = V g(Λ) Vᵀ and their Loewner backward.
//!
//! CPU, in f64 (the ground truth): central finite differences of L(G) = ⟨R, h(G)⟩ along every
//! symmetric basis direction against `spectral_backward`, for every mode on random, nearly
//! degenerate (gaps 1e-6), exactly degenerate and rank-deficient spectra; the EigenLayer
//! composition W' = W·h(WᵀW) and spectral normalisation W' = W/σ_max against finite
//! differences in W; the textbook eigh backward failing where ours does not.
//!
//! `Normalize` (g = λ_max^(−1/2)) is differentiable only where the top eigenvalue is simple:
//! central differences are checked on spectra whose top gap is ≥ 5% relative (the truncation
//! error grows like h²/gap², 4e-9 there); on repeated or nearly repeated tops (G = I, gaps
//! 1e-6) the gradient is only required to be finite, and at G = I it is checked to be the
//! one-sided derivative along the solver's top eigenvector.
//!
//! Finite-difference error budget (f64, step h): truncation ~h²·|L‴| and rounding
//! ~ε₆₄·|L|/h. With h = 1e-5 and O(1) data both are ≲ 1e-10 relative; we require
//! ≤ 1e-7 relative to the largest gradient entry (or absolutely, when the gradient is below
//! 1). Measured errors are printed; they are ~1e-10.
//!
//! GPU: both kernels against the reference on n ∈ {1, 2, 7, 31, 64, 127}, batch 1 and 5, with
//! degenerate, clustered, rank-deficient and kink-straddling spectra (tolerances at the test).

mod common;
use common::*;
use eigengrad::kernels::spectral::{
    loewner_product, loewner_product_dispatch, rtol, scale_columns, spectral_shape, SpectralFn,
    SpectrumScale,
};
use eigengrad::reference::spectral as rs;
use eigengrad::{Error, Tensor};
use nalgebra::DMatrix;

const H: f64 = 1e-5;
const TOL: f64 = 1e-7;

fn rows(m: &DMatrix<f64>) -> Vec<f64> {
    m.transpose().iter().copied().collect()
}

fn random_matrix(seed: u64, r: usize, c: usize) -> DMatrix<f64> {
    DMatrix::from_row_slice(r, c, &widen(&random(seed, r * c, 1.0)))
}

/// A random orthogonal n×n matrix (Q of a QR factorisation).
fn orthogonal(seed: u64, n: usize) -> DMatrix<f64> {
    random_matrix(seed, n, n).qr().q()
}

/// Q diag(λ) Qᵀ for a random orthogonal Q, row-major.
fn with_spectrum(seed: u64, lambda: &[f64]) -> Vec<f64> {
    let q = orthogonal(seed, lambda.len());
    rows(&(&q * DMatrix::from_diagonal(&lambda.to_vec().into()) * q.transpose()))
}

/// The modes the CPU checks run, with `k` for TopK.
fn modes(k: u32) -> [SpectralFn; 5] {
    [
        SpectralFn::Clamp { lo: 0.8, hi: 1.2 },
        SpectralFn::Orthogonal,
        SpectralFn::InvSqrt { eps: 1e-3 },
        SpectralFn::TopK { k },
        SpectralFn::Shrink { keep: 0.3 },
    ]
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// G + h·E with E = e_ie_jᵀ + e_je_iᵀ (i ≠ j) or e_ie_iᵀ: a symmetric basis direction, along
/// which the directional derivative of a function of symmetric G is ∇_ij + ∇_ji (or ∇_ii).
fn sym_step(g: &[f64], n: usize, i: usize, j: usize, h: f64) -> Vec<f64> {
    let mut g = g.to_vec();
    g[i * n + j] += h;
    if i != j {
        g[j * n + i] += h;
    }
    g
}

/// Checks ∇L of L(G) = ⟨R, h(G)⟩ by central differences along every symmetric basis direction
/// (E = e_ie_jᵀ + e_je_iᵀ, or e_ie_iᵀ), with step `h`. Returns max |fd − analytic| divided by
/// max(largest analytic entry, 1).
fn gradcheck_g(g: &[f64], n: usize, f: SpectralFn, r: &[f64], h: f64) -> f64 {
    let (_, lam, v) = rs::spectral_forward(g, n, f);
    let an = rs::spectral_backward(&lam, &v, r, n, f);
    assert!(
        an.iter().all(|x| x.is_finite()),
        "{f:?}: non-finite gradient"
    );
    let loss = |g: &[f64]| dot(r, &rs::spectral_forward(g, n, f).0);
    let (mut err, mut scale) = (0.0f64, 1.0f64);
    for i in 0..n {
        for j in i..n {
            let fd = (loss(&sym_step(g, n, i, j, h)) - loss(&sym_step(g, n, i, j, -h))) / (2.0 * h);
            let exact = if i == j {
                an[i * n + i]
            } else {
                an[i * n + j] + an[j * n + i]
            };
            err = err.max((fd - exact).abs());
            scale = scale.max(exact.abs());
        }
    }
    err / scale
}

/// Relative gap λ_max − λ_{n−2} over λ_max of an ascending spectrum (1 for n = 1).
fn top_gap(lam: &[f64]) -> f64 {
    let n = lam.len();
    if n < 2 {
        1.0
    } else {
        (lam[n - 1] - lam[n - 2]) / lam[n - 1].abs()
    }
}

/// The smallest relative top gap on which `Normalize` is gradchecked (module docs).
const NORMALIZE_GAP: f64 = 0.05;

/// Gradchecks every mode of [`modes`] and `Normalize` at G; `Normalize` only where the top
/// eigenvalue of G is separated by [`NORMALIZE_GAP`] — where it is not, its gradient (the
/// derivative along the solver's top eigenvector) must still be finite. `top_simple` states
/// which case the caller expects, so that a spectrum that changes cannot skip the check.
fn check_all_modes(what: &str, g: &[f64], n: usize, k: u32, r: &[f64], top_simple: bool) {
    for f in modes(k) {
        let e = gradcheck_g(g, n, f, r, H);
        eprintln!("{what} {f:?}: relative error {e:.1e}");
        assert!(e <= TOL, "{what} {f:?}: relative error {e:e} > {TOL:e}");
    }
    let f = SpectralFn::Normalize;
    let (_, lam, v) = rs::spectral_forward(g, n, f);
    let gap = top_gap(&lam);
    assert_eq!(gap >= NORMALIZE_GAP, top_simple, "{what}: top gap {gap:e}");
    if top_simple {
        let e = gradcheck_g(g, n, f, r, H);
        eprintln!("{what} Normalize (top gap {gap:.2}): relative error {e:.1e}");
        assert!(e <= TOL, "{what} Normalize: relative error {e:e} > {TOL:e}");
    } else {
        let grad = rs::spectral_backward(&lam, &v, r, n, f);
        assert!(
            grad.iter().all(|x| x.is_finite()),
            "{what} Normalize: non-finite gradient on a repeated top"
        );
    }
}

#[test]
fn gradcheck_random_spectra() {
    let n = 6;
    let r = widen(&random(1, n * n, 1.0));
    // Eigenvalues in all three Clamp regions (kinks at 0.64 and 1.44), a clear gap at the
    // TopK boundary (k = 2).
    let fixed = [0.15, 0.4, 0.9, 1.1, 2.0, 3.3];
    check_all_modes("fixed", &with_spectrum(2, &fixed), n, 2, &r, true);
    // Random eigenvalues in [0.05, 4], resampled until no eigenvalue sits within 0.05 of a
    // Clamp kink (where h(G) is not differentiable), the TopK boundary gap exceeds 0.05 and
    // the top gap exceeds NORMALIZE_GAP.
    let mut seed = 10;
    let lam = loop {
        let mut lam: Vec<f64> = random(seed, n, 1.0)
            .iter()
            .map(|&x| 2.025 + 1.975 * x as f64)
            .collect();
        lam.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let clear = lam
            .iter()
            .all(|&l| (l - 0.64f64).abs() > 0.05 && (l - 1.44f64).abs() > 0.05);
        if clear && lam[n - 2] - lam[n - 3] > 0.05 && top_gap(&lam) >= NORMALIZE_GAP {
            break lam;
        }
        seed += 1;
    };
    check_all_modes("random", &with_spectrum(3, &lam), n, 2, &r, true);
    // Non-symmetric full random G: the op symmetrises, the gradient is the symmetric one.
    let g = rows(&(random_matrix(4, n, n).transpose() * random_matrix(4, n, n)));
    let lam = rs::spectral_forward(&g, n, SpectralFn::Orthogonal).1;
    eprintln!("gram spectrum {lam:?}");
    let f = SpectralFn::Orthogonal;
    assert!(gradcheck_g(&g, n, f, &r, H) <= TOL);
}

#[test]
fn gradcheck_nearly_degenerate_spectra() {
    let n = 6;
    let r = widen(&random(5, n * n, 1.0));
    // Clusters with gaps 1e-6 (below the f64 rtol 6e-6, and equal to nothing exactly) inside
    // each Clamp region and inside each TopK group (k = 2). h(G) is analytic there however
    // small the gaps: the eigenvectors of a cluster are ill-conditioned, h(G) is not.
    let lam = [0.3, 0.3 + 1e-6, 0.3 + 2e-6, 1.0, 2.5, 2.5 + 1e-6];
    // The top pair is 1e-6 apart: Normalize is differentiable but its derivative varies on
    // the scale 1e-6, below any usable step, so only finiteness is required.
    check_all_modes("gaps 1e-6", &with_spectrum(6, &lam), n, 2, &r, false);
}

#[test]
fn gradcheck_exactly_degenerate_spectra() {
    let n = 6;
    let r = widen(&random(7, n * n, 1.0));
    let eye = rows(&DMatrix::<f64>::identity(n, n));
    // G = I: TopK with 0 < k < n is not even defined (which k of n equal eigenvalues?), so
    // only k = n is checked there. Clamp{0.8, 1.2} is flat at 1 (zero gradient), Clamp{1.1,
    // 1.5} is 1.1/√λ there (nonzero gradient through a fully degenerate spectrum).
    check_all_modes("G = I", &eye, n, n as u32, &r, false);
    let f = SpectralFn::Clamp { lo: 1.1, hi: 1.5 };
    assert!(gradcheck_g(&eye, n, f, &r, H) <= TOL);
    // G = QᵀQ of an orthogonal Q: I up to rounding, eigenvalues 1 ± 1e-16 in a random basis.
    let q = orthogonal(8, n);
    let qtq = rows(&(q.transpose() * &q));
    check_all_modes("G = QᵀQ", &qtq, n, n as u32, &r, false);
    // Repeated eigenvalues in a random basis, the TopK boundary between the groups (k = 3).
    let lam = [0.3, 0.3, 0.3, 2.5, 2.5, 2.5];
    check_all_modes("repeated", &with_spectrum(9, &lam), n, 3, &r, false);
}

#[test]
fn gradcheck_rank_deficient_gram() {
    // G = WᵀW of a 3×6 W: three zero eigenvalues, below the floor 1e-6·λ_max. The floor is a
    // guard whose dependence on λ_max is not differentiated; it only moves the null-null block
    // of h(G) (which W annihilates in W·h(WᵀW)), so we zero that block of R: then L is exactly
    // the function the backward differentiates. The step must keep the zero eigenvalues below
    // the floor (|Δλ| ≤ h·√2 = 1.4e-7 < floor ≈ 1e-6·λ_max): h = 1e-7. With g(floor) up to
    // ~1e3 (Orthogonal) the rounding of L is ~1e-12, so the FD error is ~1e-5 absolute on
    // gradients of ~1e3: we require 1e-6 relative.
    let (m, n) = (3, 6);
    let w = random_matrix(11, m, n);
    let g = rows(&(w.transpose() * &w));
    let lam = rs::spectral_forward(&g, n, SpectralFn::Normalize).1;
    assert!(top_gap(&lam) >= NORMALIZE_GAP, "{lam:?}");
    for f in modes(2).into_iter().chain([SpectralFn::Normalize]) {
        let (_, lam, v) = rs::spectral_forward(&g, n, f);
        assert!(lam[..n - m].iter().all(|l| l.abs() < 1e-12), "{lam:?}");
        let v = DMatrix::from_row_slice(n, n, &v);
        let vn = v.columns(0, n - m);
        let p = vn * vn.transpose();
        let r0 = random_matrix(12, n, n);
        let r = rows(&(&r0 - &p * &r0 * &p));
        let e = gradcheck_g(&g, n, f, &r, 1e-7);
        eprintln!("rank-deficient {f:?}: relative error {e:.1e}");
        assert!(e <= 1e-6, "rank-deficient {f:?}: {e:e}");
    }
}

/// W' = W·h(WᵀW) and dW = dW'·h(G) + 2W·dG, dG = spectral_backward(λ, V, Wᵀ dW').
fn layer(w: &DMatrix<f64>, f: SpectralFn, dw_out: &DMatrix<f64>) -> (DMatrix<f64>, DMatrix<f64>) {
    let n = w.ncols();
    let g = rows(&(w.transpose() * w));
    let (h, lam, v) = rs::spectral_forward(&g, n, f);
    let h = DMatrix::from_row_slice(n, n, &h);
    let dh = rows(&(w.transpose() * dw_out));
    let dg = DMatrix::from_row_slice(n, n, &rs::spectral_backward(&lam, &v, &dh, n, f));
    (w * &h, dw_out * &h + w * dg * 2.0)
}

/// Max |fd − analytic| over all entries of W for L(W) = ⟨R, W'⟩, relative to max(|∇|, 1).
fn gradcheck_w(
    w: &DMatrix<f64>,
    forward: impl Fn(&DMatrix<f64>) -> DMatrix<f64>,
    grad: &DMatrix<f64>,
    r: &DMatrix<f64>,
    h: f64,
) -> f64 {
    let (mut err, mut scale) = (0.0f64, 1.0f64);
    for idx in 0..w.len() {
        let (mut wp, mut wm) = (w.clone(), w.clone());
        wp[idx] += h;
        wm[idx] -= h;
        let fd = (forward(&wp).dot(r) - forward(&wm).dot(r)) / (2.0 * h);
        err = err.max((fd - grad[idx]).abs());
        scale = scale.max(grad[idx].abs());
    }
    err / scale
}

#[test]
fn eigen_layer_composition_matches_finite_differences() {
    let q6 = orthogonal(20, 6);
    let (u7, v5) = (orthogonal(21, 7), orthogonal(22, 5));
    let sigma = DMatrix::from_fn(7, 5, |i, j| {
        if i == j {
            [0.5, 0.5, 1.0, 1.0, 2.0][i]
        } else {
            0.0
        }
    });
    let repeated = &u7 * sigma * v5.transpose();
    let rank3 = random_matrix(23, 7, 3) * random_matrix(24, 3, 5);
    // (name, W, TopK's k, full rank, simple top σ). TopK on W = I or orthogonal W (all σ = 1)
    // is only defined for k = n; σ = (2, 1, 1, 0.5, 0.5) has its top group {2}: k = 1.
    // Normalize is gradchecked where the top σ is simple (its gap checked below), and required
    // to give a finite gradient and σ_max(W') = 1 everywhere.
    let cases: [(&str, DMatrix<f64>, u32, bool, bool); 5] = [
        ("W = I", DMatrix::identity(6, 6), 6, true, false),
        ("W orthogonal", q6, 6, true, false),
        ("W random 7×5", random_matrix(25, 7, 5), 2, true, true),
        ("W repeated σ", repeated, 1, true, true),
        ("W rank 3", rank3, 2, false, true),
    ];
    for (name, w, k, full_rank, top_simple) in cases {
        let r = random_matrix(26, w.nrows(), w.ncols());
        let sv = w.clone().svd(false, false).singular_values;
        let mut sv: Vec<f64> = sv.iter().map(|s| s * s).collect();
        sv.sort_by(f64::total_cmp);
        assert_eq!(
            top_gap(&sv) >= NORMALIZE_GAP,
            top_simple,
            "{name}: σ² {sv:?}"
        );
        for f in modes(k).into_iter().chain([SpectralFn::Normalize]) {
            let (wp, grad) = layer(&w, f, &r);
            assert!(grad.iter().all(|x| x.is_finite()), "{name} {f:?}");
            let sv = wp.clone().svd(false, false).singular_values;
            if f == SpectralFn::Normalize {
                let top = sv.iter().fold(0.0f64, |a, &s| a.max(s));
                assert!((top - 1.0).abs() < 1e-12, "{name}: σ_max(W') = {top}");
                if !top_simple {
                    continue;
                }
            }
            // Rank 3: the three null directions of G sit below the floor; a step of 1e-6 moves
            // them to O(h²) = 1e-12, still below it, and W annihilates the floor's block, so
            // W' is smooth in W and the check is exact, with g(floor) ~ 1e3 magnifying the
            // rounding of L: 1e-6 there.
            let tol = if full_rank { TOL } else { 1e-6 };
            let h = if full_rank { H } else { 1e-6 };
            let e = gradcheck_w(&w, |w| layer(w, f, &r).0, &grad, &r, h);
            eprintln!("{name} {f:?}: relative error {e:.1e}");
            assert!(e <= tol, "{name} {f:?}: relative error {e:e}");
            if !full_rank {
                continue;
            }
            match f {
                SpectralFn::Clamp { lo, hi } => {
                    let (lo, hi) = (lo as f64, hi as f64);
                    assert!(
                        sv.iter().all(|&s| s >= lo - 1e-12 && s <= hi + 1e-12),
                        "{name}: clamped singular values {sv:?}"
                    );
                }
                SpectralFn::Orthogonal => {
                    let e = (wp.transpose() * &wp - DMatrix::identity(w.ncols(), w.ncols())).norm();
                    assert!(e < 1e-12, "{name}: ‖W'ᵀW' − I‖ = {e:e}");
                }
                _ => {}
            }
        }
    }
}

#[test]
fn textbook_eigh_backward_fails_on_identity_ours_does_not() {
    let n = 5;
    let f = SpectralFn::Orthogonal;
    let dh = widen(&random(30, n * n, 1.0));
    // W = I: G = I, the polar-factor gradient through autodiff of eigh.
    let eye = rows(&DMatrix::<f64>::identity(n, n));
    let (_, lam, v) = rs::spectral_forward(&eye, n, f);
    let textbook = rs::textbook_eigh_backward(&lam, &v, &dh, n, f);
    let ours = rs::spectral_backward(&lam, &v, &dh, n, f);
    assert!(
        textbook.iter().any(|x| !x.is_finite()),
        "textbook formula should be inf/NaN at G = I: {textbook:?}"
    );
    assert!(ours.iter().all(|x| x.is_finite()));
    // The textbook formula is implemented right: on distinct eigenvalues its symmetric part
    // is ours (to rounding, amplified by 1/min gap = 10).
    let g = with_spectrum(31, &[0.5, 0.6, 1.0, 2.0, 3.0]);
    for f in modes(2).into_iter().chain([SpectralFn::Normalize]) {
        let (_, lam, v) = rs::spectral_forward(&g, n, f);
        let t = rs::textbook_eigh_backward(&lam, &v, &dh, n, f);
        let o = rs::spectral_backward(&lam, &v, &dh, n, f);
        for i in 0..n {
            for j in 0..n {
                let sym = 0.5 * (t[i * n + j] + t[j * n + i]);
                assert!(
                    (sym - o[i * n + j]).abs() < 1e-12,
                    "{f:?} ({i},{j}): {sym} vs {}",
                    o[i * n + j]
                );
            }
        }
    }
}

#[test]
fn normalize_gradients_match_finite_differences() {
    let n = 6;
    let w = random_matrix(40, 8, n);
    // σ(G) = √λ_max(G) along every symmetric direction of a random Gram matrix (simple top).
    let g = rows(&(w.transpose() * &w));
    let (top, v1) = rs::top_eigen(&g, n);
    let dg = rs::sigma_max_backward(&top, &v1, &[1.0], n);
    let sigma = |g: &[f64]| rs::top_eigen(g, n).0[0].sqrt();
    let mut err = 0.0f64;
    for i in 0..n {
        for j in i..n {
            let fd =
                (sigma(&sym_step(&g, n, i, j, H)) - sigma(&sym_step(&g, n, i, j, -H))) / (2.0 * H);
            let exact = if i == j {
                dg[i * n + i]
            } else {
                2.0 * dg[i * n + j]
            };
            err = err.max((fd - exact).abs());
        }
    }
    eprintln!("dσ/dG: error {err:.1e}");
    assert!(err <= TOL);
    // W' = W/σ_max: dW = dW'/σ + 2W·dG, dG from dσ = −⟨dW', W⟩/σ² (the design's
    // Ḡ'/σ − (⟨Ḡ', W⟩/σ²)·u₁v₁ᵀ).
    let r = random_matrix(41, 8, n);
    let forward = |w: &DMatrix<f64>| {
        let g = rows(&(w.transpose() * w));
        w / rs::top_eigen(&g, n).0[0].sqrt()
    };
    let s = top[0].sqrt();
    let dsigma = -r.dot(&w) / (s * s);
    let dg = DMatrix::from_row_slice(n, n, &rs::sigma_max_backward(&top, &v1, &[dsigma], n));
    let grad = &r / s + &w * dg * 2.0;
    let e = gradcheck_w(&w, forward, &grad, &r, H);
    eprintln!("normalize: relative error {e:.1e}");
    assert!(e <= TOL);
    // SpectralFn::Normalize through the EigenLayer composition is the same map and gradient:
    // both are a handful of O(1) f64 operations on the same eigenpair, 1e-12 relative.
    let (wp, grad_fn) = layer(&w, SpectralFn::Normalize, &r);
    let close = |a: &DMatrix<f64>, b: &DMatrix<f64>| (a - b).amax() <= 1e-12 * b.amax();
    assert!(close(&wp, &forward(&w)), "W/σ_max");
    assert!(close(&grad_fn, &grad), "{grad_fn} vs {grad}");
    // And on G directly: spectral_backward of H = I/√λ_max is σ_max's gradient composed with
    // d(1/σ)/dσ = −1/σ²: dσ = ⟨dH, I⟩·(−1/σ²) = −tr(dH)/σ².
    let dh = random_matrix(42, n, n);
    let (_, lam, v) = rs::spectral_forward(&g, n, SpectralFn::Normalize);
    let ours = DMatrix::from_row_slice(
        n,
        n,
        &rs::spectral_backward(&lam, &v, &rows(&dh), n, SpectralFn::Normalize),
    );
    let dsigma = -dh.trace() / (s * s);
    let direct = DMatrix::from_row_slice(n, n, &rs::sigma_max_backward(&top, &v1, &[dsigma], n));
    assert!(close(&ours, &direct), "{ours} vs {direct}");
}

#[test]
fn normalize_at_repeated_top_is_a_one_sided_derivative() {
    // G = I: λ_max is not differentiable (every unit vector is a top eigenvector). The
    // gradient is finite and is the derivative along the solver's top eigenvector v₁: along
    // E = v₁v₁ᵀ, λ_max(I + tE) = 1 + t for t ≥ 0, so the one-sided difference quotient matches
    // ⟨∇L, E⟩; along −E, λ_max(I − tE) = 1 stays, so L is flat there and the two-sided
    // derivative does not exist. Second-order one-sided differences, step 1e-5: error ~h² ·
    // |L‴| ≈ 1e-10, we require 1e-7 as elsewhere.
    let n = 5;
    let f = SpectralFn::Normalize;
    let r = widen(&random(43, n * n, 1.0));
    let eye = rows(&DMatrix::<f64>::identity(n, n));
    let (_, lam, v) = rs::spectral_forward(&eye, n, f);
    let grad = rs::spectral_backward(&lam, &v, &r, n, f);
    assert!(grad.iter().all(|x| x.is_finite()), "{grad:?}");
    let v1: Vec<f64> = (0..n).map(|i| v[i * n + n - 1]).collect();
    let e: Vec<f64> = (0..n * n).map(|k| v1[k / n] * v1[k % n]).collect();
    let loss = |t: f64| {
        let g: Vec<f64> = eye.iter().zip(&e).map(|(a, b)| a + t * b).collect();
        dot(&r, &rs::spectral_forward(&g, n, f).0)
    };
    let one_sided =
        |dir: f64| (4.0 * loss(dir * H) - loss(2.0 * dir * H) - 3.0 * loss(0.0)) / (2.0 * H);
    let along = dot(&grad, &e);
    let (up, down) = (one_sided(1.0), one_sided(-1.0));
    eprintln!("G = I: ⟨∇L, v₁v₁ᵀ⟩ {along:.6}, one-sided along +E {up:.6}, along −E {down:.6}");
    assert!((up - along).abs() <= TOL * along.abs().max(1.0));
    assert!(down.abs() <= TOL, "L is flat along −v₁v₁ᵀ: {down}");
    assert!(
        along.abs() > 0.1,
        "the check needs a nonzero derivative: {along}"
    );
}

#[test]
fn rtol_values() {
    // ε^(1/3): the crossover of quotient cancellation and midpoint error (kernel docs).
    assert!((rtol::<f32>() - 4.92e-3).abs() < 1e-5);
    assert!((rtol::<f64>() - 6.06e-6).abs() < 1e-8);
}

// ---------------------------------------------------------------------------------------
// GPU kernels against the reference.

const GPU_SIZES: [usize; 6] = [1, 2, 7, 31, 64, 127];

fn gpu_modes(n: usize) -> [SpectralFn; 6] {
    [
        SpectralFn::Clamp { lo: 0.7, hi: 1.3 },
        SpectralFn::Orthogonal,
        SpectralFn::InvSqrt { eps: 1e-3 },
        SpectralFn::TopK { k: (n / 3) as u32 },
        SpectralFn::Shrink { keep: 0.2 },
        SpectralFn::Normalize,
    ]
}

/// One ascending spectrum of length n, of kind 0–4: random in [0.01, 4]; fully degenerate
/// (all 0.25); rank-deficient (the lower half ±3e-7 or 0, as f32 Gram matrices give, below
/// the floor 1e-6·λ_max); clustered (triples with relative gaps 1e-6 and 1e-3, both below the
/// f32 rtol 4.9e-3, and 2e-2 above it); straddling the Clamp kinks lo² = 0.49 and
/// hi² = 1.69 at relative distances 1e-4 and 1e-2.
fn spectrum(kind: usize, seed: u64, n: usize) -> Vec<f32> {
    let base: Vec<f32> = random(seed, n, 1.0)
        .iter()
        .map(|x| 2.005 + 1.995 * x)
        .collect();
    let mut lam: Vec<f32> = match kind {
        0 => base,
        1 => vec![0.25; n],
        2 => base
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                if i < n / 2 {
                    [-3e-7, 0.0, 2e-7][i % 3]
                } else {
                    x
                }
            })
            .collect(),
        3 => (0..n)
            .map(|i| base[i - i % 3] * (1.0 + (i % 3) as f32 * [1e-6, 1e-3, 2e-2][(i / 3) % 3]))
            .collect(),
        _ => (0..n)
            .map(|i| {
                let kink = if i % 2 == 0 { 0.49 } else { 1.69 };
                let d = [-1e-2, -1e-4, 1e-4, 1e-2, 0.3][(i / 2) % 5];
                kink * (1.0 + d)
            })
            .collect(),
    };
    lam.sort_by(|a, b| a.partial_cmp(b).unwrap());
    lam
}

/// max_i |gpu_i − ref_i| / tol_i: how close a passing comparison came to its bound.
fn worst_ratio(gpu: &[f32], reference: &[f64], tol: impl Fn(usize, f64) -> f64) -> f64 {
    gpu.iter()
        .zip(reference)
        .enumerate()
        .map(|(i, (&g, &r))| (g as f64 - r).abs() / tol(i, r))
        .fold(0.0, f64::max)
}

fn spectra(batch: usize, n: usize) -> Vec<f32> {
    (0..batch)
        .flat_map(|b| {
            let kind = if batch == 1 { n % 5 } else { b };
            spectrum(kind, 100 + (b * 1000 + n) as u64, n)
        })
        .collect()
}

#[test]
fn scale_columns_matches_reference() {
    // out = V·g(λ_j): one sqrt and one or two divisions (≤ 3 ulp each in Vulkan's precision
    // rules) and a product: 8ε relative against the f64 reference (Normalize's g = 1/√λ̂_max
    // included). Shrink's c = keep·mean
    // carries the rounding of an n-term f32 sum, (n−1)ε relative, into g = x/(x + c).
    let dev = device();
    let mut worst = [0.0f64; 6];
    for &n in &GPU_SIZES {
        for batch in [1, 5] {
            let lam = spectra(batch, n);
            let v = random(7 + n as u64, batch * n * n, 1.0);
            let shape = [batch, n];
            let tl = Tensor::from_slice(&dev, &shape, &lam).unwrap();
            let tv = Tensor::from_slice(&dev, &[batch, n, n], &v).unwrap();
            for (mi, f) in gpu_modes(n).into_iter().enumerate() {
                let gpu = scale_columns(f, &tl, &tv).unwrap().to_vec().unwrap();
                let r = rs::scale_columns(f, &widen(&lam), &widen(&v), n);
                let rel = if let SpectralFn::Shrink { .. } = f {
                    8.0 + n as f64
                } else {
                    8.0
                };
                let tol = |_: usize, r: f64| rel * EPS * r.abs() + 1e-30;
                worst[mi] = worst[mi].max(worst_ratio(&gpu, &r, tol));
                assert_close_each(&format!("{f:?} n={n} batch={batch}"), &gpu, &r, tol);
            }
        }
    }
    eprintln!(
        "scale_columns: largest error / tolerance per mode {:?}",
        worst.map(|w| format!("{w:.1e}"))
    );
}

#[test]
fn loewner_product_matches_reference() {
    // Against the f32 reference, which makes every branch decision (floor, Clamp region, rtol
    // gap test, TopK group) on the same correctly rounded f32 values as the shader, so the two
    // differ only by the rounding of sqrt/division (≤ 3 ulp on Vulkan) and fused multiply-adds.
    // Each side takes ≤ 10 roundings to form Lw·(S_ij + S_ji)/2: we allow 32ε·|Lw|·(|S_ij| +
    // |S_ji|)/2. Clamp pairs in different regions use the plain quotient (g_i − g_j)/(λ_i −
    // λ_j), whose rounding is amplified: add 32ε·(|g_i| + |g_j|)/max(|Δλ̂|, rtol·λ̂_max) per
    // unit of S. Shrink's diagonal τ = Σ_k S_kk·∂g_k/∂μ / n is an n-term sum: add
    // 4(n + 2)ε·Σ_k|S_kk·∂g_k/∂μ|/n. Normalize's Lw is 0, so every entry but (n−1, n−1) must
    // be exactly 0 (the tolerance there is 1e-30); that one is tr(S)·(−½λ̂_max^(−3/2)), an
    // n-term sum times a sqrt, two products and a division: 4(n + 2)ε·Σ_k|S_kk|·|∂g/∂λ_max|.
    let dev = device();
    let rt = rtol::<f32>() as f64;
    let mut worst = [0.0f64; 6];
    for &n in &GPU_SIZES {
        for batch in [1, 5] {
            let lam = spectra(batch, n);
            let s = random(9 + n as u64, batch * n * n, 1.0);
            let tl = Tensor::from_slice(&dev, &[batch, n], &lam).unwrap();
            let ts = Tensor::from_slice(&dev, &[batch, n, n], &s).unwrap();
            for (mi, f) in gpu_modes(n).into_iter().enumerate() {
                let gpu = loewner_product(f, &tl, &ts).unwrap().to_vec().unwrap();
                let r = rs::loewner_product(f, &lam, &s, n);
                let lw = rs::loewner(&lam, n, f);
                let mut tol = vec![0.0f64; batch * n * n];
                for b in 0..batch {
                    let l = &lam[b * n..(b + 1) * n];
                    let sc = SpectrumScale::of(f, l);
                    let hat: Vec<f64> = l.iter().map(|&x| x.max(sc.floor) as f64).collect();
                    let g: Vec<f64> = (0..n).map(|j| f.value(l[j], j, &sc) as f64).collect();
                    let m = &s[b * n * n..(b + 1) * n * n];
                    let tau_mag: f64 = (0..n)
                        .map(|k| (m[k * n + k] * f.mean_sensitivity(l[k], &sc)).abs() as f64)
                        .sum::<f64>()
                        / n as f64;
                    let top_mag: f64 = (0..n)
                        .map(|k| (m[k * n + k] * f.top_sensitivity(&sc)).abs() as f64)
                        .sum();
                    for i in 0..n {
                        for j in 0..n {
                            let e = b * n * n + i * n + j;
                            let s_mag = (m[i * n + j].abs() + m[j * n + i].abs()) as f64 / 2.0;
                            let mut mag = lw[e].abs() as f64;
                            if let SpectralFn::Clamp { lo, hi } = f {
                                let region = |x: f64| {
                                    (x >= (lo * lo) as f64) as i32 + (x > (hi * hi) as f64) as i32
                                };
                                if region(hat[i]) != region(hat[j]) {
                                    let gap = (hat[i] - hat[j]).abs().max(rt * hat[i].max(hat[j]));
                                    mag += (g[i].abs() + g[j].abs()) / gap;
                                }
                            }
                            tol[e] = 32.0 * EPS * mag * s_mag;
                            if i == j {
                                tol[e] += 4.0 * (n as f64 + 2.0) * EPS * tau_mag;
                            }
                            if i == n - 1 && j == n - 1 {
                                tol[e] += 4.0 * (n as f64 + 2.0) * EPS * top_mag;
                            }
                        }
                    }
                }
                let tol = |i: usize, _: f64| tol[i] + 1e-30;
                worst[mi] = worst[mi].max(worst_ratio(&gpu, &widen(&r), tol));
                assert_close_each(&format!("{f:?} n={n} batch={batch}"), &gpu, &widen(&r), tol);
            }
        }
    }
    eprintln!(
        "loewner_product: largest error / tolerance per mode {:?}",
        worst.map(|w| format!("{w:.1e}"))
    );
}

#[test]
fn f32_loewner_agrees_with_f64_on_well_separated_spectra() {
    // The f32 policy (rtol 4.9e-3) against f64 ground truth on random spectra, all modes: the
    // closed forms keep ~ε₃₂ relative accuracy, the guarded quotient ~ε₃₂/rtol = 2.4e-5.
    let n = 31;
    let lam = spectrum(0, 3, n);
    for f in gpu_modes(n) {
        let l32 = rs::loewner(&lam, n, f);
        let l64 = rs::loewner(&widen(&lam), n, f);
        let scale = l64.iter().fold(0.0f64, |a, x| a.max(x.abs())).max(1e-30);
        let err = l32
            .iter()
            .zip(&l64)
            .fold(0.0f64, |a, (&x, &y)| a.max((x as f64 - y).abs()));
        eprintln!(
            "{f:?}: f32 vs f64 Loewner, max error / max entry {:.1e}",
            err / scale
        );
        assert!(err <= 1e-4 * scale, "{f:?}: {err:e} vs {scale:e}");
    }
}

#[test]
fn bad_shapes_and_parameters_are_errors() {
    let dev = device();
    let f = SpectralFn::Orthogonal;
    let v = Tensor::zeros(&dev, &[5, 7]).unwrap();
    for shape in [&[5, 7, 6][..], &[4, 7, 7], &[7, 7], &[5, 7]] {
        let m = Tensor::zeros(&dev, shape).unwrap();
        assert!(
            matches!(scale_columns(f, &v, &m), Err(Error::Shape { .. })),
            "{shape:?}"
        );
        assert!(matches!(
            loewner_product(f, &v, &m),
            Err(Error::Shape { .. })
        ));
    }
    assert!(matches!(
        spectral_shape("x", &[0, 3], &[0, 3, 3]),
        Err(Error::Empty { .. })
    ));
    assert_eq!(spectral_shape("x", &[7], &[7, 7]).unwrap(), (1, 7));
    assert_eq!(
        spectral_shape("x", &[2, 3, 4], &[2, 3, 4, 4]).unwrap(),
        (6, 4)
    );
    let m = Tensor::zeros(&dev, &[5, 7, 7]).unwrap();
    for bad in [
        SpectralFn::TopK { k: 8 },
        SpectralFn::Clamp { lo: 2.0, hi: 1.0 },
        SpectralFn::Clamp {
            lo: 0.5,
            hi: f32::NAN,
        },
        SpectralFn::InvSqrt { eps: -1.0 },
        SpectralFn::Shrink {
            keep: f32::INFINITY,
        },
    ] {
        assert!(
            matches!(scale_columns(bad, &v, &m), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    // Buffers too small for the sizes given to a dispatch builder.
    let small = Tensor::zeros(&dev, &[5, 7, 6]).unwrap();
    assert!(matches!(
        loewner_product_dispatch(&dev, f, v.buffer(), m.buffer(), small.buffer(), 5, 7),
        Err(Error::Shape { .. })
    ));
}
