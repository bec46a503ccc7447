//! Elementwise maps: unary (scale, relu, tanh, gelu), broadcast (`expand`), binary (add,
//! sub, mul with a broadcast right operand, and the activations' backward rules) and the
//! range copy that moves a slice out of or into a stack.
//!
//! The activations and their backward rules propagate NaN on every adapter: a NaN input (or
//! upstream gradient) gives a NaN output, so a diverged network never reads as finite.

use super::{same_device, to_u32, Dispatch, Kernel, Region, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, SharedConstant};
use crate::tensor::Tensor;

// The activations and their NaN-propagating backward rules come from activation.wgsl, which
// the matmul epilogue shares.
const UNARY: Shader = Shader {
    name: "elementwise_unary",
    subgroups: false,
    source: concat!(
        include_str!("../../shaders/activation.wgsl"),
        include_str!("../../shaders/elementwise_unary.wgsl")
    ),
};
const BINARY: Shader = Shader {
    name: "elementwise_binary",
    subgroups: false,
    source: concat!(
        include_str!("../../shaders/activation.wgsl"),
        include_str!("../../shaders/elementwise_binary.wgsl")
    ),
};
const COPY: Shader = Shader {
    name: "copy",
    subgroups: false,
    source: include_str!("../../shaders/copy.wgsl"),
};
/// Invocations per workgroup of every elementwise kernel.
const WG: [u32; 3] = [64, 1, 1];

const SCALE: Kernel<UnaryParams> = Kernel::new(&UNARY, "scale", WG);
const RELU: Kernel<UnaryParams> = Kernel::new(&UNARY, "relu", WG);
const TANH: Kernel<UnaryParams> = Kernel::new(&UNARY, "tanh_fwd", WG);
const GELU: Kernel<UnaryParams> = Kernel::new(&UNARY, "gelu", WG);
const EXPAND: Kernel<UnaryParams> = Kernel::new(&UNARY, "expand", WG);
const ADD: Kernel<BinaryParams> = Kernel::new(&BINARY, "add", WG);
const SUB: Kernel<BinaryParams> = Kernel::new(&BINARY, "sub", WG);
const MUL: Kernel<BinaryParams> = Kernel::new(&BINARY, "mul", WG);
const RELU_BACKWARD: Kernel<BinaryParams> = Kernel::new(&BINARY, "relu_backward", WG);
const TANH_BACKWARD: Kernel<BinaryParams> = Kernel::new(&BINARY, "tanh_backward", WG);
const GELU_BACKWARD: Kernel<BinaryParams> = Kernel::new(&BINARY, "gelu_backward", WG);
const COPY_RANGE: Kernel<CopyParams> = Kernel::new(&COPY, "copy_range", WG);

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 12] = [
    SCALE.spec(),
    RELU.spec(),
    TANH.spec(),
    GELU.spec(),
    EXPAND.spec(),
    ADD.spec(),
    SUB.spec(),
    MUL.spec(),
    RELU_BACKWARD.spec(),
    TANH_BACKWARD.spec(),
    GELU_BACKWARD.spec(),
    COPY_RANGE.spec(),
];

/// The shaders' workgroup size constant, which their flat index uses.
pub(super) const CONSTANTS: [SharedConstant; 3] = [
    SharedConstant::u32(&UNARY, "WG", WG[0]),
    SharedConstant::u32(&BINARY, "WG", WG[0]),
    SharedConstant::u32(&COPY, "WG", WG[0]),
];

/// A unary elementwise map y = f(x).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// y = alpha · x.
    Scale(f32),
    /// y = max(x, 0) (NaN stays NaN).
    Relu,
    /// y = tanh(x).
    Tanh,
    /// GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))).
    Gelu,
}

impl UnaryOp {
    fn kernel(self) -> &'static Kernel<UnaryParams> {
        match self {
            UnaryOp::Scale(_) => &SCALE,
            UnaryOp::Relu => &RELU,
            UnaryOp::Tanh => &TANH,
            UnaryOp::Gelu => &GELU,
        }
    }
}

/// A binary elementwise map out = f(a, b); `b` may be broadcast along the rows of `a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b.
    Add,
    /// a − b.
    Sub,
    /// a ∘ b.
    Mul,
    /// dx of ReLU: a = x, b = dy; dy where x > 0, 0 where x ≤ 0, NaN where x or dy is NaN.
    ReluBackward,
    /// dx of tanh: a = y = tanh(x), b = dy.
    TanhBackward,
    /// dx of GELU: a = x, b = dy.
    GeluBackward,
}

impl BinaryOp {
    fn kernel(self) -> &'static Kernel<BinaryParams> {
        match self {
            BinaryOp::Add => &ADD,
            BinaryOp::Sub => &SUB,
            BinaryOp::Mul => &MUL,
            BinaryOp::ReluBackward => &RELU_BACKWARD,
            BinaryOp::TanhBackward => &TANH_BACKWARD,
            BinaryOp::GeluBackward => &GELU_BACKWARD,
        }
    }
}

/// How an operand of `len` elements is read against `n` output elements: element
/// `(i / inner) % len` for output `i`. It covers equal shapes, a row vector repeated down the
/// rows of a matrix (a bias) and a column vector repeated across its columns (one value per
/// row, as the gradient of a row reduction needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// Elements of the operand.
    pub len: usize,
    /// How many consecutive outputs read the same element.
    pub inner: usize,
}

impl Broadcast {
    /// The operand has as many elements as the output.
    pub fn full(n: usize) -> Broadcast {
        Broadcast { len: n, inner: 1 }
    }

    /// A row vector of `cols` elements repeated down every row.
    pub fn row_vector(cols: usize) -> Broadcast {
        Broadcast {
            len: cols,
            inner: 1,
        }
    }

    /// A column vector of `rows` elements, each repeated across the `cols` columns of its row.
    pub fn column_vector(rows: usize, cols: usize) -> Broadcast {
        Broadcast {
            len: rows,
            inner: cols,
        }
    }

    /// The operand index read by output `i`.
    pub fn index(&self, i: usize) -> usize {
        (i / self.inner) % self.len
    }

    /// Checks that the pattern tiles `n` outputs exactly.
    fn check(&self, op: &str, n: usize) -> Result<(u32, u32)> {
        let span = self.len.checked_mul(self.inner).unwrap_or(0);
        if span == 0 || !n.is_multiple_of(span) {
            return Err(Error::shape(
                op,
                format!(
                    "broadcast of {} elements (inner {}) does not tile {n} outputs",
                    self.len, self.inner
                ),
            ));
        }
        Ok((to_u32(op, self.len)?, to_u32(op, self.inner)?))
    }
}

crate::wgsl_params! {
    struct UnaryParams {
        n: u32,
        alpha: f32,
        inner: u32,
        len: u32,
    }
}

crate::wgsl_params! {
    struct BinaryParams {
        n: u32,
        b_len: u32,
        b_inner: u32,
    }
}

crate::wgsl_params! {
    struct CopyParams {
        n: u32,
        src_offset: u32,
        dst_offset: u32,
    }
}

/// Shape rule of a binary op: `b` has `a`'s shape, or is a suffix of it (broadcast along the
/// leading dimensions, e.g. a bias `[cols]` against `[rows, cols]`). Returns `a`'s shape.
pub fn binary_shape(op: BinaryOp, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    if a == b || (b.len() < a.len() && a.ends_with(b)) {
        Ok(a.to_vec())
    } else {
        Err(Error::shape(
            &format!("{op:?}"),
            format!("right operand {b:?} must equal left {a:?} or be a trailing suffix of it"),
        ))
    }
}

/// A launch of `op` reading `n` elements of `x` into `y`.
pub fn unary_dispatch<'a>(
    device: &Device,
    op: UnaryOp,
    x: impl Into<Region<'a>>,
    y: impl Into<Region<'a>>,
    n: usize,
) -> Result<Dispatch> {
    let x: Region<'a> = x.into();
    let y: Region<'a> = y.into();
    let alpha = if let UnaryOp::Scale(a) = op { a } else { 1.0 };
    let kernel = op.kernel();
    let n32 = to_u32(kernel.spec().entry, n)?;
    let params = UnaryParams {
        n: n32,
        alpha,
        inner: 1,
        len: n32,
    };
    let grid = kernel.grid(device, n as u64)?;
    kernel.dispatch(device, &params, &[x, y], grid)
}

/// A launch writing `n` elements of `y` = `alpha`·x broadcast as `from` says.
pub fn expand_dispatch<'a>(
    device: &Device,
    x: impl Into<Region<'a>>,
    y: impl Into<Region<'a>>,
    n: usize,
    from: Broadcast,
    alpha: f32,
) -> Result<Dispatch> {
    let x: Region<'a> = x.into();
    let y: Region<'a> = y.into();
    let (len, inner) = from.check("expand", n)?;
    let params = UnaryParams {
        n: to_u32("expand", n)?,
        alpha,
        inner,
        len,
    };
    let grid = EXPAND.grid(device, n as u64)?;
    EXPAND.dispatch(device, &params, &[x, y], grid)
}

/// A launch of `op` over `n` elements of `a` with `b` read as `b_from` says.
pub fn binary_dispatch<'a>(
    device: &Device,
    op: BinaryOp,
    a: impl Into<Region<'a>>,
    b: impl Into<Region<'a>>,
    out: impl Into<Region<'a>>,
    n: usize,
    b_from: Broadcast,
) -> Result<Dispatch> {
    let a: Region<'a> = a.into();
    let b: Region<'a> = b.into();
    let out: Region<'a> = out.into();
    let kernel = op.kernel();
    let entry = kernel.spec().entry;
    let (b_len, b_inner) = b_from.check(entry, n)?;
    let params = BinaryParams {
        n: to_u32(entry, n)?,
        b_len,
        b_inner,
    };
    let grid = kernel.grid(device, n as u64)?;
    kernel.dispatch(device, &params, &[a, b, out], grid)
}

/// A launch copying `n` elements of `x` from element `src_offset` into `y` from element
/// `dst_offset` (both ranges must lie inside their regions).
pub fn copy_dispatch<'a>(
    device: &Device,
    x: impl Into<Region<'a>>,
    src_offset: usize,
    y: impl Into<Region<'a>>,
    dst_offset: usize,
    n: usize,
) -> Result<Dispatch> {
    let x: Region<'a> = x.into();
    let y: Region<'a> = y.into();
    for (what, region, offset) in [("source", &x, src_offset), ("destination", &y, dst_offset)] {
        if offset
            .checked_add(n)
            .is_none_or(|end| end as u64 > region.len())
        {
            return Err(Error::InvalidArgument(format!(
                "copy of {n} elements from element {offset}: the {what} holds {}",
                region.len()
            )));
        }
    }
    let params = CopyParams {
        n: to_u32("copy", n)?,
        src_offset: to_u32("copy", src_offset)?,
        dst_offset: to_u32("copy", dst_offset)?,
    };
    let grid = COPY_RANGE.grid(device, n as u64)?;
    COPY_RANGE.dispatch(device, &params, &[x, y], grid)
}

/// y = op(x), a new tensor of `x`'s shape.
pub fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    let device = x.device();
    let y = Tensor::zeros(device, x.shape())?;
    let d = unary_dispatch(device, op, x.buffer(), y.buffer(), x.len())?;
    super::run(device, &[&d])?;
    Ok(y)
}

/// y = `alpha`·x broadcast to `shape` as `from` says (x must have `from.len` elements).
pub fn expand(x: &Tensor, shape: &[usize], from: Broadcast, alpha: f32) -> Result<Tensor> {
    if x.len() != from.len {
        return Err(Error::shape(
            "expand",
            format!(
                "input {:?} has {} elements, broadcast expects {}",
                x.shape(),
                x.len(),
                from.len
            ),
        ));
    }
    let y = Tensor::zeros(x.device(), shape)?;
    let d = expand_dispatch(x.device(), x.buffer(), y.buffer(), y.len(), from, alpha)?;
    super::run(x.device(), &[&d])?;
    Ok(y)
}

/// out = op(a, b), a new tensor of `a`'s shape (`b` broadcast along leading dimensions).
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let device = same_device(op.kernel().spec().entry, &[a, b])?;
    let shape = binary_shape(op, a.shape(), b.shape())?;
    let out = Tensor::zeros(&device, &shape)?;
    let d = binary_dispatch(
        &device,
        op,
        a.buffer(),
        b.buffer(),
        out.buffer(),
        a.len(),
        Broadcast::row_vector(b.len()),
    )?;
    super::run(&device, &[&d])?;
    Ok(out)
}
