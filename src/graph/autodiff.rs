//! Reverse-mode autodiff: `graph.backward(loss)` appends the gradient ops of every op on a
//! path from a trainable parameter to the loss, summing gradients where a value fans out.
//! Each op's backward rule is written in terms of other graph ops, so the GPU and reference
//! executors run gradients exactly as they run forward ops.

use super::{rows_cols, Graph, Op, Role, Value};
use crate::error::{Error, Result};
use crate::kernels::elementwise::{BinaryOp, Broadcast, UnaryOp};
use crate::kernels::reduce::{Axis, ReduceOp};
use std::collections::BTreeMap;

/// Gradients appended by [`Graph::backward`]: value → the value holding ∂loss/∂value.
#[derive(Clone, Debug, Default)]
pub struct Gradients {
    map: BTreeMap<Value, Value>,
}

impl Gradients {
    /// The gradient of `v`, if `v` influences the loss through differentiable ops.
    pub fn get(&self, v: Value) -> Option<Value> {
        self.map.get(&v).copied()
    }

    /// The gradient of `v` as [`Gradients::get`] gives it, or where `v` is a slice selected
    /// from a value that has one — as the weight of a member of an
    /// [`EigenStack`](crate::nn::EigenStack) is a slice of the stack's — the same slice of that
    /// gradient, appended to `graph` (read in place where the slice is aligned).
    pub fn get_or_slice(&self, graph: &mut Graph, v: Value) -> Result<Option<Value>> {
        if let Some(g) = self.get(v) {
            return Ok(Some(g));
        }
        let node = graph.try_node(v)?;
        let (Op::Select { index }, Some(&source)) = (&node.op, node.inputs.first()) else {
            return Ok(None);
        };
        let index = *index;
        match self.get_or_slice(graph, source)? {
            Some(g) => Ok(Some(graph.select(g, index)?)),
            None => Ok(None),
        }
    }

    /// (parameter, gradient) pairs for every value that has a gradient.
    pub fn iter(&self) -> impl Iterator<Item = (Value, Value)> + '_ {
        self.map.iter().map(|(&k, &v)| (k, v))
    }
}

impl Graph {
    /// Appends ∂loss/∂v for every value v between the trainable parameters and `loss`, which
    /// must have exactly one element. Returns where each gradient lives. The loss joins
    /// [`Graph::losses`], which every training step checks for NaN and Inf.
    pub fn backward(&mut self, loss: Value) -> Result<Gradients> {
        self.check_value("backward", loss)?;
        if self.shape(loss).iter().product::<usize>() != 1 {
            return Err(Error::shape(
                "backward",
                format!(
                    "the loss must have one element, got shape {:?}",
                    self.shape(loss)
                ),
            ));
        }
        // Forward sweep: which values depend on a trainable parameter.
        let n = loss.0 + 1;
        let mut needs = vec![false; n];
        for i in 0..n {
            let node = &self.nodes[i];
            needs[i] = matches!(
                node.op,
                Op::Param {
                    role: Role::Trainable,
                    ..
                }
            ) || node.inputs.iter().any(|v| needs[v.0]);
        }
        let loss_shape = self.shape(loss).to_vec();
        let seed = self.constant(&loss_shape, 1.0)?;
        let mut grads: BTreeMap<Value, Value> = BTreeMap::new();
        grads.insert(loss, seed);
        // The gradients of the slices selected from each stack, by index: they become one
        // Stack when the walk reaches the stack (after every slice of it, which come later).
        let mut slices: BTreeMap<Value, Vec<Option<Value>>> = BTreeMap::new();
        for i in (0..n).rev() {
            let v = Value(i);
            if !needs[i] {
                continue;
            }
            if let Some(parts) = slices.remove(&v) {
                let stacked = self.stack_slices(v, parts)?;
                self.accumulate(&mut grads, v, stacked)?;
            }
            let Some(&dy) = grads.get(&v) else { continue };
            let node = self.nodes[i].clone();
            if let Op::Select { index } = node.op {
                let source = node.inputs[0];
                let parts = slices
                    .entry(source)
                    .or_insert_with(|| vec![None; self.nodes[source.0].shape[0]]);
                parts[index] = Some(match parts[index] {
                    Some(prev) => self.add(prev, dy)?,
                    None => dy,
                });
                continue;
            }
            let contributions = self.backward_rule(v, &node.op, &node.inputs, dy, &needs)?;
            for (input, g) in contributions {
                self.accumulate(&mut grads, input, g)?;
            }
        }
        grads.retain(|v, _| needs[v.0]);
        if !self.losses.contains(&loss) {
            self.losses.push(loss);
        }
        Ok(Gradients { map: grads })
    }

    /// Adds the contribution `g` to the gradient of `v` (the first one is the gradient).
    fn accumulate(&mut self, grads: &mut BTreeMap<Value, Value>, v: Value, g: Value) -> Result<()> {
        let total = match grads.get(&v) {
            Some(&prev) => self.add(prev, g)?,
            None => g,
        };
        grads.insert(v, total);
        Ok(())
    }

    /// The gradient of `stack` from those of its selected slices: one Stack of them, with
    /// zeros for the slices nothing selected.
    fn stack_slices(&mut self, stack: Value, parts: Vec<Option<Value>>) -> Result<Value> {
        let mut slice_shape = self.shape(stack)[1..].to_vec();
        if slice_shape.is_empty() {
            slice_shape.push(1);
        }
        let mut zeros = None;
        let mut values = Vec::with_capacity(parts.len());
        for part in parts {
            values.push(match part {
                Some(g) => g,
                None => match zeros {
                    Some(z) => z,
                    None => {
                        let z = self.constant(&slice_shape, 0.0)?;
                        zeros = Some(z);
                        z
                    }
                },
            });
        }
        let stacked = self.stack(&values)?;
        let shape = self.shape(stack).to_vec();
        if self.shape(stacked) == shape {
            Ok(stacked)
        } else {
            self.reshape(stacked, &shape)
        }
    }

    /// The gradient contributions of one op to those of its inputs that need them: one arm
    /// per op family, each written in terms of other graph ops.
    fn backward_rule(
        &mut self,
        y: Value,
        op: &Op,
        inputs: &[Value],
        dy: Value,
        needs: &[bool],
    ) -> Result<Vec<(Value, Value)>> {
        let want = |k: usize| inputs.get(k).is_some_and(|v| needs[v.0]);
        match op {
            Op::Input | Op::Param { .. } => Ok(Vec::new()),
            Op::MatMul { trans_a, trans_b } => {
                self.matmul_backward(inputs, dy, *trans_a, *trans_b, [want(0), want(1)])
            }
            Op::Unary(u) => {
                let x = inputs[0];
                let dx = match u {
                    UnaryOp::Scale(alpha) => self.scale(dy, *alpha)?,
                    UnaryOp::Relu => self.binary(BinaryOp::ReluBackward, x, dy)?,
                    UnaryOp::Tanh => self.binary(BinaryOp::TanhBackward, y, dy)?,
                    UnaryOp::Gelu => self.binary(BinaryOp::GeluBackward, x, dy)?,
                };
                Ok(vec![(x, dx)])
            }
            Op::Binary { op, b_from } => {
                self.binary_backward(*op, *b_from, inputs, dy, [want(0), want(1)])
            }
            Op::Expand { from, alpha } => {
                let x = inputs[0];
                let shape = self.shape(x).to_vec();
                Ok(vec![(x, self.sum_to(dy, *from, &shape, *alpha)?)])
            }
            Op::Reduce { op, axis } => self.reduce_backward(*op, *axis, inputs[0], dy),
            Op::Transpose => Ok(vec![(inputs[0], self.transpose(dy)?)]),
            // Select is gathered into one Stack per source by `backward` itself.
            Op::Select { .. } => Err(Error::InvalidArgument(
                "backward: a Select's gradient is gathered by its stack".into(),
            )),
            Op::Stack => inputs
                .iter()
                .enumerate()
                .filter(|&(k, _)| want(k))
                .map(|(k, &x)| Ok((x, self.select(dy, k)?)))
                .collect(),
            Op::Reshape => {
                let shape = self.shape(inputs[0]).to_vec();
                Ok(vec![(inputs[0], self.reshape(dy, &shape)?)])
            }
            Op::SoftmaxXent => {
                let (logits, targets) = (inputs[0], inputs[1]);
                if want(1) {
                    return Err(Error::InvalidArgument(
                        "backward: gradients w.r.t. softmax cross-entropy targets are not supported"
                            .into(),
                    ));
                }
                let shape = self.shape(logits).to_vec();
                let dl = self.push(Op::SoftmaxXentBackward, vec![logits, targets, dy], shape)?;
                Ok(vec![(logits, dl)])
            }
            Op::SpectralFn(f) => {
                let shape = self.shape(inputs[0]).to_vec();
                let dg = self.push(Op::SpectralFnBackward(*f), vec![dy, y], shape)?;
                Ok(vec![(inputs[0], dg)])
            }
            // y = m∘x/(1 − rate) with a mask that depends only on the seed, the step and the
            // index: dx is the same dropout of dy.
            Op::Dropout { .. } => {
                let shape = self.shape(inputs[0]).to_vec();
                Ok(vec![(inputs[0], self.push(op.clone(), vec![dy], shape)?)])
            }
            Op::LayerNorm { eps } => {
                let shape = self.shape(inputs[0]).to_vec();
                let dx = self.push(
                    Op::LayerNormBackward { eps: *eps },
                    vec![inputs[0], dy],
                    shape,
                )?;
                Ok(vec![(inputs[0], dx)])
            }
            Op::SoftmaxXentBackward
            | Op::SpectralFnBackward(_)
            | Op::LayerNormBackward { .. }
            | Op::Update(_)
            | Op::ClipGradients { .. }
            | Op::Ema { .. } => Err(Error::InvalidArgument(format!(
                "backward: {} has no gradient rule",
                op.name()
            ))),
        }
    }

    /// C = op(A)·op(B): dA and dB (where `want`ed) as matmuls of dC with the other operand.
    fn matmul_backward(
        &mut self,
        inputs: &[Value],
        dy: Value,
        trans_a: bool,
        trans_b: bool,
        want: [bool; 2],
    ) -> Result<Vec<(Value, Value)>> {
        let (a, b) = (inputs[0], inputs[1]);
        let mut out = Vec::new();
        if want[0] {
            let da = match (trans_a, trans_b) {
                (false, false) => self.matmul(dy, b, false, true)?,
                (false, true) => self.matmul(dy, b, false, false)?,
                (true, false) => self.matmul(b, dy, false, true)?,
                (true, true) => self.matmul(b, dy, true, true)?,
            };
            out.push((a, da));
        }
        if want[1] {
            let db = match (trans_a, trans_b) {
                (false, false) => self.matmul(a, dy, true, false)?,
                (false, true) => self.matmul(dy, a, true, false)?,
                (true, false) => self.matmul(a, dy, false, false)?,
                (true, true) => self.matmul(dy, a, true, true)?,
            };
            out.push((b, db));
        }
        Ok(out)
    }

    /// a ± b and a ∘ b with b broadcast as `b_from` says: b's gradient is summed back over
    /// the broadcast. The backward maps (ReluBackward, …) have no gradient themselves.
    fn binary_backward(
        &mut self,
        op: BinaryOp,
        b_from: Broadcast,
        inputs: &[Value],
        dy: Value,
        want: [bool; 2],
    ) -> Result<Vec<(Value, Value)>> {
        let (a, b) = (inputs[0], inputs[1]);
        let b_shape = self.shape(b).to_vec();
        let mut out = Vec::new();
        match op {
            BinaryOp::Add | BinaryOp::Sub => {
                if want[0] {
                    out.push((a, dy));
                }
                if want[1] {
                    let alpha = if op == BinaryOp::Add { 1.0 } else { -1.0 };
                    out.push((b, self.sum_to(dy, b_from, &b_shape, alpha)?));
                }
            }
            BinaryOp::Mul => {
                if want[0] {
                    out.push((a, self.push_binary(BinaryOp::Mul, dy, b, b_from)?));
                }
                if want[1] {
                    let prod = self.mul(dy, a)?;
                    out.push((b, self.sum_to(prod, b_from, &b_shape, 1.0)?));
                }
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "backward: {op:?} is itself a gradient op; second derivatives are not supported"
                )))
            }
        }
        Ok(out)
    }

    /// Sums and means spread dy back over what they reduced; a sum of squares scales it by 2x.
    fn reduce_backward(
        &mut self,
        op: ReduceOp,
        axis: Axis,
        x: Value,
        dy: Value,
    ) -> Result<Vec<(Value, Value)>> {
        let shape = self.shape(x).to_vec();
        let (rows, cols) = rows_cols(&shape);
        let (from, count) = match axis {
            Axis::Rows => (Broadcast::column_vector(rows, cols), cols),
            Axis::Cols => (Broadcast::row_vector(cols), rows),
        };
        let dx = match op {
            ReduceOp::Sum => self.expand(dy, &shape, from, 1.0)?,
            ReduceOp::Mean => self.expand(dy, &shape, from, 1.0 / count as f32)?,
            ReduceOp::SumSquares => {
                let xdy = self.push_binary(BinaryOp::Mul, x, dy, from)?;
                self.scale(xdy, 2.0)?
            }
            ReduceOp::Max => {
                return Err(Error::InvalidArgument(
                    "backward: Reduce Max has no gradient here; use it for metrics".into(),
                ))
            }
        };
        Ok(vec![(x, dx)])
    }

    /// alpha·x broadcast to `shape` as `from` says.
    pub(crate) fn expand(
        &mut self,
        x: Value,
        shape: &[usize],
        from: Broadcast,
        alpha: f32,
    ) -> Result<Value> {
        self.push(Op::Expand { from, alpha }, vec![x], shape.to_vec())
    }

    /// A binary op with an explicit broadcast of b.
    pub(super) fn push_binary(
        &mut self,
        op: BinaryOp,
        a: Value,
        b: Value,
        b_from: Broadcast,
    ) -> Result<Value> {
        let shape = self.shape(a).to_vec();
        self.push(Op::Binary { op, b_from }, vec![a, b], shape)
    }

    /// The adjoint of a broadcast: sums `dy` back onto an operand of `shape` that was read as
    /// `from`, times `alpha`.
    fn sum_to(&mut self, dy: Value, from: Broadcast, shape: &[usize], alpha: f32) -> Result<Value> {
        let n: usize = self.shape(dy).iter().product();
        let summed = if from.len == n {
            dy
        } else if from.inner == 1 {
            let m = self.reshape(dy, &[n / from.len, from.len])?;
            self.reduce(ReduceOp::Sum, Axis::Cols, m)?
        } else if from.len * from.inner == n {
            let m = self.reshape(dy, &[from.len, from.inner])?;
            self.reduce(ReduceOp::Sum, Axis::Rows, m)?
        } else {
            return Err(Error::InvalidArgument(format!(
                "backward: cannot sum a broadcast {from:?} of {n} elements"
            )));
        };
        let summed = if alpha == 1.0 {
            summed
        } else {
            self.scale(summed, alpha)?
        };
        if self.shape(summed) == shape {
            Ok(summed)
        } else {
            self.reshape(summed, shape)
        }
    }
}
