//! A classifier described once and run in two modes: a [`TrainingPlan`] (the model built in
//! [`Mode::Train`], softmax cross-entropy, the optimizer's backward pass and updates) and an
//! [`InferencePlan`] (the model built in [`Mode::Eval`], forward only, for batches of any
//! size), with evaluation over a [`Dataset`] — predictions, accuracy and mean loss.
//!
//! On the GPU, [`TrainingPlan::inference`] compiles the inference plan on the training
//! plan's own parameter buffers: no copy, and it always sees the latest weights. A fresh
//! [`InferencePlan::new`] has weights of its own, to be loaded from a checkpoint.
//!
//! ```no_run
//! # #[cfg(feature = "digits")] {
//! use eigengrad::data::{digits, Batcher};
//! use eigengrad::model::{ClassifierShape, TrainingPlan};
//! use eigengrad::nn::{Activation, GainPlacement, LayerKind, MlpSpec};
//! use eigengrad::optim::Adam;
//! let device = eigengrad::Device::new()?;
//! let (train, test) = digits()?.split(0.2, 7)?;
//! let model = MlpSpec {
//!     widths: vec![64, 32, 10],
//!     activation: Activation::Tanh,
//!     kind: LayerKind::Plain,
//!     init_scale: 1.0,
//!     gains: GainPlacement::None,
//!     stack: false,
//! };
//! let shape = ClassifierShape::of(&train, 32);
//! let mut training = TrainingPlan::new(&device, &model, shape, &Adam::new(1e-2), 0)?;
//! for batch in Batcher::new(&train, 32, 1)?.epoch() {
//!     training.step(&batch)?;
//! }
//! let mut inference = training.inference(&model, 100)?; // shares the weights
//! let figures = inference.evaluate(&test)?; // 360 samples: three batches and a partial one
//! println!("test accuracy {:.3}, loss {:.3}", figures.accuracy, figures.loss);
//! # }
//! # Ok::<(), eigengrad::Error>(())
//! ```

mod eval;

pub use eval::{argmax, cross_entropy, Evaluation};

use crate::data::{Batch, Dataset};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::gpu::GpuPlan;
use crate::graph::reference::ReferencePlan;
use crate::graph::{Graph, Op, Plan, Value};
use crate::nn::{Mode, Module, Scope};
use crate::optim::Optimizer;
use crate::reference::Real;

/// The shapes a classifier is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassifierShape {
    /// Rows of every batch the plan runs (an inference plan pads shorter ones).
    pub batch: usize,
    /// Input features per sample.
    pub features: usize,
    /// Classes (width of the logits and the one-hot targets).
    pub classes: usize,
}

impl ClassifierShape {
    /// Batches of `batch` samples of `data`'s features and classes.
    pub fn of(data: &Dataset, batch: usize) -> ClassifierShape {
        ClassifierShape {
            batch,
            features: data.features,
            classes: data.classes,
        }
    }

    /// The same shape with another batch size.
    pub fn with_batch(self, batch: usize) -> ClassifierShape {
        ClassifierShape { batch, ..self }
    }
}

/// A classifier's graph in one mode: the input `x` `[batch, features]` and the `logits`
/// `[batch, classes]`.
struct ClassifierGraph {
    graph: Graph,
    x: Value,
    logits: Value,
}

impl ClassifierGraph {
    /// `model` built in `mode` on an input `x` of `shape`, its output checked to be logits.
    fn build(model: &dyn Module, shape: ClassifierShape, mode: Mode) -> Result<ClassifierGraph> {
        if shape.batch == 0 || shape.features == 0 || shape.classes == 0 {
            return Err(Error::Empty {
                op: "classifier".into(),
                shape: vec![shape.batch, shape.features, shape.classes],
            });
        }
        let mut graph = Graph::new();
        let x = graph.input("x", &[shape.batch, shape.features])?;
        let logits = model.forward(&mut Scope::new(&mut graph, mode), x)?;
        let expected = [shape.batch, shape.classes];
        let got = &graph.nodes()[logits.index()].shape;
        if got != &expected {
            return Err(Error::shape(
                "classifier",
                format!(
                    "the model maps [{}, {}] to {got:?}, expected logits {expected:?}",
                    shape.batch, shape.features
                ),
            ));
        }
        Ok(ClassifierGraph { graph, x, logits })
    }
}

/// A classifier's training plan on any executor ([`GpuPlan`] by default): one call of
/// [`TrainingPlan::step`] per batch.
pub struct TrainingPlan<P: Plan = GpuPlan> {
    /// The compiled plan (for checkpoints, schedules, introspection).
    pub plan: P,
    /// The graph's input.
    pub x: Value,
    /// The one-hot targets input.
    pub targets: Value,
    /// The logits (readable after a step).
    pub logits: Value,
    /// The mean cross-entropy of the last step (readable after a step).
    pub loss: Value,
    shape: ClassifierShape,
}

impl<P: Plan> TrainingPlan<P> {
    /// The plan `compile` makes of `model`'s training graph: built in [`Mode::Train`], its
    /// softmax cross-entropy against the input `targets` minimised by `optimizer`.
    fn compile(
        model: &dyn Module,
        shape: ClassifierShape,
        optimizer: &dyn Optimizer,
        compile: impl FnOnce(&Graph, &[Value]) -> Result<P>,
    ) -> Result<TrainingPlan<P>> {
        let ClassifierGraph {
            mut graph,
            x,
            logits,
        } = ClassifierGraph::build(model, shape, Mode::Train)?;
        let targets = graph.input("targets", &[shape.batch, shape.classes])?;
        let loss = graph.softmax_cross_entropy(logits, targets)?;
        graph.set_name(loss, "loss")?;
        optimizer.minimize(&mut graph, loss)?;
        Ok(TrainingPlan {
            plan: compile(&graph, &[loss, logits])?,
            x,
            targets,
            logits,
            loss,
            shape,
        })
    }

    /// One training step on `batch` (exactly `shape.batch` samples, as a
    /// [`Batcher`](crate::data::Batcher) yields them by default). On the GPU it does not wait.
    pub fn step(&mut self, batch: &Batch) -> Result<()> {
        self.plan
            .step(&[(self.x, &batch.images), (self.targets, &batch.targets)])
    }

    /// The mean loss of the last step's batch (waits for it).
    pub fn loss(&self) -> Result<f32> {
        Ok(self.plan.read(self.loss)?[0])
    }

    /// The shapes it was compiled for.
    pub fn shape(&self) -> ClassifierShape {
        self.shape
    }
}

impl TrainingPlan<GpuPlan> {
    /// Compiles `model`'s training graph for `device`, parameters initialised from `seed`.
    pub fn new(
        device: &Device,
        model: &dyn Module,
        shape: ClassifierShape,
        optimizer: &dyn Optimizer,
        seed: u64,
    ) -> Result<TrainingPlan<GpuPlan>> {
        TrainingPlan::compile(model, shape, optimizer, |g, outputs| {
            GpuPlan::compile(device, g, outputs, seed)
        })
    }

    /// The inference plan of the same `model` for batches of up to `batch` samples, on this
    /// plan's parameter and model-state buffers (no copy): it sees every update of later
    /// steps. `model` must declare the same tensors (names, shapes) as the one trained.
    pub fn inference(&self, model: &dyn Module, batch: usize) -> Result<InferencePlan<GpuPlan>> {
        InferencePlan::compile(model, self.shape.with_batch(batch), |g, outputs| {
            GpuPlan::compile_sharing(g, outputs, &self.plan)
        })
    }
}

impl<T: Real> TrainingPlan<ReferencePlan<T>> {
    /// Compiles `model`'s training graph for the CPU reference executor in precision `T`,
    /// parameters initialised from `seed` exactly as on the GPU.
    pub fn reference(
        model: &dyn Module,
        shape: ClassifierShape,
        optimizer: &dyn Optimizer,
        seed: u64,
    ) -> Result<TrainingPlan<ReferencePlan<T>>> {
        TrainingPlan::compile(model, shape, optimizer, |g, _| {
            ReferencePlan::compile(g, seed)
        })
    }
}

/// A classifier's inference plan on any executor ([`GpuPlan`] by default): forward runs only,
/// which never touch the step count; inputs of any number of samples are cut into batches of
/// the compiled size, the last one padded with zeros whose rows are dropped from every
/// result.
///
/// Padding rows must not change the real ones, which holds for every layer of [`crate::nn`]
/// in evaluation mode (each row is computed on its own); a model that mixes rows in
/// evaluation mode (batch statistics) should be given full batches only.
pub struct InferencePlan<P: Plan = GpuPlan> {
    /// The compiled plan (for checkpoints and introspection).
    pub plan: P,
    /// The graph's input.
    pub x: Value,
    /// The logits.
    pub logits: Value,
    shape: ClassifierShape,
    /// The input of one run, reused.
    staging: Vec<f32>,
}

impl<P: Plan> InferencePlan<P> {
    /// The plan `compile` makes of `model`'s inference graph: built in [`Mode::Eval`], forward
    /// only.
    fn compile(
        model: &dyn Module,
        shape: ClassifierShape,
        compile: impl FnOnce(&Graph, &[Value]) -> Result<P>,
    ) -> Result<InferencePlan<P>> {
        let built = ClassifierGraph::build(model, shape, Mode::Eval)?;
        let plan = compile(&built.graph, &[built.logits])?;
        InferencePlan::wrap(plan, built.x, built.logits)
    }

    /// An inference plan over a plan compiled elsewhere whose graph maps the input `x`
    /// `[batch, features]` to `logits` `[batch, classes]` (on the GPU, `logits` must have been
    /// named as an output at compile time).
    pub fn wrap(plan: P, x: Value, logits: Value) -> Result<InferencePlan<P>> {
        let graph = plan.graph();
        let shape_of = |v: Value| graph.nodes().get(v.index()).map(|n| n.shape.as_slice());
        let (Some(&[batch, features]), Some(&[rows, classes])) = (shape_of(x), shape_of(logits))
        else {
            return Err(Error::shape(
                "InferencePlan::wrap",
                format!(
                    "needs an input [batch, features] and logits [batch, classes], got {} and {}",
                    graph.describe(x),
                    graph.describe(logits)
                ),
            ));
        };
        if rows != batch || graph.nodes()[x.index()].op != Op::Input {
            return Err(Error::shape(
                "InferencePlan::wrap",
                format!(
                    "{} must be an input and {} its {batch} rows of logits",
                    graph.describe(x),
                    graph.describe(logits)
                ),
            ));
        }
        Ok(InferencePlan {
            plan,
            x,
            logits,
            shape: ClassifierShape {
                batch,
                features,
                classes,
            },
            staging: vec![0.0; batch * features],
        })
    }

    /// The logits `[n, classes]` of `images` (`[n, features]`, any n ≥ 1), batch by batch.
    pub fn logits(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        let ClassifierShape {
            batch,
            features,
            classes,
        } = self.shape;
        if images.is_empty() || !images.len().is_multiple_of(features) {
            return Err(Error::shape(
                "InferencePlan::logits",
                format!(
                    "{} values are not rows of {features} features",
                    images.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(images.len() / features * classes);
        for chunk in images.chunks(batch * features) {
            let rows = chunk.len() / features;
            self.staging[..chunk.len()].copy_from_slice(chunk);
            self.staging[chunk.len()..].fill(0.0);
            self.plan
                .forward(&[(self.x, &self.staging)], &[self.logits])?;
            let logits = self.plan.read(self.logits)?;
            out.extend_from_slice(&logits[..rows * classes]);
        }
        Ok(out)
    }

    /// The shapes it was compiled for (`batch`: the most samples one run takes).
    pub fn shape(&self) -> ClassifierShape {
        self.shape
    }

    /// The predicted class (argmax of the logits) of every sample of `data`.
    pub fn predict(&mut self, data: &Dataset) -> Result<Vec<usize>> {
        self.check(data)?;
        let logits = self.logits(&data.images)?;
        Ok(logits.chunks(self.shape.classes).map(argmax).collect())
    }

    /// Mean cross-entropy and accuracy over every sample of `data`.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<Evaluation> {
        self.check(data)?;
        let logits = self.logits(&data.images)?;
        Evaluation::of(&logits, &data.labels, self.shape.classes)
    }

    /// Checks that `data` fits the plan's features and classes.
    fn check(&self, data: &Dataset) -> Result<()> {
        data.validate()?;
        if (data.features, data.classes) != (self.shape.features, self.shape.classes) {
            return Err(Error::shape(
                "InferencePlan",
                format!(
                    "dataset '{}' has {} features and {} classes, the plan {} and {}",
                    data.name, data.features, data.classes, self.shape.features, self.shape.classes
                ),
            ));
        }
        Ok(())
    }
}

impl InferencePlan<GpuPlan> {
    /// Compiles `model`'s inference graph for `device` with weights of its own, initialised
    /// from `seed` (to be loaded from a checkpoint).
    pub fn new(
        device: &Device,
        model: &dyn Module,
        shape: ClassifierShape,
        seed: u64,
    ) -> Result<InferencePlan<GpuPlan>> {
        InferencePlan::compile(model, shape, |g, outputs| {
            GpuPlan::compile(device, g, outputs, seed)
        })
    }
}

impl<T: Real> InferencePlan<ReferencePlan<T>> {
    /// Compiles `model`'s inference graph for the CPU reference executor in precision `T`.
    pub fn reference(
        model: &dyn Module,
        shape: ClassifierShape,
        seed: u64,
    ) -> Result<InferencePlan<ReferencePlan<T>>> {
        InferencePlan::compile(model, shape, |g, _| ReferencePlan::compile(g, seed))
    }
}
