//! Finite checks on the device: ops that reject NaN/Inf input (the eigensolver, say) record a
//! check in the same command buffer as the work, and the flags are read back only when the
//! caller wants to know.
//!
//! A flag buffer holds `slots` slots of [`FLAG_WORDS`] `u32` words; each check writes its own
//! slot, so several checks of one step share one buffer and one readback. Slot layout (see
//! `shaders/finite.wgsl`): word 0 counts the non-finite values, word 1 holds
//! `u32::MAX − first index` (kept with `atomicMax`). An all-zero slot means "all finite", so a
//! step resets its flags with `encoder.clear_buffer(&flags, 0, None)` before the checks.
//! Counts accumulate until cleared.
//!
//! A training step keeps its *status* in such a buffer ([`status_buffer`]): the first
//! [`STATUS_HEADER_SLOTS`] slots hold a header — whether the step's updates are halted, since
//! which step, and the current step — and each later slot the findings of one thing the step
//! watches (a loss, a parameter update, a running statistic). The checks of a step write
//! their slots; the [`gate_dispatch`] launch halts the updates at the first slot that found
//! something; the update kernels (`kernels::optim`) read the halt and record their own
//! non-finite results.

use super::{to_u32, Dispatch, Kernel, Region, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, SharedConstant};
use crate::tensor::{read_words, Tensor};
use wgpu::util::DeviceExt;

const SHADER: Shader = Shader {
    name: "finite",
    subgroups: false,
    source: include_str!("../../shaders/finite.wgsl"),
};
const FINITE_CHECK: Kernel<Params> = Kernel::new(&SHADER, "finite_check", [64, 1, 1]);
const FINITE_CHECK_PARTS: Kernel<Params> = Kernel::new(&SHADER, "finite_check_parts", [64, 1, 1]);
const GATE: Kernel<Params> = Kernel::new(&SHADER, "gate", [1, 1, 1]);
/// Elements each invocation scans (strided by the number of invocations).
const PER_THREAD: usize = 16;

/// `u32` words per slot of a flag buffer: the count of non-finite values and the encoded first
/// offending index.
pub const FLAG_WORDS: usize = 2;

/// Slots at the head of a step-status buffer that hold its header words.
pub const STATUS_HEADER_SLOTS: usize = 2;
/// Header word: 0 while a step's updates may run; else the slot of the first finding (at least
/// [`STATUS_HEADER_SLOTS`]), from when on updates and running-statistic writes are skipped.
pub const STATUS_HALT: usize = 0;
/// Header word: the step at which the halt was set (its low 32 bits).
pub const STATUS_HALTED_AT: usize = 1;
/// Header word: the current step (its low 32 bits), written by the host before each step.
pub const STATUS_STEP: usize = 2;
/// The most slots a gate scans: its one invocation loops over them, and llvmpipe ends an
/// invocation after 65,535 loop iterations.
const MAX_WATCHED: usize = 60_000;

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 3] =
    [FINITE_CHECK.spec(), FINITE_CHECK_PARTS.spec(), GATE.spec()];

/// The flag and status layouts and the workgroup size, as the shader declares them.
pub(super) const CONSTANTS: [SharedConstant; 6] = [
    SharedConstant::u32(&SHADER, "FLAG_WORDS", FLAG_WORDS as u32),
    SharedConstant::u32(&SHADER, "WG", FINITE_CHECK.spec().workgroup_size[0]),
    SharedConstant::u32(&SHADER, "HEADER_SLOTS", STATUS_HEADER_SLOTS as u32),
    SharedConstant::u32(&SHADER, "HALT", STATUS_HALT as u32),
    SharedConstant::u32(&SHADER, "HALTED_AT", STATUS_HALTED_AT as u32),
    SharedConstant::u32(&SHADER, "STEP", STATUS_STEP as u32),
];

crate::wgsl_params! {
    struct Params {
        n: u32,
        threads: u32,
        slot: u32,
        parts: u32,
    }
}

/// A zeroed flag buffer of `slots` slots (at least one), usable as storage and as the source
/// and destination of copies (readback, `clear_buffer`).
pub fn flag_buffer(device: &Device, slots: usize) -> wgpu::Buffer {
    device.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("finite flags"),
        size: (slots.max(1) * FLAG_WORDS * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// A launch scanning `n` values of `x` and recording the NaN/Inf count and the first offending
/// index into slot `slot` of `flags` (which must have been zeroed since its last use).
pub fn finite_check_dispatch<'a>(
    device: &Device,
    x: impl Into<Region<'a>>,
    flags: impl Into<Region<'a>>,
    n: usize,
    slot: usize,
) -> Result<Dispatch> {
    let flags: Region<'a> = flags.into();
    let slots = flags.size() as usize / (FLAG_WORDS * 4);
    if slot >= slots {
        return Err(Error::InvalidArgument(format!(
            "finite_check: slot {slot} is outside a flag buffer of {slots} slots"
        )));
    }
    let (params, grid) = scan("finite_check", device, n)?;
    let params = Params {
        slot: slot as u32,
        ..params
    };
    FINITE_CHECK.dispatch(device, &params, &[x.into(), flags], grid)
}

/// A launch scanning `n` values of `x` that hold several tensors one after another (an arena
/// of gradients): `parts` lists, in order, the element where each tensor starts (the first at
/// 0) and its slot in the step-status buffer `status`, past the header. Each NaN/Inf counts in
/// the slot of its tensor, and the first offending index is counted within that tensor, as if
/// each tensor had had a [`finite_check_dispatch`] of its own.
pub fn finite_check_parts_dispatch<'a>(
    device: &Device,
    x: impl Into<Region<'a>>,
    status: &wgpu::Buffer,
    parts: &[(usize, usize)],
    n: usize,
) -> Result<Dispatch> {
    let table = parts_table(device, "finite_check", status, parts, n)?;
    let (params, grid) = scan("finite_check", device, n)?;
    let params = Params {
        parts: to_u32("finite_check: tensors", parts.len())?,
        ..params
    };
    let buffers = [x.into(), Region::from(status), Region::from(&table)];
    FINITE_CHECK_PARTS.dispatch(device, &params, &buffers, grid)
}

/// The parameters and grid of a scan over `n` values (each invocation takes every
/// `threads`-th value from its own index).
fn scan(what: &str, device: &Device, n: usize) -> Result<(Params, [u32; 3])> {
    if n == 0 {
        return Err(Error::Empty {
            op: what.into(),
            shape: vec![0],
        });
    }
    let threads = n.div_ceil(PER_THREAD);
    // The shader's strided loop steps i by `threads` while i < n: keep i + threads in u32.
    to_u32(&format!("{what}: elements + stride"), n + threads)?;
    let params = Params {
        n: n as u32,
        threads: threads as u32,
        ..Params::default()
    };
    Ok((params, FINITE_CHECK.grid(device, threads as u64)?))
}

/// The device table of `parts` — (first element, slot in `status`) of each of several tensors
/// laid out one after another in `n` elements — for a launch that records each tensor's
/// findings in its own slot (a packed gradient check, a packed optimizer update). Checked: the
/// first tensor starts at 0, the starts rise and lie below `n`, and every slot is one of the
/// findings of `status` (past its header).
pub(crate) fn parts_table(
    device: &Device,
    what: &str,
    status: &wgpu::Buffer,
    parts: &[(usize, usize)],
    n: usize,
) -> Result<wgpu::Buffer> {
    let rising = parts.windows(2).all(|w| w[0].0 < w[1].0);
    if parts.first().map(|p| p.0) != Some(0) || !rising || parts.iter().any(|p| p.0 >= n) {
        return Err(Error::InvalidArgument(format!(
            "{what}: tensors starting at {:?} do not split {n} elements",
            parts.iter().map(|p| p.0).collect::<Vec<_>>()
        )));
    }
    let slots = status.size() as usize / (FLAG_WORDS * 4);
    let mut words = Vec::with_capacity(2 * parts.len());
    for &(start, slot) in parts {
        if !(STATUS_HEADER_SLOTS..slots).contains(&slot) {
            return Err(Error::InvalidArgument(format!(
                "{what}: status slot {slot} is outside the findings of a buffer of {slots} slots"
            )));
        }
        words.extend([to_u32(what, start)?, slot as u32]);
    }
    Ok(device
        .wgpu_device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("status parts"),
            contents: bytemuck::cast_slice(&words),
            usage: wgpu::BufferUsages::STORAGE,
        }))
}

/// A zeroed step-status buffer: the header and one slot for each of `watched` things.
pub fn status_buffer(device: &Device, watched: usize) -> wgpu::Buffer {
    flag_buffer(device, STATUS_HEADER_SLOTS + watched)
}

/// The launch that halts the updates of the step-status buffer `status` (of `watched` slots
/// after its header) at the first slot that recorded a non-finite value, unless halted
/// already; the halt records the current step.
pub fn gate_dispatch(device: &Device, status: &wgpu::Buffer, watched: usize) -> Result<Dispatch> {
    let slots = status.size() as usize / (FLAG_WORDS * 4);
    if STATUS_HEADER_SLOTS + watched > slots || watched > MAX_WATCHED {
        return Err(Error::InvalidArgument(format!(
            "gate: {watched} watched slots do not fit a status buffer of {slots} slots \
             (at most {MAX_WATCHED} are scanned)"
        )));
    }
    let params = Params {
        n: watched as u32,
        ..Params::default()
    };
    GATE.dispatch_bound(device, &params, &[(2, status)], [1, 1, 1])
}

/// Where the downloaded words of a step-status buffer say the updates halted: `None` while
/// they run, else `Some((watched slot, low 32 bits of the step))` with the slot counted
/// after the header, as [`decode_flags`] counts it minus [`STATUS_HEADER_SLOTS`].
pub fn decode_halt(words: &[u32]) -> Option<(usize, u32)> {
    let halt = *words.get(STATUS_HALT)? as usize;
    let at = *words.get(STATUS_HALTED_AT)?;
    (halt >= STATUS_HEADER_SLOTS).then(|| (halt - STATUS_HEADER_SLOTS, at))
}

/// Decodes slot `slot` of downloaded flag words: `None` when that slot recorded no NaN/Inf (or
/// `words` is too short to hold it), else `Some((count, first offending index))`.
pub fn decode_flags(words: &[u32], slot: usize) -> Option<(u64, u64)> {
    let w = words.get(slot * FLAG_WORDS..(slot + 1) * FLAG_WORDS)?;
    (w[0] != 0).then(|| (w[0] as u64, (u32::MAX - w[1]) as u64))
}

/// Checks every element of `x` on the device: `Ok(())` if all are finite, else
/// `Error::NonFinite { what, index }` with the first offending flat index.
pub fn check_finite(x: &Tensor, what: &str) -> Result<()> {
    let device = x.device();
    let flags = flag_buffer(device, 1);
    let d = finite_check_dispatch(device, x.buffer(), &flags, x.len(), 0)?;
    super::run(device, &[&d])?;
    match decode_flags(&read_words(device, &flags, FLAG_WORDS)?, 0) {
        None => Ok(()),
        Some((_, index)) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
        }),
    }
}
