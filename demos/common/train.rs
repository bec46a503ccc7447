//! The training loop: a training plan and an evaluation plan built by one function, so they
//! share parameter names (the evaluation plan runs on the training plan's weights), stepped
//! and evaluated together, on the GPU or on the CPU reference executor.

use super::DemoResult;
use clap::ValueEnum;
use eigengrad::data::{Batch, Dataset};
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::reference::ReferencePlan;
use eigengrad::graph::{Graph, Plan, Value};
use eigengrad::model::{Evaluation, InferencePlan};
use eigengrad::optim::Adam;
use eigengrad::Device;

/// Which executor runs a demo's plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// The device's GPU plans (one submission per step).
    Gpu,
    /// The CPU reference executor in f32 (nalgebra): the same graph and arithmetic, for
    /// machines whose only adapter is a CPU one, where it runs a narrow deep network many
    /// times faster than lavapipe.
    Reference,
}

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

/// A training plan and an evaluation plan built by the same function, so they share
/// parameter (and running-statistic) names: on the GPU the evaluation plan runs on the
/// training plan's resident buffers; on the reference executor it is given a copy of the
/// weights before each evaluation.
pub struct Trainer<T> {
    /// The training plan (forward, backward, Adam updates; on the GPU in one submission per
    /// step).
    pub plan: Box<dyn Plan>,
    /// The training graph's network handle.
    pub net: T,
    x: Value,
    targets: Value,
    loss: Value,
    grads: Vec<Value>,
    eval: InferencePlan<Box<dyn Plan>>,
    /// Whether the evaluation plan has weights of its own, copied from the training plan
    /// before each evaluation (the reference executor's), rather than sharing its buffers.
    copies_weights: bool,
}

impl<T> Trainer<T> {
    /// Builds both graphs with `build(graph, x, train)`: the training one for batches of
    /// `batch` with Adam appended, the evaluation one (`train = false`) for `eval_batch`, and
    /// compiles them for `executor` (on `device` for the GPU).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        executor: Executor,
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
        let x = g.input("x", &[batch, features])?;
        let targets = g.input("targets", &[batch, classes])?;
        let built = build(&mut g, x, true)?;
        let loss = g.softmax_cross_entropy(built.logits, targets)?;
        let gradients = adam.minimize(&mut g, loss)?;
        // A stacked layer's weight is a slice of its stack: its gradient the same slice.
        let mut grads = Vec::with_capacity(built.tracked.len());
        for &w in &built.tracked {
            match gradients.get_or_slice(&mut g, w)? {
                Some(grad) => grads.push(grad),
                None => {
                    let name = g.try_node(w).map_or("?", |n| n.name.as_str());
                    return Err(format!("weight {name} has no gradient").into());
                }
            }
        }
        let mut outputs = vec![loss];
        outputs.extend(&grads);

        let mut eg = Graph::new();
        let eval_x = eg.input("x", &[eval_batch, features])?;
        let ebuilt = build(&mut eg, eval_x, false)?;
        let (plan, eval_plan): (Box<dyn Plan>, Box<dyn Plan>) = match executor {
            Executor::Gpu => {
                let plan = GpuPlan::compile(device, &g, &outputs, seed)?;
                let eval_plan = GpuPlan::compile_sharing(&eg, &[ebuilt.logits], &plan)?;
                (Box::new(plan), Box::new(eval_plan))
            }
            Executor::Reference => (
                Box::new(ReferencePlan::<f32>::compile(&g, seed)?),
                Box::new(ReferencePlan::<f32>::compile(&eg, seed)?),
            ),
        };
        let eval = InferencePlan::wrap(eval_plan, eval_x, ebuilt.logits)?;
        Ok(Trainer {
            plan,
            net: built.net,
            x,
            targets,
            loss,
            grads,
            eval,
            copies_weights: executor == Executor::Reference,
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

    /// Loss and accuracy on `data` (at most `limit` samples, from the start) with the current
    /// weights.
    pub fn evaluate(&mut self, data: &Dataset, limit: usize) -> DemoResult<Evaluation> {
        if self.copies_weights {
            self.copy_weights_to_eval()?;
        }
        let n = data.n.min(limit);
        let logits = self.eval.logits(&data.images[..n * data.features])?;
        Ok(Evaluation::of(&logits, &data.labels[..n], data.classes)?)
    }

    /// Writes the training plan's current parameters and running statistics into the
    /// evaluation plan's, value by value by name.
    fn copy_weights_to_eval(&mut self) -> DemoResult<()> {
        let eval = &mut self.eval.plan;
        for v in eval.saved_values() {
            let name = eval.graph().try_node(v)?.name.clone();
            if let Some(source) = self.plan.graph().find(&name) {
                let data = self.plan.read(source)?;
                eval.write(v, &data)?;
            }
        }
        Ok(())
    }
}
