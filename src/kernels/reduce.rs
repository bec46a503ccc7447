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
//! cooperating lanes (a power of two ≤ 256), chosen per adapter by [`reduce_lanes`]:
//! - GPUs: L is the largest power of two ≤ len/8, so every lane has about 8 values or more;
//!   down columns L is also capped so that a workgroup of 256 spans min(32, cols) neighbouring
//!   columns, whose loads coalesce. One long row is one workgroup of 256 lanes: a row of 10^6
//!   values is correct and accurate, though a two-level split would keep more of a large GPU
//!   busy.
//! - CPU adapters (llvmpipe): as few lanes as the loop budget below allows, since barriers and
//!   workgroup memory cost more there than they save; up to 2^16 values per segment that is
//!   one lane (the barrier-free `*_serial` kernels).
//!
//! Loop budget: llvmpipe (Mesa 22.x, Vulkan and GL) silently ends every loop of an invocation
//! after 65535 loop iterations in total. A lane spends under 3 iterations per 8 values, so on
//! CPU adapters a lane may hold at most [`CPU_MAX_PER_LANE`] values.

use super::{grid_1d, to_u32, Dispatch, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{numel, Tensor};

const SHADER: Shader = Shader {
    name: "reduce",
    source: include_str!("../../shaders/reduce.wgsl"),
};
/// Invocations per workgroup of the cooperative kernels (`WG` in the shader).
const WORKGROUP: usize = 256;
/// Invocations per workgroup of the one-lane-per-segment kernels (`SERIAL_WG` in the shader).
const SERIAL_WORKGROUP: u32 = 64;
/// Neighbouring columns one workgroup spans when reducing down columns (if there are as many).
const COALESCED_COLUMNS: usize = 32;
/// On CPU adapters: the most values one lane may reduce (≈ 49k loop iterations of llvmpipe's
/// 65535 per invocation).
pub const CPU_MAX_PER_LANE: usize = 1 << 17;
/// On CPU adapters: the values per lane [`reduce_lanes`] aims for (half the budget).
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

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    nseg: u32,
    len: u32,
    seg_stride: u32,
    elem_stride: u32,
    lanes_log2: u32,
    seg_fast: u32,
    scale: f32,
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
/// `rows × cols` reduction along `axis` on `device` (see the module documentation).
pub fn reduce_lanes(device: &Device, axis: Axis, rows: usize, cols: usize) -> usize {
    let len = match axis {
        Axis::Rows => cols,
        Axis::Cols => rows,
    };
    if device.info().is_cpu() {
        return len
            .div_ceil(CPU_TARGET_PER_LANE)
            .next_power_of_two()
            .min(WORKGROUP);
    }
    let max_lanes = match axis {
        Axis::Rows => WORKGROUP,
        Axis::Cols => WORKGROUP / pow2_floor(cols.clamp(1, COALESCED_COLUMNS)),
    };
    pow2_floor((len / 8).max(1)).min(max_lanes)
}

/// A launch reducing the `rows × cols` row-major matrix in `x` into `out` (`rows` values for
/// `Axis::Rows`, `cols` for `Axis::Cols`), with the lanes [`reduce_lanes`] picks.
pub fn reduce_dispatch(
    device: &Device,
    op: ReduceOp,
    axis: Axis,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    let lanes = reduce_lanes(device, axis, rows, cols);
    reduce_dispatch_with(device, op, axis, x, out, rows, cols, lanes)
}

/// [`reduce_dispatch`] with `lanes` lanes per segment: a power of two from 1 to 256 and, on CPU
/// adapters, few enough values per lane (≤ [`CPU_MAX_PER_LANE`]). Tests use it to run every
/// geometry on every adapter.
#[allow(clippy::too_many_arguments)]
pub fn reduce_dispatch_with(
    device: &Device,
    op: ReduceOp,
    axis: Axis,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    rows: usize,
    cols: usize,
    lanes: usize,
) -> Result<Dispatch> {
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
    let entry = match (op, serial) {
        (ReduceOp::Sum | ReduceOp::Mean, false) => "sum",
        (ReduceOp::Sum | ReduceOp::Mean, true) => "sum_serial",
        (ReduceOp::SumSquares, false) => "sum_squares",
        (ReduceOp::SumSquares, true) => "sum_squares_serial",
        (ReduceOp::Max, false) => "max_value",
        (ReduceOp::Max, true) => "max_value_serial",
    };
    let grid = if serial {
        grid_1d(device, "reduce", nseg as u64, SERIAL_WORKGROUP)?
    } else {
        // One workgroup per 256/L segments, folded into 2-D past the dimension limit.
        let groups = nseg.div_ceil(WORKGROUP / lanes) as u64;
        grid_1d(
            device,
            "reduce",
            groups * WORKGROUP as u64,
            WORKGROUP as u32,
        )?
    };
    Dispatch::new(device, &SHADER, entry, &params, &[x, out], grid)
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
