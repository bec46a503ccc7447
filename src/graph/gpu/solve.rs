//! The batched eigendecompositions of a GPU plan. Each spectral-function node's matrices are
//! decomposed by a warm-started batched Jacobi solve ([`EighPlan`]); spectral functions of
//! parameters only (an Eigen layer's Gram matrix) of equal order share one solve that runs
//! ahead of the batch work, the others get a solve of their own recorded where the node is.

use super::alloc::{scratch, Buffers, Placed};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::layout::init_values;
use crate::graph::{Graph, Init, Op, Value};
use crate::kernels::jacobi::{EighPlan, STATUS_NONFINITE_INPUT};
use crate::tensor::{read_buffer, read_words};
use std::collections::{BTreeMap, HashMap};
use wgpu::util::DeviceExt;

/// Warm-started solves feed each step's eigenvectors into the next; rounding makes them drift
/// from orthogonality by about ε per step, so every this many steps a solve starts cold (V0 = I).
pub const COLD_RESTART_EVERY: u64 = 100;

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

/// A warm-started batched Jacobi solve serving one or more spectral-function nodes of the
/// same order n.
pub(super) struct Solve {
    members: Vec<Member>,
    plan: EighPlan,
    /// Identity matrices, copied into the warm start for a cold restart.
    identity: wgpu::Buffer,
}

/// A member to be: (node, where its matrices are, number of matrices).
type MemberSpec = (usize, Placed, usize);

impl Solve {
    /// A solve of `members`, n×n each, warm-started from I.
    fn new(device: &Device, n: usize, members: Vec<MemberSpec>) -> Result<Solve> {
        let batch: usize = members.iter().map(|m| m.2).sum();
        let plan = EighPlan::new(device, batch, n, 10.0 * f32::EPSILON, 15, true)?;
        let eye = init_values(&Init::Identity { gain: 1.0 }, &[batch, n, n], 0)?;
        let warm = plan.warm_start().expect("built with a warm start");
        device
            .queue()
            .write_buffer(warm.buffer(), 0, bytemuck::cast_slice(&eye));
        let identity = device
            .wgpu_device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("identity"),
                contents: bytemuck::cast_slice(&eye),
                usage: wgpu::BufferUsages::COPY_SRC,
            });
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
            identity,
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

    /// Records input copies, the solve (one compute pass, with `timestamp_writes` when
    /// profiled), the warm-start feedback and the output copies.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        cold: bool,
        timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) {
        let n = self.plan.n() as u64;
        let matrices = |m: &Member| (m.first as u64 * n * n * 4, m.count as u64 * n * n * 4);
        let input = self.plan.input().buffer();
        for m in &self.members {
            let (at, bytes) = matrices(m);
            encoder.copy_buffer_to_buffer(&m.source.buffer, m.source.offset, input, at, bytes);
        }
        if let (true, Some(v0)) = (cold, self.plan.warm_start()) {
            encoder.copy_buffer_to_buffer(&self.identity, 0, v0.buffer(), 0, self.identity.size());
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("eigh"),
                timestamp_writes,
            });
            self.plan.record(&mut pass);
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
    /// The hoisted solves: one per order n over every spectral function of `graph` that
    /// depends only on parameters (they do not depend on the batch, so they run ahead of it).
    pub fn hoisted(device: &Device, graph: &Graph, buffers: &Buffers) -> Result<Solves> {
        let param_only = graph.param_only();
        let mut groups: BTreeMap<usize, Vec<MemberSpec>> = BTreeMap::new();
        for (i, node) in graph.nodes().iter().enumerate() {
            if matches!(node.op, Op::SpectralFn(_)) && param_only[i] {
                let (batch, n) = batch_n(&node.shape);
                let source = buffers.shared(node.inputs[0])?;
                groups.entry(n).or_default().push((i, source, batch));
            }
        }
        let mut solves = Solves {
            list: Vec::new(),
            of: HashMap::new(),
            hoisted: groups.len(),
        };
        for (n, members) in groups {
            solves.push(device, n, members)?;
        }
        Ok(solves)
    }

    fn push(&mut self, device: &Device, n: usize, members: Vec<MemberSpec>) -> Result<usize> {
        let k = self.list.len();
        for (m, member) in members.iter().enumerate() {
            self.of.insert(member.0, (k, m));
        }
        self.list.push(Solve::new(device, n, members)?);
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
        Ok((self.push(device, n, vec![(node, source, batch)])?, true))
    }

    /// The member serving spectral-function node `node`.
    pub fn member(&self, node: usize) -> Result<(&Solve, &Member)> {
        let &(k, m) = self.of.get(&node).ok_or_else(|| {
            Error::InvalidArgument(format!("value {node} is not a spectral function"))
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

    /// Checks every solve of the last run: a NaN or Inf in a spectral function's input is
    /// `Error::NonFinite` naming the node and its input, with the batch index.
    pub fn check_status(&self, device: &Device, graph: &Graph) -> Result<()> {
        for s in &self.list {
            let status = read_words(device, s.plan.status(), s.plan.batch())?;
            for m in &s.members {
                let words = &status[m.first..m.first + m.count];
                if let Some(index) = words.iter().position(|w| w & STATUS_NONFINITE_INPUT != 0) {
                    let node = graph.node(Value(m.node));
                    return Err(Error::NonFinite {
                        what: format!(
                            "{} (the input {} of its eigendecomposition)",
                            node.name,
                            graph.node(node.inputs[0]).name
                        ),
                        index: index as u64,
                    });
                }
            }
        }
        Ok(())
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
