//! GPU kernels: one module per shader family. Each module knows its WGSL entry points, the
//! layout of their parameters and their dispatch geometry, and nothing of graphs.
//!
//! Every kernel comes in two forms:
//! - a *dispatch builder* over raw buffers (`*_dispatch`), which the graph planner calls once at
//!   compile time and then records every step without creating anything;
//! - a *tensor-level* function that checks shapes, allocates the output and runs the kernel at
//!   once — convenient for tests, benchmarks and users who want one op.
//!
//! A kernel is declared as a typed [`Kernel`] constant (shader, entry point, workgroup size,
//! override values, parameter struct; see [`crate::pipeline`]) and launched with
//! [`Kernel::dispatch`]. Kernels with interchangeable variants choose them through
//! [`autotune`].
//!
//! Binding convention: binding 0 is a small uniform of parameters, bindings 1.. are storage
//! buffers in the order the builder lists them.

pub mod autotune;
pub mod contracts;
pub mod dropout;
pub mod elementwise;
pub mod finite;
pub mod jacobi;
pub mod jacobi_block;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod reduce;
pub mod softmax;
pub mod spectral;
pub mod transpose;

use crate::device::{Device, DeviceInfo};
use crate::error::{Error, Result};
use crate::gl_lock::GlDrop;
pub use crate::pipeline::{Kernel, Shader};
use crate::pipeline::{KernelId, Params};
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// One recorded kernel launch: pipeline, bind group and workgroup counts, all built once.
pub struct Dispatch {
    label: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: GlDrop<wgpu::BindGroup>,
    workgroups: [u32; 3],
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dispatch({} {:?})", self.label, self.workgroups)
    }
}

impl<P: Params> Kernel<P> {
    /// A launch of this kernel with `params` at binding 0 and `buffers` at bindings 1, 2, …
    /// over `workgroups`.
    pub fn dispatch(
        &self,
        device: &Device,
        params: &P,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let bindings = numbered(buffers);
        self.dispatch_bound(device, params, &bindings, workgroups)
    }

    /// Like [`Kernel::dispatch`] with explicit binding numbers, for shaders whose entry points
    /// use different subsets of one module's bindings (auto layouts keep only those used).
    pub fn dispatch_bound(
        &self,
        device: &Device,
        params: &P,
        buffers: &[(u32, &wgpu::Buffer)],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let spec = self.spec();
        let bytes = bytemuck::bytes_of(params);
        Dispatch::build(device, spec.shader, spec.id(), bytes, buffers, workgroups)
    }

    /// Workgroup counts covering `threads` invocations of this kernel (see [`grid_1d`]).
    pub fn grid(&self, device: &Device, threads: u64) -> Result<[u32; 3]> {
        grid_1d(
            device,
            self.spec().entry,
            threads,
            self.spec().invocations(),
        )
    }
}

/// `buffers` numbered from binding 1.
fn numbered<'a>(buffers: &[&'a wgpu::Buffer]) -> Vec<(u32, &'a wgpu::Buffer)> {
    buffers
        .iter()
        .enumerate()
        .map(|(i, &b)| (i as u32 + 1, b))
        .collect()
}

impl Dispatch {
    /// The launch of kernel `id` with the uniform `params` and storage `buffers`.
    fn build(
        device: &Device,
        shader: &Shader,
        id: KernelId,
        params: &[u8],
        buffers: &[(u32, &wgpu::Buffer)],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let entry = id.entry;
        let max = device.info().limits.max_compute_workgroups_per_dimension;
        if let Some(&w) = workgroups.iter().find(|&&w| w > max) {
            return Err(Error::TooLarge {
                what: format!("{entry}: dispatch of {workgroups:?} workgroups"),
                requested: w as u64,
                limit_name: "max_compute_workgroups_per_dimension",
                limit: max as u64,
            });
        }
        let _gl = device.gl_guard();
        let pipeline = device.pipeline(shader, id);
        // Uniform buffers are padded to 16 bytes, the strictest alignment WGSL asks of a struct.
        let mut bytes = params.to_vec();
        bytes.resize(bytes.len().next_multiple_of(16).max(16), 0);
        let uniform = device
            .wgpu_device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(entry),
                contents: &bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        entries.extend(buffers.iter().map(|&(binding, b)| wgpu::BindGroupEntry {
            binding,
            resource: b.as_entire_binding(),
        }));
        let bind_group = device
            .wgpu_device()
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
        Ok(Dispatch {
            label: entry,
            pipeline,
            bind_group: GlDrop::new(bind_group, device.is_gl()),
            workgroups,
        })
    }

    /// The entry point this dispatch launches.
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// Records the launch into an open compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &*self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }

    /// Records the launch with its workgroup counts read on the device from `indirect` at
    /// `offset` (three `u32`), so that an earlier kernel can shrink or cancel it.
    pub fn record_indirect(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        indirect: &wgpu::Buffer,
        offset: u64,
    ) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &*self.bind_group, &[]);
        pass.dispatch_workgroups_indirect(indirect, offset);
    }
}

/// How many lanes of a workgroup cooperate on one segment (a row or a column) in the
/// reduction-shaped kernels ([`reduce`], [`softmax`]): a variant chosen per adapter through
/// [`autotune`]. Either is correct on any adapter; which is faster depends on the adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LanePolicy {
    /// About 8 values per lane, up to a whole workgroup per segment: keeps a GPU's lanes busy.
    /// The default on GPUs.
    Spread,
    /// As few lanes as llvmpipe's loop budget allows — one lane without barriers or workgroup
    /// memory up to tens of thousands of values. The default on CPU adapters, which run a
    /// workgroup on one thread.
    Fewest,
}

impl autotune::Variant for LanePolicy {
    const ALL: &'static [LanePolicy] = &[LanePolicy::Spread, LanePolicy::Fewest];

    fn name(self) -> &'static str {
        match self {
            LanePolicy::Spread => "Spread",
            LanePolicy::Fewest => "Fewest",
        }
    }
}

impl LanePolicy {
    /// The policy for an adapter where none was measured: `Fewest` on CPU adapters, `Spread`
    /// elsewhere.
    pub fn default_for(info: &DeviceInfo) -> LanePolicy {
        if info.is_cpu() {
            LanePolicy::Fewest
        } else {
            LanePolicy::Spread
        }
    }
}

/// Records `dispatches` in order into one compute pass of one encoder and submits it once.
pub fn run(device: &Device, dispatches: &[&Dispatch]) -> Result<()> {
    let _gl = device.gl_guard();
    let mut encoder = device
        .wgpu_device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("run") });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("run"),
            timestamp_writes: None,
        });
        for d in dispatches {
            d.record(&mut pass);
        }
    }
    device.queue().submit([encoder.finish()]);
    device.take_error()
}

/// Workgroup counts covering `threads` invocations of workgroups of `workgroup_size`, folded
/// into a second dimension past the per-dimension limit. Shaders recover the flat index as
/// `gid.x + gid.y * num_workgroups.x * workgroup_size`.
pub fn grid_1d(device: &Device, what: &str, threads: u64, workgroup_size: u32) -> Result<[u32; 3]> {
    let groups = threads.div_ceil(workgroup_size as u64).max(1);
    let max = device.info().limits.max_compute_workgroups_per_dimension as u64;
    let x = groups.min(max);
    let y = groups.div_ceil(x);
    if y > max {
        return Err(Error::TooLarge {
            what: format!("{what}: {threads} invocations"),
            requested: threads,
            limit_name: "max_compute_workgroups_per_dimension squared × workgroup size",
            limit: max * max * workgroup_size as u64,
        });
    }
    Ok([x as u32, y as u32, 1])
}

/// Converts an element count to the `u32` that shaders index with, or `Error::TooLarge`.
pub(crate) fn to_u32(what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::TooLarge {
        what: what.to_string(),
        requested: n as u64,
        limit_name: "u32 element index",
        limit: u32::MAX as u64,
    })
}

/// Checks that every tensor lives on `device`.
pub(crate) fn same_device(op: &str, tensors: &[&crate::Tensor]) -> Result<Device> {
    let device = tensors[0].device().clone();
    for t in &tensors[1..] {
        if !t.device().same_as(&device) {
            return Err(Error::InvalidArgument(format!(
                "{op}: tensors live on different devices"
            )));
        }
    }
    Ok(device)
}
