//! Describing a model once: a [`Module`] appends itself to a graph through a [`Scope`], which
//! carries the name prefix of the parameters it declares and the [`Mode`] the graph is built
//! for. Building the same module in [`Mode::Train`] and in [`Mode::Eval`] gives two graphs
//! whose parameters have the same names, so a plan of the one can share the other's tensors
//! ([`GpuPlan::compile_sharing`](crate::graph::gpu::GpuPlan::compile_sharing)) or load its
//! checkpoint.

use crate::error::{Error, Result};
use crate::graph::{Graph, Init, Role, Value};
use std::ops::{Deref, DerefMut};

/// What a graph is built for: layers whose behaviour differs between training and inference
/// (dropout, batch statistics) ask the scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: dropout drops, whitening uses batch statistics and updates running ones.
    Train,
    /// Evaluation and inference: dropout is the identity, whitening uses the running
    /// statistics, nothing is updated.
    Eval,
}

/// A place in a graph under construction: the graph, a dotted name prefix and the [`Mode`].
///
/// Parameters declared through a scope are named `prefix.name`; [`Scope::scope`] opens a
/// nested scope, so a layer never formats names itself. A scope dereferences to its
/// [`Graph`], so every op builder (`matmul`, `relu`, …) is at hand; its own [`Scope::param`],
/// [`Scope::resident`] and [`Scope::name`] shadow the graph's and apply the prefix.
///
/// ```
/// use eigengrad::graph::{Graph, Init};
/// use eigengrad::nn::{Mode, Scope};
/// # fn main() -> eigengrad::Result<()> {
/// let mut g = Graph::new();
/// let mut root = Scope::new(&mut g, Mode::Train);
/// let mut block = root.scope("block1");
/// let w = block.scope("fc").param("weight", &[3, 2], Init::Zeros)?;
/// assert_eq!(g.find("block1.fc.weight"), Some(w));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Scope<'g> {
    graph: &'g mut Graph,
    prefix: String,
    mode: Mode,
}

impl<'g> Scope<'g> {
    /// The root scope of `graph` (no prefix) in `mode`.
    pub fn new(graph: &'g mut Graph, mode: Mode) -> Scope<'g> {
        Scope {
            graph,
            prefix: String::new(),
            mode,
        }
    }

    /// A nested scope `name` (its names are `prefix.name.…`), in the same mode.
    pub fn scope(&mut self, name: &str) -> Scope<'_> {
        Scope {
            prefix: self.path(name),
            graph: &mut *self.graph,
            mode: self.mode,
        }
    }

    /// The mode the graph is built for.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the graph is built for training.
    pub fn is_training(&self) -> bool {
        self.mode == Mode::Train
    }

    /// The dotted prefix of this scope (empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of `name` in this scope: `prefix.name` (or `name` at the root).
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// A trainable parameter named `prefix.name` (see [`Graph::param`]).
    pub fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Value> {
        let full = self.path(name);
        self.graph.param(&full, shape, init)
    }

    /// A resident tensor of any role named `prefix.name` (see [`Graph::resident`]).
    pub fn resident(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        role: Role,
    ) -> Result<Value> {
        let full = self.path(name);
        self.graph.resident(&full, shape, init, role)
    }

    /// Names the node of `v` `prefix.name`, so errors and stats say which layer it belongs to
    /// (see [`Graph::set_name`]).
    pub fn name(&mut self, v: Value, name: &str) -> Result<()> {
        let full = self.path(name);
        self.graph.set_name(v, &full)
    }

    /// A seed derived from the full name of `name` (FNV-1a), stable from one build of the
    /// model to the next: for layers that draw random numbers, such as dropout.
    pub fn seed(&self, name: &str) -> u32 {
        self.path(name).bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
    }

    /// The shape of `x` as `[rows, features]`, or a shape error naming `layer` (for layers
    /// that act on feature vectors).
    pub fn features(&self, layer: &str, x: Value) -> Result<(usize, usize)> {
        match self
            .graph
            .nodes()
            .get(x.index())
            .map(|n| n.shape.as_slice())
        {
            Some(&[rows, features]) => Ok((rows, features)),
            Some(other) => Err(Error::shape(
                &self.path(layer),
                format!("input must be [batch, features], got {other:?}"),
            )),
            None => Err(Error::InvalidArgument(format!(
                "{}: {}",
                self.path(layer),
                self.graph.describe(x)
            ))),
        }
    }
}

impl Deref for Scope<'_> {
    type Target = Graph;

    fn deref(&self) -> &Graph {
        self.graph
    }
}

impl DerefMut for Scope<'_> {
    fn deref_mut(&mut self) -> &mut Graph {
        self.graph
    }
}

/// A model, or a part of one, described once: how it maps an input value to an output value
/// in a graph, in either [`Mode`]. Everything it declares goes through the scope, so its
/// names are the scope's.
///
/// Closures `Fn(&mut Scope, Value) -> Result<Value>` are modules, as are
/// [`MlpSpec`](super::MlpSpec), [`Sequential`](super::Sequential) and the stateless layers.
///
/// ```
/// use eigengrad::graph::{Graph, Init, Value};
/// use eigengrad::nn::{Dropout, Linear, Mode, Module, Scope};
/// # fn main() -> eigengrad::Result<()> {
/// /// A two-layer classifier with dropout between the layers.
/// struct Net;
/// impl Module for Net {
///     fn forward(&self, s: &mut Scope, x: Value) -> eigengrad::Result<Value> {
///         let h = Linear::new(&mut s.scope("fc1"), 8, 16, Init::Normal { std: 0.3 })?.forward(s, x)?;
///         let h = s.relu(h)?;
///         let h = Dropout { rate: 0.2 }.forward(&mut s.scope("drop"), h)?;
///         Linear::new(&mut s.scope("fc2"), 16, 3, Init::Normal { std: 0.3 })?.forward(s, h)
///     }
/// }
/// let (mut train, mut eval) = (Graph::new(), Graph::new());
/// let x = train.input("x", &[32, 8])?;
/// Net.forward(&mut Scope::new(&mut train, Mode::Train), x)?;
/// let x = eval.input("x", &[5, 8])?;
/// Net.forward(&mut Scope::new(&mut eval, Mode::Eval), x)?;
/// // The same parameters in both graphs; the evaluation graph has no dropout.
/// assert!(train.find("fc2.weight").is_some() && eval.find("fc2.weight").is_some());
/// assert!(eval.nodes().len() < train.nodes().len());
/// # Ok(()) }
/// ```
pub trait Module {
    /// Appends the module applied to `x` in `scope` and returns its output.
    fn forward(&self, scope: &mut Scope, x: Value) -> Result<Value>;
}

impl<F> Module for F
where
    F: Fn(&mut Scope, Value) -> Result<Value>,
{
    fn forward(&self, scope: &mut Scope, x: Value) -> Result<Value> {
        self(scope, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_prefix_names_and_keep_the_mode() {
        let mut g = Graph::new();
        let mut root = Scope::new(&mut g, Mode::Eval);
        assert_eq!(root.path("w"), "w");
        let mut a = root.scope("a");
        let outer_seed = a.seed("drop");
        let mut b = a.scope("b");
        assert_eq!(b.prefix(), "a.b");
        assert!(!b.is_training());
        let v = b.param("w", &[2], Init::Zeros).unwrap();
        let s = b.resident("s", &[2], Init::Zeros, Role::State).unwrap();
        let y = b.relu(v).unwrap();
        b.name(y, "out").unwrap();
        let inner_seed = b.seed("drop");
        assert_ne!(inner_seed, outer_seed);
        let mut other = Graph::new();
        let same = Scope::new(&mut other, Mode::Train)
            .scope("a")
            .scope("b")
            .seed("drop");
        assert_eq!(inner_seed, same, "seeds follow the names, not the graph");
        let names: Vec<&str> = [v, s, y].iter().map(|&v| g.node(v).name.as_str()).collect();
        assert_eq!(names, ["a.b.w", "a.b.s", "a.b.out"]);
    }

    #[test]
    fn a_name_taken_twice_is_an_error_naming_it() {
        let mut g = Graph::new();
        let mut s = Scope::new(&mut g, Mode::Train);
        s.scope("fc").param("weight", &[2], Init::Zeros).unwrap();
        let err = s
            .scope("fc")
            .param("weight", &[3], Init::Zeros)
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("\"fc.weight\"")),
            "{err}"
        );
    }
}
