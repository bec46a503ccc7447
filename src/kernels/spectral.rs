//! Spectral functions of symmetric matrices, H = h(G) = V diag(g(λ)) Vᵀ, and their
//! divided-difference (Daleckii–Krein / Loewner) backward.
//!
//! Two kernels, both batched over `[batch, n]` spectra with eigenvalues in ascending order
//! (the solver's order, so λ_max of item b is `values[b, n−1]`):
//! - [`scale_columns`]: `out[b,i,j] = V[b,i,j]·g(λ[b,j])`; the forward is then H = out·Vᵀ;
//! - [`loewner_product`]: `out[b,i,j] = Lw_ij(λ[b])·(S[b,i,j] + S[b,j,i])/2` (plus a diagonal
//!   term for [`SpectralFn::Shrink`] and one at (n−1, n−1) for [`SpectralFn::Normalize`], see
//!   there); with S = Vᵀ·dH·V the backward is dG = V·out·Vᵀ.
//!
//! One invocation per element, O(1) work each — except for `Shrink`, whose invocations each
//! sum the n eigenvalues for the mean (and the diagonal ones the n terms of τ), and the last
//! diagonal invocation of `Normalize`, which sums the n diagonal entries of S: O(n) each, the
//! order of the n×n×n matmul that follows anyway.
//!
//! The scalar math — g, the guard near 0 and the divided differences — lives here once, in
//! [`SpectralFn`], [`SpectrumScale`] and generic over [`Real`]; the reference
//! (`reference::spectral`) calls it and `shaders/spectral.wgsl` mirrors it line by line.
//!
//! # The guard near 0
//! Every g except `TopK` is evaluated at λ̂ = max(λ, λ_floor), λ_floor = [`FLOOR_REL`] ·
//! λ̂_max with λ̂_max = max(λ_max, [`LAMBDA_TINY`]): a raw eigenvalue is never divided by
//! (`Normalize`'s g = λ̂_max^(−1/2) does not depend on λ at all). Eigenvalues at or below
//! the floor belong to W's null space (W·v = 0 for G = WᵀW), where g only has to be finite.
//! The function actually computed is therefore g̃(λ) = g(max(λ, λ_floor)), and the backward
//! is the *exact* Loewner matrix of g̃: its derivative is 0 below the floor (g̃ is constant
//! there), and a pair straddling the floor gets (g̃_i − g̃_j)/(λ_i − λ_j) with the raw
//! eigenvalues in the denominator, computed as r_ij·D(λ̂_i, λ̂_j) with
//! r_ij = (λ̂_i − λ̂_j)/(λ_i − λ_j) ∈ [0, 1] (1 when both are above the floor, 0 when both are
//! at or below it) and D the divided difference of g at the floored values. This avoids the
//! huge g′(λ_floor) ~ λ_floor^(−3/2) a plain "g′ at max(λ, λ_floor)" would put on null
//! directions. The floor itself (its dependence on λ_max) is a guard and is *not*
//! differentiated: it only acts on the block of h(G) spanned by null directions, which W
//! annihilates in W·h(WᵀW), so the EigenLayer's gradient is exact.
//!
//! # Divided differences
//! D(a, b) = (g(a) − g(b))/(a − b) with D(a, a) = g′(a) is computed without cancellation
//! where g is a power: for s = √a, t = √b, (1/s − 1/t)/(a − b) = −1/(s·t·(s + t)), scaled by
//! `lo` or `hi` where both lie in the same clamped region of `Clamp`, exactly 0 where both lie
//! in its middle region, and the same with a + eps for `InvSqrt`; for `Shrink`,
//! D = c/((a + c)(b + c)); for `Normalize`, whose g is constant at fixed λ_max, D = 0. Only
//! `Clamp` pairs in different regions use the plain quotient, and only when
//! |a − b| > rtol·max(a, b); closer pairs take g′ at the midpoint. With rounding
//! error ε in g the quotient is off by ~ε·g/|a − b| ≤ (ε/rtol)·g/a, while the midpoint rule
//! is off by ~g‴·|a − b|² ~ rtol²·g/a for smooth g: rtol = ε^(1/3) balances the two (see
//! [`rtol`]: 4.9e-3 in f32, 6.1e-6 in f64), leaving a relative error ~ε^(2/3). (Across a
//! kink of `Clamp` the midpoint rule picks a one-sided derivative; g is not differentiable
//! there.)

use super::{same_device, to_u32, Dispatch, Kernel, Region, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, SharedConstant};
use crate::scalar::Real;
use crate::tensor::Tensor;

const SHADER: Shader = Shader {
    name: "spectral",
    subgroups: false,
    source: include_str!("../../shaders/spectral.wgsl"),
};
const SCALE_COLUMNS: Kernel<Params> = Kernel::new(&SHADER, "scale_columns", [64, 1, 1]);
const LOEWNER_PRODUCT: Kernel<Params> = Kernel::new(&SHADER, "loewner_product", [64, 1, 1]);

/// The kernels of this module, for the contract checks.
pub(super) const KERNELS: [KernelSpec; 2] = [SCALE_COLUMNS.spec(), LOEWNER_PRODUCT.spec()];

/// The mode ids the shader switches on and its workgroup size, as the shader declares them.
pub(super) const CONSTANTS: [SharedConstant; 7] = [
    SharedConstant::u32(&SHADER, "WG", SCALE_COLUMNS.spec().workgroup_size[0]),
    SharedConstant::u32(
        &SHADER,
        "CLAMP",
        SpectralFn::Clamp { lo: 0.0, hi: 0.0 }.mode_id(),
    ),
    SharedConstant::u32(&SHADER, "ORTHOGONAL", SpectralFn::Orthogonal.mode_id()),
    SharedConstant::u32(
        &SHADER,
        "INV_SQRT",
        SpectralFn::InvSqrt { eps: 0.0 }.mode_id(),
    ),
    SharedConstant::u32(&SHADER, "TOP_K", SpectralFn::TopK { k: 0 }.mode_id()),
    SharedConstant::u32(
        &SHADER,
        "SHRINK",
        SpectralFn::Shrink { keep: 0.0 }.mode_id(),
    ),
    SharedConstant::u32(&SHADER, "NORMALIZE", SpectralFn::Normalize.mode_id()),
];

/// Eigenvalues at or below `FLOOR_REL · max(λ_max, LAMBDA_TINY)` are treated as that floor
/// (null directions of W). 1e-6 relative: in f32 a computed zero eigenvalue of a Gram matrix
/// comes out as ~1e-7·λ_max, below it, while a genuine singular value σ ≥ 1e-3·σ_max is above.
pub const FLOOR_REL: f64 = 1e-6;

/// Absolute lower bound on the λ_max used for the floor (and on the mean used by `Shrink`):
/// keeps g and its derivative finite in f32 even for G = 0 (g′ ≤ (1e-18)^(−3/2) = 1e27).
pub const LAMBDA_TINY: f64 = 1e-12;

/// Relative gap below which a divided difference is replaced by the derivative at the
/// midpoint (or, for `TopK` across the k boundary, by 0): ε^(1/3) of `T` — 4.9e-3 for f32,
/// 6.1e-6 for f64 — which balances the cancellation error of the quotient, ε/rtol, against
/// the error of the midpoint rule, rtol² (module docs).
pub fn rtol<T: Real>() -> T {
    T::default_epsilon().cbrt()
}

/// A spectral function g applied to the eigenvalues of a symmetric matrix: H = V g(Λ) Vᵀ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SpectralFn {
    /// g(λ) = clamp(√λ, lo, hi)/√λ: every singular value of W·h(WᵀW) lands in [lo, hi]
    /// (null directions stay 0). Requires 0 ≤ lo ≤ hi, hi > 0.
    Clamp {
        /// Lower bound of the singular values.
        lo: f32,
        /// Upper bound of the singular values.
        hi: f32,
    },
    /// g(λ) = 1/√λ: W·h(WᵀW) is the polar factor of W, every singular value 1.
    Orthogonal,
    /// g(λ) = (λ + eps)^(−1/2): ZCA whitening with a covariance G. Requires eps ≥ 0.
    InvSqrt {
        /// Regulariser added to every eigenvalue.
        eps: f32,
    },
    /// g = 1 on the k largest eigenvalues (indices ≥ n − k of the ascending order), 0
    /// elsewhere: the projector onto the top-k principal subspace. It depends on ranks, not
    /// values, so it needs no floor. Its Loewner matrix is 1/(λ_i − λ_j) between the groups
    /// and 0 within a group. When the gap at the k boundary is below `rtol` relative the
    /// projector is not differentiable (it is not even defined at a tie): such pairs get 0, as
    /// if the two eigenvalues were in one group. Requires k ≤ n.
    TopK {
        /// Number of leading components kept.
        k: u32,
    },
    /// g(λ) = λ/(λ + c), c = keep·μ with μ = tr(G)/n the mean eigenvalue: components with
    /// eigenvalue well below keep·μ are damped towards 0, those well above pass almost
    /// unchanged. The threshold is relative to the mean rather than to λ_max because the mean
    /// is a smooth function of G (dμ/dG = I/n) while λ_max is not differentiable where the top
    /// eigenvalue is repeated (G = I, the identity-initialised case): the backward is exact,
    /// including the dependence through μ, which adds τ·I with
    /// τ = (1/n)·Σ_k (Vᵀ sym(dH) V)_kk·∂g(λ_k)/∂μ inside V(…)Vᵀ. (For μ ≤ `LAMBDA_TINY`,
    /// c = keep·LAMBDA_TINY and no gradient flows through μ.) Requires keep ≥ 0.
    Shrink {
        /// Threshold relative to the mean eigenvalue.
        keep: f32,
    },
    /// g(λ) = λ̂_max^(−1/2), λ̂_max = max(λ_max, `LAMBDA_TINY`), for every eigenvalue: h(G) =
    /// I/√λ_max, so W·h(WᵀW) = W/σ_max(W) — exact spectral normalisation (the largest singular
    /// value becomes 1, the others keep their ratios), not a power-iteration estimate. At fixed
    /// λ_max g is constant, so its Loewner matrix is 0; the whole gradient flows through λ_max,
    /// dλ_max/dG = v₁v₁ᵀ (v₁ its unit eigenvector), which puts
    /// −½·λ̂_max^(−3/2)·Σ_k (Vᵀ sym(dH) V)_kk = −½·λ̂_max^(−3/2)·tr(dH) at position (n−1, n−1)
    /// inside V(…)Vᵀ (see [`SpectralFn::top_sensitivity`]); for λ_max ≤ `LAMBDA_TINY` no
    /// gradient flows. λ_max is not differentiable where the top eigenvalue is repeated (W = I,
    /// orthogonal W): there the formula uses v₁v₁ᵀ for the solver's choice of top eigenvector
    /// v₁ — a subgradient of the convex λ_max, so the result is finite, and it is the exact
    /// one-sided derivative in the directions that keep v₁ on top (e.g. G + t·v₁v₁ᵀ, t > 0).
    Normalize,
}

/// The per-spectrum constants g depends on besides λ itself, computed from one ascending
/// spectrum by [`SpectrumScale::of`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpectrumScale<T> {
    /// λ̂_max = max(λ_max, LAMBDA_TINY): the guarded largest eigenvalue (`Normalize`'s scale).
    pub top: T,
    /// λ_floor = FLOOR_REL · λ̂_max.
    pub floor: T,
    /// `Shrink`'s c = keep · max(μ, LAMBDA_TINY) (0 for the other modes).
    pub shrink_c: T,
    /// dc/dμ: `keep` while μ > LAMBDA_TINY, else 0 (0 for the other modes).
    pub dc_dmu: T,
    /// Length of the spectrum (`TopK` needs it to tell the groups apart).
    pub n: usize,
}

impl<T: Real> SpectrumScale<T> {
    /// The constants of one spectrum `values`, ascending (λ_max is the last value).
    ///
    /// # Panics
    /// If `values` is empty.
    pub fn of(f: SpectralFn, values: &[T]) -> Self {
        let n = values.len();
        let tiny = T::c(LAMBDA_TINY);
        let top = values[n - 1].max(tiny);
        let floor = T::c(FLOOR_REL) * top;
        let (shrink_c, dc_dmu) = match f {
            SpectralFn::Shrink { keep } => {
                // Sequential sum, as the shader does, so f32 results agree to the bit.
                let mut sum = T::zero();
                for &v in values {
                    sum += v;
                }
                let mu = sum / T::c(n as f64);
                let keep = T::c(keep as f64);
                let dc = if mu > tiny { keep } else { T::zero() };
                (keep * mu.max(tiny), dc)
            }
            _ => (T::zero(), T::zero()),
        };
        SpectrumScale {
            top,
            floor,
            shrink_c,
            dc_dmu,
            n,
        }
    }
}

/// −1/(√a·√b·(√a + √b)) = (1/√a − 1/√b)/(a − b), also right for a = b (= −½a^(−3/2)).
fn inv_sqrt_dd<T: Real>(a: T, b: T) -> T {
    let (s, t) = (a.sqrt(), b.sqrt());
    -T::one() / (s * t * (s + t))
}

impl SpectralFn {
    /// The mode id the shader switches on.
    const fn mode_id(self) -> u32 {
        match self {
            SpectralFn::Clamp { .. } => 0,
            SpectralFn::Orthogonal => 1,
            SpectralFn::InvSqrt { .. } => 2,
            SpectralFn::TopK { .. } => 3,
            SpectralFn::Shrink { .. } => 4,
            SpectralFn::Normalize => 5,
        }
    }

    /// Checks the parameters (finite, in range) for spectra of length `n`.
    pub fn validate(&self, n: usize) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(format!("{self:?}: {what}")));
        match *self {
            SpectralFn::Clamp { lo, hi } => {
                // lo², hi² must be normal f32 numbers: the regions are decided on λ.
                if !(lo.is_finite() && hi.is_finite() && lo >= 0.0 && hi > 0.0 && lo <= hi) {
                    return bad("needs finite 0 ≤ lo ≤ hi with hi > 0".into());
                }
                if hi > 1e18 || (lo > 0.0 && lo < 1e-18) {
                    return bad("lo and hi must lie in [1e-18, 1e18] (or lo = 0)".into());
                }
            }
            SpectralFn::Orthogonal | SpectralFn::Normalize => {}
            SpectralFn::InvSqrt { eps } => {
                if !(eps.is_finite() && eps >= 0.0) {
                    return bad("needs a finite eps ≥ 0".into());
                }
            }
            SpectralFn::TopK { k } => {
                if k as usize > n {
                    return bad(format!("k = {k} exceeds the matrix size n = {n}"));
                }
            }
            SpectralFn::Shrink { keep } => {
                if !(keep.is_finite() && keep >= 0.0) {
                    return bad("needs a finite keep ≥ 0".into());
                }
            }
        }
        Ok(())
    }

    /// `Clamp`'s region of a floored eigenvalue x: −1 below lo², +1 above hi², 0 between.
    /// Decided on λ (not on √λ) so that f32 code on any device makes the same decision.
    fn clamp_region<T: Real>(lo: T, hi: T, x: T) -> i8 {
        if x < lo * lo {
            -1
        } else if x > hi * hi {
            1
        } else {
            0
        }
    }

    /// g at a floored eigenvalue x (not for `TopK`, whose g depends on the index).
    fn g_floored<T: Real>(&self, x: T, s: &SpectrumScale<T>) -> T {
        match *self {
            SpectralFn::Clamp { lo, hi } => {
                let (lo, hi) = (T::c(lo as f64), T::c(hi as f64));
                match Self::clamp_region(lo, hi, x) {
                    -1 => lo / x.sqrt(),
                    1 => hi / x.sqrt(),
                    _ => T::one(),
                }
            }
            SpectralFn::Orthogonal => T::one() / x.sqrt(),
            SpectralFn::InvSqrt { eps } => T::one() / (x + T::c(eps as f64)).sqrt(),
            SpectralFn::Shrink { .. } => x / (x + s.shrink_c),
            SpectralFn::Normalize => T::one() / s.top.sqrt(),
            SpectralFn::TopK { .. } => unreachable!("TopK is evaluated by index"),
        }
    }

    /// D(a, b) = (g(a) − g(b))/(a − b), D(a, a) = g′(a), at floored a, b (not for `TopK`).
    fn dd_floored<T: Real>(&self, a: T, b: T, s: &SpectrumScale<T>) -> T {
        match *self {
            SpectralFn::Clamp { lo, hi } => {
                let (lo, hi) = (T::c(lo as f64), T::c(hi as f64));
                let (ra, rb) = (Self::clamp_region(lo, hi, a), Self::clamp_region(lo, hi, b));
                if ra == rb {
                    match ra {
                        -1 => lo * inv_sqrt_dd(a, b),
                        1 => hi * inv_sqrt_dd(a, b),
                        _ => T::zero(),
                    }
                } else if (a - b).abs() > rtol::<T>() * a.max(b) {
                    (self.g_floored(a, s) - self.g_floored(b, s)) / (a - b)
                } else {
                    let m = (a + b) * T::c(0.5);
                    self.dd_floored(m, m, s)
                }
            }
            SpectralFn::Orthogonal => inv_sqrt_dd(a, b),
            SpectralFn::InvSqrt { eps } => {
                let e = T::c(eps as f64);
                inv_sqrt_dd(a + e, b + e)
            }
            SpectralFn::Shrink { .. } => {
                let c = s.shrink_c;
                c / ((a + c) * (b + c))
            }
            SpectralFn::Normalize => T::zero(),
            SpectralFn::TopK { .. } => unreachable!("TopK is evaluated by index"),
        }
    }

    /// g̃(λ) of the eigenvalue `lambda` at position `index` of its ascending spectrum (the
    /// index matters only for `TopK`).
    pub fn value<T: Real>(&self, lambda: T, index: usize, s: &SpectrumScale<T>) -> T {
        match *self {
            SpectralFn::TopK { k } => {
                if index + k as usize >= s.n {
                    T::one()
                } else {
                    T::zero()
                }
            }
            _ => self.g_floored(lambda.max(s.floor), s),
        }
    }

    /// g̃′(λ): the derivative of the guarded function, 0 at or below the floor and for
    /// `TopK`. Equal to [`SpectralFn::loewner`] on the diagonal.
    pub fn derivative<T: Real>(&self, lambda: T, index: usize, s: &SpectrumScale<T>) -> T {
        self.loewner(lambda, lambda, index, index, s)
    }

    /// The Loewner entry Lw_ij = (g̃_i − g̃_j)/(λ_i − λ_j) of eigenvalues `li`, `lj` at
    /// positions `i`, `j` of their ascending spectrum, with the guards of the module docs.
    pub fn loewner<T: Real>(&self, li: T, lj: T, i: usize, j: usize, s: &SpectrumScale<T>) -> T {
        if let SpectralFn::TopK { .. } = *self {
            let (gi, gj) = (self.value(li, i, s), self.value(lj, j, s));
            let scale = li.abs().max(lj.abs()).max(s.floor);
            return if gi != gj && (li - lj).abs() > rtol::<T>() * scale {
                (gi - gj) / (li - lj)
            } else {
                T::zero()
            };
        }
        let (above_i, above_j) = (li > s.floor, lj > s.floor);
        if !above_i && !above_j {
            return T::zero();
        }
        let (a, b) = (li.max(s.floor), lj.max(s.floor));
        let d = self.dd_floored(a, b, s);
        if above_i && above_j {
            d
        } else {
            d * ((a - b) / (li - lj))
        }
    }

    /// ∂g̃(λ)/∂μ for `Shrink` (μ the mean eigenvalue): −(dc/dμ)·λ̂/(λ̂ + c)²; 0 otherwise.
    pub fn mean_sensitivity<T: Real>(&self, lambda: T, s: &SpectrumScale<T>) -> T {
        match self {
            SpectralFn::Shrink { .. } => {
                let x = lambda.max(s.floor);
                let d = x + s.shrink_c;
                -(s.dc_dmu * x) / (d * d)
            }
            _ => T::zero(),
        }
    }

    /// ∂g̃(λ_k)/∂λ_max for `Normalize` (the same for every k): −½·λ̂_max^(−3/2) while
    /// λ_max > `LAMBDA_TINY`, else 0 (g̃ is then the constant `LAMBDA_TINY`^(−1/2)); 0 for
    /// the other modes, whose floor's dependence on λ_max is a guard and not differentiated.
    pub fn top_sensitivity<T: Real>(&self, s: &SpectrumScale<T>) -> T {
        match self {
            SpectralFn::Normalize if s.top > T::c(LAMBDA_TINY) => inv_sqrt_dd(s.top, s.top),
            _ => T::zero(),
        }
    }
}

crate::wgsl_params! {
    struct Params {
        batch: u32,
        n: u32,
        mode: u32,
        k: u32,
        lo: f32,
        hi: f32,
        eps: f32,
        keep: f32,
        floor_rel: f32,
        rtol: f32,
        tiny: f32,
    }
}

impl Params {
    fn new(f: SpectralFn, batch: u32, n: u32) -> Params {
        let (mut lo, mut hi, mut eps, mut keep, mut k) = (0.0, 0.0, 0.0, 0.0, 0);
        match f {
            SpectralFn::Clamp { lo: l, hi: h } => (lo, hi) = (l, h),
            SpectralFn::Orthogonal | SpectralFn::Normalize => {}
            SpectralFn::InvSqrt { eps: e } => eps = e,
            SpectralFn::TopK { k: kk } => k = kk,
            SpectralFn::Shrink { keep: c } => keep = c,
        }
        Params {
            batch,
            n,
            mode: f.mode_id(),
            k,
            lo,
            hi,
            eps,
            keep,
            floor_rel: FLOOR_REL as f32,
            rtol: rtol::<f32>(),
            tiny: LAMBDA_TINY as f32,
        }
    }
}

/// Shape rule of both kernels: `values` is `[.., n]` (leading dimensions = the batch, none for
/// a single spectrum) and `matrices` is `values`' shape followed by n, i.e. `[.., n, n]`.
/// Returns (batch, n); the output has `matrices`' shape.
pub fn spectral_shape(op: &str, values: &[usize], matrices: &[usize]) -> Result<(usize, usize)> {
    let ok = !values.is_empty()
        && matrices.len() == values.len() + 1
        && matrices[..values.len()] == *values
        && matrices[values.len()] == values[values.len() - 1];
    if !ok {
        return Err(Error::shape(
            op,
            format!("eigenvalues {values:?} need matrices of shape {values:?} + [n] = [.., n, n], got {matrices:?}"),
        ));
    }
    let n = values[values.len() - 1];
    let batch: usize = values[..values.len() - 1].iter().product();
    if n == 0 || batch == 0 {
        return Err(Error::Empty {
            op: op.to_string(),
            shape: matrices.to_vec(),
        });
    }
    Ok((batch, n))
}

/// Checks sizes and buffers common to both dispatch builders.
fn dispatch(
    device: &Device,
    kernel: &Kernel<Params>,
    f: SpectralFn,
    [values, matrices, out]: [Region<'_>; 3],
    batch: usize,
    n: usize,
) -> Result<Dispatch> {
    let entry = kernel.spec().entry;
    if batch == 0 || n == 0 {
        return Err(Error::Empty {
            op: entry.to_string(),
            shape: vec![batch, n, n],
        });
    }
    f.validate(n)?;
    let elements = batch
        .checked_mul(n)
        .and_then(|bn| bn.checked_mul(n))
        .ok_or_else(|| Error::shape(entry, format!("batch {batch} × {n} × {n} overflows")))?;
    let elements = to_u32(entry, elements)?;
    for (what, buffer, len) in [
        ("eigenvalues", values, batch * n),
        ("matrices", matrices, elements as usize),
        ("output", out, elements as usize),
    ] {
        if buffer.size() < 4 * len as u64 {
            return Err(Error::shape(
                entry,
                format!(
                    "{what} buffer holds {} bytes, batch {batch} × n {n} needs {}",
                    buffer.size(),
                    4 * len
                ),
            ));
        }
    }
    let params = Params::new(f, batch as u32, n as u32);
    let grid = kernel.grid(device, elements as u64)?;
    kernel.dispatch(device, &params, &[values, matrices, out], grid)
}

/// A launch of `out[b,i,j] = vectors[b,i,j]·g̃(values[b,j])` over `batch` spectra of length
/// `n` (values ascending, eigenvectors in the columns of `vectors`). H = out·Vᵀ then follows
/// by a matmul.
pub fn scale_columns_dispatch<'a>(
    device: &Device,
    f: SpectralFn,
    values: impl Into<Region<'a>>,
    vectors: impl Into<Region<'a>>,
    out: impl Into<Region<'a>>,
    batch: usize,
    n: usize,
) -> Result<Dispatch> {
    let values: Region<'a> = values.into();
    let vectors: Region<'a> = vectors.into();
    let out: Region<'a> = out.into();
    dispatch(device, &SCALE_COLUMNS, f, [values, vectors, out], batch, n)
}

/// A launch of `out[b,i,j] = Lw_ij(values[b])·(s[b,i,j] + s[b,j,i])/2` (+ τ_b on the diagonal
/// for `Shrink`, + `tr(s[b])`·∂g/∂λ_max at (n−1, n−1) for `Normalize`) over `batch` spectra of
/// length `n` (values ascending).
pub fn loewner_product_dispatch<'a>(
    device: &Device,
    f: SpectralFn,
    values: impl Into<Region<'a>>,
    s: impl Into<Region<'a>>,
    out: impl Into<Region<'a>>,
    batch: usize,
    n: usize,
) -> Result<Dispatch> {
    let values: Region<'a> = values.into();
    let s: Region<'a> = s.into();
    let out: Region<'a> = out.into();
    dispatch(device, &LOEWNER_PRODUCT, f, [values, s, out], batch, n)
}

/// V·g̃(Λ) column-scaled, a new tensor of `vectors`' shape: `values` `[.., n]` ascending,
/// `vectors` `[.., n, n]` (see [`spectral_shape`]).
pub fn scale_columns(f: SpectralFn, values: &Tensor, vectors: &Tensor) -> Result<Tensor> {
    let device = same_device("scale_columns", &[values, vectors])?;
    let (batch, n) = spectral_shape("scale_columns", values.shape(), vectors.shape())?;
    let out = Tensor::zeros(&device, vectors.shape())?;
    let d = scale_columns_dispatch(
        &device,
        f,
        values.buffer(),
        vectors.buffer(),
        out.buffer(),
        batch,
        n,
    )?;
    super::run(&device, &[&d])?;
    Ok(out)
}

/// Lw ∘ sym(S) (+ τ·I for `Shrink`, + the λ_max term for `Normalize`), a new tensor of `s`'
/// shape: `values` `[.., n]` ascending, `s` `[.., n, n]` (see [`spectral_shape`]).
pub fn loewner_product(f: SpectralFn, values: &Tensor, s: &Tensor) -> Result<Tensor> {
    let device = same_device("loewner_product", &[values, s])?;
    let (batch, n) = spectral_shape("loewner_product", values.shape(), s.shape())?;
    let out = Tensor::zeros(&device, s.shape())?;
    let d = loewner_product_dispatch(
        &device,
        f,
        values.buffer(),
        s.buffer(),
        out.buffer(),
        batch,
        n,
    )?;
    super::run(&device, &[&d])?;
    Ok(out)
}
