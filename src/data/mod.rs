//! Datasets for the demos and the training tests: an in-memory [`Dataset`] of images scaled to
//! `[0, 1]` with integer labels, readers for MNIST-format IDX files (raw or gzip), the
//! scikit-learn 8×8 digits embedded in `smartcore` (cargo feature `digits`), a deterministic
//! stratified split, per-feature standardisation, and a seeded, shuffling [`Batcher`] with a
//! fixed batch shape. [`DataSource`] names the data set to load; nothing is picked behind the
//! caller's back.
//!
//! This module is the cargo feature `data`, on by default.
//!
//! ```
//! # #[cfg(feature = "digits")] {
//! use eigengrad::data::{Batcher, DataSource};
//! let (train, test, description) = DataSource::Digits.load()?;
//! assert_eq!(train.n + test.n, 1797);
//! println!("{description}");
//! let mut batcher = Batcher::new(&train, 100, 1)?;
//! for batch in batcher.epoch() {
//!     assert_eq!(batch.images.len(), 100 * 64);
//!     assert_eq!(batch.targets.len(), 100 * 10);
//! }
//! # }
//! # Ok::<(), eigengrad::Error>(())
//! ```

mod batch;
mod idx;

pub use batch::{Batch, Batcher, Epoch};
pub use idx::{load_mnist_dir, read_idx_images, read_idx_labels, MNIST_CLASSES};

use crate::error::{Error, Result};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST (IDX, gzip).
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Seed of the fixed 80/20 split [`DataSource::Digits`] makes of the digits, so every run of a
/// demo or test sees the same train and test sets.
#[cfg(feature = "digits")]
pub const DIGITS_SPLIT_SEED: u64 = 0x5eed;

/// A labelled image classification dataset held in memory.
///
/// The fields are public so callers can read them freely; [`Dataset::new`] builds a consistent
/// one and [`Dataset::validate`] checks one assembled by hand. Methods that index check what
/// they touch and return an [`Error`] rather than panic on an inconsistent dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Pixels, `[n, features]` row-major, scaled to [0, 1] by the loaders (a [`Standardizer`]
    /// changes that).
    pub images: Vec<f32>,
    /// One class label per image, each below `classes`.
    pub labels: Vec<u8>,
    /// Number of images.
    pub n: usize,
    /// Values per image: `shape.0 * shape.1`.
    pub features: usize,
    /// Number of classes (width of the one-hot targets).
    pub classes: usize,
    /// Image height and width.
    pub shape: (usize, usize),
    /// Human-readable name, e.g. `"fashion-mnist train"`, used in messages.
    pub name: String,
}

impl Dataset {
    /// A dataset from row-major `images` (`labels.len()` rows of `shape.0 * shape.1` values),
    /// checked with [`Dataset::validate`].
    pub fn new(
        name: impl Into<String>,
        images: Vec<f32>,
        labels: Vec<u8>,
        shape: (usize, usize),
        classes: usize,
    ) -> Result<Dataset> {
        let dataset = Dataset {
            n: labels.len(),
            features: shape.0.saturating_mul(shape.1),
            images,
            labels,
            classes,
            shape,
            name: name.into(),
        };
        dataset.validate()?;
        Ok(dataset)
    }

    /// Checks that the public fields agree: at least one image of at least one value,
    /// `features == shape.0 * shape.1`, `images.len() == n * features`, `labels.len() == n`,
    /// `1 <= classes <= 256`, every label below `classes`, every pixel finite.
    pub fn validate(&self) -> Result<()> {
        let op = format!("dataset '{}'", self.name);
        if self.n == 0 || self.features == 0 {
            return Err(Error::Empty {
                op,
                shape: vec![self.n, self.features],
            });
        }
        if self.shape.0.checked_mul(self.shape.1) != Some(self.features) {
            return Err(Error::shape(
                &op,
                format!(
                    "features = {} but the image shape is {}×{}",
                    self.features, self.shape.0, self.shape.1
                ),
            ));
        }
        if self.n.checked_mul(self.features) != Some(self.images.len()) {
            return Err(Error::shape(
                &op,
                format!(
                    "{} image values, expected n × features = {} × {}",
                    self.images.len(),
                    self.n,
                    self.features
                ),
            ));
        }
        if self.labels.len() != self.n {
            return Err(Error::shape(
                &op,
                format!("{} labels for {} images", self.labels.len(), self.n),
            ));
        }
        if self.classes == 0 || self.classes > 256 {
            return Err(Error::InvalidArgument(format!(
                "{op}: {} classes, expected 1..=256 (labels are u8)",
                self.classes
            )));
        }
        if let Some(i) = self.labels.iter().position(|&l| l as usize >= self.classes) {
            return Err(Error::InvalidArgument(format!(
                "{op}: label {} at index {i} is not below {} classes",
                self.labels[i], self.classes
            )));
        }
        if let Some(i) = self.images.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: format!("{op} images"),
                index: i as u64,
            });
        }
        Ok(())
    }

    /// Number of images of each class, indexed by label (`classes` entries). Labels at or
    /// above `classes` (an inconsistent dataset) are not counted.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// The rows `idx` of `images`, concatenated: `[idx.len(), features]` row-major, the layout
    /// a batch input takes.
    pub fn gather(&self, idx: &[usize]) -> Result<Vec<f32>> {
        let f = self.features;
        let mut out = Vec::with_capacity(idx.len().saturating_mul(f));
        for &i in idx {
            let row = (i < self.n)
                .then(|| i.checked_mul(f))
                .flatten()
                .and_then(|start| self.images.get(start..start.checked_add(f)?))
                .ok_or_else(|| self.out_of_range("gather", i))?;
            out.extend_from_slice(row);
        }
        Ok(out)
    }

    /// One-hot targets of the samples `idx`: `[idx.len(), classes]` row-major, 1 in the column
    /// of each sample's label and 0 elsewhere.
    pub fn one_hot(&self, idx: &[usize]) -> Result<Vec<f32>> {
        let c = self.classes;
        let mut out = vec![0.0; idx.len().saturating_mul(c)];
        for (row, &i) in idx.iter().enumerate() {
            let label = *self
                .labels
                .get(i)
                .filter(|_| i < self.n)
                .ok_or_else(|| self.out_of_range("one_hot", i))?;
            if label as usize >= c {
                return Err(Error::InvalidArgument(format!(
                    "one_hot: label {label} of sample {i} of dataset '{}' is not below {c} classes",
                    self.name
                )));
            }
            out[row * c + label as usize] = 1.0;
        }
        Ok(out)
    }

    /// A new dataset of the samples `idx`, in that order (repeats allowed), with the same
    /// shape, classes and name: e.g. a smaller training subset.
    pub fn subset(&self, idx: &[usize]) -> Result<Dataset> {
        let images = self.gather(idx)?;
        let labels = idx
            .iter()
            .map(|&i| {
                self.labels
                    .get(i)
                    .copied()
                    .ok_or_else(|| self.out_of_range("subset", i))
            })
            .collect::<Result<Vec<u8>>>()?;
        Dataset::new(self.name.clone(), images, labels, self.shape, self.classes)
    }

    /// Splits into (train, test), stratified by class and deterministic in `seed`.
    ///
    /// The test set gets `round(n * test_fraction)` samples, shared among the classes in
    /// proportion to their counts (floor of each share, then the leftover samples to the
    /// classes with the largest remainders, ties to the lower label); which samples of a class
    /// go to test is a seeded shuffle. Both halves keep the original sample order. Errors if
    /// `test_fraction` is not in (0, 1) or either half would be empty.
    pub fn split(self, test_fraction: f32, seed: u64) -> Result<(Dataset, Dataset)> {
        self.validate()?;
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "split of dataset '{}': test_fraction {test_fraction} is not in (0, 1)",
                self.name
            )));
        }
        let f = f64::from(test_fraction);
        let total = (self.n as f64 * f).round() as usize;
        if total == 0 || total == self.n {
            return Err(Error::InvalidArgument(format!(
                "split of dataset '{}': test_fraction {test_fraction} of {} samples leaves an \
                 empty {} set",
                self.name,
                self.n,
                if total == 0 { "test" } else { "training" }
            )));
        }

        // Largest-remainder apportionment of `total` among the classes.
        let counts = self.class_counts();
        let exact: Vec<f64> = counts.iter().map(|&c| c as f64 * f).collect();
        let mut take: Vec<usize> = exact.iter().map(|&e| e.floor() as usize).collect();
        let mut by_remainder: Vec<usize> = (0..counts.len()).collect();
        by_remainder.sort_by(|&a, &b| {
            let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
            rb.total_cmp(&ra).then(a.cmp(&b))
        });
        let mut left = total.saturating_sub(take.iter().sum());
        for &c in &by_remainder {
            if left == 0 {
                break;
            }
            if take[c] < counts[c] {
                take[c] += 1;
                left -= 1;
            }
        }

        let mut by_class: Vec<Vec<usize>> = counts.iter().map(|&c| Vec::with_capacity(c)).collect();
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l as usize].push(i);
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut is_test = vec![false; self.n];
        for (members, &t) in by_class.iter_mut().zip(&take) {
            members.shuffle(&mut rng);
            for &i in &members[..t] {
                is_test[i] = true;
            }
        }
        let (test_idx, train_idx): (Vec<usize>, Vec<usize>) =
            (0..self.n).partition(|&i| is_test[i]);

        let mut train = self.subset(&train_idx)?;
        let mut test = self.subset(&test_idx)?;
        train.name = format!("{} (train split)", self.name);
        test.name = format!("{} (test split)", self.name);
        Ok((train, test))
    }

    fn out_of_range(&self, op: &str, i: usize) -> Error {
        Error::InvalidArgument(format!(
            "{op}: index {i} is out of range for dataset '{}' of {} samples",
            self.name, self.n
        ))
    }
}

/// Per-feature standardisation: fit the mean and standard deviation on the training set, then
/// apply `(x - mean) / std` to the training and test sets alike, so the test set is
/// transformed with statistics it did not contribute to.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    /// Per-feature mean of the fitted dataset.
    pub mean: Vec<f32>,
    /// Per-feature (population) standard deviation of the fitted dataset, raised to at least
    /// the `min_std` given to [`Standardizer::fit`].
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits mean and standard deviation per feature (accumulated in f64).
    ///
    /// `min_std` (> 0) floors each standard deviation: pixels that are almost always 0 (MNIST's
    /// borders) would otherwise be divided by a tiny number and blow up on a test image that
    /// happens to be nonzero there. 0.1 is a reasonable value for [0, 1] images.
    pub fn fit(data: &Dataset, min_std: f32) -> Result<Standardizer> {
        data.validate()?;
        if !(min_std > 0.0 && min_std.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "Standardizer::fit: min_std {min_std} must be finite and > 0"
            )));
        }
        let f = data.features;
        let mut sum = vec![0.0f64; f];
        let mut sum_sq = vec![0.0f64; f];
        for row in data.images.chunks_exact(f) {
            for ((s, q), &v) in sum.iter_mut().zip(&mut sum_sq).zip(row) {
                *s += f64::from(v);
                *q += f64::from(v) * f64::from(v);
            }
        }
        let n = data.n as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sum_sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / n - m * m).max(0.0).sqrt() as f32).max(min_std))
            .collect();
        Ok(Standardizer {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        })
    }

    /// Applies `(x - mean) / std` per feature to `data` in place.
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        data.validate()?;
        if self.mean.len() != data.features || self.std.len() != data.features {
            return Err(Error::shape(
                "Standardizer::apply",
                format!(
                    "fitted on {} features (std: {}), dataset '{}' has {}",
                    self.mean.len(),
                    self.std.len(),
                    data.name,
                    data.features
                ),
            ));
        }
        for row in data.images.chunks_exact_mut(data.features) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
        Ok(())
    }
}

/// scikit-learn's 8×8 handwritten digits (1,797 images, 64 features, 10 classes), embedded in
/// the `smartcore` crate so it needs no download (cargo feature `digits`). Pixel counts
/// 0..=16 are scaled to `[0, 1]`.
#[cfg(feature = "digits")]
pub fn digits() -> Result<Dataset> {
    let raw = smartcore::dataset::digits::load_dataset();
    let bad = |detail: String| Error::BadFile {
        path: "smartcore::dataset::digits (embedded)".to_string(),
        detail,
    };
    if raw.num_features != 64 {
        return Err(bad(format!("{} features, expected 64", raw.num_features)));
    }
    if let Some((i, v)) = raw
        .data
        .iter()
        .enumerate()
        .find(|(_, v)| !(0.0..=16.0).contains(*v))
    {
        return Err(bad(format!("pixel {v} at index {i} is outside 0..=16")));
    }
    let labels = raw
        .target
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if (0.0..10.0).contains(&t) && t.fract() == 0.0 {
                Ok(t as u8)
            } else {
                Err(bad(format!("target {t} at index {i} is not a digit 0..=9")))
            }
        })
        .collect::<Result<Vec<u8>>>()?;
    if labels.len() != raw.num_samples {
        return Err(bad(format!(
            "{} targets for {} samples",
            labels.len(),
            raw.num_samples
        )));
    }
    let images = raw.data.iter().map(|v| v / 16.0).collect();
    Dataset::new("digits 8x8", images, labels, (8, 8), 10)
}

/// A data set to load as (train, test), named by the caller: there is no fallback from one to
/// another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// [`digits`] split 80/20, stratified, with [`DIGITS_SPLIT_SEED`] (cargo feature `digits`).
    #[cfg(feature = "digits")]
    Digits,
    /// Fashion-MNIST from [`FASHION_MNIST_DIR`]; an error naming the Debian package when that
    /// folder does not exist.
    FashionMnist,
    /// The MNIST-format files in a folder ([`load_mnist_dir`]).
    MnistDir(PathBuf),
}

impl DataSource {
    /// Loads the data set as (train, test, one line saying which data this is and its size).
    pub fn load(&self) -> Result<(Dataset, Dataset, String)> {
        let (train, test) = match self {
            #[cfg(feature = "digits")]
            DataSource::Digits => digits()?.split(0.2, DIGITS_SPLIT_SEED)?,
            DataSource::FashionMnist => load_fashion_mnist(Path::new(FASHION_MNIST_DIR))?,
            DataSource::MnistDir(dir) => load_mnist_dir(dir)?,
        };
        let description = format!(
            "{self}: {} train / {} test images of {}×{}, {} classes",
            train.n, test.n, train.shape.0, train.shape.1, train.classes
        );
        Ok((train, test, description))
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "digits")]
            DataSource::Digits => write!(
                f,
                "embedded scikit-learn digits, stratified 80/20 split, seed {DIGITS_SPLIT_SEED:#x}"
            ),
            DataSource::FashionMnist => write!(f, "Fashion-MNIST in {FASHION_MNIST_DIR}"),
            DataSource::MnistDir(dir) => write!(f, "IDX files in {}", dir.display()),
        }
    }
}

/// Fashion-MNIST from `dir`, with an error that says how to install it when `dir` is missing.
fn load_fashion_mnist(dir: &Path) -> Result<(Dataset, Dataset)> {
    if !dir.is_dir() {
        return Err(Error::Io {
            path: dir.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no Fashion-MNIST folder here: install Debian's dataset-fashion-mnist package, \
                 or load MNIST-format files from another folder with DataSource::MnistDir",
            ),
        });
    }
    load_mnist_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fashion_mnist_folder_says_how_to_install_it() {
        let missing = std::env::temp_dir().join("eigengrad-no-such-fashion-mnist-folder");
        match load_fashion_mnist(&missing) {
            Err(Error::Io { path, source }) => {
                assert_eq!(path, missing.display().to_string());
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
                assert!(
                    source.to_string().contains("dataset-fashion-mnist"),
                    "{source}"
                );
            }
            other => panic!("expected Error::Io, got {other:?}"),
        }
    }
}
