//! The command graph: symbolic values, ops with shapes checked as they are added, reverse-mode
//! autodiff that appends gradient ops to the same graph, a planner that assigns pooled device
//! buffers, and two executors over the same [`Plan`] — the GPU one (one submission
//! per step) and the CPU reference one (nalgebra, any precision).
//!
//! ```no_run
//! use eigengrad::graph::{Graph, Init};
//! use eigengrad::optim::Adam;
//! # fn main() -> eigengrad::Result<()> {
//! let mut g = Graph::new();
//! let x = g.input("x", &[32, 784])?;
//! let t = g.input("targets", &[32, 10])?;
//! let w = g.param("w", &[784, 10], Init::Normal { std: 0.03 })?;
//! let b = g.param("b", &[10], Init::Zeros)?;
//! let z = g.matmul(x, w, false, false)?;
//! let logits = g.add(z, b)?;
//! let loss = g.softmax_cross_entropy(logits, t)?;
//! Adam::new(1e-3).minimize(&mut g, loss)?;
//! # Ok(()) }
//! ```

pub mod autodiff;
pub mod checkpoint;
pub mod gpu;
pub mod layout;
pub mod plan;
pub mod rate;
pub mod reference;
pub mod status;

pub use plan::{Plan, PlanState};
pub use rate::Schedule;

use crate::error::{Error, Result};
use crate::kernels::elementwise::{binary_shape, BinaryOp, Broadcast, UnaryOp};
use crate::kernels::jacobi::WarmStart;
use crate::kernels::matmul::matmul_shape;
use crate::kernels::optim::UpdateRule;
use crate::kernels::reduce::{Axis, ReduceOp};
use crate::kernels::softmax::softmax_xent_shape;
use crate::kernels::spectral::SpectralFn;
use crate::tensor::numel;
use std::collections::{BTreeMap, HashMap};

/// A symbolic value of a [`Graph`]: the output of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub(crate) usize);

impl Value {
    /// The node index (values are numbered in the order they were added).
    pub fn index(self) -> usize {
        self.0
    }
}

/// How a parameter or state tensor is filled when a plan is compiled.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// Every element `v`.
    Constant(f32),
    /// Gaussian with mean 0 and standard deviation `std`.
    Normal {
        /// Standard deviation.
        std: f32,
    },
    /// Uniform in [−limit, limit].
    Uniform {
        /// Half-width.
        limit: f32,
    },
    /// A random matrix with orthonormal rows or columns (QR of a Gaussian), times `gain`:
    /// every singular value equals `gain`. A stack of matrices (rank 3) draws each on its
    /// own.
    Orthogonal {
        /// The common singular value.
        gain: f32,
    },
    /// U·diag(σ)·Vᵀ with random orthonormal U and V (QR of Gaussians) and the singular values
    /// σ evenly spaced from `gain` down to `gain·(1 − spread)`: a nearly orthogonal matrix
    /// whose largest singular value is simple (for `spread > 0`) and whose spectrum is known
    /// exactly, for layers that divide by σ_max (see `nn::EigenMode::Normalize`). A stack of
    /// matrices (rank 3) draws each on its own.
    OrthogonalSpread {
        /// The largest singular value.
        gain: f32,
        /// How far below `gain` the smallest singular value lies, as a fraction of `gain`.
        spread: f32,
    },
    /// `gain` on the diagonal, zero elsewhere (a rectangular identity).
    Identity {
        /// The diagonal value.
        gain: f32,
    },
    /// Exactly these values (row-major, one per element).
    Data(Vec<f32>),
}

/// What a resident tensor is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Trained by the optimizer, saved in checkpoints.
    Trainable,
    /// Model state that is not trained but updated in place, such as running statistics:
    /// part of the model (an inference plan needs it), saved in checkpoints.
    State,
    /// The optimizer's state (momenta, moment estimates): updated in place by the updates,
    /// saved in full training-state checkpoints only.
    OptimizerState,
    /// A constant the graph needs (e.g. the seed gradient 1 of the loss); never saved.
    Constant,
}

impl Role {
    /// Whether tensors of this role belong to the model itself — parameters and model state,
    /// what an inference plan needs and a parameters checkpoint holds.
    pub fn is_model(self) -> bool {
        matches!(self, Role::Trainable | Role::State)
    }

    /// Whether tensors of this role are saved in a full training-state checkpoint.
    pub fn is_saved(self) -> bool {
        self != Role::Constant
    }
}

/// One operation of the graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A placeholder written by the caller at every step.
    Input,
    /// A tensor resident on the device for the life of the plan.
    Param {
        /// How it is filled at compile time.
        init: Init,
        /// Trainable parameter, state or constant.
        role: Role,
    },
    /// C = op(A)·op(B), optionally batched (both operands of the same rank).
    MatMul {
        /// Transpose A.
        trans_a: bool,
        /// Transpose B.
        trans_b: bool,
    },
    /// y = f(x).
    Unary(UnaryOp),
    /// out = f(a, b) with b read as `b_from` says.
    Binary {
        /// The map.
        op: BinaryOp,
        /// How b is broadcast against a.
        b_from: Broadcast,
    },
    /// y = alpha·x broadcast to the output shape.
    Expand {
        /// The broadcast pattern.
        from: Broadcast,
        /// Scale.
        alpha: f32,
    },
    /// Reduce the input viewed as [rows, cols] (cols = last dimension).
    Reduce {
        /// Sum, max, mean or sum of squares.
        op: ReduceOp,
        /// Rows → one value per row; Cols → one value per column.
        axis: Axis,
    },
    /// Swap the last two dimensions.
    Transpose,
    /// The same buffer under another shape (no kernel).
    Reshape,
    /// Matrix `index` of a stack: the input `[n, …]` without its first dimension, `[…]`.
    /// Where the slice starts at an aligned byte offset (see [`layout::Storage::Slice`]) the
    /// GPU executor reads it in place, without a kernel. Its gradient is a [`Op::Stack`].
    Select {
        /// Which slice along the first dimension.
        index: usize,
    },
    /// Stacks its inputs (all of one shape `[…]`) along a new first dimension, `[k, …]`: the
    /// adjoint of [`Op::Select`]. The GPU executor lets an input that an op computes write
    /// its slice of the stack directly (see [`layout::Storage::Within`]) and copies the others.
    Stack,
    /// Per-row softmax cross-entropy of logits (input 0) against soft targets (input 1).
    SoftmaxXent,
    /// Gradient of [`Op::SoftmaxXent`] w.r.t. the logits: inputs logits, targets, dloss.
    SoftmaxXentBackward,
    /// H = V·diag(f(λ))·Vᵀ for each symmetric matrix G = V·diag(λ)·Vᵀ of the input
    /// (`[n, n]` or `[batch, n, n]`): one batched, warm-started Jacobi solve on the GPU per
    /// step. The eigenvalues and eigenvectors stay readable for introspection.
    SpectralFn(SpectralFn),
    /// Gradient of [`Op::SpectralFn`]: inputs dH and the forward value (whose eigenpairs it
    /// reuses); dG = V·(Lw ∘ Vᵀ·sym(dH)·V)·Vᵀ with the Loewner matrix Lw of f.
    SpectralFnBackward(SpectralFn),
    /// Exponential moving average, in place: state (input 0) ← (1 − m)·state + m·value
    /// (input 1). Produces no value; used for running statistics.
    Ema {
        /// Weight of the new value.
        momentum: f32,
    },
    /// Sets the step's gradient scale to min(1, max_norm/‖g‖) over all its inputs (the
    /// gradients); the updates that follow read it. Produces no value.
    ClipGradients {
        /// Largest global L2 norm of the gradients.
        max_norm: f32,
    },
    /// An in-place optimizer update of a parameter (input 0) from its gradient (input 1) and
    /// its state tensors (inputs 2..). Produces no value.
    Update(UpdateRule),
    /// Inverted dropout: each element is kept with probability 1 − `rate` and scaled by
    /// 1/(1 − `rate`), or zeroed. The mask is a hash of (`seed`, step count, element index),
    /// the same on every executor, fresh at every step and equal within one: the gradient
    /// is this op applied to dy.
    Dropout {
        /// Probability of zeroing an element, in [0, 1).
        rate: f32,
        /// Seed of the mask (distinct per dropout layer).
        seed: u32,
    },
    /// (x − mean)/√(var + eps) per row of the input viewed as [rows, cols] (cols = last
    /// dimension): layer normalisation without the affine part.
    LayerNorm {
        /// Added to the variance.
        eps: f32,
    },
    /// Gradient of [`Op::LayerNorm`]: inputs x and dy; the row statistics are recomputed.
    LayerNormBackward {
        /// Added to the variance.
        eps: f32,
    },
}

impl Op {
    /// A short name for logs, errors and stats.
    pub fn name(&self) -> String {
        match self {
            Op::Unary(u) => format!("{u:?}"),
            Op::Binary { op, .. } => format!("{op:?}"),
            Op::Reduce { op, axis } => format!("Reduce{op:?}{axis:?}"),
            Op::Update(u) => format!("Update{}", u.name()),
            Op::Param { role, .. } => format!("Param{role:?}"),
            other => {
                let s = format!("{other:?}");
                s.split([' ', '{', '(']).next().unwrap_or("op").to_string()
            }
        }
    }
}

/// A node: an op, its inputs, its output shape and a name.
#[derive(Clone, Debug)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// Input values, in the order the op expects.
    pub inputs: Vec<Value>,
    /// Output shape (empty for ops without output).
    pub shape: Vec<usize>,
    /// Name: given for inputs and params, derived for the rest.
    pub name: String,
}

/// A graph of ops over symbolic values, built in topological order.
///
/// Every node has a name, unique in the graph: inputs and resident tensors get theirs from
/// the caller (checkpoints store tensors by it), other nodes a derived `Op#index` until a
/// layer renames them. A name is not empty and holds no `#` (reserved for derived names) and
/// no control character.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    learning_rate: f32,
    schedule: Schedule,
    names: HashMap<String, Value>,
    /// The values [`Graph::backward`] differentiated: the losses a step watches.
    losses: Vec<Value>,
    /// Spectral-function nodes whose eigendecomposition does not start the default way
    /// ([`Graph::warm_start`]).
    warm_starts: BTreeMap<usize, WarmStart>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// The learning rate a compiled plan starts with (set by the optimizer).
    pub fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    /// Sets the learning rate a compiled plan starts with.
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.learning_rate = lr;
    }

    /// How a compiled plan's learning rate changes from step to step (set by the optimizer).
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Sets the schedule a compiled plan follows.
    pub fn set_schedule(&mut self, schedule: Schedule) {
        self.schedule = schedule;
    }

    /// The losses: every value [`Graph::backward`] was called on, in that order.
    pub fn losses(&self) -> &[Value] {
        &self.losses
    }

    /// All nodes, in order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Renames the node of `v` (layers name their nodes so errors and stats say which layer).
    /// The name must be valid and not taken by another node (see [`Graph`]).
    pub fn set_name(&mut self, v: Value, name: &str) -> Result<()> {
        self.lookup("set_name", v)?;
        if self.nodes[v.0].name == name {
            return Ok(());
        }
        self.check_name(name)?;
        let old = std::mem::replace(&mut self.nodes[v.0].name, name.to_string());
        self.names.remove(&old);
        self.names.insert(name.to_string(), v);
        Ok(())
    }

    /// Where the GPU executor starts each step's eigendecomposition of spectral-function node
    /// `v`: [`WarmStart::Off`] (cold every step: no state carried between steps, 6–9 sweeps)
    /// or [`WarmStart::Feedback`] (from the last step's eigenvectors, 1–3 sweeps, cold at the
    /// first step and every `cold_restart_every` steps). Nodes with the same order and
    /// setting share one batched solve. The reference executor solves exactly either way.
    ///
    /// Errors: [`Error::InvalidArgument`] naming `v` if it is not a spectral function of this
    /// graph, or for [`WarmStart::Given`] (a graph's solve has no caller-filled V0) or a
    /// feedback period of 0.
    pub fn set_warm_start(&mut self, v: Value, warm_start: WarmStart) -> Result<()> {
        let node = self.lookup("set_warm_start", v)?;
        if !matches!(node.op, Op::SpectralFn(_)) {
            return Err(Error::InvalidArgument(format!(
                "set_warm_start: {:?} ({}) is not a spectral function",
                node.name,
                node.op.name()
            )));
        }
        match warm_start {
            WarmStart::Given => Err(Error::InvalidArgument(format!(
                "set_warm_start on {:?}: a graph's solve starts cold (Off) or from its last \
                 step's eigenvectors (Feedback), not from a given V0",
                node.name
            ))),
            WarmStart::Feedback {
                cold_restart_every: 0,
            } => Err(Error::InvalidArgument(format!(
                "set_warm_start on {:?}: the cold-restart period must be at least 1",
                node.name
            ))),
            _ => {
                self.warm_starts.insert(v.0, warm_start);
                Ok(())
            }
        }
    }

    /// Where the eigendecomposition of spectral-function node `v` starts each step (see
    /// [`Graph::set_warm_start`]): [`WarmStart::feedback`] unless set otherwise.
    pub fn warm_start(&self, v: Value) -> WarmStart {
        self.warm_starts
            .get(&v.0)
            .copied()
            .unwrap_or_else(WarmStart::feedback)
    }

    /// The name of `v` for messages: its node's name, or what is wrong with `v`.
    pub fn describe(&self, v: Value) -> String {
        match self.nodes.get(v.0) {
            Some(n) => n.name.clone(),
            None => format!(
                "a value (index {}) that is not in this graph of {} nodes",
                v.0,
                self.nodes.len()
            ),
        }
    }

    /// The value of node `index`, if the graph has that many nodes.
    pub fn value(&self, index: usize) -> Option<Value> {
        (index < self.nodes.len()).then_some(Value(index))
    }

    /// The node of `v`, or [`Error::InvalidArgument`] if `v` is not a value of this graph.
    pub fn try_node(&self, v: Value) -> Result<&Node> {
        self.lookup("node", v)
    }

    /// The output shape of `v` (empty for ops without output), or
    /// [`Error::InvalidArgument`] if `v` is not a value of this graph.
    pub fn try_shape(&self, v: Value) -> Result<&[usize]> {
        self.lookup("shape", v).map(|n| n.shape.as_slice())
    }

    /// The node of `v`, which the crate took from this graph (panics otherwise: callers
    /// outside the crate use [`Graph::try_node`]).
    pub(crate) fn node(&self, v: Value) -> &Node {
        &self.nodes[v.0]
    }

    /// The output shape of `v`, which the crate took from this graph (see [`Graph::node`]).
    pub(crate) fn shape(&self, v: Value) -> &[usize] {
        &self.nodes[v.0].shape
    }

    /// The value named `name`, if any.
    pub fn find(&self, name: &str) -> Option<Value> {
        self.names.get(name).copied()
    }

    /// Trainable parameters, in the order they were added.
    pub fn trainable_params(&self) -> Vec<Value> {
        self.values_where(|op| {
            matches!(
                op,
                Op::Param {
                    role: Role::Trainable,
                    ..
                }
            )
        })
    }

    /// For each node: whether its value depends only on resident tensors (no input), so it
    /// is the same for every batch of a step — e.g. an Eigen layer's Gram matrix and W'.
    pub fn param_only(&self) -> Vec<bool> {
        let mut out = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            out[i] = match n.op {
                Op::Param { .. } => true,
                Op::Input | Op::Update(_) | Op::ClipGradients { .. } | Op::Ema { .. } => false,
                _ => !n.inputs.is_empty() && n.inputs.iter().all(|v| out[v.0]),
            };
        }
        out
    }

    /// For each node: whether computing `outputs` needs it — the outputs and everything they
    /// depend on. Ops without a value (updates, clipping, running averages) are never needed:
    /// nothing reads them. Each output must be a value of this graph.
    pub fn needed_for(&self, outputs: &[Value]) -> Result<Vec<bool>> {
        let mut needed = vec![false; self.nodes.len()];
        for &v in outputs {
            self.check_value("output", v)?;
            needed[v.0] = true;
        }
        for i in (0..self.nodes.len()).rev() {
            if needed[i] {
                for v in &self.nodes[i].inputs {
                    needed[v.0] = true;
                }
            }
        }
        Ok(needed)
    }

    /// Every value whose op satisfies `pred`.
    pub(crate) fn values_where(&self, pred: impl Fn(&Op) -> bool) -> Vec<Value> {
        (0..self.nodes.len())
            .filter(|&i| pred(&self.nodes[i].op))
            .map(Value)
            .collect()
    }

    /// The node of `v`, or an error naming `op` if `v` is not a value of this graph.
    fn lookup(&self, op: &str, v: Value) -> Result<&Node> {
        self.nodes
            .get(v.0)
            .ok_or_else(|| Error::InvalidArgument(format!("{op}: {}", self.describe(v))))
    }

    /// Checks that `v` is a value of this graph with an output an op can read.
    fn check_value(&self, op: &str, v: Value) -> Result<()> {
        let node = self.lookup(op, v)?;
        if node.shape.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{op}: {} ({}) has no output",
                node.name,
                node.op.name()
            )));
        }
        Ok(())
    }

    /// Checks that `name` is a valid name no node of this graph has yet.
    fn check_name(&self, name: &str) -> Result<()> {
        if name.is_empty() || name.contains('#') || name.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(format!(
                "{name:?} is not a valid name: names are not empty and hold no '#' and no \
                 control character"
            )));
        }
        if let Some(&v) = self.names.get(name) {
            return Err(Error::InvalidArgument(format!(
                "duplicate name {name:?}: the graph already has a {} of shape {:?} named so; \
                 names must be unique (checkpoints and shared plans find tensors by name)",
                self.nodes[v.0].op.name(),
                self.nodes[v.0].shape
            )));
        }
        Ok(())
    }

    /// Appends `node` (whose name has been checked) and indexes its name.
    fn append(&mut self, node: Node) -> Value {
        let v = Value(self.nodes.len());
        self.names.insert(node.name.clone(), v);
        self.nodes.push(node);
        v
    }

    /// Appends a node whose shape has been checked; returns its value.
    pub(crate) fn push(&mut self, op: Op, inputs: Vec<Value>, shape: Vec<usize>) -> Result<Value> {
        let name = op.name();
        for &v in &inputs {
            self.check_value(&name, v)?;
        }
        if !matches!(
            op,
            Op::Update(_) | Op::ClipGradients { .. } | Op::Ema { .. }
        ) {
            numel(&name, &shape)?;
        }
        // Derived names hold a '#', which given names cannot: they never collide.
        let name = format!("{}#{}", name, self.nodes.len());
        Ok(self.append(Node {
            op,
            inputs,
            shape,
            name,
        }))
    }

    /// Appends a leaf (an input or a resident tensor) named `name`, checking the name and
    /// the shape.
    fn push_named(&mut self, name: &str, op: Op, shape: &[usize]) -> Result<Value> {
        self.check_name(name)?;
        numel(name, shape)?;
        Ok(self.append(Node {
            op,
            inputs: vec![],
            shape: shape.to_vec(),
            name: name.to_string(),
        }))
    }

    /// A placeholder of `shape` that the caller writes at every step. The name must be valid
    /// and unique (see [`Graph`]), the shape non-empty.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> Result<Value> {
        self.push_named(name, Op::Input, shape)
    }

    /// A trainable parameter of `shape`, resident on the device, filled by `init`; named as
    /// [`Graph::input`] says.
    pub fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Value> {
        self.resident(name, shape, init, Role::Trainable)
    }

    /// A resident tensor of any [`Role`]; named as [`Graph::input`] says.
    pub fn resident(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        role: Role,
    ) -> Result<Value> {
        self.push_named(name, Op::Param { init, role }, shape)
    }

    /// A constant tensor of `shape` filled with `v` (with a derived name).
    pub fn constant(&mut self, shape: &[usize], v: f32) -> Result<Value> {
        let op = Op::Param {
            init: Init::Constant(v),
            role: Role::Constant,
        };
        self.push(op, vec![], shape.to_vec())
    }

    /// C = op(A)·op(B) for rank-2 or (equal-rank) batched rank-3 operands.
    pub fn matmul(&mut self, a: Value, b: Value, trans_a: bool, trans_b: bool) -> Result<Value> {
        self.check_value("MatMul", a)?;
        self.check_value("MatMul", b)?;
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        if sa.len() != sb.len() {
            return Err(Error::shape(
                "MatMul",
                format!("graph matmul needs operands of equal rank, got {sa:?} and {sb:?}"),
            ));
        }
        let (shape, _) = matmul_shape(&sa, &sb, trans_a, trans_b)?;
        self.push(Op::MatMul { trans_a, trans_b }, vec![a, b], shape)
    }

    /// y = f(x) elementwise.
    pub fn unary(&mut self, op: UnaryOp, x: Value) -> Result<Value> {
        self.check_value("Unary", x)?;
        let shape = self.shape(x).to_vec();
        self.push(Op::Unary(op), vec![x], shape)
    }

    /// max(x, 0).
    pub fn relu(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Relu, x)
    }

    /// tanh(x).
    pub fn tanh(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Tanh, x)
    }

    /// GELU (tanh approximation).
    pub fn gelu(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Gelu, x)
    }

    /// alpha·x.
    pub fn scale(&mut self, x: Value, alpha: f32) -> Result<Value> {
        self.unary(UnaryOp::Scale(alpha), x)
    }

    /// out = f(a, b); `b` has `a`'s shape or a trailing suffix of it (broadcast down the rows).
    pub fn binary(&mut self, op: BinaryOp, a: Value, b: Value) -> Result<Value> {
        self.check_value("Binary", a)?;
        self.check_value("Binary", b)?;
        let shape = binary_shape(op, self.shape(a), self.shape(b))?;
        let b_from = Broadcast::row_vector(self.shape(b).iter().product());
        self.push(Op::Binary { op, b_from }, vec![a, b], shape)
    }

    /// a + b (b may be a bias broadcast down the rows of a).
    pub fn add(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Add, a, b)
    }

    /// a − b.
    pub fn sub(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Sub, a, b)
    }

    /// a ∘ b.
    pub fn mul(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// x viewed as [rows, cols] (cols = last dimension) reduced per row (`Axis::Rows`, shape
    /// `[rows]`) or per column (`Axis::Cols`, shape `[cols]`).
    pub fn reduce(&mut self, op: ReduceOp, axis: Axis, x: Value) -> Result<Value> {
        self.check_value("Reduce", x)?;
        let (rows, cols) = rows_cols(self.shape(x));
        let shape = match axis {
            Axis::Rows => vec![rows],
            Axis::Cols => vec![cols],
        };
        self.push(Op::Reduce { op, axis }, vec![x], shape)
    }

    /// The mean of every element, shape `[1]`.
    pub fn mean_all(&mut self, x: Value) -> Result<Value> {
        self.check_value("MeanAll", x)?;
        let n = self.shape(x).iter().product();
        let flat = self.reshape(x, &[1, n])?;
        self.reduce(ReduceOp::Mean, Axis::Rows, flat)
    }

    /// Swaps the last two dimensions.
    pub fn transpose(&mut self, x: Value) -> Result<Value> {
        self.check_value("Transpose", x)?;
        let mut shape = self.shape(x).to_vec();
        let r = shape.len();
        if !(2..=3).contains(&r) {
            return Err(Error::shape(
                "Transpose",
                format!("needs rank 2 or 3, got {shape:?}"),
            ));
        }
        shape.swap(r - 2, r - 1);
        self.push(Op::Transpose, vec![x], shape)
    }

    /// The same data viewed with another shape of the same element count.
    pub fn reshape(&mut self, x: Value, shape: &[usize]) -> Result<Value> {
        self.check_value("Reshape", x)?;
        let n = numel("Reshape", shape)?;
        if n != self.shape(x).iter().product::<usize>() {
            return Err(Error::shape(
                "Reshape",
                format!("cannot view {:?} as {shape:?}", self.shape(x)),
            ));
        }
        self.push(Op::Reshape, vec![x], shape.to_vec())
    }

    /// Slice `index` of `x` along its first dimension: `x[index]`, of `x`'s shape without the
    /// first dimension (a stack of matrices `[n, r, c]` gives the matrix `[r, c]`; a vector
    /// `[n]` gives `[1]`).
    pub fn select(&mut self, x: Value, index: usize) -> Result<Value> {
        self.check_value("Select", x)?;
        let shape = self.shape(x).to_vec();
        if index >= shape[0] {
            return Err(Error::shape(
                "Select",
                format!("index {index} of a stack {shape:?}"),
            ));
        }
        let rest = if shape.len() == 1 {
            vec![1]
        } else {
            shape[1..].to_vec()
        };
        self.push(Op::Select { index }, vec![x], rest)
    }

    /// The values `xs` (at least one, all of one shape `s`) stacked along a new first
    /// dimension, shape `[xs.len(), s…]`; [`Graph::select`] takes them apart again.
    pub fn stack(&mut self, xs: &[Value]) -> Result<Value> {
        let Some(&first) = xs.first() else {
            return Err(Error::InvalidArgument("Stack: no values to stack".into()));
        };
        for &x in xs {
            self.check_value("Stack", x)?;
            if self.shape(x) != self.shape(first) {
                return Err(Error::shape(
                    "Stack",
                    format!(
                        "every value needs one shape, got {:?} and {:?}",
                        self.shape(first),
                        self.shape(x)
                    ),
                ));
            }
        }
        let mut shape = vec![xs.len()];
        shape.extend_from_slice(self.shape(first));
        self.push(Op::Stack, xs.to_vec(), shape)
    }

    /// a ∘ b with one value of b per row of a: a viewed as `[rows, cols]` (cols = last
    /// dimension), b of `rows` elements, each scaling its row — e.g. one gain per matrix of a
    /// stack viewed as `[matrices, elements]`.
    pub fn mul_rows(&mut self, a: Value, b: Value) -> Result<Value> {
        self.check_value("MulRows", a)?;
        self.check_value("MulRows", b)?;
        let (rows, cols) = rows_cols(self.shape(a));
        let b_len: usize = self.shape(b).iter().product();
        if b_len != rows {
            return Err(Error::shape(
                "MulRows",
                format!("{b_len} factors for the {rows} rows of {:?}", self.shape(a)),
            ));
        }
        self.push_binary(BinaryOp::Mul, a, b, Broadcast::column_vector(rows, cols))
    }

    /// Per-row softmax cross-entropy of `logits` [rows, classes] against `targets` (one-hot or
    /// soft, same shape), shape `[rows]`.
    pub fn softmax_xent(&mut self, logits: Value, targets: Value) -> Result<Value> {
        self.check_value("SoftmaxXent", logits)?;
        self.check_value("SoftmaxXent", targets)?;
        let shape = softmax_xent_shape(self.shape(logits), self.shape(targets))?;
        self.push(Op::SoftmaxXent, vec![logits, targets], shape)
    }

    /// The batch mean of the softmax cross-entropy, shape `[1]`: the usual classification loss.
    pub fn softmax_cross_entropy(&mut self, logits: Value, targets: Value) -> Result<Value> {
        let per_row = self.softmax_xent(logits, targets)?;
        self.mean_all(per_row)
    }

    /// H = f(G) for each symmetric matrix of `g` (`[n, n]` or `[batch, n, n]`), through its
    /// eigendecomposition; the gradient uses the Daleckii–Krein divided differences of f, so
    /// it stays finite on repeated eigenvalues.
    pub fn spectral_fn(&mut self, g: Value, f: SpectralFn) -> Result<Value> {
        self.check_value("SpectralFn", g)?;
        let shape = self.shape(g).to_vec();
        let r = shape.len();
        if !(2..=3).contains(&r) || shape[r - 1] != shape[r - 2] {
            return Err(Error::shape(
                "SpectralFn",
                format!("needs square matrices [n, n] or [batch, n, n], got {shape:?}"),
            ));
        }
        f.validate(shape[r - 1])?;
        self.push(Op::SpectralFn(f), vec![g], shape)
    }

    /// Running average: `state` ← (1 − momentum)·`state` + momentum·`value`, in place, once
    /// per step (e.g. the running mean of a normalisation layer). `momentum` lies in [0, 1].
    pub fn ema(&mut self, state: Value, value: Value, momentum: f32) -> Result<()> {
        self.check_value("Ema", state)?;
        self.check_value("Ema", value)?;
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::InvalidArgument(format!(
                "Ema: momentum must lie in [0, 1], got {momentum}"
            )));
        }
        if self.shape(state) != self.shape(value)
            || !matches!(self.node(state).op, Op::Param { .. })
        {
            return Err(Error::shape(
                "Ema",
                format!(
                    "state must be a resident tensor shaped like the value: {:?} vs {:?}",
                    self.shape(state),
                    self.shape(value)
                ),
            ));
        }
        self.push(Op::Ema { momentum }, vec![state, value], vec![])
            .map(|_| ())
    }

    /// Mean squared error mean((a − b)²), shape `[1]`.
    pub fn mse(&mut self, a: Value, b: Value) -> Result<Value> {
        self.check_value("Mse", a)?;
        self.check_value("Mse", b)?;
        if self.shape(a) != self.shape(b) {
            return Err(Error::shape(
                "Mse",
                format!(
                    "operands differ: {:?} and {:?}",
                    self.shape(a),
                    self.shape(b)
                ),
            ));
        }
        let d = self.sub(a, b)?;
        let n = self.shape(d).iter().product();
        let flat = self.reshape(d, &[1, n])?;
        let ss = self.reduce(ReduceOp::SumSquares, Axis::Rows, flat)?;
        self.scale(ss, 1.0 / n as f32)
    }

    /// Inverted dropout of `x` with probability `rate` in [0, 1) (see [`Op::Dropout`]);
    /// `rate` 0 returns `x` itself. Layers that mean it for training only add it in training
    /// mode ([`crate::nn::Dropout`]).
    pub fn dropout(&mut self, x: Value, rate: f32, seed: u32) -> Result<Value> {
        self.check_value("Dropout", x)?;
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::InvalidArgument(format!(
                "Dropout of {}: rate must lie in [0, 1), got {rate}",
                self.describe(x)
            )));
        }
        if rate == 0.0 {
            return Ok(x);
        }
        let shape = self.shape(x).to_vec();
        self.push(Op::Dropout { rate, seed }, vec![x], shape)
    }

    /// Layer normalisation without the affine part: each row of `x` (viewed as [rows, cols],
    /// cols = last dimension) minus its mean, over √(variance + `eps`), `eps` finite and > 0.
    pub fn layer_norm(&mut self, x: Value, eps: f32) -> Result<Value> {
        self.check_value("LayerNorm", x)?;
        if !(eps.is_finite() && eps > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "LayerNorm of {}: eps must be finite and > 0, got {eps}",
                self.describe(x)
            )));
        }
        let shape = self.shape(x).to_vec();
        crate::kernels::norm::check_row_len("LayerNorm", rows_cols(&shape).1)?;
        self.push(Op::LayerNorm { eps }, vec![x], shape)
    }
}

/// A shape viewed as a matrix: (product of all but the last dimension, last dimension).
pub fn rows_cols(shape: &[usize]) -> (usize, usize) {
    match shape.split_last() {
        Some((&cols, lead)) => (lead.iter().product(), cols),
        None => (1, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_for_is_the_outputs_and_their_ancestors() {
        let mut g = Graph::new();
        let x = g.input("x", &[2, 3]).unwrap();
        let t = g.input("t", &[2, 3]).unwrap();
        let state = g.resident("mean", &[3], Init::Zeros, Role::State).unwrap();
        let y = g.tanh(x).unwrap();
        let m = g.reduce(ReduceOp::Mean, Axis::Cols, y).unwrap();
        g.ema(state, m, 0.1).unwrap();
        let loss = g.mse(y, t).unwrap();
        let needed = g.needed_for(&[y]).unwrap();
        let marked: Vec<usize> = (0..needed.len()).filter(|&i| needed[i]).collect();
        assert_eq!(marked, [x.0, y.0]);
        let needed = g.needed_for(&[loss]).unwrap();
        assert!(needed[t.0] && needed[y.0] && !needed[m.0] && !needed[state.0]);
        assert!(!needed
            .iter()
            .zip(g.nodes())
            .any(|(&n, node)| n && node.shape.is_empty()));
        assert!(g.needed_for(&[Value(1000)]).is_err());
    }

    #[test]
    fn ema_and_mse_check_their_values() {
        let mut g = Graph::new();
        let x = g.input("x", &[3]).unwrap();
        let state = g.resident("s", &[3], Init::Zeros, Role::State).unwrap();
        let foreign = Value(1000);
        assert!(matches!(
            g.ema(state, foreign, 0.1),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            g.ema(foreign, x, 0.1),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(g.mse(x, foreign), Err(Error::InvalidArgument(_))));
        assert!(matches!(g.mse(foreign, x), Err(Error::InvalidArgument(_))));
        for bad in [f32::NAN, -0.1, 1.5] {
            assert!(matches!(
                g.ema(state, x, bad),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert!(
            matches!(g.ema(x, x, 0.1), Err(Error::Shape { .. })),
            "state must be resident"
        );
        g.ema(state, x, 0.1).unwrap();
    }
}
