//! Layers as graph builders: each declares its parameters in a [`Scope`] (which names them
//! and says whether the graph is for training or inference), adds its ops to the graph and
//! returns the value of its output. [`Linear`] is the plain dense layer; [`EigenLayer`]
//! reparametrises its weight through the spectrum of its Gram matrix, and [`EigenStack`] does
//! so for a run of equal layers at once; [`EigenWhiten`] whitens
//! or projects activations onto their principal components; [`LayerNorm`] and [`Dropout`]
//! normalise and regularise.
//!
//! A whole model is a [`Module`]: a [`Sequential`] stack of [`Layer`]s, an [`MlpSpec`] (the
//! uniform case), or any type or closure of the user's. Built in [`Mode::Train`] and in
//! [`Mode::Eval`] it gives a training graph and an inference graph with the same parameter
//! names.
//!
//! ```
//! use eigengrad::graph::Graph;
//! use eigengrad::nn::{Activation, EigenMode, Layer, Mode, Scope, Sequential};
//! # fn main() -> eigengrad::Result<()> {
//! // 64 inputs → 32 (plain, tanh) → 32 (orthogonal Eigen layer, tanh, dropout) → 10 logits.
//! let model = Sequential::new()
//!     .push(Layer::Linear { outputs: 32, init_scale: 1.0 })
//!     .push(Layer::Activation(Activation::Tanh))
//!     .push(Layer::Eigen {
//!         outputs: 32,
//!         mode: EigenMode::Orthogonal,
//!         init_scale: 1.0,
//!         gain: true,
//!     })
//!     .push(Layer::Activation(Activation::Tanh))
//!     .push(Layer::Dropout { rate: 0.1 })
//!     .push(Layer::Linear { outputs: 10, init_scale: 1.0 });
//! let mut g = Graph::new();
//! let x = g.input("x", &[16, 64])?;
//! let net = model.build(&mut Scope::new(&mut g, Mode::Train), x)?;
//! assert_eq!(net.layers.len(), 3);
//! assert!(g.find("layer1.weight").is_some()); // the Eigen layer's raw weight
//! # Ok(()) }
//! ```

mod eigen;
mod eigen_stack;
mod module;
mod whiten;

pub use eigen::{EigenLayer, EigenMode};
pub use eigen_stack::EigenStack;
pub use module::{Mode, Module, Scope};
pub use whiten::{EigenWhiten, WhitenMode};

use crate::error::{Error, Result};
use crate::graph::{Graph, Init, Value};

/// An elementwise nonlinearity (a [`Module`] without parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// No nonlinearity.
    Identity,
    /// max(x, 0).
    Relu,
    /// tanh(x).
    Tanh,
    /// GELU (tanh approximation).
    Gelu,
}

impl Activation {
    /// Appends the activation of `x`.
    pub fn apply(self, g: &mut Graph, x: Value) -> Result<Value> {
        match self {
            Activation::Identity => Ok(x),
            Activation::Relu => g.relu(x),
            Activation::Tanh => g.tanh(x),
            Activation::Gelu => g.gelu(x),
        }
    }
}

impl Module for Activation {
    fn forward(&self, scope: &mut Scope, x: Value) -> Result<Value> {
        self.apply(scope, x)
    }
}

/// A dense layer y = x·W + b with W `[inputs, outputs]`.
#[derive(Clone, Copy, Debug)]
pub struct Linear {
    /// The weight, `[inputs, outputs]`.
    pub weight: Value,
    /// The bias, `[outputs]`.
    pub bias: Value,
}

impl Linear {
    /// Declares the parameters `weight` (filled by `init`) and `bias` (zeros) in `scope`.
    pub fn new(scope: &mut Scope, inputs: usize, outputs: usize, init: Init) -> Result<Linear> {
        Ok(Linear {
            weight: scope.param("weight", &[inputs, outputs], init)?,
            bias: scope.param("bias", &[outputs], Init::Zeros)?,
        })
    }

    /// x·W + b for x `[batch, inputs]`.
    pub fn forward(&self, g: &mut Graph, x: Value) -> Result<Value> {
        let z = g.matmul(x, self.weight, false, false)?;
        g.add(z, self.bias)
    }
}

/// Inverted dropout with probability `rate` in training mode, the identity in evaluation
/// mode (see [`Graph::dropout`]). Its mask is seeded by the scope's name, so two dropout
/// layers need two scopes (the node is named `dropout` in its scope: a second one in the
/// same scope is a duplicate name).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Probability of zeroing an element, in [0, 1).
    pub rate: f32,
}

impl Module for Dropout {
    fn forward(&self, scope: &mut Scope, x: Value) -> Result<Value> {
        if !scope.is_training() || self.rate == 0.0 {
            return Ok(x);
        }
        let seed = scope.seed("dropout");
        let y = scope.dropout(x, self.rate, seed)?;
        scope.name(y, "dropout")?;
        Ok(y)
    }
}

/// Layer normalisation with a learnable gain and bias per feature:
/// y = (x − mean)/√(var + eps) ∘ gain + bias over the last dimension of each row, the same in
/// training and evaluation.
#[derive(Clone, Copy, Debug)]
pub struct LayerNorm {
    /// The gain `[features]` (initialised to 1).
    pub gain: Value,
    /// The bias `[features]` (initialised to 0).
    pub bias: Value,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    /// Declares `gain` and `bias` of `features` elements in `scope`.
    pub fn new(scope: &mut Scope, features: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gain: scope.param("gain", &[features], Init::Constant(1.0))?,
            bias: scope.param("bias", &[features], Init::Zeros)?,
            eps,
        })
    }

    /// The normalisation of `x` (`[…, features]`).
    pub fn forward(&self, g: &mut Graph, x: Value) -> Result<Value> {
        let normalised = g.layer_norm(x, self.eps)?;
        let scaled = g.mul(normalised, self.gain)?;
        g.add(scaled, self.bias)
    }
}

/// Gaussian initialisation of a `[fan_in, fan_out]` weight with standard deviation
/// `scale/√fan_in` — scale 1 preserves the variance of the activations in a linear network.
pub fn scaled_normal(fan_in: usize, scale: f32) -> Init {
    Init::Normal {
        std: scale / (fan_in as f32).sqrt(),
    }
}

/// One stage of a [`Sequential`] model. Dense and Eigen layers take their input width from
/// the value they are applied to.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// A [`Linear`] layer to `outputs` units, weights ~ N(0, `init_scale`²/fan_in).
    Linear {
        /// Output units.
        outputs: usize,
        /// Gaussian initialisation scale (see [`scaled_normal`]).
        init_scale: f32,
    },
    /// An [`EigenLayer`] to `outputs` units in `mode`, raw weights initialised as `Linear`'s.
    Eigen {
        /// Output units.
        outputs: usize,
        /// What the layer does to the singular values.
        mode: EigenMode,
        /// Gaussian initialisation scale of the raw weight (stored at one scale, see
        /// [`EigenMode::raw_weight_init`]; `Orthogonal` and `Normalize` do not depend on it).
        init_scale: f32,
        /// Whether the layer has a learnable scalar gain (see [`EigenLayer`]).
        gain: bool,
    },
    /// `layers` Eigen layers of `outputs` units, each followed by `activation`, as one
    /// [`EigenStack`] named `layers{first}-{last}` by the positions of its layers among the
    /// dense and Eigen layers. Their weights share one shape, so the input width must be
    /// `outputs` unless there is one layer. Raw weights initialised as `Linear`'s.
    EigenStack {
        /// How many layers.
        layers: usize,
        /// Units of every layer (and the input width).
        outputs: usize,
        /// What the layers do to the singular values.
        mode: EigenMode,
        /// Gaussian initialisation scale of the raw weights (as for [`Layer::Eigen`]).
        init_scale: f32,
        /// Whether every layer has a learnable scalar gain.
        gain: bool,
        /// The nonlinearity after every layer.
        activation: Activation,
    },
    /// An [`EigenWhiten`] layer over groups of `group` features.
    Whiten {
        /// Features per group (divides the width).
        group: usize,
        /// What the layer does in each group's eigenbasis.
        mode: WhitenMode,
        /// Weight of the batch in the running statistics.
        momentum: f32,
    },
    /// A [`LayerNorm`] over the features.
    LayerNorm {
        /// Added to the variance.
        eps: f32,
    },
    /// An elementwise nonlinearity.
    Activation(Activation),
    /// [`Dropout`] in training, the identity in evaluation.
    Dropout {
        /// Probability of zeroing an element.
        rate: f32,
    },
}

/// A model as a stack of [`Layer`]s, each applied to the output of the one before: the MLP
/// builder with a kind per layer. Parameterised stages are named by kind and position among
/// their kind: `layer0`, `layer1`, … for dense and Eigen layers (as [`MlpSpec`] names them;
/// a stack of them `layers{first}-{last}`),
/// `whiten0`, … and `norm0`, …; dropout stages `dropout0`, ….
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sequential {
    /// The stages, input side first.
    pub layers: Vec<Layer>,
}

impl Sequential {
    /// An empty stack (its output is its input).
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// The stack with `layer` appended.
    pub fn push(mut self, layer: Layer) -> Sequential {
        self.layers.push(layer);
        self
    }

    /// Appends the stack applied to `x` (`[batch, features]`) in `scope`, returning its
    /// layers for introspection and its output.
    pub fn build(&self, scope: &mut Scope, x: Value) -> Result<Mlp> {
        let mut net = Mlp {
            layers: Vec::new(),
            whitens: Vec::new(),
            norms: Vec::new(),
            logits: x,
        };
        let mut dropouts = 0;
        for layer in &self.layers {
            let (_, width) = scope.features("Sequential", net.logits)?;
            let h = net.logits;
            net.logits = match *layer {
                Layer::Linear {
                    outputs,
                    init_scale,
                } => {
                    let mut s = scope.scope(&format!("layer{}", net.layers.len()));
                    let l = Linear::new(&mut s, width, outputs, scaled_normal(width, init_scale))?;
                    net.layers.push(MlpLayer::Plain(l));
                    l.forward(scope, h)?
                }
                Layer::Eigen {
                    outputs,
                    mode,
                    init_scale,
                    gain,
                } => {
                    let mut s = scope.scope(&format!("layer{}", net.layers.len()));
                    let init = scaled_normal(width, init_scale);
                    let e = if gain {
                        EigenLayer::with_gain(&mut s, width, outputs, mode, init)?
                    } else {
                        EigenLayer::new(&mut s, width, outputs, mode, init)?
                    };
                    net.layers.push(MlpLayer::Eigen(e));
                    e.forward(scope, h)?
                }
                Layer::EigenStack {
                    layers,
                    outputs,
                    mode,
                    init_scale,
                    gain,
                    activation,
                } => {
                    if layers > 1 && width != outputs {
                        return Err(Error::shape(
                            "Sequential",
                            format!(
                                "a stack of {layers} layers of {outputs} units takes {outputs} \
                                 features, not {width}"
                            ),
                        ));
                    }
                    let first = net.layers.len();
                    let name = format!("layers{first}-{}", first + layers.max(1) - 1);
                    let init = scaled_normal(width, init_scale);
                    let stack = EigenStack::new(
                        &mut scope.scope(&name),
                        layers,
                        width,
                        outputs,
                        mode,
                        init,
                        gain,
                    )?;
                    let mut y = h;
                    for layer in stack.layers {
                        let z = layer.forward(scope, y)?;
                        y = activation.apply(scope, z)?;
                        net.layers.push(MlpLayer::Eigen(layer));
                    }
                    y
                }
                Layer::Whiten {
                    group,
                    mode,
                    momentum,
                } => {
                    let mut s = scope.scope(&format!("whiten{}", net.whitens.len()));
                    let (w, y) = EigenWhiten::new(&mut s, h, group, mode, momentum)?;
                    net.whitens.push(w);
                    y
                }
                Layer::LayerNorm { eps } => {
                    let mut s = scope.scope(&format!("norm{}", net.norms.len()));
                    let n = LayerNorm::new(&mut s, width, eps)?;
                    net.norms.push(n);
                    n.forward(scope, h)?
                }
                Layer::Activation(a) => a.apply(scope, h)?,
                Layer::Dropout { rate } => {
                    dropouts += 1;
                    let mut s = scope.scope(&format!("dropout{}", dropouts - 1));
                    Dropout { rate }.forward(&mut s, h)?
                }
            };
        }
        Ok(net)
    }
}

impl Module for Sequential {
    fn forward(&self, scope: &mut Scope, x: Value) -> Result<Value> {
        Ok(self.build(scope, x)?.logits)
    }
}

/// What each layer of an [`MlpSpec`] is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerKind {
    /// A plain dense layer.
    Plain,
    /// An [`EigenLayer`] in this mode.
    Eigen(EigenMode),
}

/// Which Eigen layers of an [`MlpSpec`] get a learnable gain (see [`EigenLayer`]'s docs).
/// Plain layers never do: their weight scales freely.
///
/// The default is `Every`: measured on the digits (`deep_mlp`, depth 16, 10 epochs), gains on
/// every layer took the training loss of an orthogonal network from 1.0–1.1 (logits gain
/// only) to 0.07–0.13 and its accuracy from 92–95% to 96–98%, from every init scale; at
/// depth 64 (5 epochs) its loss fell from 1.8 to 0.3–0.4, the accuracy staying within 3
/// points (docs/deep_mlp.md). Each gain lets its layer set its own pre-activation scale
/// (above criticality, see [`EigenMode`]), which a fixed spectrum cannot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GainPlacement {
    /// No gains.
    None,
    /// Only the layer that produces the logits: a temperature, enough for an orthogonal or
    /// normalised last layer to make confident logits given enough steps.
    Logits,
    /// Every Eigen layer (the default).
    #[default]
    Every,
}

impl std::str::FromStr for GainPlacement {
    type Err = crate::Error;
    /// `none`, `logits` or `every` (any case).
    fn from_str(s: &str) -> Result<GainPlacement> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(GainPlacement::None),
            "logits" => Ok(GainPlacement::Logits),
            "every" => Ok(GainPlacement::Every),
            _ => Err(crate::Error::InvalidArgument(format!(
                "unknown gain placement {s:?} (expected none, logits or every)"
            ))),
        }
    }
}

impl GainPlacement {
    /// Whether layer `index` of `depth` weight layers gets a gain.
    pub fn applies_to(self, index: usize, depth: usize) -> bool {
        match self {
            GainPlacement::None => false,
            GainPlacement::Logits => index + 1 == depth,
            GainPlacement::Every => true,
        }
    }
}

/// A multilayer perceptron whose layers are all of one kind: `widths[0]` inputs, hidden layers
/// with `activation`, and `widths.last()` outputs (logits, no activation). Layers are named
/// `layer{i}`, so a training graph and an evaluation graph built from the same spec share
/// parameter names. For a kind per layer, see [`MlpSpec::sequential`] and [`Sequential`].
#[derive(Clone, Debug, PartialEq)]
pub struct MlpSpec {
    /// Layer widths, inputs first.
    pub widths: Vec<usize>,
    /// Nonlinearity after every hidden layer.
    pub activation: Activation,
    /// Plain or Eigen layers.
    pub kind: LayerKind,
    /// Gaussian initialisation scale s: weights ~ N(0, s²/fan_in) (Eigen layers store their
    /// raw weights at one scale, see [`EigenMode::raw_weight_init`]; `Orthogonal` and
    /// `Normalize` do not depend on s).
    pub init_scale: f32,
    /// Which Eigen layers carry a learnable gain (ignored for plain layers).
    pub gains: GainPlacement,
    /// Whether each run of two or more consecutive hidden Eigen layers of one shape (and one
    /// gain placement) is built as one [`EigenStack`] ([`Layer::EigenStack`]), named
    /// `layers{first}-{last}` (its biases `bias0`, …; the logits layer stays on its own):
    /// the same function, with one batched launch per op for the run's weights instead of
    /// one per layer — a 64-deep network of width 64 steps in 293 launches instead of
    /// 1,452. Its raw weights are drawn per stack, so a stacked network starts from other
    /// random values than the unstacked one of the same spec.
    pub stack: bool,
}

/// One built weight layer of an MLP.
#[derive(Clone, Copy, Debug)]
pub enum MlpLayer {
    /// A plain dense layer.
    Plain(Linear),
    /// An Eigen layer.
    Eigen(EigenLayer),
}

impl MlpLayer {
    /// The raw trainable weight.
    pub fn weight(&self) -> Value {
        match self {
            MlpLayer::Plain(l) => l.weight,
            MlpLayer::Eigen(e) => e.linear.weight,
        }
    }

    /// The weight the layer applies (W' for an Eigen layer, W otherwise).
    pub fn effective_weight(&self) -> Value {
        match self {
            MlpLayer::Plain(l) => l.weight,
            MlpLayer::Eigen(e) => e.effective_weight,
        }
    }

    /// The learnable gain of an Eigen layer that has one.
    pub fn gain(&self) -> Option<Value> {
        match self {
            MlpLayer::Plain(_) => None,
            MlpLayer::Eigen(e) => e.gain,
        }
    }
}

/// An MLP (or any [`Sequential`] stack) built into a graph.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// The dense and Eigen layers, input side first.
    pub layers: Vec<MlpLayer>,
    /// The whitening layers, input side first.
    pub whitens: Vec<EigenWhiten>,
    /// The layer normalisations, input side first.
    pub norms: Vec<LayerNorm>,
    /// The output: logits `[batch, widths.last()]` for an MLP.
    pub logits: Value,
}

impl MlpSpec {
    /// The same network as a [`Sequential`] stack, to change the kind of single layers or
    /// insert others (with `stack`, each run of equal hidden Eigen layers is one
    /// [`Layer::EigenStack`]).
    pub fn sequential(&self) -> Sequential {
        let depth = self.widths.len().saturating_sub(1);
        let mut layers = Vec::new();
        for (first, len) in self.runs() {
            let (outputs, init_scale) = (self.widths[first + 1], self.init_scale);
            let gain = self.gains.applies_to(first, depth);
            match self.kind {
                LayerKind::Eigen(mode) if len > 1 => layers.push(Layer::EigenStack {
                    layers: len,
                    outputs,
                    mode,
                    init_scale,
                    gain,
                    activation: self.activation,
                }),
                LayerKind::Plain => layers.push(Layer::Linear {
                    outputs,
                    init_scale,
                }),
                LayerKind::Eigen(mode) => layers.push(Layer::Eigen {
                    outputs,
                    mode,
                    init_scale,
                    gain,
                }),
            }
            if len == 1 && first + 1 < depth {
                layers.push(Layer::Activation(self.activation));
            }
        }
        Sequential { layers }
    }

    /// The layers as (first, count): with `stack` and Eigen layers, each run of two or more
    /// consecutive hidden layers of one shape and gain is one entry; every other layer
    /// (the logits layer always) an entry of its own.
    fn runs(&self) -> Vec<(usize, usize)> {
        let depth = self.widths.len().saturating_sub(1);
        let stacking = self.stack && matches!(self.kind, LayerKind::Eigen(_));
        let key = |i: usize| {
            (
                self.widths[i],
                self.widths[i + 1],
                self.gains.applies_to(i, depth),
            )
        };
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for i in 0..depth {
            match runs.last_mut() {
                Some((first, len)) if stacking && i + 1 < depth && key(*first) == key(i) => {
                    *len += 1
                }
                _ => runs.push((i, 1)),
            }
        }
        runs
    }

    /// Appends the network applied to `x` `[batch, widths[0]]` (for training: an MLP has no
    /// layer that differs between the modes).
    pub fn build(&self, g: &mut Graph, x: Value) -> Result<Mlp> {
        self.build_in(&mut Scope::new(g, Mode::Train), x)
    }

    /// Appends the network applied to `x` `[batch, widths[0]]` in `scope`.
    pub fn build_in(&self, scope: &mut Scope, x: Value) -> Result<Mlp> {
        if self.widths.len() < 2 {
            return Err(Error::InvalidArgument(format!(
                "an MLP needs at least two widths, got {:?}",
                self.widths
            )));
        }
        let (_, features) = scope.features("MlpSpec", x)?;
        if features != self.widths[0] {
            return Err(Error::shape(
                "MlpSpec",
                format!(
                    "input has {features} features, widths[0] is {}",
                    self.widths[0]
                ),
            ));
        }
        self.sequential().build(scope, x)
    }
}

impl Module for MlpSpec {
    fn forward(&self, scope: &mut Scope, x: Value) -> Result<Value> {
        Ok(self.build_in(scope, x)?.logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Op;

    fn names(g: &Graph) -> Vec<&str> {
        g.nodes()
            .iter()
            .filter(|n| matches!(n.op, Op::Param { .. }))
            .map(|n| n.name.as_str())
            .collect()
    }

    #[test]
    fn an_mlp_is_a_sequential_stack_with_the_same_names() {
        let spec = MlpSpec {
            widths: vec![5, 4, 3],
            activation: Activation::Relu,
            kind: LayerKind::Plain,
            init_scale: 1.0,
            gains: GainPlacement::Every,
            stack: false,
        };
        let seq = spec.sequential();
        assert_eq!(seq.layers.len(), 3);
        assert_eq!(seq.layers[1], Layer::Activation(Activation::Relu));
        let mut g = Graph::new();
        let x = g.input("x", &[2, 5]).unwrap();
        let net = spec.build(&mut g, x).unwrap();
        assert_eq!(g.shape(net.logits), [2, 3]);
        assert_eq!(
            names(&g),
            [
                "layer0.weight",
                "layer0.bias",
                "layer1.weight",
                "layer1.bias"
            ]
        );
        let mut short = spec.clone();
        short.widths = vec![5];
        assert!(short.build(&mut Graph::new(), x).is_err());
    }

    /// Dropout exists in training graphs only; whitening keeps its running statistics in
    /// both; every stage is named by kind and position.
    #[test]
    fn modes_differ_where_layers_do() {
        let model = Sequential::new()
            .push(Layer::Linear {
                outputs: 8,
                init_scale: 1.0,
            })
            .push(Layer::LayerNorm { eps: 1e-5 })
            .push(Layer::Dropout { rate: 0.5 })
            .push(Layer::Whiten {
                group: 4,
                mode: WhitenMode::Zca { eps: 1e-3 },
                momentum: 0.1,
            })
            .push(Layer::Dropout { rate: 0.5 })
            .push(Layer::Eigen {
                outputs: 3,
                mode: EigenMode::Orthogonal,
                init_scale: 1.0,
                gain: true,
            });
        let build = |mode| {
            let mut g = Graph::new();
            let x = g.input("x", &[6, 5]).unwrap();
            let net = model.build(&mut Scope::new(&mut g, mode), x).unwrap();
            assert_eq!(g.shape(net.logits), [6, 3]);
            assert_eq!(
                (net.layers.len(), net.whitens.len(), net.norms.len()),
                (2, 1, 1)
            );
            g
        };
        let (train, eval) = (build(Mode::Train), build(Mode::Eval));
        let expected = [
            "layer0.weight",
            "layer0.bias",
            "norm0.gain",
            "norm0.bias",
            "whiten0.running_mean",
            "whiten0.running_cov",
            "layer1.weight",
            "layer1.bias",
            "layer1.gain",
        ];
        assert_eq!(names(&train), expected);
        assert_eq!(names(&eval), expected);
        let dropouts = |g: &Graph| {
            g.nodes()
                .iter()
                .filter(|n| matches!(n.op, Op::Dropout { .. }))
                .count()
        };
        assert_eq!((dropouts(&train), dropouts(&eval)), (2, 0));
        assert!(train.find("dropout1.dropout").is_some());
    }

    /// With `stack`, the runs of equal hidden Eigen layers become stacks (the logits layer
    /// never joins one, a different gain placement splits a run); plain networks and
    /// single layers are unchanged.
    #[test]
    fn stacking_groups_equal_hidden_eigen_layers() {
        let spec = MlpSpec {
            widths: vec![8, 8, 8, 8, 8, 3],
            activation: Activation::Tanh,
            kind: LayerKind::Eigen(EigenMode::Orthogonal),
            init_scale: 1.0,
            gains: GainPlacement::Every,
            stack: true,
        };
        let stacked = |layers: usize, gain: bool| Layer::EigenStack {
            layers,
            outputs: 8,
            mode: EigenMode::Orthogonal,
            init_scale: 1.0,
            gain,
            activation: Activation::Tanh,
        };
        assert_eq!(spec.sequential().layers[0], stacked(4, true));
        assert_eq!(
            spec.sequential().layers.len(),
            2,
            "the stack and the logits layer"
        );
        let mut g = Graph::new();
        let x = g.input("x", &[2, 8]).unwrap();
        let net = spec.build(&mut g, x).unwrap();
        assert_eq!(net.layers.len(), 5);
        assert_eq!(g.shape(net.logits), [2, 3]);
        assert_eq!(
            names(&g),
            [
                "layers0-3.weight",
                "layers0-3.gain",
                "layers0-3.bias0",
                "layers0-3.bias1",
                "layers0-3.bias2",
                "layers0-3.bias3",
                "layer4.weight",
                "layer4.bias",
                "layer4.gain"
            ]
        );
        // All square: the logits layer stays on its own; gains on the logits only split the
        // hidden layers from it too, and give the hidden stack none.
        let mut square = spec.clone();
        square.widths = vec![8, 8, 8, 8];
        square.gains = GainPlacement::Logits;
        let layers = square.sequential().layers;
        assert_eq!(layers[0], stacked(2, false));
        assert!(matches!(layers[1], Layer::Eigen { gain: true, .. }));
        // Without stacking, or for plain layers, one stage per layer and activation.
        for (kind, stack) in [(spec.kind, false), (LayerKind::Plain, true)] {
            let other = MlpSpec {
                kind,
                stack,
                ..spec.clone()
            };
            assert_eq!(other.sequential().layers.len(), 9);
        }
        // A stack needs inputs of its own width.
        let bad = Sequential::new().push(stacked(2, true));
        let mut g = Graph::new();
        let x = g.input("x", &[2, 5]).unwrap();
        let err = bad
            .build(&mut Scope::new(&mut g, Mode::Train), x)
            .unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
    }

    #[test]
    fn a_bad_input_shape_is_a_shape_error() {
        let mut g = Graph::new();
        let x = g.input("x", &[2, 3, 4]).unwrap();
        let model = Sequential::new().push(Layer::Linear {
            outputs: 2,
            init_scale: 1.0,
        });
        let err = model
            .build(&mut Scope::new(&mut g, Mode::Train), x)
            .unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
    }
}
