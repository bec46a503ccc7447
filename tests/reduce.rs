//! Reductions against the f64 reference.
//!
//! Tolerances, from the pairwise summation in the kernel. With L lanes per segment of `count`
//! values, a lane holds m = ⌈count/L⌉ values in c = ⌈m/8⌉ chunks, and a value passes through
//! at most ⌈log2 min(8, m)⌉ (chunk tree; padding zeros add exactly) + ⌊log2 c⌋ (binary
//! counter) + ⌈log2 min(L, count)⌉ (lane tree) rounded additions. For m ≤ 8 that is
//! ⌈log2(m·L)⌉ ≤ ⌈log2 count⌉ + 1 (as m·L < count + L); for m > 8 it is below
//! log2(count + 9L) ≤ log2 count + 1.09. Hence, for every L, d = ⌈log2 count⌉ + 2 bounds it,
//! and |error| ≤ d·u·Σ|x| / (1 − d·u) ≤ d·ε·Σ|x| with u = ε/2.
//! - Sum: d·ε·Σ|x|.
//! - SumSquares: each square is rounded once more: (d + 1)·ε·Σx².
//! - Mean: the sum's bound divided by count, plus 2ε·|mean| for the rounded 1/count and the
//!   product.
//! - Max: exact (no rounding), so the tolerance is 0.

mod common;
use common::*;
use eigengrad::kernels::reduce::{
    reduce, reduce_dispatch, reduce_dispatch_with, reduce_shape, Axis, ReduceOp, CPU_MAX_PER_LANE,
};
use eigengrad::kernels::run;
use eigengrad::{reference, Error, Tensor};

const OPS: [ReduceOp; 4] = [
    ReduceOp::Sum,
    ReduceOp::Max,
    ReduceOp::Mean,
    ReduceOp::SumSquares,
];

/// Tolerance of one reduced value `r` over the values `xs` (see the file comment).
fn tolerance(op: ReduceOp, xs: &[f64], r: f64) -> f64 {
    let count = xs.len() as f64;
    let d = count.log2().ceil() + 2.0;
    let abs: f64 = xs.iter().map(|v| v.abs()).sum();
    match op {
        ReduceOp::Sum => d * EPS * abs,
        ReduceOp::SumSquares => (d + 1.0) * EPS * xs.iter().map(|v| v * v).sum::<f64>(),
        ReduceOp::Mean => d * EPS * abs / count + 2.0 * EPS * r.abs(),
        ReduceOp::Max => 0.0,
    }
}

/// Lane counts to force besides the adapter's choice: one lane per segment (the barrier-free
/// kernels), a few, and a whole workgroup — so CPU-only CI runs the GPU geometries too.
/// Forced geometries of more than [`MAX_FORCED_GROUPS`] workgroups of 256 are left out: a
/// barrier workgroup costs ~20 µs on lavapipe (far more on GL), and 10^5 segments of 256 lanes
/// teach nothing that the smaller shapes do not.
const LANES: [usize; 4] = [1, 2, 32, 256];
const MAX_FORCED_GROUPS: usize = 4096;

/// Runs every op along both axes on a tensor of `shape` with the adapter's geometry and with
/// each of `lanes`, and compares with the reference.
fn check(shape: &[usize], seed: u64, lanes: &[usize]) {
    let dev = device();
    let n: usize = shape.iter().product();
    let cols = shape[shape.len() - 1];
    let rows = n / cols;
    // Values in [-0.75, 1.25]: sums neither cancel to zero nor lack sign changes.
    let x: Vec<f32> = random(seed, n, 1.0).iter().map(|v| v + 0.25).collect();
    let xw = widen(&x);
    let t = Tensor::from_slice(&dev, shape, &x).unwrap();
    for axis in [Axis::Rows, Axis::Cols] {
        let len = if axis == Axis::Rows { cols } else { rows };
        for op in OPS {
            let r = reference::reduce::reduce(op, axis, &xw, rows, cols);
            let compare = |what: String, gpu: &[f32]| {
                assert_close_each(&what, gpu, &r, |i, r| {
                    let xs: Vec<f64> = match axis {
                        Axis::Rows => xw[i * cols..(i + 1) * cols].to_vec(),
                        Axis::Cols => (0..rows).map(|k| xw[k * cols + i]).collect(),
                    };
                    tolerance(op, &xs, r)
                })
            };
            let out = reduce(op, axis, &t).unwrap();
            assert_eq!(out.shape(), reduce_shape(axis, shape).unwrap().as_slice());
            compare(format!("{op:?} {axis:?} {shape:?}"), &out.to_vec().unwrap());
            let nseg = n / len;
            for &l in lanes
                .iter()
                .filter(|&&l| l == 1 || nseg * l / 256 <= MAX_FORCED_GROUPS)
            {
                let made =
                    reduce_dispatch_with(&dev, op, axis, t.buffer(), out.buffer(), rows, cols, l);
                if dev.info().is_cpu() && len.div_ceil(l) > CPU_MAX_PER_LANE {
                    // Past llvmpipe's loop budget the builder refuses rather than truncate.
                    assert!(
                        matches!(made, Err(Error::InvalidArgument(_))),
                        "{l} lanes, {len} values"
                    );
                    continue;
                }
                run(&dev, &[&made.unwrap()]).unwrap();
                compare(
                    format!("{op:?} {axis:?} {shape:?} {l} lanes"),
                    &out.to_vec().unwrap(),
                );
            }
        }
    }
}

#[test]
fn small_and_prime_shapes() {
    let shapes: [&[usize]; 12] = [
        &[1],
        &[7],
        &[1, 1],
        &[1, 7],
        &[7, 31],
        &[31, 7],
        &[127, 127],
        &[5, 64],  // the longest rows reduced one invocation per row
        &[3, 65],  // the shortest rows reduced one workgroup per row
        &[2, 257], // one past the 256-wide workgroup
        &[4, 5, 31],
        &[3, 7, 513],
    ];
    for (k, shape) in shapes.iter().enumerate() {
        check(shape, k as u64, &LANES);
    }
}

#[test]
fn tall_skinny_and_short_wide() {
    check(&[100_000, 3], 20, &LANES);
    check(&[3, 100_000], 21, &LANES);
    check(&[1_000_000, 1], 22, &LANES);
}

#[test]
fn whole_tensor_of_a_million_values_is_one_long_row() {
    let dev = device();
    let n = 1_000_000;
    let x: Vec<f32> = random(30, n, 1.0).iter().map(|v| v + 0.25).collect();
    let xw = widen(&x);
    let t = Tensor::from_slice(&dev, &[1000, 1000], &x).unwrap();
    let whole = t.reshape(&[1, n]).unwrap();
    for op in OPS {
        let gpu = reduce(op, Axis::Rows, &whole).unwrap().to_vec().unwrap();
        let r = reference::reduce::reduce(op, Axis::Rows, &xw, 1, n);
        assert_close_each(&format!("{op:?} whole"), &gpu, &r, |_, r| {
            tolerance(op, &xw, r)
        });
    }
}

/// The pairwise bound is far below what a running f32 sum achieves on same-signed data: the
/// test discriminates between the two.
#[test]
fn sum_is_pairwise_accurate() {
    let dev = device();
    let n = 1 << 22;
    let x: Vec<f32> = random(40, n, 0.5).iter().map(|v| v + 1.5).collect();
    let exact: f64 = widen(&x).iter().sum();
    let tol = tolerance(ReduceOp::Sum, &widen(&x), exact);
    let t = Tensor::from_slice(&dev, &[1, n], &x).unwrap();
    let gpu = reduce(ReduceOp::Sum, Axis::Rows, &t)
        .unwrap()
        .to_vec()
        .unwrap()[0];
    let gpu_err = (gpu as f64 - exact).abs();
    let naive_err = (x.iter().sum::<f32>() as f64 - exact).abs();
    eprintln!("sum of 2^22 values in [1, 2]: pairwise error {gpu_err:e}, running-sum error {naive_err:e}, bound {tol:e}");
    assert!(gpu_err <= tol, "pairwise error {gpu_err} over bound {tol}");
    assert!(
        naive_err > tol,
        "a running sum ({naive_err}) should miss the bound {tol}"
    );
    // Down a column too: 2^22 rows of one column.
    let col = t.reshape(&[n, 1]).unwrap();
    let gpu = reduce(ReduceOp::Sum, Axis::Cols, &col)
        .unwrap()
        .to_vec()
        .unwrap()[0];
    assert!((gpu as f64 - exact).abs() <= tol);
}

/// The largest tensor the device binds (capped at 2^25 values = 128 MiB, lavapipe's limit) as
/// one row and as one column. On llvmpipe, which ends loops after 65535 iterations per
/// invocation, this checks that no lane's loop is cut short: the maximum sits at the last index.
#[test]
fn largest_bindable_tensor_as_one_row_and_one_column() {
    let dev = device();
    let n = ((dev.info().limits.max_storage_buffer_binding_size / 4) as usize).min(1 << 25);
    let mut x: Vec<f32> = random(50, n, 1.0).iter().map(|v| v + 0.25).collect();
    x[n - 1] = 3.0;
    let xw = widen(&x);
    let t = Tensor::from_slice(&dev, &[n], &x).unwrap();
    for (axis, shape) in [(Axis::Rows, [1, n]), (Axis::Cols, [n, 1])] {
        let v = t.reshape(&shape).unwrap();
        for op in [ReduceOp::Sum, ReduceOp::Max] {
            let gpu = reduce(op, axis, &v).unwrap().to_vec().unwrap();
            let r = reference::reduce::reduce(op, axis, &xw, shape[0], shape[1]);
            assert_close_each(&format!("{op:?} {axis:?} n={n}"), &gpu, &r, |_, r| {
                tolerance(op, &xw, r)
            });
        }
    }
}

#[test]
fn empty_sizes_are_rejected() {
    let dev = device();
    let t = Tensor::zeros(&dev, &[4]).unwrap();
    for lanes in [0, 3, 512] {
        let err = reduce_dispatch_with(
            &dev,
            ReduceOp::Max,
            Axis::Cols,
            t.buffer(),
            t.buffer(),
            2,
            2,
            lanes,
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    for (rows, cols) in [(0, 4), (4, 0)] {
        let err = reduce_dispatch(
            &dev,
            ReduceOp::Sum,
            Axis::Rows,
            t.buffer(),
            t.buffer(),
            rows,
            cols,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err}");
    }
    assert!(matches!(
        reduce_shape(Axis::Rows, &[]),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        reduce_shape(Axis::Cols, &[3, 0]),
        Err(Error::Empty { .. })
    ));
}
