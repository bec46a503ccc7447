//! The step status on the GPU (the policy is in [`crate::graph::status`]). A step records,
//! inside its one submission, finite checks of the losses and gradients and a gate right
//! before its first update, and a second gate at its end; the updates and running averages
//! read the halt and record their own findings (`kernels::optim`). Nothing is read back until
//! the caller asks ([`read`]); writing the plan's tensors records a [`record_reset`].

use super::alloc::Buffers;
use super::lower::Recorded;
use super::schedule::Slot;
use super::solve::Solves;
use crate::device::Device;
use crate::error::Result;
use crate::graph::layout::Layout;
use crate::graph::status::{StepStatus, StepWatch, Watched};
use crate::graph::{Graph, Op, Value};
use crate::kernels::finite::{
    decode_flags, decode_halt, finite_check_dispatch, gate_dispatch, FLAG_WORDS,
    STATUS_HEADER_SLOTS,
};
use crate::tensor::read_words;

/// Adds the status checks to a step's `recording`: before the first update's launches, the
/// finite checks of every loss and gradient computed by then, and the gate; at the end, the
/// check of any loss computed later and a second gate (which halts on what the updates
/// found). A gradient computed after the first update (not in graphs the optimizers build)
/// is left to its update's own check: its buffer may be reused by then.
pub(super) fn insert(
    device: &Device,
    graph: &Graph,
    layout: &Layout,
    buffers: &Buffers,
    watch: &StepWatch,
    recording: &mut Vec<(Slot, Recorded)>,
) -> Result<()> {
    if watch.len() == 0 {
        return Ok(());
    }
    let is_update = |slot: &Slot| matches!(slot, Slot::Node(i) if matches!(graph.nodes()[*i].op, Op::Update(_)));
    let at = recording
        .iter()
        .position(|(slot, _)| is_update(slot))
        .unwrap_or(recording.len());
    let mut last_launch = vec![None; graph.nodes().len()];
    for (position, (slot, _)) in recording.iter().enumerate() {
        if let Slot::Node(i) = *slot {
            last_launch[i] = Some(position);
        }
    }
    // Inputs and resident tensors have no launches: they are always ready.
    let ready = |v: Value| last_launch[layout.root(v).0].is_none_or(|p| p < at);
    let status = &buffers.status;
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (slot, watched) in watch.iter() {
        let (v, is_loss) = match *watched {
            Watched::Loss(v) => (v, true),
            Watched::Update { grad, .. } => (grad, false),
            Watched::RunningStatistic { .. } => continue,
        };
        let len = graph.shape(v).iter().product();
        let check = || {
            finite_check_dispatch(
                device,
                buffers.value(v)?,
                status,
                len,
                STATUS_HEADER_SLOTS + slot,
            )
        };
        if ready(v) {
            before.push(check()?);
        } else if is_loss {
            after.push(check()?);
        }
    }
    before.push(gate_dispatch(device, status, watch.len())?);
    after.push(gate_dispatch(device, status, watch.len())?);
    let tagged = |d| (Slot::Status, Recorded::Dispatch(d));
    recording.splice(at..at, before.into_iter().map(tagged));
    recording.extend(after.into_iter().map(tagged));
    Ok(())
}

/// Records what writing a plan's tensors asks for: the step status cleared, and every solve
/// restarting cold with its status cleared.
pub(super) fn record_reset(buffers: &Buffers, solves: &Solves, encoder: &mut wgpu::CommandEncoder) {
    encoder.clear_buffer(&buffers.status, 0, None);
    solves.record_reset(encoder);
}

/// Reads the step status back (waiting for the queued work), `steps` being the step count
/// now (the device keeps the low 32 bits of the halting step).
pub(super) fn read(
    device: &Device,
    buffers: &Buffers,
    watch: &StepWatch,
    steps: u64,
) -> Result<StepStatus> {
    let words = read_words(
        device,
        &buffers.status,
        (STATUS_HEADER_SLOTS + watch.len()) * FLAG_WORDS,
    )?;
    let mut status = StepStatus::new(watch.len());
    for slot in 0..watch.len() {
        status.record(slot, decode_flags(&words, STATUS_HEADER_SLOTS + slot));
    }
    status.halted = decode_halt(&words)
        .map(|(slot, at)| (slot, steps - (steps as u32).wrapping_sub(at) as u64));
    Ok(status)
}
