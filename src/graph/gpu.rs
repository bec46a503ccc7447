//! The GPU executor: every buffer and dispatch is created once at compile time; a step
//! writes the inputs and the hyperparameter words, records every dispatch of forward,
//! backward and update into one compute pass of one encoder, and submits once. Nothing is
//! read back unless the caller asks.

use super::plan::{init_values, value_bytes, Layout, PlanStats, Storage};
use super::{rows_cols, Graph, Op, Role, Value};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::kernels::jacobi::{EighPlan, STATUS_NONFINITE_INPUT};
use crate::kernels::matmul::MatmulDims;
use crate::kernels::{self, Dispatch};
pub use crate::profile::StepProfile;
use crate::profile::{wait_for, PassTimer};
use crate::tensor::{read_buffer, read_words, TENSOR_USAGE};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use wgpu::util::DeviceExt;

/// Warm-started solves feed each step's eigenvectors into the next; rounding makes them drift
/// from orthogonality by about ε per step, so every this many steps a solve starts cold (V0 = I).
pub const COLD_RESTART_EVERY: u64 = 100;

/// One item of a step's recording.
enum Recorded {
    /// A kernel launch inside a compute pass.
    Dispatch(Dispatch),
    /// An eigendecomposition (index into `GpuPlan::solves`): copies and passes of its own.
    Solve(usize),
}

/// One spectral-function node's share of a batched solve.
struct Member {
    /// The spectral-function node.
    node: usize,
    /// The graph buffer holding its matrices.
    source: Arc<wgpu::Buffer>,
    /// Its first matrix in the solve's batch, and how many it has.
    first: usize,
    count: usize,
    /// Its eigenvalues `[count, n]` and eigenvectors `[count, n, n]`, copied out of the solve.
    values: wgpu::Buffer,
    vectors: wgpu::Buffer,
}

/// A warm-started batched Jacobi solve serving one or more spectral-function nodes of the
/// same order n: the Gram matrices of all Eigen layers of a model with equal sizes are
/// decomposed together.
struct Solve {
    members: Vec<Member>,
    plan: EighPlan,
    /// Identity matrices, copied into the warm start for a cold restart.
    identity: wgpu::Buffer,
}

impl Solve {
    /// A solve of `members` (node, source buffer, matrices), n×n each, warm-started from I.
    fn new(
        device: &Device,
        n: usize,
        members: Vec<(usize, Arc<wgpu::Buffer>, usize)>,
    ) -> Result<Solve> {
        let batch: usize = members.iter().map(|m| m.2).sum();
        let plan = EighPlan::new(device, batch, n, 10.0 * f32::EPSILON, 15, true)?;
        let eye =
            super::plan::init_values(&super::Init::Identity { gain: 1.0 }, &[batch, n, n], 0)?;
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

    /// Records input copies, the solve (one compute pass, with `timestamp_writes` when
    /// profiled), the warm-start feedback and the output copies.
    fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        cold: bool,
        timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) {
        let n = self.plan.n() as u64;
        let input = self.plan.input().buffer();
        for m in &self.members {
            let (at, bytes) = (m.first as u64 * n * n * 4, m.count as u64 * n * n * 4);
            encoder.copy_buffer_to_buffer(&m.source, 0, input, at, bytes);
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
        for m in &self.members {
            let (values, vectors) = (self.plan.values().buffer(), self.plan.vectors().buffer());
            encoder.copy_buffer_to_buffer(
                values,
                m.first as u64 * n * 4,
                &m.values,
                0,
                m.count as u64 * n * 4,
            );
            let (at, bytes) = (m.first as u64 * n * n * 4, m.count as u64 * n * n * 4);
            encoder.copy_buffer_to_buffer(vectors, at, &m.vectors, 0, bytes);
        }
    }
}

/// A private scratch buffer of `elems` f32 for one op's intermediate products.
fn scratch(device: &Device, what: &str, elems: usize) -> Result<wgpu::Buffer> {
    let bytes = elems as u64 * 4;
    device.check_buffer_size(what, bytes)?;
    Ok(device.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(what),
        size: bytes,
        usage: TENSOR_USAGE,
        mapped_at_creation: false,
    }))
}

/// Batched n×n product dims: C = op(A)·op(B).
fn square_dims(batch: usize, n: usize, trans_a: bool, trans_b: bool) -> MatmulDims {
    MatmulDims {
        batch,
        m: n,
        n,
        k: n,
        trans_a,
        trans_b,
        a_batched: true,
        b_batched: true,
    }
}

/// (batch, n) of a shape [n, n] or [batch, n, n].
fn batch_n(shape: &[usize]) -> (usize, usize) {
    let n = shape[shape.len() - 1];
    (shape.iter().product::<usize>() / (n * n), n)
}

/// A graph compiled for one device.
pub struct GpuPlan {
    device: Device,
    graph: Graph,
    layout: Layout,
    /// Buffer of every node that has one (owned or pooled; aliases resolved).
    buffers: Vec<Option<std::sync::Arc<wgpu::Buffer>>>,
    recorded: Vec<Recorded>,
    solves: Vec<Solve>,
    /// Node index of a spectral-function node → (its solve, its member index there).
    solve_of: HashMap<usize, (usize, usize)>,
    /// Scratch buffers owned by the plan (bound in dispatches; kept alive here).
    _scratch: Vec<wgpu::Buffer>,
    hyper: wgpu::Buffer,
    learning_rate: f32,
    step: u64,
    kept: Vec<Value>,
    stats: PlanStats,
    /// Timestamp queries for [`GpuPlan::step_profiled`], created at its first call (the inner
    /// `None`: the adapter has no timestamp queries).
    timer: Option<Option<PassTimer>>,
}

impl GpuPlan {
    /// Compiles `graph` for `device`: allocates the pool and the resident tensors (filled by
    /// their initialisers with `seed`), builds every pipeline and bind group. `outputs` are the
    /// values the caller may read after a step (parameters can always be read).
    pub fn compile(
        device: &Device,
        graph: &Graph,
        outputs: &[Value],
        seed: u64,
    ) -> Result<GpuPlan> {
        let _gl = device.gl_guard();
        let pipelines_before = device.pipelines_created();
        let layout = Layout::new(graph, outputs)?;
        let wd = device.wgpu_device();
        let pool: Vec<std::sync::Arc<wgpu::Buffer>> = layout
            .pool
            .iter()
            .map(|&bytes| {
                device.check_buffer_size("plan pool buffer", bytes)?;
                Ok(std::sync::Arc::new(wd.create_buffer(
                    &wgpu::BufferDescriptor {
                        label: Some("pool"),
                        size: bytes,
                        usage: TENSOR_USAGE,
                        mapped_at_creation: false,
                    },
                )))
            })
            .collect::<Result<_>>()?;
        let mut buffers: Vec<Option<std::sync::Arc<wgpu::Buffer>>> =
            vec![None; graph.nodes().len()];
        for (i, node) in graph.nodes().iter().enumerate() {
            buffers[i] = match layout.storage[i] {
                Storage::None => None,
                Storage::Pooled(b) => Some(pool[b].clone()),
                Storage::Alias(r) => buffers[r.0].clone(),
                Storage::Owned => {
                    let bytes = value_bytes(&node.shape);
                    device.check_buffer_size(&format!("resident tensor {}", node.name), bytes)?;
                    let buffer = match &node.op {
                        Op::Param { init, .. } => {
                            let data = init_values(init, &node.shape, seed.wrapping_add(i as u64))?;
                            wd.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                                label: Some(&node.name),
                                contents: bytemuck::cast_slice(&data),
                                usage: TENSOR_USAGE,
                            })
                        }
                        _ => wd.create_buffer(&wgpu::BufferDescriptor {
                            label: Some(&node.name),
                            size: bytes,
                            usage: TENSOR_USAGE,
                            mapped_at_creation: false,
                        }),
                    };
                    Some(std::sync::Arc::new(buffer))
                }
            };
        }
        let hyper = kernels::optim::hyper_buffer(device);
        let clips = graph
            .nodes()
            .iter()
            .filter(|n| matches!(n.op, Op::ClipGradients { .. }))
            .map(|n| n.inputs.len())
            .max()
            .unwrap_or(0);
        let norms = wd.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gradient norms"),
            size: (clips.max(1) * 4) as u64,
            usage: TENSOR_USAGE,
            mapped_at_creation: false,
        });
        // Spectral functions of parameters only (an Eigen layer's Gram matrix) do not depend
        // on the batch: those of equal order are solved together in one batched solve, hoisted
        // before the rest of the step with everything else that depends only on parameters.
        let param_only = graph.param_only();
        let mut groups: std::collections::BTreeMap<usize, Vec<(usize, Arc<wgpu::Buffer>, usize)>> =
            Default::default();
        for (i, node) in graph.nodes().iter().enumerate() {
            if matches!(node.op, Op::SpectralFn(_)) && param_only[i] {
                let (batch, n) = batch_n(&node.shape);
                let source = buffers[node.inputs[0].0]
                    .clone()
                    .expect("input has a buffer");
                groups.entry(n).or_default().push((i, source, batch));
            }
        }
        let mut solves: Vec<Solve> = Vec::new();
        let mut solve_of: HashMap<usize, (usize, usize)> = HashMap::new();
        for (n, members) in groups {
            for (k, m) in members.iter().enumerate() {
                solve_of.insert(m.0, (solves.len(), k));
            }
            solves.push(Solve::new(device, n, members)?);
        }
        let hoisted_solves = solves.len();
        let mut per_node: Vec<Vec<Recorded>> =
            (0..graph.nodes().len()).map(|_| Vec::new()).collect();
        let mut scratch_buffers: Vec<wgpu::Buffer> = Vec::new();
        for (i, node) in graph.nodes().iter().enumerate() {
            let dispatches = &mut per_node[i];
            let buf = |v: Value| -> &wgpu::Buffer {
                buffers[v.0].as_deref().expect("value has a buffer")
            };
            let input = |k: usize| buf(node.inputs[k]);
            let shape_of = |k: usize| graph.shape(node.inputs[k]);
            let n = node.shape.iter().product::<usize>();
            match &node.op {
                Op::Input | Op::Param { .. } | Op::Reshape => {}
                Op::MatMul { trans_a, trans_b } => {
                    let (_, dims) = kernels::matmul::matmul_shape(
                        shape_of(0),
                        shape_of(1),
                        *trans_a,
                        *trans_b,
                    )?;
                    dispatches.push(Recorded::Dispatch(kernels::matmul::matmul_dispatch(
                        device,
                        &dims,
                        input(0),
                        input(1),
                        buf(Value(i)),
                    )?));
                }
                Op::Unary(op) => dispatches.push(Recorded::Dispatch(
                    kernels::elementwise::unary_dispatch(device, *op, input(0), buf(Value(i)), n)?,
                )),
                Op::Binary { op, b_from } => {
                    dispatches.push(Recorded::Dispatch(kernels::elementwise::binary_dispatch(
                        device,
                        *op,
                        input(0),
                        input(1),
                        buf(Value(i)),
                        n,
                        *b_from,
                    )?))
                }
                Op::Expand { from, alpha } => {
                    dispatches.push(Recorded::Dispatch(kernels::elementwise::expand_dispatch(
                        device,
                        input(0),
                        buf(Value(i)),
                        n,
                        *from,
                        *alpha,
                    )?))
                }
                Op::Reduce { op, axis } => {
                    let (rows, cols) = rows_cols(shape_of(0));
                    dispatches.push(Recorded::Dispatch(kernels::reduce::reduce_dispatch(
                        device,
                        *op,
                        *axis,
                        input(0),
                        buf(Value(i)),
                        rows,
                        cols,
                    )?));
                }
                Op::Transpose => {
                    let s = shape_of(0);
                    let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
                    let batch = s.iter().product::<usize>() / (rows * cols);
                    dispatches.push(Recorded::Dispatch(kernels::transpose::transpose_dispatch(
                        device,
                        input(0),
                        buf(Value(i)),
                        batch,
                        rows,
                        cols,
                    )?));
                }
                Op::SoftmaxXent => {
                    let (rows, classes) = rows_cols(shape_of(0));
                    dispatches.push(Recorded::Dispatch(kernels::softmax::softmax_xent_dispatch(
                        device,
                        input(0),
                        input(1),
                        buf(Value(i)),
                        rows,
                        classes,
                    )?));
                }
                Op::SoftmaxXentBackward => {
                    let (rows, classes) = rows_cols(shape_of(0));
                    dispatches.push(Recorded::Dispatch(
                        kernels::softmax::softmax_xent_backward_dispatch(
                            device,
                            input(0),
                            input(1),
                            input(2),
                            buf(Value(i)),
                            rows,
                            classes,
                        )?,
                    ));
                }
                Op::SpectralFn(f) => {
                    let (batch, n) = batch_n(&node.shape);
                    if let std::collections::hash_map::Entry::Vacant(e) = solve_of.entry(i) {
                        let source = buffers[node.inputs[0].0]
                            .clone()
                            .expect("input has a buffer");
                        e.insert((solves.len(), 0));
                        dispatches.push(Recorded::Solve(solves.len()));
                        solves.push(Solve::new(device, n, vec![(i, source, batch)])?);
                    }
                    let (k, m) = solve_of[&i];
                    let member = &solves[k].members[m];
                    // H = (V·diag(f(λ)))·Vᵀ.
                    let scaled = scratch(device, "spectral scaled vectors", batch * n * n)?;
                    dispatches.push(Recorded::Dispatch(
                        kernels::spectral::scale_columns_dispatch(
                            device,
                            *f,
                            &member.values,
                            &member.vectors,
                            &scaled,
                            batch,
                            n,
                        )?,
                    ));
                    dispatches.push(Recorded::Dispatch(kernels::matmul::matmul_dispatch(
                        device,
                        &square_dims(batch, n, false, true),
                        &scaled,
                        &member.vectors,
                        buf(Value(i)),
                    )?));
                    scratch_buffers.push(scaled);
                }
                Op::SpectralFnBackward(f) => {
                    let (batch, n) = batch_n(&node.shape);
                    let (k, m) = solve_of[&node.inputs[1].0];
                    let member = &solves[k].members[m];
                    let (values, v) = (&member.values, &member.vectors);
                    let t1 = scratch(device, "spectral backward scratch", batch * n * n)?;
                    let t2 = scratch(device, "spectral backward scratch", batch * n * n)?;
                    let mm =
                        |dims, a, b, c| kernels::matmul::matmul_dispatch(device, &dims, a, b, c);
                    // S = Vᵀ·dH·V, P = Lw ∘ sym(S), dG = V·P·Vᵀ.
                    let steps = [
                        mm(square_dims(batch, n, false, false), input(0), v, &t1)?,
                        mm(square_dims(batch, n, true, false), v, &t1, &t2)?,
                        kernels::spectral::loewner_product_dispatch(
                            device, *f, values, &t2, &t1, batch, n,
                        )?,
                        mm(square_dims(batch, n, false, false), v, &t1, &t2)?,
                        mm(square_dims(batch, n, false, true), &t2, v, buf(Value(i)))?,
                    ];
                    dispatches.extend(steps.into_iter().map(Recorded::Dispatch));
                    scratch_buffers.extend([t1, t2]);
                }
                Op::Ema { momentum } => {
                    let len = graph.shape(node.inputs[0]).iter().product();
                    dispatches.push(Recorded::Dispatch(kernels::optim::ema_dispatch(
                        device,
                        input(0),
                        input(1),
                        len,
                        *momentum,
                    )?));
                }
                Op::ClipGradients { max_norm } => {
                    for (slot, &g) in node.inputs.iter().enumerate() {
                        let len = graph.shape(g).iter().product();
                        dispatches.push(Recorded::Dispatch(kernels::optim::sumsq_dispatch(
                            device,
                            buf(g),
                            &norms,
                            len,
                            slot,
                        )?));
                    }
                    dispatches.push(Recorded::Dispatch(kernels::optim::clip_dispatch(
                        device,
                        &hyper,
                        &norms,
                        node.inputs.len(),
                        *max_norm,
                    )?));
                }
                Op::Update(rule) => {
                    let states: Vec<&wgpu::Buffer> =
                        node.inputs[2..].iter().map(|&v| buf(v)).collect();
                    let len = graph.shape(node.inputs[0]).iter().product();
                    dispatches.push(Recorded::Dispatch(kernels::optim::update_dispatch(
                        device,
                        rule,
                        &hyper,
                        input(0),
                        input(1),
                        &states,
                        len,
                    )?));
                }
            }
        }
        // Order: parameter-only work feeding the hoisted solves, the solves, the rest of the
        // parameter-only work, then everything else in graph order.
        let nodes = graph.nodes();
        let mut after_solve = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            let hoisted = solve_of.get(&i).is_some_and(|&(k, _)| k < hoisted_solves);
            after_solve[i] = hoisted || node.inputs.iter().any(|v| after_solve[v.0]);
        }
        let mut dispatches: Vec<Recorded> = Vec::new();
        for i in 0..nodes.len() {
            if param_only[i] && !after_solve[i] {
                dispatches.append(&mut per_node[i]);
            }
        }
        dispatches.extend((0..hoisted_solves).map(Recorded::Solve));
        for i in 0..nodes.len() {
            if param_only[i] && after_solve[i] {
                dispatches.append(&mut per_node[i]);
            }
        }
        for recorded in per_node.iter_mut() {
            dispatches.append(recorded);
        }
        device.synchronize()?;
        let input_bytes: u64 = graph
            .nodes()
            .iter()
            .filter(|n| n.op == Op::Input)
            .map(|n| value_bytes(&n.shape))
            .sum();
        let stats = PlanStats {
            nodes: graph.nodes().len(),
            dispatches_per_step: dispatches
                .iter()
                .map(|r| match r {
                    Recorded::Dispatch(_) => 1,
                    Recorded::Solve(k) => solves[*k].plan.dispatches_per_run(),
                })
                .sum(),
            submits_per_step: 1,
            peak_bytes: layout.peak_bytes(),
            unpooled_bytes: layout.unpooled_bytes,
            upload_bytes_per_step: input_bytes + (kernels::optim::HYPER_WORDS * 4) as u64,
            download_bytes_per_step: 0,
            pipelines_built_at_compile: device.pipelines_created() - pipelines_before,
        };
        log::debug!("compiled plan: {stats:?}");
        Ok(GpuPlan {
            device: device.clone(),
            graph: graph.clone(),
            layout,
            buffers,
            recorded: dispatches,
            solves,
            solve_of,
            _scratch: scratch_buffers,
            hyper,
            learning_rate: graph.learning_rate(),
            step: 0,
            kept: outputs.to_vec(),
            stats,
            timer: None,
        })
    }

    /// Runs one step: writes `inputs` (every input of the graph, by value), then forward,
    /// backward and updates in one submission. Returns without waiting for the device.
    pub fn step(&mut self, inputs: &[(Value, &[f32])]) -> Result<()> {
        let _gl = self.device.gl_guard();
        self.write_inputs(inputs)?;
        let commands = self.record(None);
        self.device.queue().submit([commands]);
        self.device.take_error()?;
        // Reclaim finished submissions without blocking.
        let _ = self.device.wgpu_device().poll(wgpu::PollType::Poll);
        Ok(())
    }

    /// Runs one step as [`Self::step`] does and measures it: it first waits for the work
    /// queued before (so the figures belong to this step alone), then reports the host time
    /// to write the inputs, to record every pass and to submit, the wall time until
    /// the device finished, and — where the adapter has timestamp queries — the device's own
    /// time from the first pass's begin to the last pass's end. The query set and its buffers
    /// are created at the first call and reused; nothing else is created per step.
    pub fn step_profiled(&mut self, inputs: &[(Value, &[f32])]) -> Result<StepProfile> {
        let _gl = self.device.gl_guard();
        self.device.synchronize()?;
        if self.timer.is_none() {
            self.timer = Some(PassTimer::new(&self.device, self.passes_per_step())?);
        }
        let start = Instant::now();
        self.write_inputs(inputs)?;
        let written = Instant::now();
        let timer = self.timer.as_ref().and_then(Option::as_ref);
        let commands = self.record(timer);
        let recorded = Instant::now();
        let index = self.device.queue().submit([commands]);
        let submitted = Instant::now();
        wait_for(&self.device, index)?;
        let finished = Instant::now();
        let passes = self.passes_per_step();
        let times = timer.map(|t| t.read(passes)).transpose()?;
        Ok(StepProfile {
            host_upload_us: (written - start).as_secs_f64() * 1e6,
            host_record_us: (recorded - written).as_secs_f64() * 1e6,
            host_submit_us: (submitted - recorded).as_secs_f64() * 1e6,
            wall_ms: (finished - start).as_secs_f64() * 1e3,
            gpu_ms: times.as_ref().map(|t| t.span_ms()),
            gpu_busy_ms: times.as_ref().map(|t| t.busy_ms()),
            dispatches: self.stats.dispatches_per_step,
            passes,
        })
    }

    /// Checks `inputs` against the graph's inputs, writes them and the step's hyperparameter
    /// words, and advances the step count.
    fn write_inputs(&mut self, inputs: &[(Value, &[f32])]) -> Result<()> {
        let queue = self.device.queue();
        let expected = self.graph.values_where(|op| *op == Op::Input);
        for &v in &expected {
            if !inputs.iter().any(|(i, _)| *i == v) {
                return Err(Error::InvalidArgument(format!(
                    "step: input {} was not given",
                    self.graph.node(v).name
                )));
            }
        }
        for &(v, data) in inputs {
            if !expected.contains(&v) {
                return Err(Error::InvalidArgument(format!(
                    "step: value {} is not an input",
                    v.0
                )));
            }
            let shape = self.graph.shape(v);
            if data.len() != shape.iter().product::<usize>() {
                return Err(Error::shape(
                    "step",
                    format!(
                        "input {} has shape {shape:?} but {} values were given",
                        self.graph.node(v).name,
                        data.len()
                    ),
                ));
            }
        }
        for &(v, data) in inputs {
            queue.write_buffer(self.buffer(v)?, 0, bytemuck::cast_slice(data));
        }
        self.step += 1;
        let hyper = kernels::optim::hyper_values(self.learning_rate, self.step);
        queue.write_buffer(&self.hyper, 0, bytemuck::cast_slice(&hyper));
        Ok(())
    }

    /// Compute passes one step records: one per eigendecomposition and one per run of
    /// consecutive kernel launches between them.
    fn passes_per_step(&self) -> usize {
        let mut passes = 0;
        let mut in_run = false;
        for item in &self.recorded {
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

    /// Records the whole step into one encoder — compute passes for runs of dispatches, and
    /// for each eigendecomposition the copy of its input, its solve and the warm-start
    /// feedback — to be submitted once. With a `timer`, each pass writes its begin and end
    /// timestamps and the encoder ends with their resolution.
    fn record(&self, timer: Option<&PassTimer>) -> wgpu::CommandBuffer {
        let mut encoder =
            self.device
                .wgpu_device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("step"),
                });
        let cold = self.step.is_multiple_of(COLD_RESTART_EVERY);
        let mut pass_index = 0;
        let mut writes = || {
            pass_index += 1;
            timer.and_then(|t| t.writes(pass_index - 1))
        };
        let mut items = self.recorded.iter().peekable();
        while let Some(item) = items.next() {
            match item {
                Recorded::Solve(k) => self.solves[*k].record(&mut encoder, cold, writes()),
                Recorded::Dispatch(first) => {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("ops"),
                        timestamp_writes: writes(),
                    });
                    first.record(&mut pass);
                    while let Some(Recorded::Dispatch(d)) = items.peek() {
                        d.record(&mut pass);
                        items.next();
                    }
                }
            }
        }
        if let Some(t) = timer {
            t.resolve(&mut encoder, pass_index);
        }
        encoder.finish()
    }

    /// Checks every eigendecomposition of the last step: a NaN or Inf in a spectral
    /// function's input is `Error::NonFinite` naming the node (e.g. the layer's Gram matrix)
    /// and the batch index. Reading the status waits for the step.
    pub fn check_status(&self) -> Result<()> {
        for s in &self.solves {
            let status = read_words(&self.device, s.plan.status(), s.plan.batch())?;
            for m in &s.members {
                let words = &status[m.first..m.first + m.count];
                if let Some(index) = words.iter().position(|w| w & STATUS_NONFINITE_INPUT != 0) {
                    let node = self.graph.node(Value(m.node));
                    return Err(Error::NonFinite {
                        what: format!(
                            "{} (the input {} of its eigendecomposition)",
                            node.name,
                            self.graph.node(node.inputs[0]).name
                        ),
                        index: index as u64,
                    });
                }
            }
        }
        Ok(())
    }

    fn member(&self, v: Value) -> Result<(&Solve, &Member)> {
        let &(k, m) = self.solve_of.get(&v.0).ok_or_else(|| {
            Error::InvalidArgument(format!("value {} is not a spectral function", v.0))
        })?;
        Ok((&self.solves[k], &self.solves[k].members[m]))
    }

    /// Eigenvalues (ascending, `[batch, n]`) of the matrices a spectral-function node
    /// decomposed at the last step: the spectrum the layer acts on.
    pub fn eigenvalues(&self, v: Value) -> Result<Vec<f32>> {
        let (s, m) = self.member(v)?;
        read_buffer(&self.device, &m.values, m.count * s.plan.n())
    }

    /// Eigenvectors (`[batch, n, n]`, column j for eigenvalue j) of a spectral-function node.
    pub fn eigenvectors(&self, v: Value) -> Result<Vec<f32>> {
        let (s, m) = self.member(v)?;
        read_buffer(&self.device, &m.vectors, m.count * s.plan.n() * s.plan.n())
    }

    /// Jacobi sweeps each matrix of a spectral-function node needed at the last step.
    pub fn sweeps(&self, v: Value) -> Result<Vec<u32>> {
        let (s, m) = self.member(v)?;
        let words = read_words(&self.device, s.plan.sweeps(), s.plan.batch())?;
        Ok(words[m.first..m.first + m.count].to_vec())
    }

    /// Batched eigendecompositions recorded per step (spectral functions of equal order that
    /// depend only on parameters share one).
    pub fn solves_per_step(&self) -> usize {
        self.solves.len()
    }

    fn buffer(&self, v: Value) -> Result<&wgpu::Buffer> {
        self.buffers
            .get(v.0)
            .and_then(|b| b.as_deref())
            .ok_or_else(|| Error::InvalidArgument(format!("value {} has no buffer", v.0)))
    }

    /// Downloads `v` (waits for the steps queued before). `v` must be an input, a resident
    /// tensor, or one of the outputs named at compile time.
    pub fn read(&self, v: Value) -> Result<Vec<f32>> {
        let root = self.layout.root(v);
        let readable = matches!(self.layout.storage.get(root.0), Some(Storage::Owned))
            || self.kept.iter().any(|&k| self.layout.root(k) == root);
        if !readable {
            return Err(Error::InvalidArgument(format!(
                "value {} was not named as an output at compile time; its buffer is reused",
                v.0
            )));
        }
        read_buffer(
            &self.device,
            self.buffer(v)?,
            self.graph.shape(v).iter().product(),
        )
    }

    /// Overwrites a resident tensor (e.g. when loading a checkpoint).
    pub fn write(&self, v: Value, data: &[f32]) -> Result<()> {
        if !matches!(self.graph.node(v).op, Op::Param { .. }) {
            return Err(Error::InvalidArgument(format!(
                "value {} is not a resident tensor",
                v.0
            )));
        }
        if data.len() != self.graph.shape(v).iter().product::<usize>() {
            return Err(Error::shape(
                "GpuPlan::write",
                format!("{} values for {:?}", data.len(), self.graph.shape(v)),
            ));
        }
        let _gl = self.device.gl_guard();
        self.device
            .queue()
            .write_buffer(self.buffer(v)?, 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Copies on the device every trainable parameter and state tensor of `other` whose name
    /// and shape match one of this plan's (e.g. from a training plan into an eval plan built
    /// from a graph with the same layer names). Returns how many tensors were copied.
    pub fn copy_resident_from(&self, other: &GpuPlan) -> Result<usize> {
        if !self.device.same_as(&other.device) {
            return Err(Error::InvalidArgument(
                "copy_resident_from: plans on different devices".into(),
            ));
        }
        let _gl = self.device.gl_guard();
        let mut encoder =
            self.device
                .wgpu_device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("copy resident"),
                });
        let mut copied = 0;
        for v in self.saved_values() {
            let node = self.graph.node(v);
            let Some(src) = other.graph.find(&node.name) else {
                continue;
            };
            if other.saved_values().contains(&src)
                && other.graph.shape(src) == node.shape.as_slice()
            {
                let bytes = value_bytes(&node.shape);
                encoder.copy_buffer_to_buffer(other.buffer(src)?, 0, self.buffer(v)?, 0, bytes);
                copied += 1;
            }
        }
        self.device.queue().submit([encoder.finish()]);
        self.device.take_error()?;
        Ok(copied)
    }

    /// The learning rate used from the next step on (no recompilation).
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.learning_rate = lr;
    }

    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Sets the step count (Adam's bias correction), e.g. after loading a checkpoint.
    pub fn set_steps(&mut self, step: u64) {
        self.step = step;
    }

    /// Cost figures of the plan.
    pub fn stats(&self) -> &PlanStats {
        &self.stats
    }

    /// The graph this plan runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Values saved in checkpoints: trainable parameters and state, with their names.
    pub fn saved_values(&self) -> Vec<Value> {
        self.graph.values_where(|op| {
            matches!(
                op,
                Op::Param {
                    role: Role::Trainable | Role::State,
                    ..
                }
            )
        })
    }
}

impl Drop for GpuPlan {
    /// Releases the plan's device memory at once (wgpu would keep buffers that queued writes
    /// still reference until the next submission on the device): every resource is dropped,
    /// the queued writes are flushed with an empty submission and the device is polled until
    /// the plan's work is done. On GL all of it runs under the GL lock.
    fn drop(&mut self) {
        let _gl = self.device.gl_guard();
        self.hyper.destroy();
        drop(std::mem::take(&mut self.recorded));
        drop(std::mem::take(&mut self.solves));
        drop(std::mem::take(&mut self.buffers));
        drop(std::mem::take(&mut self._scratch));
        drop(self.timer.take());
        self.device.queue().submit([]);
        let _ = self.device.wgpu_device().poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        });
    }
}
