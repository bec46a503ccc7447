//! The Eigen layer: a dense layer whose effective weight is W' = W·h(WᵀW) (or h(WWᵀ)·W, on
//! the smaller side), recomputed from a warm-started GPU eigendecomposition at every step.

use super::{Linear, Scope};
use crate::error::{Error, Result};
use crate::graph::{Graph, Init, Plan, Value};
use crate::kernels::spectral::{SpectralFn, SpectrumScale};

/// What the layer does to the singular values σ of its weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EigenMode {
    /// Every singular value of W' lies in [lo, hi] (null directions stay 0).
    Clamp {
        /// Smallest singular value.
        lo: f32,
        /// Largest singular value.
        hi: f32,
    },
    /// Every (non-null) singular value of W' is 1: W' is the polar factor of W.
    Orthogonal,
    /// W' = W/σ_max(W): exact spectral normalisation, the largest singular value of W' is 1
    /// and the others keep their ratios. Its gradient needs a simple top singular value; where
    /// it is repeated (W = I) the layer takes the derivative along the solver's top
    /// eigenvector (see [`SpectralFn::Normalize`]).
    Normalize,
}

impl EigenMode {
    /// The spectral function g with W' = W·V·diag(g(λ))·Vᵀ, λ = σ².
    pub fn spectral_fn(self) -> SpectralFn {
        match self {
            EigenMode::Clamp { lo, hi } => SpectralFn::Clamp { lo, hi },
            EigenMode::Orthogonal => SpectralFn::Orthogonal,
            EigenMode::Normalize => SpectralFn::Normalize,
        }
    }
}

/// A dense layer y = x·W' + b whose effective weight W' has its singular values clamped or
/// normalised on the GPU at every step.
#[derive(Clone, Copy, Debug)]
pub struct EigenLayer {
    /// The raw weight W `[inputs, outputs]` and the bias.
    pub linear: Linear,
    /// The effective weight W', `[inputs, outputs]`.
    pub effective_weight: Value,
    /// The spectral-function node h(G) of the Gram matrix G (its eigenvalues are σ(W)²).
    pub spectral: Value,
    /// What the layer does to the spectrum.
    pub mode: EigenMode,
}

impl EigenLayer {
    /// Declares the layer's raw weight `weight` (filled by `init`) and `bias` in `scope`; W'
    /// is built in the graph at once, its nodes named `gram`, `spectral` and
    /// `effective_weight` in the scope. The Gram matrix is taken on the smaller side: WᵀW
    /// (`[outputs, outputs]`) when outputs ≤ inputs, WWᵀ (`[inputs, inputs]`) otherwise.
    pub fn new(
        scope: &mut Scope,
        inputs: usize,
        outputs: usize,
        mode: EigenMode,
        init: Init,
    ) -> Result<EigenLayer> {
        let linear = Linear::new(scope, inputs, outputs, init)?;
        let w = linear.weight;
        let small_side = outputs <= inputs;
        let gram = scope.matmul(w, w, small_side, !small_side)?;
        scope.name(gram, "gram")?;
        let h = scope.spectral_fn(gram, mode.spectral_fn())?;
        scope.name(h, "spectral")?;
        let effective_weight = if small_side {
            scope.matmul(w, h, false, false)?
        } else {
            scope.matmul(h, w, false, false)?
        };
        scope.name(effective_weight, "effective_weight")?;
        Ok(EigenLayer {
            linear,
            effective_weight,
            spectral: h,
            mode,
        })
    }

    /// x·W' + b for x `[batch, inputs]`.
    pub fn forward(&self, g: &mut Graph, x: Value) -> Result<Value> {
        let z = g.matmul(x, self.effective_weight, false, false)?;
        g.add(z, self.linear.bias)
    }

    /// Singular values of the raw weight W and of the effective weight W' at the last step,
    /// both ascending (read from the layer's eigendecomposition, on either executor).
    pub fn singular_values(&self, plan: &dyn Plan) -> Result<(Vec<f32>, Vec<f32>)> {
        let lambda = plan.eigenvalues(self.spectral)?;
        Ok(singular_values_from(self.mode.spectral_fn(), &lambda))
    }

    /// Mean Jacobi sweeps of this layer's solve at the last step.
    pub fn sweeps(&self, plan: &dyn Plan) -> Result<f32> {
        let s = plan.sweeps(self.spectral)?;
        if s.is_empty() {
            return Err(Error::InvalidArgument("no sweeps recorded".into()));
        }
        Ok(s.iter().sum::<u32>() as f32 / s.len() as f32)
    }
}

/// σ(W) = √λ and σ(W') = g(λ)·√λ from the Gram eigenvalues λ of W (for `Normalize`,
/// σ/σ_max: g = 1/√λ_max for every λ).
pub(crate) fn singular_values_from(f: SpectralFn, lambda: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let lam: Vec<f64> = lambda.iter().map(|&l| l.max(0.0) as f64).collect();
    let scale = SpectrumScale::of(f, &lam);
    let raw: Vec<f32> = lam.iter().map(|l| l.sqrt() as f32).collect();
    let effective = lam
        .iter()
        .enumerate()
        .map(|(i, &l)| (f.value(l, i, &scale) * l.sqrt()) as f32)
        .collect();
    (raw, effective)
}
