//! The Eigen layer: a dense layer whose effective weight is W' = W·h(WᵀW) (or h(WWᵀ)·W, on
//! the smaller side), recomputed from a warm-started GPU eigendecomposition at every step.

use super::{Linear, Scope};
use crate::error::{Error, Result};
use crate::graph::{Graph, Init, Plan, Value};
use crate::kernels::jacobi::WarmStart;
use crate::kernels::spectral::{SpectralFn, SpectrumScale};

/// What the layer does to the singular values σ of its weight.
///
/// # In a deep tanh network
/// What keeps a deep stack trainable is that no layer shrinks or grows the signal much, from
/// whatever scale the raw weights start at. Two facts decide the choice (measured with the
/// `deep_mlp` demo, see the README's results):
/// - at σ(W') = 1 exactly a deep tanh stack is *critical*: its pre-activations fade slowly
///   with depth (for small variance q one layer maps q to E[tanh(√q·z)²] ≈ q − 2q², so q
///   falls like 1/(2·depth)), so an `Orthogonal` network without gains ends with small
///   logits — right argmax, high loss.
///   Slightly above 1 the variance settles at a fixed point instead (tanh bounds it);
/// - a clamped singular value gets no gradient (g is flat in σ there), so a σ held at the
///   floor of the band stays there until the raw weight moves into the band on its own.
///
/// Hence the default band [`EigenMode::DEFAULT_CLAMP`] = [1, 1.25]: its floor of 1 means no
/// layer ever shrinks the signal — from a small initialisation (every σ(W) < 1) the layer
/// starts as the polar factor, from a large one at 1.25 — and its ceiling lets the signal
/// settle above criticality. A band reaching below 1, such as [0.9, 1.1], shrinks the signal
/// by its floor per layer from a small initialisation (0.9⁶³ ≈ 1e-3 over 64 layers), and
/// the zero gradient keeps it there. The price of the floor at 1: orthogonal and identity
/// initialisations sit exactly on the band's kink, where the layer takes a one-sided
/// derivative (from the side the computed σ² falls on); and a layer may amplify by up to
/// 1.25, which tanh bounds in the forward pass and the learnable gains (see [`EigenLayer`])
/// can undo.
///
/// `Orthogonal` (every σ = 1) and `Normalize` (σ/σ_max ≤ 1) are the same for every initial
/// scale, but both sit at or below criticality: they rely on the gains. `Normalize`
/// contracts — for a random W the root-mean-square of σ/σ_max is about ½ (the quarter-circle
/// law) — so its gains start at [`EigenMode::initial_gain`] (2 for a square W) rather than 1:
/// from 1 the signal halved per layer until Adam, moving a parameter by about its learning
/// rate per step, had grown every gain to about 2, hundreds of steps (at depth 16 on the
/// digits, 23–71% after 230 steps against 93–94% from the compensating gains).
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
    /// The lower end of the default clamp band.
    pub const DEFAULT_CLAMP_LO: f32 = 1.0;
    /// The upper end of the default clamp band.
    pub const DEFAULT_CLAMP_HI: f32 = 1.25;
    /// `Clamp` with the default band [1, 1.25] (see the type's docs for the choice).
    pub const DEFAULT_CLAMP: EigenMode = EigenMode::Clamp {
        lo: Self::DEFAULT_CLAMP_LO,
        hi: Self::DEFAULT_CLAMP_HI,
    };

    /// The initial value of a layer's gain for an `inputs × outputs` weight: 1, except for
    /// `Normalize`, whose W/σ_max has a root-mean-square singular value of about
    /// 1/(1 + √(min/max)) for a random W (the Marchenko–Pastur edge: σ_max ≈ σ_rms·(1 + √c),
    /// c the aspect ratio min(inputs, outputs)/max(inputs, outputs)). Its gain starts at
    /// 1 + √c, so that at initialisation the layer passes on the signal's scale as one of
    /// unit root-mean-square spectrum does instead of halving it (for a square W).
    pub fn initial_gain(self, inputs: usize, outputs: usize) -> f32 {
        match self {
            EigenMode::Normalize => {
                let (small, large) = (inputs.min(outputs), inputs.max(outputs));
                1.0 + (small as f32 / large.max(1) as f32).sqrt()
            }
            _ => 1.0,
        }
    }

    /// The smallest initial scale s a `Normalize` layer draws its raw weight at: entries of
    /// root-mean-square at least s/√inputs (see [`EigenMode::raw_weight_init`]).
    pub const NORMALIZE_MIN_INIT_SCALE: f32 = 2.0;

    /// The initialiser a layer of this mode draws its raw `inputs × outputs` weight with:
    /// `init` itself, except that `Normalize` scales a smaller one up to entries of
    /// root-mean-square [`EigenMode::NORMALIZE_MIN_INIT_SCALE`]/√inputs — the same matrix up
    /// to a factor, hence the same W/σ_max and the same network function at initialisation.
    ///
    /// Why: W/σ_max does not depend on the scale of W, but training does. Adam moves every
    /// entry by about its learning rate per step, in a pattern close to the gradient's few
    /// leading directions, so relative to a small W the steps are large and their directions
    /// soon hold σ_max: W/σ_max then keeps a few singular values near 1 and shrinks the rest,
    /// and a deep stack loses every other direction of its signal. From N(0, s²/fan_in) at
    /// width 64 (σ_max ≈ 2s) one step of 2e-3 adds up to 0.13 to σ_max along the gradient,
    /// the size of σ_max itself after a few steps at s = 0.5: a 32-deep network on a
    /// Fashion-MNIST subset stayed at 19% from s = 0.5 and reached 76% from s = 2 (78% from
    /// s = 8, while a 16-deep network on the small digits, which has fewer steps to learn
    /// in, fell from 94% at s = 2 to 91% at s = 5.7: larger is slower). Scales at or above
    /// the floor are kept. `Zeros` is left as it is.
    pub fn raw_weight_init(self, init: Init, inputs: usize, outputs: usize) -> Init {
        if self != EigenMode::Normalize {
            return init;
        }
        let floor = Self::NORMALIZE_MIN_INIT_SCALE / (inputs.max(1) as f32).sqrt();
        // Root-mean-square of the entries: a matrix with min(inputs, outputs) singular values
        // `gain` has Σw² = gain²·min.
        let cells = (inputs * outputs).max(1) as f32;
        let rms = match &init {
            Init::Normal { std } => std.abs(),
            Init::Uniform { limit } => limit.abs() / 3f32.sqrt(),
            Init::Orthogonal { gain } | Init::Identity { gain } => {
                gain.abs() * (inputs.min(outputs) as f32 / cells).sqrt()
            }
            Init::Constant(v) => v.abs(),
            Init::Data(d) => (d.iter().map(|x| x * x).sum::<f32>() / cells).sqrt(),
            Init::Zeros => 0.0,
        };
        if !(rms > 0.0 && rms < floor) {
            return init;
        }
        let k = floor / rms;
        match init {
            Init::Normal { std } => Init::Normal { std: std * k },
            Init::Uniform { limit } => Init::Uniform { limit: limit * k },
            Init::Orthogonal { gain } => Init::Orthogonal { gain: gain * k },
            Init::Identity { gain } => Init::Identity { gain: gain * k },
            Init::Constant(v) => Init::Constant(v * k),
            Init::Data(d) => Init::Data(d.iter().map(|x| x * k).collect()),
            Init::Zeros => Init::Zeros,
        }
    }

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
/// normalised on the GPU at every step, optionally times a learnable scalar gain γ.
///
/// # The gain
/// W' = γ·U g(Σ) Vᵀ with one trainable scalar γ (`gain` in the layer's scope, initialised to
/// 1, or for `Normalize` to [`EigenMode::initial_gain`]): the
/// spectrum keeps its shape (the condition number of W' stays what the mode allows) while
/// the layer can scale its output. Without it an `Orthogonal` or `Normalize` layer cannot
/// make large outputs: the logits of a network that ends in one stay small, the loss stalls
/// although the argmax is right. A scalar rather than one gain per output unit because a
/// per-unit gain diag(γ) would spread the singular values again (to [lo·min γ, hi·max γ]),
/// undoing the conditioning the layer exists for; one number is a temperature for the
/// logits and a pre-activation scale for a hidden layer, which is what is missing. It is
/// built from existing ops (a reshape and a broadcast product), so autodiff and both
/// executors handle it unchanged.
#[derive(Clone, Copy, Debug)]
pub struct EigenLayer {
    /// The raw weight W `[inputs, outputs]` and the bias.
    pub linear: Linear,
    /// The effective weight W' (the gain included), `[inputs, outputs]`.
    pub effective_weight: Value,
    /// The learnable gain γ, shape `[1]`, if the layer has one.
    pub gain: Option<Value>,
    /// The spectral-function node h(G) of the Gram matrix G (its eigenvalues are σ(W)²).
    pub spectral: Value,
    /// What the layer does to the spectrum.
    pub mode: EigenMode,
}

impl EigenLayer {
    /// Declares the layer's raw weight `weight` (filled by `init`, rescaled for `Normalize`,
    /// see [`EigenMode::raw_weight_init`]) and `bias` in `scope`,
    /// without gain; W' is built in the graph at once, its nodes named `gram`, `spectral` and
    /// `effective_weight` in the scope. The Gram matrix is taken on the smaller side: WᵀW
    /// (`[outputs, outputs]`) when outputs ≤ inputs, WWᵀ (`[inputs, inputs]`) otherwise.
    pub fn new(
        scope: &mut Scope,
        inputs: usize,
        outputs: usize,
        mode: EigenMode,
        init: Init,
    ) -> Result<EigenLayer> {
        Self::build(scope, inputs, outputs, mode, init, false)
    }

    /// As [`EigenLayer::new`], with a learnable scalar gain `gain` in the scope multiplying W'
    /// (see the type's docs), initialised to [`EigenMode::initial_gain`].
    pub fn with_gain(
        scope: &mut Scope,
        inputs: usize,
        outputs: usize,
        mode: EigenMode,
        init: Init,
    ) -> Result<EigenLayer> {
        Self::build(scope, inputs, outputs, mode, init, true)
    }

    fn build(
        scope: &mut Scope,
        inputs: usize,
        outputs: usize,
        mode: EigenMode,
        init: Init,
        with_gain: bool,
    ) -> Result<EigenLayer> {
        let init = mode.raw_weight_init(init, inputs, outputs);
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
        let (effective_weight, gain) = if with_gain {
            // γ·W' as a broadcast product: W' viewed as a column [inputs·outputs, 1] times
            // the one-element γ.
            let gain = Init::Constant(mode.initial_gain(inputs, outputs));
            let gain = scope.param("gain", &[1], gain)?;
            let column = scope.reshape(effective_weight, &[inputs * outputs, 1])?;
            let scaled = scope.mul(column, gain)?;
            (scope.reshape(scaled, &[inputs, outputs])?, Some(gain))
        } else {
            (effective_weight, None)
        };
        scope.name(effective_weight, "effective_weight")?;
        Ok(EigenLayer {
            linear,
            effective_weight,
            gain,

            spectral: h,
            mode,
        })
    }

    /// x·W' + b for x `[batch, inputs]`.
    pub fn forward(&self, g: &mut Graph, x: Value) -> Result<Value> {
        let z = g.matmul(x, self.effective_weight, false, false)?;
        g.add(z, self.linear.bias)
    }

    /// Singular values of the raw weight W and of the effective weight W' (times |γ| where
    /// the layer has a gain) at the last step, both ascending (read from the layer's
    /// eigendecomposition, on either executor).
    pub fn singular_values(&self, plan: &dyn Plan) -> Result<(Vec<f32>, Vec<f32>)> {
        let lambda = plan.eigenvalues(self.spectral)?;
        let (raw, mut effective) = singular_values_from(self.mode.spectral_fn(), &lambda);
        let gain = self.gain_value(plan)?.abs();
        effective.iter_mut().for_each(|s| *s *= gain);
        Ok((raw, effective))
    }

    /// The current gain γ (1 for a layer without one).
    pub fn gain_value(&self, plan: &dyn Plan) -> Result<f32> {
        match self.gain {
            Some(v) => Ok(plan.read(v)?[0]),
            None => Ok(1.0),
        }
    }

    /// Sets where this layer's eigendecomposition starts each step on the GPU (default
    /// [`WarmStart::feedback`], see [`Graph::set_warm_start`]): `WarmStart::Off` trades
    /// 1–3 sweeps per step for a solve that carries nothing between steps; a longer
    /// `cold_restart_every` for fewer cold steps. Call before compiling a plan.
    pub fn set_warm_start(&self, g: &mut Graph, warm_start: WarmStart) -> Result<()> {
        g.set_warm_start(self.spectral, warm_start)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::layout::init_values;

    /// Root-mean-square of the entries `init` draws for an `inputs × outputs` weight.
    fn rms_of(init: &Init, inputs: usize, outputs: usize) -> f32 {
        let w = init_values(init, &[inputs, outputs], 3).unwrap();
        (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt()
    }

    #[test]
    fn normalize_draws_small_raw_weights_at_its_floor_and_keeps_larger_ones() {
        let (inputs, outputs) = (64, 48);
        let floor = EigenMode::NORMALIZE_MIN_INIT_SCALE / (inputs as f32).sqrt();
        let small = [
            Init::Normal { std: 0.01 },
            Init::Uniform { limit: 0.02 },
            Init::Orthogonal { gain: 0.1 },
            Init::Identity { gain: 0.5 },
            Init::Constant(-0.01),
            Init::Data(vec![0.001; inputs * outputs]),
        ];
        for init in small {
            let raised = EigenMode::Normalize.raw_weight_init(init.clone(), inputs, outputs);
            // The same matrix up to a positive factor (sampled with the same seed).
            let (a, b) = (
                init_values(&init, &[inputs, outputs], 3).unwrap(),
                init_values(&raised, &[inputs, outputs], 3).unwrap(),
            );
            let k = rms_of(&raised, inputs, outputs) / rms_of(&init, inputs, outputs);
            assert!(k > 1.0, "{init:?} → {raised:?}");
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x * k - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{init:?}: {x}·{k} vs {y}"
                );
            }
            let rms = rms_of(&raised, inputs, outputs);
            // Sampled initialisers hit the floor on average: within 5% over 3,072 entries.
            assert!(
                (rms / floor - 1.0).abs() < 0.05,
                "{init:?}: rms {rms} vs {floor}"
            );
        }
        for large in [
            Init::Normal { std: 1.0 },
            Init::Orthogonal { gain: 3.0 },
            Init::Zeros,
        ] {
            let kept = EigenMode::Normalize.raw_weight_init(large.clone(), inputs, outputs);
            assert_eq!(kept, large);
        }
        // The other modes keep what they are given.
        for mode in [EigenMode::Orthogonal, EigenMode::DEFAULT_CLAMP] {
            let init = Init::Normal { std: 0.01 };
            assert_eq!(mode.raw_weight_init(init.clone(), inputs, outputs), init);
        }
    }
}
