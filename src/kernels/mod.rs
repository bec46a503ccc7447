//! GPU kernels: one module per shader family. Each module knows its WGSL entry points, the
//! layout of their parameters and their dispatch geometry, and nothing of graphs.
//!
//! Every kernel comes in two forms:
//! - a *dispatch builder* over raw buffers (`*_dispatch`), which the graph planner calls once at
//!   compile time and then records every step without creating anything;
//! - a *tensor-level* function that checks shapes, allocates the output and runs the kernel at
//!   once — convenient for tests, benchmarks and users who want one op.
//!
//! Binding convention: binding 0 is a small uniform of parameters, bindings 1.. are storage
//! buffers in the order the builder lists them.

pub mod autotune;
pub mod elementwise;
pub mod finite;
pub mod jacobi;
pub mod matmul;
pub mod optim;
pub mod reduce;
pub mod softmax;
pub mod spectral;
pub mod transpose;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::gl_lock::GlDrop;
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// A WGSL source with a name that keys the device's pipeline cache.
pub struct Shader {
    /// Unique name of the shader (the cache key).
    pub name: &'static str,
    /// The WGSL text.
    pub source: &'static str,
}

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

impl Dispatch {
    /// Builds a launch of `entry` in `shader` with `params` at binding 0 and `buffers` at
    /// bindings 1, 2, … over `workgroups`.
    pub fn new<P: bytemuck::Pod>(
        device: &Device,
        shader: &Shader,
        entry: &'static str,
        params: &P,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let bindings: Vec<(u32, &wgpu::Buffer)> = buffers
            .iter()
            .enumerate()
            .map(|(i, &b)| (i as u32 + 1, b))
            .collect();
        Dispatch::with_bindings(device, shader, entry, params, &bindings, workgroups)
    }

    /// Like [`Dispatch::new`] with explicit binding numbers, for shaders whose entry points
    /// use different subsets of one module's bindings (auto layouts keep only those used).
    pub fn with_bindings<P: bytemuck::Pod>(
        device: &Device,
        shader: &Shader,
        entry: &'static str,
        params: &P,
        buffers: &[(u32, &wgpu::Buffer)],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
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
        let pipeline = device.pipeline(shader, entry);
        // Uniform buffers are padded to 16 bytes, the strictest alignment WGSL asks of a struct.
        let mut bytes = bytemuck::bytes_of(params).to_vec();
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
