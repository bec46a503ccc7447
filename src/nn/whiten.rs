//! The principal-component layer: per group of features, the batch covariance is
//! eigendecomposed on the GPU and the centred activations are whitened (ZCA), projected onto
//! their top principal components (PCA) or have their weak components damped (shrink).

use crate::error::{Error, Result};
use crate::graph::{Graph, Init, Plan, Role, Value};
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
    /// Appends the layer to `g` for input `x` `[batch, features]` and returns (layer, output).
    /// In training mode (`train = true`) it uses the batch statistics and updates the running
    /// ones with `momentum`; in eval mode it uses the running statistics, which an eval plan
    /// takes from the training plan by name
    /// ([`GpuPlan::copy_resident_from`](crate::graph::gpu::GpuPlan::copy_resident_from)).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        g: &mut Graph,
        name: &str,
        x: Value,
        group: usize,
        mode: WhitenMode,
        train: bool,
        momentum: f32,
    ) -> Result<(EigenWhiten, Value)> {
        let shape = g.shape(x).to_vec();
        let [batch, features] = shape[..] else {
            return Err(Error::shape(
                "EigenWhiten",
                format!("input must be [batch, features], got {shape:?}"),
            ));
        };
        if group == 0 || group > 64 || features % group != 0 {
            return Err(Error::shape(
                "EigenWhiten",
                format!("group size {group} must lie in 1..=64 and divide the {features} features"),
            ));
        }
        let groups = features / group;
        let running_mean = g.resident(
            &format!("{name}.running_mean"),
            &[features],
            Init::Zeros,
            Role::State,
        );
        let running_cov = g.resident(
            &format!("{name}.running_cov"),
            &[groups, group, group],
            Init::Identity { gain: 1.0 },
            Role::State,
        );
        let mean = if train {
            let m = g.reduce(ReduceOp::Mean, Axis::Cols, x)?;
            g.ema(running_mean, m, momentum)?;
            m
        } else {
            running_mean
        };
        let centred = g.sub(x, mean)?;
        // Features of one group are consecutive rows of Xᵀ: [features, batch] = [groups, group, batch].
        let xt = g.transpose(centred)?;
        let xt = g.reshape(xt, &[groups, group, batch])?;
        let cov = if train {
            let outer = g.matmul(xt, xt, false, true)?;
            let c = g.scale(outer, 1.0 / batch as f32)?;
            g.ema(running_cov, c, momentum)?;
            c
        } else {
            running_cov
        };
        let h = g.spectral_fn(cov, mode.spectral_fn())?;
        g.set_name(h, &format!("{name}.spectral"))?;
        // Yᵀ per group = H·Xᵀ (H symmetric), back to [batch, features].
        let yt = g.matmul(h, xt, false, false)?;
        let yt = g.reshape(yt, &[features, batch])?;
        let y = g.transpose(yt)?;
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
