//! Reference twin of `kernels::dropout`: the same hashed mask, bit for bit.

use super::Real;
use crate::kernels::dropout::{drop_threshold, keep_scale};

/// PCG hash (Jarzynski & Olano 2020), as `shaders/dropout.wgsl` computes it.
fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// Whether dropout with `rate` and `seed` keeps element `index` at step `step` (only the low
/// 32 bits of the step count matter, as on the device).
pub fn keeps(rate: f32, seed: u32, step: u64, index: usize) -> bool {
    let key = pcg(seed ^ pcg(step as u32));
    pcg(key ^ pcg(index as u32)) >= drop_threshold(rate)
}

/// Inverted dropout of `x`: kept elements times 1/(1 − `rate`), the others 0.
pub fn dropout<T: Real>(x: &[T], rate: f32, seed: u32, step: u64) -> Vec<T> {
    let scale = T::c(keep_scale(rate) as f64);
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if keeps(rate, seed, step, i) {
                v * scale
            } else {
                T::zero()
            }
        })
        .collect()
}
