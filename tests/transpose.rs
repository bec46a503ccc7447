//! Transpose against the reference. A transpose moves values without arithmetic, so the
//! comparison is exact (bit-for-bit, which also covers -0.0 and NaN payloads).

mod common;
use common::*;
use eigengrad::kernels::run;
use eigengrad::kernels::transpose::{
    transpose, transpose_dispatch_with, transpose_shape, TransposeKernel,
};
use eigengrad::{reference, Error, Tensor};

const KERNELS: [TransposeKernel; 2] = [TransposeKernel::Tiled, TransposeKernel::Direct];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Both kernels on `batch` matrices of `rows × cols` against the reference.
fn check(batch: usize, rows: usize, cols: usize, seed: u64) {
    let dev = device();
    let mut x = random(seed, batch * rows * cols, 10.0);
    // Values a transpose must carry unchanged.
    x[0] = -0.0;
    if x.len() > 2 {
        x[1] = f32::from_bits(0x7fc0_1234);
        x[2] = f32::NEG_INFINITY;
    }
    let t = Tensor::from_slice(&dev, &[batch, rows, cols], &x).unwrap();
    let expected = bits(&reference::transpose::transpose(&x, batch, rows, cols));
    for kernel in KERNELS {
        let y = Tensor::zeros(&dev, &[batch, cols, rows]).unwrap();
        let d = transpose_dispatch_with(&dev, kernel, t.buffer(), y.buffer(), batch, rows, cols)
            .unwrap();
        run(&dev, &[&d]).unwrap();
        assert!(
            bits(&y.to_vec().unwrap()) == expected,
            "{kernel:?} {batch}x{rows}x{cols} differs from the reference"
        );
    }
}

#[test]
fn awkward_shapes_both_kernels() {
    let shapes = [
        (1, 1, 1),
        (1, 1, 7),
        (1, 7, 1),
        (1, 7, 31),
        (1, 31, 7),
        (1, 127, 127),
        (1, 32, 32),
        (1, 33, 65),
        (5, 31, 17),
        (3, 64, 96),
        (70, 3, 5),
    ];
    for (k, &(b, r, c)) in shapes.iter().enumerate() {
        check(b, r, c, k as u64);
    }
}

#[test]
fn tall_skinny_and_short_wide() {
    check(1, 100_000, 3, 20);
    check(1, 3, 100_000, 21);
    check(2, 1, 70_001, 22);
}

/// Large grids: 5000 single-tile matrices, more tiles than the tiled kernel's 4096 workgroups
/// (each loops over several), and 2048 × 2049 values, past 65535 workgroups of the direct
/// kernel (its grid folds into y).
#[test]
fn large_grids() {
    check(5000, 1, 2, 23);
    check(1, 2048, 2049, 24);
}

#[test]
fn tensor_level_rank_2_and_3() {
    let dev = device();
    for shape in [vec![7, 31], vec![4, 9, 13]] {
        let n: usize = shape.iter().product();
        let x = random(30, n, 1.0);
        let t = Tensor::from_slice(&dev, &shape, &x).unwrap();
        let y = transpose(&t).unwrap();
        let k = shape.len();
        let mut expected_shape = shape.clone();
        expected_shape.swap(k - 2, k - 1);
        assert_eq!(y.shape(), expected_shape.as_slice());
        let batch = if k == 3 { shape[0] } else { 1 };
        let r = reference::transpose::transpose(&x, batch, shape[k - 2], shape[k - 1]);
        assert_eq!(bits(&y.to_vec().unwrap()), bits(&r));
        // Transposing twice is the identity.
        assert_eq!(bits(&transpose(&y).unwrap().to_vec().unwrap()), bits(&x));
    }
}

#[test]
fn shape_errors() {
    let dev = device();
    let v = Tensor::zeros(&dev, &[5]).unwrap();
    assert!(matches!(transpose(&v), Err(Error::Shape { .. })));
    let r4 = Tensor::zeros(&dev, &[2, 2, 2, 2]).unwrap();
    assert!(matches!(transpose(&r4), Err(Error::Shape { .. })));
    assert!(matches!(transpose_shape(&[]), Err(Error::Shape { .. })));
    assert!(matches!(transpose_shape(&[3, 0]), Err(Error::Empty { .. })));
    assert_eq!(transpose_shape(&[2, 3, 4]).unwrap(), vec![2, 4, 3]);
    let b = v.buffer();
    for kernel in KERNELS {
        assert!(matches!(
            transpose_dispatch_with(&dev, kernel, b, b, 1, 0, 5),
            Err(Error::Empty { .. })
        ));
    }
}
