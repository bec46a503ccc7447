//! Optimizer kernels: SGD with momentum and Adam/AdamW updating resident parameters and state
//! in place, and clipping by global gradient norm — all reading the per-step hyperparameters
//! (learning rate, step count, clip scale) from a small device buffer the host writes once per
//! step, so changing the learning rate never recompiles anything.

use super::{to_u32, Dispatch, Kernel, Region, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, SharedConstant};

const SHADER: Shader = Shader {
    name: "optim",
    source: include_str!("../../shaders/optim.wgsl"),
};
const SGD: Kernel<Params> = Kernel::new(&SHADER, "sgd", [64, 1, 1]);
const ADAM: Kernel<Params> = Kernel::new(&SHADER, "adam", [64, 1, 1]);
const SUM_SQUARES: Kernel<Params> = Kernel::new(&SHADER, "sumsq_slot", [256, 1, 1]);
const CLIP_SCALE: Kernel<Params> = Kernel::new(&SHADER, "clip_scale", [1, 1, 1]);
const EMA: Kernel<Params> = Kernel::new(&SHADER, "ema", [64, 1, 1]);

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 5] = [
    SGD.spec(),
    ADAM.spec(),
    SUM_SQUARES.spec(),
    CLIP_SCALE.spec(),
    EMA.spec(),
];

/// The elementwise kernels' workgroup size, which their flat index uses.
pub(super) const CONSTANTS: [SharedConstant; 1] = [SharedConstant::u32(
    &SHADER,
    "WG",
    SGD.spec().workgroup_size[0],
)];

/// Words in the hyperparameter buffer: `[learning rate, step t (from 1), clip scale, unused]`.
pub const HYPER_WORDS: usize = 4;

/// An in-place update rule with its constant hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UpdateRule {
    /// v = momentum·v + g + wd·p; p −= lr·v. One state tensor (v).
    Sgd {
        /// Momentum coefficient (0 for plain SGD).
        momentum: f32,
        /// L2 weight decay added to the gradient.
        weight_decay: f32,
    },
    /// Adam with bias correction and decoupled weight decay (AdamW when `weight_decay` > 0).
    /// Two state tensors (m, v).
    Adam {
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Denominator guard.
        eps: f32,
        /// Decoupled weight decay.
        weight_decay: f32,
    },
}

impl UpdateRule {
    /// How many state tensors of the parameter's shape the rule keeps.
    pub fn state_count(&self) -> usize {
        match self {
            UpdateRule::Sgd { .. } => 1,
            UpdateRule::Adam { .. } => 2,
        }
    }

    /// Names of the state tensors (suffixes for checkpoints).
    pub fn state_names(&self) -> &'static [&'static str] {
        match self {
            UpdateRule::Sgd { .. } => &["momentum"],
            UpdateRule::Adam { .. } => &["adam_m", "adam_v"],
        }
    }

    /// A short name.
    pub fn name(&self) -> &'static str {
        match self {
            UpdateRule::Sgd { .. } => "Sgd",
            UpdateRule::Adam { .. } => "Adam",
        }
    }
}

crate::wgsl_params! {
    struct Params {
        n: u32,
        slot: u32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
        max_norm: f32,
        count: u32,
    }
}

/// A buffer for the per-step hyperparameters ([`HYPER_WORDS`] f32).
pub fn hyper_buffer(device: &Device) -> wgpu::Buffer {
    device.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("hyper"),
        size: (HYPER_WORDS * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// The hyperparameter words for one step: the clip scale starts at 1 and the clip kernel, if
/// any, lowers it on the device.
pub fn hyper_values(learning_rate: f32, step: u64) -> [f32; HYPER_WORDS] {
    [learning_rate, step.max(1) as f32, 1.0, 0.0]
}

/// A launch updating `n` elements of `param` in place from `grad` and `states` (as many as
/// `rule.state_count()`), reading `hyper`.
pub fn update_dispatch<'a>(
    device: &Device,
    rule: &UpdateRule,
    hyper: impl Into<Region<'a>>,
    param: impl Into<Region<'a>>,
    grad: impl Into<Region<'a>>,
    states: &[Region<'a>],
    n: usize,
) -> Result<Dispatch> {
    let hyper: Region<'a> = hyper.into();
    let param: Region<'a> = param.into();
    let grad: Region<'a> = grad.into();
    if states.len() != rule.state_count() {
        return Err(Error::InvalidArgument(format!(
            "{} needs {} state buffers, got {}",
            rule.name(),
            rule.state_count(),
            states.len()
        )));
    }
    let mut params = Params {
        n: to_u32("optimizer update", n)?,
        ..Params::default()
    };
    match *rule {
        UpdateRule::Sgd {
            momentum,
            weight_decay,
        } => {
            params.beta1 = momentum;
            params.weight_decay = weight_decay;
            let b = [(1, hyper), (2, param), (3, grad), (4, states[0])];
            SGD.dispatch_bound(device, &params, &b, SGD.grid(device, n as u64)?)
        }
        UpdateRule::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            params.beta1 = beta1;
            params.beta2 = beta2;
            params.eps = eps;
            params.weight_decay = weight_decay;
            let b = [
                (1, hyper),
                (2, param),
                (3, grad),
                (4, states[0]),
                (5, states[1]),
            ];
            ADAM.dispatch_bound(device, &params, &b, ADAM.grid(device, n as u64)?)
        }
    }
}

/// Most partial sums one [`sumsq_dispatch`] writes (one per workgroup): enough workgroups to
/// spread a large gradient arena over a GPU, few enough that the clip kernel's single thread
/// adds them up quickly.
pub const MAX_NORM_PARTS: usize = 256;

/// Gradient values each lane of [`sumsq_dispatch`] sums before it takes another workgroup: a
/// lane's loop stays far below llvmpipe's loop budget and long enough to amortise the
/// workgroup's final tree.
const VALUES_PER_LANE: usize = 64;

/// How many partial sums [`sumsq_dispatch`] writes for `n` gradient values.
pub fn sumsq_parts(n: usize) -> usize {
    let lanes = SUM_SQUARES.spec().invocations() as usize;
    n.div_ceil(lanes * VALUES_PER_LANE).clamp(1, MAX_NORM_PARTS)
}

/// A launch writing Σ grad² over `n` elements as [`sumsq_parts`]`(n)` partial sums into
/// `norms[slot..]` (one workgroup per partial sum).
pub fn sumsq_dispatch<'a>(
    device: &Device,
    grad: impl Into<Region<'a>>,
    norms: impl Into<Region<'a>>,
    n: usize,
    slot: usize,
) -> Result<Dispatch> {
    let grad: Region<'a> = grad.into();
    let norms: Region<'a> = norms.into();
    let parts = sumsq_parts(n);
    if (norms.len() as usize) < slot + parts {
        return Err(Error::InvalidArgument(format!(
            "gradient norm: {parts} partial sums from slot {slot} do not fit {} slots",
            norms.len()
        )));
    }
    let params = Params {
        n: to_u32("gradient norm", n)?,
        slot: to_u32("gradient norm", slot)?,
        ..Params::default()
    };
    let b = [(3, grad), (4, norms)];
    SUM_SQUARES.dispatch_bound(device, &params, &b, [parts as u32, 1, 1])
}

/// A launch setting the clip scale in `hyper` to min(1, max_norm/‖g‖) from the first `count`
/// squared norms in `norms`.
pub fn clip_dispatch<'a>(
    device: &Device,
    hyper: impl Into<Region<'a>>,
    norms: impl Into<Region<'a>>,
    count: usize,
    max_norm: f32,
) -> Result<Dispatch> {
    let hyper: Region<'a> = hyper.into();
    let norms: Region<'a> = norms.into();
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "clip norm must be positive and finite, got {max_norm}"
        )));
    }
    let params = Params {
        max_norm,
        count: to_u32("gradient clipping", count)?,
        ..Params::default()
    };
    let b = [(1, hyper), (4, norms)];
    CLIP_SCALE.dispatch_bound(device, &params, &b, [1, 1, 1])
}

/// A launch updating `n` elements of `state` in place to (1 − momentum)·state +
/// momentum·value: running statistics.
pub fn ema_dispatch<'a>(
    device: &Device,
    state: impl Into<Region<'a>>,
    value: impl Into<Region<'a>>,
    n: usize,
    momentum: f32,
) -> Result<Dispatch> {
    let state: Region<'a> = state.into();
    let value: Region<'a> = value.into();
    if !(0.0..=1.0).contains(&momentum) {
        return Err(Error::InvalidArgument(format!(
            "running-average momentum must lie in [0, 1], got {momentum}"
        )));
    }
    let params = Params {
        n: to_u32("running average", n)?,
        beta1: momentum,
        ..Params::default()
    };
    let b = [(2, state), (3, value)];
    EMA.dispatch_bound(device, &params, &b, EMA.grid(device, n as u64)?)
}
