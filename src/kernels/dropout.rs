//! Inverted dropout with a mask hashed from (seed, step, element index): nothing is stored
//! between the forward and the backward pass, and the reference executor draws the very same
//! mask (see `shaders/dropout.wgsl` and [`crate::reference::dropout`]).
//!
//! The step count comes from the plan's hyperparameter buffer (word
//! [`STEP_WORD`]), so a recorded dispatch draws a fresh mask
//! at every step without being rebuilt.

use super::{to_u32, Dispatch, Kernel, Region, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::kernels::optim::{hyper_buffer, hyper_values, STEP_WORD};
use crate::pipeline::{KernelSpec, SharedConstant};
use crate::tensor::Tensor;

const SHADER: Shader = Shader {
    name: "dropout",
    subgroups: false,
    source: include_str!("../../shaders/dropout.wgsl"),
};
const DROPOUT: Kernel<Params> = Kernel::new(&SHADER, "dropout", [64, 1, 1]);

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 1] = [DROPOUT.spec()];

/// The workgroup size (the flat index uses it) and the hyperparameter word of the step.
pub(super) const CONSTANTS: [SharedConstant; 2] = [
    SharedConstant::u32(&SHADER, "WG", DROPOUT.spec().workgroup_size[0]),
    SharedConstant::u32(&SHADER, "STEP_WORD", STEP_WORD as u32),
];

crate::wgsl_params! {
    struct Params {
        n: u32,
        threshold: u32,
        seed: u32,
        scale: f32,
    }
}

/// The hash value below which an element is dropped: `rate`·2³² (rate in [0, 1)).
pub fn drop_threshold(rate: f32) -> u32 {
    (rate as f64 * 4_294_967_296.0).round().min(u32::MAX as f64) as u32
}

/// The factor kept elements are multiplied by: 1/(1 − `rate`).
pub fn keep_scale(rate: f32) -> f32 {
    (1.0 / (1.0 - rate as f64)) as f32
}

/// Checks a dropout rate: in [0, 1).
fn check_rate(rate: f32) -> Result<()> {
    if (0.0..1.0).contains(&rate) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "dropout: rate must lie in [0, 1), got {rate}"
        )))
    }
}

/// A launch writing `n` elements of `y` = dropout(`x`) with `rate` and `seed`, for the step
/// whose count `hyper` holds.
pub fn dropout_dispatch<'a>(
    device: &Device,
    x: impl Into<Region<'a>>,
    y: impl Into<Region<'a>>,
    hyper: impl Into<Region<'a>>,
    n: usize,
    rate: f32,
    seed: u32,
) -> Result<Dispatch> {
    check_rate(rate)?;
    let params = Params {
        n: to_u32("dropout", n)?,
        threshold: drop_threshold(rate),
        seed,
        scale: keep_scale(rate),
    };
    let grid = DROPOUT.grid(device, n as u64)?;
    DROPOUT.dispatch(device, &params, &[x.into(), y.into(), hyper.into()], grid)
}

/// Dropout of `x` with `rate` and `seed` as step `step` draws it, a new tensor.
pub fn dropout(x: &Tensor, rate: f32, seed: u32, step: u64) -> Result<Tensor> {
    let device = x.device();
    let hyper = hyper_buffer(device);
    let words = hyper_values(0.0, step);
    device
        .queue()
        .write_buffer(&hyper, 0, bytemuck::cast_slice(&words));
    let y = Tensor::zeros(device, x.shape())?;
    let d = dropout_dispatch(device, x.buffer(), y.buffer(), &hyper, x.len(), rate, seed)?;
    super::run(device, &[&d])?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_and_scale_follow_the_rate() {
        assert_eq!(drop_threshold(0.0), 0);
        assert_eq!(drop_threshold(0.5), 1 << 31);
        assert_eq!(drop_threshold(0.25), 1 << 30);
        assert_eq!(keep_scale(0.0), 1.0);
        assert_eq!(keep_scale(0.75), 4.0);
        for bad in [-0.1, 1.0, f32::NAN] {
            assert!(check_rate(bad).is_err());
        }
    }
}
