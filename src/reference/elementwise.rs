//! Reference twins of `kernels::elementwise`.

use super::Real;
use crate::kernels::elementwise::{BinaryOp, Broadcast, UnaryOp};

const GELU_C: f64 = 0.797_884_560_802_865_4; // sqrt(2/pi)
const GELU_A: f64 = 0.044715;

/// y = op(x) elementwise.
pub fn unary<T: Real>(op: UnaryOp, x: &[T]) -> Vec<T> {
    x.iter()
        .map(|&v| match op {
            UnaryOp::Scale(a) => T::c(a as f64) * v,
            UnaryOp::Relu => v.max(T::zero()),
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
                    if x > T::zero() {
                        y
                    } else {
                        T::zero()
                    }
                }
                BinaryOp::TanhBackward => (T::one() - x * x) * y,
                BinaryOp::GeluBackward => {
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
