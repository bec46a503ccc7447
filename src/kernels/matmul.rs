//! Batched matrix product `C[b] = op(A[b]) · op(B[b])`, op = identity or transpose, with an
//! operand optionally shared by every batch item, and an optional elementwise [`Epilogue`]
//! (bias, activation, or an activation's backward rule) applied as C is stored — the fusion
//! the graph planner uses to save a kernel launch and a round trip through memory.
//!
//! Five kernel variants ([`MatmulVariant`]):
//! - `RowBlock`, barrier-free and without workgroup memory, the choice on CPU adapters
//!   (llvmpipe runs a workgroup on one thread, where barriers cost more than they save);
//! - `Tiled`, 64×64 shared-memory tiles with 4×4 register blocks;
//! - `Large`, 128×128 tiles with 8×8 register blocks, aligned vec4 loads and double-buffered
//!   workgroup memory, for big products on real GPUs;
//! - `Skinny`, 32×32 tiles with k split four ways inside the workgroup, for the small
//!   batch × width products of a training step, where bigger tiles leave a GPU idle;
//! - `Subgroup`, 64×256 tiles where only op(B) goes through workgroup memory and op(A) passes
//!   between the lanes of a subgroup (`subgroupShuffle`): for devices with subgroup
//!   operations ([`Variant::available`]), and tried only there.
//!
//! Which one runs depends on the adapter and on the product's size: a product falls into a
//! [`MatmulClass`] by how many tiles its outputs fill, and each class has its own choice,
//! tuned per adapter through [`autotune`] ([`MatmulSmall`], [`MatmulMedium`],
//! [`MatmulLarge`]): the default is a rule on the adapter's type, and [`autotune::tune`]
//! replaces it by measuring every variant the device can run on a product typical of the
//! class.
//!
//! Every variant takes any m, n, k ≥ 1: loads clamp into the matrix and stores are masked.
//! Transposes are a choice of strides made here on the host, so the shaders' inner loops never
//! branch. The epilogue runs as a second pass of each thread over the outputs it stored, so it
//! never touches the accumulators (which then stay in registers) and costs nothing when there
//! is none.

use super::autotune::{self, Tunable, Variant};
use super::elementwise::{BinaryOp, UnaryOp};
use super::{grid_1d, same_device, to_u32, Dispatch, Kernel, Region, Shader};
use crate::device::{Device, DeviceInfo};
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, SharedConstant};
use crate::tensor::Tensor;

const MATMUL: Shader = Shader {
    name: "matmul",
    subgroups: false,
    source: concat!(
        include_str!("../../shaders/activation.wgsl"),
        include_str!("../../shaders/matmul_common.wgsl"),
        include_str!("../../shaders/matmul.wgsl")
    ),
};
/// The variant that needs subgroup operations, in a module of its own so that devices
/// without them never compile it.
const MATMUL_SUBGROUP: Shader = Shader {
    name: "matmul_subgroup",
    subgroups: true,
    source: concat!(
        include_str!("../../shaders/activation.wgsl"),
        include_str!("../../shaders/matmul_common.wgsl"),
        include_str!("../../shaders/matmul_subgroup.wgsl")
    ),
};
const ROW_BLOCK: Kernel<MatmulParams> = Kernel::new(&MATMUL, "matmul_rowblock", [64, 1, 1]);
const TILED: Kernel<MatmulParams> = Kernel::new(&MATMUL, "matmul_tiled", [16, 16, 1]);
const LARGE: Kernel<MatmulParams> = Kernel::new(&MATMUL, "matmul_large", [16, 16, 1]);
const SKINNY: Kernel<MatmulParams> = Kernel::new(&MATMUL, "matmul_skinny", [256, 1, 1]);
const SUBGROUP: Kernel<MatmulParams> =
    Kernel::new(&MATMUL_SUBGROUP, "matmul_subgroup", [256, 1, 1]);

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 5] = [
    ROW_BLOCK.spec(),
    TILED.spec(),
    LARGE.spec(),
    SKINNY.spec(),
    SUBGROUP.spec(),
];

/// Constants the shader declares and this module mirrors: the tile each variant computes and
/// the epilogue's codes.
pub(super) const CONSTANTS: [SharedConstant; 17] = [
    SharedConstant::u32(&MATMUL, "RB_ROWS", MatmulVariant::RowBlock.tile().0 as u32),
    SharedConstant::u32(&MATMUL, "RB_COLS", MatmulVariant::RowBlock.tile().1 as u32),
    SharedConstant::u32(&MATMUL, "TL_TILE", MatmulVariant::Tiled.tile().0 as u32),
    SharedConstant::u32(&MATMUL, "LG_TILE", MatmulVariant::Large.tile().0 as u32),
    SharedConstant::u32(&MATMUL, "SK_TILE", MatmulVariant::Skinny.tile().0 as u32),
    SharedConstant::u32(
        &MATMUL_SUBGROUP,
        "SG_ROWS",
        MatmulVariant::Subgroup.tile().0 as u32,
    ),
    SharedConstant::u32(
        &MATMUL_SUBGROUP,
        "SG_COLS",
        MatmulVariant::Subgroup.tile().1 as u32,
    ),
    SharedConstant::u32(&MATMUL, "EPI_BIAS", EPI_BIAS),
    SharedConstant::u32(&MATMUL, "EPI_PRE", EPI_PRE),
    SharedConstant::u32(&MATMUL, "EPI_COLSUMS", EPI_COLSUMS),
    SharedConstant::u32(&MATMUL, "MAP_NONE", MAP_NONE),
    SharedConstant::u32(&MATMUL, "MAP_RELU", MAP_RELU),
    SharedConstant::u32(&MATMUL, "MAP_TANH", MAP_TANH),
    SharedConstant::u32(&MATMUL, "MAP_GELU", MAP_GELU),
    SharedConstant::u32(&MATMUL, "MAP_RELU_BACKWARD", MAP_RELU_BACKWARD),
    SharedConstant::u32(&MATMUL, "MAP_TANH_BACKWARD", MAP_TANH_BACKWARD),
    SharedConstant::u32(&MATMUL, "MAP_GELU_BACKWARD", MAP_GELU_BACKWARD),
];

/// Epilogue flag: add the bias (one value per column of C).
const EPI_BIAS: u32 = 1;
/// Epilogue flag: store the value after the bias and before the map.
const EPI_PRE: u32 = 2;
/// Epilogue flag: store the column sums of op(B).
const EPI_COLSUMS: u32 = 4;
/// Epilogue maps, applied last.
const MAP_NONE: u32 = 0;
const MAP_RELU: u32 = 1;
const MAP_TANH: u32 = 2;
const MAP_GELU: u32 = 3;
const MAP_RELU_BACKWARD: u32 = 4;
const MAP_TANH_BACKWARD: u32 = 5;
const MAP_GELU_BACKWARD: u32 = 6;

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

/// Which matmul kernel to run; the right one depends on the adapter and the product's size
/// (see the module docs). Every variant computes the same products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// Barrier-free, no workgroup memory: 64 lanes own 16 rows × 256 columns, each lane 4
    /// columns (64 apart) with 16 vec4 accumulators, one workgroup-uniform load of A per row
    /// and k step. Fast on CPU adapters (llvmpipe); correct but slow on GPUs.
    RowBlock,
    /// 64×64 tiles staged in workgroup memory 16 steps of k at a time, 4×4 outputs per
    /// thread.
    Tiled,
    /// 128×128 tiles, 8×8 outputs per thread, panels of 8 steps of k loaded as aligned vec4
    /// where the layout allows and double-buffered in workgroup memory: the variant for big
    /// products on GPUs.
    Large,
    /// 32×32 tiles, k split four ways across the 256 threads of a workgroup: many workgroups
    /// for products too small to fill a GPU with bigger tiles.
    Skinny,
    /// 64×256 tiles, 8×8 outputs per thread: op(B) staged in workgroup memory 16 steps of k
    /// at a time, op(A) loaded into registers and handed between the lanes of a subgroup with
    /// `subgroupShuffle`, so that it needs neither workgroup memory nor its reads. Only on
    /// devices with subgroup operations of at most 32 lanes ([`Variant::available`]).
    Subgroup,
}

impl Variant for MatmulVariant {
    const ALL: &'static [MatmulVariant] = &[
        MatmulVariant::RowBlock,
        MatmulVariant::Tiled,
        MatmulVariant::Large,
        MatmulVariant::Skinny,
        MatmulVariant::Subgroup,
    ];

    fn name(self) -> &'static str {
        match self {
            MatmulVariant::RowBlock => "RowBlock",
            MatmulVariant::Tiled => "Tiled",
            MatmulVariant::Large => "Large",
            MatmulVariant::Skinny => "Skinny",
            MatmulVariant::Subgroup => "Subgroup",
        }
    }

    /// Every variant runs everywhere except `Subgroup`, which needs subgroup operations with
    /// subgroups of at most 32 lanes, since a subgroup must lie inside one of its row groups
    /// of 32 threads (NVIDIA and Intel GPUs and lavapipe qualify; AMD GPUs that may run
    /// wave64 do not, nor Metal, whose reported range reaches 64).
    fn available(self, info: &DeviceInfo) -> bool {
        match self {
            MatmulVariant::Subgroup => info.subgroup_sizes.is_some_and(|(_, most)| most <= 32),
            _ => true,
        }
    }
}

impl MatmulVariant {
    fn kernel(self) -> &'static Kernel<MatmulParams> {
        match self {
            MatmulVariant::RowBlock => &ROW_BLOCK,
            MatmulVariant::Tiled => &TILED,
            MatmulVariant::Large => &LARGE,
            MatmulVariant::Skinny => &SKINNY,
            MatmulVariant::Subgroup => &SUBGROUP,
        }
    }

    /// Rows × columns of C one workgroup computes (the shader's constants, checked by the
    /// contract test).
    pub const fn tile(self) -> (usize, usize) {
        match self {
            MatmulVariant::RowBlock => (16, 256),
            MatmulVariant::Tiled => (64, 64),
            MatmulVariant::Large => (128, 128),
            MatmulVariant::Skinny => (32, 32),
            MatmulVariant::Subgroup => (64, 256),
        }
    }
}

/// Output tiles a large GPU needs to keep every multiprocessor busy: about its multiprocessor
/// count (an H200 has 132). [`MatmulDims::class`] measures products in tiles of this many.
pub const FILL_TILES: usize = 128;

/// The size class of a product, by how well it fills a large GPU: each class has its own
/// tuned variant (a variant that wins on big products leaves most of a GPU idle on a small
/// one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulClass {
    /// Fewer outputs than [`FILL_TILES`] tiles of 64×64 hold: the batch × width products of
    /// a training step.
    Small,
    /// At least [`FILL_TILES`] tiles of 64×64 but fewer of 128×128.
    Medium,
    /// At least [`FILL_TILES`] tiles of 128×128 (2048² and up).
    Large,
}

impl MatmulDims {
    /// The size class whose tuned variant runs this product, by the number of outputs over
    /// the whole batch.
    pub fn class(&self) -> MatmulClass {
        let outputs = self.batch.saturating_mul(self.m).saturating_mul(self.n);
        if outputs >= FILL_TILES * 128 * 128 {
            MatmulClass::Large
        } else if outputs >= FILL_TILES * 64 * 64 {
            MatmulClass::Medium
        } else {
            MatmulClass::Small
        }
    }
}

impl MatmulClass {
    /// The variant for an adapter where none was measured: RowBlock on CPU adapters; on GPUs
    /// Skinny, Tiled and Large for small, medium and large products.
    fn default_variant(self, info: &DeviceInfo) -> MatmulVariant {
        match (info.is_cpu(), self) {
            (true, _) => MatmulVariant::RowBlock,
            (false, MatmulClass::Small) => MatmulVariant::Skinny,
            (false, MatmulClass::Medium) => MatmulVariant::Tiled,
            (false, MatmulClass::Large) => MatmulVariant::Large,
        }
    }

    /// The product (m, n, k) tuning times for this class: on a GPU a product typical of the
    /// class (for small ones, a layer of width 512 at batch 256); on a CPU adapter one that
    /// llvmpipe runs in well under a second.
    fn trial_size(self, info: &DeviceInfo) -> (usize, usize, usize) {
        match (self, info.is_cpu()) {
            (MatmulClass::Small, _) => (256, 512, 512),
            (MatmulClass::Medium, true) => (1024, 512, 128),
            (MatmulClass::Medium, false) => (1024, 1024, 1024),
            (MatmulClass::Large, true) => (TUNE_SIZE, TUNE_SIZE, TUNE_SIZE),
            (MatmulClass::Large, false) => (2048, 2048, 2048),
        }
    }

    /// One launch of every variant the device can run on this class's trial product.
    fn trials(self, device: &Device) -> Result<Vec<Dispatch>> {
        let (m, n, k) = self.trial_size(device.info());
        let (_, dims) = matmul_shape(&[m, k], &[k, n], false, false)?;
        let data =
            |len: usize| -> Vec<f32> { (0..len).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect() };
        let a = Tensor::from_slice(device, &[m, k], &data(m * k))?;
        let b = Tensor::from_slice(device, &[k, n], &data(k * n))?;
        let c = Tensor::zeros(device, &[m, n])?;
        MatmulVariant::available_on(device.info())
            .into_iter()
            .map(|v| matmul_dispatch_variant(device, &dims, a.buffer(), b.buffer(), c.buffer(), v))
            .collect()
    }

    /// The variant chosen for this class on `device`.
    fn variant(self, device: &Device) -> MatmulVariant {
        match self {
            MatmulClass::Small => autotune::variant::<MatmulSmall>(device),
            MatmulClass::Medium => autotune::variant::<MatmulMedium>(device),
            MatmulClass::Large => autotune::variant::<MatmulLarge>(device),
        }
    }
}

/// The tuned matmul choice for [`MatmulClass::Small`] products.
#[derive(Clone, Copy, Debug)]
pub struct MatmulSmall;

/// The tuned matmul choice for [`MatmulClass::Medium`] products.
#[derive(Clone, Copy, Debug)]
pub struct MatmulMedium;

/// The tuned matmul choice for [`MatmulClass::Large`] products.
#[derive(Clone, Copy, Debug)]
pub struct MatmulLarge;

/// The [`Tunable`] of one size class: its cache name, and its default and trials those of
/// the [`MatmulClass`].
macro_rules! class_tunable {
    ($ty:ident, $class:ident, $kernel:literal) => {
        impl Tunable for $ty {
            type Variant = MatmulVariant;
            type Trial = Dispatch;
            const KERNEL: &'static str = $kernel;

            fn default_variant(info: &DeviceInfo) -> MatmulVariant {
                MatmulClass::$class.default_variant(info)
            }

            fn trials(device: &Device) -> Result<Vec<Dispatch>> {
                MatmulClass::$class.trials(device)
            }
        }
    };
}

class_tunable!(MatmulSmall, Small, "matmul-small");
class_tunable!(MatmulMedium, Medium, "matmul-medium");
class_tunable!(MatmulLarge, Large, "matmul-large");

/// The variant [`matmul_dispatch`] runs for a product of `dims` on `device`: the choice for
/// its [`MatmulClass`].
pub fn matmul_variant(device: &Device, dims: &MatmulDims) -> MatmulVariant {
    dims.class().variant(device)
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
        a_vec: u32,
        b_vec: u32,
        epi_flags: u32,
        epi_map: u32,
    }
}

/// What a matmul does with each element of the product as it stores it into C.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Epilogue<'a> {
    /// C = op(A)·op(B).
    #[default]
    None,
    /// C = f(op(A)·op(B) + bias): a dense layer's forward pass. `bias` holds one value per
    /// column of C; `activation` (ReLU, tanh or GELU; none for the identity) is f; `pre`, when
    /// given, receives the argument of f for a backward pass that reads it.
    Forward {
        /// One value per column of C, added to every row.
        bias: Option<Region<'a>>,
        /// The activation f.
        activation: Option<UnaryOp>,
        /// Receives op(A)·op(B) + bias (C's shape).
        pre: Option<Region<'a>>,
    },
    /// C = rule(saved, op(A)·op(B)): an activation's backward rule applied to the product,
    /// which is the upstream gradient — e.g. tanh′ fused into the product dX = dZ·Wᵀ that feeds
    /// it. `saved` (C's shape) is the forward value the rule reads (the activation's input
    /// for ReLU and GELU, its output for tanh).
    Backward {
        /// [`BinaryOp::ReluBackward`], [`BinaryOp::TanhBackward`] or
        /// [`BinaryOp::GeluBackward`].
        rule: BinaryOp,
        /// The forward value the rule reads.
        saved: Region<'a>,
    },
    /// C = op(A)·op(B), and `sums` receives the column sums of op(B) (n values, summed over
    /// k): a dense layer's weight gradient Xᵀ·dZ and its bias gradient Σ_rows dZ in one
    /// launch. Unbatched products only (batch 1).
    ColumnSums {
        /// Receives Σ_p op(B)\[p\]\[j\] for every column j.
        sums: Region<'a>,
    },
}

impl<'a> Epilogue<'a> {
    /// The flags and map of the shader, the operand it reads (binding 4) and the value it
    /// writes besides C (binding 5); checks the operands' sizes against `dims`.
    #[allow(clippy::type_complexity)]
    fn encode(
        &self,
        dims: &MatmulDims,
    ) -> Result<(u32, u32, Option<Region<'a>>, Option<Region<'a>>)> {
        let fits = |what: &str, r: &Region<'_>, len: usize| {
            if r.len() < len as u64 {
                return Err(Error::shape(
                    "matmul epilogue",
                    format!("{what} holds {} f32 but {dims:?} needs {len}", r.len()),
                ));
            }
            Ok(())
        };
        match *self {
            Epilogue::None => Ok((0, MAP_NONE, None, None)),
            Epilogue::Forward {
                bias,
                activation,
                pre,
            } => {
                let map = match activation {
                    None => MAP_NONE,
                    Some(UnaryOp::Relu) => MAP_RELU,
                    Some(UnaryOp::Tanh) => MAP_TANH,
                    Some(UnaryOp::Gelu) => MAP_GELU,
                    Some(other) => {
                        return Err(Error::InvalidArgument(format!(
                            "matmul epilogue: {other:?} is not an activation"
                        )))
                    }
                };
                if let Some(b) = &bias {
                    fits("bias", b, dims.n)?;
                }
                if let Some(p) = &pre {
                    fits("pre-activation", p, dims.c_len())?;
                }
                let flags =
                    u32::from(bias.is_some()) * EPI_BIAS + u32::from(pre.is_some()) * EPI_PRE;
                Ok((flags, map, bias, pre))
            }
            Epilogue::Backward { rule, saved } => {
                let map = match rule {
                    BinaryOp::ReluBackward => MAP_RELU_BACKWARD,
                    BinaryOp::TanhBackward => MAP_TANH_BACKWARD,
                    BinaryOp::GeluBackward => MAP_GELU_BACKWARD,
                    other => {
                        return Err(Error::InvalidArgument(format!(
                            "matmul epilogue: {other:?} is not an activation's backward rule"
                        )))
                    }
                };
                fits("saved forward value", &saved, dims.c_len())?;
                Ok((0, map, Some(saved), None))
            }
            Epilogue::ColumnSums { sums } => {
                if dims.batch != 1 {
                    return Err(Error::shape(
                        "matmul epilogue",
                        format!("column sums of op(B) need an unbatched product, got {dims:?}"),
                    ));
                }
                fits("column sums", &sums, dims.n)?;
                Ok((EPI_COLSUMS, MAP_NONE, None, Some(sums)))
            }
        }
    }
}

/// Whether [`Epilogue::ColumnSums`] over k rows fits every variant on `device`: llvmpipe ends
/// an invocation silently after 65,535 loop iterations, and `RowBlock`'s lanes each sum 4
/// columns of k values besides their k steps of the product, so on CPU adapters k stays
/// under 8,192 (5·k loop iterations).
pub fn column_sums_fit(device: &Device, k: usize) -> bool {
    !device.info().is_cpu() || k <= 8192
}

/// A launch of the variant [`matmul_variant`] picks on `device`, computing `c` from `a` and `b`
/// as `dims` describe. Built once; record it every step.
pub fn matmul_dispatch<'a>(
    device: &Device,
    dims: &MatmulDims,
    a: impl Into<Region<'a>>,
    b: impl Into<Region<'a>>,
    c: impl Into<Region<'a>>,
) -> Result<Dispatch> {
    fused_matmul_dispatch(
        device,
        dims,
        [a.into(), b.into(), c.into()],
        Epilogue::None,
        None,
    )
}

/// A launch of a chosen `variant` (for tests, benches and autotuning): as [`matmul_dispatch`].
pub fn matmul_dispatch_variant<'a>(
    device: &Device,
    dims: &MatmulDims,
    a: impl Into<Region<'a>>,
    b: impl Into<Region<'a>>,
    c: impl Into<Region<'a>>,
    variant: MatmulVariant,
) -> Result<Dispatch> {
    fused_matmul_dispatch(
        device,
        dims,
        [a.into(), b.into(), c.into()],
        Epilogue::None,
        Some(variant),
    )
}

/// A launch computing `c` = epilogue(op(`a`)·op(`b`)) as `dims` and `epilogue` describe, with
/// `variant` or (`None`) the one [`matmul_variant`] picks (Large falls back to Tiled for an
/// operand of fewer than 4 values, which its vec4 view cannot bind).
///
/// Errors: a zero dimension, buffers smaller than `dims` need, more elements than a `u32`
/// index reaches, more workgroups than the device can launch, an epilogue that is not a
/// bias, an activation or an activation's backward rule, or a variant the device cannot run
/// ([`Variant::available`]).
pub fn fused_matmul_dispatch(
    device: &Device,
    dims: &MatmulDims,
    [a, b, c]: [Region<'_>; 3],
    epilogue: Epilogue<'_>,
    variant: Option<MatmulVariant>,
) -> Result<Dispatch> {
    let mut variant = variant.unwrap_or_else(|| matmul_variant(device, dims));
    if !variant.available(device.info()) {
        return Err(Error::InvalidArgument(format!(
            "matmul variant {variant:?} needs subgroup operations with at most 32 lanes; the \
             device is {}",
            device.info()
        )));
    }
    if variant == MatmulVariant::Large && (a.size() < 16 || b.size() < 16) {
        // Large binds its operands again as vec4 arrays, which need 16 bytes; operands of
        // fewer than 4 values (a product of a few elements) run Tiled instead.
        variant = MatmulVariant::Tiled;
    }
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
    for ((name, region), len) in [("a", a), ("b", b), ("c", c)].into_iter().zip(lens) {
        to_u32(&format!("{op}: operand {name} of {dims:?}"), len)?;
        if region.len() < len as u64 {
            return Err(Error::shape(
                op,
                format!(
                    "buffer {name} holds {} f32 but {dims:?} needs {len}",
                    region.len()
                ),
            ));
        }
    }
    let (epi_flags, epi_map, operand, pre) = epilogue.encode(dims)?;
    let (tile_m, tile_n) = variant.tile();
    let (tiles_m, tiles_n) = (m.div_ceil(tile_m), n.div_ceil(tile_n));
    let total = (tiles_m * tiles_n) as u64 * batch as u64;
    let grid = grid_1d(device, op, total, 1)?;
    let (m32, n32, k32) = (m as u32, n as u32, k as u32);
    // Strides of op(A) (m×k) and op(B) (k×n) in their stored row-major layouts.
    let (a_rs, a_cs) = if dims.trans_a { (1, m32) } else { (k32, 1) };
    let (b_rs, b_cs) = if dims.trans_b { (1, k32) } else { (n32, 1) };
    let (a_bs, b_bs) = (
        if dims.a_batched { m32 * k32 } else { 0 },
        if dims.b_batched { k32 * n32 } else { 0 },
    );
    // vec4 loads need the contiguous dimension's stride 1 and every other stride a multiple of 4.
    let vec4_ok = |fast_stride: u32, other: u32, batch_stride: u32| {
        fast_stride == 1 && other.is_multiple_of(4) && batch_stride.is_multiple_of(4)
    };
    let a_k_fast = a_cs == 1;
    let b_n_fast = b_cs == 1;
    let a_vec = if a_k_fast {
        vec4_ok(a_cs, a_rs, a_bs)
    } else {
        vec4_ok(a_rs, a_cs, a_bs)
    };
    let b_vec = if b_n_fast {
        vec4_ok(b_cs, b_rs, b_bs)
    } else {
        vec4_ok(b_rs, b_cs, b_bs)
    };
    let params = MatmulParams {
        m: m32,
        n: n32,
        k: k32,
        tiles_n: tiles_n as u32,
        tiles_m: tiles_m as u32,
        total: to_u32(&format!("{op}: workgroups of {dims:?}"), total as usize)?,
        a_rs,
        a_cs,
        a_bs,
        b_rs,
        b_cs,
        b_bs,
        a_k_fast: u32::from(a_k_fast),
        b_n_fast: u32::from(b_n_fast),
        a_vec: u32::from(a_vec),
        b_vec: u32::from(b_vec),
        epi_flags,
        epi_map,
    };
    // Bindings the epilogue does not use are bound to operands already there: the shader's
    // flags keep it from touching them.
    let mut bindings = vec![
        (1, a),
        (2, b),
        (3, c),
        (4, operand.unwrap_or(a)),
        (5, pre.unwrap_or(c)),
    ];
    if variant == MatmulVariant::Large {
        bindings.extend([(6, a), (7, b)]);
    }
    kernel.dispatch_bound(device, &params, &bindings, grid)
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

/// Order of the square product the large class is tuned on where the adapter is a CPU: large
/// enough that launch overhead is noise, small enough to take about a second on lavapipe.
pub const TUNE_SIZE: usize = 512;
