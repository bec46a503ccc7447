//! Learning-rate schedules: the rate of every step as a function of the step number and a
//! base rate. A plan evaluates its schedule on the host when a step starts and writes the
//! rate into the step's hyperparameter words on the device, so a schedule never recompiles
//! anything and costs nothing on the device.
//!
//! ```
//! use eigengrad::graph::Schedule;
//! let warm = Schedule::WarmupCosine { warmup: 10, total: 110, floor: 0.0 };
//! assert_eq!(warm.rate(1e-3, 5), 5e-4); // half way through the warmup
//! assert_eq!(warm.rate(1e-3, 10), 1e-3); // the base rate at the end of the warmup
//! assert!(warm.rate(1e-3, 60) < 1e-3); // then a cosine down to floor × base
//! let step = Schedule::Step { every: 100, gamma: 0.5 };
//! assert_eq!(step.rate(0.1, 250), 0.025); // halved after steps 100 and 200
//! # Ok::<(), eigengrad::Error>(())
//! ```

use crate::error::{Error, Result};

/// How the learning rate changes from step to step. Steps are counted from 1; the base rate
/// is the optimizer's (or the one given to
/// [`Plan::set_learning_rate`](super::Plan::set_learning_rate)).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Schedule {
    /// The base rate at every step.
    #[default]
    Constant,
    /// The base rate times `gamma` for every `every` steps completed: base·gamma^⌊(t − 1)/every⌋.
    Step {
        /// Steps between two decays (≥ 1).
        every: u64,
        /// Factor of each decay (finite, ≥ 0).
        gamma: f32,
    },
    /// A linear warmup from base/`warmup` at step 1 to the base rate at step `warmup`, then a
    /// half cosine from the base rate down to `floor`·base at step `total`, and `floor`·base
    /// after it.
    WarmupCosine {
        /// Steps of the warmup (0: none).
        warmup: u64,
        /// The step at which the decay ends (≥ `warmup`, ≥ 1).
        total: u64,
        /// The final rate as a fraction of the base rate, in [0, 1].
        floor: f32,
    },
}

impl Schedule {
    /// Checks the schedule's parameters (see each variant).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(format!("{self:?}: {what}")));
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step { every, gamma } => {
                if every == 0 {
                    bad("`every` must be at least 1".into())
                } else if !(gamma.is_finite() && gamma >= 0.0) {
                    bad(format!("`gamma` must be finite and ≥ 0, got {gamma}"))
                } else {
                    Ok(())
                }
            }
            Schedule::WarmupCosine {
                warmup,
                total,
                floor,
            } => {
                if total == 0 || warmup > total {
                    bad("needs 1 ≤ total and warmup ≤ total".into())
                } else if !(0.0..=1.0).contains(&floor) {
                    bad(format!("`floor` must lie in [0, 1], got {floor}"))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The rate of step `step` (counted from 1; step 0 is read as 1) for base rate `base`.
    pub fn rate(&self, base: f32, step: u64) -> f32 {
        let t = step.max(1);
        let base64 = base as f64;
        let rate = match *self {
            Schedule::Constant => return base,
            Schedule::Step { every, gamma } => {
                let decays = (t - 1) / every.max(1);
                base64 * (gamma as f64).powf(decays as f64)
            }
            Schedule::WarmupCosine {
                warmup,
                total,
                floor,
            } => {
                if t <= warmup {
                    base64 * t as f64 / warmup as f64
                } else {
                    let span = total.saturating_sub(warmup).max(1) as f64;
                    let progress = ((t - warmup) as f64 / span).min(1.0);
                    let low = base64 * floor as f64;
                    low + (base64 - low) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
        };
        rate as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_the_base_rate() {
        for t in [0, 1, 7, u64::MAX] {
            assert_eq!(Schedule::Constant.rate(0.3, t), 0.3);
        }
    }

    #[test]
    fn step_decays_by_gamma_every_period() {
        let s = Schedule::Step {
            every: 3,
            gamma: 0.1,
        };
        let rates: Vec<f32> = (1..=7).map(|t| s.rate(1.0, t)).collect();
        let expected = [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01];
        for (t, (r, e)) in rates.iter().zip(expected).enumerate() {
            assert!((r - e).abs() <= 1e-7, "step {}: {r} vs {e}", t + 1);
        }
    }

    /// The warmup is linear, the decay a half cosine through its midpoint at half the span,
    /// and the rate stays at the floor after `total`.
    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let s = Schedule::WarmupCosine {
            warmup: 4,
            total: 24,
            floor: 0.1,
        };
        let base = 2.0f32;
        for t in 1..=4 {
            assert_eq!(s.rate(base, t), base * t as f32 / 4.0);
        }
        // Midpoint of the decay: (base + floor·base)/2.
        assert!((s.rate(base, 14) - 1.1).abs() < 1e-6);
        let decay: Vec<f32> = (4..=24).map(|t| s.rate(base, t)).collect();
        assert!(decay.windows(2).all(|w| w[1] < w[0]), "{decay:?}");
        for t in [24, 25, 1000] {
            assert!((s.rate(base, t) - 0.2).abs() < 1e-7);
        }
        // No warmup and a decay over one step: the floor from step 1 on.
        let no_warmup = Schedule::WarmupCosine {
            warmup: 0,
            total: 1,
            floor: 0.5,
        };
        assert_eq!(no_warmup.rate(1.0, 1), 0.5);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        let bad = [
            Schedule::Step {
                every: 0,
                gamma: 0.5,
            },
            Schedule::Step {
                every: 1,
                gamma: f32::NAN,
            },
            Schedule::Step {
                every: 1,
                gamma: -1.0,
            },
            Schedule::WarmupCosine {
                warmup: 5,
                total: 4,
                floor: 0.0,
            },
            Schedule::WarmupCosine {
                warmup: 0,
                total: 0,
                floor: 0.0,
            },
            Schedule::WarmupCosine {
                warmup: 0,
                total: 10,
                floor: 1.5,
            },
        ];
        for s in bad {
            assert!(
                matches!(s.validate(), Err(Error::InvalidArgument(_))),
                "{s:?}"
            );
        }
        Schedule::Constant.validate().unwrap();
        Schedule::WarmupCosine {
            warmup: 10,
            total: 10,
            floor: 0.0,
        }
        .validate()
        .unwrap();
    }
}
