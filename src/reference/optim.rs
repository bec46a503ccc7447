//! Reference twins of `kernels::optim`.

use super::Real;
use crate::kernels::optim::UpdateRule;

/// Updates `param` and `states` in place with learning rate `lr`, step `t` (from 1) and the
/// gradient scaled by `clip_scale`.
pub fn update<T: Real>(
    rule: &UpdateRule,
    lr: f64,
    t: u64,
    clip_scale: T,
    param: &mut [T],
    grad: &[T],
    states: &mut [Vec<T>],
) {
    let lr = T::c(lr);
    match *rule {
        UpdateRule::Sgd {
            momentum,
            weight_decay,
        } => {
            let (mu, wd) = (T::c(momentum as f64), T::c(weight_decay as f64));
            let v = &mut states[0];
            for i in 0..param.len() {
                let g = grad[i] * clip_scale + wd * param[i];
                v[i] = mu * v[i] + g;
                param[i] -= lr * v[i];
            }
        }
        UpdateRule::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let (b1, b2) = (T::c(beta1 as f64), T::c(beta2 as f64));
            let (eps, wd) = (T::c(eps as f64), T::c(weight_decay as f64));
            let bc1 = T::one() - b1.powi(t as i32);
            let bc2 = T::one() - b2.powi(t as i32);
            let (m, rest) = states.split_at_mut(1);
            let (m, v) = (&mut m[0], &mut rest[0]);
            for i in 0..param.len() {
                let g = grad[i] * clip_scale;
                m[i] = b1 * m[i] + (T::one() - b1) * g;
                v[i] = b2 * v[i] + (T::one() - b2) * g * g;
                let step = (m[i] / bc1) / ((v[i] / bc2).sqrt() + eps) + wd * param[i];
                param[i] -= lr * step;
            }
        }
    }
}

/// min(1, max_norm/‖g‖) over all gradients together.
pub fn clip_scale<T: Real>(grads: &[&[T]], max_norm: f64) -> T {
    let total: T = grads
        .iter()
        .flat_map(|g| g.iter())
        .fold(T::zero(), |acc, &g| acc + g * g);
    let norm = total.sqrt();
    let max = T::c(max_norm);
    if norm > max {
        max / norm
    } else {
        T::one()
    }
}
