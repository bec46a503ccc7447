//! Reference twins of `kernels::elementwise`.

use super::Real;
use crate::kernels::elementwise::{BinaryOp, Broadcast, UnaryOp};

const GELU_C: f64 = 0.797_884_560_802_865_4; // sqrt(2/pi)
const GELU_A: f64 = 0.044715;
/// |x| past which GELU's derivative is exactly 0 or 1 in floating point.
const GELU_SATURATION: f64 = 15.0;

/// `v` limited to [−bound, bound], NaN kept.
fn clamp<T: Real>(v: T, bound: f64) -> T {
    let b = T::c(bound);
    if v > b {
        b
    } else if v < -b {
        -b
    } else {
        v
    }
}

/// NaN is the one value not comparable to itself.
fn is_nan<T: Real>(v: T) -> bool {
    v.partial_cmp(&v).is_none()
}

/// y = op(x) elementwise. Every map propagates NaN, like the kernels.
pub fn unary<T: Real>(op: UnaryOp, x: &[T]) -> Vec<T> {
    x.iter()
        .map(|&v| match op {
            UnaryOp::Scale(a) => T::c(a as f64) * v,
            // `max` would return 0 for NaN; the kernel keeps it.
            UnaryOp::Relu => {
                if is_nan(v) {
                    v
                } else {
                    v.max(T::zero())
                }
            }
            UnaryOp::Tanh => v.tanh(),
            UnaryOp::Gelu => {
                let u = T::c(GELU_C) * (v + T::c(GELU_A) * v * v * v);
                T::c(0.5) * v * (T::one() + u.tanh())
            }
        })
        .collect()
}

/// `n` elements of `alpha`·x broadcast as `from` says.
pub fn expand<T: Real>(x: &[T], n: usize, from: Broadcast, alpha: f64) -> Vec<T> {
    (0..n).map(|i| T::c(alpha) * x[from.index(i)]).collect()
}

/// out = op(a, b) elementwise with `b` read as `b_from` says: `out[i] = f(a[i], b[b_from.index(i)])`.
pub fn binary<T: Real>(op: BinaryOp, a: &[T], b: &[T], b_from: Broadcast) -> Vec<T> {
    a.iter()
        .enumerate()
        .map(|(i, &x)| {
            let y = b[b_from.index(i)];
            match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::ReluBackward => {
                    if is_nan(x) || is_nan(y) {
                        x + y
                    } else if x > T::zero() {
                        y
                    } else {
                        T::zero()
                    }
                }
                BinaryOp::TanhBackward => (T::one() - x * x) * y,
                BinaryOp::GeluBackward => {
                    // Beyond |x| = 15 the derivative is 1 or 0 (to 1e-100), as the kernel
                    // evaluates it; clamping also keeps it 0·inf-free at x = ±inf.
                    let x = clamp(x, GELU_SATURATION);
                    let c = T::c(GELU_C);
                    let a3 = T::c(GELU_A);
                    let t = (c * (x + a3 * x * x * x)).tanh();
                    let half = T::c(0.5);
                    let d = half * (T::one() + t)
                        + half * x * (T::one() - t * t) * c * (T::one() + T::c(3.0) * a3 * x * x);
                    d * y
                }
            }
        })
        .collect()
}
