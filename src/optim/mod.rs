//! Optimizers as graph builders: `minimize` appends the backward pass and one in-place update
//! op per trainable parameter (plus optional clipping by global norm), with the optimizer
//! state resident beside the parameters (role [`Role::OptimizerState`], named
//! `{parameter}.{state}`). The learning rate is read from a device buffer that the host
//! writes at every step, so a [`Schedule`] or
//! [`Plan::set_learning_rate`](crate::graph::plan::Plan::set_learning_rate) changes it
//! without recompiling.
//!
//! ```
//! use eigengrad::graph::{reference::ReferencePlan, Graph, Init, Plan};
//! use eigengrad::optim::{Adam, Optimizer, Schedule};
//! # fn main() -> eigengrad::Result<()> {
//! // Fit w to minimise mean((x·w − t)²) with Adam, warming the rate up over 5 steps.
//! let mut g = Graph::new();
//! let x = g.input("x", &[4, 2])?;
//! let t = g.input("t", &[4, 1])?;
//! let w = g.param("w", &[2, 1], Init::Zeros)?;
//! let y = g.matmul(x, w, false, false)?;
//! let loss = g.mse(y, t)?;
//! let adam = Adam::new(0.1).with_schedule(Schedule::WarmupCosine { warmup: 5, total: 50, floor: 0.1 });
//! adam.minimize(&mut g, loss)?;
//! assert!(g.find("w.adam_m").is_some()); // the optimizer state, beside the parameter
//!
//! let mut plan = ReferencePlan::<f64>::compile(&g, 0)?; // runs anywhere, no GPU needed
//! let (xs, ts) = ([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0], [1.0, -1.0, 0.0, 1.0]);
//! assert_eq!(Plan::learning_rate(&plan), 0.02); // step 1 of the warmup
//! for _ in 0..50 {
//!     Plan::step(&mut plan, &[(x, &xs), (t, &ts)])?;
//! }
//! assert!(Plan::read(&plan, loss)?[0] < 0.05);
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::graph::autodiff::Gradients;
pub use crate::graph::Schedule;
use crate::graph::{Graph, Init, Op, Role, Value};
pub use crate::kernels::optim::UpdateRule as Update;

/// What every optimizer does: append the backward pass of a loss and the updates of the
/// trainable parameters to a graph, and set the learning rate and its schedule a compiled
/// plan starts with.
pub trait Optimizer {
    /// Appends the backward pass of `loss` and the update of every trainable parameter that
    /// reaches it; returns where the gradients live.
    fn minimize(&self, graph: &mut Graph, loss: Value) -> Result<Gradients>;
}

/// SGD with momentum (PyTorch's form) and optional L2 weight decay.
#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    /// Learning rate at the first step.
    pub lr: f32,
    /// Momentum coefficient (0 for plain SGD).
    pub momentum: f32,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f32,
    /// Clip the gradients by their global L2 norm to at most this, if set.
    pub clip_norm: Option<f32>,
    /// How the rate changes from step to step (`lr` is its base rate).
    pub schedule: Schedule,
}

impl Sgd {
    /// SGD with learning rate `lr`, momentum 0.9, no decay, no clipping, a constant rate.
    pub fn new(lr: f32) -> Sgd {
        Sgd {
            lr,
            momentum: 0.9,
            weight_decay: 0.0,
            clip_norm: None,
            schedule: Schedule::Constant,
        }
    }

    /// The same optimizer with the rate following `schedule` from `lr`.
    pub fn with_schedule(self, schedule: Schedule) -> Sgd {
        Sgd { schedule, ..self }
    }

    /// Checks the hyper-parameters and the schedule: learning rate finite and ≥ 0, momentum
    /// in [0, 1), weight decay finite and ≥ 0, clip norm finite and > 0, the schedule valid.
    /// [`Sgd::minimize`] calls it first.
    pub fn validate(&self) -> Result<()> {
        check("Sgd", "learning rate", self.lr, NON_NEGATIVE)?;
        check("Sgd", "momentum", self.momentum, UNIT_INTERVAL)?;
        check("Sgd", "weight decay", self.weight_decay, NON_NEGATIVE)?;
        self.schedule.validate()?;
        check_clip("Sgd", self.clip_norm)
    }

    /// Appends the backward pass of `loss` and the update of every trainable parameter.
    pub fn minimize(&self, graph: &mut Graph, loss: Value) -> Result<Gradients> {
        self.validate()?;
        let rule = Update::Sgd {
            momentum: self.momentum,
            weight_decay: self.weight_decay,
        };
        append_updates(graph, loss, rule, self.lr, self.schedule, self.clip_norm)
    }
}

impl Optimizer for Sgd {
    fn minimize(&self, graph: &mut Graph, loss: Value) -> Result<Gradients> {
        Sgd::minimize(self, graph, loss)
    }
}

/// Adam with bias correction; decoupled weight decay makes it AdamW.
#[derive(Clone, Copy, Debug)]
pub struct Adam {
    /// Learning rate at the first step.
    pub lr: f32,
    /// First-moment decay (0.9).
    pub beta1: f32,
    /// Second-moment decay (0.999).
    pub beta2: f32,
    /// Denominator guard (1e-8).
    pub eps: f32,
    /// Decoupled weight decay (AdamW), 0 for Adam.
    pub weight_decay: f32,
    /// Clip the gradients by their global L2 norm to at most this, if set.
    pub clip_norm: Option<f32>,
    /// How the rate changes from step to step (`lr` is its base rate).
    pub schedule: Schedule,
}

impl Adam {
    /// Adam with learning rate `lr`, the usual defaults and a constant rate.
    pub fn new(lr: f32) -> Adam {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            clip_norm: None,
            schedule: Schedule::Constant,
        }
    }

    /// The same optimizer with the rate following `schedule` from `lr`.
    pub fn with_schedule(self, schedule: Schedule) -> Adam {
        Adam { schedule, ..self }
    }

    /// Checks the hyper-parameters and the schedule: learning rate finite and ≥ 0, β1 and β2
    /// in [0, 1), eps finite and > 0, weight decay finite and ≥ 0, clip norm finite and > 0,
    /// the schedule valid. [`Adam::minimize`] calls it first.
    pub fn validate(&self) -> Result<()> {
        check("Adam", "learning rate", self.lr, NON_NEGATIVE)?;
        check("Adam", "beta1", self.beta1, UNIT_INTERVAL)?;
        check("Adam", "beta2", self.beta2, UNIT_INTERVAL)?;
        check("Adam", "eps", self.eps, POSITIVE)?;
        check("Adam", "weight decay", self.weight_decay, NON_NEGATIVE)?;
        self.schedule.validate()?;
        check_clip("Adam", self.clip_norm)
    }

    /// Appends the backward pass of `loss` and the update of every trainable parameter.
    pub fn minimize(&self, graph: &mut Graph, loss: Value) -> Result<Gradients> {
        self.validate()?;
        let rule = Update::Adam {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
        };
        append_updates(graph, loss, rule, self.lr, self.schedule, self.clip_norm)
    }
}

impl Optimizer for Adam {
    fn minimize(&self, graph: &mut Graph, loss: Value) -> Result<Gradients> {
        Adam::minimize(self, graph, loss)
    }
}

/// A range a hyper-parameter must lie in, and how an error message says it.
struct Range {
    contains: fn(f32) -> bool,
    says: &'static str,
}

/// Finite and ≥ 0 (learning rate, weight decay).
const NON_NEGATIVE: Range = Range {
    contains: |v| v.is_finite() && v >= 0.0,
    says: "finite and ≥ 0",
};
/// Finite and > 0 (eps, clip norm).
const POSITIVE: Range = Range {
    contains: |v| v.is_finite() && v > 0.0,
    says: "finite and > 0",
};
/// In [0, 1) (momentum, Adam's betas: 1 would never forget, NaN never updates).
const UNIT_INTERVAL: Range = Range {
    contains: |v| (0.0..1.0).contains(&v),
    says: "in [0, 1)",
};

/// [`Error::InvalidArgument`] naming the optimizer and hyper-parameter unless `value` is in
/// `range`.
fn check(optimizer: &str, what: &str, value: f32, range: Range) -> Result<()> {
    if (range.contains)(value) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{optimizer}: {what} must be {}, got {value}",
            range.says
        )))
    }
}

fn check_clip(optimizer: &str, clip_norm: Option<f32>) -> Result<()> {
    clip_norm.map_or(Ok(()), |c| check(optimizer, "clip norm", c, POSITIVE))
}

/// Backward of `loss`, optional clipping, then one update op per trainable parameter; the
/// graph's learning rate and schedule are set last (the hyper-parameters were validated by
/// the caller).
fn append_updates(
    graph: &mut Graph,
    loss: Value,
    rule: Update,
    lr: f32,
    schedule: Schedule,
    clip_norm: Option<f32>,
) -> Result<Gradients> {
    let grads = graph.backward(loss)?;
    let params: Vec<(Value, Value)> = graph
        .trainable_params()
        .into_iter()
        .filter_map(|p| grads.get(p).map(|g| (p, g)))
        .collect();
    if params.is_empty() {
        return Err(Error::InvalidArgument(
            "minimize: no trainable parameter reaches the loss".into(),
        ));
    }
    if let Some(max_norm) = clip_norm {
        let all: Vec<Value> = params.iter().map(|&(_, g)| g).collect();
        graph.push(Op::ClipGradients { max_norm }, all, vec![])?;
    }
    for (p, g) in params {
        let shape = graph.shape(p).to_vec();
        let pname = graph.node(p).name.clone();
        let mut inputs = vec![p, g];
        for suffix in rule.state_names() {
            inputs.push(graph.resident(
                &format!("{pname}.{suffix}"),
                &shape,
                Init::Zeros,
                Role::OptimizerState,
            )?);
        }
        graph.push(Op::Update(rule), inputs, vec![])?;
    }
    graph.set_learning_rate(lr);
    graph.set_schedule(schedule);
    Ok(grads)
}
