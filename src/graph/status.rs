//! What a training step watches for NaN and Inf, what a plan does when it finds one, and what
//! [`Plan::check_status`] reports. Both executors follow this one policy: the GPU keeps the
//! status on the device (inside the step's one submission, nothing read back until asked),
//! the reference executor on the host.
//!
//! # What a step watches
//! In the order a step meets them: each running statistic (the new value of an
//! [`Op::Ema`]), each loss ([`Graph::losses`]), and each parameter update (its gradient, and
//! the new values of the parameter and of its optimizer state).
//!
//! # What a plan does on NaN or Inf
//! - Before its first update, a step checks every loss and every gradient. If one holds NaN
//!   or Inf, the step applies no update: parameters and optimizer state keep their values.
//! - An element of an update whose new values would be NaN or Inf (an overflow, or a NaN
//!   already in the parameter or its state) keeps its old values; so does an element of a
//!   running statistic.
//! - From the first finding on, the plan is *halted*: later steps still run forward and
//!   backward (the loss stays readable and shows the damage) but change no parameter, no
//!   optimizer state and no running statistic. A user's weights are never overwritten with
//!   NaN.
//! - Writing a resident tensor ([`Plan::write`], which loading a checkpoint does for each)
//!   clears the status and restarts every eigendecomposition cold (from V0 = I): training
//!   resumes from what was written as a fresh plan given the same tensors would.
//! - [`Plan::check_status`] reports the halt as [`Error::NonFinite`] naming the first value
//!   found (a running statistic, the loss, or the update of a named parameter) and its first
//!   offending element, the step, and what else was found non-finite since.
//!
//! The step count goes on counting the steps run while halted: a checkpoint loaded to resume
//! sets it back.

#[cfg(doc)]
use super::plan::Plan;
use super::{Graph, Op, Value};
use crate::error::{Error, Result};

/// One thing a step watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watched {
    /// The state tensor an [`Op::Ema`] node (`node`) updates.
    RunningStatistic {
        /// The Ema node.
        node: usize,
        /// Its state tensor.
        state: Value,
    },
    /// A loss.
    Loss(Value),
    /// The [`Op::Update`] node `node` of `param`, whose gradient is `grad`.
    Update {
        /// The update node.
        node: usize,
        /// The parameter it updates.
        param: Value,
        /// The parameter's gradient.
        grad: Value,
    },
}

impl Watched {
    /// What it is, for an error message.
    fn describe(&self, graph: &Graph) -> String {
        match *self {
            Watched::RunningStatistic { state, .. } => {
                format!("the running statistic {}", graph.node(state).name)
            }
            Watched::Loss(v) => format!("the loss {}", graph.node(v).name),
            Watched::Update { param, .. } => format!("the update of {}", graph.node(param).name),
        }
    }
}

/// Everything a step of one graph watches, each with its slot (its index here).
#[derive(Clone, Debug)]
pub(crate) struct StepWatch {
    watched: Vec<Watched>,
}

impl StepWatch {
    /// The watch list of `graph`: running statistics, losses, then updates, each in graph
    /// order.
    pub fn of(graph: &Graph) -> StepWatch {
        let nodes = graph.nodes().iter().enumerate();
        let running = nodes.clone().filter_map(|(node, n)| match n.op {
            Op::Ema { .. } => Some(Watched::RunningStatistic {
                node,
                state: n.inputs[0],
            }),
            _ => None,
        });
        let losses = graph.losses().iter().map(|&v| Watched::Loss(v));
        let updates = nodes.filter_map(|(node, n)| match n.op {
            Op::Update(_) => Some(Watched::Update {
                node,
                param: n.inputs[0],
                grad: n.inputs[1],
            }),
            _ => None,
        });
        StepWatch {
            watched: running.chain(losses).chain(updates).collect(),
        }
    }

    /// How many slots.
    pub fn len(&self) -> usize {
        self.watched.len()
    }

    /// The watched things by slot.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Watched)> + '_ {
        self.watched.iter().enumerate()
    }

    /// The slot of the Ema or update node `node`, if it is one.
    pub fn slot_of(&self, node: usize) -> Option<usize> {
        self.watched.iter().position(|w| match *w {
            Watched::RunningStatistic { node: n, .. } | Watched::Update { node: n, .. } => {
                n == node
            }
            Watched::Loss(_) => false,
        })
    }

    /// The first update node in graph order, if any: where a step checks its losses and
    /// gradients and decides whether to halt.
    pub fn first_update(&self) -> Option<usize> {
        self.watched.iter().find_map(|w| match *w {
            Watched::Update { node, .. } => Some(node),
            _ => None,
        })
    }

    /// `Ok` unless `status` is halted; then [`Error::NonFinite`] naming the first finding, the
    /// step, and the other things found non-finite since.
    pub fn check(&self, graph: &Graph, status: &StepStatus) -> Result<()> {
        let Some((slot, step)) = status.halted else {
            return Ok(());
        };
        const NAMED: usize = 3;
        let others: Vec<String> = status
            .found
            .iter()
            .enumerate()
            .filter(|&(s, f)| s != slot && f.is_some())
            .map(|(s, _)| self.watched[s].describe(graph))
            .collect();
        let also = match others.len() {
            0 => String::new(),
            k if k <= NAMED => format!(", then in {}", others.join(", ")),
            k => format!(
                ", then in {} and {} more",
                others[..NAMED].join(", "),
                k - NAMED
            ),
        };
        Err(Error::NonFinite {
            what: format!(
                "{} at step {step}{also}; no update has been applied since (write the \
                 parameters or load a checkpoint to resume)",
                self.watched[slot].describe(graph)
            ),
            index: status.found[slot].map_or(0, |(_, first)| first),
        })
    }
}

/// What the eigendecomposition of spectral-function node `node` met NaN or Inf in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SolveFault {
    /// Its input matrix.
    Input,
    /// Its warm start: the eigenvectors of the run before.
    WarmStart,
}

/// The error for spectral-function node `node` whose eigendecomposition met NaN or Inf (in
/// what `fault` says) at matrix `index` of its batch.
pub(crate) fn non_finite_solve(graph: &Graph, node: usize, fault: SolveFault, index: u64) -> Error {
    let spectral = graph.node(Value(node));
    let what = match fault {
        SolveFault::Input => format!(
            "{} (the input {} of its eigendecomposition)",
            spectral.name,
            graph.node(spectral.inputs[0]).name
        ),
        SolveFault::WarmStart => format!(
            "{} (the warm start of its eigendecomposition: the eigenvectors of the run before)",
            spectral.name
        ),
    };
    Error::NonFinite { what, index }
}

/// The status of the steps since a plan's tensors were last written: what each slot of a
/// [`StepWatch`] found, and whether (since when) the updates are halted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StepStatus {
    /// The slot of the first finding and the step it was made in, once halted.
    pub halted: Option<(usize, u64)>,
    /// Per slot: how many non-finite values it found, and the first one's element index.
    pub found: Vec<Option<(u64, u64)>>,
}

impl StepStatus {
    /// Nothing found, for `slots` slots.
    pub fn new(slots: usize) -> StepStatus {
        StepStatus {
            halted: None,
            found: vec![None; slots],
        }
    }

    /// Adds `finding` (count, first index), if any, to slot `slot`.
    pub fn record(&mut self, slot: usize, finding: Option<(u64, u64)>) {
        let Some((count, first)) = finding else {
            return;
        };
        let merged = match self.found[slot] {
            Some((c, f)) => (c + count, f.min(first)),
            None => (count, first),
        };
        self.found[slot] = Some(merged);
    }

    /// Unless halted already, halts at the first slot that found something, at `step`.
    pub fn gate(&mut self, step: u64) {
        if self.halted.is_none() {
            self.halted = self
                .found
                .iter()
                .position(Option::is_some)
                .map(|s| (s, step));
        }
    }

    /// Whether the updates are halted.
    pub fn is_halted(&self) -> bool {
        self.halted.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Init, Role};
    use crate::kernels::optim::UpdateRule;

    /// tanh(x·w)·v → mse against t, a running mean of the output, SGD on w and v.
    fn graph() -> (Graph, Value, Value, Value) {
        let mut g = Graph::new();
        let x = g.input("x", &[2, 3]).unwrap();
        let t = g.input("t", &[2, 1]).unwrap();
        let w = g.param("w", &[3, 1], Init::Normal { std: 0.5 }).unwrap();
        let v = g.param("v", &[1, 1], Init::Identity { gain: 1.0 }).unwrap();
        let running = g
            .resident("running", &[2, 1], Init::Zeros, Role::State)
            .unwrap();
        let xw = g.matmul(x, w, false, false).unwrap();
        let h = g.tanh(xw).unwrap();
        let y = g.matmul(h, v, false, false).unwrap();
        g.ema(running, y, 0.1).unwrap();
        let loss = g.mse(y, t).unwrap();
        let grads = g.backward(loss).unwrap();
        let rule = UpdateRule::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        };
        for p in [w, v] {
            let name = format!("{}.momentum", g.node(p).name);
            let state = g
                .resident(
                    &name,
                    g.shape(p).to_vec().as_slice(),
                    Init::Zeros,
                    Role::State,
                )
                .unwrap();
            let inputs = vec![p, grads.get(p).unwrap(), state];
            g.push(Op::Update(rule), inputs, vec![]).unwrap();
        }
        (g, w, v, loss)
    }

    #[test]
    fn a_step_watches_running_statistics_losses_then_updates() {
        let (g, w, v, loss) = graph();
        let watch = StepWatch::of(&g);
        let kinds: Vec<String> = watch.iter().map(|(_, w)| w.describe(&g)).collect();
        let loss_name = &g.node(loss).name;
        assert_eq!(
            kinds,
            [
                "the running statistic running".to_string(),
                format!("the loss {loss_name}"),
                "the update of w".into(),
                "the update of v".into()
            ]
        );
        let updates: Vec<usize> = watch
            .iter()
            .filter_map(|(_, w)| match w {
                Watched::Update { node, .. } => Some(*node),
                _ => None,
            })
            .collect();
        assert_eq!(watch.first_update(), Some(updates[0]));
        assert_eq!(watch.slot_of(updates[1]), Some(3));
        assert_eq!(watch.slot_of(w.index()), None, "a parameter is no slot");
        assert_eq!(watch.slot_of(v.index()), None);
    }

    #[test]
    fn the_gate_halts_at_the_first_finding_once() {
        let mut s = StepStatus::new(4);
        s.gate(1);
        assert!(!s.is_halted(), "nothing found");
        s.record(3, Some((2, 5)));
        s.record(2, Some((1, 7)));
        s.record(3, Some((1, 4)));
        s.record(1, None);
        assert_eq!(s.found, [None, None, Some((1, 7)), Some((3, 4))]);
        s.gate(9);
        assert_eq!(s.halted, Some((2, 9)));
        s.record(0, Some((1, 0)));
        s.gate(10);
        assert_eq!(s.halted, Some((2, 9)), "the first halt stays");
    }

    #[test]
    fn the_error_names_the_first_finding_its_step_and_the_rest() {
        let (g, ..) = graph();
        let watch = StepWatch::of(&g);
        let mut s = StepStatus::new(watch.len());
        watch.check(&g, &s).unwrap();
        s.record(2, Some((3, 1)));
        s.record(3, Some((1, 0)));
        s.gate(12);
        match watch.check(&g, &s) {
            Err(Error::NonFinite { what, index }) => {
                assert!(
                    what.starts_with("the update of w at step 12, then in the update of v;"),
                    "{what}"
                );
                assert_eq!(index, 1);
            }
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }
}
