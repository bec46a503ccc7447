//! Mini-batches of a fixed shape: a training graph is compiled for one batch size, so the
//! [`Batcher`] by default drops the last partial batch of an epoch.

use super::Dataset;
use crate::error::{Error, Result};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

/// One mini-batch, all row-major with one row per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Inputs, `[batch, features]`.
    pub images: Vec<f32>,
    /// One-hot targets, `[batch, classes]`.
    pub targets: Vec<f32>,
    /// Class labels, `[batch]` (for accuracy).
    pub labels: Vec<u8>,
    /// Which samples of the dataset these are, `[batch]`.
    pub indices: Vec<usize>,
}

/// Cuts a dataset into mini-batches, epoch after epoch.
///
/// Each call to [`Batcher::epoch`] draws a new permutation from a generator seeded once in
/// [`Batcher::new`], so epochs are shuffled differently from one another and the whole sequence
/// is the same on every run with the same seed. With `drop_last` (the default) every batch has
/// exactly `batch_size` samples and the `n % batch_size` left over are skipped that epoch (a
/// different few each epoch); without it the last batch is smaller.
#[derive(Debug, Clone)]
pub struct Batcher<'a> {
    data: &'a Dataset,
    batch_size: usize,
    drop_last: bool,
    shuffle: bool,
    rng: StdRng,
    order: Vec<usize>,
}

impl<'a> Batcher<'a> {
    /// A shuffling batcher with `drop_last = true`. Errors if the dataset is inconsistent
    /// ([`Dataset::validate`]), `batch_size` is 0, or it exceeds the number of samples.
    pub fn new(data: &'a Dataset, batch_size: usize, seed: u64) -> Result<Batcher<'a>> {
        data.validate()?;
        if batch_size == 0 || batch_size > data.n {
            return Err(Error::InvalidArgument(format!(
                "Batcher: batch size {batch_size} is not in 1..={} (the samples of dataset '{}')",
                data.n, data.name
            )));
        }
        Ok(Batcher {
            data,
            batch_size,
            drop_last: true,
            shuffle: true,
            rng: StdRng::seed_from_u64(seed),
            order: (0..data.n).collect(),
        })
    }

    /// Sets whether the last partial batch of an epoch is dropped (`true`, the default: fixed
    /// batch shape) or yielded smaller (`false`: every sample once per epoch).
    pub fn with_drop_last(mut self, drop_last: bool) -> Batcher<'a> {
        self.drop_last = drop_last;
        self
    }

    /// Sets whether epochs are shuffled (`true`, the default) or walk the samples in order
    /// (`false`: for evaluation, where order does not matter but reproducible batches help).
    pub fn with_shuffle(mut self, shuffle: bool) -> Batcher<'a> {
        self.shuffle = shuffle;
        self
    }

    /// Samples per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches each epoch yields.
    pub fn batches_per_epoch(&self) -> usize {
        if self.drop_last {
            self.data.n / self.batch_size
        } else {
            self.data.n.div_ceil(self.batch_size)
        }
    }

    /// The batches of the next epoch, in a fresh permutation if shuffling.
    pub fn epoch(&mut self) -> Epoch<'_> {
        if self.shuffle {
            self.order.shuffle(&mut self.rng);
        }
        Epoch {
            data: self.data,
            order: &self.order,
            batch_size: self.batch_size,
            remaining: self.batches_per_epoch(),
        }
    }
}

/// The batches of one epoch of a [`Batcher`].
#[derive(Debug)]
pub struct Epoch<'b> {
    data: &'b Dataset,
    order: &'b [usize],
    batch_size: usize,
    remaining: usize,
}

impl Iterator for Epoch<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let take = self.batch_size.min(self.order.len());
        let (indices, rest) = self.order.split_at(take);
        self.order = rest;
        // The batcher validated the dataset and holds it borrowed, so every index is a row
        // of `images` and every label is below `classes`.
        let (f, c) = (self.data.features, self.data.classes);
        let mut images = Vec::with_capacity(indices.len() * f);
        let mut targets = vec![0.0; indices.len() * c];
        let mut labels = Vec::with_capacity(indices.len());
        for (row, &i) in indices.iter().enumerate() {
            images.extend_from_slice(&self.data.images[i * f..(i + 1) * f]);
            let label = self.data.labels[i];
            targets[row * c + label as usize] = 1.0;
            labels.push(label);
        }
        Some(Batch {
            images,
            targets,
            labels,
            indices: indices.to_vec(),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Epoch<'_> {}
