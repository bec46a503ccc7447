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

use super::{to_u32, Dispatch, Kernel, Region, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, SharedConstant};
use crate::tensor::{read_words, Tensor};

const SHADER: Shader = Shader {
    name: "finite",
    source: include_str!("../../shaders/finite.wgsl"),
};
const FINITE_CHECK: Kernel<Params> = Kernel::new(&SHADER, "finite_check", [64, 1, 1]);
/// Elements each invocation scans (strided by the number of invocations).
const PER_THREAD: usize = 16;

/// `u32` words per slot of a flag buffer: the count of non-finite values and the encoded first
/// offending index.
pub const FLAG_WORDS: usize = 2;

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 1] = [FINITE_CHECK.spec()];

/// The flag layout and the workgroup size, as the shader declares them.
pub(super) const CONSTANTS: [SharedConstant; 2] = [
    SharedConstant::u32(&SHADER, "FLAG_WORDS", FLAG_WORDS as u32),
    SharedConstant::u32(&SHADER, "WG", FINITE_CHECK.spec().workgroup_size[0]),
];

crate::wgsl_params! {
    struct Params {
        n: u32,
        threads: u32,
        slot: u32,
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
    let x: Region<'a> = x.into();
    let flags: Region<'a> = flags.into();
    if n == 0 {
        return Err(Error::Empty {
            op: "finite_check".into(),
            shape: vec![0],
        });
    }
    let slots = flags.size() as usize / (FLAG_WORDS * 4);
    if slot >= slots {
        return Err(Error::InvalidArgument(format!(
            "finite_check: slot {slot} is outside a flag buffer of {slots} slots"
        )));
    }
    let threads = n.div_ceil(PER_THREAD);
    // The shader's strided loop steps i by `threads` while i < n: keep i + threads in u32.
    to_u32("finite_check: elements + stride", n + threads)?;
    let params = Params {
        n: n as u32,
        threads: threads as u32,
        slot: slot as u32,
    };
    let grid = FINITE_CHECK.grid(device, threads as u64)?;
    FINITE_CHECK.dispatch(device, &params, &[x, flags], grid)
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
