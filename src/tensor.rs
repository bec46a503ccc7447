//! Tensors: a shape and a device buffer, resident on the device until dropped.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::gl_lock::GlDrop;
use crate::kernels::Region;
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// Usage flags of every tensor buffer: kernels read and write it, uploads and downloads copy it.
pub(crate) const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A row-major f32 array living in a device buffer. Cloning shares the buffer.
#[derive(Clone, Debug)]
pub struct Tensor {
    device: Device,
    buffer: Arc<GlDrop<wgpu::Buffer>>,
    shape: Vec<usize>,
}

/// Number of elements of `shape`, or an error if it is empty or overflows.
pub fn numel(op: &str, shape: &[usize]) -> Result<usize> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::Empty {
            op: op.to_string(),
            shape: shape.to_vec(),
        });
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::TooLarge {
            what: format!("{op}: tensor of shape {shape:?}"),
            requested: u64::MAX,
            limit_name: "usize element count",
            limit: usize::MAX as u64,
        })
}

impl Tensor {
    /// Checks `shape` and returns its byte size after checking it against the device limits.
    fn checked_bytes(device: &Device, op: &str, shape: &[usize]) -> Result<u64> {
        let n = numel(op, shape)? as u64;
        let bytes = n.saturating_mul(4);
        device.check_buffer_size(&format!("{op}: tensor of shape {shape:?}"), bytes)?;
        Ok(bytes)
    }

    /// Uploads `data` (row-major) as a tensor of `shape`.
    pub fn from_slice(device: &Device, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        Tensor::checked_bytes(device, "Tensor::from_slice", shape)?;
        let n = numel("Tensor::from_slice", shape)?;
        if data.len() != n {
            return Err(Error::shape(
                "Tensor::from_slice",
                format!(
                    "shape {shape:?} holds {n} elements but data has {}",
                    data.len()
                ),
            ));
        }
        let _gl = device.gl_guard();
        let buffer = device
            .wgpu_device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("tensor"),
                contents: bytemuck::cast_slice(data),
                usage: TENSOR_USAGE,
            });
        Ok(Tensor {
            device: device.clone(),
            buffer: Arc::new(GlDrop::new(buffer, device.is_gl())),
            shape: shape.to_vec(),
        })
    }

    /// A zero-filled tensor of `shape` (wgpu zero-initialises new buffers).
    pub fn zeros(device: &Device, shape: &[usize]) -> Result<Tensor> {
        let bytes = Tensor::checked_bytes(device, "Tensor::zeros", shape)?;
        let _gl = device.gl_guard();
        let buffer = device.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("tensor"),
            size: bytes,
            usage: TENSOR_USAGE,
            mapped_at_creation: false,
        });
        Ok(Tensor {
            device: device.clone(),
            buffer: Arc::new(GlDrop::new(buffer, device.is_gl())),
            shape: shape.to_vec(),
        })
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Always false: tensors with no elements cannot be created.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The device the tensor lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The device buffer, for recording kernels that read or write this tensor.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The same buffer viewed with another shape of the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n = numel("Tensor::reshape", shape)?;
        if n != self.len() {
            return Err(Error::shape(
                "Tensor::reshape",
                format!(
                    "cannot view {:?} ({} elements) as {shape:?}",
                    self.shape,
                    self.len()
                ),
            ));
        }
        Ok(Tensor {
            device: self.device.clone(),
            buffer: self.buffer.clone(),
            shape: shape.to_vec(),
        })
    }

    /// Overwrites the contents with `data` (same length), queued before the next submission.
    pub fn write(&self, data: &[f32]) -> Result<()> {
        if data.len() != self.len() {
            return Err(Error::shape(
                "Tensor::write",
                format!(
                    "tensor {:?} holds {} elements but data has {}",
                    self.shape,
                    self.len(),
                    data.len()
                ),
            ));
        }
        let _gl = self.device.gl_guard();
        self.device
            .queue()
            .write_buffer(&self.buffer, 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Downloads the contents (waits for all work queued before it).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        read_buffer(&self.device, self.buffer(), self.len())
    }
}

/// Downloads the first `len` f32 values of `buffer` (a whole buffer or a region of one)
/// through a staging buffer and `map_async`.
pub fn read_buffer<'a>(
    device: &Device,
    buffer: impl Into<Region<'a>>,
    len: usize,
) -> Result<Vec<f32>> {
    let words = read_words(device, buffer, len)?;
    Ok(bytemuck::cast_slice(&words).to_vec())
}

/// Downloads the first `len` 32-bit words of `buffer` (a whole buffer or a region of one) as
/// `u32` (flags, counters, indices).
pub fn read_words<'a>(
    device: &Device,
    buffer: impl Into<Region<'a>>,
    len: usize,
) -> Result<Vec<u32>> {
    let region: Region<'a> = buffer.into();
    let bytes = (len * 4) as u64;
    let _gl = device.gl_guard();
    let staging = device.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder =
        device
            .wgpu_device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
    encoder.copy_buffer_to_buffer(region.buffer(), region.offset(), &staging, 0, bytes);
    device.queue().submit([encoder.finish()]);
    let slice = staging.slice(..);
    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = sender.send(r);
    });
    device.synchronize()?;
    pollster::block_on(receiver.receive())
        .ok_or_else(|| Error::Device("readback: map_async callback was dropped".into()))?
        .map_err(|e| Error::Device(format!("readback: {e}")))?;
    let view = slice
        .get_mapped_range()
        .map_err(|e| Error::Device(format!("readback: {e}")))?;
    let out = bytemuck::cast_slice(&view).to_vec();
    drop(view);
    staging.unmap();
    Ok(out)
}
