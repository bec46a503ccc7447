//! Packing for the multi-tensor optimizer: the parameters that one update rule trains, their
//! gradients and their optimizer state are laid out in arenas — one buffer of parameters, one
//! of gradients, one per state tensor, every tensor at the same offset in each — so a single
//! launch of the rule's elementwise kernel updates them all, however many there are. The
//! padding between tensors (ranges start at [`REGION_ALIGNMENT`]) holds zeros in every arena,
//! which every rule maps to zeros.
//!
//! An update joins its rule's group when nothing else depends on the layout: its parameter
//! has no other update, its state tensors serve only it, its gradient (through reshapes) is
//! computed by an op and read only by updates and clipping, and no other update shares it.
//! The group's launch is recorded where its first update is, so every gradient must be
//! computed before that, and no op between the group's first and last update may read what
//! the group writes. An arena never exceeds the device's largest storage binding: a group that
//! would is split. Updates that do not qualify keep a launch of their own.

use super::fuse::Fusion;
use crate::device::Device;
use crate::graph::layout::{value_bytes, Placement};
use crate::graph::{Graph, Op, Role, Value};
use crate::kernels::optim::UpdateRule;
use crate::kernels::REGION_ALIGNMENT;
use std::collections::HashMap;

/// One packed group: updates of one rule sharing a launch.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Group {
    /// The rule.
    pub rule: UpdateRule,
    /// The update nodes, in graph order.
    pub updates: Vec<usize>,
    /// The arena of the parameters, of the gradients, and of each state tensor.
    pub params: usize,
    pub grads: usize,
    pub states: Vec<usize>,
    /// f32 elements of each of the group's arenas (padding included).
    pub len: usize,
}

impl Group {
    /// Where the group's launch is recorded: its first update.
    pub fn runs_at(&self) -> usize {
        self.updates[0]
    }
}

/// The packed groups of a plan.
#[derive(Clone, Debug, Default)]
pub(super) struct Packing {
    pub groups: Vec<Group>,
    /// For each node: the group whose launch runs its update, if it is a packed update.
    pub group_of: Vec<Option<usize>>,
}

/// The value whose storage `v` uses: `v` itself unless it is a reshape.
fn root(graph: &Graph, mut v: Value) -> Value {
    while graph.node(v).op == Op::Reshape {
        v = graph.node(v).inputs[0];
    }
    v
}

impl Packing {
    /// No group: every update runs on its own.
    pub fn none(graph: &Graph) -> Packing {
        Packing {
            groups: Vec::new(),
            group_of: vec![None; graph.nodes().len()],
        }
    }

    /// Groups the updates of `graph` that qualify (see the module docs), given the plan's
    /// `fusion` (values a fused kernel keeps to itself cannot be packed; values it computes
    /// are ready where its launch runs).
    pub fn find(device: &Device, graph: &Graph, fusion: &Fusion) -> Packing {
        let unstored = &fusion.unstored;
        let nodes = graph.nodes();
        let n = nodes.len();
        // How many ops read each value's storage, and how many of them are not optimizer ops
        // (updates, clipping) or reshapes.
        let mut other_readers = vec![0usize; n];
        let mut updates_of_param = vec![0usize; n];
        let mut readers = vec![0usize; n];
        for node in nodes {
            for (k, &v) in node.inputs.iter().enumerate() {
                let r = root(graph, v).0;
                readers[r] += 1;
                let optimizer = matches!(node.op, Op::ClipGradients { .. })
                    || matches!(node.op, Op::Update(_) if k == 1);
                if !optimizer && node.op != Op::Reshape {
                    other_readers[r] += 1;
                }
            }
            if let Op::Update(_) = node.op {
                updates_of_param[node.inputs[0].0] += 1;
            }
        }
        let mut grad_users: HashMap<usize, usize> = HashMap::new();
        for node in nodes {
            if let Op::Update(_) = node.op {
                *grad_users.entry(root(graph, node.inputs[1]).0).or_default() += 1;
            }
        }
        let trainable = |v: Value| {
            matches!(
                graph.node(v).op,
                Op::Param {
                    role: Role::Trainable,
                    ..
                }
            )
        };
        let qualifies = |i: usize| -> bool {
            let Op::Update(rule) = &nodes[i].op else {
                return false;
            };
            let inputs = &nodes[i].inputs;
            let (param, grad) = (inputs[0], root(graph, inputs[1]));
            let states = &inputs[2..];
            let computed = !matches!(nodes[grad.0].op, Op::Input | Op::Param { .. } | Op::Reshape);
            trainable(param)
                && updates_of_param[param.0] == 1
                && states.len() == rule.state_count()
                && states
                    .iter()
                    .all(|&s| matches!(nodes[s.0].op, Op::Param { .. }) && readers[s.0] == 1)
                && computed
                && !unstored[grad.0]
                && other_readers[grad.0] == 0
                && grad_users[&grad.0] == 1
                && graph.shape(grad).iter().product::<usize>()
                    == graph.shape(param).iter().product::<usize>()
        };
        // Candidates by rule, in graph order.
        let mut by_rule: Vec<(UpdateRule, Vec<usize>)> = Vec::new();
        for i in (0..n).filter(|&i| qualifies(i)) {
            let Op::Update(rule) = nodes[i].op else {
                unreachable!()
            };
            match by_rule.iter_mut().find(|(r, _)| *r == rule) {
                Some((_, list)) => list.push(i),
                None => by_rule.push((rule, vec![i])),
            }
        }
        let max_bytes = device.info().limits.max_storage_buffer_binding_size;
        let mut packing = Packing::none(graph);
        let mut arenas = 0;
        for (rule, updates) in by_rule {
            if !safe_to_merge(graph, &fusion.runs_at, &updates) {
                continue;
            }
            let mut chunk: Vec<usize> = Vec::new();
            let mut bytes = 0u64;
            for u in updates {
                let size = padded(value_bytes(graph.shape(nodes[u].inputs[0])));
                if !chunk.is_empty() && bytes + size > max_bytes {
                    packing.push(rule, std::mem::take(&mut chunk), bytes, &mut arenas);
                    bytes = 0;
                }
                chunk.push(u);
                bytes += size;
            }
            if !chunk.is_empty() {
                packing.push(rule, chunk, bytes, &mut arenas);
            }
        }
        packing
    }

    /// Adds a group of `updates` whose arenas hold `bytes` each, numbering its arenas from
    /// `*arenas`.
    fn push(&mut self, rule: UpdateRule, updates: Vec<usize>, bytes: u64, arenas: &mut usize) {
        let k = self.groups.len();
        for &u in &updates {
            self.group_of[u] = Some(k);
        }
        let first = *arenas;
        let states = rule.state_count();
        *arenas += 2 + states;
        self.groups.push(Group {
            rule,
            updates,
            params: first,
            grads: first + 1,
            states: (first + 2..first + 2 + states).collect(),
            len: (bytes / 4) as usize,
        });
    }

    /// Records the groups' arenas and every packed value's range in `placement`.
    pub fn place(&self, graph: &Graph, placement: &mut Placement) {
        for g in &self.groups {
            let arenas = 2 + g.states.len();
            placement
                .arenas
                .extend(std::iter::repeat_n((g.len * 4) as u64, arenas));
            let mut offset = 0u64;
            for &u in &g.updates {
                let inputs = &graph.nodes()[u].inputs;
                placement.packed[inputs[0].0] = Some((g.params, offset));
                placement.packed[root(graph, inputs[1]).0] = Some((g.grads, offset));
                for (s, &arena) in inputs[2..].iter().zip(&g.states) {
                    placement.packed[s.0] = Some((arena, offset));
                }
                offset += padded(value_bytes(graph.shape(inputs[0])));
            }
        }
    }
}

/// `bytes` rounded up to a whole number of [`REGION_ALIGNMENT`] steps.
fn padded(bytes: u64) -> u64 {
    bytes.next_multiple_of(REGION_ALIGNMENT)
}

/// Whether `updates` (in graph order) may run as one launch at the first of them: every
/// gradient is computed before it (where its launch runs, `runs_at`), and no op between the
/// first and the last update other than these updates reads a parameter, gradient or state
/// tensor of the group.
fn safe_to_merge(graph: &Graph, runs_at: &[usize], updates: &[usize]) -> bool {
    let (first, last) = (updates[0], *updates.last().expect("non-empty"));
    let mut touched = vec![false; graph.nodes().len()];
    for &u in updates {
        for &v in &graph.nodes()[u].inputs {
            touched[root(graph, v).0] = true;
        }
        if runs_at[root(graph, graph.nodes()[u].inputs[1]).0] >= first {
            return false;
        }
    }
    (first + 1..last).filter(|j| !updates.contains(j)).all(|j| {
        graph.nodes()[j]
            .inputs
            .iter()
            .all(|&v| !touched[root(graph, v).0])
    })
}
