//! Batched matrix product `C[b] = op(A[b]) · op(B[b])`, op = identity or transpose, with an
//! operand optionally shared by every batch item.
//!
//! Two kernel variants, chosen per adapter through [`autotune`] ([`Matmul`] is the tunable
//! kernel):
//! - [`MatmulVariant::RowBlock`], barrier-free and without workgroup memory, the default on
//!   CPU adapters (llvmpipe runs a workgroup on one thread, where barriers cost more than they
//!   save);
//! - [`MatmulVariant::Tiled`], shared-memory tiles with register blocking, the default on
//!   real GPUs.
//!
//! [`autotune::tune`] replaces the default on a device by measurement (both variants timed
//! once on a [`TUNE_SIZE`]² product, the winner cached per adapter in memory and on disk).
//!
//! Both take any m, n, k ≥ 1: loads clamp into the matrix and stores are masked. Transposes
//! are a choice of strides made here on the host, so the shaders' inner loops never branch.

use super::autotune::{self, Tunable, Variant};
use super::{grid_1d, same_device, to_u32, Dispatch, Kernel, Shader};
use crate::device::{Device, DeviceInfo};
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, SharedConstant};
use crate::tensor::Tensor;

const MATMUL: Shader = Shader {
    name: "matmul",
    source: include_str!("../../shaders/matmul.wgsl"),
};
const ROW_BLOCK: Kernel<MatmulParams> = Kernel::new(&MATMUL, "matmul_rowblock", [64, 1, 1]);
const TILED: Kernel<MatmulParams> = Kernel::new(&MATMUL, "matmul_tiled", [16, 16, 1]);

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 2] = [ROW_BLOCK.spec(), TILED.spec()];

/// Constants the shader declares and this module mirrors: the tile each variant computes.
pub(super) const CONSTANTS: [SharedConstant; 3] = [
    SharedConstant::u32(&MATMUL, "RB_ROWS", MatmulVariant::RowBlock.tile().0 as u32),
    SharedConstant::u32(&MATMUL, "RB_COLS", MatmulVariant::RowBlock.tile().1 as u32),
    SharedConstant::u32(&MATMUL, "TL_TILE", MatmulVariant::Tiled.tile().0 as u32),
];

/// The sizes of one batched product and how its operands are stored.
///
/// `C[b] = op(A[b]) · op(B[b])` for b in 0..batch, op(A) m×k, op(B) k×n, C m×n, all row-major.
/// A is stored [m, k], or [k, m] when `trans_a`; B is stored [k, n], or [n, k] when `trans_b`.
/// An operand that is not batched is one matrix shared by every batch item (batch stride 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatmulDims {
    /// Number of products (≥ 1).
    pub batch: usize,
    /// Rows of op(A) and of C.
    pub m: usize,
    /// Columns of op(B) and of C.
    pub n: usize,
    /// The inner dimension: columns of op(A), rows of op(B).
    pub k: usize,
    /// A is stored transposed, as [k, m].
    pub trans_a: bool,
    /// B is stored transposed, as [n, k].
    pub trans_b: bool,
    /// A holds `batch` matrices; otherwise one shared matrix.
    pub a_batched: bool,
    /// B holds `batch` matrices; otherwise one shared matrix.
    pub b_batched: bool,
}

impl MatmulDims {
    /// Elements of A's buffer the product reads.
    pub fn a_len(&self) -> usize {
        self.m * self.k * if self.a_batched { self.batch } else { 1 }
    }

    /// Elements of B's buffer the product reads.
    pub fn b_len(&self) -> usize {
        self.k * self.n * if self.b_batched { self.batch } else { 1 }
    }

    /// Elements of C the product writes.
    pub fn c_len(&self) -> usize {
        self.batch * self.m * self.n
    }

    /// Floating-point operations of the product, 2·batch·m·n·k (one multiply, one add per term).
    pub fn flops(&self) -> u64 {
        2 * (self.batch as u64) * (self.m as u64) * (self.n as u64) * (self.k as u64)
    }
}

/// Shape rule of [`matmul`]: `a` and `b` are [rows, cols] or [batch, rows, cols].
///
/// op(a) must be m×k and op(b) k×n (op transposes the last two dimensions when asked). A rank-2
/// operand is shared by every batch item of a rank-3 one; two rank-3 operands must have the
/// same batch. Returns the output shape, [m, n] or [batch, m, n] when either operand is rank 3,
/// and the [`MatmulDims`] the kernels take.
pub fn matmul_shape(
    a: &[usize],
    b: &[usize],
    trans_a: bool,
    trans_b: bool,
) -> Result<(Vec<usize>, MatmulDims)> {
    let mismatch = |why: &str| {
        Error::shape(
            "matmul",
            format!(
                "{why}: a {a:?}{} · b {b:?}{}",
                if trans_a { "ᵀ" } else { "" },
                if trans_b { "ᵀ" } else { "" }
            ),
        )
    };
    if !(2..=3).contains(&a.len()) || !(2..=3).contains(&b.len()) {
        return Err(mismatch("operands must have rank 2 or 3"));
    }
    if a.contains(&0) || b.contains(&0) {
        return Err(mismatch("operands must not have a zero dimension"));
    }
    let split = |s: &[usize], trans: bool| {
        let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
        let batch = (s.len() == 3).then_some(s[0]);
        if trans {
            (batch, cols, rows)
        } else {
            (batch, rows, cols)
        }
    };
    let (a_batch, m, k) = split(a, trans_a);
    let (b_batch, kb, n) = split(b, trans_b);
    if k != kb {
        return Err(mismatch(&format!(
            "inner dimensions differ ({k} columns of op(a), {kb} rows of op(b))"
        )));
    }
    let batch = match (a_batch, b_batch) {
        (Some(x), Some(y)) if x != y => {
            return Err(mismatch(&format!("batch sizes differ ({x} and {y})")))
        }
        (Some(x), _) | (None, Some(x)) => Some(x),
        (None, None) => None,
    };
    let shape = match batch {
        Some(batch) => vec![batch, m, n],
        None => vec![m, n],
    };
    let dims = MatmulDims {
        batch: batch.unwrap_or(1),
        m,
        n,
        k,
        trans_a,
        trans_b,
        a_batched: a_batch.is_some(),
        b_batched: b_batch.is_some(),
    };
    Ok((shape, dims))
}

/// Which matmul kernel to run; the right one depends on the adapter (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// Barrier-free, no workgroup memory: 64 lanes own 16 rows × 256 columns, each lane 4
    /// columns (64 apart) with 16 vec4 accumulators, one workgroup-uniform load of A per row
    /// and k step. Fast on CPU adapters (llvmpipe); correct but slow on GPUs.
    RowBlock,
    /// 64×64 tiles staged in workgroup memory 16 steps of k at a time, 4×4 outputs per
    /// thread. Fast on real GPUs; correct but slow on llvmpipe.
    Tiled,
}

impl Variant for MatmulVariant {
    const ALL: &'static [MatmulVariant] = &[MatmulVariant::RowBlock, MatmulVariant::Tiled];

    fn name(self) -> &'static str {
        match self {
            MatmulVariant::RowBlock => "RowBlock",
            MatmulVariant::Tiled => "Tiled",
        }
    }
}

impl MatmulVariant {
    fn kernel(self) -> &'static Kernel<MatmulParams> {
        match self {
            MatmulVariant::RowBlock => &ROW_BLOCK,
            MatmulVariant::Tiled => &TILED,
        }
    }

    /// Rows × columns of C one workgroup computes (the shader's constants, checked by the
    /// contract test).
    const fn tile(self) -> (usize, usize) {
        match self {
            MatmulVariant::RowBlock => (16, 256),
            MatmulVariant::Tiled => (64, 64),
        }
    }
}

/// The matmul kernel family, whose [`MatmulVariant`] is chosen per adapter by [`autotune`].
#[derive(Clone, Copy, Debug)]
pub struct Matmul;

impl Tunable for Matmul {
    type Variant = MatmulVariant;
    type Trial = Dispatch;
    const KERNEL: &'static str = "matmul";

    /// RowBlock on CPU adapters, Tiled otherwise.
    fn default_variant(info: &DeviceInfo) -> MatmulVariant {
        if info.is_cpu() {
            MatmulVariant::RowBlock
        } else {
            MatmulVariant::Tiled
        }
    }

    /// Every variant on one [`TUNE_SIZE`]² product.
    fn trials(device: &Device) -> Result<Vec<Dispatch>> {
        let n = TUNE_SIZE;
        let (_, dims) = matmul_shape(&[n, n], &[n, n], false, false)?;
        let data: Vec<f32> = (0..n * n).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
        let a = Tensor::from_slice(device, &[n, n], &data)?;
        let c = Tensor::zeros(device, &[n, n])?;
        MatmulVariant::ALL
            .iter()
            .map(|&v| matmul_dispatch_variant(device, &dims, a.buffer(), a.buffer(), c.buffer(), v))
            .collect()
    }
}

crate::wgsl_params! {
    struct MatmulParams {
        m: u32,
        n: u32,
        k: u32,
        tiles_n: u32,
        tiles_m: u32,
        total: u32,
        a_rs: u32,
        a_cs: u32,
        a_bs: u32,
        b_rs: u32,
        b_cs: u32,
        b_bs: u32,
        a_k_fast: u32,
        b_n_fast: u32,
    }
}

/// A launch of the variant [`autotune::variant`] picks for [`Matmul`] on `device`, computing
/// `c` from `a` and `b` as `dims` describe. Built once; record it every step.
pub fn matmul_dispatch(
    device: &Device,
    dims: &MatmulDims,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
) -> Result<Dispatch> {
    matmul_dispatch_variant(device, dims, a, b, c, autotune::variant::<Matmul>(device))
}

/// A launch of a chosen `variant` (for tests, benches and autotuning): as [`matmul_dispatch`].
///
/// Errors: a zero dimension, buffers smaller than `dims` need, more elements than a `u32`
/// index reaches, or more workgroups than the device can launch.
pub fn matmul_dispatch_variant(
    device: &Device,
    dims: &MatmulDims,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    variant: MatmulVariant,
) -> Result<Dispatch> {
    let kernel = variant.kernel();
    let op = kernel.spec().entry;
    let &MatmulDims { batch, m, n, k, .. } = dims;
    if [batch, m, n, k].contains(&0) {
        return Err(Error::shape(
            op,
            format!("every dimension must be at least 1, got {dims:?}"),
        ));
    }
    let count = |xs: [usize; 3]| {
        xs.iter()
            .try_fold(1usize, |acc, &x| acc.checked_mul(x))
            .unwrap_or(usize::MAX)
    };
    let a_batch = if dims.a_batched { batch } else { 1 };
    let b_batch = if dims.b_batched { batch } else { 1 };
    let lens = [
        count([a_batch, m, k]),
        count([b_batch, k, n]),
        count([batch, m, n]),
    ];
    for ((name, buffer), len) in [("a", a), ("b", b), ("c", c)].into_iter().zip(lens) {
        to_u32(&format!("{op}: operand {name} of {dims:?}"), len)?;
        let have = buffer.size() / 4;
        if have < len as u64 {
            return Err(Error::shape(
                op,
                format!("buffer {name} holds {have} f32 but {dims:?} needs {len}"),
            ));
        }
    }
    let (tile_m, tile_n) = variant.tile();
    let (tiles_m, tiles_n) = (m.div_ceil(tile_m), n.div_ceil(tile_n));
    let total = (tiles_m * tiles_n) as u64 * batch as u64;
    let grid = grid_1d(device, op, total, 1)?;
    let (m32, n32, k32) = (m as u32, n as u32, k as u32);
    // Strides of op(A) (m×k) and op(B) (k×n) in their stored row-major layouts.
    let (a_rs, a_cs) = if dims.trans_a { (1, m32) } else { (k32, 1) };
    let (b_rs, b_cs) = if dims.trans_b { (1, k32) } else { (n32, 1) };
    let params = MatmulParams {
        m: m32,
        n: n32,
        k: k32,
        tiles_n: tiles_n as u32,
        tiles_m: tiles_m as u32,
        total: to_u32(&format!("{op}: workgroups of {dims:?}"), total as usize)?,
        a_rs,
        a_cs,
        a_bs: if dims.a_batched { m32 * k32 } else { 0 },
        b_rs,
        b_cs,
        b_bs: if dims.b_batched { k32 * n32 } else { 0 },
        a_k_fast: u32::from(a_cs == 1),
        b_n_fast: u32::from(b_cs == 1),
    };
    kernel.dispatch(device, &params, &[a, b, c], grid)
}

/// op(a) · op(b) as a new tensor, on the kernel the device prefers. Shapes as in
/// [`matmul_shape`]: [m, k]·[k, n] → [m, n], batched when either operand is [batch, _, _].
pub fn matmul(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    let device = same_device("matmul", &[a, b])?;
    let (shape, dims) = matmul_shape(a.shape(), b.shape(), trans_a, trans_b)?;
    let c = Tensor::zeros(&device, &shape)?;
    let d = matmul_dispatch(&device, &dims, a.buffer(), b.buffer(), c.buffer())?;
    super::run(&device, &[&d])?;
    Ok(c)
}

/// Order of the square product [`Matmul`] is tuned on: large enough that launch overhead is
/// noise, small enough to take about a second on lavapipe.
pub const TUNE_SIZE: usize = 512;
