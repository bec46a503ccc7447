//! What a compiled GPU plan costs per step.

use super::lower::Recorded;
use super::solve::Solves;
use crate::graph::layout::{value_bytes, Layout};
use crate::graph::{Graph, Op};
use crate::kernels::optim::HYPER_WORDS;
use crate::kernels::{BufferUses, LastUse};

/// Cost figures of a compiled plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanStats {
    /// Nodes of the graph.
    pub nodes: usize,
    /// Kernel launches recorded per step.
    pub dispatches_per_step: usize,
    /// Pipeline barriers wgpu records per step: each is a point where the device waits for
    /// all the compute work before it (see [`crate::kernels::BufferUses`]; an
    /// eigendecomposition's launches count one each).
    pub barriers_per_step: usize,
    /// Queue submissions per step (1 on the GPU).
    pub submits_per_step: usize,
    /// Device bytes of all buffers the plan holds: owned tensors plus the pool.
    pub peak_bytes: u64,
    /// What one buffer per value (no pooling) would need.
    pub unpooled_bytes: u64,
    /// Bytes written to the device per step: the inputs, the hyperparameter words and the
    /// step's number in its status.
    pub upload_bytes_per_step: u64,
    /// Bytes read back per step unless the caller asks (0).
    pub download_bytes_per_step: u64,
    /// Pipelines the device built while this plan compiled.
    pub pipelines_built_at_compile: usize,
}

/// For each item of `recording`, whether wgpu puts a barrier before it (see
/// [`BufferUses`]); an eigendecomposition, whose launches each wait for the one before, counts
/// as one item with a barrier.
pub(super) fn barriers<'r>(
    recording: impl Iterator<Item = &'r Recorded>,
    solves: &Solves,
) -> Vec<bool> {
    let mut uses = BufferUses::default();
    recording
        .map(|r| match r {
            Recorded::Dispatch(d) => uses.dispatch(d),
            Recorded::Solve(k) => {
                for b in solves.get(*k).copied() {
                    uses.set(b, LastUse::Copy);
                }
                true
            }
        })
        .collect()
}

impl PlanStats {
    /// The figures of a plan of `graph` laid out as `layout` that records `recording` per
    /// step, whose compilation built `pipelines_built` pipelines.
    pub(super) fn of<'r>(
        graph: &Graph,
        layout: &Layout,
        recording: impl Iterator<Item = &'r Recorded> + Clone,
        solves: &Solves,
        pipelines_built: usize,
    ) -> PlanStats {
        let barriers_per_step = barriers(recording.clone(), solves)
            .iter()
            .zip(recording.clone())
            .map(|(&barrier, r)| match r {
                Recorded::Dispatch(_) => usize::from(barrier),
                Recorded::Solve(k) => solves.get(*k).dispatches(),
            })
            .sum();
        let input_bytes: u64 = graph
            .nodes()
            .iter()
            .filter(|n| n.op == Op::Input)
            .map(|n| value_bytes(&n.shape))
            .sum();
        PlanStats {
            nodes: graph.nodes().len(),
            dispatches_per_step: recording
                .map(|r| match r {
                    Recorded::Dispatch(_) => 1,
                    Recorded::Solve(k) => solves.get(*k).dispatches(),
                })
                .sum(),
            barriers_per_step,
            submits_per_step: 1,
            peak_bytes: layout.peak_bytes(),
            unpooled_bytes: layout.unpooled_bytes,
            upload_bytes_per_step: input_bytes + (HYPER_WORDS * 4 + 4) as u64,
            download_bytes_per_step: 0,
            pipelines_built_at_compile: pipelines_built,
        }
    }
}
