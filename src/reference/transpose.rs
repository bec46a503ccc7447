//! Reference twin of `kernels::transpose`.

/// Transposes each of `batch` row-major `rows × cols` matrices in `x` into `cols × rows`.
pub fn transpose<T: Copy>(x: &[T], batch: usize, rows: usize, cols: usize) -> Vec<T> {
    assert_eq!(
        x.len(),
        batch * rows * cols,
        "reference transpose: length of x"
    );
    let mut y = Vec::with_capacity(x.len());
    for b in 0..batch {
        let m = &x[b * rows * cols..(b + 1) * rows * cols];
        for c in 0..cols {
            y.extend((0..rows).map(|r| m[r * cols + c]));
        }
    }
    y
}
