//! The training loop: a training plan and an evaluation plan built by one function, so they
//! share parameter names, stepped and evaluated together.

use super::DemoResult;
use eigengrad::data::{Batch, Dataset};
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::{Graph, Plan, Value};
use eigengrad::optim::Adam;
use eigengrad::Device;

/// What a model builder returns: the logits, the weights whose gradient norms are tracked,
/// and whatever the demo wants to keep of the network (its layers, for introspection).
pub struct Built<T> {
    /// Output logits `[batch, classes]`.
    pub logits: Value,
    /// Weights whose ‖∂L/∂W‖ is tracked, input side first.
    pub tracked: Vec<Value>,
    /// The demo's handle on the network.
    pub net: T,
}

/// Loss and accuracy of a model on a dataset.
#[derive(Clone, Copy, Debug)]
pub struct Eval {
    /// Mean softmax cross-entropy.
    pub loss: f64,
    /// Fraction of argmax predictions equal to the label.
    pub accuracy: f64,
}

/// A training plan and an evaluation plan built by the same function, so they share
/// parameter (and running-statistic) names and the evaluation plan can take the trained
/// values with `copy_resident_from`.
pub struct Trainer<T> {
    /// The training plan (forward, backward, Adam updates in one submission per step).
    pub plan: GpuPlan,
    /// The training graph's network handle.
    pub net: T,
    x: Value,
    targets: Value,
    loss: Value,
    grads: Vec<Value>,
    eval: GpuPlan,
    eval_x: Value,
    eval_logits: Value,
    eval_batch: usize,
    features: usize,
    classes: usize,
}

impl<T> Trainer<T> {
    /// Builds both graphs with `build(graph, x, train)`: the training one for batches of
    /// `batch` with Adam appended, the evaluation one (`train = false`) for `eval_batch`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        device: &Device,
        features: usize,
        classes: usize,
        batch: usize,
        eval_batch: usize,
        adam: Adam,
        seed: u64,
        mut build: impl FnMut(&mut Graph, Value, bool) -> eigengrad::Result<Built<T>>,
    ) -> DemoResult<Trainer<T>> {
        let mut g = Graph::new();
        let x = g.input("x", &[batch, features]);
        let targets = g.input("targets", &[batch, classes]);
        let built = build(&mut g, x, true)?;
        let loss = g.softmax_cross_entropy(built.logits, targets)?;
        let gradients = adam.minimize(&mut g, loss)?;
        let grads = built
            .tracked
            .iter()
            .map(|&w| {
                gradients.get(w).ok_or_else(|| {
                    let name = g.try_node(w).map_or("?", |n| n.name.as_str());
                    format!("weight {name} has no gradient")
                })
            })
            .collect::<Result<Vec<Value>, String>>()?;
        let mut outputs = vec![loss];
        outputs.extend(&grads);
        let plan = GpuPlan::compile(device, &g, &outputs, seed)?;

        let mut eg = Graph::new();
        let eval_x = eg.input("x", &[eval_batch, features]);
        let ebuilt = build(&mut eg, eval_x, false)?;
        let eval = GpuPlan::compile(device, &eg, &[ebuilt.logits], seed)?;
        Ok(Trainer {
            plan,
            net: built.net,
            x,
            targets,
            loss,
            grads,
            eval,
            eval_x,
            eval_logits: ebuilt.logits,
            eval_batch,
            features,
            classes,
        })
    }

    /// One training step on `batch` (does not wait for the device).
    pub fn step(&mut self, batch: &Batch) -> DemoResult<()> {
        self.plan
            .step(&[(self.x, &batch.images), (self.targets, &batch.targets)])?;
        Ok(())
    }

    /// The loss of the last step (waits for it).
    pub fn last_loss(&self) -> DemoResult<f32> {
        Ok(self.plan.read(self.loss)?[0])
    }

    /// ‖∂L/∂W‖_F of every tracked weight at the last step (waits for it).
    pub fn grad_norms(&self) -> DemoResult<Vec<f64>> {
        self.grads
            .iter()
            .map(|&g| {
                let v = self.plan.read(g)?;
                Ok(v.iter()
                    .map(|&x| (x as f64) * (x as f64))
                    .sum::<f64>()
                    .sqrt())
            })
            .collect()
    }

    /// Loss and accuracy on `data` (at most `limit` samples, from the start) with the trained
    /// values: copies them into the evaluation plan and runs it batch by batch, padding the
    /// last batch with zeros whose rows are ignored.
    pub fn evaluate(&mut self, data: &Dataset, limit: usize) -> DemoResult<Eval> {
        self.eval.copy_resident_from(&self.plan)?;
        let n = data.n.min(limit);
        let (f, c) = (self.features, self.classes);
        let (mut loss, mut correct) = (0.0f64, 0usize);
        let mut start = 0;
        while start < n {
            let rows = self.eval_batch.min(n - start);
            let mut x = vec![0.0f32; self.eval_batch * f];
            x[..rows * f].copy_from_slice(&data.images[start * f..(start + rows) * f]);
            self.eval.step(&[(self.eval_x, &x)])?;
            let logits = self.eval.read(self.eval_logits)?;
            for (r, row) in logits.chunks(c).take(rows).enumerate() {
                let label = data.labels[start + r] as usize;
                loss += cross_entropy(row, label);
                correct += (argmax(row) == label) as usize;
            }
            start += rows;
        }
        Ok(Eval {
            loss: loss / n as f64,
            accuracy: correct as f64 / n as f64,
        })
    }
}

/// Index of the largest value (NaN never wins).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// −log softmax(row)[label], in f64.
pub fn cross_entropy(row: &[f32], label: usize) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let lse = max
        + row
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln();
    lse - row[label] as f64
}
