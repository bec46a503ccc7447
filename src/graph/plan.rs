//! The one interface of a compiled graph, whichever executor runs it.
//!
//! A [`Plan`] runs training steps (forward, backward, updates), forward-only evaluations,
//! reads and writes tensors, and reports what its eigendecompositions found. The GPU executor
//! ([`GpuPlan`](super::gpu::GpuPlan)) and the CPU reference executor
//! ([`ReferencePlan`](super::reference::ReferencePlan)) both implement it, so checkpoints,
//! the layers' introspection and evaluation code are written once for both.
//!
//! What every plan keeps besides its tensors — the graph, the step count and the learning
//! rate — lives in one [`PlanState`] that both executors embed; the trait's provided methods
//! read and change it, so the rules (validation, overflow) are written once.
//!
//! ```no_run
//! use eigengrad::graph::{gpu::GpuPlan, Graph, Init, Plan};
//! # fn main() -> eigengrad::Result<()> {
//! # let device = eigengrad::Device::new()?;
//! let mut g = Graph::new();
//! let x = g.input("x", &[4, 3])?;
//! let w = g.param("w", &[3, 2], Init::Normal { std: 0.5 })?;
//! let y = g.matmul(x, w, false, false)?;
//! let mut plan = GpuPlan::compile(&device, &g, &[y], 0)?;
//! plan.forward(&[(x, &[0.5; 12])], &[y])?; // no update, the step count stays 0
//! let prediction = plan.read(y)?;
//! # Ok(()) }
//! ```

use super::{Graph, Op, Schedule, Value};
use crate::error::{Error, Result};

/// A graph compiled for one executor: steps, forward-only runs, tensor access and the
/// eigendecompositions' introspection.
///
/// The trait is object safe: code that only needs to look at a plan (the layers'
/// introspection) takes `&dyn Plan`.
pub trait Plan {
    /// The state every plan keeps: graph, step count, learning rate.
    fn state(&self) -> &PlanState;

    /// Mutable access to the state (its setters validate what they are given).
    fn state_mut(&mut self) -> &mut PlanState;

    /// Runs one training step: writes `inputs` (every input of the graph, by value), then runs
    /// forward, backward and the updates, and advances the step count. On the GPU it returns
    /// without waiting for the device.
    fn step(&mut self, inputs: &[(Value, &[f32])]) -> Result<()>;

    /// Runs only the ops `outputs` depend on — no gradient the outputs do not need, no update,
    /// no running-statistics write — and leaves the step count alone. `inputs` must hold the
    /// graph inputs those ops read (others may be given and are written too). Afterwards
    /// [`Plan::read`] returns the outputs; on the GPU they must be readable (named at compile
    /// time, or resident). Eigendecompositions the outputs need run as in a step, and their
    /// warm starts follow this run's eigenvectors (the solver's cache, not model state).
    fn forward(&mut self, inputs: &[(Value, &[f32])], outputs: &[Value]) -> Result<()>;

    /// The current contents of `v` (waits for the work queued before).
    fn read(&self, v: Value) -> Result<Vec<f32>>;

    /// Overwrites a resident tensor (a parameter, state or constant), e.g. when loading a
    /// checkpoint. It also clears the step status (a halted plan resumes updating) and makes
    /// every eigendecomposition start cold at the next run (no warm start from eigenvectors
    /// of the old tensors): training goes on from what was written as a fresh plan given the
    /// same tensors would. See [`status`](super::status).
    fn write(&mut self, v: Value, data: &[f32]) -> Result<()>;

    /// Checks what the runs since the last write found: `Error::NonFinite` when the last
    /// run's eigendecomposition of a spectral function had NaN or Inf in its input (naming
    /// the node, with the batch index) or, on the GPU, in its warm start; otherwise when a
    /// step found NaN or Inf in a running statistic, a loss or a parameter update and halted
    /// the updates (naming the first, with the step; see [`status`](super::status) for the
    /// policy). On the GPU it waits for the queued work and reads a few words back.
    fn check_status(&self) -> Result<()>;

    /// Eigenvalues (ascending, `[batch, n]`) of the matrices the spectral-function node `v`
    /// decomposed at the last step or forward run: the spectrum the layer acted on.
    fn eigenvalues(&self, v: Value) -> Result<Vec<f32>>;

    /// Eigenvectors (`[batch, n, n]`, column j for eigenvalue j) of the spectral-function
    /// node `v` at the last step or forward run.
    fn eigenvectors(&self, v: Value) -> Result<Vec<f32>>;

    /// Jacobi sweeps each matrix of the spectral-function node `v` needed at the last step
    /// or forward run. Only an executor that runs the Jacobi solver counts sweeps; the others
    /// return an error saying so.
    fn sweeps(&self, v: Value) -> Result<Vec<u32>>;

    /// The graph this plan runs.
    fn graph(&self) -> &Graph {
        self.state().graph()
    }

    /// Training steps run so far.
    fn steps(&self) -> u64 {
        self.state().steps()
    }

    /// Sets the step count (Adam's bias correction and the solver's cold-restart schedule
    /// follow it), e.g. after loading a checkpoint.
    fn set_steps(&mut self, steps: u64) {
        self.state_mut().set_steps(steps)
    }

    /// The learning rate of the next step: the schedule's rate for it.
    fn learning_rate(&self) -> f32 {
        self.state().learning_rate()
    }

    /// Sets the base learning rate the schedule scales from the next step on (no
    /// recompilation); it must be finite and ≥ 0.
    fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.state_mut().set_learning_rate(lr)
    }

    /// Sets the learning-rate schedule from the next step on (no recompilation); the graph's
    /// (the optimizer's) is the one a plan starts with.
    fn set_schedule(&mut self, schedule: Schedule) -> Result<()> {
        self.state_mut().set_schedule(schedule)
    }

    /// The values a full training-state checkpoint holds: trainable parameters, model state
    /// and optimizer state, in graph order.
    fn saved_values(&self) -> Vec<Value> {
        self.state().saved_values()
    }

    /// The values of the model itself — trainable parameters and model state such as
    /// running statistics, no optimizer state — in graph order: what an inference plan needs
    /// and a parameters checkpoint holds.
    fn model_values(&self) -> Vec<Value> {
        self.state().model_values()
    }
}

/// A boxed plan is a plan: code that picks its executor at run time (the GPU, or the CPU
/// reference where no GPU is worth using) holds a `Box<dyn Plan>` and passes it wherever a
/// plan is taken, e.g. to [`InferencePlan`](crate::model::InferencePlan).
impl<P: Plan + ?Sized> Plan for Box<P> {
    fn state(&self) -> &PlanState {
        (**self).state()
    }

    fn state_mut(&mut self) -> &mut PlanState {
        (**self).state_mut()
    }

    fn step(&mut self, inputs: &[(Value, &[f32])]) -> Result<()> {
        (**self).step(inputs)
    }

    fn forward(&mut self, inputs: &[(Value, &[f32])], outputs: &[Value]) -> Result<()> {
        (**self).forward(inputs, outputs)
    }

    fn read(&self, v: Value) -> Result<Vec<f32>> {
        (**self).read(v)
    }

    fn write(&mut self, v: Value, data: &[f32]) -> Result<()> {
        (**self).write(v, data)
    }

    fn check_status(&self) -> Result<()> {
        (**self).check_status()
    }

    fn eigenvalues(&self, v: Value) -> Result<Vec<f32>> {
        (**self).eigenvalues(v)
    }

    fn eigenvectors(&self, v: Value) -> Result<Vec<f32>> {
        (**self).eigenvectors(v)
    }

    fn sweeps(&self, v: Value) -> Result<Vec<u32>> {
        (**self).sweeps(v)
    }
}

/// What every plan keeps besides its tensors: the graph it runs, the step count, the base
/// learning rate and its schedule. Embedded by each executor and reached through
/// [`Plan::state`].
#[derive(Clone, Debug)]
pub struct PlanState {
    graph: Graph,
    steps: u64,
    learning_rate: f32,
    schedule: Schedule,
}

impl PlanState {
    /// The state of a freshly compiled plan of `graph`: no step run yet, the learning rate
    /// and schedule the optimizer set in the graph.
    pub(crate) fn new(graph: &Graph) -> PlanState {
        PlanState {
            graph: graph.clone(),
            steps: 0,
            learning_rate: graph.learning_rate(),
            schedule: *graph.schedule(),
        }
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Training steps run so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Sets the step count.
    pub fn set_steps(&mut self, steps: u64) {
        self.steps = steps;
    }

    /// The learning rate of the next step (the schedule's rate for it).
    pub fn learning_rate(&self) -> f32 {
        self.rate_at(self.steps.saturating_add(1))
    }

    /// The learning rate of step `step` (counted from 1) under the schedule.
    pub fn rate_at(&self, step: u64) -> f32 {
        self.schedule.rate(self.learning_rate, step)
    }

    /// The base learning rate the schedule scales.
    pub fn base_learning_rate(&self) -> f32 {
        self.learning_rate
    }

    /// Sets the base learning rate: finite and ≥ 0, otherwise `Error::InvalidArgument` and
    /// the rate is unchanged.
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "learning rate must be finite and ≥ 0, got {lr}"
            )));
        }
        self.learning_rate = lr;
        Ok(())
    }

    /// The learning-rate schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Sets the schedule (checked first: a bad one changes nothing).
    pub fn set_schedule(&mut self, schedule: Schedule) -> Result<()> {
        schedule.validate()?;
        self.schedule = schedule;
        Ok(())
    }

    /// Counts one more training step and returns the new count; an error rather than a
    /// wrap-around at `u64::MAX`.
    pub(crate) fn advance(&mut self) -> Result<u64> {
        self.steps = self.steps.checked_add(1).ok_or_else(|| {
            Error::InvalidArgument(format!("step count {} cannot advance", self.steps))
        })?;
        Ok(self.steps)
    }

    /// Trainable parameters, model state and optimizer state, in graph order.
    pub fn saved_values(&self) -> Vec<Value> {
        self.graph
            .values_where(|op| matches!(op, Op::Param { role, .. } if role.is_saved()))
    }

    /// Trainable parameters and model state, in graph order.
    pub fn model_values(&self) -> Vec<Value> {
        self.graph
            .values_where(|op| matches!(op, Op::Param { role, .. } if role.is_model()))
    }

    /// Checks the `inputs` given to `what` (a step or a forward run): each is an input of the
    /// graph with one value per element, and every input for which `required` holds is there.
    pub(crate) fn check_inputs<T>(
        &self,
        what: &str,
        inputs: &[(Value, &[T])],
        required: impl Fn(Value) -> bool,
    ) -> Result<()> {
        for &(v, data) in inputs {
            let node = self.graph.nodes().get(v.0).filter(|n| n.op == Op::Input);
            let Some(node) = node else {
                return Err(Error::InvalidArgument(format!(
                    "{what}: {} is not an input of this graph",
                    self.graph.describe(v)
                )));
            };
            if data.len() != node.shape.iter().product::<usize>() {
                return Err(Error::shape(
                    what,
                    format!(
                        "input {} has shape {:?} but {} values were given",
                        node.name,
                        node.shape,
                        data.len()
                    ),
                ));
            }
        }
        for v in self.graph.values_where(|op| *op == Op::Input) {
            if required(v) && !inputs.iter().any(|&(i, _)| i == v) {
                return Err(Error::InvalidArgument(format!(
                    "{what}: input {} was not given",
                    self.graph.node(v).name
                )));
            }
        }
        Ok(())
    }

    /// Checks that `v` is a resident tensor of `len` elements, as a write needs.
    pub(crate) fn check_write(&self, v: Value, len: usize) -> Result<()> {
        let node = self.graph.nodes().get(v.0);
        let Some(node) = node.filter(|n| matches!(n.op, Op::Param { .. })) else {
            return Err(Error::InvalidArgument(format!(
                "write: {} is not a resident tensor of this graph",
                self.graph.describe(v)
            )));
        };
        if len != node.shape.iter().product::<usize>() {
            return Err(Error::shape(
                "write",
                format!("{} values for {} of shape {:?}", len, node.name, node.shape),
            ));
        }
        Ok(())
    }

    /// Checks that `v` is a spectral-function node, as `what` (an introspection) needs.
    pub(crate) fn check_spectral(&self, what: &str, v: Value) -> Result<()> {
        match self.graph.nodes().get(v.0) {
            Some(n) if matches!(n.op, Op::SpectralFn(_)) => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "{what}: {} is not a spectral-function node",
                self.graph.describe(v)
            ))),
        }
    }

    /// Which nodes a forward run of `outputs` evaluates (see [`Graph::needed_for`]).
    pub(crate) fn needed_for(&self, outputs: &[Value]) -> Result<Vec<bool>> {
        self.graph.needed_for(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Init, Role};

    /// Inputs x [2, 3] and t [2, 1], a weight w with one state tensor, a constant; lr 0.25.
    fn state() -> (PlanState, Value, Value, Value) {
        let mut g = Graph::new();
        let x = g.input("x", &[2, 3]).unwrap();
        let t = g.input("t", &[2, 1]).unwrap();
        let w = g.param("w", &[3, 1], Init::Zeros).unwrap();
        g.resident("w.momentum", &[3, 1], Init::Zeros, Role::OptimizerState)
            .unwrap();
        g.resident("running", &[3], Init::Zeros, Role::State)
            .unwrap();
        g.constant(&[1], 1.0).unwrap();
        let y = g.matmul(x, w, false, false).unwrap();
        g.mse(y, t).unwrap();
        g.set_learning_rate(0.25);
        (PlanState::new(&g), x, t, w)
    }

    #[test]
    fn plans_can_move_between_threads() {
        fn send_sync<P: Plan + Send + Sync>() {}
        send_sync::<crate::graph::gpu::GpuPlan>();
        send_sync::<crate::graph::reference::ReferencePlan<f64>>();
    }

    #[test]
    fn learning_rate_is_validated_and_starts_from_the_graph() {
        let (mut s, ..) = state();
        assert_eq!(s.learning_rate(), 0.25);
        for bad in [f32::NAN, -1.0, f32::INFINITY] {
            assert!(matches!(
                s.set_learning_rate(bad),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert_eq!(s.learning_rate(), 0.25, "a refused rate changes nothing");
        s.set_learning_rate(0.0).unwrap();
        assert_eq!(s.learning_rate(), 0.0);
    }

    #[test]
    fn step_count_advances_and_never_wraps() {
        let (mut s, ..) = state();
        assert_eq!(s.advance().unwrap(), 1);
        s.set_steps(u64::MAX - 1);
        assert_eq!(s.advance().unwrap(), u64::MAX);
        assert!(s.advance().is_err());
        assert_eq!(s.steps(), u64::MAX);
    }

    #[test]
    fn inputs_are_checked_by_value_length_and_presence() {
        let (s, x, t, w) = state();
        let (xs, ts) = (vec![0.0f32; 6], vec![0.0f32; 2]);
        s.check_inputs("step", &[(x, &xs), (t, &ts)], |_| true)
            .unwrap();
        let missing = s.check_inputs("step", &[(x, &xs)], |_| true);
        assert!(matches!(missing, Err(Error::InvalidArgument(m)) if m.contains("t was not given")));
        // Only the required inputs must be there.
        s.check_inputs("forward", &[(x, &xs)], |v| v == x).unwrap();
        let short = s.check_inputs("step", &[(x, &xs[..5]), (t, &ts)], |_| true);
        assert!(matches!(short, Err(Error::Shape { .. })));
        let not_input = s.check_inputs("step", &[(w, &ts)], |_| false);
        assert!(matches!(not_input, Err(Error::InvalidArgument(_))));
        let foreign = s.check_inputs("step", &[(Value(1000), &ts)], |_| false);
        assert!(matches!(foreign, Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn writes_go_to_resident_tensors_of_the_right_size() {
        let (s, x, _, w) = state();
        s.check_write(w, 3).unwrap();
        assert!(matches!(s.check_write(w, 4), Err(Error::Shape { .. })));
        assert!(matches!(
            s.check_write(x, 6),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            s.check_write(Value(1000), 1),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn saved_values_are_trainable_and_state_not_constants() {
        let (s, _, _, w) = state();
        let names = |values: Vec<Value>| -> Vec<String> {
            values
                .iter()
                .map(|&v| s.graph().node(v).name.clone())
                .collect()
        };
        assert_eq!(names(s.saved_values()), ["w", "w.momentum", "running"]);
        assert_eq!(names(s.model_values()), ["w", "running"]);
        assert_eq!(s.saved_values()[0], w);
    }

    /// The rate of each step follows the schedule from the base rate; a bad schedule is
    /// refused and changes nothing.
    #[test]
    fn the_schedule_sets_the_rate_of_each_step() {
        let (mut s, ..) = state();
        let halving = Schedule::Step {
            every: 2,
            gamma: 0.5,
        };
        s.set_schedule(halving).unwrap();
        let rates: Vec<f32> = (0..5)
            .map(|_| {
                let next = s.learning_rate();
                let t = s.advance().unwrap();
                assert_eq!(s.rate_at(t), next);
                next
            })
            .collect();
        assert_eq!(rates, [0.25, 0.25, 0.125, 0.125, 0.0625]);
        assert!(s
            .set_schedule(Schedule::Step {
                every: 0,
                gamma: 0.5
            })
            .is_err());
        assert_eq!(s.schedule(), &halving);
        assert_eq!(s.base_learning_rate(), 0.25);
    }
}
