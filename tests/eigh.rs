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
//!   Newton–Schulz step brings that down to the rounding of V itself. (LAPACK `ssyevd`,
//!   ANCHORS.md: ~0.5·n·ε.)
//! - graded SPD D·R·D: every eigenvalue to *relative* accuracy C_RELATIVE·n·ε, however small
//!   (Demmel–Veselić: the relative test keeps the perturbations graded like A). The reference
//!   there is σ(L)² with L the f64 Cholesky factor of A, whose SVD has relative accuracy;
//!   nalgebra's f64 `SymmetricEigen` has only absolute accuracy, 1e-16·‖A‖ = 1e-8 here.
//! - eigenvectors, where the gap g_j = min |λ_j − λ_k| is wide enough: ‖v_j − v_ref,j‖ ≤
//!   C_VECTOR·n·ε·‖A‖₂ / g_j (the Davis–Kahan bound on the backward error above), which also
//!   checks the sign convention against the reference.
//!
//! The measured worst ratios on lavapipe are noted at each constant.
//!
//! Every accuracy test runs on each solver that takes the order, forced by name ([`variants`]):
//! the one-workgroup solver up to n = 64, the blocked solver at every order — with the
//! device's blocks, and with small blocks ([`EighVariant::BlockedWith`]) so that small orders
//! get many blocks, odd numbers of block pairs and blocks made only of padding.

mod common;
use common::*;
use eigengrad::kernels::jacobi::{EighPlan, STATUS_FINISHED};
use eigengrad::{eigh, reference, Eigh, EighOptions, EighVariant, Error, Tensor};
use nalgebra::DMatrix;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Eigenvalue error in units of n·ε·‖A‖₂ (measured ≤ 1.1, on clustered spectra at n = 16;
/// ≤ 0.3 elsewhere).
const C_VALUES: f64 = 4.0;
/// Residual in units of n·ε·‖A‖_F (measured ≤ 1.2).
const C_RESIDUAL: f64 = 4.0;
/// Orthogonality in units of n·ε (measured ≤ 0.2).
const C_ORTH: f64 = 1.0;
/// Relative eigenvalue error of graded matrices in units of n·ε (measured ≤ 0.2).
const C_RELATIVE: f64 = 2.0;
/// Eigenvector error in units of n·ε·‖A‖₂ / gap (measured ≤ 0.55).
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

/// The families of the brief, by name.
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

/// Default options with the solver forced to `variant`.
fn forced(variant: EighVariant) -> EighOptions {
    EighOptions {
        variant,
        ..EighOptions::default()
    }
}

/// Every solver that takes order n on the test device, each forced explicitly, with
/// `options` otherwise: the one-workgroup solver up to its limit (64, or 32 without the
/// workgroup memory; it refuses larger orders), the blocked solver at every order with the
/// device's blocks, and for n ≤ 33 also with blocks of at most 4 — many blocks, odd numbers of
/// block pairs, and (n = 33) a last block made only of padding.
fn variants(n: usize, options: &EighOptions) -> Vec<EighOptions> {
    let mut all = vec![EighVariant::SmallPerSweep, EighVariant::Blocked];
    if n <= 33 {
        all.push(EighVariant::BlockedWith { max_block: 4 });
    }
    let usable: Vec<EighOptions> = all
        .into_iter()
        .map(|variant| EighOptions {
            variant,
            ..options.clone()
        })
        .filter(|o| {
            let plan = EighPlan::with_variant(&device(), 1, n, 1e-6, 15, false, o.variant);
            match plan {
                Ok(_) => true,
                Err(Error::InvalidArgument(_)) => false,
                Err(e) => panic!("n={n} {:?}: {e}", o.variant),
            }
        })
        .collect();
    let names: Vec<EighVariant> = usable.iter().map(|o| o.variant).collect();
    assert!(names.contains(&EighVariant::Blocked), "n={n}: {names:?}");
    assert!(
        n > 32 || names.contains(&EighVariant::SmallPerSweep),
        "n={n}: {names:?}"
    );
    usable
}

#[test]
fn random_symmetric_every_size() {
    // Batches shrink as n grows to keep the test near 10 s per variant on lavapipe.
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
            let sweeps = e.sweeps().unwrap();
            let most = *sweeps.iter().max().unwrap();
            // f32 round-robin Jacobi: ≤ 6 sweeps at n = 32, ≤ 9 at n = 256 (ANCHORS.md).
            assert!(most <= 10, "{what}: {most} sweeps");
            eprintln!("{what}: sweeps {:?}", &sweeps[..batch.min(8)]);
        }
    }
}

#[test]
fn every_family_in_one_batch() {
    // One batch holding every family, so that matrices finish at different sweeps (0 for the
    // diagonal ones) within the same dispatches. Past 64: both sides of 128, where the blocked
    // solver goes from four blocks to six, and orders that are not multiples of the blocks.
    let mut rng = StdRng::seed_from_u64(2);
    for n in [1, 2, 3, 7, 16, 31, 32, 33, 64, 65, 100, 127, 128, 129, 200] {
        let a: Vec<f32> = FAMILIES
            .iter()
            .flat_map(|f| family(f, &mut rng, n))
            .collect();
        for options in variants(n, &EighOptions::default()) {
            let what = format!("families n={n} {:?}", options.variant);
            let e = run(&a, FAMILIES.len(), n, &options);
            check_batch(&what, &a, n, &e);
            let sweeps = e.sweeps().unwrap();
            for (f, s) in FAMILIES.iter().zip(&sweeps) {
                if matches!(*f, "diagonal" | "zero" | "identity") {
                    assert_eq!(*s, 0, "{what}: {f} needs no sweep");
                }
            }
            assert!(
                e.converged.iter().all(|&c| c),
                "{what}: converged {:?}",
                e.converged
            );
            eprintln!("{what}: sweeps {sweeps:?}");
        }
    }
}

#[test]
fn every_family_in_small_blocks() {
    // The blocked solver with blocks of one index (the scalar round-robin ordering), and orders
    // whose last block is all padding: 9 and 13 in blocks of 2, 25 in blocks of 4.
    let mut rng = StdRng::seed_from_u64(13);
    for (max_block, orders) in [(1, &[3, 9][..]), (2, &[9, 13]), (4, &[25])] {
        let variant = EighVariant::BlockedWith { max_block };
        for &n in orders {
            let a: Vec<f32> = FAMILIES
                .iter()
                .flat_map(|f| family(f, &mut rng, n))
                .collect();
            let e = run(&a, FAMILIES.len(), n, &forced(variant));
            check_batch(&format!("families n={n} {variant:?}"), &a, n, &e);
            assert!(e.converged.iter().all(|&c| c), "n={n} {variant:?}");
        }
    }
}

#[test]
fn hard_families_at_n_256() {
    // Order 256 is beyond the one-workgroup solver: blocked only.
    let mut rng = StdRng::seed_from_u64(11);
    let n = 256;
    let names = ["clustered", "graded", "rank-deficient", "near-orthogonal"];
    let a: Vec<f32> = names.iter().flat_map(|f| family(f, &mut rng, n)).collect();
    let e = run(&a, names.len(), n, &forced(EighVariant::Blocked));
    check_batch("hard families n=256", &a, n, &e);
    eprintln!(
        "hard families n=256: sweeps {:?} converged {:?}",
        e.sweeps().unwrap(),
        e.converged
    );
}

#[test]
fn random_and_rank_deficient_at_n_512() {
    // The largest order tested on lavapipe (about a minute): one random matrix and one
    // rank-deficient Gram matrix, cold, then warm-started from their eigenvectors. The relative
    // test resolves the roundoff-level null space of the Gram matrix too, which takes 15–16
    // sweeps at this order (on the scalar-ordered solver this replaced as well): 20 allowed.
    // The perturbation of the warm start is a full-rank random matrix, so the Gram matrix's
    // null space is a new problem for the warm start: only the random matrix is held to two
    // sweeps.
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
    let options = EighOptions {
        warm_start: Some(cold.vectors.clone()),
        ..options
    };
    let warm = run(&b, 2, n, &options);
    check_batch("n=512 warm", &b, n, &warm);
    let (cold_sweeps, warm_sweeps) = (cold.sweeps().unwrap(), warm.sweeps().unwrap());
    eprintln!("n=512: sweeps cold {cold_sweeps:?}, warm {warm_sweeps:?}");
    assert_eq!(cold.converged, [true, true], "cold {cold_sweeps:?}");
    assert_eq!(warm.converged, [true, true], "warm {warm_sweeps:?}");
    assert!(warm_sweeps[0] <= 2, "warm {warm_sweeps:?}");
}

#[test]
fn exact_on_diagonal_zero_and_identity() {
    let dev = device();
    for n in [5, 40, 70, 129] {
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
            assert_eq!(e.sweeps().unwrap(), vec![0, 0, 0], "{what}");
        }
    }
}

#[test]
fn graded_matrices_keep_relative_accuracy() {
    let mut rng = StdRng::seed_from_u64(3);
    for (n, batch) in [
        (7, 8),
        (32, 8),
        (64, 4),
        (65, 2),
        (127, 1),
        (129, 1),
        (200, 1),
    ] {
        let a: Vec<f32> = (0..batch).flat_map(|_| graded(&mut rng, n)).collect();
        for options in variants(n, &EighOptions::default()) {
            let what = format!("graded n={n} {:?}", options.variant);
            let e = run(&a, batch, n, &options);
            check_batch(&what, &a, n, &e);
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
    }
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
    for options in variants(n, &EighOptions::default()) {
        let e = eigh(&t, &options).unwrap();
        assert_eq!(e.values.shape(), &[n]);
        assert_eq!(e.vectors.shape(), &[n, n]);
        check_one(
            &format!("rank 2 {:?}", options.variant),
            &a,
            n,
            &e.values.to_vec().unwrap(),
            &e.vectors.to_vec().unwrap(),
        );
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
    let cases = [
        (16, 16),
        (33, 8),
        (64, 4),
        (65, 4),
        (100, 2),
        (127, 1),
        (129, 2),
        (200, 1),
        (256, 1),
    ];
    for (n, batch) in cases {
        let a: Vec<f32> = (0..batch)
            .flat_map(|_| random_symmetric(&mut rng, n))
            .collect();
        let b = perturbed(&mut rng, &a, n);
        let t = Tensor::from_slice(&dev, &[batch, n, n], &b).unwrap();
        for options in variants(n, &EighOptions::default()) {
            let what = format!("warm n={n} {:?}", options.variant);
            let cold = run(&a, batch, n, &options);
            let cold_sweeps = cold.sweeps().unwrap();
            let options = EighOptions {
                warm_start: Some(cold.vectors.clone()),
                ..options
            };
            let warm = eigh(&t, &options).unwrap();
            check_batch(&what, &b, n, &warm);
            let sweeps = warm.sweeps().unwrap();
            eprintln!("{what}: cold sweeps {cold_sweeps:?}, warm {sweeps:?}");
            assert!(
                sweeps.iter().all(|&s| (1..=2).contains(&s)),
                "{what}: {sweeps:?}"
            );
            assert!(
                cold_sweeps.iter().all(|&s| s >= 4),
                "cold {what}: {cold_sweeps:?}"
            );
        }
    }
}

#[test]
fn plan_feeds_its_vectors_back_without_new_pipelines() {
    for (n, batch) in [(24, 4), (80, 2)] {
        for options in variants(n, &EighOptions::default()) {
            plan_feeds_its_vectors_back_with(options.variant, n, batch);
        }
    }
}

fn plan_feeds_its_vectors_back_with(variant: EighVariant, n: usize, batch: usize) {
    let dev = device();
    let mut rng = StdRng::seed_from_u64(7);
    let plan =
        EighPlan::with_variant(&dev, batch, n, 10.0 * f32::EPSILON, 15, true, variant).unwrap();
    let eye: Vec<f32> = (0..batch * n * n)
        .map(|k| {
            if (k % (n * n)).is_multiple_of(n + 1) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    plan.warm_start().unwrap().write(&eye).unwrap();
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
            plan.record(&mut pass);
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
                &format!("plan n={n} {variant:?} step {step} [{b}]"),
                &a[b * n * n..(b + 1) * n * n],
                n,
                &values[b * n..(b + 1) * n],
                &vectors[b * n * n..(b + 1) * n * n],
            );
        }
        eprintln!("plan n={n} {variant:?} step {step}: sweeps {sweeps:?}");
        if step > 0 {
            assert!(sweeps.iter().all(|&s| s <= 2), "step {step}: {sweeps:?}");
        }
        a = perturbed(&mut rng, &a, n);
    }
    assert_eq!(dev.pipelines_created(), built, "steps built pipelines");
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
            let what = format!("n={n} {:?}", options.variant);
            assert_eq!(
                x.values.to_vec().unwrap(),
                y.values.to_vec().unwrap(),
                "{what}"
            );
            assert_eq!(
                x.vectors.to_vec().unwrap(),
                y.vectors.to_vec().unwrap(),
                "{what}"
            );
        }
    }
}

#[test]
fn max_sweeps_caps_the_work_and_is_reported() {
    let mut rng = StdRng::seed_from_u64(9);
    for n in [12, 68] {
        let a: Vec<f32> = (0..2).flat_map(|_| random_symmetric(&mut rng, n)).collect();
        let options = EighOptions {
            max_sweeps: 2,
            ..EighOptions::default()
        };
        for options in variants(n, &options) {
            let what = format!("n={n} {:?}", options.variant);
            let e = run(&a, 2, n, &options);
            assert_eq!(e.sweeps().unwrap(), vec![2, 2], "{what}");
            assert_eq!(e.converged, vec![false, false], "{what}");
            let values = e.values.to_vec().unwrap();
            assert!(values.iter().all(|x| x.is_finite()), "{what}: {values:?}");
        }
    }
}

#[test]
fn non_finite_input_is_reported_with_its_batch_index() {
    let dev = device();
    let mut rng = StdRng::seed_from_u64(10);
    for n in [4, 70] {
        for options in variants(n, &EighOptions::default()) {
            let what = format!("n={n} {:?}", options.variant);
            for (b, x) in [
                (3usize, f32::NAN),
                (0, f32::INFINITY),
                (4, f32::NEG_INFINITY),
            ] {
                let mut a: Vec<f32> = (0..5).flat_map(|_| random_symmetric(&mut rng, n)).collect();
                // Below the diagonal: the symmetric part would hide nothing, the check must
                // see it.
                a[b * n * n + (n - 1) * n] = x;
                let t = Tensor::from_slice(&dev, &[5, n, n], &a).unwrap();
                match eigh(&t, &options) {
                    Err(Error::NonFinite { what: w, index }) => {
                        assert_eq!(w, "eigh input");
                        assert_eq!(index, b as u64, "{what}");
                    }
                    other => panic!("{what}: expected NonFinite, got {other:?}"),
                }
            }
            let a: Vec<f32> = (0..2).flat_map(|_| random_symmetric(&mut rng, n)).collect();
            let mut v0: Vec<f32> = (0..2 * n * n)
                .map(|k| if k % (n * n) % (n + 1) == 0 { 1.0 } else { 0.0 })
                .collect();
            v0[n * n + 1] = f32::NAN;
            let options = EighOptions {
                warm_start: Some(Tensor::from_slice(&dev, &[2, n, n], &v0).unwrap()),
                ..options
            };
            let t = Tensor::from_slice(&dev, &[2, n, n], &a).unwrap();
            match eigh(&t, &options) {
                Err(Error::NonFinite { what: w, index }) => {
                    assert_eq!((w.as_str(), index), ("eigh warm start", 1), "{what}");
                }
                other => panic!("{what}: expected NonFinite, got {other:?}"),
            }
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
    let options = EighOptions {
        warm_start: Some(wrong),
        ..EighOptions::default()
    };
    assert!(matches!(eigh(&a, &options), Err(Error::Shape { .. })));
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
    ] {
        assert!(matches!(eigh(&a, &options), Err(Error::InvalidArgument(_))));
    }
    assert!(matches!(
        EighPlan::new(&dev, 1, 4096, 1e-6, 15, false),
        Err(Error::TooLarge { .. })
    ));
    let too_many = dev.info().limits.max_compute_workgroups_per_dimension as usize + 1;
    assert!(matches!(
        EighPlan::new(&dev, too_many, 1, 1e-6, 15, false),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        EighPlan::new(&dev, 0, 4, 1e-6, 15, false),
        Err(Error::Empty { .. })
    ));
}

#[test]
fn blocked_dispatches_grow_with_n_over_b() {
    // A run records every sweep allowed (converged matrices make them empty), so the count is
    // linear in max_sweeps: per sweep, 2(2k − 1) + 2 = 2·(2k blocks) dispatches. The issue's
    // bound for a cold solve of 15 sweeps: ≤ 300 at n = 256, ≤ 1,000 at n = 512, which needs
    // blocks of 32 — what every device with 32 KiB of workgroup memory and 256 invocations
    // per workgroup gets.
    let dev = device();
    let limits = &dev.info().limits;
    let roomy = limits.max_compute_workgroup_storage_size >= 32 * 1024
        && limits.max_compute_invocations_per_workgroup >= 256;
    let tol = 10.0 * f32::EPSILON;
    for (n, bound) in [(65, 150), (128, 150), (256, 300), (512, 1000)] {
        for warm in [false, true] {
            let plan = |sweeps| {
                EighPlan::with_variant(&dev, 1, n, tol, sweeps, warm, EighVariant::Blocked).unwrap()
            };
            let full = plan(15);
            let b = full.block_size().expect("a blocked plan");
            let blocks = 2 * n.div_ceil(2 * b);
            if roomy {
                // 2⌈n / 64⌉ blocks of at most 32.
                assert_eq!(blocks, 2 * n.div_ceil(64), "n={n}: blocks of {b}");
            }
            let per_sweep = (full.dispatches_per_run() - plan(0).dispatches_per_run()) / 15;
            assert_eq!(
                full.dispatches_per_run(),
                plan(0).dispatches_per_run() + 15 * per_sweep,
                "n={n}: not linear in the sweeps"
            );
            assert_eq!(per_sweep, 2 * blocks, "n={n}: dispatches per sweep");
            assert!(
                full.dispatches_per_run() <= bound,
                "n={n} warm={warm}: {} dispatches",
                full.dispatches_per_run()
            );
            eprintln!(
                "n={n} warm={warm}: {:?}, {} dispatches ({per_sweep} per sweep)",
                full,
                full.dispatches_per_run()
            );
        }
    }
}

#[test]
fn auto_takes_one_workgroup_up_to_64_then_blocked() {
    let dev = device();
    let tol = 10.0 * f32::EPSILON;
    for n in [1, 32, 33, 64, 65, 100] {
        let plan = |variant| EighPlan::with_variant(&dev, 2, n, tol, 15, false, variant);
        let auto = plan(EighVariant::Auto).unwrap();
        let expected = if n <= 64 {
            EighVariant::SmallPerSweep
        } else {
            EighVariant::Blocked
        };
        let forced = plan(expected).unwrap();
        assert_eq!(auto.block_size(), forced.block_size(), "n={n}");
        assert_eq!(
            auto.dispatches_per_run(),
            forced.dispatches_per_run(),
            "n={n}"
        );
        assert_eq!(auto.block_size().is_some(), n > 64, "n={n}: {auto:?}");
    }
}

#[test]
fn unsupported_variants_are_errors() {
    let dev = device();
    let tol = 10.0 * f32::EPSILON;
    let plan = |n, variant| EighPlan::with_variant(&dev, 1, n, tol, 15, false, variant);
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
