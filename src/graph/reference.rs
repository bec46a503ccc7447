//! The reference executor: the same graph interpreted op by op on the CPU with the nalgebra
//! reference kernels, in any precision. It is the oracle for the GPU executor, the f64 ground
//! truth for gradient checks, and a way to run any model without a GPU.

use super::plan::init_values;
use super::{rows_cols, Graph, Op, Role, Value};
use crate::error::{Error, Result};
use crate::kernels::matmul::matmul_shape;
use crate::kernels::optim::hyper_values;
use crate::reference::{self as r, Real};

/// A graph compiled for the CPU reference in precision `T`.
pub struct ReferencePlan<T: Real> {
    graph: Graph,
    values: Vec<Vec<T>>,
    /// Eigenvalues and eigenvectors of each spectral-function node, from the last step.
    eigen: std::collections::HashMap<usize, (Vec<T>, Vec<T>)>,
    learning_rate: f32,
    step: u64,
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
        Ok(ReferencePlan {
            graph: graph.clone(),
            values,
            eigen: Default::default(),
            learning_rate: graph.learning_rate(),
            step: 0,
        })
    }

    /// Runs one step: every op in order, updates included.
    pub fn step(&mut self, inputs: &[(Value, &[T])]) -> Result<()> {
        for &(v, data) in inputs {
            let node = self.graph.nodes().get(v.0).filter(|n| n.op == Op::Input);
            let Some(node) = node else {
                return Err(Error::InvalidArgument(format!(
                    "step: value {} is not an input",
                    v.0
                )));
            };
            if data.len() != node.shape.iter().product::<usize>() {
                return Err(Error::shape(
                    "step",
                    format!(
                        "input {} has shape {:?} but {} values were given",
                        node.name,
                        node.shape,
                        data.len()
                    ),
                ));
            }
            self.values[v.0] = data.to_vec();
        }
        self.step += 1;
        let hyper = hyper_values(self.learning_rate, self.step);
        let mut clip_scale = T::one();
        for i in 0..self.graph.nodes().len() {
            let node = self.graph.nodes()[i].clone();
            let x = |k: usize| &self.values[node.inputs[k].0];
            let shape_of = |k: usize| self.graph.shape(node.inputs[k]);
            let n = node.shape.iter().product::<usize>();
            let out: Option<Vec<T>> = match &node.op {
                Op::Input => {
                    if self.values[i].is_empty() {
                        return Err(Error::InvalidArgument(format!(
                            "step: input {} was not given",
                            node.name
                        )));
                    }
                    None
                }
                Op::Param { .. } => None,
                Op::MatMul { trans_a, trans_b } => {
                    let (_, dims) = matmul_shape(shape_of(0), shape_of(1), *trans_a, *trans_b)?;
                    Some(r::matmul::matmul(x(0), x(1), &dims))
                }
                Op::Unary(op) => Some(r::elementwise::unary(*op, x(0))),
                Op::Binary { op, b_from } => Some(r::elementwise::binary(*op, x(0), x(1), *b_from)),
                Op::Expand { from, alpha } => {
                    Some(r::elementwise::expand(x(0), n, *from, *alpha as f64))
                }
                Op::Reduce { op, axis } => {
                    let (rows, cols) = rows_cols(shape_of(0));
                    Some(r::reduce::reduce(*op, *axis, x(0), rows, cols))
                }
                Op::Transpose => {
                    let s = shape_of(0);
                    let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
                    Some(r::transpose::transpose(x(0), n / (rows * cols), rows, cols))
                }
                Op::Reshape => Some(x(0).clone()),
                Op::SoftmaxXent => {
                    let (rows, classes) = rows_cols(shape_of(0));
                    Some(r::softmax::softmax_xent(x(0), x(1), rows, classes))
                }
                Op::SoftmaxXentBackward => {
                    let (rows, classes) = rows_cols(shape_of(0));
                    Some(r::softmax::softmax_xent_backward(
                        x(0),
                        x(1),
                        x(2),
                        rows,
                        classes,
                    ))
                }
                Op::SpectralFn(f) => {
                    let (h, lambda, v) = r::spectral::spectral_forward(x(0), last(&node.shape), *f);
                    self.eigen.insert(i, (lambda, v));
                    Some(h)
                }
                Op::SpectralFnBackward(f) => {
                    let (lambda, v) = &self.eigen[&node.inputs[1].0];
                    Some(r::spectral::spectral_backward(
                        lambda,
                        v,
                        x(0),
                        last(&node.shape),
                        *f,
                    ))
                }
                Op::Ema { momentum } => {
                    let m = T::c(*momentum as f64);
                    let value = self.values[node.inputs[1].0].clone();
                    for (s, v) in self.values[node.inputs[0].0].iter_mut().zip(value) {
                        *s = (T::one() - m) * *s + m * v;
                    }
                    None
                }
                Op::ClipGradients { max_norm } => {
                    let grads: Vec<&[T]> = node
                        .inputs
                        .iter()
                        .map(|v| self.values[v.0].as_slice())
                        .collect();
                    clip_scale = r::optim::clip_scale(&grads, *max_norm as f64);
                    None
                }
                Op::Update(rule) => {
                    let grad = self.values[node.inputs[1].0].clone();
                    let mut states: Vec<Vec<T>> = node.inputs[2..]
                        .iter()
                        .map(|v| std::mem::take(&mut self.values[v.0]))
                        .collect();
                    let param = &mut self.values[node.inputs[0].0];
                    r::optim::update(
                        rule,
                        hyper[0] as f64,
                        self.step,
                        clip_scale,
                        param,
                        &grad,
                        &mut states,
                    );
                    for (v, s) in node.inputs[2..].iter().zip(states) {
                        self.values[v.0] = s;
                    }
                    None
                }
            };
            if let Some(out) = out {
                self.values[i] = out;
            }
        }
        Ok(())
    }

    /// Eigenvalues (ascending, `[batch, n]`) and eigenvectors (`[batch, n, n]`, column j for
    /// value j) of the spectral-function node `v` at the last step.
    pub fn eigenpairs(&self, v: Value) -> Result<(&[T], &[T])> {
        self.eigen
            .get(&v.0)
            .map(|(l, q)| (l.as_slice(), q.as_slice()))
            .ok_or_else(|| {
                Error::InvalidArgument(format!("value {} is not a computed spectral function", v.0))
            })
    }

    /// The current contents of `v` (after the last step; resident tensors at any time).
    pub fn read(&self, v: Value) -> Result<&[T]> {
        match self.values.get(v.0) {
            Some(x) if !x.is_empty() => Ok(x),
            _ => Err(Error::InvalidArgument(format!(
                "value {} has not been computed",
                v.0
            ))),
        }
    }

    /// Overwrites a resident tensor.
    pub fn write(&mut self, v: Value, data: &[T]) -> Result<()> {
        let node = self.graph.node(v);
        if !matches!(node.op, Op::Param { .. })
            || data.len() != node.shape.iter().product::<usize>()
        {
            return Err(Error::InvalidArgument(format!(
                "write: value {} is not a resident tensor of {} elements",
                v.0,
                data.len()
            )));
        }
        self.values[v.0] = data.to_vec();
        Ok(())
    }

    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Sets the step count (Adam's bias correction), e.g. after loading a checkpoint.
    pub fn set_steps(&mut self, step: u64) {
        self.step = step;
    }

    /// The learning rate used from the next step on.
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.learning_rate = lr;
    }

    /// The graph this plan runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Trainable parameters and state, the values a checkpoint holds.
    pub fn saved_values(&self) -> Vec<Value> {
        self.graph.values_where(|op| {
            matches!(
                op,
                Op::Param {
                    role: Role::Trainable | Role::State,
                    ..
                }
            )
        })
    }
}

/// The last dimension of a shape.
fn last(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(1)
}
