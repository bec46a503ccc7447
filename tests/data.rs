//! The data module: IDX reading (raw and gzip) and every malformed-file error, the embedded
//! digits, the stratified split, standardisation, and the batcher's epoch coverage and
//! shuffling. Pure CPU; no device needed.

use eigengrad::data::{
    digits, load_mnist_dir, read_idx_images, read_idx_labels, Batcher, DataSource, Dataset,
    Standardizer, DIGITS_SPLIT_SEED, FASHION_MNIST_DIR, MNIST_CLASSES,
};
use eigengrad::Error;
use flate2::{write::GzEncoder, Compression};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "eigengrad-data-{}-{tag}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Writes `bytes` to `name` in the dir, gzip-compressed if `gz`; returns the path.
    fn write(&self, name: &str, bytes: &[u8], gz: bool) -> PathBuf {
        let path = self.0.join(name);
        let bytes = if gz { gzip(bytes) } else { bytes.to_vec() };
        std::fs::write(&path, bytes).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// An IDX file of unsigned bytes: magic 00 00 08 ndim, big-endian dims, data.
fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn random_bytes(seed: u64, n: usize, below: u16) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..below) as u8).collect()
}

/// The pixels a reader must produce for `bytes`: each byte / 255 (exact in f32 up to the one
/// rounding of the division, which reader and test perform identically).
fn scaled(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| f32::from(b) / 255.0).collect()
}

/// Asserts `r` is `Error::BadFile` for exactly `path` with `needle` in its detail.
fn assert_bad_file<T: std::fmt::Debug>(r: eigengrad::Result<T>, path: &Path, needle: &str) {
    match r {
        Err(Error::BadFile { path: p, detail }) => {
            assert_eq!(p, path.display().to_string(), "wrong file named: {detail}");
            assert!(
                detail.contains(needle),
                "detail {detail:?} lacks {needle:?}"
            );
        }
        other => panic!(
            "expected BadFile for {} ({needle}), got {other:?}",
            path.display()
        ),
    }
}

/// A synthetic MNIST-format directory: `n_train`/`n_test` images of `rows`×`cols`.
struct MnistFiles {
    dir: TempDir,
    train_images: Vec<u8>,
    train_labels: Vec<u8>,
    test_images: Vec<u8>,
    test_labels: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl MnistFiles {
    fn new(tag: &str) -> MnistFiles {
        let (rows, cols, n_train, n_test) = (5, 3, 23, 11);
        let mut train_images = random_bytes(1, n_train * rows * cols, 256);
        train_images[0] = 0;
        train_images[1] = 255;
        MnistFiles {
            dir: TempDir::new(tag),
            train_images,
            train_labels: random_bytes(2, n_train, 10),
            test_images: random_bytes(3, n_test * rows * cols, 256),
            test_labels: random_bytes(4, n_test, 10),
            rows,
            cols,
        }
    }

    fn image_dims(&self, data: &[u8]) -> Vec<u32> {
        let per = self.rows * self.cols;
        vec![
            (data.len() / per) as u32,
            self.rows as u32,
            self.cols as u32,
        ]
    }

    /// Writes all four files: train raw with the usual names, test gzip with the dotted
    /// spelling. Returns (train images, train labels, test images, test labels) paths.
    fn write_all(&self) -> [PathBuf; 4] {
        let d = &self.dir;
        [
            d.write(
                "train-images-idx3-ubyte",
                &idx_bytes(&self.image_dims(&self.train_images), &self.train_images),
                false,
            ),
            d.write(
                "train-labels-idx1-ubyte",
                &idx_bytes(&[self.train_labels.len() as u32], &self.train_labels),
                false,
            ),
            d.write(
                "t10k-images.idx3-ubyte.gz",
                &idx_bytes(&self.image_dims(&self.test_images), &self.test_images),
                true,
            ),
            d.write(
                "t10k-labels-idx1-ubyte.gz",
                &idx_bytes(&[self.test_labels.len() as u32], &self.test_labels),
                true,
            ),
        ]
    }
}

#[test]
fn idx_round_trip_raw_and_gzip_is_exact() {
    let dir = TempDir::new("roundtrip");
    let (n, rows, cols) = (7, 5, 3);
    let mut pixels = random_bytes(10, n * rows * cols, 256);
    pixels[0] = 0;
    pixels[1] = 255;
    let labels = random_bytes(11, n, 10);
    let image_file = idx_bytes(&[n as u32, rows as u32, cols as u32], &pixels);
    let label_file = idx_bytes(&[n as u32], &labels);
    for gz in [false, true] {
        // The gzip copy deliberately has no .gz suffix: detection is by magic bytes.
        let img = dir.write(&format!("images-{gz}"), &image_file, gz);
        let lab = dir.write(&format!("labels-{gz}"), &label_file, gz);
        let (got, gn, gr, gc) = read_idx_images(&img).unwrap();
        assert_eq!((gn, gr, gc), (n, rows, cols));
        assert_eq!(got, scaled(&pixels));
        assert_eq!((got[0], got[1]), (0.0, 1.0));
        assert_eq!(read_idx_labels(&lab).unwrap(), labels);
    }
}

#[test]
fn load_mnist_dir_round_trip() {
    let files = MnistFiles::new("loaddir");
    files.write_all();
    let (train, test) = load_mnist_dir(&files.dir.0).unwrap();
    for (ds, images, labels) in [
        (&train, &files.train_images, &files.train_labels),
        (&test, &files.test_images, &files.test_labels),
    ] {
        assert_eq!(ds.n, labels.len());
        assert_eq!(ds.features, files.rows * files.cols);
        assert_eq!(ds.shape, (files.rows, files.cols));
        assert_eq!(ds.classes, MNIST_CLASSES);
        assert_eq!(&ds.images, &scaled(images));
        assert_eq!(&ds.labels, labels);
        ds.validate().unwrap();
    }
    assert!(train.name.ends_with("train") && test.name.ends_with("test"));

    // The same directory through DataSource, whose description names the folder.
    let (dtrain, dtest, description) = DataSource::MnistDir(files.dir.0.clone()).load().unwrap();
    assert_eq!((dtrain, dtest), (train, test));
    assert!(description.contains("23 train / 11 test"), "{description}");
    assert!(
        description.contains(&files.dir.0.display().to_string()),
        "{description}"
    );
}

#[test]
fn malformed_idx_files_name_the_file_and_the_fault() {
    let dir = TempDir::new("malformed");
    let good = idx_bytes(&[2, 3, 4], &[7; 24]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "too short"),
        ("short-magic", vec![0, 0], "too short"),
        (
            "not-idx",
            {
                let mut b = good.clone();
                b[0] = 0x12;
                b
            },
            "not an IDX file",
        ),
        (
            "float-type",
            {
                let mut b = good.clone();
                b[2] = 0x0d;
                b
            },
            "element type",
        ),
        (
            "labels-as-images",
            idx_bytes(&[24], &[1; 24]),
            "1 dimensions, expected 3",
        ),
        ("cut-header", good[..9].to_vec(), "truncated header"),
        ("zero-dim", idx_bytes(&[2, 0, 4], &[]), "is 0"),
        (
            "short-data",
            good[..good.len() - 1].to_vec(),
            "truncated: dimensions [2, 3, 4] need 24",
        ),
        (
            "trailing",
            [good.as_slice(), &[9]].concat(),
            "1 bytes of trailing data",
        ),
        (
            "overflow",
            idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[]),
            "overflow",
        ),
    ];
    for (name, bytes, needle) in cases {
        for gz in [false, true] {
            let path = dir.write(&format!("{name}-{gz}"), &bytes, gz);
            assert_bad_file(read_idx_images(&path), &path, needle);
        }
    }

    // A truncated gzip stream.
    let gz = gzip(&good);
    let path = dir.write("cut.gz", &gz[..gz.len() / 2], false);
    assert_bad_file(read_idx_images(&path), &path, "gzip");

    // Labels: an image file is not a label file; short label data.
    let path = dir.write("images-as-labels", &good, false);
    assert_bad_file(read_idx_labels(&path), &path, "3 dimensions, expected 1");
    let path = dir.write("short-labels", &idx_bytes(&[5], &[1, 2, 3]), true);
    assert_bad_file(read_idx_labels(&path), &path, "need 5 data bytes, found 3");

    // A missing file is an I/O error naming it.
    let missing = dir.0.join("nope");
    match read_idx_images(&missing) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, missing.display().to_string());
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn malformed_mnist_dirs_name_the_file_and_the_fault() {
    // Label count differs from image count.
    let mut files = MnistFiles::new("count");
    files.train_labels.pop();
    let [_, train_labels, ..] = files.write_all();
    assert_bad_file(
        load_mnist_dir(&files.dir.0),
        &train_labels,
        "22 labels, but",
    );

    // A label of 10 with 10 classes.
    let mut files = MnistFiles::new("label");
    files.test_labels[4] = 10;
    let [.., test_labels] = files.write_all();
    assert_bad_file(
        load_mnist_dir(&files.dir.0),
        &test_labels,
        "label 10 at index 4 is not below 10 classes",
    );

    // Test images of another size than the training images.
    let files = MnistFiles::new("shape");
    let [.., test_images, _] = files.write_all();
    let n_test = files.test_labels.len();
    files.dir.write(
        "t10k-images.idx3-ubyte.gz",
        &idx_bytes(&[n_test as u32, 3, 5], &files.test_images),
        true,
    );
    assert_bad_file(
        load_mnist_dir(&files.dir.0),
        &test_images,
        "images are 3×5, the training images are 5×3",
    );

    // A malformed file inside the directory surfaces with its own path.
    let files = MnistFiles::new("inner");
    let [train_images, ..] = files.write_all();
    std::fs::write(&train_images, [0u8, 0, 8, 3, 0, 0]).unwrap();
    assert_bad_file(
        load_mnist_dir(&files.dir.0),
        &train_images,
        "truncated header",
    );

    // Missing files: I/O errors naming the file that is missing.
    let files = MnistFiles::new("missing");
    let [_, _, _, test_labels] = files.write_all();
    std::fs::remove_file(&test_labels).unwrap();
    match load_mnist_dir(&files.dir.0) {
        Err(Error::Io { path, source }) => {
            assert!(path.ends_with("t10k-labels-idx1-ubyte"), "{path}");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    let nowhere = files.dir.0.join("no-such-dir");
    match DataSource::MnistDir(nowhere).load() {
        Err(Error::Io { path, .. }) => assert!(path.contains("no-such-dir"), "{path}"),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn digits_are_the_1797_sklearn_digits() {
    let d = digits().unwrap();
    d.validate().unwrap();
    assert_eq!(
        (d.n, d.features, d.shape, d.classes),
        (1797, 64, (8, 8), 10)
    );
    assert_eq!(d.images.len(), 1797 * 64);
    assert!(d.images.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(d.images.iter().copied().fold(0.0, f32::max), 1.0);
    // scikit-learn's digits.images[0] is a 0 whose top row is 0 0 5 13 9 1 0 0 (of 16): this
    // pins the row-major orientation and the scaling.
    assert_eq!(d.labels[0], 0);
    let top_row: Vec<f32> = [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]
        .iter()
        .map(|v: &f32| v / 16.0)
        .collect();
    assert_eq!(&d.images[..8], top_row.as_slice());
    // scikit-learn's class counts (load_digits: 178 182 177 183 181 182 181 179 174 180).
    assert_eq!(
        d.class_counts(),
        vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    );
}

/// 103 samples, one feature holding the sample's index (so every row is identifiable), three
/// unevenly sized classes.
fn synthetic(n: usize) -> Dataset {
    let images = (0..n).map(|i| i as f32).collect();
    let labels = (0..n).map(|i| [0, 0, 1, 2, 0, 1][i % 6]).collect();
    Dataset::new("synthetic", images, labels, (1, 1), 3).unwrap()
}

#[test]
fn split_is_stratified_disjoint_and_deterministic() {
    let full = digits().unwrap();
    let counts = full.class_counts();
    let (train, test) = full.clone().split(0.2, 1).unwrap();
    assert_eq!(test.n, (1797.0f64 * 0.2).round() as usize);
    assert_eq!(train.n + test.n, 1797);
    train.validate().unwrap();
    test.validate().unwrap();
    let (train_counts, test_counts) = (train.class_counts(), test.class_counts());
    for (c, &count) in counts.iter().enumerate() {
        // Largest-remainder apportionment: each class's share is its exact share rounded
        // down or up.
        let exact = count as f64 * 0.2;
        let t = test_counts[c] as f64;
        assert!(
            t == exact.floor() || t == exact.ceil(),
            "class {c}: {t} vs {exact}"
        );
        assert_eq!(train_counts[c] + test_counts[c], count);
    }
    // Deterministic in the seed, different across seeds.
    let (train2, test2) = full.clone().split(0.2, 1).unwrap();
    assert_eq!((&train, &test), (&train2, &test2));
    let (_, test3) = full.split(0.2, 2).unwrap();
    assert_ne!(test.images, test3.images);

    // Every sample lands in exactly one half, in the original order.
    let syn = synthetic(103);
    let (train, test) = syn.clone().split(0.3, 9).unwrap();
    assert_eq!(test.n, 31);
    let mut all: Vec<f32> = train.images.iter().chain(&test.images).copied().collect();
    assert!(train.images.windows(2).all(|w| w[0] < w[1]));
    assert!(test.images.windows(2).all(|w| w[0] < w[1]));
    all.sort_by(f32::total_cmp);
    assert_eq!(all, syn.images);
    for (ds, name) in [(&train, "train"), (&test, "test")] {
        for (row, &label) in ds.images.iter().zip(&ds.labels) {
            assert_eq!(syn.labels[*row as usize], label, "{name} row {row}");
        }
    }

    for bad in [0.0, 1.0, -0.1, 1.5, f32::NAN, 0.001, 0.999] {
        match syn.clone().split(bad, 0) {
            Err(Error::InvalidArgument(msg)) => assert!(msg.contains("synthetic"), "{msg}"),
            other => panic!("split({bad}) should fail, got {other:?}"),
        }
    }
}

/// The digits are the digits whether or not Fashion-MNIST is installed: no data set is
/// chosen behind the caller's back.
#[test]
fn digits_source_is_the_fixed_digits_split() {
    let (train, test, description) = DataSource::Digits.load().unwrap();
    assert_eq!((train.n, test.n), (1438, 359), "{description}");
    assert_eq!((train.shape, train.classes), ((8, 8), 10));
    assert!(description.contains("digits"), "{description}");
    assert!(
        description.contains("1438 train / 359 test"),
        "{description}"
    );
    let (split_train, split_test) = digits().unwrap().split(0.2, DIGITS_SPLIT_SEED).unwrap();
    assert_eq!((train, test), (split_train, split_test));
}

#[test]
fn gather_one_hot_subset_and_their_errors() {
    let d = synthetic(20);
    let idx = [5, 0, 19, 5];
    assert_eq!(d.gather(&idx).unwrap(), vec![5.0, 0.0, 19.0, 5.0]);
    let oh = d.one_hot(&idx).unwrap();
    assert_eq!(oh.len(), 4 * 3);
    for (row, &i) in oh.chunks(3).zip(&idx) {
        let expected: Vec<f32> = (0..3)
            .map(|c| if c == d.labels[i] as usize { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(row, expected.as_slice());
    }
    let sub = d.subset(&idx).unwrap();
    assert_eq!(sub.n, 4);
    assert_eq!(
        sub.labels,
        idx.iter().map(|&i| d.labels[i]).collect::<Vec<_>>()
    );

    for r in [
        d.gather(&[20]),
        d.one_hot(&[0, 21]),
        d.subset(&[99]).map(|s| s.images),
    ] {
        match r {
            Err(Error::InvalidArgument(msg)) => assert!(msg.contains("out of range"), "{msg}"),
            other => panic!("expected out-of-range error, got {other:?}"),
        }
    }
    // A hand-assembled inconsistent dataset errors instead of panicking.
    let mut broken = d.clone();
    broken.images.truncate(10);
    assert!(broken.gather(&[15]).is_err());
    broken.labels[3] = 7;
    assert!(broken.one_hot(&[3]).is_err());
    assert!(broken.validate().is_err());
}

#[test]
fn dataset_new_rejects_inconsistent_fields() {
    let shape = |r: eigengrad::Result<Dataset>| match r {
        Err(Error::Shape { .. }) => {}
        other => panic!("expected Shape, got {other:?}"),
    };
    shape(Dataset::new("x", vec![0.0; 5], vec![0, 1], (1, 2), 2));
    shape(Dataset::new("x", vec![0.0; 4], vec![0, 1, 1], (1, 2), 2));
    assert!(matches!(
        Dataset::new("x", vec![], vec![], (1, 2), 2),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        Dataset::new("x", vec![0.0; 4], vec![0, 2], (1, 2), 2),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Dataset::new("x", vec![0.0; 4], vec![0, 1], (1, 2), 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Dataset::new("x", vec![0.0, f32::NAN, 0.0, 0.0], vec![0, 1], (1, 2), 2),
        Err(Error::NonFinite { index: 1, .. })
    ));
}

#[test]
fn batcher_covers_each_sample_once_and_reshuffles() {
    let d = synthetic(103);
    let mut b = Batcher::new(&d, 10, 5).unwrap().with_drop_last(false);
    assert_eq!(b.batches_per_epoch(), 11);
    let mut orders = Vec::new();
    for _ in 0..3 {
        let epoch = b.epoch();
        assert_eq!(epoch.len(), 11);
        let batches: Vec<_> = epoch.collect();
        assert_eq!(batches.len(), 11);
        assert!(batches[..10].iter().all(|x| x.indices.len() == 10));
        assert_eq!(batches[10].indices.len(), 3);
        let mut order = Vec::new();
        for batch in &batches {
            // Every field agrees with the dataset's own accessors.
            assert_eq!(batch.images, d.gather(&batch.indices).unwrap());
            assert_eq!(batch.targets, d.one_hot(&batch.indices).unwrap());
            let labels: Vec<u8> = batch.indices.iter().map(|&i| d.labels[i]).collect();
            assert_eq!(batch.labels, labels);
            order.extend_from_slice(&batch.indices);
        }
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..103).collect::<Vec<_>>(),
            "each sample exactly once"
        );
        orders.push(order);
    }
    assert_ne!(orders[0], orders[1]);
    assert_ne!(orders[1], orders[2]);
    assert_ne!(orders[0], (0..103).collect::<Vec<_>>());

    // The same seed replays the same sequence of epochs.
    let mut again = Batcher::new(&d, 10, 5).unwrap().with_drop_last(false);
    for order in &orders {
        let replay: Vec<usize> = again.epoch().flat_map(|x| x.indices).collect();
        assert_eq!(&replay, order);
    }

    // drop_last (the default): full batches only, no sample twice in an epoch.
    let mut b = Batcher::new(&d, 10, 6).unwrap();
    assert_eq!(b.batch_size(), 10);
    assert_eq!(b.batches_per_epoch(), 10);
    for _ in 0..2 {
        let mut seen: Vec<usize> = Vec::new();
        for batch in b.epoch() {
            assert_eq!(batch.images.len(), 10);
            assert_eq!(batch.targets.len(), 30);
            seen.extend(batch.indices);
        }
        assert_eq!(seen.len(), 100);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 100);
    }

    // Without shuffling: the samples in order, every epoch.
    let mut b = Batcher::new(&d, 25, 0).unwrap().with_shuffle(false);
    for _ in 0..2 {
        let order: Vec<usize> = b.epoch().flat_map(|x| x.indices).collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
    }

    for bad in [0, 104] {
        assert!(matches!(
            Batcher::new(&d, bad, 0),
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[test]
fn standardizer_fits_train_and_applies_to_test() {
    let (mut train, mut test) = digits().unwrap().split(0.2, 3).unwrap();
    let min_std = 0.1;
    let st = Standardizer::fit(&train, min_std).unwrap();
    assert_eq!((st.mean.len(), st.std.len()), (64, 64));
    st.apply(&mut train).unwrap();
    // Recompute the statistics of the standardised training set in f64. Inputs are in
    // [0, 1] and the stored mean/std are f32 roundings (relative error 6e-8), so the
    // standardised features have mean 0 to about 1e-6 and, where std was not floored,
    // standard deviation 1 to about 1e-6; 1e-4 leaves ample room.
    let n = train.n as f64;
    for j in 0..64 {
        let col: Vec<f64> = train
            .images
            .iter()
            .skip(j)
            .step_by(64)
            .map(|&v| v as f64)
            .collect();
        let mean = col.iter().sum::<f64>() / n;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 1e-4, "feature {j}: mean {mean}");
        if st.std[j] > min_std {
            assert!(
                (var.sqrt() - 1.0).abs() < 1e-4,
                "feature {j}: std {}",
                var.sqrt()
            );
        } else {
            // Floored: the spread shrinks by std / min_std instead of blowing up.
            assert!(var.sqrt() <= 1.0 + 1e-4, "feature {j}: std {}", var.sqrt());
        }
    }
    // The digits have always-blank pixels (e.g. the top-left corner), so the floor matters.
    assert!(st.std.contains(&min_std));
    // The test set goes through the training statistics.
    let before = test.images.clone();
    st.apply(&mut test).unwrap();
    for (k, (&after, &x)) in test.images.iter().zip(&before).enumerate() {
        let j = k % 64;
        assert_eq!(after, (x - st.mean[j]) / st.std[j]);
    }

    let mut other = synthetic(10);
    assert!(matches!(st.apply(&mut other), Err(Error::Shape { .. })));
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            Standardizer::fit(&other, bad),
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[test]
fn fashion_mnist_from_the_system_package() {
    let loaded = DataSource::FashionMnist.load();
    if !Path::new(FASHION_MNIST_DIR).is_dir() {
        // Not installed (an optional system package): asked for, it is a clear error.
        match loaded {
            Err(Error::Io { path, source }) => {
                assert_eq!(path, FASHION_MNIST_DIR);
                assert!(
                    source.to_string().contains("dataset-fashion-mnist"),
                    "{source}"
                );
            }
            other => panic!("expected Error::Io naming the package, got {other:?}"),
        }
        return;
    }
    let (train, test, description) = loaded.unwrap();
    assert!(description.contains("Fashion-MNIST"), "{description}");
    assert_eq!((train.n, test.n), (60000, 10000));
    for ds in [&train, &test] {
        assert_eq!((ds.shape, ds.features, ds.classes), ((28, 28), 784, 10));
        assert_eq!(ds.images.len(), ds.n * 784);
        assert!(ds.images.iter().all(|v| (0.0..=1.0).contains(v)));
        // Fashion-MNIST is balanced: 6,000 / 1,000 images per class.
        assert_eq!(ds.class_counts(), vec![ds.n / 10; 10]);
    }
    assert_eq!(train.name, "fashion-mnist train");
}
