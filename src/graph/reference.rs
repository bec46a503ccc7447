//! The reference executor: the same graph interpreted op by op on the CPU with the nalgebra
//! reference kernels, in any precision. It is the oracle for the GPU executor, the f64 ground
//! truth for gradient checks, and a way to run any model without a GPU.
//!
//! Its own methods take and return values in its precision `T`; through [`Plan`] it takes
//! and returns `f32` like the GPU executor, so code written against the trait runs on both.
//!
//! ```
//! use eigengrad::graph::{reference::ReferencePlan, Graph, Init, Plan};
//! # fn main() -> eigengrad::Result<()> {
//! let mut g = Graph::new();
//! let x = g.input("x", &[2, 2])?;
//! let w = g.param("w", &[2, 2], Init::Identity { gain: 2.0 })?;
//! let y = g.matmul(x, w, false, false)?;
//! let mut plan = ReferencePlan::<f64>::compile(&g, 0)?; // no GPU needed
//! plan.forward(&[(x, &[1.0, 2.0, 3.0, 4.0])], &[y])?; // in f64
//! assert_eq!(plan.read(y)?, [2.0, 4.0, 6.0, 8.0]);
//! // Through the Plan trait it takes and returns f32, as the GPU executor does.
//! Plan::forward(&mut plan, &[(x, &[1.0f32; 4])], &[y])?;
//! assert_eq!(Plan::read(&plan, y)?, [2.0f32; 4]);
//! assert_eq!(Plan::steps(&plan), 0); // forward runs leave the step count alone
//! # Ok(()) }
//! ```

use super::layout::init_values;
use super::plan::{Plan, PlanState};
use super::status::{non_finite_solve, SolveFault, StepStatus, StepWatch, Watched};
use super::{rows_cols, Graph, Node, Op, Value};
use crate::error::{Error, Result};
use crate::kernels::matmul::matmul_shape;
use crate::kernels::optim::hyper_values;
use crate::reference::{self as r, Real};
use std::collections::{BTreeMap, HashMap};

/// A graph compiled for the CPU reference in precision `T`.
pub struct ReferencePlan<T: Real> {
    state: PlanState,
    values: Vec<Vec<T>>,
    /// Eigenvalues and eigenvectors of each spectral-function node, from the last run.
    eigen: HashMap<usize, (Vec<T>, Vec<T>)>,
    /// Spectral-function nodes whose input held NaN or Inf at their last run, with the first
    /// such matrix of the batch.
    non_finite_solves: BTreeMap<usize, u64>,
    /// What the steps watch, and what they found since the last write.
    watch: StepWatch,
    status: StepStatus,
}

/// The inputs of one node as an op reads them.
struct Operands<'a, T> {
    graph: &'a Graph,
    node: &'a Node,
    values: &'a [Vec<T>],
}

impl<'a, T> Operands<'a, T> {
    /// The data of input `k`.
    fn x(&self, k: usize) -> &'a [T] {
        &self.values[self.node.inputs[k].0]
    }

    /// The shape of input `k`.
    fn shape(&self, k: usize) -> &'a [usize] {
        self.graph.shape(self.node.inputs[k])
    }
}

impl<T: Real> ReferencePlan<T> {
    /// Prepares `graph`, filling resident tensors exactly as the GPU executor does for `seed`.
    pub fn compile(graph: &Graph, seed: u64) -> Result<ReferencePlan<T>> {
        let mut values = vec![Vec::new(); graph.nodes().len()];
        for (i, node) in graph.nodes().iter().enumerate() {
            if let Op::Param { init, .. } = &node.op {
                let data = init_values(init, &node.shape, seed.wrapping_add(i as u64))?;
                values[i] = data.iter().map(|&x| T::c(x as f64)).collect();
            }
        }
        let watch = StepWatch::of(graph);
        Ok(ReferencePlan {
            state: PlanState::new(graph),
            values,
            eigen: HashMap::new(),
            non_finite_solves: BTreeMap::new(),
            status: StepStatus::new(watch.len()),
            watch,
        })
    }

    /// Runs one step in precision `T`: every op in order, updates included.
    pub fn step(&mut self, inputs: &[(Value, &[T])]) -> Result<()> {
        self.state.check_inputs("step", inputs, |_| true)?;
        self.set_inputs(inputs);
        self.state.advance()?;
        self.execute(None)
    }

    /// A forward-only run in precision `T` (see [`Plan::forward`]).
    pub fn forward(&mut self, inputs: &[(Value, &[T])], outputs: &[Value]) -> Result<()> {
        let needed = self.state.needed_for(outputs)?;
        self.state
            .check_inputs("forward", inputs, |v| needed[v.0])?;
        self.set_inputs(inputs);
        self.execute(Some(&needed))
    }

    /// The current contents of `v` (after the last run; resident tensors at any time).
    pub fn read(&self, v: Value) -> Result<&[T]> {
        match self.values.get(v.0) {
            Some(x) if !x.is_empty() => Ok(x),
            _ => Err(Error::InvalidArgument(format!(
                "read: {} has not been computed by the last run",
                self.state.graph().describe(v)
            ))),
        }
    }

    /// Overwrites a resident tensor and clears the status (see [`Plan::write`]).
    pub fn write(&mut self, v: Value, data: &[T]) -> Result<()> {
        self.state.check_write(v, data.len())?;
        self.values[v.0] = data.to_vec();
        self.non_finite_solves.clear();
        self.status = StepStatus::new(self.watch.len());
        Ok(())
    }

    fn set_inputs(&mut self, inputs: &[(Value, &[T])]) {
        for &(v, data) in inputs {
            self.values[v.0] = data.to_vec();
        }
    }

    /// Evaluates every node in order, or only those `needed` marks. A step (all nodes) checks
    /// its losses and gradients before its first update and halts the updates on a finding,
    /// then, after the last node, checks any loss computed after the first update (none in
    /// graphs the optimizers build) and halts on any finding, the updates' own included (see
    /// [`super::status`]).
    fn execute(&mut self, needed: Option<&[bool]>) -> Result<()> {
        let step = self.state.steps();
        let hyper = hyper_values(self.state.rate_at(step), step);
        let mut clip_scale = T::one();
        let nodes = self.state.graph().nodes().len();
        let gate_at = match needed {
            None => self.watch.first_update().unwrap_or(nodes),
            Some(_) => usize::MAX,
        };
        for i in 0..=nodes {
            if i == gate_at {
                // Every loss and gradient computed by now.
                self.check_and_gate(|w| match *w {
                    Watched::Loss(v) | Watched::Update { grad: v, .. } => v.0 < gate_at,
                    Watched::RunningStatistic { .. } => false,
                });
            }
            if i < nodes && needed.is_none_or(|n| n[i]) {
                self.evaluate(i, hyper[0], &mut clip_scale)?;
            }
        }
        if needed.is_none() {
            // A gradient computed after the first update is left to its update's own check.
            self.check_and_gate(|w| matches!(*w, Watched::Loss(v) if v.0 >= gate_at));
        }
        Ok(())
    }

    /// Records the non-finite values of the watched losses and gradients `which` picks in
    /// their slots, then halts the updates on any finding.
    fn check_and_gate(&mut self, which: impl Fn(&Watched) -> bool) {
        for (slot, watched) in self.watch.iter() {
            let checked = match *watched {
                Watched::Loss(v) | Watched::Update { grad: v, .. } if which(watched) => v,
                _ => continue,
            };
            let finding = r::finite::non_finite(&self.values[checked.0]);
            self.status.record(slot, finding);
        }
        self.status.gate(self.state.steps());
    }

    /// Evaluates node `i`: the op family's function computes its value, or changes resident
    /// tensors in place (with the step's learning rate and gradient clip scale).
    fn evaluate(&mut self, i: usize, learning_rate: f32, clip_scale: &mut T) -> Result<()> {
        let graph = self.state.graph();
        let node = &graph.nodes()[i];
        let ops = Operands {
            graph,
            node,
            values: &self.values,
        };
        let value = match &node.op {
            Op::Input | Op::Param { .. } => return Ok(()),
            Op::MatMul { trans_a, trans_b } => matmul(&ops, *trans_a, *trans_b)?,
            Op::Unary(_) | Op::Binary { .. } | Op::Expand { .. } => elementwise(&ops),
            Op::Reduce { .. } | Op::Transpose | Op::Reshape | Op::Select { .. } | Op::Stack => {
                arrange(&ops)
            }
            Op::SoftmaxXent | Op::SoftmaxXentBackward => softmax(&ops),
            Op::Dropout { rate, seed } => {
                r::dropout::dropout(ops.x(0), *rate, *seed, self.state.steps())
            }
            Op::LayerNorm { .. } | Op::LayerNormBackward { .. } => norm(&ops),
            Op::SpectralFn(f) => {
                let n = last(&node.shape);
                match ops
                    .x(0)
                    .chunks(n * n)
                    .position(|m| r::finite::non_finite(m).is_some())
                {
                    Some(b) => self.non_finite_solves.insert(i, b as u64),
                    None => self.non_finite_solves.remove(&i),
                };
                let (h, lambda, v) = r::spectral::spectral_forward(ops.x(0), n, *f);
                self.eigen.insert(i, (lambda, v));
                h
            }
            Op::SpectralFnBackward(f) => {
                let (lambda, v) = self.eigen.get(&node.inputs[1].0).ok_or_else(|| {
                    Error::InvalidArgument(format!("{}: forward value not computed", node.name))
                })?;
                r::spectral::spectral_backward(lambda, v, ops.x(0), last(&node.shape), *f)
            }
            Op::Ema { .. } | Op::ClipGradients { .. } | Op::Update(_) => {
                if self.status.is_halted() && !matches!(node.op, Op::ClipGradients { .. }) {
                    return Ok(());
                }
                let step = self.state.steps();
                let found = in_place(node, &mut self.values, learning_rate, step, clip_scale);
                if let Some(slot) = self.watch.slot_of(i) {
                    self.status.record(slot, found);
                }
                return Ok(());
            }
        };
        self.values[i] = value;
        Ok(())
    }
}

/// C = op(A)·op(B).
fn matmul<T: Real>(ops: &Operands<T>, trans_a: bool, trans_b: bool) -> Result<Vec<T>> {
    let (_, dims) = matmul_shape(ops.shape(0), ops.shape(1), trans_a, trans_b)?;
    Ok(r::matmul::matmul(ops.x(0), ops.x(1), &dims))
}

/// Unary maps, binary maps with broadcasting, and scaled broadcasts.
fn elementwise<T: Real>(ops: &Operands<T>) -> Vec<T> {
    match &ops.node.op {
        Op::Unary(op) => r::elementwise::unary(*op, ops.x(0)),
        Op::Binary { op, b_from } => r::elementwise::binary(*op, ops.x(0), ops.x(1), *b_from),
        Op::Expand { from, alpha } => {
            let n = ops.node.shape.iter().product();
            r::elementwise::expand(ops.x(0), n, *from, *alpha as f64)
        }
        other => unreachable!("{} is not elementwise", other.name()),
    }
}

/// Ops that rearrange or reduce their input: reductions, transposes, reshapes, slices and
/// stacks.
fn arrange<T: Real>(ops: &Operands<T>) -> Vec<T> {
    let s = ops.shape(0);
    match &ops.node.op {
        Op::Reduce { op, axis } => {
            let (rows, cols) = rows_cols(s);
            r::reduce::reduce(*op, *axis, ops.x(0), rows, cols)
        }
        Op::Transpose => {
            let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
            let batch = s.iter().product::<usize>() / (rows * cols);
            r::transpose::transpose(ops.x(0), batch, rows, cols)
        }
        Op::Reshape => ops.x(0).to_vec(),
        Op::Select { index } => {
            let n = ops.node.shape.iter().product::<usize>();
            ops.x(0)[index * n..(index + 1) * n].to_vec()
        }
        Op::Stack => (0..ops.node.inputs.len())
            .flat_map(|k| ops.x(k).iter().copied())
            .collect(),
        other => unreachable!("{} does not rearrange", other.name()),
    }
}

/// Softmax cross-entropy and its gradient w.r.t. the logits.
fn softmax<T: Real>(ops: &Operands<T>) -> Vec<T> {
    let (rows, classes) = rows_cols(ops.shape(0));
    if ops.node.op == Op::SoftmaxXent {
        r::softmax::softmax_xent(ops.x(0), ops.x(1), rows, classes)
    } else {
        r::softmax::softmax_xent_backward(ops.x(0), ops.x(1), ops.x(2), rows, classes)
    }
}

/// Layer normalisation and its gradient.
fn norm<T: Real>(ops: &Operands<T>) -> Vec<T> {
    let cols = last(ops.shape(0));
    match ops.node.op {
        Op::LayerNorm { eps } => r::norm::layer_norm(ops.x(0), cols, eps as f64),
        Op::LayerNormBackward { eps } => {
            r::norm::layer_norm_backward(ops.x(0), ops.x(1), cols, eps as f64)
        }
        ref other => unreachable!("{} is not a normalisation", other.name()),
    }
}

/// In-place ops on resident tensors: running averages, gradient clipping (sets the step's
/// `clip_scale`), optimizer updates (step `step`, learning rate `learning_rate`). A running
/// average of a non-finite value is skipped; an element of a running average or an update
/// whose new values would be NaN or Inf keeps its old ones. Returns what was found so.
fn in_place<T: Real>(
    node: &Node,
    values: &mut [Vec<T>],
    learning_rate: f32,
    step: u64,
    clip_scale: &mut T,
) -> Option<(u64, u64)> {
    // The new value of a running average, or the gradient of an update (clipping may have a
    // single input).
    let source = || values[node.inputs[1].0].as_slice();
    let (changed, mut new): (Vec<Value>, Vec<Vec<T>>) = match &node.op {
        Op::ClipGradients { max_norm } => {
            let grads: Vec<&[T]> = node.inputs.iter().map(|v| values[v.0].as_slice()).collect();
            *clip_scale = r::optim::clip_scale(&grads, *max_norm as f64);
            return None;
        }
        Op::Ema { momentum } => {
            if let found @ Some(_) = r::finite::non_finite(source()) {
                return found;
            }
            let m = T::c(*momentum as f64);
            let mut state = values[node.inputs[0].0].clone();
            for (s, &v) in state.iter_mut().zip(source()) {
                *s = (T::one() - m) * *s + m * v;
            }
            (vec![node.inputs[0]], vec![state])
        }
        Op::Update(rule) => {
            // The parameter and its state tensors.
            let changed = [&node.inputs[..1], &node.inputs[2..]].concat();
            let mut new: Vec<Vec<T>> = changed.iter().map(|v| values[v.0].clone()).collect();
            let (param, states) = new.split_at_mut(1);
            let lr = learning_rate as f64;
            let grad = source();
            r::optim::update(rule, lr, step, *clip_scale, &mut param[0], grad, states);
            (changed, new)
        }
        other => unreachable!("{} is not an in-place op", other.name()),
    };
    let old: Vec<&[T]> = changed.iter().map(|v| values[v.0].as_slice()).collect();
    let found = r::finite::keep_finite(&old, &mut new);
    for (v, t) in changed.into_iter().zip(new) {
        values[v.0] = t;
    }
    found
}

/// The last dimension of a shape.
fn last(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(1)
}

/// `f32` values of a reference tensor.
fn narrow<T: Real>(x: &[T]) -> Vec<f32> {
    x.iter()
        .map(|&v| nalgebra::try_convert::<T, f64>(v).unwrap_or(f64::NAN) as f32)
        .collect()
}

/// `T` values of `f32` data.
fn widen<T: Real>(x: &[f32]) -> Vec<T> {
    x.iter().map(|&v| T::c(v as f64)).collect()
}

impl<T: Real> ReferencePlan<T> {
    /// Eigenvalues and eigenvectors of spectral-function node `v` at the last run.
    fn eigenpairs(&self, v: Value) -> Result<&(Vec<T>, Vec<T>)> {
        self.state.check_spectral("eigendecomposition", v)?;
        self.eigen.get(&v.0).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{} has not been computed by a run yet",
                self.state.graph().describe(v)
            ))
        })
    }
}

/// The reference executor through the common interface: `f32` in and out, converted to and
/// from its precision `T`.
impl<T: Real> Plan for ReferencePlan<T> {
    fn state(&self) -> &PlanState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut PlanState {
        &mut self.state
    }

    fn step(&mut self, inputs: &[(Value, &[f32])]) -> Result<()> {
        let wide: Vec<(Value, Vec<T>)> = inputs.iter().map(|&(v, x)| (v, widen(x))).collect();
        let views: Vec<(Value, &[T])> = wide.iter().map(|(v, x)| (*v, x.as_slice())).collect();
        ReferencePlan::step(self, &views)
    }

    fn forward(&mut self, inputs: &[(Value, &[f32])], outputs: &[Value]) -> Result<()> {
        let wide: Vec<(Value, Vec<T>)> = inputs.iter().map(|&(v, x)| (v, widen(x))).collect();
        let views: Vec<(Value, &[T])> = wide.iter().map(|(v, x)| (*v, x.as_slice())).collect();
        ReferencePlan::forward(self, &views, outputs)
    }

    fn read(&self, v: Value) -> Result<Vec<f32>> {
        ReferencePlan::read(self, v).map(narrow)
    }

    fn write(&mut self, v: Value, data: &[f32]) -> Result<()> {
        ReferencePlan::write(self, v, &widen(data))
    }

    /// The reference has no warm starts: it reports non-finite solver inputs and the step
    /// status.
    fn check_status(&self) -> Result<()> {
        let graph = self.state.graph();
        if let Some((&node, &index)) = self.non_finite_solves.iter().next() {
            return Err(non_finite_solve(graph, node, SolveFault::Input, index));
        }
        self.watch.check(graph, &self.status)
    }

    fn eigenvalues(&self, v: Value) -> Result<Vec<f32>> {
        Ok(narrow(&self.eigenpairs(v)?.0))
    }

    fn eigenvectors(&self, v: Value) -> Result<Vec<f32>> {
        Ok(narrow(&self.eigenpairs(v)?.1))
    }

    /// The reference decomposes with nalgebra's symmetric eigensolver, not Jacobi sweeps:
    /// always an error.
    fn sweeps(&self, v: Value) -> Result<Vec<u32>> {
        self.eigenpairs(v)?;
        Err(Error::InvalidArgument(
            "the reference executor decomposes with nalgebra and counts no Jacobi sweeps".into(),
        ))
    }
}
