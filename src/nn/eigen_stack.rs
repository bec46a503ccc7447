//! A run of Eigen layers of one shape whose raw weights are one stacked parameter, so that
//! the work on the weights — Gram matrices, eigendecompositions, effective weights, gains, and
//! all of it again backwards — runs as one batched launch per op for the whole run instead
//! of one per layer.

use super::eigen::Reparametrised;
use super::{EigenLayer, EigenMode, Linear, Scope};
use crate::error::{Error, Result};
use crate::graph::{Init, Value};

/// `layers` Eigen layers `[inputs, outputs]` sharing stacked parameters: the raw weights
/// `weight` `[layers, inputs, outputs]` and, with gains, `gain` `[layers]`, one bias `bias{k}`
/// per layer. Each member is an [`EigenLayer`] whose weights are slices of the stack
/// ([`Graph::select`](crate::graph::Graph::select)), applied like a layer of its own.
///
/// The same function as `layers` separate [`EigenLayer`]s — each member's W' depends only on
/// its own slice — but cheaper to run: a deep network of separate layers issues about twenty
/// small launches per layer per step for its weights (the products, the spectral gradient,
/// the gain), a stack one batched launch for each. On the GPU, a member's slice of W' is read
/// in place and its weight gradient written straight into its slot of the stacked gradient
/// where the slice's byte size is a multiple of 256 (a width of 64 or any multiple of 8
/// squared); other sizes cost one copy per member and step each way.
///
/// The stack draws its raw weights with `init` for each matrix on its own (orthogonal
/// initialisers too, see [`Init::Orthogonal`]), so it starts from a different draw than
/// separate layers would; `Init::Data` takes all `layers·inputs·outputs` values.
#[derive(Clone, Debug)]
pub struct EigenStack {
    /// The raw weights, `[layers, inputs, outputs]`.
    pub weight: Value,
    /// The effective weights W' (gains included), `[layers, inputs, outputs]`.
    pub effective_weight: Value,
    /// The learnable gains, `[layers]`, if the layers have them.
    pub gain: Option<Value>,
    /// The spectral-function node of the Gram matrices, `[layers, n, n]`.
    pub spectral: Value,
    /// The members, input side first.
    pub layers: Vec<EigenLayer>,
}

impl EigenStack {
    /// Declares `layers` Eigen layers `[inputs, outputs]` in `mode` in `scope` (see the type's
    /// docs for the names), their raw weights drawn by `init` (a random one at one scale, see
    /// [`EigenMode::raw_weight_init`]), with a learnable gain each if
    /// `with_gain` (initialised to [`EigenMode::initial_gain`] of its own matrix).
    pub fn new(
        scope: &mut Scope,
        layers: usize,
        inputs: usize,
        outputs: usize,
        mode: EigenMode,
        init: Init,
        with_gain: bool,
    ) -> Result<EigenStack> {
        if layers == 0 {
            return Err(Error::InvalidArgument(
                "an Eigen stack needs at least one layer".into(),
            ));
        }
        let raw_scale = mode.raw_weight_scale(&init, inputs, outputs);
        let init = mode.raw_weight_init(init, inputs, outputs);
        let gain_init = with_gain.then(|| initial_gains(mode, &init, layers, inputs, outputs));
        let weight = scope.param("weight", &[layers, inputs, outputs], init)?;
        let r = Reparametrised::build(scope, weight, mode, raw_scale, gain_init)?;
        let mut members = Vec::with_capacity(layers);
        for k in 0..layers {
            let linear = Linear {
                weight: scope.select(weight, k)?,
                bias: scope.param(&format!("bias{k}"), &[outputs], Init::Zeros)?,
            };
            members.push(EigenLayer {
                linear,
                effective_weight: scope.select(r.effective_weight, k)?,
                gain: r.gain,
                spectral: r.spectral,
                mode,
                raw_scale,
                slot: k,
                slots: layers,
            });
        }
        Ok(EigenStack {
            weight,
            effective_weight: r.effective_weight,
            gain: r.gain,
            spectral: r.spectral,
            layers: members,
        })
    }
}

/// The initial gains of a stack whose raw weights `init` draws: [`EigenMode::initial_gain`]
/// of each matrix — one value for every layer, except for data, whose matrices differ.
fn initial_gains(
    mode: EigenMode,
    init: &Init,
    layers: usize,
    inputs: usize,
    outputs: usize,
) -> Init {
    match init {
        Init::Data(values) if values.len() == layers * inputs * outputs => Init::Data(
            values
                .chunks(inputs * outputs)
                .map(|m| mode.initial_gain(&Init::Data(m.to_vec()), inputs, outputs))
                .collect(),
        ),
        // A wrong-sized Data fails when the weight is declared.
        other => Init::Constant(mode.initial_gain(other, inputs, outputs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::layout::{init_values, singular_values};
    use crate::graph::Graph;
    use crate::nn::Mode;

    #[test]
    fn a_stack_declares_stacked_parameters_and_per_layer_views() {
        let mut g = Graph::new();
        let mut scope = Scope::new(&mut g, Mode::Train);
        let mut s = scope.scope("stack");
        let init = Init::Normal { std: 0.3 };
        let stack = EigenStack::new(&mut s, 3, 6, 4, EigenMode::Normalize, init, true).unwrap();
        let empty = EigenStack::new(&mut s, 0, 6, 4, EigenMode::Orthogonal, Init::Zeros, false);
        assert!(empty.is_err());
        assert_eq!(g.try_shape(stack.weight).unwrap(), [3, 6, 4]);
        assert_eq!(g.try_shape(stack.spectral).unwrap(), [3, 4, 4]);
        assert_eq!(g.try_shape(stack.gain.unwrap()).unwrap(), [3]);
        for (k, layer) in stack.layers.iter().enumerate() {
            assert_eq!((layer.slot, layer.slots), (k, 3));
            assert_eq!(g.try_shape(layer.effective_weight).unwrap(), [6, 4]);
            assert_eq!(g.find(&format!("stack.bias{k}")), Some(layer.linear.bias));
        }
        // Normalize draws every matrix nearly orthogonal, as a layer of its own would.
        let raw = EigenMode::Normalize.raw_weight_init(Init::Normal { std: 0.3 }, 6, 4);
        let w = init_values(&raw, &[3, 6, 4], 1).unwrap();
        for m in w.chunks(24) {
            let sigma = singular_values(m, 6, 4);
            assert!(sigma[3] > 0.85 * sigma[0], "{sigma:?}");
        }
    }

    #[test]
    fn data_gives_each_matrix_its_own_initial_gain() {
        let (inputs, outputs) = (3, 2);
        let data: Vec<f32> = (0..12).map(|i| ((i * i) as f32 * 0.7).sin()).collect();
        let Init::Data(gains) = initial_gains(
            EigenMode::Normalize,
            &Init::Data(data.clone()),
            2,
            inputs,
            outputs,
        ) else {
            panic!("data gives data");
        };
        for (m, gain) in data.chunks(6).zip(gains) {
            let own = EigenMode::Normalize.initial_gain(&Init::Data(m.to_vec()), inputs, outputs);
            assert_eq!(gain, own);
        }
        let same = initial_gains(EigenMode::Orthogonal, &Init::Zeros, 4, inputs, outputs);
        assert_eq!(same, Init::Constant(1.0));
    }
}
