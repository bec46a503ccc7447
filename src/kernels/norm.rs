//! Layer normalisation per row, forward and backward (see `shaders/layer_norm.wgsl`): the
//! affine gain and bias are ordinary broadcast products and sums in the graph.
//!
//! L lanes cooperate on a row (a power of two ≤ 64): about 8 columns per lane on GPUs
//! ([`LanePolicy::Spread`]), as few lanes as the loop budget allows on CPU adapters
//! ([`LanePolicy::Fewest`]), where barriers are slow.

use super::{to_u32, Dispatch, Kernel, LanePolicy, Region, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, SharedConstant};
use crate::tensor::Tensor;

const SHADER: Shader = Shader {
    name: "layer_norm",
    subgroups: false,
    source: include_str!("../../shaders/layer_norm.wgsl"),
};
/// Invocations per workgroup (`WG` in the shader), the most lanes a row can have.
const WORKGROUP: usize = 64;
const FORWARD: Kernel<Params> = Kernel::new(&SHADER, "forward", [WORKGROUP as u32, 1, 1]);
const BACKWARD: Kernel<Params> = Kernel::new(&SHADER, "backward", [WORKGROUP as u32, 1, 1]);

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 2] = [FORWARD.spec(), BACKWARD.spec()];

/// The workgroup size, as the shader declares it.
pub(super) const CONSTANTS: [SharedConstant; 1] =
    [SharedConstant::u32(&SHADER, "WG", WORKGROUP as u32)];

/// The most columns one lane may hold: 4 passes of 8192 stay inside llvmpipe's budget of
/// 65535 loop iterations per invocation.
const MAX_PER_LANE: usize = 8192;
/// The longest row: 64 lanes (a workgroup) of 8192 columns each, the most one lane may hold
/// within llvmpipe's loop budget.
pub const MAX_COLS: usize = WORKGROUP * MAX_PER_LANE;

crate::wgsl_params! {
    struct Params {
        rows: u32,
        cols: u32,
        lanes_log2: u32,
        eps: f32,
    }
}

/// Checks that rows of `cols` values can be normalised: 1 ≤ cols ≤ [`MAX_COLS`].
pub fn check_row_len(op: &str, cols: usize) -> Result<()> {
    if (1..=MAX_COLS).contains(&cols) {
        Ok(())
    } else {
        Err(Error::TooLarge {
            what: format!("{op}: rows of {cols} values"),
            requested: cols as u64,
            limit_name: "layer_norm::MAX_COLS",
            limit: MAX_COLS as u64,
        })
    }
}

/// Lanes per row of `cols` values under `policy`: never fewer than the loop budget needs.
fn lanes_for(policy: LanePolicy, cols: usize) -> usize {
    let fewest = cols.div_ceil(MAX_PER_LANE).next_power_of_two();
    let lanes = match policy {
        LanePolicy::Fewest => fewest,
        LanePolicy::Spread => cols.div_ceil(8).next_power_of_two(),
    };
    lanes.max(fewest).min(WORKGROUP)
}

/// The parameters and grid of `kernel` over `rows` rows of `cols` values.
fn launch(
    device: &Device,
    kernel: &Kernel<Params>,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<(Params, [u32; 3])> {
    let entry = kernel.spec().entry;
    check_row_len(entry, cols)?;
    if !(eps.is_finite() && eps > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "layer_norm: eps must be finite and > 0, got {eps}"
        )));
    }
    let lanes = lanes_for(LanePolicy::default_for(device.info()), cols);
    let params = Params {
        rows: to_u32(entry, rows)?,
        cols: to_u32(entry, cols)?,
        lanes_log2: lanes.ilog2(),
        eps,
    };
    let threads = rows.checked_mul(lanes).ok_or_else(|| Error::TooLarge {
        what: format!("{entry}: {rows} rows × {lanes} lanes"),
        requested: u64::MAX,
        limit_name: "usize",
        limit: usize::MAX as u64,
    })?;
    Ok((params, kernel.grid(device, threads as u64)?))
}

/// A launch writing `y` = the layer normalisation of each of the `rows` rows of `cols` values
/// of `x`.
pub fn layer_norm_dispatch<'a>(
    device: &Device,
    x: impl Into<Region<'a>>,
    y: impl Into<Region<'a>>,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<Dispatch> {
    let (params, grid) = launch(device, &FORWARD, rows, cols, eps)?;
    FORWARD.dispatch(device, &params, &[x.into(), y.into()], grid)
}

/// A launch writing `dx`, the gradient of the layer normalisation of `x` for the upstream
/// gradient `dy` (all `rows` × `cols`).
pub fn layer_norm_backward_dispatch<'a>(
    device: &Device,
    x: impl Into<Region<'a>>,
    dy: impl Into<Region<'a>>,
    dx: impl Into<Region<'a>>,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<Dispatch> {
    let (params, grid) = launch(device, &BACKWARD, rows, cols, eps)?;
    let buffers = [x.into(), dx.into(), dy.into()];
    BACKWARD.dispatch(device, &params, &buffers, grid)
}

/// (rows, cols) of `x` viewed as a matrix whose rows (last dimension) are normalised.
fn rows_cols_of(x: &Tensor) -> (usize, usize) {
    let cols = x.shape().last().copied().unwrap_or(1);
    (x.len() / cols.max(1), cols)
}

/// The layer normalisation of every row (last dimension) of `x`, a new tensor.
pub fn layer_norm(x: &Tensor, eps: f32) -> Result<Tensor> {
    let device = x.device();
    let (rows, cols) = rows_cols_of(x);
    let y = Tensor::zeros(device, x.shape())?;
    let d = layer_norm_dispatch(device, x.buffer(), y.buffer(), rows, cols, eps)?;
    super::run(device, &[&d])?;
    Ok(y)
}

/// The gradient w.r.t. `x` of the layer normalisation of `x` for the upstream gradient `dy`
/// (same shape), a new tensor.
pub fn layer_norm_backward(x: &Tensor, dy: &Tensor, eps: f32) -> Result<Tensor> {
    let device = super::same_device("layer_norm_backward", &[x, dy])?;
    if x.shape() != dy.shape() {
        return Err(Error::shape(
            "layer_norm_backward",
            format!("x {:?} and dy {:?} differ", x.shape(), dy.shape()),
        ));
    }
    let (rows, cols) = rows_cols_of(x);
    let dx = Tensor::zeros(&device, x.shape())?;
    let d = layer_norm_backward_dispatch(
        &device,
        x.buffer(),
        dy.buffer(),
        dx.buffer(),
        rows,
        cols,
        eps,
    )?;
    super::run(&device, &[&d])?;
    Ok(dx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_respect_the_loop_budget_and_the_workgroup() {
        for policy in [LanePolicy::Spread, LanePolicy::Fewest] {
            for cols in [1, 7, 64, 1000, 8192, 8193, 100_000, MAX_COLS] {
                let lanes = lanes_for(policy, cols);
                assert!(lanes.is_power_of_two() && lanes <= WORKGROUP);
                assert!(cols.div_ceil(lanes) <= MAX_PER_LANE, "{policy:?} {cols}");
            }
        }
        assert_eq!(lanes_for(LanePolicy::Fewest, 1000), 1);
        assert_eq!(lanes_for(LanePolicy::Spread, 1000), 64);
        assert_eq!(lanes_for(LanePolicy::Spread, 10), 2);
        assert!(check_row_len("t", 0).is_err() && check_row_len("t", MAX_COLS + 1).is_err());
    }
}
