//! Softmax cross-entropy with soft targets: the loss of a classifier and its gradient.
//!
//! Logits `z` and targets `t` are `[rows, classes]`; targets are probabilities (one-hot rows
//! for hard labels) but need not sum to one. Per row, with T = Σ_j t_j:
//! - forward: loss = T·logsumexp(z) − Σ_j t_j z_j, evaluated as Σ_j t_j (max z − z_j) + T·log Σ_j
//!   exp(z_j − max z), which stays finite and accurate for logits of any size;
//! - backward: dz_j = (softmax(z)_j · T − t_j) · dloss.
//!
//! Geometry (see `shaders/softmax_xent.wgsl`): L lanes cooperate on a row (a power of two ≤
//! 256), as [`softmax_lanes`] computes from the [`LanePolicy`] chosen for [`SoftmaxXent`]
//! through [`autotune`]. [`LanePolicy::Spread`] (default on GPUs): L is the largest power of
//! two ≤ classes/8: one invocation per row for a 10-class head, a whole workgroup per row for
//! a large vocabulary. [`LanePolicy::Fewest`] (default on CPU adapters such as llvmpipe, where
//! barriers are slow): L is as small as the loop budget allows: one invocation per row up to
//! 8192 classes.
//!
//! Loop budget: llvmpipe (Mesa 22.x) silently ends every loop of an invocation after 65535
//! iterations in total, and a lane of the backward kernel runs about 3 per class it holds: on
//! CPU adapters a lane may hold at most [`CPU_MAX_PER_LANE`] classes, and on every adapter a
//! row at most [`MAX_CLASSES`].

use super::autotune::{self, Tunable, Variant};
use super::{same_device, to_u32, Dispatch, Kernel, LanePolicy, Region, Shader};
use crate::device::{Device, DeviceInfo};
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, SharedConstant};
use crate::tensor::{numel, Tensor};

const SHADER: Shader = Shader {
    name: "softmax_xent",
    subgroups: false,
    source: include_str!("../../shaders/softmax_xent.wgsl"),
};
/// Invocations per workgroup of the cooperative kernels (`WG` in the shader).
const WORKGROUP: usize = 256;
/// Invocations per workgroup of the one-invocation-per-row kernels (`SERIAL_WG`).
const SERIAL_WORKGROUP: u32 = 64;

const COOPERATIVE: [u32; 3] = [WORKGROUP as u32, 1, 1];
const SERIAL: [u32; 3] = [SERIAL_WORKGROUP, 1, 1];
const FORWARD: Kernel<Params> = Kernel::new(&SHADER, "forward", COOPERATIVE);
const BACKWARD: Kernel<Params> = Kernel::new(&SHADER, "backward", COOPERATIVE);
const FORWARD_SERIAL: Kernel<Params> = Kernel::new(&SHADER, "forward_serial", SERIAL);
const BACKWARD_SERIAL: Kernel<Params> = Kernel::new(&SHADER, "backward_serial", SERIAL);

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 4] = [
    FORWARD.spec(),
    BACKWARD.spec(),
    FORWARD_SERIAL.spec(),
    BACKWARD_SERIAL.spec(),
];

/// The workgroup sizes, as the shader declares them.
pub(super) const CONSTANTS: [SharedConstant; 2] = [
    SharedConstant::u32(&SHADER, "WG", WORKGROUP as u32),
    SharedConstant::u32(&SHADER, "SERIAL_WG", SERIAL_WORKGROUP),
];
/// On CPU adapters: the most classes one lane may hold (≈ 49k loop iterations of llvmpipe's
/// 65535 per invocation in the backward kernel).
pub const CPU_MAX_PER_LANE: usize = 1 << 14;
/// The classes per lane [`LanePolicy::Fewest`] aims for (half the CPU adapters' budget).
const CPU_TARGET_PER_LANE: usize = 1 << 13;
/// The most classes a row may have: 256 lanes of [`CPU_MAX_PER_LANE`] classes.
pub const MAX_CLASSES: usize = WORKGROUP * CPU_MAX_PER_LANE;

crate::wgsl_params! {
    struct Params {
        rows: u32,
        classes: u32,
        lanes_log2: u32,
        block: u32,
    }
}

/// Softmax cross-entropy, forward and backward, whose [`LanePolicy`] is chosen per adapter by
/// [`autotune`].
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxXent;

/// Rows × classes of the logits [`SoftmaxXent`] is tuned on.
const TUNE_SHAPE: (usize, usize) = (1024, 1024);

impl Tunable for SoftmaxXent {
    type Variant = LanePolicy;
    type Trial = Dispatch;
    const KERNEL: &'static str = "softmax_xent";

    fn default_variant(info: &DeviceInfo) -> LanePolicy {
        LanePolicy::default_for(info)
    }

    /// The forward pass over `TUNE_SHAPE` logits with the lanes of each policy.
    fn trials(device: &Device) -> Result<Vec<Dispatch>> {
        let (rows, classes) = TUNE_SHAPE;
        let data: Vec<f32> = (0..rows * classes).map(|i| (i % 11) as f32 / 4.0).collect();
        let z = Tensor::from_slice(device, &[rows, classes], &data)?;
        let loss = Tensor::zeros(device, &[rows])?;
        LanePolicy::ALL
            .iter()
            .map(|&policy| {
                let lanes = policy_lanes(policy, device.info(), classes);
                let (b, l) = (z.buffer(), loss.buffer());
                softmax_xent_dispatch_with(device, b, b, l, rows, classes, lanes)
            })
            .collect()
    }
}

/// Shape rule: logits and targets both `[rows, classes]`; the loss is `[rows]`.
pub fn softmax_xent_shape(logits: &[usize], targets: &[usize]) -> Result<Vec<usize>> {
    if logits.len() != 2 || logits != targets {
        return Err(Error::shape(
            "softmax_xent",
            format!("logits {logits:?} and targets {targets:?} must both be [rows, classes]"),
        ));
    }
    numel("softmax_xent", logits)?;
    Ok(vec![logits[0]])
}

/// The number of lanes (a power of two, 1 to 256) that cooperate on one row of `classes`
/// logits on `device`, under the [`LanePolicy`] chosen for [`SoftmaxXent`] there (see the
/// module documentation).
pub fn softmax_lanes(device: &Device, classes: usize) -> usize {
    let policy = autotune::variant::<SoftmaxXent>(device);
    policy_lanes(policy, device.info(), classes)
}

/// The lanes `policy` gives rows of `classes` logits on the adapter `info`: on CPU adapters
/// never fewer than the loop budget needs.
fn policy_lanes(policy: LanePolicy, info: &DeviceInfo, classes: usize) -> usize {
    let fewest = classes
        .div_ceil(CPU_TARGET_PER_LANE)
        .next_power_of_two()
        .min(WORKGROUP);
    let lanes = match policy {
        LanePolicy::Fewest => fewest,
        LanePolicy::Spread => (1usize << (classes / 8).max(1).ilog2()).min(WORKGROUP),
    };
    if info.is_cpu() {
        lanes.max(fewest)
    } else {
        lanes
    }
}

/// Which pass a launch computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Forward,
    Backward,
}

/// Parameters, workgroup grid and kernel of `pass` over `rows × classes` with `lanes` lanes
/// per row.
fn launch(
    device: &Device,
    pass: Pass,
    rows: usize,
    classes: usize,
    lanes: usize,
) -> Result<(Params, [u32; 3], Kernel<Params>)> {
    let op = match pass {
        Pass::Forward => "softmax_xent forward",
        Pass::Backward => "softmax_xent backward",
    }
    .to_string();
    if rows == 0 || classes == 0 {
        return Err(Error::Empty {
            op,
            shape: vec![rows, classes],
        });
    }
    if classes > MAX_CLASSES {
        return Err(Error::TooLarge {
            what: format!("{op}: rows of {classes} classes"),
            requested: classes as u64,
            limit_name: "softmax::MAX_CLASSES",
            limit: MAX_CLASSES as u64,
        });
    }
    to_u32(&op, rows.saturating_mul(classes))?;
    if !lanes.is_power_of_two() || lanes > WORKGROUP {
        return Err(Error::InvalidArgument(format!(
            "{op}: {lanes} lanes per row; expected a power of two from 1 to {WORKGROUP}"
        )));
    }
    let per_lane = classes.div_ceil(lanes);
    if device.info().is_cpu() && per_lane > CPU_MAX_PER_LANE {
        return Err(Error::InvalidArgument(format!(
            "{op}: {lanes} lanes for {classes} classes exceed {CPU_MAX_PER_LANE} classes per \
             lane, past llvmpipe's loop budget"
        )));
    }
    let params = Params {
        rows: rows as u32,
        classes: classes as u32,
        lanes_log2: lanes.ilog2(),
        // Blocks of ⌈√terms⌉ balance the two levels of a lane's blocked sum.
        block: (per_lane as f64).sqrt().ceil() as u32,
    };
    let kernel = match (pass, lanes == 1) {
        (Pass::Forward, false) => FORWARD,
        (Pass::Backward, false) => BACKWARD,
        (Pass::Forward, true) => FORWARD_SERIAL,
        (Pass::Backward, true) => BACKWARD_SERIAL,
    };
    let grid = if lanes == 1 {
        kernel.grid(device, rows as u64)?
    } else {
        let groups = rows.div_ceil(WORKGROUP / lanes) as u64;
        kernel.grid(device, groups * WORKGROUP as u64)?
    };
    Ok((params, grid, kernel))
}

/// A launch writing the per-row loss of `rows × classes` logits and targets into `loss`.
pub fn softmax_xent_dispatch<'a>(
    device: &Device,
    logits: impl Into<Region<'a>>,
    targets: impl Into<Region<'a>>,
    loss: impl Into<Region<'a>>,
    rows: usize,
    classes: usize,
) -> Result<Dispatch> {
    let logits: Region<'a> = logits.into();
    let targets: Region<'a> = targets.into();
    let loss: Region<'a> = loss.into();
    let lanes = softmax_lanes(device, classes);
    softmax_xent_dispatch_with(device, logits, targets, loss, rows, classes, lanes)
}

/// [`softmax_xent_dispatch`] with `lanes` lanes per row: a power of two from 1 to 256 and, on
/// CPU adapters, at most [`CPU_MAX_PER_LANE`] classes per lane. Tests use it to run every
/// geometry on every adapter.
pub fn softmax_xent_dispatch_with<'a>(
    device: &Device,
    logits: impl Into<Region<'a>>,
    targets: impl Into<Region<'a>>,
    loss: impl Into<Region<'a>>,
    rows: usize,
    classes: usize,
    lanes: usize,
) -> Result<Dispatch> {
    let logits: Region<'a> = logits.into();
    let targets: Region<'a> = targets.into();
    let loss: Region<'a> = loss.into();
    let (p, grid, kernel) = launch(device, Pass::Forward, rows, classes, lanes)?;
    kernel.dispatch(device, &p, &[logits, targets, loss], grid)
}

/// A launch writing dloss/dlogits (`rows × classes`) from the logits, targets and the
/// upstream gradient `dloss` (`rows`).
pub fn softmax_xent_backward_dispatch<'a>(
    device: &Device,
    logits: impl Into<Region<'a>>,
    targets: impl Into<Region<'a>>,
    dloss: impl Into<Region<'a>>,
    dlogits: impl Into<Region<'a>>,
    rows: usize,
    classes: usize,
) -> Result<Dispatch> {
    let logits: Region<'a> = logits.into();
    let targets: Region<'a> = targets.into();
    let dloss: Region<'a> = dloss.into();
    let dlogits: Region<'a> = dlogits.into();
    let lanes = softmax_lanes(device, classes);
    softmax_xent_backward_dispatch_with(
        device, logits, targets, dloss, dlogits, rows, classes, lanes,
    )
}

/// [`softmax_xent_backward_dispatch`] with `lanes` lanes per row (as in
/// [`softmax_xent_dispatch_with`]).
#[allow(clippy::too_many_arguments)]
pub fn softmax_xent_backward_dispatch_with<'a>(
    device: &Device,
    logits: impl Into<Region<'a>>,
    targets: impl Into<Region<'a>>,
    dloss: impl Into<Region<'a>>,
    dlogits: impl Into<Region<'a>>,
    rows: usize,
    classes: usize,
    lanes: usize,
) -> Result<Dispatch> {
    let logits: Region<'a> = logits.into();
    let targets: Region<'a> = targets.into();
    let dloss: Region<'a> = dloss.into();
    let dlogits: Region<'a> = dlogits.into();
    let (p, grid, kernel) = launch(device, Pass::Backward, rows, classes, lanes)?;
    kernel.dispatch(device, &p, &[logits, targets, dloss, dlogits], grid)
}

/// The per-row loss `[rows]` of `[rows, classes]` logits against targets of the same shape.
pub fn softmax_xent(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let device = same_device("softmax_xent", &[logits, targets])?;
    let shape = softmax_xent_shape(logits.shape(), targets.shape())?;
    let (rows, classes) = (logits.shape()[0], logits.shape()[1]);
    let loss = Tensor::zeros(&device, &shape)?;
    let d = softmax_xent_dispatch(
        &device,
        logits.buffer(),
        targets.buffer(),
        loss.buffer(),
        rows,
        classes,
    )?;
    super::run(&device, &[&d])?;
    Ok(loss)
}

/// The gradient with respect to the logits, `[rows, classes]`, given the upstream gradient
/// `dloss` of shape `[rows]`.
pub fn softmax_xent_backward(logits: &Tensor, targets: &Tensor, dloss: &Tensor) -> Result<Tensor> {
    let device = same_device("softmax_xent_backward", &[logits, targets, dloss])?;
    let loss_shape = softmax_xent_shape(logits.shape(), targets.shape())?;
    if dloss.shape() != loss_shape.as_slice() {
        return Err(Error::shape(
            "softmax_xent_backward",
            format!(
                "dloss {:?} must be the loss shape {loss_shape:?}",
                dloss.shape()
            ),
        ));
    }
    let (rows, classes) = (logits.shape()[0], logits.shape()[1]);
    let dlogits = Tensor::zeros(&device, logits.shape())?;
    let d = softmax_xent_backward_dispatch(
        &device,
        logits.buffer(),
        targets.buffer(),
        dloss.buffer(),
        dlogits.buffer(),
        rows,
        classes,
    )?;
    super::run(&device, &[&d])?;
    Ok(dlogits)
}
