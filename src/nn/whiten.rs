//! The principal-component layer: per group of features, the batch covariance is
//! eigendecomposed on the GPU and the centred activations are whitened (ZCA), projected onto
//! their top principal components (PCA) or have their weak components damped (shrink).

use super::Scope;
use crate::error::{Error, Result};
use crate::graph::{Init, Plan, Role, Value};
use crate::kernels::reduce::{Axis, ReduceOp};
use crate::kernels::spectral::SpectralFn;

/// What the layer does in the eigenbasis of each group's covariance C = V·diag(λ)·Vᵀ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WhitenMode {
    /// X·C^{-1/2} (with C + εI): decorrelated, unit-variance features in the original axes.
    Zca {
        /// Added to the eigenvalues before the inverse square root.
        eps: f32,
    },
    /// Projection onto the top-k principal components of each group (dimension kept).
    Pca {
        /// Components kept per group.
        k: u32,
    },
    /// Smooth damping g(λ) = λ/(λ + keep·mean(λ)): components much weaker than `keep` times
    /// the mean variance are suppressed, strong ones pass almost unchanged.
    Shrink {
        /// Threshold as a fraction of the mean eigenvalue.
        keep: f32,
    },
}

impl WhitenMode {
    fn spectral_fn(self) -> SpectralFn {
        match self {
            WhitenMode::Zca { eps } => SpectralFn::InvSqrt { eps },
            WhitenMode::Pca { k } => SpectralFn::TopK { k },
            WhitenMode::Shrink { keep } => SpectralFn::Shrink { keep },
        }
    }
}

/// A whitening / principal-component layer over `features` activations in groups of
/// `group` (which must divide `features`; 16 by default, at most 64).
#[derive(Clone, Copy, Debug)]
pub struct EigenWhiten {
    /// The spectral-function node: its eigenvalues are the per-group explained variances and
    /// its eigenvectors the principal directions.
    pub spectral: Value,
    /// Running mean `[features]` (eval mode uses it).
    pub running_mean: Value,
    /// Running covariance `[groups, group, group]` (eval mode uses it).
    pub running_cov: Value,
    /// Features per group.
    pub group: usize,
    /// What the layer does.
    pub mode: WhitenMode,
}

impl EigenWhiten {
    /// Appends the layer to the graph of `scope` for input `x` `[batch, features]` and returns
    /// (layer, output). Its running statistics are `running_mean` and `running_cov` in the
    /// scope, its spectral function `spectral`. In training mode ([`Scope::is_training`]) it
    /// uses the batch statistics and updates the running ones with `momentum`; in evaluation
    /// mode it uses the running statistics, which an inference plan shares with the training
    /// plan ([`GpuPlan::compile_sharing`](crate::graph::gpu::GpuPlan::compile_sharing)) or
    /// loads from a checkpoint.
    pub fn new(
        scope: &mut Scope,
        x: Value,
        group: usize,
        mode: WhitenMode,
        momentum: f32,
    ) -> Result<(EigenWhiten, Value)> {
        let (batch, features) = scope.features("EigenWhiten", x)?;
        if group == 0 || group > 64 || features % group != 0 {
            return Err(Error::shape(
                &scope.path("EigenWhiten"),
                format!("group size {group} must lie in 1..=64 and divide the {features} features"),
            ));
        }
        let groups = features / group;
        let train = scope.is_training();
        let running_mean = scope.resident("running_mean", &[features], Init::Zeros, Role::State)?;
        let running_cov = scope.resident(
            "running_cov",
            &[groups, group, group],
            Init::Identity { gain: 1.0 },
            Role::State,
        )?;
        let mean = if train {
            let m = scope.reduce(ReduceOp::Mean, Axis::Cols, x)?;
            scope.ema(running_mean, m, momentum)?;
            m
        } else {
            running_mean
        };
        let centred = scope.sub(x, mean)?;
        // Features of one group are consecutive rows of Xᵀ: [features, batch] = [groups, group, batch].
        let xt = scope.transpose(centred)?;
        let xt = scope.reshape(xt, &[groups, group, batch])?;
        let cov = if train {
            let outer = scope.matmul(xt, xt, false, true)?;
            let c = scope.scale(outer, 1.0 / batch as f32)?;
            scope.ema(running_cov, c, momentum)?;
            c
        } else {
            running_cov
        };
        let h = scope.spectral_fn(cov, mode.spectral_fn())?;
        scope.name(h, "spectral")?;
        // Yᵀ per group = H·Xᵀ (H symmetric), back to [batch, features].
        let yt = scope.matmul(h, xt, false, false)?;
        let yt = scope.reshape(yt, &[features, batch])?;
        let y = scope.transpose(yt)?;
        Ok((
            EigenWhiten {
                spectral: h,
                running_mean,
                running_cov,
                group,
                mode,
            },
            y,
        ))
    }

    /// Explained-variance fraction of each principal component, per group, largest first:
    /// λ_i / Σλ from the last step's covariance eigenvalues.
    pub fn explained_variance(&self, plan: &dyn Plan) -> Result<Vec<Vec<f32>>> {
        let lambda = plan.eigenvalues(self.spectral)?;
        Ok(lambda
            .chunks(self.group)
            .map(|l| {
                let total: f32 = l
                    .iter()
                    .map(|v| v.max(0.0))
                    .sum::<f32>()
                    .max(f32::MIN_POSITIVE);
                l.iter().rev().map(|v| v.max(0.0) / total).collect()
            })
            .collect())
    }

    /// Principal directions per group (`[groups, group, group]`, column j for the j-th
    /// smallest eigenvalue), from the last step.
    pub fn principal_directions(&self, plan: &dyn Plan) -> Result<Vec<f32>> {
        plan.eigenvectors(self.spectral)
    }
}
