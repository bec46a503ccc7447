//! Classification figures from logits and labels, computed on the host in f64: the argmax
//! prediction, the cross-entropy and their means over a set of samples.

use crate::error::{Error, Result};

/// The index of the largest value of `row` (the first of equal ones; NaN never wins; 0 for an
/// empty or all-NaN row).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .fold(None, |best: Option<(usize, f32)>, (i, &v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
        .map_or(0, |(i, _)| i)
}

/// The cross-entropy −log softmax(row)ₗ of `row` at the class l = `label`, in f64, stable
/// for logits of any size.
pub fn cross_entropy(row: &[f32], label: usize) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln() - row[label] as f64
}

/// Mean loss and accuracy of a classifier over a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// How many samples were evaluated.
    pub samples: usize,
    /// Mean softmax cross-entropy.
    pub loss: f64,
    /// Fraction of samples whose argmax prediction is the label.
    pub accuracy: f64,
}

impl Evaluation {
    /// The figures of `logits` (`[labels.len(), classes]`, row-major) against `labels`.
    pub fn of(logits: &[f32], labels: &[u8], classes: usize) -> Result<Evaluation> {
        if labels.is_empty() || classes == 0 || logits.len() != labels.len() * classes {
            return Err(Error::shape(
                "Evaluation::of",
                format!(
                    "{} logits for {} labels of {classes} classes",
                    logits.len(),
                    labels.len()
                ),
            ));
        }
        let (mut loss, mut correct) = (0.0, 0usize);
        for (row, &label) in logits.chunks(classes).zip(labels) {
            let label = label as usize;
            if label >= classes {
                return Err(Error::InvalidArgument(format!(
                    "Evaluation::of: label {label} is not below {classes} classes"
                )));
            }
            loss += cross_entropy(row, label);
            correct += usize::from(argmax(row) == label);
        }
        let n = labels.len();
        Ok(Evaluation {
            samples: n,
            loss: loss / n as f64,
            accuracy: correct as f64 / n as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum_and_ignores_nan() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, -3.0]), 1);
        assert_eq!(argmax(&[f32::NAN]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::INFINITY]), 1);
    }

    /// Against log-softmax written out: log(Σ exp z) − z_label, here with a shift that would
    /// overflow exp in f32.
    #[test]
    fn cross_entropy_is_log_sum_exp_minus_the_label_logit() {
        let row = [1.0f32, 2.0, 3.0];
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((cross_entropy(&row, 0) - (lse - 1.0)).abs() < 1e-12);
        let shifted = [1001.0f32, 1002.0, 1003.0];
        assert!((cross_entropy(&shifted, 2) - (lse - 3.0)).abs() < 1e-9);
    }

    #[test]
    fn evaluation_counts_and_averages() {
        let logits = [2.0, 0.0, 0.0, 2.0, 5.0, 0.0];
        let e = Evaluation::of(&logits, &[0, 1, 1], 2).unwrap();
        assert_eq!(e.samples, 3);
        assert!((e.accuracy - 2.0 / 3.0).abs() < 1e-15);
        let expected = (2.0 * cross_entropy(&[2.0, 0.0], 0) + cross_entropy(&[5.0, 0.0], 1)) / 3.0;
        assert!((e.loss - expected).abs() < 1e-15);
        assert!(Evaluation::of(&logits, &[0, 1], 2).is_err());
        assert!(Evaluation::of(&logits, &[0, 1, 2], 2).is_err());
        assert!(Evaluation::of(&[], &[], 2).is_err());
    }
}
