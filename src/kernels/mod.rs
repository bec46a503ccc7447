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
    /// The storage buffers it binds, each with whether the shader may write it.
    storage: Vec<(wgpu::Buffer, bool)>,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dispatch({} {:?})", self.label, self.workgroups)
    }
}

impl<P: Params> Kernel<P> {
    /// A launch of this kernel with `params` at binding 0 and `buffers` (whole buffers or
    /// [`Region`]s) at bindings 1, 2, … over `workgroups`.
    pub fn dispatch<'a, B: Copy + Into<Region<'a>>>(
        &self,
        device: &Device,
        params: &P,
        buffers: &[B],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let regions: Vec<Region<'a>> = buffers.iter().map(|&b| b.into()).collect();
        let bindings = numbered(&regions);
        self.dispatch_bound(device, params, &bindings, workgroups)
    }

    /// Like [`Kernel::dispatch`] with explicit binding numbers, for shaders whose entry points
    /// use different subsets of one module's bindings (auto layouts keep only those used).
    pub fn dispatch_bound<'a, B: Copy + Into<Region<'a>>>(
        &self,
        device: &Device,
        params: &P,
        buffers: &[(u32, B)],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let spec = self.spec();
        let bytes = bytemuck::bytes_of(params);
        Dispatch::build(
            device,
            spec.shader,
            spec.id(),
            bytes,
            &regions(buffers),
            workgroups,
        )
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

/// The part of a device buffer a kernel binds: a whole buffer, or one tensor's range of a
/// buffer that several tensors share (the optimizer's arenas, see
/// [`GpuPlan`](crate::graph::gpu::GpuPlan)). Kernels index a region from 0, so they never know
/// the difference. A `&wgpu::Buffer` converts into the region of the whole buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region<'a> {
    buffer: &'a wgpu::Buffer,
    offset: u64,
    size: u64,
}

impl<'a> Region<'a> {
    /// The whole of `buffer`.
    pub fn whole(buffer: &'a wgpu::Buffer) -> Region<'a> {
        Region {
            buffer,
            offset: 0,
            size: buffer.size(),
        }
    }

    /// `size` bytes of `buffer` from `offset`, which must be a multiple of
    /// [`REGION_ALIGNMENT`]; the range must lie inside the buffer and not be empty.
    pub fn new(buffer: &'a wgpu::Buffer, offset: u64, size: u64) -> Result<Region<'a>> {
        let inside = offset
            .checked_add(size)
            .is_some_and(|end| end <= buffer.size());
        if size == 0 || !offset.is_multiple_of(REGION_ALIGNMENT) || !inside {
            return Err(Error::InvalidArgument(format!(
                "region of {size} bytes at {offset} in a buffer of {} bytes: not a non-empty, \
                 {REGION_ALIGNMENT}-byte aligned range of it",
                buffer.size()
            )));
        }
        Ok(Region {
            buffer,
            offset,
            size,
        })
    }

    /// The buffer.
    pub fn buffer(&self) -> &'a wgpu::Buffer {
        self.buffer
    }

    /// Byte offset of the region in its buffer.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many `f32` the region holds.
    pub fn len(&self) -> u64 {
        self.size / 4
    }

    /// Whether the region holds no whole `f32`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn binding(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.size),
        })
    }
}

impl<'a> From<&'a wgpu::Buffer> for Region<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Region<'a> {
        Region::whole(buffer)
    }
}

impl<'a> From<&'a Arc<wgpu::Buffer>> for Region<'a> {
    fn from(buffer: &'a Arc<wgpu::Buffer>) -> Region<'a> {
        Region::whole(buffer)
    }
}

/// The alignment of a [`Region`]'s offset: 256 bytes, the largest storage-buffer offset
/// alignment WebGPU lets an adapter ask for, so regions bind on every adapter.
pub const REGION_ALIGNMENT: u64 = 256;

/// `buffers` numbered from binding 1.
/// `buffers` (whole buffers or regions) as the regions they bind.
fn regions<'a, B: Copy + Into<Region<'a>>>(buffers: &[(u32, B)]) -> Vec<(u32, Region<'a>)> {
    buffers.iter().map(|&(i, b)| (i, b.into())).collect()
}

fn numbered<'a>(buffers: &[Region<'a>]) -> Vec<(u32, Region<'a>)> {
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
        buffers: &[(u32, Region<'_>)],
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
        if shader.subgroups && device.info().subgroup_sizes.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{entry} uses subgroup operations, which {} ({:?}) does not offer",
                device.info().name,
                device.info().backend
            )));
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
        entries.extend(buffers.iter().map(|(binding, b)| wgpu::BindGroupEntry {
            binding: *binding,
            resource: b.binding(),
        }));
        let bind_group = device
            .wgpu_device()
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
        let writable = device.writable_bindings(shader);
        let storage = buffers
            .iter()
            .map(|(binding, b)| (b.buffer().clone(), writable.contains(binding)))
            .collect();
        Ok(Dispatch {
            label: entry,
            pipeline,
            bind_group: GlDrop::new(bind_group, device.is_gl()),
            workgroups,
            storage,
        })
    }

    /// The entry point this dispatch launches.
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// The storage buffers the launch binds, each with whether its shader may write it (what
    /// decides where wgpu puts barriers, see [`BufferUses`]).
    pub fn storage(&self) -> &[(wgpu::Buffer, bool)] {
        &self.storage
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

/// How a buffer was last used in a command buffer, as far as wgpu's barriers go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastUse {
    /// Read by kernels only (an ordered, inclusive use: no barrier before more reads).
    Read,
    /// Bound writable (exclusive: wgpu puts a barrier before any later use).
    Write,
    /// Copied from or into (any later kernel use is a transition, hence a barrier).
    Copy,
}

/// How the buffers of a command buffer being recorded were last used, to count the barriers
/// wgpu 30 puts between its dispatches. wgpu tracks every buffer whole, per dispatch: a
/// dispatch gets a pipeline barrier when one of its buffers changes use (read → write,
/// write → read, copy → either) or stays written (write → write, which wgpu never leaves
/// unordered); reads after reads, and a buffer's first use in the command buffer, need none.
/// Every such barrier waits for all compute work before it, so the count is the number of
/// points where the device drains.
#[derive(Debug, Default)]
pub struct BufferUses {
    last: Vec<(wgpu::Buffer, LastUse)>,
}

impl BufferUses {
    /// How `buffer` was last used, if it was.
    pub fn get(&self, buffer: &wgpu::Buffer) -> Option<LastUse> {
        self.last.iter().find(|(b, _)| b == buffer).map(|&(_, u)| u)
    }

    /// Records that `buffer` was just used as `now`.
    pub fn set(&mut self, buffer: &wgpu::Buffer, now: LastUse) {
        match self.last.iter_mut().find(|(b, _)| b == buffer) {
            Some((_, u)) => *u = now,
            None => self.last.push((buffer.clone(), now)),
        }
    }

    /// Records dispatch `d`; returns whether wgpu puts a barrier before it.
    pub fn dispatch(&mut self, d: &Dispatch) -> bool {
        // A buffer bound twice counts once, written if either binding writes.
        let mut uses: Vec<(&wgpu::Buffer, bool)> = Vec::with_capacity(d.storage.len());
        for (buffer, writes) in &d.storage {
            match uses.iter_mut().find(|(b, _)| *b == buffer) {
                Some((_, w)) => *w |= *writes,
                None => uses.push((buffer, *writes)),
            }
        }
        let barrier = uses.iter().any(|&(buffer, writes)| {
            matches!(
                (self.get(buffer), writes),
                (Some(LastUse::Write | LastUse::Copy), _) | (Some(LastUse::Read), true)
            )
        });
        for (buffer, writes) in uses {
            let now = if writes {
                LastUse::Write
            } else {
                LastUse::Read
            };
            self.set(buffer, now);
        }
        barrier
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
