//! Transpose of the last two dimensions of a rank-2 or rank-3 tensor.
//!
//! Two kernels (see `shaders/transpose.wgsl`): a 32 × 32 tiled one through workgroup memory,
//! whose reads and writes both coalesce on a GPU, and a direct one-invocation-per-element one
//! without barriers, which wins on CPU adapters such as llvmpipe. The builder takes the one
//! chosen for [`Transpose`] through [`autotune`] (by measurement where tuned, else by adapter
//! type).

use super::autotune::{self, Tunable, Variant};
use super::{to_u32, Dispatch, Kernel, Region, Shader};
use crate::device::{Device, DeviceInfo};
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, SharedConstant};
use crate::tensor::{numel, Tensor};

const SHADER: Shader = Shader {
    name: "transpose",
    subgroups: false,
    source: include_str!("../../shaders/transpose.wgsl"),
};
const TILE: usize = 32;
/// Rows of a tile one step of the tiled kernel's workgroup moves (its workgroup is 32 × 8).
const TILE_STEP: u32 = 8;
const TILED: Kernel<Params> = Kernel::new(&SHADER, "tiled", [TILE as u32, TILE_STEP, 1]);
const DIRECT: Kernel<Params> = Kernel::new(&SHADER, "direct", [64, 1, 1]);

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 2] = [TILED.spec(), DIRECT.spec()];

/// The tile geometry and the direct kernel's workgroup size, as the shader declares them.
pub(super) const CONSTANTS: [SharedConstant; 3] = [
    SharedConstant::u32(&SHADER, "TILE", TILE as u32),
    SharedConstant::u32(&SHADER, "STEP", TILE_STEP),
    SharedConstant::u32(&SHADER, "DG", DIRECT.spec().workgroup_size[0]),
];
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

impl Variant for TransposeKernel {
    const ALL: &'static [TransposeKernel] = &[TransposeKernel::Tiled, TransposeKernel::Direct];

    fn name(self) -> &'static str {
        match self {
            TransposeKernel::Tiled => "Tiled",
            TransposeKernel::Direct => "Direct",
        }
    }
}

/// The transpose kernels, whose [`TransposeKernel`] is chosen per adapter by [`autotune`].
#[derive(Clone, Copy, Debug)]
pub struct Transpose;

/// Order of the square matrix [`Transpose`] is tuned on.
const TUNE_SIZE: usize = 1024;

impl Tunable for Transpose {
    type Variant = TransposeKernel;
    type Trial = Dispatch;
    const KERNEL: &'static str = "transpose";

    /// Direct on CPU adapters, Tiled otherwise.
    fn default_variant(info: &DeviceInfo) -> TransposeKernel {
        if info.is_cpu() {
            TransposeKernel::Direct
        } else {
            TransposeKernel::Tiled
        }
    }

    /// Every kernel on one square matrix of order `TUNE_SIZE`.
    fn trials(device: &Device) -> Result<Vec<Dispatch>> {
        let n = TUNE_SIZE;
        let x = Tensor::zeros(device, &[n, n])?;
        let y = Tensor::zeros(device, &[n, n])?;
        TransposeKernel::ALL
            .iter()
            .map(|&k| transpose_dispatch_with(device, k, x.buffer(), y.buffer(), 1, n, n))
            .collect()
    }
}

crate::wgsl_params! {
    struct Params {
        batch: u32,
        rows: u32,
        cols: u32,
        row_tiles: u32,
        col_tiles: u32,
        tiles: u32,
    }
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
/// into `y` (`batch × cols × rows`), with the kernel [`autotune::variant`] picks for
/// [`Transpose`] on `device`.
pub fn transpose_dispatch<'a>(
    device: &Device,
    x: impl Into<Region<'a>>,
    y: impl Into<Region<'a>>,
    batch: usize,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    let x: Region<'a> = x.into();
    let y: Region<'a> = y.into();
    transpose_dispatch_with(
        device,
        autotune::variant::<Transpose>(device),
        x,
        y,
        batch,
        rows,
        cols,
    )
}

/// [`transpose_dispatch`] with an explicit kernel choice (tests run both on every adapter).
pub fn transpose_dispatch_with<'a>(
    device: &Device,
    kernel: TransposeKernel,
    x: impl Into<Region<'a>>,
    y: impl Into<Region<'a>>,
    batch: usize,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    let x: Region<'a> = x.into();
    let y: Region<'a> = y.into();
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
            TILED.dispatch(device, &params, &[x, y], grid)
        }
        TransposeKernel::Direct => {
            let grid = DIRECT.grid(device, n as u64)?;
            DIRECT.dispatch(device, &params, &[x, y], grid)
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
