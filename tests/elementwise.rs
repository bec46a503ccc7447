//! Elementwise kernels against the f64 reference.
//!
//! Tolerances: add/sub/mul are single correctly rounded f32 operations on f32 inputs, so the
//! error against exact arithmetic is at most ½ ulp of the result: we allow ε·|r| + 1e-30.
//! tanh and GELU go through the driver's tanh, whose Vulkan/GL precision is not exactly
//! specified; we allow 8ε absolute on tanh (|tanh| ≤ 1) and 8ε·(1 + |x|) on GELU and the
//! backward rules (their values scale with |x| and |dy| ≤ 1).

mod common;
use common::*;
use eigengrad::kernels::elementwise::{binary, expand, unary, BinaryOp, Broadcast, UnaryOp};
use eigengrad::{reference, Error, Tensor};

/// Sizes: 1, primes, a non-multiple of the 64-wide workgroup, and more than one workgroup row.
const SIZES: [usize; 6] = [1, 7, 31, 127, 1000, 65_537];

#[test]
fn unary_ops_match_reference() {
    let dev = device();
    for (k, &n) in SIZES.iter().enumerate() {
        let x = random(k as u64, n, 6.0);
        let t = Tensor::from_slice(&dev, &[n], &x).unwrap();
        for op in [
            UnaryOp::Scale(-1.75),
            UnaryOp::Relu,
            UnaryOp::Tanh,
            UnaryOp::Gelu,
        ] {
            let gpu = unary(op, &t).unwrap().to_vec().unwrap();
            let r = reference::elementwise::unary(op, &widen(&x));
            assert_close_each(&format!("{op:?} n={n}"), &gpu, &r, |i, r| match op {
                UnaryOp::Scale(_) | UnaryOp::Relu => EPS * r.abs(),
                UnaryOp::Tanh => 8.0 * EPS,
                UnaryOp::Gelu => 8.0 * EPS * (1.0 + x[i].abs() as f64),
            });
        }
    }
}

#[test]
fn tanh_and_gelu_stay_finite_for_huge_inputs() {
    let dev = device();
    let x = [-1e30f32, -100.0, -20.0, 20.0, 100.0, 1e30];
    let t = Tensor::from_slice(&dev, &[6], &x).unwrap();
    let tanh = unary(UnaryOp::Tanh, &t).unwrap().to_vec().unwrap();
    assert_eq!(tanh, vec![-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]);
    let gelu = unary(UnaryOp::Gelu, &t).unwrap().to_vec().unwrap();
    let r = reference::elementwise::unary(UnaryOp::Gelu, &widen(&x));
    // For x ≤ −20 GELU underflows to −0 (exactly 0 in f64 up to 1e-80); for x ≥ 20 it is x.
    assert_close_each("gelu huge", &gelu, &r, |_, r| EPS * r.abs());
}

#[test]
fn binary_ops_match_reference_with_and_without_broadcast() {
    let dev = device();
    let ops = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::ReluBackward,
        BinaryOp::TanhBackward,
        BinaryOp::GeluBackward,
    ];
    // (rows, cols): a single element, primes, a tall-skinny and a wide matrix.
    for (k, &(rows, cols)) in [(1, 1), (7, 31), (127, 3), (3, 1000), (513, 129)]
        .iter()
        .enumerate()
    {
        let a = random(100 + k as u64, rows * cols, 3.0);
        let full = random(200 + k as u64, rows * cols, 1.0);
        let bias = random(300 + k as u64, cols, 1.0);
        let ta = Tensor::from_slice(&dev, &[rows, cols], &a).unwrap();
        let tfull = Tensor::from_slice(&dev, &[rows, cols], &full).unwrap();
        let tbias = Tensor::from_slice(&dev, &[cols], &bias).unwrap();
        for op in ops {
            for (b, tb) in [(&full, &tfull), (&bias, &tbias)] {
                let gpu = binary(op, &ta, tb).unwrap().to_vec().unwrap();
                let r = reference::elementwise::binary(
                    op,
                    &widen(&a),
                    &widen(b),
                    Broadcast::row_vector(b.len()),
                );
                assert_close_each(
                    &format!("{op:?} {rows}x{cols} b={:?}", tb.shape()),
                    &gpu,
                    &r,
                    |i, r| {
                        match op {
                            BinaryOp::Add
                            | BinaryOp::Sub
                            | BinaryOp::Mul
                            | BinaryOp::ReluBackward => EPS * r.abs() + 1e-30,
                            // (1 − y²)·dy with |y| ≤ 3 here: the product of three rounded ops.
                            BinaryOp::TanhBackward => 4.0 * EPS * (1.0 + (a[i] * a[i]) as f64),
                            BinaryOp::GeluBackward => 8.0 * EPS * (1.0 + a[i].abs() as f64),
                        }
                    },
                );
            }
        }
    }
}

#[test]
fn binary_shape_mismatch_is_an_error() {
    let dev = device();
    let a = Tensor::zeros(&dev, &[4, 3]).unwrap();
    let b = Tensor::zeros(&dev, &[4]).unwrap();
    let err = binary(BinaryOp::Add, &a, &b).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let b = Tensor::zeros(&dev, &[3, 4]).unwrap();
    assert!(matches!(
        binary(BinaryOp::Mul, &a, &b),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn expand_broadcasts_rows_and_columns() {
    let dev = device();
    for (k, &(rows, cols)) in [(1, 1), (7, 31), (127, 3), (3, 1000)].iter().enumerate() {
        let per_col = random(400 + k as u64, cols, 2.0);
        let per_row = random(500 + k as u64, rows, 2.0);
        for (x, from) in [
            (&per_col, Broadcast::row_vector(cols)),
            (&per_row, Broadcast::column_vector(rows, cols)),
        ] {
            let t = Tensor::from_slice(&dev, &[x.len()], x).unwrap();
            let gpu = expand(&t, &[rows, cols], from, -0.5)
                .unwrap()
                .to_vec()
                .unwrap();
            let r = reference::elementwise::expand(&widen(x), rows * cols, from, -0.5);
            // A power-of-two scale is exact.
            assert_close_each(
                &format!("expand {rows}x{cols} {from:?}"),
                &gpu,
                &r,
                |_, _| 0.0,
            );
        }
    }
    let t = Tensor::zeros(&dev, &[5]).unwrap();
    assert!(matches!(
        expand(&t, &[3, 4], Broadcast::row_vector(4), 1.0),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        expand(&t, &[3, 4], Broadcast::row_vector(5), 1.0),
        Err(Error::Shape { .. })
    ));
}

/// NaN, ±Inf, ±0 and huge values among ordinary ones, at positions that differ between the
/// two operands of the binary ops (so that NaN in dy alone, and in x alone, are both covered).
fn specials(n: usize, seed: u64, shift: usize) -> Vec<f32> {
    let special = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e30,
        -1e30,
        -f32::NAN,
    ];
    let mut x = random(seed, n, 4.0);
    for (k, v) in x.iter_mut().enumerate() {
        if (k + shift).is_multiple_of(3) {
            *v = special[((k + shift) / 3) % special.len()];
        }
    }
    x
}

/// The GPU result is NaN exactly where the reference is; elsewhere infinities agree and
/// finite values meet `tol` (the tolerances of the tests above).
fn assert_same_nans(what: &str, gpu: &[f32], reference: &[f64], tol: impl Fn(usize, f64) -> f64) {
    assert_eq!(gpu.len(), reference.len(), "{what}: lengths differ");
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        let ok = if r.is_nan() || g.is_nan() {
            r.is_nan() && g.is_nan()
        } else if r.is_infinite() {
            g as f64 == r
        } else {
            (g as f64 - r).abs() <= tol(i, r)
        };
        assert!(ok, "{what}: element {i}: gpu {g} vs reference {r}");
    }
}

/// Activations and their backward rules turn NaN into NaN on every adapter (drivers may drop
/// NaN in max/clamp): a diverged network must not read as finite.
#[test]
fn activations_and_their_gradients_propagate_nan() {
    let dev = device();
    let n = 67; // a prime, more than one 64-wide workgroup
    let x = specials(n, 1, 0);
    let dy = specials(n, 2, 1);
    // tanh's backward reads the forward output y = tanh(x), which is in [-1, 1] or NaN.
    let y: Vec<f32> = x.iter().map(|v| v.tanh()).collect();
    let tx = Tensor::from_slice(&dev, &[n], &x).unwrap();
    for op in [UnaryOp::Relu, UnaryOp::Tanh, UnaryOp::Gelu] {
        let gpu = unary(op, &tx).unwrap().to_vec().unwrap();
        let r = reference::elementwise::unary(op, &widen(&x));
        assert!(r.iter().any(|v| v.is_nan()), "{op:?}: no NaN case");
        // As above: ReLU is exact, tanh within 8ε, GELU within 8ε·(1 + |x|).
        assert_same_nans(&format!("{op:?}"), &gpu, &r, |i, _| match op {
            UnaryOp::Relu => 0.0,
            UnaryOp::Tanh => 8.0 * EPS,
            _ => 8.0 * EPS * (1.0 + x[i].abs() as f64),
        });
    }
    let tdy = Tensor::from_slice(&dev, &[n], &dy).unwrap();
    for op in [
        BinaryOp::ReluBackward,
        BinaryOp::TanhBackward,
        BinaryOp::GeluBackward,
    ] {
        let a = if op == BinaryOp::TanhBackward { &y } else { &x };
        let ta = Tensor::from_slice(&dev, &[n], a).unwrap();
        let gpu = binary(op, &ta, &tdy).unwrap().to_vec().unwrap();
        let r = reference::elementwise::binary(op, &widen(a), &widen(&dy), Broadcast::full(n));
        // Both kinds of NaN source occur: NaN in the forward operand, and NaN in dy alone.
        assert!(
            (0..n).any(|i| a[i].is_nan() && r[i].is_nan())
                && (0..n).any(|i| !a[i].is_nan() && dy[i].is_nan() && r[i].is_nan()),
            "{op:?}: a NaN case is missing"
        );
        // ReLU's rule returns dy or 0 exactly; the others as above, scaled by |dy| (up to
        // 1e30 here, where the tests above keep |dy| ≤ 1).
        assert_same_nans(&format!("{op:?}"), &gpu, &r, |i, _| {
            let dy = dy[i].abs() as f64;
            match op {
                BinaryOp::ReluBackward => 0.0,
                BinaryOp::TanhBackward => 4.0 * EPS * (1.0 + (a[i] * a[i]) as f64) * dy,
                _ => 8.0 * EPS * (1.0 + a[i].abs() as f64) * dy,
            }
        });
    }
}

/// The range copy moves any slice of a stack out (source offset) or in (destination offset),
/// at offsets that are not multiples of anything, bit for bit; a range past either end is an
/// error, not an out-of-bounds write.
#[test]
fn copy_moves_slices_out_of_and_into_stacks() {
    use eigengrad::kernels::elementwise::copy_dispatch;
    let dev = device();
    for (mats, len) in [(1, 1), (3, 7), (5, 31), (2, 65_537)] {
        let data = random(600 + len as u64, mats * len, 3.0);
        let stack = Tensor::from_slice(&dev, &[mats * len], &data).unwrap();
        let slice = Tensor::zeros(&dev, &[len]).unwrap();
        let rebuilt = Tensor::zeros(&dev, &[mats * len]).unwrap();
        for k in (0..mats).rev() {
            let out = copy_dispatch(&dev, stack.buffer(), k * len, slice.buffer(), 0, len).unwrap();
            let back =
                copy_dispatch(&dev, slice.buffer(), 0, rebuilt.buffer(), k * len, len).unwrap();
            eigengrad::kernels::run(&dev, &[&out, &back]).unwrap();
            assert_eq!(
                slice.to_vec().unwrap(),
                data[k * len..(k + 1) * len],
                "{mats}×{len}, slice {k}"
            );
        }
        assert_eq!(
            rebuilt.to_vec().unwrap(),
            data,
            "{mats}×{len}: stacked again"
        );
        let past = copy_dispatch(
            &dev,
            stack.buffer(),
            (mats - 1) * len + 1,
            slice.buffer(),
            0,
            len,
        );
        assert!(matches!(past, Err(Error::InvalidArgument(_))), "{past:?}");
        let past = copy_dispatch(&dev, slice.buffer(), 0, stack.buffer(), mats * len, 1);
        assert!(matches!(past, Err(Error::InvalidArgument(_))));
    }
}
