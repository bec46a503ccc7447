//! The batched eigendecompositions of a GPU plan. Each spectral-function node's matrices are
//! decomposed by a batched Jacobi solve ([`EighPlan`]), warm-started from the last step's
//! eigenvectors unless the graph says otherwise ([`Graph::warm_start`]); spectral functions of
//! parameters only (an Eigen layer's Gram matrix) of equal order and warm start share one
//! solve that runs ahead of the batch work, the others get a solve of their own recorded where
//! the node is.

use super::alloc::{scratch, Buffers, Placed};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::status::{non_finite_solve, SolveFault};
use crate::graph::{Graph, Op, Value};
use crate::kernels::jacobi::{
    EighOptions, EighPlan, WarmStart, STATUS_NONFINITE_INPUT, STATUS_NONFINITE_WARM_START,
};
use crate::tensor::{read_buffer, read_words};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

/// One spectral-function node's share of a batched solve.
pub(super) struct Member {
    /// The spectral-function node.
    node: usize,
    /// Where the graph keeps its matrices.
    source: Placed,
    /// Its first matrix in the solve's batch, and how many it has.
    first: usize,
    count: usize,
    /// Its eigenvalues `[count, n]` and eigenvectors `[count, n, n]`, copied out of the solve.
    pub values: wgpu::Buffer,
    pub vectors: wgpu::Buffer,
}

/// A batched Jacobi solve serving one or more spectral-function nodes of the same order n and
/// the same [`WarmStart`] ([`Graph::warm_start`]).
pub(super) struct Solve {
    members: Vec<Member>,
    plan: EighPlan,
    /// Set when the plan's tensors were written: the next run starts cold, whatever its number.
    restart: AtomicBool,
}

/// A member to be: (node, where its matrices are, number of matrices).
type MemberSpec = (usize, Placed, usize);

impl Solve {
    /// A solve of `members`, n×n each, each step started as `warm_start` says (cold, or from
    /// the last step's eigenvectors, cold at the first step and periodically).
    fn new(
        device: &Device,
        n: usize,
        warm_start: WarmStart,
        members: Vec<MemberSpec>,
    ) -> Result<Solve> {
        let batch: usize = members.iter().map(|m| m.2).sum();
        let options = EighOptions {
            warm_start,
            ..EighOptions::default()
        };
        let plan = EighPlan::new(device, batch, n, &options)?;
        let mut first = 0;
        let members = members
            .into_iter()
            .map(|(node, source, count)| {
                let m = Member {
                    node,
                    source,
                    first,
                    count,
                    values: scratch(device, "eigenvalues", count * n)?,
                    vectors: scratch(device, "eigenvectors", count * n * n)?,
                };
                first += count;
                Ok(m)
            })
            .collect::<Result<_>>()?;
        Ok(Solve {
            members,
            plan,
            restart: AtomicBool::new(false),
        })
    }

    /// Kernel launches one run records.
    pub fn dispatches(&self) -> usize {
        self.plan.dispatches_per_run()
    }

    /// The buffers outside the solve that it copies from or into: its members' matrices,
    /// eigenvalues and eigenvectors.
    pub fn copied(&self) -> impl Iterator<Item = &wgpu::Buffer> {
        self.members
            .iter()
            .flat_map(|m| [&*m.source.buffer, &m.values, &m.vectors])
    }

    /// Whether the solve serves one of the nodes `needed` marks.
    pub fn serves_any(&self, needed: &[bool]) -> bool {
        self.members.iter().any(|m| needed[m.node])
    }

    /// Records input copies, the solve of run `run` (one compute pass, with
    /// `timestamp_writes` when profiled), the warm-start feedback and the output copies.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        run: u64,
        timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) {
        let n = self.plan.n() as u64;
        let matrices = |m: &Member| (m.first as u64 * n * n * 4, m.count as u64 * n * n * 4);
        let input = self.plan.input().buffer();
        for m in &self.members {
            let (at, bytes) = matrices(m);
            encoder.copy_buffer_to_buffer(&m.source.buffer, m.source.offset, input, at, bytes);
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("eigh"),
                timestamp_writes,
            });
            let cold = self.restart.swap(false, Ordering::Relaxed) || self.plan.starts_cold(run);
            self.plan.record_run(&mut pass, cold);
        }
        self.plan.record_feedback(encoder);
        let (values, vectors) = (self.plan.values().buffer(), self.plan.vectors().buffer());
        for m in &self.members {
            let (at, bytes) = (m.first as u64 * n * 4, m.count as u64 * n * 4);
            encoder.copy_buffer_to_buffer(values, at, &m.values, 0, bytes);
            let (at, bytes) = matrices(m);
            encoder.copy_buffer_to_buffer(vectors, at, &m.vectors, 0, bytes);
        }
    }

    /// Makes the next run start cold (from V = I), whatever its number.
    fn restart_cold(&self) {
        self.restart.store(true, Ordering::Relaxed);
    }
}

/// Every solve of a plan, and which serves which spectral-function node.
pub(super) struct Solves {
    list: Vec<Solve>,
    /// Spectral-function node → (its solve, its member index there).
    of: HashMap<usize, (usize, usize)>,
    /// The first this many solves are hoisted ahead of the step.
    hoisted: usize,
}

/// (batch, n) of a shape [n, n] or [batch, n, n].
pub(super) fn batch_n(shape: &[usize]) -> (usize, usize) {
    let n = shape[shape.len() - 1];
    (shape.iter().product::<usize>() / (n * n), n)
}

impl Solves {
    /// Drops every solve (their buffers and dispatches).
    pub fn clear(&mut self) {
        self.list.clear();
        self.of.clear();
    }

    /// The hoisted solves: one per order n and warm start over every spectral function of
    /// `graph` that depends only on parameters (they do not depend on the batch, so they run
    /// ahead of it).
    pub fn hoisted(device: &Device, graph: &Graph, buffers: &Buffers) -> Result<Solves> {
        let param_only = graph.param_only();
        let mut groups: BTreeMap<(usize, WarmStart), Vec<MemberSpec>> = BTreeMap::new();
        for (i, node) in graph.nodes().iter().enumerate() {
            if matches!(node.op, Op::SpectralFn(_)) && param_only[i] {
                let (batch, n) = batch_n(&node.shape);
                let source = buffers.shared(node.inputs[0])?;
                let warm_start = graph.warm_start(Value(i));
                groups
                    .entry((n, warm_start))
                    .or_default()
                    .push((i, source, batch));
            }
        }
        let mut solves = Solves {
            list: Vec::new(),
            of: HashMap::new(),
            hoisted: groups.len(),
        };
        for ((n, warm_start), members) in groups {
            solves.push(device, n, warm_start, members)?;
        }
        Ok(solves)
    }

    fn push(
        &mut self,
        device: &Device,
        n: usize,
        warm_start: WarmStart,
        members: Vec<MemberSpec>,
    ) -> Result<usize> {
        let k = self.list.len();
        for (m, member) in members.iter().enumerate() {
            self.of.insert(member.0, (k, m));
        }
        self.list.push(Solve::new(device, n, warm_start, members)?);
        Ok(k)
    }

    /// The solve of spectral-function node `node`, with whether it was created now: a node
    /// that no hoisted solve serves gets a solve of its own over its batch of matrices,
    /// recorded where the node is.
    pub fn serving(
        &mut self,
        device: &Device,
        graph: &Graph,
        buffers: &Buffers,
        node: usize,
    ) -> Result<(usize, bool)> {
        if let Some(&(k, _)) = self.of.get(&node) {
            return Ok((k, false));
        }
        let spec = &graph.nodes()[node];
        let (batch, n) = batch_n(&spec.shape);
        let source = buffers.shared(spec.inputs[0])?;
        let warm_start = graph.warm_start(Value(node));
        Ok((
            self.push(device, n, warm_start, vec![(node, source, batch)])?,
            true,
        ))
    }

    /// The member serving spectral-function node `node`.
    pub fn member(&self, node: usize) -> Result<(&Solve, &Member)> {
        let &(k, m) = self.of.get(&node).ok_or_else(|| {
            Error::InvalidArgument(format!("node {node} is not a spectral function"))
        })?;
        Ok((&self.list[k], &self.list[k].members[m]))
    }

    /// Solve `k`.
    pub fn get(&self, k: usize) -> &Solve {
        &self.list[k]
    }

    /// How many solves are hoisted ahead of the step (they come first).
    pub fn hoisted_count(&self) -> usize {
        self.hoisted
    }

    /// Whether node `node` is a member of a hoisted solve.
    pub fn is_hoisted(&self, node: usize) -> bool {
        self.of.get(&node).is_some_and(|&(k, _)| k < self.hoisted)
    }

    /// How many solves a step records.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Checks every solve of the last run: a NaN or Inf in a spectral function's input, or
    /// else in its warm start, is `Error::NonFinite` naming the node, with the batch index.
    pub fn check_status(&self, device: &Device, graph: &Graph) -> Result<()> {
        for s in &self.list {
            let status = read_words(device, s.plan.status(), s.plan.batch())?;
            for m in &s.members {
                let words = &status[m.first..m.first + m.count];
                for (bit, fault) in [
                    (STATUS_NONFINITE_INPUT, SolveFault::Input),
                    (STATUS_NONFINITE_WARM_START, SolveFault::WarmStart),
                ] {
                    if let Some(index) = words.iter().position(|w| w & bit != 0) {
                        return Err(non_finite_solve(graph, m.node, fault, index as u64));
                    }
                }
            }
        }
        Ok(())
    }

    /// Records, for every solve, a cold start of its next run and the clearing of its status
    /// (nothing has been decomposed since): what writing the plan's tensors asks for.
    pub fn record_reset(&self, encoder: &mut wgpu::CommandEncoder) {
        for s in &self.list {
            s.restart_cold();
            encoder.clear_buffer(s.plan.status(), 0, None);
        }
    }

    /// Eigenvalues `[count, n]` of node `node` at the last run.
    pub fn eigenvalues(&self, device: &Device, node: usize) -> Result<Vec<f32>> {
        let (s, m) = self.member(node)?;
        read_buffer(device, &m.values, m.count * s.plan.n())
    }

    /// Eigenvectors `[count, n, n]` of node `node` at the last run.
    pub fn eigenvectors(&self, device: &Device, node: usize) -> Result<Vec<f32>> {
        let (s, m) = self.member(node)?;
        read_buffer(device, &m.vectors, m.count * s.plan.n() * s.plan.n())
    }

    /// Sweeps each matrix of node `node` needed at the last run.
    pub fn sweeps(&self, device: &Device, node: usize) -> Result<Vec<u32>> {
        let (s, m) = self.member(node)?;
        let words = read_words(device, s.plan.sweeps(), s.plan.batch())?;
        Ok(words[m.first..m.first + m.count].to_vec())
    }
}
