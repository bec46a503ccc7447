//! Softmax cross-entropy against the f64 reference.
//!
//! Tolerances, with u = ε/2, per row: x_j = z_j − m ≤ 0, s = Σ exp(x_j), T = Σ t_j,
//! A = Σ t_j (m − z_j), k = 2⌈√classes⌉ + 9 (a bound on the additions a term passes through:
//! a lane's blocked sum of ≤ classes terms in blocks of ⌈√terms⌉, then ≤ 8 tree levels).
//! Vulkan's precision rules allow exp 3 + 2|x| ulp and log 3 ulp (or 2^-21 absolute on
//! [0.5, 2]); E = Σ exp(x_j)(3 + 2|x_j|) / s is the resulting relative error of s, in ulps.
//! - loss = A + T·log s: A's terms (one subtraction, one product) and the sums carry
//!   (k + 2)u relative error, log s carries (k + E)u + 3u|log s| + 2^-21 absolute; so
//!   |error| ≤ ε·[(k + 3)(A + T|log s|) + T(k + E + 3|log s|)] + T·2^-21 (ε for u: slack 2).
//! - dz_j = (exp(x_j)·T/s − t_j)·dl: the product p_j = exp(x_j)·T/s carries
//!   (3 + 2|x_j|) + 2k + 2.5 + 1 ulps (exp, s and T, the division, the product), then one
//!   subtraction and one product: |error| ≤ ε·|dl|·[p_j(3 + 2|x_j| + 2k + 4) + 2|p_j − t_j|]
//!   plus 1e-30 for exp results that flush to zero below 2^-126.

mod common;
use common::*;
use eigengrad::kernels::run;
use eigengrad::kernels::softmax::{
    softmax_xent, softmax_xent_backward, softmax_xent_backward_dispatch,
    softmax_xent_backward_dispatch_with, softmax_xent_dispatch, softmax_xent_dispatch_with,
    softmax_xent_shape, CPU_MAX_PER_LANE, MAX_CLASSES,
};
use eigengrad::{reference, Error, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// One row's f64 quantities the tolerances need: x = z − max, s = Σ exp(x), T = Σ t,
/// A = Σ t (max − z).
struct RowTerms {
    x: Vec<f64>,
    s: f64,
    t_sum: f64,
    a: f64,
    /// k = 2⌈√classes⌉ + 9.
    k: f64,
}

impl RowTerms {
    fn new(z: &[f64], t: &[f64]) -> RowTerms {
        let m = z.iter().copied().fold(f64::MIN, f64::max);
        let x: Vec<f64> = z.iter().map(|v| v - m).collect();
        RowTerms {
            s: x.iter().map(|v| v.exp()).sum(),
            t_sum: t.iter().sum(),
            a: x.iter().zip(t).map(|(xj, tj)| -xj * tj).sum(),
            k: 2.0 * (z.len() as f64).sqrt().ceil() + 9.0,
            x,
        }
    }

    fn loss_tolerance(&self) -> f64 {
        let e: f64 = self
            .x
            .iter()
            .map(|v| v.exp() * (3.0 + 2.0 * v.abs()))
            .sum::<f64>()
            / self.s;
        let l = self.s.ln().abs();
        let (k, tt) = (self.k, self.t_sum);
        EPS * ((k + 3.0) * (self.a + tt * l) + tt * (k + e + 3.0 * l)) + tt * 2f64.powi(-21)
    }

    fn grad_tolerance(&self, t_j: f64, dl: f64, j: usize) -> f64 {
        let p = self.x[j].exp() * self.t_sum / self.s;
        let x = self.x[j].abs();
        EPS * dl.abs() * (p * (3.0 + 2.0 * x + 2.0 * self.k + 4.0) + 2.0 * (p - t_j).abs()) + 1e-30
    }
}

/// Row terms of every row of `rows × classes` data.
fn all_rows(z: &[f64], t: &[f64], classes: usize) -> Vec<RowTerms> {
    z.chunks(classes)
        .zip(t.chunks(classes))
        .map(|(z, t)| RowTerms::new(z, t))
        .collect()
}

/// Targets: one-hot rows for even seeds; otherwise soft rows of random non-negative weights
/// that sum to about 1 but not exactly (the loss must not assume Σ t = 1), with zero rows.
fn targets(seed: u64, rows: usize, classes: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = vec![0.0f32; rows * classes];
    for (i, row) in t.chunks_mut(classes).enumerate() {
        if seed.is_multiple_of(2) {
            row[rng.random_range(0..classes)] = 1.0;
        } else if i % 5 != 4 {
            for v in row.iter_mut() {
                *v = rng.random_range(0.0..2.0) / classes as f32;
            }
        }
    }
    t
}

/// Lane counts to force besides the adapter's choice (one invocation per row, a few lanes, a
/// whole workgroup), so CPU-only CI runs the GPU geometries too; forced grids of more than
/// 4096 workgroups of 256 are left out (each costs ~20 µs with barriers on lavapipe).
const LANES: [usize; 4] = [1, 2, 16, 256];

/// Compares forward and backward with the reference on `rows × classes` logits of `scale`,
/// with the adapter's geometry and each of `LANES`.
fn check(rows: usize, classes: usize, seed: u64, scale: f32) {
    let dev = device();
    let z = random(seed, rows * classes, scale);
    let t = targets(seed, rows, classes);
    let dl = random(seed + 1000, rows, 2.0);
    let (zw, tw, dlw) = (widen(&z), widen(&t), widen(&dl));
    let tz = Tensor::from_slice(&dev, &[rows, classes], &z).unwrap();
    let tt = Tensor::from_slice(&dev, &[rows, classes], &t).unwrap();
    let tdl = Tensor::from_slice(&dev, &[rows], &dl).unwrap();
    let what = format!("{rows}x{classes} scale {scale} seed {seed}");
    let terms = all_rows(&zw, &tw, classes);
    let r_loss = reference::softmax::softmax_xent(&zw, &tw, rows, classes);
    let r_dz = reference::softmax::softmax_xent_backward(&zw, &tw, &dlw, rows, classes);
    let check_loss = |what: String, gpu: &[f32]| {
        assert_close_each(&what, gpu, &r_loss, |i, _| terms[i].loss_tolerance())
    };
    let check_dz = |what: String, gpu: &[f32]| {
        assert_close_each(&what, gpu, &r_dz, |i, _| {
            let row = i / classes;
            terms[row].grad_tolerance(tw[i], dlw[row], i % classes)
        })
    };

    let loss = softmax_xent(&tz, &tt).unwrap();
    assert_eq!(loss.shape(), &[rows]);
    check_loss(format!("loss {what}"), &loss.to_vec().unwrap());
    let dz = softmax_xent_backward(&tz, &tt, &tdl).unwrap();
    assert_eq!(dz.shape(), &[rows, classes]);
    check_dz(format!("dz {what}"), &dz.to_vec().unwrap());

    for l in LANES
        .into_iter()
        .filter(|&l| l == 1 || rows * l / 256 <= 4096)
    {
        let (b, lb) = (loss.buffer(), tdl.buffer());
        let f = softmax_xent_dispatch_with(&dev, tz.buffer(), tt.buffer(), b, rows, classes, l);
        let bw = softmax_xent_backward_dispatch_with(
            &dev,
            tz.buffer(),
            tt.buffer(),
            lb,
            dz.buffer(),
            rows,
            classes,
            l,
        );
        if dev.info().is_cpu() && classes.div_ceil(l) > CPU_MAX_PER_LANE {
            // Past llvmpipe's loop budget the builders refuse rather than truncate.
            assert!(matches!(f, Err(Error::InvalidArgument(_))));
            assert!(matches!(bw, Err(Error::InvalidArgument(_))));
            continue;
        }
        run(&dev, &[&f.unwrap(), &bw.unwrap()]).unwrap();
        check_loss(format!("loss {what} {l} lanes"), &loss.to_vec().unwrap());
        check_dz(format!("dz {what} {l} lanes"), &dz.to_vec().unwrap());
    }
}

#[test]
fn small_and_prime_shapes() {
    let shapes = [
        (1, 1),
        (1, 7),
        (7, 31),
        (31, 127),
        (127, 10),
        (513, 9),
        (3, 257),
        (2, 1000),
    ];
    for (k, &(rows, classes)) in shapes.iter().enumerate() {
        for seed in [2 * k as u64, 2 * k as u64 + 1] {
            check(rows, classes, seed, 4.0);
        }
    }
}

#[test]
fn tall_skinny_and_short_wide() {
    check(100_000, 3, 40, 4.0);
    check(100_000, 3, 41, 4.0);
    check(3, 100_000, 42, 4.0);
    check(3, 100_000, 43, 4.0);
}

/// Rows at the loop budget: one lane holding CPU_MAX_PER_LANE classes, and one row of
/// MAX_CLASSES classes over 256 lanes. On llvmpipe a truncated loop would miss the last
/// classes, which here carry the largest logit and target weight.
#[test]
fn rows_at_the_loop_budget() {
    check(2, CPU_MAX_PER_LANE, 70, 4.0);
    let dev = device();
    let classes = MAX_CLASSES;
    let mut z = random(71, classes, 4.0);
    let mut t = vec![0.0f32; classes];
    z[classes - 1] = 9.0;
    t[classes - 1] = 1.0;
    t[classes / 3] = 0.5;
    let tz = Tensor::from_slice(&dev, &[1, classes], &z).unwrap();
    let tt = Tensor::from_slice(&dev, &[1, classes], &t).unwrap();
    let (zw, tw) = (widen(&z), widen(&t));
    let tol = RowTerms::new(&zw, &tw).loss_tolerance();
    let loss = softmax_xent(&tz, &tt).unwrap().to_vec().unwrap();
    let r = reference::softmax::softmax_xent(&zw, &tw, 1, classes);
    assert_close_each("loss, MAX_CLASSES", &loss, &r, |_, _| tol);
}

/// Logits of ±1e4: exp of the unshifted logits would overflow f32 (e^88 already does).
#[test]
fn huge_logits_stay_finite_and_accurate() {
    for (k, &(rows, classes)) in [(7, 31), (64, 10), (3, 1000)].iter().enumerate() {
        check(rows, classes, 60 + 2 * k as u64, 1e4);
        check(rows, classes, 61 + 2 * k as u64, 1e4);
    }
    // Exactly ±1e4 with a one-hot target on the smallest logit: loss = 2e4 exactly in f64.
    let dev = device();
    let z = [1e4f32, -1e4, 1e4, -1e4];
    let t = [0.0f32, 1.0, 0.0, 0.0];
    let tz = Tensor::from_slice(&dev, &[1, 4], &z).unwrap();
    let tt = Tensor::from_slice(&dev, &[1, 4], &t).unwrap();
    let loss = softmax_xent(&tz, &tt).unwrap().to_vec().unwrap();
    let r = reference::softmax::softmax_xent(&widen(&z), &widen(&t), 1, 4);
    let tol = RowTerms::new(&widen(&z), &widen(&t)).loss_tolerance();
    assert_close_each("±1e4 loss", &loss, &r, |_, _| tol);
}

/// The reference backward is the derivative of the reference forward: central differences in
/// f64 with step h have error O(h²·|f'''|) + O(ε₆₄/h); 1e-6 is far above both at h = 1e-5.
#[test]
fn reference_backward_is_the_derivative_of_forward() {
    let (rows, classes) = (3, 7);
    for seed in [0u64, 1] {
        let z = widen(&random(seed, rows * classes, 3.0));
        let t = widen(&targets(seed, rows, classes));
        let dl = widen(&random(seed + 7, rows, 2.0));
        let g = reference::softmax::softmax_xent_backward(&z, &t, &dl, rows, classes);
        let objective = |z: &[f64]| -> f64 {
            let loss = reference::softmax::softmax_xent(z, &t, rows, classes);
            loss.iter().zip(&dl).map(|(l, d)| l * d).sum()
        };
        let h = 1e-5;
        for i in 0..rows * classes {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[i] += h;
            zm[i] -= h;
            let fd = (objective(&zp) - objective(&zm)) / (2.0 * h);
            assert!((fd - g[i]).abs() <= 1e-6, "element {i}: {fd} vs {}", g[i]);
        }
    }
}

#[test]
fn shape_errors() {
    let dev = device();
    assert_eq!(softmax_xent_shape(&[4, 3], &[4, 3]).unwrap(), vec![4]);
    for (l, t) in [
        (&[4, 3][..], &[4, 2][..]),
        (&[4, 3], &[3, 4]),
        (&[12], &[12]),
        (&[2, 2, 3], &[2, 2, 3]),
    ] {
        assert!(
            matches!(softmax_xent_shape(l, t), Err(Error::Shape { .. })),
            "{l:?} {t:?}"
        );
    }
    assert!(matches!(
        softmax_xent_shape(&[0, 3], &[0, 3]),
        Err(Error::Empty { .. })
    ));
    let z = Tensor::zeros(&dev, &[4, 3]).unwrap();
    let bad = Tensor::zeros(&dev, &[4, 2]).unwrap();
    assert!(matches!(softmax_xent(&z, &bad), Err(Error::Shape { .. })));
    let dloss = Tensor::zeros(&dev, &[3]).unwrap();
    assert!(matches!(
        softmax_xent_backward(&z, &z, &dloss),
        Err(Error::Shape { .. })
    ));
    let b = z.buffer();
    assert!(matches!(
        softmax_xent_dispatch(&dev, b, b, b, 0, 3),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        softmax_xent_backward_dispatch(&dev, b, b, b, b, 1, MAX_CLASSES + 1),
        Err(Error::TooLarge { .. })
    ));
    for lanes in [0, 3, 512] {
        assert!(matches!(
            softmax_xent_dispatch_with(&dev, b, b, b, 1, 3, lanes),
            Err(Error::InvalidArgument(_))
        ));
    }
}
