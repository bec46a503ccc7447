//! The GPU executor: every buffer and dispatch is created once at compile time; a step
//! writes the inputs and the hyperparameter words, records every dispatch of forward,
//! backward and update into one compute pass of one encoder, and submits once. Nothing is
//! read back unless the caller asks.

use super::plan::{init_values, value_bytes, Layout, PlanStats, Storage};
use super::{rows_cols, Graph, Op, Role, Value};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::kernels::{self, Dispatch};
use crate::tensor::{read_buffer, TENSOR_USAGE};
use wgpu::util::DeviceExt;

/// A graph compiled for one device.
pub struct GpuPlan {
    device: Device,
    graph: Graph,
    layout: Layout,
    /// Buffer of every node that has one (owned or pooled; aliases resolved).
    buffers: Vec<Option<std::sync::Arc<wgpu::Buffer>>>,
    dispatches: Vec<Dispatch>,
    hyper: wgpu::Buffer,
    learning_rate: f32,
    step: u64,
    kept: Vec<Value>,
    stats: PlanStats,
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
        let mut dispatches = Vec::new();
        for (i, node) in graph.nodes().iter().enumerate() {
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
                    dispatches.push(kernels::matmul::matmul_dispatch(
                        device,
                        &dims,
                        input(0),
                        input(1),
                        buf(Value(i)),
                    )?);
                }
                Op::Unary(op) => dispatches.push(kernels::elementwise::unary_dispatch(
                    device,
                    *op,
                    input(0),
                    buf(Value(i)),
                    n,
                )?),
                Op::Binary { op, b_from } => {
                    dispatches.push(kernels::elementwise::binary_dispatch(
                        device,
                        *op,
                        input(0),
                        input(1),
                        buf(Value(i)),
                        n,
                        *b_from,
                    )?)
                }
                Op::Expand { from, alpha } => {
                    dispatches.push(kernels::elementwise::expand_dispatch(
                        device,
                        input(0),
                        buf(Value(i)),
                        n,
                        *from,
                        *alpha,
                    )?)
                }
                Op::Reduce { op, axis } => {
                    let (rows, cols) = rows_cols(shape_of(0));
                    dispatches.push(kernels::reduce::reduce_dispatch(
                        device,
                        *op,
                        *axis,
                        input(0),
                        buf(Value(i)),
                        rows,
                        cols,
                    )?);
                }
                Op::Transpose => {
                    let s = shape_of(0);
                    let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
                    let batch = s.iter().product::<usize>() / (rows * cols);
                    dispatches.push(kernels::transpose::transpose_dispatch(
                        device,
                        input(0),
                        buf(Value(i)),
                        batch,
                        rows,
                        cols,
                    )?);
                }
                Op::SoftmaxXent => {
                    let (rows, classes) = rows_cols(shape_of(0));
                    dispatches.push(kernels::softmax::softmax_xent_dispatch(
                        device,
                        input(0),
                        input(1),
                        buf(Value(i)),
                        rows,
                        classes,
                    )?);
                }
                Op::SoftmaxXentBackward => {
                    let (rows, classes) = rows_cols(shape_of(0));
                    dispatches.push(kernels::softmax::softmax_xent_backward_dispatch(
                        device,
                        input(0),
                        input(1),
                        input(2),
                        buf(Value(i)),
                        rows,
                        classes,
                    )?);
                }
                Op::ClipGradients { max_norm } => {
                    for (slot, &g) in node.inputs.iter().enumerate() {
                        let len = graph.shape(g).iter().product();
                        dispatches.push(kernels::optim::sumsq_dispatch(
                            device,
                            buf(g),
                            &norms,
                            len,
                            slot,
                        )?);
                    }
                    dispatches.push(kernels::optim::clip_dispatch(
                        device,
                        &hyper,
                        &norms,
                        node.inputs.len(),
                        *max_norm,
                    )?);
                }
                Op::Update(rule) => {
                    let states: Vec<&wgpu::Buffer> =
                        node.inputs[2..].iter().map(|&v| buf(v)).collect();
                    let len = graph.shape(node.inputs[0]).iter().product();
                    dispatches.push(kernels::optim::update_dispatch(
                        device,
                        rule,
                        &hyper,
                        input(0),
                        input(1),
                        &states,
                        len,
                    )?);
                }
            }
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
            dispatches_per_step: dispatches.len(),
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
            dispatches,
            hyper,
            learning_rate: graph.learning_rate(),
            step: 0,
            kept: outputs.to_vec(),
            stats,
        })
    }

    /// Runs one step: writes `inputs` (every input of the graph, by value), then forward,
    /// backward and updates in one submission. Returns without waiting for the device.
    pub fn step(&mut self, inputs: &[(Value, &[f32])]) -> Result<()> {
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
        let refs: Vec<&Dispatch> = self.dispatches.iter().collect();
        kernels::run(&self.device, &refs)?;
        // Reclaim finished submissions without blocking.
        let _ = self.device.wgpu_device().poll(wgpu::PollType::Poll);
        Ok(())
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
        self.device
            .queue()
            .write_buffer(self.buffer(v)?, 0, bytemuck::cast_slice(data));
        Ok(())
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
