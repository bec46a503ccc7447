//! Optimizer kernels: SGD with momentum and Adam/AdamW updating resident parameters and state
//! in place, and clipping by global gradient norm — all reading the per-step hyperparameters
//! (learning rate, step count, clip scale) from a small device buffer the host writes once per
//! step, so changing the learning rate never recompiles anything.
//!
//! The updates and the running average also bind the step's status (a
//! [`finite::status_buffer`]): once it says halted they change nothing, and an element whose
//! new values would be NaN or Inf keeps its old ones and is recorded in the launch's slot.

use super::finite::{self, FLAG_WORDS, STATUS_HALT};
use super::{to_u32, Dispatch, Kernel, Region, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, SharedConstant};

const SHADER: Shader = Shader {
    name: "optim",
    subgroups: false,
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

/// The elementwise kernels' workgroup size, which their flat index uses, and the step-status
/// layout they share with `finite.wgsl`.
pub(super) const CONSTANTS: [SharedConstant; 3] = [
    SharedConstant::u32(&SHADER, "WG", SGD.spec().workgroup_size[0]),
    SharedConstant::u32(&SHADER, "FLAG_WORDS", FLAG_WORDS as u32),
    SharedConstant::u32(&SHADER, "HALT", STATUS_HALT as u32),
];

/// Words in the hyperparameter buffer: `[learning rate, step t (from 1), clip scale, step
/// count as u32 bits]` (the last for kernels that hash the step, such as dropout).
pub const HYPER_WORDS: usize = 4;

/// The word of the hyperparameter buffer that holds the step count as `u32` bits (its low 32
/// bits).
pub const STEP_WORD: usize = 3;

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
    [
        learning_rate,
        step.max(1) as f32,
        1.0,
        f32::from_bits(step as u32),
    ]
}

/// Where an update or a running average records itself: a step-status buffer and its slot
/// there (counted from the buffer's start, header included).
#[derive(Clone, Copy, Debug)]
pub struct StatusSlot<'a> {
    /// The step's status ([`finite::status_buffer`]).
    pub buffer: &'a wgpu::Buffer,
    /// The launch's slot.
    pub slot: usize,
}

impl StatusSlot<'_> {
    /// The slot as the shader reads it, checked against the buffer.
    fn index(&self, what: &str) -> Result<u32> {
        let slots = self.buffer.size() as usize / (FLAG_WORDS * 4);
        if self.slot < finite::STATUS_HEADER_SLOTS || self.slot >= slots {
            return Err(Error::InvalidArgument(format!(
                "{what}: status slot {} is outside the findings of a buffer of {slots} slots",
                self.slot
            )));
        }
        Ok(self.slot as u32)
    }
}

/// A launch updating `n` elements of `param` in place from `grad` and `states` (as many as
/// `rule.state_count()`), reading `hyper`; it does nothing once `status` says halted, and
/// keeps (and records in its slot) every element whose new values would be non-finite.
#[allow(clippy::too_many_arguments)] // the shader's bindings, each a region of its own
pub fn update_dispatch<'a>(
    device: &Device,
    rule: &UpdateRule,
    hyper: impl Into<Region<'a>>,
    param: impl Into<Region<'a>>,
    grad: impl Into<Region<'a>>,
    states: &[Region<'a>],
    status: StatusSlot,
    n: usize,
) -> Result<Dispatch> {
    let parts = [(0, status.slot)];
    packed_update_dispatch(
        device,
        rule,
        hyper,
        param,
        grad,
        states,
        status.buffer,
        &parts,
        n,
    )
}

/// A launch updating `n` elements of several tensors laid out alike in the arenas `param`,
/// `grad` and `states` (one launch for every parameter of a rule, see
/// [`GpuPlan`](crate::graph::gpu::GpuPlan)). `parts` lists, in order, the element where each
/// tensor starts (the first at 0) and its slot in `status`: like [`update_dispatch`], the
/// launch does nothing once `status` says halted, and an element whose new values would be
/// non-finite keeps its old ones and is recorded in its tensor's slot, at its index in that
/// tensor.
#[allow(clippy::too_many_arguments)] // the shader's bindings, each a region of its own
pub fn packed_update_dispatch<'a>(
    device: &Device,
    rule: &UpdateRule,
    hyper: impl Into<Region<'a>>,
    param: impl Into<Region<'a>>,
    grad: impl Into<Region<'a>>,
    states: &[Region<'a>],
    status: &wgpu::Buffer,
    parts: &[(usize, usize)],
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
    let table = finite::parts_table(device, "optimizer update", status, parts, n)?;
    let mut params = Params {
        n: to_u32("optimizer update", n)?,
        count: to_u32("optimizer update", parts.len())?,
        ..Params::default()
    };
    let (status, table) = (Region::from(status), Region::from(&table));
    match *rule {
        UpdateRule::Sgd {
            momentum,
            weight_decay,
        } => {
            params.beta1 = momentum;
            params.weight_decay = weight_decay;
            let b = [
                (1, hyper),
                (2, param),
                (3, grad),
                (4, states[0]),
                (6, status),
                (7, table),
            ];
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
                (6, status),
                (7, table),
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
/// momentum·value: running statistics. Like an update, it does nothing once `status` says
/// halted and keeps (and records) the elements whose new value would be non-finite; it also
/// does nothing when its own slot already records a finding — launch a
/// [`finite::finite_check_dispatch`] of `value` into that slot before it, and a NaN batch
/// leaves the statistic untouched.
pub fn ema_dispatch<'a>(
    device: &Device,
    state: impl Into<Region<'a>>,
    value: impl Into<Region<'a>>,
    status: StatusSlot,
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
        slot: status.index("running average")?,
        beta1: momentum,
        ..Params::default()
    };
    let b = [(2, state), (3, value), (6, Region::from(status.buffer))];
    EMA.dispatch_bound(device, &params, &b, EMA.grid(device, n as u64)?)
}
