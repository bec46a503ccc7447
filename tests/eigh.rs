//! The batched Jacobi eigensolver against the f64 reference (nalgebra), on every family of
//! matrices the Eigen layers meet.
//!
//! Bounds, with ε = 2⁻²³ (f32), ‖·‖ measured in f64 on the f32 input, and n read as
//! max(n, 16) (small matrices still take a few sweeps, each rounding every entry a few times):
//! - eigenvalues: |λ − λ_ref| ≤ C_VALUES·n·ε·‖A‖₂ (Jacobi is backward stable: each of the
//!   O(n) rotations per sweep that touch an entry rounds it by O(ε)‖A‖, a few sweeps);
//! - residual: ‖AV − VΛ‖_F ≤ C_RESIDUAL·n·ε·‖A‖_F, for the same reason;
//! - orthogonality: ‖VᵀV − I‖_F ≤ C_ORTH·n·ε. The rotations alone leave ~1.5·n·√n·ε (every
//!   column is rounded (n − 1)·sweeps times, a random walk); the solver's closing
//!   Newton–Schulz step brings that down to the rounding of V itself. (LAPACK `ssyevd` in
//!   f32 measures ~0.5·n·ε.)
//! - graded SPD D·R·D: every eigenvalue to *relative* accuracy C_RELATIVE·n·ε, however small
//!   (Demmel–Veselić: the relative test keeps the perturbations graded like A). The reference
//!   there is σ(L)² with L the f64 Cholesky factor of A, whose SVD has relative accuracy;
//!   nalgebra's f64 `SymmetricEigen` has only absolute accuracy, 1e-16·‖A‖ = 1e-8 here.
//! - eigenvectors, where the gap g_j = min |λ_j − λ_k| is wide enough: ‖v_j − v_ref,j‖ ≤
//!   C_VECTOR·n·ε·‖A‖₂ / g_j (the Davis–Kahan bound on the backward error above), which also
//!   checks the sign convention against the reference.
//!
//! The measured worst ratios on lavapipe are noted at each constant. Every accuracy test runs on
//! every solver variant that takes its order, each forced explicitly (see `variants`); the
//! absolute level is also held against LAPACK's (`lapack_level_accuracy_at_every_order`).

mod common;
use common::*;
use eigengrad::kernels::autotune::{tune, TuneSource, CACHE_FILE};
use eigengrad::kernels::jacobi::{
    EighPlan, SmallEigh, DEFAULT_WARM_SWEEPS, STATUS_FINISHED, STATUS_NONFINITE_WARM_START,
    STATUS_NOT_CONVERGED, STATUS_WARM_START_REJECTED,
};
use eigengrad::tensor::read_words;
use eigengrad::{
    eigh, eigh_warm, reference, Device, Eigh, EighOptions, EighVariant, Error, Tensor, WarmStart,
};
use nalgebra::DMatrix;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Eigenvalue error in units of n·ε·‖A‖₂ (measured ≤ 0.89, on clustered spectra at n = 16;
/// ≤ 0.17 elsewhere).
const C_VALUES: f64 = 4.0;
/// Residual in units of n·ε·‖A‖_F (measured ≤ 1.12 on clustered spectra at n = 16, unchanged by
/// the first-order correction, which leaves pairs that close alone; ≤ 0.26 elsewhere).
const C_RESIDUAL: f64 = 4.0;
/// Orthogonality in units of n·ε (measured ≤ 0.19).
const C_ORTH: f64 = 1.0;
/// Relative eigenvalue error of graded matrices in units of n·ε (measured ≤ 0.28).
const C_RELATIVE: f64 = 2.0;
/// Eigenvector error in units of n·ε·‖A‖₂ / gap (measured ≤ 0.50).
const C_VECTOR: f64 = 4.0;

fn sym(a: &DMatrix<f64>) -> DMatrix<f64> {
    (a + a.transpose()) * 0.5
}

/// n×n row-major as an f64 matrix.
fn mat(a: &[f32], n: usize) -> DMatrix<f64> {
    DMatrix::from_fn(n, n, |i, j| a[i * n + j] as f64)
}

/// Uniform symmetric matrix, entries in [-1, 1].
fn random_symmetric(rng: &mut StdRng, n: usize) -> Vec<f32> {
    let mut a = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..=i {
            let x = rng.random_range(-1.0f32..=1.0);
            a[i * n + j] = x;
            a[j * n + i] = x;
        }
    }
    a
}

/// WᵀW for a k×n W with uniform entries: rank min(k, n).
fn gram(rng: &mut StdRng, n: usize, k: usize) -> Vec<f32> {
    let w = DMatrix::from_fn(k, n, |_, _| rng.random_range(-1.0f64..=1.0) as f32 as f64);
    let g = w.transpose() * w;
    (0..n * n).map(|e| g[(e / n, e % n)] as f32).collect()
}

/// Q·diag(λ)·Qᵀ with a random orthogonal Q (QR of a random matrix).
fn with_spectrum(rng: &mut StdRng, lambda: &[f64]) -> Vec<f32> {
    let n = lambda.len();
    let q = DMatrix::from_fn(n, n, |_, _| rng.random_range(-1.0f64..=1.0))
        .qr()
        .q();
    let a =
        &q * DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(lambda)) * q.transpose();
    (0..n * n).map(|e| a[(e / n, e % n)] as f32).collect()
}

/// D·R·D with D = 10^linspace(-4, 4) (shuffled) and R a well-conditioned SPD matrix with unit
/// diagonal: eigenvalues from ~1e-8 to ~1e8.
fn graded(rng: &mut StdRng, n: usize) -> Vec<f32> {
    let g = DMatrix::from_fn(n, n, |_, _| rng.random_range(-1.0f64..=1.0));
    let mut r = g.transpose() * g / n as f64 + DMatrix::identity(n, n) * 0.5;
    let d: Vec<f64> = (0..n).map(|i| r[(i, i)].sqrt()).collect();
    r = DMatrix::from_fn(n, n, |i, j| r[(i, j)] / (d[i] * d[j]));
    let mut exps: Vec<f64> = (0..n)
        .map(|i| -4.0 + 8.0 * i as f64 / (n.max(2) - 1) as f64)
        .collect();
    for i in (1..n).rev() {
        exps.swap(i, rng.random_range(0..=i));
    }
    (0..n * n)
        .map(|e| {
            let (i, j) = (e / n, e % n);
            (10f64.powf(exps[i]) * r[(i, j)] * 10f64.powf(exps[j])) as f32
        })
        .collect()
}

/// The matrix families every accuracy test draws from, by name.
fn family(name: &str, rng: &mut StdRng, n: usize) -> Vec<f32> {
    match name {
        "random" => random_symmetric(rng, n),
        "diagonal" => {
            let mut a = vec![0f32; n * n];
            for i in 0..n {
                a[i * n + i] = rng.random_range(-10.0f32..=10.0);
            }
            a
        }
        "zero" => vec![0f32; n * n],
        "identity" => (0..n * n)
            .map(|e| if e % (n + 1) == 0 { 1.0 } else { 0.0 })
            .collect(),
        // 1, 1 + 1e-6, 1 + 2e-6, …: every gap is ~8 ulps.
        "clustered" => with_spectrum(
            rng,
            &(0..n).map(|i| 1.0 + 1e-6 * i as f64).collect::<Vec<_>>(),
        ),
        "graded" => graded(rng, n),
        "rank-deficient" => gram(rng, n, n.div_ceil(2)),
        // WᵀW for a W with orthonormal columns, perturbed by 1e-3: eigenvalues all near 1.
        "near-orthogonal" => {
            let q = with_spectrum(rng, &vec![1.0; n]);
            let mut w = mat(&q, n);
            w.iter_mut()
                .for_each(|x| *x += rng.random_range(-1e-3f64..=1e-3));
            let g = w.transpose() * w;
            (0..n * n).map(|e| g[(e / n, e % n)] as f32).collect()
        }
        other => panic!("unknown family {other}"),
    }
}

const FAMILIES: [&str; 8] = [
    "random",
    "diagonal",
    "zero",
    "identity",
    "clustered",
    "graded",
    "rank-deficient",
    "near-orthogonal",
];

/// Worst ratios seen by one check, in the units of the constants above.
#[derive(Default, Debug)]
struct Ratios {
    values: f64,
    residual: f64,
    orth: f64,
    vector: f64,
}

/// Checks one matrix's eigenpairs against the reference: order, sign convention, and the
/// bounds in the header. Returns the ratios to the bounds' units.
fn check_one(what: &str, a: &[f32], n: usize, values: &[f32], vectors: &[f32]) -> Ratios {
    let eps = EPS;
    let nf = n.max(16) as f64;
    let a64 = sym(&mat(a, n));
    let (ref_values, ref_vectors) = reference::eigh::eigh(&widen(a), n);
    let norm_f = a64.norm();
    let norm_2 = ref_values.iter().fold(0f64, |m, x| m.max(x.abs()));
    let lambda: Vec<f64> = values.iter().map(|&x| x as f64).collect();
    let v = mat(vectors, n);
    assert!(
        values.iter().chain(vectors).all(|x| x.is_finite()),
        "{what}: non-finite output"
    );
    for j in 1..n {
        assert!(
            values[j - 1] <= values[j],
            "{what}: values not ascending at {j}: {values:?}"
        );
    }
    for j in 0..n {
        let col: Vec<f32> = (0..n).map(|r| vectors[r * n + j]).collect();
        let lead = (0..n).fold(0, |l, r| if col[r].abs() > col[l].abs() { r } else { l });
        assert!(
            col[lead] > 0.0,
            "{what}: vector {j} has a negative leading component"
        );
    }
    let mut r = Ratios::default();
    let scale = (nf * eps * norm_2).max(f64::MIN_POSITIVE);
    r.values = lambda
        .iter()
        .zip(&ref_values)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0.0, f64::max);
    let residual = (&a64 * &v
        - &v * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(lambda.clone())))
    .norm();
    r.residual = residual / (nf * eps * norm_f).max(f64::MIN_POSITIVE);
    r.orth = (v.transpose() * &v - DMatrix::identity(n, n)).norm() / (nf * eps);
    // Eigenvectors of well-separated eigenvalues whose leading component is unambiguous.
    for j in 0..n {
        let gap = (0..n)
            .filter(|&k| k != j)
            .map(|k| (ref_values[k] - ref_values[j]).abs())
            .fold(f64::INFINITY, f64::min);
        let bound = C_VECTOR * nf * eps * norm_2 / gap;
        if norm_2 == 0.0 || bound > 1e-2 {
            continue;
        }
        let col: Vec<f64> = (0..n).map(|k| ref_vectors[k * n + j]).collect();
        let mut mags: Vec<f64> = col.iter().map(|x| x.abs()).collect();
        mags.sort_by(|x, y| y.partial_cmp(x).unwrap());
        if n > 1 && mags[0] - mags[1] < 2.0 * bound {
            continue;
        }
        let err = (0..n)
            .map(|k| (vectors[k * n + j] as f64 - col[k]).powi(2))
            .sum::<f64>()
            .sqrt();
        r.vector = r.vector.max(err / (bound / C_VECTOR));
    }
    assert!(
        r.values <= C_VALUES,
        "{what}: eigenvalue error {:.3} n·ε·‖A‖₂",
        r.values
    );
    assert!(
        r.residual <= C_RESIDUAL,
        "{what}: residual {:.3} n·ε·‖A‖_F",
        r.residual
    );
    assert!(r.orth <= C_ORTH, "{what}: ‖VᵀV − I‖_F = {:.3} n·ε", r.orth);
    assert!(
        r.vector <= C_VECTOR,
        "{what}: eigenvector error {:.3} n·ε·‖A‖₂/gap",
        r.vector
    );
    r
}

/// Checks every matrix of a batch; prints the worst ratios.
fn check_batch(what: &str, a: &[f32], n: usize, e: &Eigh) -> Ratios {
    let values = e.values.to_vec().unwrap();
    let vectors = e.vectors.to_vec().unwrap();
    let mut worst = Ratios::default();
    for b in 0..a.len() / (n * n) {
        let r = check_one(
            &format!("{what} [{b}]"),
            &a[b * n * n..(b + 1) * n * n],
            n,
            &values[b * n..(b + 1) * n],
            &vectors[b * n * n..(b + 1) * n * n],
        );
        worst.values = worst.values.max(r.values);
        worst.residual = worst.residual.max(r.residual);
        worst.orth = worst.orth.max(r.orth);
        worst.vector = worst.vector.max(r.vector);
    }
    eprintln!("{what}: {worst:?}");
    worst
}

fn run(a: &[f32], batch: usize, n: usize, options: &EighOptions) -> Eigh {
    let t = Tensor::from_slice(&device(), &[batch, n, n], a).unwrap();
    eigh(&t, options).unwrap()
}

/// The blocked solver with blocks of at most 4 indices.
const BLOCKS_OF_4: EighVariant = EighVariant::BlockedWith { max_block: 4 };

/// Default options with the solver forced to `variant`.
fn forced(variant: EighVariant) -> EighOptions {
    EighOptions {
        variant,
        ..EighOptions::default()
    }
}

/// Every solver variant that takes order n on the test device with `options`, each to be
/// forced explicitly: the one-workgroup variants refuse orders above their limit (64, or 32
/// without the workgroup memory), and one dispatch refuses sweeps past a CPU adapter's loop
/// cap. The blocked path takes every order.
fn variants(n: usize, options: &EighOptions) -> Vec<EighOptions> {
    let mut all = vec![
        EighVariant::SmallPerSweep,
        EighVariant::SmallOneDispatch,
        EighVariant::Blocked,
    ];
    // Blocks of at most 4 give small orders many blocks, odd numbers of block pairs and blocks
    // made only of padding (n = 33: ten blocks, the last one all padding).
    if n <= 40 {
        all.push(BLOCKS_OF_4);
    }
    let usable: Vec<EighOptions> = all
        .into_iter()
        .map(|variant| EighOptions {
            variant,
            ..*options
        })
        .filter(|o| match EighPlan::new(&device(), 1, n, o) {
            Ok(_) => true,
            Err(Error::InvalidArgument(_)) => false,
            Err(e) => panic!("n={n} {:?}: {e}", o.variant),
        })
        .collect();
    let names: Vec<EighVariant> = usable.iter().map(|o| o.variant).collect();
    assert!(names.contains(&EighVariant::Blocked), "n={n}: {names:?}");
    assert!(
        n > 32 || names.contains(&EighVariant::SmallPerSweep),
        "n={n}: {names:?}"
    );
    eprintln!("n={n}: variants {names:?}");
    usable
}

#[test]
fn random_symmetric_every_size() {
    // Batches shrink as n grows to keep the test near 10 s on lavapipe.
    let cases = [
        (1, 512),
        (2, 512),
        (3, 512),
        (7, 256),
        (16, 128),
        (31, 32),
        (32, 32),
        (33, 8),
        (64, 8),
        (65, 4),
        (127, 2),
        (256, 1),
    ];
    let mut rng = StdRng::seed_from_u64(1);
    for (n, batch) in cases {
        let a: Vec<f32> = (0..batch)
            .flat_map(|_| random_symmetric(&mut rng, n))
            .collect();
        for options in variants(n, &EighOptions::default()) {
            let what = format!("random n={n} batch={batch} {:?}", options.variant);
            let e = run(&a, batch, n, &options);
            check_batch(&what, &a, n, &e);
            assert!(e.converged.iter().all(|&c| c), "{what}: not converged");
            let most = *e.sweeps.iter().max().unwrap();
            // f32 round-robin Jacobi: ≤ 6 sweeps at n = 32, ≤ 9 at n = 256 (published f32 figures).
            assert!(most <= 10, "{what}: {most} sweeps");
            eprintln!("{what}: sweeps {:?}", &e.sweeps[..batch.min(8)]);
        }
    }
}

#[test]
fn every_family_in_one_batch() {
    // One batch holding every family, so that matrices finish at different sweeps (0 for the
    // diagonal ones) within the same dispatches.
    let mut rng = StdRng::seed_from_u64(2);
    for n in [1, 2, 3, 7, 16, 31, 32, 33, 64, 65, 127] {
        let a: Vec<f32> = FAMILIES
            .iter()
            .flat_map(|f| family(f, &mut rng, n))
            .collect();
        for options in variants(n, &EighOptions::default()) {
            let what = format!("families n={n} {:?}", options.variant);
            let e = run(&a, FAMILIES.len(), n, &options);
            check_batch(&what, &a, n, &e);
            for (f, s) in FAMILIES.iter().zip(&e.sweeps) {
                if matches!(*f, "diagonal" | "zero" | "identity") {
                    assert_eq!(*s, 0, "{what}: {f} needs no sweep");
                }
            }
            eprintln!("{what}: sweeps {:?} converged {:?}", e.sweeps, e.converged);
        }
    }
}

#[test]
fn hard_families_at_n_256() {
    let mut rng = StdRng::seed_from_u64(11);
    let n = 256;
    let names = ["clustered", "graded", "rank-deficient", "near-orthogonal"];
    let a: Vec<f32> = names.iter().flat_map(|f| family(f, &mut rng, n)).collect();
    let e = run(&a, names.len(), n, &EighOptions::default());
    check_batch("hard families n=256", &a, n, &e);
    eprintln!(
        "hard families n=256: sweeps {:?} converged {:?}",
        e.sweeps.clone(),
        e.converged
    );
}

#[test]
fn exact_on_diagonal_zero_and_identity() {
    let dev = device();
    for n in [5, 40, 70] {
        let d: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % n) as f32 - n as f32 / 2.0)
            .collect();
        let mut a = vec![0f32; 3 * n * n];
        for i in 0..n {
            a[i * n + i] = d[i];
            a[2 * n * n + i * n + i] = 1.0;
        }
        let t = Tensor::from_slice(&dev, &[3, n, n], &a).unwrap();
        for options in variants(n, &EighOptions::default()) {
            let what = format!("n={n} {:?}", options.variant);
            let e = eigh(&t, &options).unwrap();
            let values = e.values.to_vec().unwrap();
            let vectors = e.vectors.to_vec().unwrap();
            let mut sorted = d.clone();
            sorted.sort_by(|x, y| x.partial_cmp(y).unwrap());
            assert_eq!(
                values[..n],
                sorted[..],
                "diagonal {what}: values are the sorted diagonal"
            );
            for (j, &x) in sorted.iter().enumerate() {
                // The eigenvector of value x is the unit vector of its position on the diagonal.
                let i = d.iter().position(|&y| y == x).unwrap();
                for r in 0..n {
                    assert_eq!(vectors[r * n + j], if r == i { 1.0 } else { 0.0 });
                }
            }
            let eye: Vec<f32> = (0..n * n)
                .map(|k| if k % (n + 1) == 0 { 1.0 } else { 0.0 })
                .collect();
            assert!(values[n..2 * n].iter().all(|&x| x == 0.0), "zero {what}");
            assert_eq!(vectors[n * n..2 * n * n], eye[..], "zero {what}: V = I");
            assert!(values[2 * n..].iter().all(|&x| x == 1.0), "identity {what}");
            assert_eq!(vectors[2 * n * n..], eye[..], "identity {what}: V = I");
            assert_eq!(e.sweeps, vec![0, 0, 0], "{what}");
        }
    }
}

#[test]
fn graded_matrices_keep_relative_accuracy() {
    let mut rng = StdRng::seed_from_u64(3);
    for (n, batch) in [(7, 8), (32, 8), (64, 4), (65, 2), (127, 1)] {
        let a: Vec<f32> = (0..batch).flat_map(|_| graded(&mut rng, n)).collect();
        for options in variants(n, &EighOptions::default()) {
            let what = format!("graded n={n} {:?}", options.variant);
            let e = run(&a, batch, n, &options);
            check_batch(&what, &a, n, &e);
            graded_relative_accuracy(&what, &a, batch, n, &e);
        }
    }
}

/// Every eigenvalue of the graded (SPD) matrices in `a` to relative accuracy C_RELATIVE·n·ε.
fn graded_relative_accuracy(what: &str, a: &[f32], batch: usize, n: usize, e: &Eigh) {
    let values = e.values.to_vec().unwrap();
    let mut worst = 0f64;
    for b in 0..batch {
        let l = mat(&a[b * n * n..(b + 1) * n * n], n)
            .cholesky()
            .expect("graded matrices are SPD")
            .l();
        let mut exact: Vec<f64> = l
            .svd(false, false)
            .singular_values
            .iter()
            .map(|s| s * s)
            .collect();
        exact.sort_by(|x, y| x.partial_cmp(y).unwrap());
        for (g, x) in values[b * n..(b + 1) * n].iter().zip(&exact) {
            worst = worst.max((*g as f64 - x).abs() / x / (n as f64 * EPS));
        }
        assert!(exact[0] < 1e-6 * exact[n - 1] || n < 8, "not graded enough");
    }
    eprintln!("{what}: worst relative error {worst:.3} n·ε");
    assert!(worst <= C_RELATIVE, "{what}: relative error {worst:.3} n·ε");
}

#[test]
fn asymmetric_input_uses_the_symmetric_part() {
    let mut rng = StdRng::seed_from_u64(4);
    for n in [6, 45, 66] {
        let a: Vec<f32> = (0..2 * n * n)
            .map(|_| rng.random_range(-1.0f32..=1.0))
            .collect();
        for options in variants(n, &EighOptions::default()) {
            let e = run(&a, 2, n, &options);
            // check_one compares with the reference of (A + Aᵀ)/2.
            check_batch(
                &format!("asymmetric n={n} {:?}", options.variant),
                &a,
                n,
                &e,
            );
        }
    }
}

#[test]
fn rank_two_input_gives_rank_one_values() {
    let mut rng = StdRng::seed_from_u64(5);
    let n = 9;
    let a = random_symmetric(&mut rng, n);
    let t = Tensor::from_slice(&device(), &[n, n], &a).unwrap();
    let e = eigh(&t, &EighOptions::default()).unwrap();
    assert_eq!(e.values.shape(), &[n]);
    assert_eq!(e.vectors.shape(), &[n, n]);
    check_one(
        "rank 2",
        &a,
        n,
        &e.values.to_vec().unwrap(),
        &e.vectors.to_vec().unwrap(),
    );
}

/// Every kernel of the solver once, at small orders, on every variant (`variants`: the
/// one-workgroup solvers, the blocked one with the device's blocks and in blocks of up to 4 —
/// n = 9: four blocks of 3; n = 17: six), cold and warm-started from the cold
/// run's vectors for a nearby matrix.
/// A batch of every family. Small enough to run on any backend; CI runs it on GL, where the
/// larger orders of the other tests take too long.
#[test]
fn every_variant_and_kernel_at_small_orders() {
    let dev = device();
    let mut rng = StdRng::seed_from_u64(14);
    for n in [1, 5, 9, 17] {
        let a: Vec<f32> = FAMILIES
            .iter()
            .flat_map(|f| family(f, &mut rng, n))
            .collect();
        let batch = FAMILIES.len();
        let moved = perturbed(&mut rng, &a, n);
        let t = Tensor::from_slice(&dev, &[batch, n, n], &moved).unwrap();
        for options in variants(n, &EighOptions::default()) {
            let what = format!("n={n} {:?}", options.variant);
            let cold = run(&a, batch, n, &options);
            check_batch(&format!("{what} cold"), &a, n, &cold);
            let warm = eigh_warm(&t, &cold.vectors, &options).unwrap();
            check_batch(&format!("{what} warm"), &moved, n, &warm);
        }
    }
}

/// A + δ with ‖δ‖_F = 1e-3·‖A‖_F, δ random symmetric.
fn perturbed(rng: &mut StdRng, a: &[f32], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(a.len());
    for m in a.chunks(n * n) {
        let d = random_symmetric(rng, n);
        let dn = d.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let an = m.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let k = (1e-3 * an / dn) as f32;
        out.extend(m.iter().zip(&d).map(|(x, y)| x + k * y));
    }
    out
}

#[test]
fn warm_start_converges_in_two_sweeps() {
    let dev = device();
    let mut rng = StdRng::seed_from_u64(6);
    for (n, batch) in [(16, 16), (33, 8), (64, 4), (65, 4), (127, 1)] {
        let a: Vec<f32> = (0..batch)
            .flat_map(|_| random_symmetric(&mut rng, n))
            .collect();
        let b = perturbed(&mut rng, &a, n);
        let t = Tensor::from_slice(&dev, &[batch, n, n], &b).unwrap();
        for options in variants(n, &EighOptions::default()) {
            let what = format!("warm n={n} {:?}", options.variant);
            let cold = run(&a, batch, n, &options);
            let warm = eigh_warm(&t, &cold.vectors, &options).unwrap();
            check_batch(&what, &b, n, &warm);
            let sweeps = &warm.sweeps;
            eprintln!("{what}: cold sweeps {:?}, warm {sweeps:?}", cold.sweeps);
            assert!(
                sweeps.iter().all(|&s| (1..=2).contains(&s)),
                "{what}: {sweeps:?}"
            );
            assert!(!warm.warm_start_rejected.iter().any(|&r| r), "{what}");
            assert!(
                cold.sweeps.iter().all(|&s| s >= 4),
                "cold {what}: {:?}",
                cold.sweeps
            );
        }
    }
}

#[test]
fn plan_feeds_its_vectors_back_without_new_pipelines() {
    let dev = device();
    let mut rng = StdRng::seed_from_u64(7);
    for (n, batch) in [(24, 4), (80, 2)] {
        // Run 0 starts cold, every later run from the vectors fed back by the one before.
        let options = EighOptions {
            warm_start: WarmStart::feedback(),
            ..EighOptions::default()
        };
        let plan = EighPlan::new(&dev, batch, n, &options).unwrap();
        let mut a: Vec<f32> = (0..batch)
            .flat_map(|_| random_symmetric(&mut rng, n))
            .collect();
        let built = dev.pipelines_created();
        // Eight steps of feedback: the orthogonality bound holds at every one (no drift).
        for step in 0..8 {
            plan.input().write(&a).unwrap();
            let mut encoder = dev
                .wgpu_device()
                .create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                plan.record(&mut pass, step);
            }
            plan.record_feedback(&mut encoder);
            dev.queue().submit([encoder.finish()]);
            let sweeps = eigengrad::tensor::read_words(&dev, plan.sweeps(), batch).unwrap();
            let status = eigengrad::tensor::read_words(&dev, plan.status(), batch).unwrap();
            assert!(
                status.iter().all(|&s| s == STATUS_FINISHED),
                "step {step}: {status:?}"
            );
            let values = plan.values().to_vec().unwrap();
            let vectors = plan.vectors().to_vec().unwrap();
            for b in 0..batch {
                check_one(
                    &format!("plan n={n} step {step} [{b}]"),
                    &a[b * n * n..(b + 1) * n * n],
                    n,
                    &values[b * n..(b + 1) * n],
                    &vectors[b * n * n..(b + 1) * n * n],
                );
            }
            eprintln!("plan n={n} step {step}: sweeps {sweeps:?}");
            if step > 0 {
                assert!(sweeps.iter().all(|&s| s <= 2), "step {step}: {sweeps:?}");
            }
            a = perturbed(&mut rng, &a, n);
        }
        assert_eq!(dev.pipelines_created(), built, "steps built pipelines");
    }
}

#[test]
fn results_are_deterministic() {
    let mut rng = StdRng::seed_from_u64(8);
    for (n, batch) in [(20, 16), (70, 3)] {
        let a: Vec<f32> = (0..batch)
            .flat_map(|_| random_symmetric(&mut rng, n))
            .collect();
        for options in variants(n, &EighOptions::default()) {
            let x = run(&a, batch, n, &options);
            let y = run(&a, batch, n, &options);
            assert_eq!(x.values.to_vec().unwrap(), y.values.to_vec().unwrap());
            assert_eq!(x.vectors.to_vec().unwrap(), y.vectors.to_vec().unwrap());
        }
    }
}

#[test]
fn max_sweeps_caps_the_work_and_is_reported() {
    let mut rng = StdRng::seed_from_u64(9);
    for n in [12, 68] {
        let a: Vec<f32> = (0..2).flat_map(|_| random_symmetric(&mut rng, n)).collect();
        let two = EighOptions {
            max_sweeps: 2,
            ..EighOptions::default()
        };
        for options in variants(n, &two) {
            let e = run(&a, 2, n, &options);
            assert_eq!(e.sweeps, vec![2, 2], "n={n} {:?}", options.variant);
            assert_eq!(e.converged, vec![false, false]);
            let values = e.values.to_vec().unwrap();
            assert!(values.iter().all(|x| x.is_finite()), "n={n}: {values:?}");
        }
    }
}

#[test]
fn non_finite_input_is_reported_with_its_batch_index() {
    let dev = device();
    let mut rng = StdRng::seed_from_u64(10);
    for n in [4, 70] {
        for (b, x) in [
            (3usize, f32::NAN),
            (0, f32::INFINITY),
            (4, f32::NEG_INFINITY),
        ] {
            let mut a: Vec<f32> = (0..5).flat_map(|_| random_symmetric(&mut rng, n)).collect();
            // Below the diagonal: the symmetric part would hide nothing, the check must see it.
            a[b * n * n + (n - 1) * n] = x;
            let t = Tensor::from_slice(&dev, &[5, n, n], &a).unwrap();
            match eigh(&t, &EighOptions::default()) {
                Err(Error::NonFinite { what, index }) => {
                    assert_eq!(what, "eigh input");
                    assert_eq!(index, b as u64, "n={n}");
                }
                other => panic!("n={n}: expected NonFinite, got {other:?}"),
            }
        }
        let a: Vec<f32> = (0..2).flat_map(|_| random_symmetric(&mut rng, n)).collect();
        let mut v0: Vec<f32> = (0..2 * n * n)
            .map(|k| if k % (n * n) % (n + 1) == 0 { 1.0 } else { 0.0 })
            .collect();
        v0[n * n + 1] = f32::NAN;
        let v0 = Tensor::from_slice(&dev, &[2, n, n], &v0).unwrap();
        let t = Tensor::from_slice(&dev, &[2, n, n], &a).unwrap();
        match eigh_warm(&t, &v0, &EighOptions::default()) {
            Err(Error::NonFinite { what, index }) => {
                assert_eq!((what.as_str(), index), ("eigh warm start", 1));
            }
            other => panic!("n={n}: expected NonFinite, got {other:?}"),
        }
    }
}

#[test]
fn bad_shapes_and_arguments_are_errors() {
    let dev = device();
    let shape_err = |shape: &[usize]| {
        let len = shape.iter().product();
        let t = Tensor::from_slice(&dev, shape, &vec![0.0; len]).unwrap();
        matches!(eigh(&t, &EighOptions::default()), Err(Error::Shape { .. }))
    };
    assert!(shape_err(&[3, 4]), "[3, 4]");
    assert!(shape_err(&[2, 3, 4]), "[2, 3, 4]");
    assert!(shape_err(&[5]), "[5]");
    assert!(shape_err(&[2, 2, 3, 3]), "[2, 2, 3, 3]");

    let a = Tensor::from_slice(&dev, &[2, 3, 3], &[0.0; 18]).unwrap();
    let wrong = Tensor::from_slice(&dev, &[3, 3], &[0.0; 9]).unwrap();
    assert!(matches!(
        eigh_warm(&a, &wrong, &EighOptions::default()),
        Err(Error::Shape { .. })
    ));
    for options in [
        EighOptions {
            tolerance: -1.0,
            ..EighOptions::default()
        },
        EighOptions {
            tolerance: f32::NAN,
            ..EighOptions::default()
        },
        EighOptions {
            max_sweeps: 1000,
            ..EighOptions::default()
        },
        EighOptions {
            warm_start: WarmStart::Feedback {
                cold_restart_every: 0,
            },
            ..EighOptions::default()
        },
    ] {
        let plan = EighPlan::new(&dev, 2, 3, &options);
        assert!(
            matches!(plan, Err(Error::InvalidArgument(_))),
            "{options:?}"
        );
        if options.warm_start == WarmStart::Off {
            assert!(matches!(eigh(&a, &options), Err(Error::InvalidArgument(_))));
        }
    }
    // The one-workgroup variants take n ≤ 64 at most.
    for variant in [EighVariant::SmallPerSweep, EighVariant::SmallOneDispatch] {
        let options = EighOptions {
            variant,
            ..EighOptions::default()
        };
        assert!(matches!(
            EighPlan::new(&dev, 1, 65, &options),
            Err(Error::InvalidArgument(_))
        ));
    }
    let options = EighOptions::default();
    assert!(matches!(
        EighPlan::new(&dev, 1, 4096, &options),
        Err(Error::TooLarge { .. })
    ));
    let too_many = dev.info().limits.max_compute_workgroups_per_dimension as usize + 1;
    assert!(matches!(
        EighPlan::new(&dev, too_many, 1, &options),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        EighPlan::new(&dev, 0, 4, &options),
        Err(Error::Empty { .. })
    ));
}

/// Records run `run` of `plan` and its feedback, submits, and returns (status, sweeps).
fn run_plan(plan: &EighPlan, run: u64) -> (Vec<u32>, Vec<u32>) {
    let dev = device();
    let mut encoder = dev
        .wgpu_device()
        .create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        plan.record(&mut pass, run);
    }
    plan.record_feedback(&mut encoder);
    dev.queue().submit([encoder.finish()]);
    let words = |b| read_words(&dev, b, plan.batch()).unwrap();
    (words(plan.status()), words(plan.sweeps()))
}

/// ‖VᵀV − I‖_F of every matrix of a plan's vectors, in units of n·ε.
fn departures(plan: &EighPlan) -> Vec<f64> {
    let n = plan.n();
    let vectors = plan.vectors().to_vec().unwrap();
    vectors
        .chunks(n * n)
        .map(|v| {
            let v = mat(v, n);
            (v.transpose() * &v - DMatrix::identity(n, n)).norm() / (n.max(16) as f64 * EPS)
        })
        .collect()
}

/// Checks every matrix of a plan's last run against the reference.
fn check_plan(what: &str, plan: &EighPlan, a: &[f32]) {
    let n = plan.n();
    let values = plan.values().to_vec().unwrap();
    let vectors = plan.vectors().to_vec().unwrap();
    for b in 0..plan.batch() {
        check_one(
            &format!("{what} [{b}]"),
            &a[b * n * n..(b + 1) * n * n],
            n,
            &values[b * n..(b + 1) * n],
            &vectors[b * n * n..(b + 1) * n * n],
        );
    }
}

#[test]
fn warm_runs_record_few_sweeps_and_recover_from_a_large_step() {
    let dev = device();
    let mut rng = StdRng::seed_from_u64(12);
    for (n, batch) in [(16, 4), (33, 2), (64, 2), (97, 1)] {
        for base in variants(n, &EighOptions::default()) {
            let what = format!("n={n} {:?}", base.variant);
            let options = |warm_sweeps| EighOptions {
                warm_sweeps,
                warm_start: WarmStart::feedback(),
                ..base
            };
            // Per sweep and blocked, each warm sweep allowed adds the dispatches of one sweep;
            // in one dispatch none. A cold run records max_sweeps sweeps, but not the warm
            // prologue's three dispatches (V0ᵀ·A·V0 in two products, and the orthogonality
            // fallback).
            let counts: Vec<usize> = (1..=4)
                .map(|k| {
                    let plan = EighPlan::new(&dev, batch, n, &options(k)).unwrap();
                    plan.dispatches_per_run()
                })
                .collect();
            let plan = EighPlan::new(&dev, batch, n, &options(DEFAULT_WARM_SWEEPS)).unwrap();
            let (warm, cold) = (plan.dispatches_per_run(), plan.dispatches_per_cold_run());
            eprintln!("{what}: dispatches per warm run {counts:?}, cold {cold}");
            let max_sweeps = base.max_sweeps as usize;
            let budgeted = base.variant != EighVariant::SmallOneDispatch;
            if budgeted {
                let per_sweep = counts[1] - counts[0];
                assert!(per_sweep > 0, "{what}: {counts:?}");
                let linear: Vec<usize> = (0..4).map(|k| counts[0] + k * per_sweep).collect();
                assert_eq!(counts, linear, "{what}");
                let sweeps = DEFAULT_WARM_SWEEPS as usize;
                assert_eq!(cold + 3, warm + (max_sweeps - sweeps) * per_sweep, "{what}");
            } else {
                assert!(counts.iter().all(|&c| c == counts[0]), "{what}");
                assert_eq!(cold + 3, warm, "{what}");
            }

            // Run 0 is cold.
            let a: Vec<f32> = (0..batch)
                .flat_map(|_| random_symmetric(&mut rng, n))
                .collect();
            plan.input().write(&a).unwrap();
            let (status, sweeps) = run_plan(&plan, 0);
            assert!(
                status.iter().all(|&s| s == STATUS_FINISHED),
                "{what}: {status:?}"
            );
            check_plan(&format!("{what} cold"), &plan, &a);
            // Run 1: a step as large as the matrix (another random matrix), which needs as
            // many sweeps as a cold start.
            let b: Vec<f32> = (0..batch)
                .flat_map(|_| random_symmetric(&mut rng, n))
                .collect();
            plan.input().write(&b).unwrap();
            let (status, step) = run_plan(&plan, 1);
            eprintln!("{what}: cold sweeps {sweeps:?}, large step {step:?} {status:?}");
            if budgeted {
                // The budget runs out: reported, the vectors still orthonormal.
                assert!(
                    step.iter().all(|&s| s == DEFAULT_WARM_SWEEPS),
                    "{what}: {step:?}"
                );
                let flag = STATUS_FINISHED | STATUS_NOT_CONVERGED;
                assert!(status.iter().all(|&s| s == flag), "{what}: {status:?}");
                let orth = departures(&plan);
                assert!(orth.iter().all(|&d| d <= C_ORTH), "{what}: {orth:?}");
                // The next runs continue from the fed-back vectors.
                let mut runs = 1;
                let mut status = status;
                while status.iter().any(|&s| s & STATUS_NOT_CONVERGED != 0) {
                    runs += 1;
                    assert!(runs <= 4, "{what}: not converged after {runs} runs");
                    status = run_plan(&plan, runs).0;
                }
                eprintln!("{what}: converged at run {runs}");
            } else {
                // One dispatch keeps sweeping on the device.
                assert!(
                    status.iter().all(|&s| s == STATUS_FINISHED),
                    "{what}: {status:?}"
                );
                assert!(
                    step.iter().all(|&s| s > DEFAULT_WARM_SWEEPS),
                    "{what}: {step:?}"
                );
            }
            check_plan(&format!("{what} after the large step"), &plan, &b);
        }
    }
}

#[test]
fn one_dispatch_computes_what_the_per_sweep_dispatches_compute() {
    // The same kernel, looping on the device instead of once per dispatch: bit for bit the
    // same results, cold and warm. On llvmpipe this runs only where the whole solve stays
    // under its loop cap (all these sizes at 15 sweeps; n = 64 would break from 32 sweeps).
    let dev = device();
    let mut rng = StdRng::seed_from_u64(13);
    for n in [1, 2, 7, 16, 31, 33, 64] {
        let batch = 3;
        let a: Vec<f32> = FAMILIES[..batch]
            .iter()
            .flat_map(|f| family(f, &mut rng, n))
            .collect();
        let moved = perturbed(&mut rng, &a, n);
        let t = Tensor::from_slice(&dev, &[batch, n, n], &moved).unwrap();
        let results: Vec<(Vec<f32>, Vec<f32>, Vec<u32>)> =
            [EighVariant::SmallPerSweep, EighVariant::SmallOneDispatch]
                .into_iter()
                .flat_map(|variant| {
                    let options = EighOptions {
                        variant,
                        ..EighOptions::default()
                    };
                    let cold = run(&a, batch, n, &options);
                    let warm = eigh_warm(&t, &cold.vectors, &options).unwrap();
                    [cold, warm].map(|e| {
                        let values = e.values.to_vec().unwrap();
                        (values, e.vectors.to_vec().unwrap(), e.sweeps)
                    })
                })
                .collect();
        assert_eq!(results[0], results[2], "cold n={n}");
        assert_eq!(results[1], results[3], "warm n={n}");
        check_one(
            &format!("one dispatch n={n}"),
            &a[..n * n],
            n,
            &results[2].0[..n],
            &results[2].1[..n * n],
        );
    }
}

#[test]
fn one_dispatch_respects_a_cpu_adapters_loop_cap() {
    let dev = device();
    let long = |variant| EighOptions {
        max_sweeps: 100,
        variant,
        ..EighOptions::default()
    };
    // n = 16 at 100 sweeps stays under llvmpipe's cap, n = 64 does not.
    let fits = EighPlan::new(&dev, 1, 16, &long(EighVariant::SmallOneDispatch)).unwrap();
    assert_eq!(fits.variant(), EighVariant::SmallOneDispatch);
    let too_long = EighPlan::new(&dev, 1, 64, &long(EighVariant::SmallOneDispatch));
    let auto = EighPlan::new(&dev, 1, 64, &long(EighVariant::Auto)).unwrap();
    if dev.info().is_cpu() {
        assert!(
            matches!(too_long, Err(Error::InvalidArgument(_))),
            "{too_long:?}"
        );
        assert_eq!(auto.variant(), EighVariant::SmallPerSweep);
    } else {
        assert_eq!(too_long.unwrap().variant(), EighVariant::SmallOneDispatch);
        assert_eq!(auto.variant(), EighVariant::small_for_device(&dev));
    }
    // Larger orders go to the blocked path.
    let big = EighPlan::new(&dev, 1, 65, &EighOptions::default()).unwrap();
    assert_eq!(big.variant(), EighVariant::Blocked);
}

#[test]
fn small_solver_autotuning_is_measured_once_and_cached() {
    // A device of its own: the choice it records must not change the other tests' device.
    let dev = Device::new().unwrap();
    let dir = std::env::temp_dir().join(format!("eigengrad-eigh-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join(CACHE_FILE);
    let tuned = tune::<SmallEigh>(&dev, Some(&path), false).unwrap();
    eprintln!("eigh autotune: {tuned:?}");
    assert_eq!(tuned.source, TuneSource::Measured);
    let timed: Vec<EighVariant> = tuned.timings_ms.iter().map(|t| t.0).collect();
    assert_eq!(timed, EighVariant::SMALL);
    assert!(tuned
        .timings_ms
        .iter()
        .all(|t| t.1.is_finite() && t.1 > 0.0));
    assert!(EighVariant::SMALL.contains(&tuned.variant));
    assert_eq!(EighVariant::small_for_device(&dev), tuned.variant);
    // Plans built afterwards use it (n = 16 fits one dispatch on every adapter).
    let plan = EighPlan::new(&dev, 1, 16, &EighOptions::default()).unwrap();
    assert_eq!(plan.variant(), tuned.variant);
    let again = tune::<SmallEigh>(&dev, Some(&path), false).unwrap();
    assert_eq!(
        (again.source, again.variant),
        (TuneSource::Memory, tuned.variant)
    );
    // Another device on the same adapter reads the file instead of measuring.
    let other = Device::new().unwrap();
    let read = tune::<SmallEigh>(&other, Some(&path), false).unwrap();
    assert_eq!(
        (read.source, read.variant),
        (TuneSource::Disk, tuned.variant)
    );
    assert!(read.timings_ms.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// LAPACK `ssyevd` in f32 (measured through scipy 1.17) on random, clustered, rank-deficient and
/// near-orthogonal Gram matrices, n ≤ 512: residual ‖AV − VΛ‖_F/‖A‖_F ≤ 1.1e-6, eigenvalue
/// error ≤ 9e-7·‖A‖₂. The solver must stay within 3× of both at every order.
const LAPACK_RESIDUAL: f64 = 1.1e-6;
const LAPACK_VALUES: f64 = 9e-7;
const LAPACK_FACTOR: f64 = 3.0;

#[test]
fn lapack_level_accuracy_at_every_order() {
    let mut rng = StdRng::seed_from_u64(14);
    for (n, batch) in [(16, 8), (64, 4), (256, 1), (512, 1)] {
        for name in ["random", "rank-deficient"] {
            let a: Vec<f32> = (0..batch).flat_map(|_| family(name, &mut rng, n)).collect();
            for options in variants(n, &EighOptions::default()) {
                let what = format!("{name} n={n} {:?}", options.variant);
                let e = run(&a, batch, n, &options);
                let values = e.values.to_vec().unwrap();
                let vectors = e.vectors.to_vec().unwrap();
                let (mut residual, mut error) = (0f64, 0f64);
                for b in 0..batch {
                    let m = &a[b * n * n..(b + 1) * n * n];
                    let a64 = sym(&mat(m, n));
                    let v = mat(&vectors[b * n * n..(b + 1) * n * n], n);
                    let lambda: Vec<f64> = values[b * n..(b + 1) * n]
                        .iter()
                        .map(|&x| x as f64)
                        .collect();
                    let (exact, _) = reference::eigh::eigh(&widen(m), n);
                    let norm_2 = exact.iter().fold(0f64, |x, y| x.max(y.abs()));
                    let av = &a64 * &v - &v * DMatrix::from_diagonal(&lambda.clone().into());
                    residual = residual.max(av.norm() / a64.norm());
                    let worst = lambda.iter().zip(&exact).map(|(x, y)| (x - y).abs());
                    error = error.max(worst.fold(0.0, f64::max) / norm_2);
                }
                eprintln!(
                    "{what}: residual {residual:.2e} (LAPACK {LAPACK_RESIDUAL:.1e}), eigenvalue \
                     error {error:.2e}·‖A‖₂ (LAPACK {LAPACK_VALUES:.1e})"
                );
                assert!(
                    residual <= LAPACK_FACTOR * LAPACK_RESIDUAL,
                    "{what}: {residual:e}"
                );
                assert!(error <= LAPACK_FACTOR * LAPACK_VALUES, "{what}: {error:e}");
                check_batch(&what, &a, n, &e);
            }
        }
    }
}

#[test]
fn entries_near_the_f32_limits_give_correct_eigenpairs() {
    let dev = device();
    let mut rng = StdRng::seed_from_u64(15);
    for n in [5, 40, 70] {
        // A spectrum spread over [-3e38, 3e38]: entries near the top of the f32 range, where
        // the rotations of the unscaled matrix overflow.
        let top: Vec<f64> = (0..n)
            .map(|i| 3e38 * (2.0 * i as f64 / (n - 1) as f64 - 1.0))
            .collect();
        let huge = with_spectrum(&mut rng, &top);
        // Entries ≤ 1e-39, every one subnormal: the unscaled test would call them negligible.
        let tiny: Vec<f32> = random_symmetric(&mut rng, n)
            .iter()
            .map(|x| x * 1e-39)
            .collect();
        assert!(huge.iter().all(|x| x.is_finite()) && huge.iter().any(|x| x.abs() > 1e37));
        assert!(tiny.iter().all(|&x| x == 0.0 || !x.is_normal()));
        let a = [huge, tiny].concat();
        for options in variants(n, &EighOptions::default()) {
            let what = format!("range n={n} {:?}", options.variant);
            let e = run(&a, 2, n, &options);
            check_batch(&what, &a, n, &e);
            assert_eq!(e.converged, vec![true, true], "{what}");
            assert!(e.sweeps.iter().all(|&s| s > 0), "{what}: {:?}", e.sweeps);
        }
    }
    // Finite entries whose spectrum is not: λ_max = 4·3e38 > f32::MAX, a clear error.
    let t = Tensor::from_slice(&dev, &[2, 4, 4], &[[1.0f32; 16], [3e38; 16]].concat()).unwrap();
    match eigh(&t, &EighOptions::default()) {
        Err(Error::NonFinite { what, index }) => {
            assert!(what.contains("eigenvalues"), "{what}");
            assert_eq!(index, 1);
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

#[test]
fn non_orthogonal_warm_start_falls_back_to_a_cold_start() {
    let dev = device();
    let mut rng = StdRng::seed_from_u64(16);
    for n in [6, 33, 70] {
        let a: Vec<f32> = (0..3).flat_map(|_| random_symmetric(&mut rng, n)).collect();
        // V0 of matrix 0: 1.01·I; of matrix 1: the (orthogonal) eigenvectors of a nearby
        // matrix; of matrix 2: a random matrix.
        let near = run(&perturbed(&mut rng, &a, n), 3, n, &EighOptions::default());
        let mut v0 = near.vectors.to_vec().unwrap();
        for (k, x) in v0[..n * n].iter_mut().enumerate() {
            *x = if k % (n + 1) == 0 { 1.01 } else { 0.0 };
        }
        for x in &mut v0[2 * n * n..] {
            *x = rng.random_range(-1.0f32..=1.0);
        }
        let t = Tensor::from_slice(&dev, &[3, n, n], &a).unwrap();
        let v0_tensor = Tensor::from_slice(&dev, &[3, n, n], &v0).unwrap();
        for options in variants(n, &EighOptions::default()) {
            let what = format!("n={n} {:?}", options.variant);
            // Through eigh_warm: correct eigenpairs, the rejection reported.
            let e = eigh_warm(&t, &v0_tensor, &options).unwrap();
            assert_eq!(e.warm_start_rejected, vec![true, false, true], "{what}");
            assert_eq!(e.converged, vec![true, true, true], "{what}");
            check_batch(&format!("rejected V0 {what}"), &a, n, &e);

            // Through a plan: the status bit, orthonormal vectors at once, and the eigenpairs
            // once converged (on the per-sweep and blocked paths, whose warm runs record
            // `warm_sweeps` = 3 sweeps, the cold start may need the next runs: up to
            // max_sweeps = 15 sweeps in all).
            let given = EighOptions {
                warm_start: WarmStart::Given,
                ..options
            };
            let plan = EighPlan::new(&dev, 3, n, &given).unwrap();
            plan.input().write(&a).unwrap();
            plan.warm_start().unwrap().write(&v0).unwrap();
            let (status, _) = run_plan(&plan, 0);
            let rejected: Vec<bool> = status
                .iter()
                .map(|s| s & STATUS_WARM_START_REJECTED != 0)
                .collect();
            assert_eq!(rejected, vec![true, false, true], "plan {what}: {status:?}");
            let orth = departures(&plan);
            assert!(orth.iter().all(|&d| d <= C_ORTH), "plan {what}: {orth:?}");
            let mut status = status;
            let mut runs = 0;
            while status.iter().any(|&s| s & STATUS_NOT_CONVERGED != 0) {
                runs += 1;
                assert!(
                    runs <= 5,
                    "plan {what}: not converged after {runs} more runs"
                );
                status = run_plan(&plan, runs).0;
            }
            check_plan(&format!("plan rejected V0 {what}"), &plan, &a);

            // A plan whose V0 was never written (zeros) starts cold too.
            let fresh = EighPlan::new(&dev, 3, n, &given).unwrap();
            fresh.input().write(&a).unwrap();
            let (status, _) = run_plan(&fresh, 0);
            assert!(
                status.iter().all(|s| s & STATUS_WARM_START_REJECTED != 0),
                "{what}"
            );

            // NaN in V0: reported, NaN results for that matrix only.
            let mut bad = v0.clone();
            bad[n * n + 1] = f32::NAN;
            plan.warm_start().unwrap().write(&bad).unwrap();
            let (status, _) = run_plan(&plan, 0);
            let nan: Vec<bool> = status
                .iter()
                .map(|s| s & STATUS_NONFINITE_WARM_START != 0)
                .collect();
            assert_eq!(nan, vec![false, true, false], "{what}: {status:?}");
            let values = plan.values().to_vec().unwrap();
            assert!(values[n..2 * n].iter().all(|x| x.is_nan()), "{what}");
            assert!(values[..n].iter().all(|x| x.is_finite()), "{what}");
        }
    }
}

#[test]
fn every_family_in_one_batch_small_blocks() {
    // Blocks of 1, 2 and 4 indices: the blocked solver's degenerate geometries.
    for max_block in [1, 2, 4] {
        every_family_in_one_batch_with(EighVariant::BlockedWith { max_block }, &[3, 9, 13, 25, 33]);
    }
}

#[test]
fn every_family_in_one_batch_blocked_orders() {
    // Both sides of every change in the number of blocks of 32 (64, 128), primes and round
    // numbers.
    every_family_in_one_batch_with(EighVariant::Blocked, &[100, 128, 129, 200]);
}

fn every_family_in_one_batch_with(variant: EighVariant, orders: &[usize]) {
    let mut rng = StdRng::seed_from_u64(2);
    for &n in orders {
        let a: Vec<f32> = FAMILIES
            .iter()
            .flat_map(|f| family(f, &mut rng, n))
            .collect();
        let what = format!("families n={n} {variant:?}");
        let e = run(&a, FAMILIES.len(), n, &forced(variant));
        check_batch(&what, &a, n, &e);
        for (f, s) in FAMILIES.iter().zip(&e.sweeps) {
            if matches!(*f, "diagonal" | "zero" | "identity") {
                assert_eq!(*s, 0, "{what}: {f} needs no sweep");
            }
        }
        assert!(e.converged.iter().all(|&c| c), "{what}: {:?}", e.converged);
        eprintln!("{what}: sweeps {:?}", e.sweeps);
    }
}

#[test]
fn random_and_rank_deficient_at_n_512() {
    // The largest order tested on lavapipe (about a minute): one random matrix and one
    // rank-deficient Gram matrix, cold, then warm-started from their eigenvectors. The relative
    // test resolves the roundoff-level null space of the Gram matrix too, which takes 15–16
    // sweeps at this order: 20 allowed. The perturbation is a full-rank random matrix, so the
    // Gram matrix's null space is a new problem for the warm start: only the random matrix is
    // held to two sweeps.
    let mut rng = StdRng::seed_from_u64(12);
    let n = 512;
    let a: Vec<f32> = ["random", "rank-deficient"]
        .iter()
        .flat_map(|f| family(f, &mut rng, n))
        .collect();
    let options = EighOptions {
        max_sweeps: 20,
        ..forced(EighVariant::Blocked)
    };
    let cold = run(&a, 2, n, &options);
    check_batch("n=512 cold", &a, n, &cold);
    let b = perturbed(&mut rng, &a, n);
    let t = Tensor::from_slice(&device(), &[2, n, n], &b).unwrap();
    let warm = eigh_warm(&t, &cold.vectors, &options).unwrap();
    check_batch("n=512 warm", &b, n, &warm);
    eprintln!(
        "n=512: sweeps cold {:?}, warm {:?}",
        cold.sweeps, warm.sweeps
    );
    assert_eq!(cold.converged, [true, true], "cold {:?}", cold.sweeps);
    assert_eq!(warm.converged, [true, true], "warm {:?}", warm.sweeps);
    assert!(warm.sweeps[0] <= 2, "warm {:?}", warm.sweeps);
}

#[test]
fn blocked_dispatches_grow_with_n_over_b() {
    // A cold run records every sweep allowed (converged matrices make them empty), so its count
    // is linear in max_sweeps: per sweep 2(2k − 1) + 2 = 2·(2k blocks) dispatches. The bound
    // for a cold solve of 15 sweeps: ≤ 300 at n = 256, ≤ 1,000 at n = 512, which needs blocks
    // of 32 — what every device with 32 KiB of workgroup memory and 256 invocations per
    // workgroup gets.
    let dev = device();
    let limits = &dev.info().limits;
    let roomy = limits.max_compute_workgroup_storage_size >= 32 * 1024
        && limits.max_compute_invocations_per_workgroup >= 256;
    for (n, bound) in [(65, 150), (128, 150), (256, 300), (512, 1000)] {
        for warm_start in [WarmStart::Off, WarmStart::Given] {
            let plan = |max_sweeps| {
                let options = EighOptions {
                    max_sweeps,
                    warm_start,
                    ..forced(EighVariant::Blocked)
                };
                EighPlan::new(&dev, 1, n, &options).unwrap()
            };
            let full = plan(15);
            let b = full.block_size().expect("a blocked plan");
            let blocks = 2 * n.div_ceil(2 * b);
            if roomy {
                assert_eq!(blocks, 2 * n.div_ceil(64), "n={n}: blocks of {b}");
            }
            let none = plan(0).dispatches_per_cold_run();
            let per_sweep = (full.dispatches_per_cold_run() - none) / 15;
            assert_eq!(
                full.dispatches_per_cold_run(),
                none + 15 * per_sweep,
                "n={n}: not linear in the sweeps"
            );
            assert_eq!(per_sweep, 2 * blocks, "n={n}: dispatches per sweep");
            for (what, count) in [
                ("cold", full.dispatches_per_cold_run()),
                ("per run", full.dispatches_per_run()),
            ] {
                assert!(
                    count <= bound,
                    "n={n} {warm_start:?} {what}: {count} dispatches"
                );
            }
            eprintln!(
                "n={n} {warm_start:?}: {full:?}, cold {} / per run {} dispatches ({per_sweep} per sweep)",
                full.dispatches_per_cold_run(),
                full.dispatches_per_run()
            );
        }
    }
}

#[test]
fn auto_takes_one_workgroup_up_to_64_then_blocked() {
    let dev = device();
    for n in [1, 32, 33, 64, 65, 100] {
        let auto = EighPlan::new(&dev, 2, n, &EighOptions::default()).unwrap();
        assert_eq!(auto.block_size().is_some(), n > 64, "n={n}: {auto:?}");
        let expected_blocked = auto.variant() == EighVariant::Blocked;
        assert_eq!(expected_blocked, n > 64, "n={n}: {auto:?}");
    }
}

#[test]
fn unsupported_variants_are_errors() {
    let dev = device();
    let plan = |n, variant| EighPlan::new(&dev, 1, n, &forced(variant));
    assert!(matches!(
        plan(65, EighVariant::SmallPerSweep),
        Err(Error::InvalidArgument(_))
    ));
    for max_block in [0, 33] {
        let variant = EighVariant::BlockedWith { max_block };
        assert!(
            matches!(plan(40, variant), Err(Error::InvalidArgument(_))),
            "max_block {max_block}"
        );
    }
}
