//! Scheduling: the order in which a step records the lowered work.
//!
//! Work that depends only on resident tensors (an Eigen layer's Gram matrix, its spectral
//! function, its effective weight) is the same for every batch, so it runs first: the part
//! that feeds the hoisted solves, the hoisted solves themselves (all Eigen layers of one
//! order in one batched solve), then the rest of the parameter-only work. Within each of these
//! two parts, work is ordered by depth — every launch that depends only on earlier depths sits
//! beside the others of its depth (every layer's Gram matrix, then every layer's next step) —
//! so that launches with no data between them are adjacent and wgpu needs no barrier between
//! them (see docs/throughput.md). Parameter-only values own their buffers, so this reordering
//! reuses nothing early. Everything else follows in graph order, which is a topological order
//! and the one the memory pool's reuse was planned for.

use super::lower::Recorded;
use crate::graph::Graph;

/// What a piece of a step's recording serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    /// The launches lowered from node i.
    Node(usize),
    /// Hoisted solve k.
    Solve(usize),
    /// The step's status checks (training steps only, see `checks`).
    Status,
}

/// The order of a step: parameter-only nodes that feed no hoisted solve, the
/// `hoisted_solves` solves, the parameter-only nodes after them (both parts by depth), then
/// every other node in graph order. `hoisted(i)` says whether node i is decomposed by a
/// hoisted solve.
pub(super) fn order(
    graph: &Graph,
    hoisted: impl Fn(usize) -> bool,
    hoisted_solves: usize,
) -> Vec<Slot> {
    let nodes = graph.nodes();
    let param_only = graph.param_only();
    let mut after_solve = vec![false; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        after_solve[i] = hoisted(i) || node.inputs.iter().any(|v| after_solve[v.0]);
    }
    // Depth: 0 for inputs and resident tensors, else one more than the deepest input.
    let mut depth = vec![0usize; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        depth[i] = node
            .inputs
            .iter()
            .map(|v| depth[v.0] + 1)
            .max()
            .unwrap_or(0);
    }
    let nodes_where = |keep: &dyn Fn(usize) -> bool, by_depth: bool| -> Vec<Slot> {
        let mut part: Vec<usize> = (0..nodes.len()).filter(|&i| keep(i)).collect();
        if by_depth {
            part.sort_by_key(|&i| depth[i]); // stable: graph order within a depth
        }
        part.into_iter().map(Slot::Node).collect()
    };
    let mut order = nodes_where(&|i| param_only[i] && !after_solve[i], true);
    order.extend((0..hoisted_solves).map(Slot::Solve));
    order.extend(nodes_where(&|i| param_only[i] && after_solve[i], true));
    order.extend(nodes_where(&|i| !param_only[i], false));
    order
}

/// The step's recording: the lowered launches of every node (`lowered[i]` for node i) and
/// the hoisted solves, in `order`, each tagged with the slot it serves.
pub(super) fn flatten(order: &[Slot], mut lowered: Vec<Vec<Recorded>>) -> Vec<(Slot, Recorded)> {
    let mut recording = Vec::new();
    for &slot in order {
        match slot {
            Slot::Node(i) => recording.extend(lowered[i].drain(..).map(|r| (slot, r))),
            Slot::Solve(k) => recording.push((slot, Recorded::Solve(k))),
            Slot::Status => unreachable!("status checks join the recording after flattening"),
        }
    }
    recording
}

/// Compute passes a recording opens: one per eigendecomposition and one per run of
/// consecutive kernel launches between them.
pub(super) fn passes<'r>(recording: impl Iterator<Item = &'r Recorded>) -> usize {
    let mut passes = 0;
    let mut in_run = false;
    for item in recording {
        match item {
            Recorded::Solve(_) => {
                passes += 1;
                in_run = false;
            }
            Recorded::Dispatch(_) => {
                passes += usize::from(!in_run);
                in_run = true;
            }
        }
    }
    passes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Init, Value};
    use crate::kernels::spectral::SpectralFn;

    /// An Eigen-layer-like graph: w → gram → h (spectral) → w' = w·h; x·w'; and a
    /// parameter-only value that feeds no solve (2·w). Returns the graph and named nodes.
    fn eigen_graph() -> (Graph, [usize; 7]) {
        let mut g = Graph::new();
        let x = g.input("x", &[3, 4]).unwrap();
        let w = g.param("w", &[4, 4], Init::Identity { gain: 1.0 }).unwrap();
        let gram = g.matmul(w, w, true, false).unwrap();
        let h = g.spectral_fn(gram, SpectralFn::Orthogonal).unwrap();
        let scaled = g.scale(w, 2.0).unwrap();
        let effective = g.matmul(w, h, false, false).unwrap();
        let y = g.matmul(x, effective, false, false).unwrap();
        let ids = [x, w, gram, h, scaled, effective, y].map(Value::index);
        (g, ids)
    }

    #[test]
    fn parameter_only_work_is_split_around_the_hoisted_solves() {
        let (g, [x, w, gram, h, scaled, effective, y]) = eigen_graph();
        let order = order(&g, |i| i == h, 1);
        use Slot::{Node, Solve};
        assert_eq!(
            order,
            [
                Node(w),
                Node(gram),
                Node(scaled),
                Solve(0),
                Node(h),
                Node(effective),
                Node(x),
                Node(y)
            ]
        );
    }

    #[test]
    fn without_hoisted_solves_parameter_only_work_still_comes_first_by_depth() {
        let (g, [x, w, gram, h, scaled, effective, y]) = eigen_graph();
        let order = order(&g, |_| false, 0);
        use Slot::Node;
        // gram and scaled read only w: independent, so side by side.
        assert_eq!(
            order,
            [
                Node(w),
                Node(gram),
                Node(scaled),
                Node(h),
                Node(effective),
                Node(x),
                Node(y)
            ]
        );
    }

    #[test]
    fn every_node_is_scheduled_once_after_its_inputs() {
        let (g, [.., h, _, _, _]) = eigen_graph();
        let order = order(&g, |i| i == h, 1);
        let position = |i: usize| order.iter().position(|&s| s == Slot::Node(i)).unwrap();
        assert_eq!(order.len(), g.nodes().len() + 1);
        for (i, node) in g.nodes().iter().enumerate() {
            for v in &node.inputs {
                assert!(
                    position(v.index()) < position(i),
                    "node {i} before its input"
                );
            }
        }
    }

    #[test]
    fn flatten_tags_launches_with_their_slot_and_counts_passes() {
        let order = [Slot::Node(1), Slot::Solve(0), Slot::Node(0)];
        let lowered = vec![vec![Recorded::Solve(1)], vec![]];
        let recording = flatten(&order, lowered);
        let slots: Vec<Slot> = recording.iter().map(|(s, _)| *s).collect();
        assert_eq!(slots, [Slot::Solve(0), Slot::Node(0)]);
        assert_eq!(passes(recording.iter().map(|(_, r)| r)), 2);
    }
}
