//! The GPU executor: every buffer and dispatch is created once at compile time; a step
//! writes the inputs and the hyperparameter words, records every dispatch of forward,
//! backward and update into one encoder, and submits once. Nothing is read back unless the
//! caller asks.
//!
//! [`GpuPlan::compile`] runs these stages, one module each:
//! 1. `fuse` and `pack` — what runs as one launch: chains of a matmul and elementwise ops
//!    fused into the matmul's epilogue, and the optimizer updates of a rule packed into arenas
//!    that one launch updates; together they decide where values live ([`Placement`]);
//! 2. `alloc` — the buffers [`Layout`] asks for: the pool, the arenas, the owned tensors
//!    (filled by their initialisers), the hyperparameter words;
//! 3. `lower` — each op to its kernel launches (one function per op family), with `solve`
//!    grouping the eigendecompositions of parameter-only spectral functions into batched
//!    solves;
//! 4. `schedule` — the order of a step: parameter-only work and the hoisted solves first,
//!    independent launches side by side, then the rest in graph order; `checks` adds the
//!    step's status checks (see [`status`](crate::graph::status));
//! 5. `stats` — what a step costs ([`PlanStats`]).

mod alloc;
mod checks;
mod fuse;
mod lower;
mod pack;
mod schedule;
mod solve;
mod stats;

pub use crate::profile::StepProfile;
pub use stats::PlanStats;

use super::layout::{value_bytes, Layout, Placement, Storage};
use super::plan::{Plan, PlanState};
use super::status::StepWatch;
use super::{Graph, Value};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::kernels::finite::STATUS_STEP;
use crate::kernels::optim::hyper_values;
use crate::profile::{wait_for, PassTimer};
use crate::tensor::read_buffer;
use alloc::{Buffers, Residents};
use fuse::Fusion;
use lower::{Lowering, Recorded};
use pack::Packing;
use schedule::Slot;
use solve::Solves;
use std::time::Instant;

/// Timestamp queries for [`GpuPlan::step_profiled`], created at its first call.
enum StepTimer {
    /// No profiled step has run yet.
    NotCreated,
    /// The adapter has no timestamp queries (or a step has more passes than a set holds).
    Unavailable,
    /// The query set and its buffers.
    Ready(PassTimer),
}

/// What [`GpuPlan::compile_with`] may merge. [`GpuPlan::compile`] merges everything it can;
/// turning a merge off gives the plain lowering — one launch per op, one update per
/// parameter — which computes the same values, for comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Fuse a matmul with the bias add, activation or activation's backward rule after it
    /// into one launch.
    pub fuse: bool,
    /// Update every parameter of an optimizer rule in one launch, over arenas that pack the
    /// parameters, gradients and state.
    pub pack_updates: bool,
    /// Give values buffers of their own where that lets a launch run beside the one before
    /// it, between the same two barriers (see [`Placement::overlap`]): more memory, fewer
    /// points per step where the device drains.
    pub overlap: bool,
}

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions {
            fuse: true,
            pack_updates: true,
            overlap: true,
        }
    }
}

/// A graph compiled for one device.
pub struct GpuPlan {
    state: PlanState,
    device: Device,
    layout: Layout,
    buffers: Buffers,
    solves: Solves,
    /// The chains fused into one launch each.
    fusion: Fusion,
    /// What a step watches for NaN and Inf (the slots of `buffers.status`).
    watch: StepWatch,
    /// Everything a step records, in order, each with the node or solve it serves.
    recording: Vec<(Slot, Recorded)>,
    /// The values named as outputs at compile time (kept readable after a step).
    outputs: Vec<Value>,
    stats: PlanStats,
    timer: StepTimer,
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
        GpuPlan::compile_with(device, graph, outputs, seed, PlanOptions::default())
    }

    /// Compiles `graph` on `source`'s device with `source`'s resident tensors: every
    /// parameter, model state and optimizer state tensor of `graph` *is* the storage of the
    /// same name in `source` — its buffer, or its range of an optimizer arena (no copy; the same name, role and shape are required, else
    /// [`Error::InvalidArgument`] naming the tensor). What one plan's steps or writes change,
    /// the other sees. Constants and everything else are the new plan's own.
    ///
    /// This is how an inference plan (the model built in evaluation mode, forward only, any
    /// batch size) runs on the weights a training plan is updating.
    ///
    /// ```no_run
    /// use eigengrad::graph::{gpu::GpuPlan, Graph, Init, Plan};
    /// use eigengrad::optim::Sgd;
    /// # fn main() -> eigengrad::Result<()> {
    /// # let device = eigengrad::Device::new()?;
    /// // The same layer in two graphs: one for training (batch 32), one for inference (batch 4).
    /// let layer = |g: &mut Graph, batch: usize| -> eigengrad::Result<_> {
    ///     let x = g.input("x", &[batch, 3])?;
    ///     let w = g.param("w", &[3, 2], Init::Normal { std: 0.5 })?;
    ///     Ok((x, g.matmul(x, w, false, false)?))
    /// };
    /// let mut train = Graph::new();
    /// let (x, y) = layer(&mut train, 32)?;
    /// let t = train.input("t", &[32, 2])?;
    /// let loss = train.mse(y, t)?;
    /// Sgd::new(0.1).minimize(&mut train, loss)?;
    /// let mut training = GpuPlan::compile(&device, &train, &[loss], 0)?;
    ///
    /// let mut infer = Graph::new();
    /// let (ix, iy) = layer(&mut infer, 4)?;
    /// let mut inference = GpuPlan::compile_sharing(&infer, &[iy], &training)?;
    /// training.step(&[(x, &[0.1; 96]), (t, &[0.0; 64])])?;
    /// inference.forward(&[(ix, &[1.0; 12])], &[iy])?; // with the weights after that step
    /// let prediction = inference.read(iy)?;
    /// # Ok(()) }
    /// ```
    pub fn compile_sharing(graph: &Graph, outputs: &[Value], source: &GpuPlan) -> Result<GpuPlan> {
        let residents = Residents::SharedWith(source.graph(), &source.buffers);
        // Its resident tensors are `source`'s, wherever they lie: it packs none of its own.
        let options = PlanOptions {
            pack_updates: false,
            ..PlanOptions::default()
        };
        GpuPlan::build(&source.device, graph, outputs, residents, options)
    }

    /// [`GpuPlan::compile`] merging only what `options` allow.
    pub fn compile_with(
        device: &Device,
        graph: &Graph,
        outputs: &[Value],
        seed: u64,
        options: PlanOptions,
    ) -> Result<GpuPlan> {
        GpuPlan::build(device, graph, outputs, Residents::Fresh(seed), options)
    }

    /// Compiles `graph` with its resident tensors from `residents`, merging what `options`
    /// allow.
    fn build(
        device: &Device,
        graph: &Graph,
        outputs: &[Value],
        residents: Residents,
        options: PlanOptions,
    ) -> Result<GpuPlan> {
        let _gl = device.gl_guard();
        let pipelines_before = device.pipelines_created();
        let watch = StepWatch::of(graph);
        // The losses keep their buffers: the status checks read them after the backward pass.
        let kept = [outputs, graph.losses()].concat();
        let fusion = if options.fuse {
            Fusion::find(graph, &kept, |k| {
                crate::kernels::matmul::column_sums_fit(device, k)
            })
        } else {
            Fusion::none(graph)
        };
        let packing = if options.pack_updates {
            Packing::find(device, graph, &fusion)
        } else {
            Packing::none(graph)
        };
        let mut placement = Placement::plain(graph);
        placement.overlap = options.overlap;
        fusion.place(&mut placement);
        packing.place(graph, &mut placement);
        let layout = Layout::placed(graph, &kept, &placement)?;
        let mut buffers = Buffers::allocate(device, graph, &layout, &residents, watch.len())?;
        let (solves, lowered) =
            lower_graph(device, graph, &mut buffers, &fusion, &packing, &watch)?;
        let order = schedule::order(graph, |i| solves.is_hoisted(i), solves.hoisted_count());
        let mut recording = schedule::flatten(&order, lowered);
        checks::insert(
            device,
            graph,
            &layout,
            &buffers,
            &watch,
            &packing,
            &mut recording,
        )?;
        device.synchronize()?;
        let stats = PlanStats::of(
            graph,
            &layout,
            recording.iter().map(|(_, r)| r),
            &solves,
            device.pipelines_created() - pipelines_before,
        );
        log::debug!("compiled plan: {stats:?}");
        Ok(GpuPlan {
            state: PlanState::new(graph),
            device: device.clone(),
            layout,
            buffers,
            solves,
            fusion,
            watch,
            recording,
            outputs: outputs.to_vec(),
            stats,
            timer: StepTimer::NotCreated,
        })
    }

    /// Runs one step as [`Plan::step`] does and measures it: it first waits for the work
    /// queued before (so the figures belong to this step alone), then reports the host time
    /// to write the inputs, to record every pass and to submit, the wall time until
    /// the device finished, and — where the adapter has timestamp queries — the device's own
    /// time from the first pass's begin to the last pass's end. The query set and its buffers
    /// are created at the first call and reused; nothing else is created per step.
    pub fn step_profiled(&mut self, inputs: &[(Value, &[f32])]) -> Result<StepProfile> {
        let _gl = self.device.gl_guard();
        self.device.synchronize()?;
        let passes = schedule::passes(self.recorded(None));
        if let StepTimer::NotCreated = self.timer {
            self.timer = match PassTimer::new(&self.device, passes)? {
                Some(t) => StepTimer::Ready(t),
                None => StepTimer::Unavailable,
            };
        }
        let start = Instant::now();
        self.begin_step(inputs)?;
        let written = Instant::now();
        let timer = match &self.timer {
            StepTimer::Ready(t) => Some(t),
            StepTimer::NotCreated | StepTimer::Unavailable => None,
        };
        let commands = self.encode(None, timer);
        let recorded = Instant::now();
        let index = self.device.queue().submit([commands]);
        let submitted = Instant::now();
        wait_for(&self.device, index)?;
        let finished = Instant::now();
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

    /// Batched eigendecompositions recorded per step (spectral functions of equal order that
    /// depend only on parameters share one).
    pub fn solves_per_step(&self) -> usize {
        self.solves.len()
    }

    /// Copies on the device every trainable parameter and state tensor of `other` whose name
    /// and shape match one of this plan's. Returns how many tensors were copied. Like
    /// [`Plan::write`], it clears this plan's status and makes its solves start cold. (A plan
    /// that should follow another's weights shares them instead: [`GpuPlan::compile_sharing`].)
    pub fn copy_resident_from(&self, other: &GpuPlan) -> Result<usize> {
        if !self.device.same_as(&other.device) {
            return Err(Error::InvalidArgument(
                "copy_resident_from: plans on different devices".into(),
            ));
        }
        let mut encoder =
            self.device
                .wgpu_device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("copy resident"),
                });
        let (graph, other_graph) = (self.graph(), other.graph());
        let theirs = other.saved_values();
        let mut copied = 0;
        for v in self.saved_values() {
            let node = graph.node(v);
            let Some(src) = other_graph.find(&node.name) else {
                continue;
            };
            if theirs.contains(&src) && other_graph.shape(src) == node.shape.as_slice() {
                let (from, to) = (other.buffers.value(src)?, self.buffers.value(v)?);
                let bytes = value_bytes(&node.shape);
                encoder.copy_buffer_to_buffer(
                    from.buffer(),
                    from.offset(),
                    to.buffer(),
                    to.offset(),
                    bytes,
                );
                copied += 1;
            }
        }
        checks::record_reset(&self.buffers, &self.solves, &mut encoder);
        self.device.queue().submit([encoder.finish()]);
        self.device.take_error()?;
        Ok(copied)
    }

    /// The kernels a step launches, in order, by entry point (an eigendecomposition, with its
    /// copies and passes, shows as one `"eigh"`): which ops fused and how the optimizer runs.
    pub fn launches(&self) -> Vec<&'static str> {
        self.recorded(None)
            .map(|r| match r {
                Recorded::Dispatch(d) => d.label(),
                Recorded::Solve(_) => "eigh",
            })
            .collect()
    }

    /// The kernels a step launches, as [`GpuPlan::launches`] names them, grouped into the
    /// stretches that run between two pipeline barriers: the launches of one stretch have no
    /// data between them and may run at the same time on the device (see
    /// [`PlanStats::barriers_per_step`]). An eigendecomposition is a stretch of its own.
    pub fn stretches(&self) -> Vec<Vec<&'static str>> {
        let barriers = stats::barriers(self.recorded(None), &self.solves);
        let mut stretches: Vec<Vec<&'static str>> = Vec::new();
        for (name, barrier) in self.launches().into_iter().zip(barriers) {
            match stretches.last_mut() {
                Some(last) if !barrier => last.push(name),
                _ => stretches.push(vec![name]),
            }
        }
        stretches
    }

    /// Cost figures of the plan.
    pub fn stats(&self) -> &PlanStats {
        &self.stats
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Checks `inputs` (every input for which `required` holds must be there) and writes
    /// them to their buffers.
    fn write_inputs(
        &self,
        what: &str,
        inputs: &[(Value, &[f32])],
        required: impl Fn(Value) -> bool,
    ) -> Result<()> {
        self.state.check_inputs(what, inputs, required)?;
        for &(v, data) in inputs {
            let region = self.buffers.value(v)?;
            self.device.queue().write_buffer(
                region.buffer(),
                region.offset(),
                bytemuck::cast_slice(data),
            );
        }
        Ok(())
    }

    /// Starts a training step: writes every input, counts the step and writes the step's
    /// hyperparameter words and its number into the status.
    fn begin_step(&mut self, inputs: &[(Value, &[f32])]) -> Result<()> {
        self.write_inputs("step", inputs, |_| true)?;
        let step = self.state.advance()?;
        self.write_hyper(step);
        let step_word = (STATUS_STEP * 4) as u64;
        self.device.queue().write_buffer(
            &self.buffers.status,
            step_word,
            &(step as u32).to_le_bytes(),
        );
        Ok(())
    }

    /// Writes the hyperparameter words of step `step`: its learning rate under the schedule
    /// and its count.
    fn write_hyper(&self, step: u64) {
        let hyper = hyper_values(self.state.rate_at(step), step);
        self.device
            .queue()
            .write_buffer(&self.buffers.hyper, 0, bytemuck::cast_slice(&hyper));
    }

    /// The step's recording, or (with `needed`) the part of it serving the nodes marked.
    fn recorded<'s>(&'s self, needed: Option<&'s [bool]>) -> impl Iterator<Item = &'s Recorded> {
        self.recording
            .iter()
            .filter(move |(slot, _)| match (needed, *slot) {
                (None, _) => true,
                (Some(needed), Slot::Node(i)) => needed[i],
                (Some(needed), Slot::Solve(k)) => self.solves.get(k).serves_any(needed),
                (Some(_), Slot::Status) => false,
            })
            .map(|(_, recorded)| recorded)
    }

    /// Records the step (or the part serving `needed`) into one encoder — compute passes for
    /// runs of dispatches, and for each eigendecomposition the copy of its input, its solve
    /// and the warm-start feedback — to be submitted once. With a `timer`, each pass writes
    /// its begin and end timestamps and the encoder ends with their resolution.
    fn encode(&self, needed: Option<&[bool]>, timer: Option<&PassTimer>) -> wgpu::CommandBuffer {
        let mut encoder =
            self.device
                .wgpu_device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("step"),
                });
        // Steps count from 1; the solves' runs from 0.
        let run = self.state.steps().saturating_sub(1);
        let mut pass_index = 0;
        let mut writes = || {
            pass_index += 1;
            timer.and_then(|t| t.writes(pass_index - 1))
        };
        let mut items = self.recorded(needed).peekable();
        while let Some(item) = items.next() {
            match item {
                Recorded::Solve(k) => self.solves.get(*k).record(&mut encoder, run, writes()),
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

    /// Submits a recorded step without waiting for it.
    fn submit(&self, commands: wgpu::CommandBuffer) -> Result<()> {
        self.device.queue().submit([commands]);
        self.device.take_error()?;
        // Reclaim finished submissions without blocking.
        let _ = self.device.wgpu_device().poll(wgpu::PollType::Poll);
        Ok(())
    }

    /// Whether `v` can be read: an input, a resident or parameter-only tensor, or (a view
    /// of) an output named at compile time. Other values share pooled buffers.
    fn check_readable(&self, v: Value) -> Result<()> {
        let graph = self.state.graph();
        let Some(node) = graph.nodes().get(v.0) else {
            return Err(Error::InvalidArgument(format!(
                "read: {}",
                graph.describe(v)
            )));
        };
        let root = self.layout.root(v);
        match self.layout.storage[root.0] {
            Storage::None => Err(Error::InvalidArgument(format!(
                "read: {} ({}) produces no value",
                node.name,
                node.op.name()
            ))),
            Storage::Owned | Storage::Packed { .. } | Storage::Within { .. } => Ok(()),
            _ if self.outputs.iter().any(|&k| self.layout.root(k) == root) => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "read: {} was not named as an output at compile time; its buffer is reused",
                node.name
            ))),
        }
    }
}

/// Lowers every node of `graph` over `buffers` with `fusion` and `packing`, watched as
/// `watch` says: the hoisted solves, then each node's launches (element i for node i). The
/// scratch the launches bind joins `buffers`.
fn lower_graph(
    device: &Device,
    graph: &Graph,
    buffers: &mut Buffers,
    fusion: &Fusion,
    packing: &Packing,
    watch: &StepWatch,
) -> Result<(Solves, Vec<Vec<Recorded>>)> {
    let mut solves = Solves::hoisted(device, graph, buffers)?;
    let mut lowering = Lowering::new(device, graph, buffers, &mut solves, fusion, packing, watch);
    let lowered = lowering.lower_all()?;
    let scratch = lowering.scratch;
    buffers.keep_scratch(scratch);
    Ok((solves, lowered))
}

impl Plan for GpuPlan {
    fn state(&self) -> &PlanState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut PlanState {
        &mut self.state
    }

    /// Returns without waiting for the device.
    fn step(&mut self, inputs: &[(Value, &[f32])]) -> Result<()> {
        let _gl = self.device.gl_guard();
        self.begin_step(inputs)?;
        let commands = self.encode(None, None);
        self.submit(commands)
    }

    fn forward(&mut self, inputs: &[(Value, &[f32])], outputs: &[Value]) -> Result<()> {
        let _gl = self.device.gl_guard();
        let needed = self.state.needed_for(outputs)?;
        for &v in outputs {
            self.check_readable(v)?;
        }
        self.write_inputs("forward", inputs, |v| needed[v.0])?;
        // The words of the last step (count and rate unchanged), as the reference sees them.
        self.write_hyper(self.state.steps());
        // A fused launch computes its whole chain: run it if any of the chain is needed.
        let run = self.fusion.expand(self.state.graph(), &needed);
        let commands = self.encode(Some(&run), None);
        self.submit(commands)
    }

    /// `v` must be an input, a resident tensor, or one of the outputs named at compile time.
    fn read(&self, v: Value) -> Result<Vec<f32>> {
        self.check_readable(v)?;
        let len = self.state.graph().shape(v).iter().product();
        read_buffer(&self.device, self.buffers.value(v)?, len)
    }

    fn write(&mut self, v: Value, data: &[f32]) -> Result<()> {
        self.state.check_write(v, data.len())?;
        let region = self.buffers.value(v)?;
        let _gl = self.device.gl_guard();
        self.device.queue().write_buffer(
            region.buffer(),
            region.offset(),
            bytemuck::cast_slice(data),
        );
        let mut encoder =
            self.device
                .wgpu_device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("reset status"),
                });
        checks::record_reset(&self.buffers, &self.solves, &mut encoder);
        self.submit(encoder.finish())
    }

    /// Solver statuses first (the last run's), then the step status.
    fn check_status(&self) -> Result<()> {
        let graph = self.state.graph();
        self.solves.check_status(&self.device, graph)?;
        let status = checks::read(&self.device, &self.buffers, &self.watch, self.steps())?;
        self.watch.check(graph, &status)
    }

    fn eigenvalues(&self, v: Value) -> Result<Vec<f32>> {
        self.state.check_spectral("eigenvalues", v)?;
        self.solves.eigenvalues(&self.device, v.0)
    }

    fn eigenvectors(&self, v: Value) -> Result<Vec<f32>> {
        self.state.check_spectral("eigenvectors", v)?;
        self.solves.eigenvectors(&self.device, v.0)
    }

    fn sweeps(&self, v: Value) -> Result<Vec<u32>> {
        self.state.check_spectral("sweeps", v)?;
        self.solves.sweeps(&self.device, v.0)
    }
}

impl Drop for GpuPlan {
    /// Releases the plan's device memory at once (wgpu would keep buffers that queued writes
    /// still reference until the next submission on the device): the plan's resources are
    /// dropped, the queued writes flushed with an empty submission and the device polled until
    /// the plan's work is done. On GL all of it runs under the GL lock.
    fn drop(&mut self) {
        let _gl = self.device.gl_guard();
        self.recording.clear();
        self.solves.clear();
        self.buffers.release();
        self.timer = StepTimer::Unavailable;
        self.device.queue().submit([]);
        let _ = self.device.wgpu_device().poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        });
    }
}
