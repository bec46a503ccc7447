//! Transpose of the last two dimensions of a rank-2 or rank-3 tensor.
//!
//! Two kernels (see `shaders/transpose.wgsl`): a 32 × 32 tiled one through workgroup memory,
//! whose reads and writes both coalesce on a GPU, and a direct one-invocation-per-element one
//! without barriers, which wins on CPU adapters such as llvmpipe. The builder picks by adapter.

use super::{grid_1d, to_u32, Dispatch, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{numel, Tensor};

const SHADER: Shader = Shader {
    name: "transpose",
    source: include_str!("../../shaders/transpose.wgsl"),
};
const TILE: usize = 32;
const DIRECT_WORKGROUP: u32 = 64;
/// Workgroups of the tiled kernel at most (each loops over tiles): 4096 × 256 invocations
/// fill any current GPU, and the grid never nears the per-dimension limit.
const TILED_GROUPS: usize = 4096;

/// Which transpose kernel a dispatch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransposeKernel {
    /// 32 × 32 tiles through workgroup memory: coalesced on GPUs.
    Tiled,
    /// One invocation per element, no barriers: for CPU adapters.
    Direct,
}

impl TransposeKernel {
    /// The kernel [`transpose_dispatch`] uses on `device`.
    pub fn for_device(device: &Device) -> TransposeKernel {
        if device.info().is_cpu() {
            TransposeKernel::Direct
        } else {
            TransposeKernel::Tiled
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    rows: u32,
    cols: u32,
    row_tiles: u32,
    col_tiles: u32,
    tiles: u32,
}

/// Shape rule: `[.., r, c]` → `[.., c, r]` for rank 2 or 3; other ranks are a shape error.
pub fn transpose_shape(x: &[usize]) -> Result<Vec<usize>> {
    if !(2..=3).contains(&x.len()) {
        return Err(Error::shape(
            "transpose",
            format!("needs a rank-2 or rank-3 tensor, got shape {x:?}"),
        ));
    }
    numel("transpose", x)?;
    let mut y = x.to_vec();
    let k = y.len();
    y.swap(k - 2, k - 1);
    Ok(y)
}

/// A launch writing the transpose of each of `batch` row-major `rows × cols` matrices in `x`
/// into `y` (`batch × cols × rows`), with the kernel [`TransposeKernel::for_device`] picks.
pub fn transpose_dispatch(
    device: &Device,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    batch: usize,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    transpose_dispatch_with(
        device,
        TransposeKernel::for_device(device),
        x,
        y,
        batch,
        rows,
        cols,
    )
}

/// [`transpose_dispatch`] with an explicit kernel choice (tests run both on every adapter).
pub fn transpose_dispatch_with(
    device: &Device,
    kernel: TransposeKernel,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    batch: usize,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    if batch == 0 || rows == 0 || cols == 0 {
        return Err(Error::Empty {
            op: "transpose".into(),
            shape: vec![batch, rows, cols],
        });
    }
    let n = batch.saturating_mul(rows).saturating_mul(cols);
    to_u32("transpose: batch × rows × cols", n)?;
    let (row_tiles, col_tiles) = (rows.div_ceil(TILE), cols.div_ceil(TILE));
    // Tiles ≤ elements, so the count fits u32 too.
    let tiles = batch * row_tiles * col_tiles;
    let params = Params {
        batch: batch as u32,
        rows: rows as u32,
        cols: cols as u32,
        row_tiles: row_tiles as u32,
        col_tiles: col_tiles as u32,
        tiles: tiles as u32,
    };
    match kernel {
        TransposeKernel::Tiled => {
            let grid = [tiles.min(TILED_GROUPS) as u32, 1, 1];
            Dispatch::new(device, &SHADER, "tiled", &params, &[x, y], grid)
        }
        TransposeKernel::Direct => {
            let grid = grid_1d(device, "transpose", n as u64, DIRECT_WORKGROUP)?;
            Dispatch::new(device, &SHADER, "direct", &params, &[x, y], grid)
        }
    }
}

/// Swaps the last two dimensions of a rank-2 or rank-3 tensor into a new tensor.
pub fn transpose(x: &Tensor) -> Result<Tensor> {
    let device = x.device();
    let shape = transpose_shape(x.shape())?;
    let k = shape.len();
    let (rows, cols) = (x.shape()[k - 2], x.shape()[k - 1]);
    let batch = if k == 3 { x.shape()[0] } else { 1 };
    let y = Tensor::zeros(device, &shape)?;
    let d = transpose_dispatch(device, x.buffer(), y.buffer(), batch, rows, cols)?;
    super::run(device, &[&d])?;
    Ok(y)
}
