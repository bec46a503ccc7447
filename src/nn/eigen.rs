//! The Eigen layer: a dense layer whose effective weight is W' = W·h(WᵀW) (or h(WWᵀ)·W, on
//! the smaller side), recomputed from a warm-started GPU eigendecomposition at every step.

#[cfg(doc)]
use super::EigenStack;
use super::{Linear, Scope};
use crate::error::{Error, Result};
use crate::graph::layout::{init_values, singular_values, spread_spectrum};
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
/// Every mode stores its raw weight at one scale, which sets how fast training turns it
/// ([`EigenMode::raw_weight_init`]); `Clamp` keeps the scale it is asked for as a constant
/// factor ([`EigenMode::raw_weight_scale`]), since its band makes the scale part of the
/// function. `Orthogonal` (every σ = 1) and `Normalize` (σ/σ_max ≤ 1) are the same for every
/// initial scale, but both sit at or below criticality: they rely on the gains. `Normalize`
/// keeps the ratios of W's singular values, so the shape of W's initial spectrum decides how
/// it starts:
/// it draws its raw weight nearly orthogonal ([`EigenMode::raw_weight_init`]: singular values
/// within 10% of σ_max, not the quarter-circle spread of a Gaussian draw, which 64 layers
/// multiply into a map that loses most of its input) and starts its gain at σ_max/σ_rms of
/// that weight ([`EigenMode::initial_gain`]), so that every layer starts with a spectrum of
/// root-mean-square 1 instead of shrinking the signal.
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

    /// The initial value of a layer's gain, for a raw `inputs × outputs` weight drawn by `raw`
    /// (the initialiser [`EigenMode::raw_weight_init`] returns): 1, except for `Normalize`,
    /// where it is σ_max/σ_rms of the raw weight, so that γ·W/σ_max starts with a spectrum of
    /// root-mean-square 1 — it passes on the signal's scale instead of shrinking it by
    /// σ_rms/σ_max at every layer. The ratio is exact where the initialiser fixes the
    /// spectrum ([`Init::OrthogonalSpread`], `Orthogonal`, `Identity`, `Constant`, `Data`)
    /// and the Marchenko–Pastur edge 1 + √c (c = min/max of the shape) for Gaussian and
    /// uniform draws.
    pub fn initial_gain(self, raw: &Init, inputs: usize, outputs: usize) -> f32 {
        if self != EigenMode::Normalize {
            return 1.0;
        }
        let r = inputs.min(outputs);
        let top_to_rms = |sigma: &[f32]| {
            let top = sigma.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            let rms = root_mean_square(sigma);
            if rms > 0.0 {
                top / rms
            } else {
                1.0
            }
        };
        match raw {
            Init::Normal { .. } | Init::Uniform { .. } => {
                1.0 + (r as f32 / inputs.max(outputs).max(1) as f32).sqrt()
            }
            Init::Orthogonal { .. } | Init::Identity { .. } | Init::Zeros => 1.0,
            Init::OrthogonalSpread { gain, spread } => {
                top_to_rms(&spread_spectrum(*gain, *spread, r))
            }
            // Deterministic: the matrix itself (a wrong-sized Data fails later, at build).
            Init::Constant(_) | Init::Data(_) => match init_values(raw, &[inputs, outputs], 0) {
                Ok(w) => top_to_rms(&singular_values(&w, inputs, outputs)),
                Err(_) => 1.0,
            },
        }
    }

    /// The root-mean-square of the singular values of every Eigen layer's stored raw weight
    /// at initialisation, whatever scale it is asked for (see [`EigenMode::raw_weight_init`]):
    /// 1, the scale of a fan-in Gaussian draw at s = 1.
    pub const SCALE_FREE_RAW_SIGMA: f32 = 1.0;

    /// The spread of a `Normalize` layer's initial raw spectrum: its singular values run
    /// evenly from σ_max down to σ_max·(1 − spread) (see [`EigenMode::raw_weight_init`]).
    pub const NORMALIZE_RAW_SPREAD: f32 = 0.1;

    /// The initialiser a layer of this mode draws its stored raw `inputs × outputs` weight Ŵ
    /// with. A random initialiser (`Normal`, `Uniform`, `Orthogonal`) is drawn at the scale
    /// [`EigenMode::SCALE_FREE_RAW_SIGMA`] (singular values of that root-mean-square)
    /// whatever its own scale: `Clamp` and `Orthogonal` rescale it, keeping its kind (the same
    /// draw, only smaller or larger); `Normalize` replaces it by a nearly orthogonal draw,
    /// [`Init::OrthogonalSpread`] with singular values spread
    /// [`EigenMode::NORMALIZE_RAW_SPREAD`] below the largest. Deterministic initialisers and an
    /// explicit `OrthogonalSpread` are kept. The scale `init` asked for is not lost where the
    /// function depends on it: a `Clamp` layer multiplies Ŵ by it as a constant
    /// ([`EigenMode::raw_weight_scale`]), so that its raw weight W = c·Ŵ is the draw `init`
    /// describes.
    ///
    /// Why the shape of `Normalize`'s spectrum: W/σ_max keeps the ratios of W's singular
    /// values, and a random Gaussian W spreads them from 0 to σ_max (the quarter-circle law):
    /// 64 such layers multiply into a map that loses most directions of its input, and a
    /// 64-deep network trained from it stayed near 20% on a Fashion-MNIST subset where `Clamp`
    /// and `Orthogonal` reached 72–80%. A nearly flat spectrum starts the network isometric;
    /// the spread keeps σ_max simple (an exactly orthogonal W repeats it, and the gradient then
    /// follows whichever top singular vector the solver returns).
    ///
    /// Why one scale: Adam moves every entry by about its learning rate per step whatever the
    /// entry's size, so a raw weight c times larger turns c times slower at the same rate (the
    /// gains and biases keep theirs): the initial scale would be a hidden factor of the rate.
    /// The polar factor of W and W/σ_max do not depend on the scale of W at all; `Clamp`'s band
    /// makes the scale part of the function (from a small draw every singular value is lifted
    /// to the floor, from a large one most are cut to the ceiling), and the constant c keeps
    /// that while the parameter Adam moves stays at one scale. At σ_rms = 1 in every layer,
    /// whatever its shape (fixing the entries' size instead would make a 784-input layer's σ
    /// 3.5 times a square one's and slow it by as much), every layer of every mode turns as a
    /// layer drawn at s = 1, and the rate that suits a depth suits all three modes. Raw
    /// weights several times larger learn too slowly (the network underfits); much smaller
    /// ones let a large rate's steps dominate W. The measurements behind these choices are in
    /// the `deep_mlp` documentation.
    pub fn raw_weight_init(self, init: Init, inputs: usize, outputs: usize) -> Init {
        let sigma = Self::SCALE_FREE_RAW_SIGMA;
        let iid_std = scale_free_iid_std(inputs, outputs);
        if random_draw_scale(&init, inputs, outputs).is_none() {
            return init;
        }
        match (self, init) {
            (EigenMode::Normalize, _) => {
                let r = inputs.min(outputs).max(1);
                let shape_rms =
                    root_mean_square(&spread_spectrum(1.0, Self::NORMALIZE_RAW_SPREAD, r));
                Init::OrthogonalSpread {
                    gain: sigma / shape_rms,
                    spread: Self::NORMALIZE_RAW_SPREAD,
                }
            }
            (_, Init::Normal { .. }) => Init::Normal { std: iid_std },
            (_, Init::Uniform { .. }) => Init::Uniform {
                limit: 3f32.sqrt() * iid_std,
            },
            (_, Init::Orthogonal { .. }) => Init::Orthogonal { gain: sigma },
            (_, kept) => kept,
        }
    }

    /// The constant c a layer of this mode multiplies its stored raw weight Ŵ by (W = c·Ŵ):
    /// for `Clamp` from a random initialiser, the ratio of the scale `init` asks for to the
    /// one Ŵ is drawn at ([`EigenMode::raw_weight_init`]) — 2 for a fan-in Gaussian at s = 2 —
    /// so that c·Ŵ is `init`'s draw; 1 otherwise. The layer applies it as the band [lo/|c|,
    /// hi/|c|] on Ŵ's spectrum and a factor c on the result, the same W′ as clamping c·Ŵ.
    /// A checkpoint holds Ŵ (the parameter), not c: load it into a layer built with the same
    /// mode, shape and initialiser to get the same function back.
    pub fn raw_weight_scale(self, init: &Init, inputs: usize, outputs: usize) -> f32 {
        match self {
            EigenMode::Clamp { .. } => random_draw_scale(init, inputs, outputs).unwrap_or(1.0),
            _ => 1.0,
        }
    }

    /// The spectral function g applied to the Gram matrix of the stored raw weight Ŵ of a
    /// layer whose raw weight is W = c·Ŵ (c = `raw_scale`, see
    /// [`EigenMode::raw_weight_scale`]): g·c is the mode's function of W's Gram matrix. Only
    /// `Clamp` depends on c, through its band.
    pub fn spectral_fn_at(self, raw_scale: f32) -> SpectralFn {
        match self {
            EigenMode::Clamp { lo, hi } => SpectralFn::Clamp {
                lo: lo / raw_scale.abs(),
                hi: hi / raw_scale.abs(),
            },
            other => other.spectral_fn(),
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
    /// The learnable gain γ, if the layer has one: shape `[1]`, or for a member of an
    /// [`EigenStack`] the stack's gains `[layers]`, this layer's at [`EigenLayer::slot`].
    pub gain: Option<Value>,
    /// The spectral-function node h(G) of the Gram matrix G (its eigenvalues are σ(W)²); for
    /// a member of an [`EigenStack`], the stack's batch of them.
    pub spectral: Value,
    /// What the layer does to the spectrum.
    pub mode: EigenMode,
    /// The constant c the stored raw weight is multiplied by, W = c·Ŵ (see
    /// [`EigenMode::raw_weight_scale`]): 1 except for `Clamp` from a random initialiser at
    /// another scale than the stored one's.
    pub raw_scale: f32,
    /// Where this layer's matrix is in the batch of `spectral` (and its gain in `gain`): 0
    /// for a layer of its own, its position for a member of an [`EigenStack`].
    pub slot: usize,
    /// How many layers share `spectral` and `gain`: 1 for a layer of its own, the stack's
    /// depth for a member of an [`EigenStack`].
    pub slots: usize,
}

impl EigenLayer {
    /// Declares the layer's raw weight `weight` (filled by `init`, a random one drawn at one
    /// scale, see [`EigenMode::raw_weight_init`]) and `bias` in `scope`, without gain;
    /// W' is built in the graph at once, its nodes named `gram`, `spectral` and
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
        let raw_scale = mode.raw_weight_scale(&init, inputs, outputs);
        let init = mode.raw_weight_init(init, inputs, outputs);
        let initial_gain = mode.initial_gain(&init, inputs, outputs);
        let linear = Linear::new(scope, inputs, outputs, init)?;
        let gain = with_gain.then_some(Init::Constant(initial_gain));
        let r = Reparametrised::build(scope, linear.weight, mode, raw_scale, gain)?;
        Ok(EigenLayer {
            linear,
            effective_weight: r.effective_weight,
            gain: r.gain,
            spectral: r.spectral,
            mode,
            raw_scale,
            slot: 0,
            slots: 1,
        })
    }

    /// x·W' + b for x `[batch, inputs]`.
    pub fn forward(&self, g: &mut Graph, x: Value) -> Result<Value> {
        let z = g.matmul(x, self.effective_weight, false, false)?;
        g.add(z, self.linear.bias)
    }

    /// Singular values of the raw weight W = c·Ŵ and of the effective weight W' (times |γ|
    /// where the layer has a gain) at the last step, both ascending (read from the layer's
    /// eigendecomposition, on either executor).
    pub fn singular_values(&self, plan: &dyn Plan) -> Result<(Vec<f32>, Vec<f32>)> {
        let all = plan.eigenvalues(self.spectral)?;
        let lambda = self.own_part(&all, "eigenvalues")?;
        let f = self.mode.spectral_fn_at(self.raw_scale);
        let (mut raw, mut effective) = singular_values_from(f, lambda);
        let c = self.raw_scale.abs();
        let gain = self.gain_value(plan)?.abs();
        raw.iter_mut().for_each(|s| *s *= c);
        effective.iter_mut().for_each(|s| *s *= c * gain);
        Ok((raw, effective))
    }

    /// The current gain γ (1 for a layer without one).
    pub fn gain_value(&self, plan: &dyn Plan) -> Result<f32> {
        match self.gain {
            Some(v) => Ok(self.own_part(&plan.read(v)?, "gains")?[0]),
            None => Ok(1.0),
        }
    }

    /// This layer's part of `all`, values read for every matrix of `spectral`'s batch in
    /// equal parts.
    fn own_part<'a, T>(&self, all: &'a [T], what: &str) -> Result<&'a [T]> {
        let part = all.len() / self.slots.max(1);
        all.get(self.slot * part..(self.slot + 1) * part)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{} {what} for {} layers: none for layer {}",
                    all.len(),
                    self.slots,
                    self.slot
                ))
            })
    }

    /// Sets where this layer's eigendecomposition starts each step on the GPU (default
    /// [`WarmStart::feedback`], see [`Graph::set_warm_start`]): `WarmStart::Off` trades
    /// 1–3 sweeps per step for a solve that carries nothing between steps; a longer
    /// `cold_restart_every` for fewer cold steps. Call before compiling a plan. A member of
    /// an [`EigenStack`] shares its solve with the whole stack, so this sets the stack's.
    pub fn set_warm_start(&self, g: &mut Graph, warm_start: WarmStart) -> Result<()> {
        g.set_warm_start(self.spectral, warm_start)
    }

    /// Mean Jacobi sweeps of this layer's solve at the last step.
    pub fn sweeps(&self, plan: &dyn Plan) -> Result<f32> {
        let all = plan.sweeps(self.spectral)?;
        let s = self.own_part(&all, "sweep counts")?;
        Ok(s.iter().sum::<u32>() as f32 / s.len() as f32)
    }
}

/// The Eigen reparametrisation of a raw weight `[inputs, outputs]`, or of a stack of them
/// `[layers, inputs, outputs]` (batched: one launch per op for the whole stack).
pub(super) struct Reparametrised {
    /// W' = γ·c·Ŵ·h(ŴᵀŴ) (or γ·c·h(ŴŴᵀ)·Ŵ), of the raw weight's shape.
    pub effective_weight: Value,
    /// γ: `[1]` for one matrix, `[layers]` for a stack.
    pub gain: Option<Value>,
    /// h(G) of the Gram matrices of Ŵ, `[n, n]` or `[layers, n, n]`.
    pub spectral: Value,
}

impl Reparametrised {
    /// Builds W' from the stored raw weight `w` = Ŵ, the layer's raw weight being
    /// `raw_scale`·Ŵ, in `scope` (nodes `gram`, `spectral`, `effective_weight`), with a
    /// learnable gain `gain` filled by `gain_init` if given. The Gram matrix is taken on the
    /// smaller side.
    pub fn build(
        scope: &mut Scope,
        w: Value,
        mode: EigenMode,
        raw_scale: f32,
        gain_init: Option<Init>,
    ) -> Result<Reparametrised> {
        let shape = scope.try_shape(w)?.to_vec();
        let (inputs, outputs) = match shape[..] {
            [inputs, outputs] | [_, inputs, outputs] => (inputs, outputs),
            _ => {
                return Err(Error::shape(
                    "Eigen layer",
                    format!("a raw weight is a matrix or a stack of them, got {shape:?}"),
                ))
            }
        };
        let small_side = outputs <= inputs;
        let gram = scope.matmul(w, w, small_side, !small_side)?;
        scope.name(gram, "gram")?;
        let h = scope.spectral_fn(gram, mode.spectral_fn_at(raw_scale))?;
        scope.name(h, "spectral")?;
        // c·Ŵ·h: the constant on the small n × n factor.
        let h_scaled = if raw_scale == 1.0 {
            h
        } else {
            scope.scale(h, raw_scale)?
        };
        let effective_weight = if small_side {
            scope.matmul(w, h_scaled, false, false)?
        } else {
            scope.matmul(h_scaled, w, false, false)?
        };
        let (effective_weight, gain) = match gain_init {
            None => (effective_weight, None),
            // γ·W' as a broadcast product: W' viewed as a column [inputs·outputs, 1] times
            // the one-element γ.
            Some(init) if shape.len() == 2 => {
                let gain = scope.param("gain", &[1], init)?;
                let column = scope.reshape(effective_weight, &[inputs * outputs, 1])?;
                let scaled = scope.mul(column, gain)?;
                (scope.reshape(scaled, &shape)?, Some(gain))
            }
            // One γ per matrix of the stack, each scaling its row of W' viewed as
            // [layers, inputs·outputs].
            Some(init) => {
                let gain = scope.param("gain", &[shape[0]], init)?;
                let rows = scope.reshape(effective_weight, &[shape[0], inputs * outputs])?;
                let scaled = scope.mul_rows(rows, gain)?;
                (scope.reshape(scaled, &shape)?, Some(gain))
            }
        };
        scope.name(effective_weight, "effective_weight")?;
        Ok(Reparametrised {
            effective_weight,
            gain,
            spectral: h,
        })
    }
}

/// The standard deviation of an i.i.d. `inputs × outputs` draw whose singular values have
/// root-mean-square [`EigenMode::SCALE_FREE_RAW_SIGMA`] (an i.i.d. draw of variance v has
/// singular values of mean square v·max(inputs, outputs)).
fn scale_free_iid_std(inputs: usize, outputs: usize) -> f32 {
    EigenMode::SCALE_FREE_RAW_SIGMA / (inputs.max(outputs).max(1) as f32).sqrt()
}

/// For a random initialiser, its scale relative to the draw [`EigenMode::raw_weight_init`]
/// stores (a ratio of standard deviations, exact for a fan-in Gaussian at a power-of-two s);
/// `None` for a deterministic one, or a random one of zero or non-finite scale.
fn random_draw_scale(init: &Init, inputs: usize, outputs: usize) -> Option<f32> {
    let iid_std = scale_free_iid_std(inputs, outputs);
    let ratio = match *init {
        Init::Normal { std } => std / iid_std,
        Init::Uniform { limit } => limit / (3f32.sqrt() * iid_std),
        Init::Orthogonal { gain } => gain / EigenMode::SCALE_FREE_RAW_SIGMA,
        _ => return None,
    };
    (ratio.is_finite() && ratio != 0.0).then_some(ratio)
}

/// √(Σx²/n) (0 for no values).
fn root_mean_square(xs: &[f32]) -> f32 {
    (xs.iter().map(|x| x * x).sum::<f32>() / xs.len().max(1) as f32).sqrt()
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

    /// Singular values of the `inputs × outputs` matrix `init` draws, largest first.
    fn spectrum_of(init: &Init, inputs: usize, outputs: usize) -> Vec<f32> {
        let w = init_values(init, &[inputs, outputs], 3).unwrap();
        singular_values(&w, inputs, outputs)
    }

    #[test]
    fn normalize_draws_a_nearly_orthogonal_raw_weight_and_keeps_explicit_ones() {
        for (inputs, outputs) in [(64, 64), (784, 64), (32, 10), (3, 7), (1, 1)] {
            for random in [
                Init::Normal { std: 0.01 },
                Init::Uniform { limit: 3.0 },
                Init::Orthogonal { gain: 1.0 },
            ] {
                let raw = EigenMode::Normalize.raw_weight_init(random.clone(), inputs, outputs);
                let sigma = spectrum_of(&raw, inputs, outputs);
                let r = sigma.len();
                // Singular values of root-mean-square SCALE_FREE_RAW_SIGMA, whatever the shape.
                let rms = root_mean_square(&sigma);
                assert!(
                    (rms / EigenMode::SCALE_FREE_RAW_SIGMA - 1.0).abs() < 1e-4,
                    "{inputs}×{outputs} from {random:?}: rms {rms}"
                );
                // Spread below σ_max by NORMALIZE_RAW_SPREAD, the top simple (one singular
                // value for a 1×1 weight).
                if r > 1 {
                    let floor = sigma[0] * (1.0 - EigenMode::NORMALIZE_RAW_SPREAD);
                    assert!((sigma[r - 1] - floor).abs() < 1e-4 * sigma[0], "{sigma:?}");
                    assert!(
                        sigma[0] - sigma[1] > 1e-3 * sigma[0],
                        "a repeated top: {sigma:?}"
                    );
                }
                // The gain makes γ·W/σ_max a spectrum of root-mean-square 1.
                let gain = EigenMode::Normalize.initial_gain(&raw, inputs, outputs);
                let effective_rms = gain * rms / sigma[0];
                assert!(
                    (effective_rms - 1.0).abs() < 1e-4,
                    "{inputs}×{outputs}: gain {gain} gives rms {effective_rms}"
                );
            }
        }
        // Deterministic initialisers and an explicit spectrum are kept, with exact gains.
        let (inputs, outputs) = (6, 4);
        for kept in [
            Init::Identity { gain: 0.5 },
            Init::Constant(-0.01),
            Init::Data((0..24).map(|i| (i as f32 * 0.37).sin()).collect()),
            Init::OrthogonalSpread {
                gain: 2.0,
                spread: 0.9,
            },
            Init::Zeros,
        ] {
            let raw = EigenMode::Normalize.raw_weight_init(kept.clone(), inputs, outputs);
            assert_eq!(raw, kept);
            let sigma = spectrum_of(&raw, inputs, outputs);
            let rms = root_mean_square(&sigma);
            let want = if rms > 0.0 { sigma[0] / rms } else { 1.0 };
            let gain = EigenMode::Normalize.initial_gain(&raw, inputs, outputs);
            assert!(
                (gain - want).abs() < 1e-4 * want,
                "{kept:?}: {gain} vs {want}"
            );
        }
        // Gaussian draws (reachable only by calling initial_gain directly): the
        // Marchenko–Pastur edge, 2 for a square weight.
        let square = EigenMode::Normalize.initial_gain(&Init::Normal { std: 1.0 }, 8, 8);
        assert_eq!(square, 2.0);
        // The other modes start their gains at 1.
        for mode in [EigenMode::Orthogonal, EigenMode::DEFAULT_CLAMP] {
            let init = Init::Normal { std: 0.01 };
            assert_eq!(mode.initial_gain(&init, 64, 48), 1.0);
        }
    }

    #[test]
    fn clamp_and_orthogonal_draw_their_raw_weight_at_one_scale_and_keep_explicit_ones() {
        for mode in [EigenMode::Orthogonal, EigenMode::DEFAULT_CLAMP] {
            rescales_random_draws_and_keeps_explicit_ones(mode);
        }
    }

    /// A random draw stored at one scale, of the same kind; the deterministic ones kept.
    fn rescales_random_draws_and_keeps_explicit_ones(mode: EigenMode) {
        let (inputs, outputs) = (64, 48);
        let at = |init: Init| mode.raw_weight_init(init, inputs, outputs);
        // Random draws keep their kind and take singular values of root-mean-square 1
        // (an i.i.d. draw: mean square v·max(inputs, outputs)).
        assert_eq!(at(Init::Normal { std: 0.01 }), Init::Normal { std: 0.125 });
        assert_eq!(at(Init::Normal { std: 7.0 }), Init::Normal { std: 0.125 });
        assert_eq!(
            at(Init::Uniform { limit: 3.0 }),
            Init::Uniform {
                limit: 3f32.sqrt() * 0.125
            }
        );
        assert_eq!(
            at(Init::Orthogonal { gain: 2.0 }),
            Init::Orthogonal { gain: 1.0 }
        );
        for random in [
            Init::Normal { std: 0.01 },
            Init::Uniform { limit: 3.0 },
            Init::Orthogonal { gain: 2.0 },
        ] {
            let canonical = at(random.clone());
            let rms = root_mean_square(&spectrum_of(&canonical, inputs, outputs));
            assert!((rms - 1.0).abs() < 0.05, "{random:?}: rms {rms}");
            // Only the scale changes: the same draw, so the same polar factor.
            let drawn = init_values(&random, &[inputs, outputs], 3).unwrap();
            let scaled = init_values(&canonical, &[inputs, outputs], 3).unwrap();
            let ratio = scaled[0] / drawn[0];
            for (a, b) in drawn.iter().zip(&scaled) {
                assert!((a * ratio - b).abs() <= 1e-5 * b.abs().max(1e-3), "{a} {b}");
            }
        }
        // Deterministic initialisers, an explicit spectrum and a draw of scale 0 are kept.
        for kept in [
            Init::Identity { gain: 0.5 },
            Init::Constant(-0.01),
            Init::Zeros,
            Init::OrthogonalSpread {
                gain: 2.0,
                spread: 0.9,
            },
            Init::Normal { std: 0.0 },
        ] {
            assert_eq!(at(kept.clone()), kept);
            assert_eq!(mode.raw_weight_scale(&kept, inputs, outputs), 1.0);
        }
    }

    #[test]
    fn clamp_keeps_the_scale_it_is_asked_for_as_a_constant() {
        let (inputs, outputs) = (64, 48);
        let clamp = EigenMode::DEFAULT_CLAMP;
        for s in [0.5f32, 1.0, 2.0, 3.0] {
            for init in [
                crate::nn::scaled_normal(inputs, s),
                Init::Uniform {
                    limit: s * 3f32.sqrt() / 8.0,
                },
                Init::Orthogonal { gain: s },
            ] {
                // c·Ŵ is the draw `init` describes: c = s (exact for powers of two), and the
                // stored draw is `init`'s divided by it.
                let c = clamp.raw_weight_scale(&init, inputs, outputs);
                if s.log2().fract() == 0.0 {
                    assert_eq!(c, s, "{init:?}");
                } else {
                    assert!((c / s - 1.0).abs() < 1e-6, "{init:?}: {c}");
                }
                let drawn = init_values(&init, &[inputs, outputs], 3).unwrap();
                let stored = init_values(
                    &clamp.raw_weight_init(init.clone(), inputs, outputs),
                    &[inputs, outputs],
                    3,
                )
                .unwrap();
                // Entries of size ~s/8: a few f32 roundings of them.
                for (a, b) in drawn.iter().zip(&stored) {
                    assert!((a - c * b).abs() <= 1e-6, "{init:?}: {a} vs {c}·{b}");
                }
                // The band on Ŵ's spectrum is the band on W's divided by |c|.
                let band = clamp.spectral_fn_at(c);
                assert_eq!(
                    band,
                    SpectralFn::Clamp {
                        lo: 1.0 / c,
                        hi: 1.25 / c
                    }
                );
            }
            // The modes whose function does not depend on the scale multiply by nothing.
            for mode in [EigenMode::Orthogonal, EigenMode::Normalize] {
                let init = crate::nn::scaled_normal(inputs, s);
                assert_eq!(mode.raw_weight_scale(&init, inputs, outputs), 1.0);
                assert_eq!(mode.spectral_fn_at(s), mode.spectral_fn());
            }
        }
    }
}
