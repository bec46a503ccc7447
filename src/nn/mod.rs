//! Layers as graph builders: each adds its parameters and ops to a [`Graph`] and returns the
//! value of its output. [`Linear`] is the plain dense layer; [`EigenLayer`] reparametrises its
//! weight through the spectrum of its Gram matrix; [`EigenWhiten`] whitens or projects
//! activations onto their principal components.

mod eigen;
mod whiten;

pub use eigen::{EigenLayer, EigenMode};
pub use whiten::{EigenWhiten, WhitenMode};

use crate::error::Result;
use crate::graph::{Graph, Init, Value};

/// An elementwise nonlinearity.
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

/// A dense layer y = x·W + b with W `[inputs, outputs]`.
#[derive(Clone, Copy, Debug)]
pub struct Linear {
    /// The weight, `[inputs, outputs]`.
    pub weight: Value,
    /// The bias, `[outputs]`.
    pub bias: Value,
}

impl Linear {
    /// Adds the parameters `{name}.weight` (filled by `init`) and `{name}.bias` (zeros).
    pub fn new(g: &mut Graph, name: &str, inputs: usize, outputs: usize, init: Init) -> Linear {
        Linear {
            weight: g.param(&format!("{name}.weight"), &[inputs, outputs], init),
            bias: g.param(&format!("{name}.bias"), &[outputs], Init::Zeros),
        }
    }

    /// x·W + b for x `[batch, inputs]`.
    pub fn forward(&self, g: &mut Graph, x: Value) -> Result<Value> {
        let z = g.matmul(x, self.weight, false, false)?;
        g.add(z, self.bias)
    }
}

/// Gaussian initialisation of a `[fan_in, fan_out]` weight with standard deviation
/// `scale/√fan_in` — scale 1 preserves the variance of the activations in a linear network.
pub fn scaled_normal(fan_in: usize, scale: f32) -> Init {
    Init::Normal {
        std: scale / (fan_in as f32).sqrt(),
    }
}
