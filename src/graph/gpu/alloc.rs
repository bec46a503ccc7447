//! The device buffers of a GPU plan, created once at compile time: the pool that compute ops'
//! values share, the buffers owned by inputs and resident tensors (filled by their
//! initialisers), the arenas the optimizer's parameters, gradients and state are packed into,
//! the step's hyperparameter words and status, and scratch for ops' private intermediates.
//!
//! Every value buffer is reference-counted, so a buffer can serve several plans: a plan
//! compiled with [`Residents::SharedWith`] (an inference plan) takes another plan's resident
//! buffers by name instead of allocating its own.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::layout::{init_values, value_bytes, Layout, Storage};
use crate::graph::{Graph, Node, Op, Role, Value};
use crate::kernels::{self, Region};
use crate::tensor::TENSOR_USAGE;
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// Where a value lives: a range of a reference-counted buffer (the whole of it unless the value
/// is packed into an arena).
#[derive(Clone, Debug)]
pub(super) struct Placed {
    /// The buffer.
    pub buffer: Arc<wgpu::Buffer>,
    /// Byte offset of the value.
    pub offset: u64,
    /// Bytes the value may use: its own size in an arena, the whole buffer otherwise.
    pub size: u64,
}

impl Placed {
    /// All of `buffer`.
    fn whole(buffer: Arc<wgpu::Buffer>) -> Placed {
        let size = buffer.size();
        Placed {
            buffer,
            offset: 0,
            size,
        }
    }

    /// `size` bytes of this placement from `offset` (a slice of a stack).
    fn part(&self, offset: u64, size: u64) -> Placed {
        Placed {
            buffer: self.buffer.clone(),
            offset: self.offset + offset,
            size,
        }
    }

    /// The region kernels bind.
    pub fn region(&self) -> Region<'_> {
        Region::new(&self.buffer, self.offset, self.size)
            .expect("placements are aligned ranges of their buffers")
    }
}

/// Where a plan's resident tensors come from.
pub(super) enum Residents<'a> {
    /// New buffers filled by their initialisers, node i with this seed + i.
    Fresh(u64),
    /// The buffers of another plan (its graph and buffers): every resident tensor that is
    /// not a constant is the one of the same name there, which must have the same role and
    /// shape; constants get buffers of their own.
    SharedWith(&'a Graph, &'a Buffers),
}

/// Every buffer a compiled plan binds.
pub(super) struct Buffers {
    /// Where every node that has a value keeps it (owned, pooled or packed; aliases resolved).
    values: Vec<Option<Placed>>,
    /// The step's hyperparameter words ([`kernels::optim::HYPER_WORDS`]).
    pub hyper: wgpu::Buffer,
    /// The step status (`kernels::finite::status_buffer`): its header and one slot per
    /// thing the step watches (`graph::status::StepWatch`).
    pub status: wgpu::Buffer,
    /// Ops' private intermediates: bound by the plan's dispatches, kept alive here.
    scratch: Vec<wgpu::Buffer>,
}

impl Buffers {
    /// Drops the plan's references to its buffers and destroys the ones only it holds (a
    /// plan's own hyperparameter words and status), so that dropping a plan frees its memory
    /// without waiting for the next submission; shared resident buffers live on in the
    /// plans that still hold them.
    pub fn release(&mut self) {
        self.values.clear();
        self.scratch.clear();
        self.hyper.destroy();
        self.status.destroy();
    }

    /// Creates the pool, the arenas and the owned buffers `layout` asks for (resident tensors
    /// as `residents` says, in their own buffer or at their range of an arena), the
    /// hyperparameter words and the status of a step watching `watched` things.
    pub fn allocate(
        device: &Device,
        graph: &Graph,
        layout: &Layout,
        residents: &Residents,
        watched: usize,
    ) -> Result<Buffers> {
        let pool = layout
            .pool
            .iter()
            .map(|&bytes| empty(device, "plan pool buffer", bytes).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let arenas = match residents {
            Residents::Fresh(seed) => arenas(device, graph, layout, *seed)?,
            // A plan that shares resident tensors packs none (`GpuPlan::compile_sharing`).
            Residents::SharedWith(..) => Vec::new(),
        };
        let mut values: Vec<Option<Placed>> = Vec::with_capacity(graph.nodes().len());
        for (i, node) in graph.nodes().iter().enumerate() {
            let placed = match layout.storage[i] {
                Storage::None | Storage::Fused => None,
                Storage::Pooled(b) => Some(Placed::whole(pool[b].clone())),
                // Placed below, once what they are part of is.
                Storage::Alias(_) | Storage::Slice { .. } | Storage::Within { .. } => None,
                Storage::Owned => Some(match (residents, &node.op) {
                    (Residents::SharedWith(source, buffers), Op::Param { role, .. })
                        if role.is_saved() =>
                    {
                        buffers.shared(counterpart(source, node, *role)?)?
                    }
                    (Residents::Fresh(seed), _) => {
                        Placed::whole(Arc::new(owned(device, node, seed.wrapping_add(i as u64))?))
                    }
                    (Residents::SharedWith(..), _) => {
                        Placed::whole(Arc::new(owned(device, node, i as u64)?))
                    }
                }),
                Storage::Packed { arena, offset } => Some(Placed {
                    buffer: arenas[arena].clone(),
                    offset,
                    size: value_bytes(&node.shape),
                }),
            };
            values.push(placed);
        }
        // Values that are part of another's storage, in graph order: a reshape or a slice is
        // part of an earlier value (placed by now), a stacked input of a later stack (which
        // owns or packs its storage, placed above).
        for (i, node) in graph.nodes().iter().enumerate() {
            let bytes = value_bytes(&node.shape);
            values[i] = match layout.storage[i] {
                Storage::Alias(r) => values[r.0].clone(),
                Storage::Slice { of, offset } => {
                    values[of.0].as_ref().map(|p| p.part(offset, bytes))
                }
                Storage::Within { stack, offset } => {
                    values[stack.0].as_ref().map(|p| p.part(offset, bytes))
                }
                _ => continue,
            };
        }
        Ok(Buffers {
            values,
            hyper: kernels::optim::hyper_buffer(device),
            status: kernels::finite::status_buffer(device, watched),
            scratch: Vec::new(),
        })
    }

    /// The region of `v`.
    pub fn value(&self, v: Value) -> Result<Region<'_>> {
        self.values
            .get(v.0)
            .and_then(Option::as_ref)
            .map(Placed::region)
            .ok_or_else(|| no_buffer(v))
    }

    /// The whole buffer `v` lives in: for a packed value, its arena.
    pub fn arena_of(&self, v: Value) -> Result<Region<'_>> {
        self.values
            .get(v.0)
            .and_then(Option::as_ref)
            .map(|p| Region::whole(&p.buffer))
            .ok_or_else(|| no_buffer(v))
    }

    /// Where `v` lives, shared (for work that copies from it, such as a solve's input, and for
    /// a plan that shares resident tensors).
    pub fn shared(&self, v: Value) -> Result<Placed> {
        self.values
            .get(v.0)
            .cloned()
            .flatten()
            .ok_or_else(|| no_buffer(v))
    }

    /// Keeps `scratch` alive for as long as the plan (its dispatches bind them).
    pub fn keep_scratch(&mut self, scratch: Vec<wgpu::Buffer>) {
        self.scratch.extend(scratch);
    }
}

/// The arenas `layout` packs values into, with every packed resident tensor's initial values
/// at its range and zeros elsewhere (the padding between ranges, and packed gradients, which
/// the step writes).
fn arenas(
    device: &Device,
    graph: &Graph,
    layout: &Layout,
    seed: u64,
) -> Result<Vec<Arc<wgpu::Buffer>>> {
    let mut contents: Vec<Vec<f32>> = Vec::with_capacity(layout.arenas.len());
    for &bytes in &layout.arenas {
        device.check_buffer_size("optimizer arena", bytes)?;
        contents.push(vec![0.0; (bytes / 4) as usize]);
    }
    for (i, node) in graph.nodes().iter().enumerate() {
        if let (Storage::Packed { arena, offset }, Op::Param { init, .. }) =
            (layout.storage[i], &node.op)
        {
            let data = init_values(init, &node.shape, seed.wrapping_add(i as u64))?;
            let at = (offset / 4) as usize;
            contents[arena][at..at + data.len()].copy_from_slice(&data);
        }
    }
    Ok(contents
        .iter()
        .map(|data| {
            Arc::new(
                device
                    .wgpu_device()
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("optimizer arena"),
                        contents: bytemuck::cast_slice(data),
                        usage: TENSOR_USAGE,
                    }),
            )
        })
        .collect())
}

fn no_buffer(v: Value) -> Error {
    Error::InvalidArgument(format!("node {} has no buffer", v.0))
}

/// The resident tensor of `source` that `node` (a resident tensor of role `role`) shares: the
/// one of the same name, role and shape.
fn counterpart(source: &Graph, node: &Node, role: Role) -> Result<Value> {
    let mismatch = |what: String| {
        Error::InvalidArgument(format!(
            "sharing resident tensors: {} ({role:?}, shape {:?}) {what}",
            node.name, node.shape
        ))
    };
    let v = source
        .find(&node.name)
        .ok_or_else(|| mismatch("has no tensor of that name in the plan it shares with".into()))?;
    let theirs = source.node(v);
    match &theirs.op {
        Op::Param { role: r, .. } if *r == role && theirs.shape == node.shape => Ok(v),
        other => Err(mismatch(format!(
            "is {} of shape {:?} in the plan it shares with",
            other.name(),
            theirs.shape
        ))),
    }
}

/// A buffer of `bytes` for tensors (checked against the device's limits).
fn empty(device: &Device, what: &str, bytes: u64) -> Result<wgpu::Buffer> {
    device.check_buffer_size(what, bytes)?;
    Ok(device.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(what),
        size: bytes,
        usage: TENSOR_USAGE,
        mapped_at_creation: false,
    }))
}

/// A private scratch buffer of `elems` f32 for one op's intermediate products.
pub(super) fn scratch(device: &Device, what: &str, elems: usize) -> Result<wgpu::Buffer> {
    empty(device, what, elems as u64 * 4)
}

/// The buffer a node owns: a resident tensor's filled by its initialiser, any other (inputs,
/// parameter-only values) empty.
fn owned(device: &Device, node: &Node, seed: u64) -> Result<wgpu::Buffer> {
    let what = format!("resident tensor {}", node.name);
    let bytes = value_bytes(&node.shape);
    let Op::Param { init, .. } = &node.op else {
        return empty(device, &what, bytes);
    };
    device.check_buffer_size(&what, bytes)?;
    let data = init_values(init, &node.shape, seed)?;
    Ok(device
        .wgpu_device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(&node.name),
            contents: bytemuck::cast_slice(&data),
            usage: TENSOR_USAGE,
        }))
}
