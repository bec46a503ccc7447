//! Reductions (sum, max, mean, sum of squares) of a tensor viewed as a `[rows, cols]` matrix,
//! along its rows or down its columns.
//!
//! The matrix view: `cols` is the last dimension and `rows` the product of the others, so a
//! whole-tensor reduction is a reduction of the tensor reshaped to `[1, n]` along `Axis::Rows`.
//!
//! Sums are pairwise (see `shaders/reduce.wgsl`): an element passes through at most about
//! log2(n) + 2 roundings, so |error| ≤ (⌈log2 n⌉ + 2)·ε·Σ|x| — not the n·ε of a running sum.
//!
//! Geometry: both axes reduce *segments* (rows, or columns) of `len` values, each with L
//! cooperating lanes (a power of two ≤ 256), as [`reduce_lanes`] computes from the
//! [`LanePolicy`] chosen for [`Reduce`] through [`autotune`] (by measurement where tuned, else
//! by adapter type):
//! - [`LanePolicy::Spread`] (default on GPUs): L is the largest power of two ≤ len/8, so every
//!   lane has about 8 values or more; down columns L is also capped so that a workgroup of 256
//!   spans min(32, cols) neighbouring columns, whose loads coalesce. One long row is one
//!   workgroup of 256 lanes: a row of 10^6 values is correct and accurate, though a two-level
//!   split would keep more of a large GPU busy.
//! - [`LanePolicy::Fewest`] (default on CPU adapters such as llvmpipe): as few lanes as the
//!   loop budget below allows, since barriers and workgroup memory cost more there than they
//!   save; up to 2^16 values per segment that is one lane (the barrier-free `reduce_serial`
//!   kernel).
//!
//! The op (sum, sum of squares, max) is the shader's `OP` override constant: one pipeline per
//! op and entry point.
//!
//! Loop budget: llvmpipe (Mesa 22.x, Vulkan and GL) silently ends every loop of an invocation
//! after 65535 loop iterations in total. A lane spends under 3 iterations per 8 values, so on
//! CPU adapters a lane may hold at most [`CPU_MAX_PER_LANE`] values, whichever policy runs.

use super::autotune::{self, Tunable, Variant};
use super::{to_u32, Dispatch, Kernel, LanePolicy, Region, Shader};
use crate::device::{Device, DeviceInfo};
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, Override, SharedConstant};
use crate::tensor::{numel, Tensor};

const SHADER: Shader = Shader {
    name: "reduce",
    subgroups: false,
    source: include_str!("../../shaders/reduce.wgsl"),
};
/// Invocations per workgroup of the cooperative kernels (`WG` in the shader).
const WORKGROUP: usize = 256;
/// Invocations per workgroup of the one-lane-per-segment kernels (`SERIAL_WG` in the shader).
const SERIAL_WORKGROUP: u32 = 64;

/// Values of the shader's `OP` override constant.
const OP_SUM: u32 = 0;
const OP_SUM_SQUARES: u32 = 1;
const OP_MAX: u32 = 2;
const SUM: &[Override] = &[Override::u32("OP", OP_SUM)];
const SUM_SQUARES: &[Override] = &[Override::u32("OP", OP_SUM_SQUARES)];
const MAX: &[Override] = &[Override::u32("OP", OP_MAX)];

const COOPERATIVE: Kernel<Params> = Kernel::new(&SHADER, "reduce", [WORKGROUP as u32, 1, 1]);
const SERIAL: Kernel<Params> = Kernel::new(&SHADER, "reduce_serial", [SERIAL_WORKGROUP, 1, 1]);
const COOPERATIVE_SUM: Kernel<Params> = COOPERATIVE.with_overrides(SUM);
const COOPERATIVE_SUM_SQUARES: Kernel<Params> = COOPERATIVE.with_overrides(SUM_SQUARES);
const COOPERATIVE_MAX: Kernel<Params> = COOPERATIVE.with_overrides(MAX);
const SERIAL_SUM: Kernel<Params> = SERIAL.with_overrides(SUM);
const SERIAL_SUM_SQUARES: Kernel<Params> = SERIAL.with_overrides(SUM_SQUARES);
const SERIAL_MAX: Kernel<Params> = SERIAL.with_overrides(MAX);

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 6] = [
    COOPERATIVE_SUM.spec(),
    COOPERATIVE_SUM_SQUARES.spec(),
    COOPERATIVE_MAX.spec(),
    SERIAL_SUM.spec(),
    SERIAL_SUM_SQUARES.spec(),
    SERIAL_MAX.spec(),
];

/// The op ids and workgroup sizes, as the shader declares them.
pub(super) const CONSTANTS: [SharedConstant; 5] = [
    SharedConstant::u32(&SHADER, "OP_SUM", OP_SUM),
    SharedConstant::u32(&SHADER, "OP_SUMSQ", OP_SUM_SQUARES),
    SharedConstant::u32(&SHADER, "OP_MAX", OP_MAX),
    SharedConstant::u32(&SHADER, "WG", WORKGROUP as u32),
    SharedConstant::u32(&SHADER, "SERIAL_WG", SERIAL_WORKGROUP),
];
/// Neighbouring columns one workgroup spans when reducing down columns (if there are as many).
const COALESCED_COLUMNS: usize = 32;
/// On CPU adapters: the most values one lane may reduce (≈ 49k loop iterations of llvmpipe's
/// 65535 per invocation).
pub const CPU_MAX_PER_LANE: usize = 1 << 17;
/// The values per lane [`LanePolicy::Fewest`] aims for (half the CPU adapters' budget).
const CPU_TARGET_PER_LANE: usize = 1 << 16;

/// What a reduction computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Σ x (pairwise).
    Sum,
    /// max x. NaN handling follows the driver's `max`; check inputs with `finite` if it matters.
    Max,
    /// Σ x / count (pairwise sum, then one multiplication by 1/count).
    Mean,
    /// Σ x² (pairwise), e.g. for norms.
    SumSquares,
}

/// Which way a `[rows, cols]` matrix is reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Reduce each row along the last dimension: `[rows]` values.
    Rows,
    /// Reduce each column over the rows: `[cols]` values (e.g. a bias gradient).
    Cols,
}

crate::wgsl_params! {
    struct Params {
        nseg: u32,
        len: u32,
        seg_stride: u32,
        elem_stride: u32,
        lanes_log2: u32,
        seg_fast: u32,
        scale: f32,
    }
}

/// The reduction kernels, whose [`LanePolicy`] is chosen per adapter by [`autotune`].
#[derive(Clone, Copy, Debug)]
pub struct Reduce;

/// Order of the square matrix whose rows [`Reduce`] is tuned on.
const TUNE_SIZE: usize = 1024;

impl Tunable for Reduce {
    type Variant = LanePolicy;
    type Trial = Dispatch;
    const KERNEL: &'static str = "reduce";

    fn default_variant(info: &DeviceInfo) -> LanePolicy {
        LanePolicy::default_for(info)
    }

    /// Row sums of a square matrix of order `TUNE_SIZE` with the lanes of each policy.
    fn trials(device: &Device) -> Result<Vec<Dispatch>> {
        let n = TUNE_SIZE;
        let data: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 - 6.0).collect();
        let x = Tensor::from_slice(device, &[n, n], &data)?;
        let out = Tensor::zeros(device, &[n])?;
        let (op, axis) = (ReduceOp::Sum, Axis::Rows);
        LanePolicy::ALL
            .iter()
            .map(|&policy| {
                let lanes = policy_lanes(policy, device.info(), axis, n, n);
                reduce_dispatch_with(device, op, axis, x.buffer(), out.buffer(), n, n, lanes)
            })
            .collect()
    }
}

/// The largest power of two ≤ `v` (`v` ≥ 1).
fn pow2_floor(v: usize) -> usize {
    1 << v.ilog2()
}

/// The `[rows, cols]` matrix view of a shape: `cols` is the last dimension, `rows` the product
/// of the others (1 for a vector).
pub fn matrix_view(op: &str, shape: &[usize]) -> Result<(usize, usize)> {
    let n = numel(op, shape)?;
    let cols = shape[shape.len() - 1];
    Ok((n / cols, cols))
}

/// Shape rule: `[rows]` for `Axis::Rows`, `[cols]` for `Axis::Cols` (see [`matrix_view`]).
pub fn reduce_shape(axis: Axis, x: &[usize]) -> Result<Vec<usize>> {
    let (rows, cols) = matrix_view("reduce", x)?;
    Ok(vec![match axis {
        Axis::Rows => rows,
        Axis::Cols => cols,
    }])
}

/// The number of lanes (a power of two, 1 to 256) that cooperate on one segment of a
/// `rows × cols` reduction along `axis` on `device`, under the [`LanePolicy`] chosen for
/// [`Reduce`] there (see the module documentation).
pub fn reduce_lanes(device: &Device, axis: Axis, rows: usize, cols: usize) -> usize {
    let policy = autotune::variant::<Reduce>(device);
    policy_lanes(policy, device.info(), axis, rows, cols)
}

/// The lanes `policy` gives a `rows × cols` reduction along `axis` on the adapter `info`: on
/// CPU adapters never fewer than the loop budget needs.
fn policy_lanes(
    policy: LanePolicy,
    info: &DeviceInfo,
    axis: Axis,
    rows: usize,
    cols: usize,
) -> usize {
    let len = match axis {
        Axis::Rows => cols,
        Axis::Cols => rows,
    };
    let fewest = len
        .div_ceil(CPU_TARGET_PER_LANE)
        .next_power_of_two()
        .min(WORKGROUP);
    let lanes = match policy {
        LanePolicy::Fewest => fewest,
        LanePolicy::Spread => {
            let max_lanes = match axis {
                Axis::Rows => WORKGROUP,
                Axis::Cols => WORKGROUP / pow2_floor(cols.clamp(1, COALESCED_COLUMNS)),
            };
            pow2_floor((len / 8).max(1)).min(max_lanes)
        }
    };
    if info.is_cpu() {
        lanes.max(fewest)
    } else {
        lanes
    }
}

/// A launch reducing the `rows × cols` row-major matrix in `x` into `out` (`rows` values for
/// `Axis::Rows`, `cols` for `Axis::Cols`), with the lanes [`reduce_lanes`] picks.
pub fn reduce_dispatch<'a>(
    device: &Device,
    op: ReduceOp,
    axis: Axis,
    x: impl Into<Region<'a>>,
    out: impl Into<Region<'a>>,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    let x: Region<'a> = x.into();
    let out: Region<'a> = out.into();
    let lanes = reduce_lanes(device, axis, rows, cols);
    reduce_dispatch_with(device, op, axis, x, out, rows, cols, lanes)
}

/// [`reduce_dispatch`] with `lanes` lanes per segment: a power of two from 1 to 256 and, on CPU
/// adapters, few enough values per lane (≤ [`CPU_MAX_PER_LANE`]). Tests use it to run every
/// geometry on every adapter.
#[allow(clippy::too_many_arguments)]
pub fn reduce_dispatch_with<'a>(
    device: &Device,
    op: ReduceOp,
    axis: Axis,
    x: impl Into<Region<'a>>,
    out: impl Into<Region<'a>>,
    rows: usize,
    cols: usize,
    lanes: usize,
) -> Result<Dispatch> {
    let x: Region<'a> = x.into();
    let out: Region<'a> = out.into();
    if rows == 0 || cols == 0 {
        return Err(Error::Empty {
            op: format!("reduce {op:?} {axis:?}"),
            shape: vec![rows, cols],
        });
    }
    let n = rows.saturating_mul(cols);
    to_u32("reduce: rows × cols", n)?;
    // Segments: rows (contiguous values) or columns (values `cols` apart).
    let (nseg, len, seg_stride, elem_stride) = match axis {
        Axis::Rows => (rows, cols, cols, 1),
        Axis::Cols => (cols, rows, 1, cols),
    };
    if !lanes.is_power_of_two() || lanes > WORKGROUP {
        return Err(Error::InvalidArgument(format!(
            "reduce: {lanes} lanes per segment; expected a power of two from 1 to {WORKGROUP}"
        )));
    }
    if device.info().is_cpu() && len.div_ceil(lanes) > CPU_MAX_PER_LANE {
        return Err(Error::InvalidArgument(format!(
            "reduce: {lanes} lanes for segments of {len} values exceed {CPU_MAX_PER_LANE} values \
             per lane, past llvmpipe's loop budget"
        )));
    }
    let params = Params {
        nseg: nseg as u32,
        len: len as u32,
        seg_stride: seg_stride as u32,
        elem_stride: elem_stride as u32,
        lanes_log2: lanes.ilog2(),
        seg_fast: (axis == Axis::Cols) as u32,
        scale: match op {
            ReduceOp::Mean => (1.0 / len as f64) as f32,
            _ => 1.0,
        },
    };
    let serial = lanes == 1;
    let kernel = match (op, serial) {
        (ReduceOp::Sum | ReduceOp::Mean, false) => COOPERATIVE_SUM,
        (ReduceOp::Sum | ReduceOp::Mean, true) => SERIAL_SUM,
        (ReduceOp::SumSquares, false) => COOPERATIVE_SUM_SQUARES,
        (ReduceOp::SumSquares, true) => SERIAL_SUM_SQUARES,
        (ReduceOp::Max, false) => COOPERATIVE_MAX,
        (ReduceOp::Max, true) => SERIAL_MAX,
    };
    let grid = if serial {
        kernel.grid(device, nseg as u64)?
    } else {
        // One workgroup per 256/L segments, folded into 2-D past the dimension limit.
        let groups = nseg.div_ceil(WORKGROUP / lanes) as u64;
        kernel.grid(device, groups * WORKGROUP as u64)?
    };
    kernel.dispatch(device, &params, &[x, out], grid)
}

/// Reduces `x` (viewed as `[rows, cols]`, see [`matrix_view`]) along `axis`: a new tensor of
/// shape `[rows]` or `[cols]`. For a whole-tensor reduction pass `x.reshape(&[1, n])`.
pub fn reduce(op: ReduceOp, axis: Axis, x: &Tensor) -> Result<Tensor> {
    let device = x.device();
    let (rows, cols) = matrix_view("reduce", x.shape())?;
    let out = Tensor::zeros(device, &reduce_shape(axis, x.shape())?)?;
    let d = reduce_dispatch(device, op, axis, x.buffer(), out.buffer(), rows, cols)?;
    super::run(device, &[&d])?;
    Ok(out)
}
