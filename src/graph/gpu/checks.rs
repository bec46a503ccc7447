//! The step status on the GPU (the policy is in [`crate::graph::status`]). A step records,
//! inside its one submission, finite checks of the losses and gradients and a gate right
//! before its first update, and a second gate at its end; the updates and running averages
//! read the halt and record their own findings (`kernels::optim`). Nothing is read back until
//! the caller asks ([`read`]); writing the plan's tensors records a [`record_reset`]. The
//! gradients of a packed group (`pack`) are checked by one launch over their arena, each
//! finding recorded in its own update's slot, like the group's update itself.

use super::alloc::Buffers;
use super::lower::Recorded;
use super::pack::{Group, Packing};
use super::schedule::Slot;
use super::solve::Solves;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::layout::{Layout, Storage};
use crate::graph::status::{StepStatus, StepWatch, Watched};
use crate::graph::{Graph, Op, Value};
use crate::kernels::finite::{
    decode_flags, decode_halt, finite_check_dispatch, finite_check_parts_dispatch, gate_dispatch,
    FLAG_WORDS, STATUS_HEADER_SLOTS,
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
    packing: &Packing,
    recording: &mut Vec<(Slot, Recorded)>,
) -> Result<()> {
    if watch.len() == 0 {
        return Ok(());
    }
    let is_update = |slot: &Slot| match *slot {
        Slot::Node(i) => matches!(graph.nodes()[i].op, Op::Update(_)),
        Slot::Solve(_) | Slot::Status => false,
    };
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
    // A stack is complete once the inputs written into its slots are.
    for (i, storage) in layout.storage.iter().enumerate() {
        if let Storage::Within { stack, .. } = *storage {
            last_launch[stack.0] = last_launch[stack.0].max(last_launch[i]);
        }
    }
    // Inputs and resident tensors have no launches: they are always ready.
    let ready = |v: Value| last_launch[layout.root(v).0].is_none_or(|p| p < at);
    let status = &buffers.status;
    let (mut before, mut after) = (Vec::new(), Vec::new());
    // One check over the gradient arena of each packed group whose gradients are all ready.
    let (mut checked, mut packed) = (vec![false; graph.nodes().len()], Vec::new());
    for g in &packing.groups {
        let grads: Vec<Value> = g
            .updates
            .iter()
            .map(|&u| graph.nodes()[u].inputs[1])
            .collect();
        if grads.iter().all(|&v| ready(v)) {
            let arena = buffers.arena_of(grads[0])?;
            let parts = group_parts(graph, buffers, watch, g)?;
            packed.push(finite_check_parts_dispatch(
                device, arena, status, &parts, g.len,
            )?);
            g.updates.iter().for_each(|&u| checked[u] = true);
        }
    }
    for (slot, watched) in watch.iter() {
        let (v, is_loss) = match *watched {
            Watched::Loss(v) => (v, true),
            Watched::Update { node, .. } if checked[node] => continue,
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
    before.extend(packed);
    before.push(gate_dispatch(device, status, watch.len())?);
    after.push(gate_dispatch(device, status, watch.len())?);
    let tagged = |d| (Slot::Status, Recorded::Dispatch(d));
    recording.splice(at..at, before.into_iter().map(tagged));
    recording.extend(after.into_iter().map(tagged));
    Ok(())
}

/// Where each update of packed group `g` records itself: its parameter's first element in the
/// group's arenas and its slot in the step status (counted from the buffer's start), in the
/// group's order — the `parts` of the group's gradient check and update.
pub(super) fn group_parts(
    graph: &Graph,
    buffers: &Buffers,
    watch: &StepWatch,
    g: &Group,
) -> Result<Vec<(usize, usize)>> {
    g.updates
        .iter()
        .map(|&u| {
            let param = graph.nodes()[u].inputs[0];
            let at = buffers.value(param)?.offset() - buffers.arena_of(param)?.offset();
            Ok(((at / 4) as usize, status_slot(graph, watch, u)?))
        })
        .collect()
}

/// The slot in the step status (counted from the buffer's start) where update or running
/// average `node` records itself.
pub(super) fn status_slot(graph: &Graph, watch: &StepWatch, node: usize) -> Result<usize> {
    let slot = watch.slot_of(node).ok_or_else(|| {
        let name = &graph.nodes()[node].name;
        Error::InvalidArgument(format!("{name} is not watched by the step"))
    })?;
    Ok(STATUS_HEADER_SLOTS + slot)
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

#[cfg(test)]
mod tests {
    use super::super::GpuPlan;
    use super::*;
    use crate::graph::{Init, Role};
    use crate::kernels::optim::UpdateRule;

    #[test]
    fn checks_and_a_gate_precede_the_first_update_and_a_gate_ends_the_step() {
        let device = Device::new().expect("a GPU adapter (on CI: Mesa lavapipe)");
        let mut g = Graph::new();
        let x = g.input("x", &[4, 3]).unwrap();
        let t = g.input("t", &[4, 2]).unwrap();
        let w = g.param("w", &[3, 2], Init::Normal { std: 0.5 }).unwrap();
        let y = g.matmul(x, w, false, false).unwrap();
        let loss = g.mse(y, t).unwrap();
        let grad = g.backward(loss).unwrap().get(w).unwrap();
        let momentum = g
            .resident("w.momentum", &[3, 2], Init::Zeros, Role::State)
            .unwrap();
        let rule = UpdateRule::Sgd {
            momentum: 0.9,
            weight_decay: 0.0,
        };
        let update = g
            .push(Op::Update(rule), vec![w, grad, momentum], vec![])
            .unwrap();
        let plan = GpuPlan::compile(&device, &g, &[], 0).unwrap();
        let items: Vec<(Slot, &str)> = plan
            .recording
            .iter()
            .map(|(slot, r)| match r {
                Recorded::Dispatch(d) => (*slot, d.label()),
                Recorded::Solve(_) => (*slot, "solve"),
            })
            .collect();
        let first_update = items
            .iter()
            .position(|&(slot, _)| slot == Slot::Node(update.index()))
            .unwrap();
        let status = |label| (Slot::Status, label);
        assert_eq!(
            items[first_update - 3..=first_update],
            [
                status("finite_check"),       // the loss
                status("finite_check_parts"), // the gradient, packed for the update
                status("gate"),
                (Slot::Node(update.index()), "sgd")
            ]
        );
        assert_eq!(items.last(), Some(&status("gate")));
        let checks = items.iter().filter(|(slot, _)| *slot == Slot::Status);
        assert_eq!(checks.count(), 4);
    }
}
