//! Property tests (proptest) of everything that reads untrusted bytes or shapes: the IDX
//! reader and the checkpoint loader under random truncations and byte flips, and the graph
//! builder under random shapes and operands. Zero panics; every corrupted file is an error
//! or loads exactly what a clean file would. Case counts keep each property to seconds.

mod common;
use common::{checkpoint_model, saved_contents};
use eigengrad::data::{read_idx_images, read_idx_labels};
use eigengrad::graph::checkpoint;
use eigengrad::graph::{Graph, Init, Value};
use eigengrad::kernels::elementwise::UnaryOp;
use eigengrad::kernels::reduce::{Axis, ReduceOp};
use eigengrad::kernels::spectral::SpectralFn;
use eigengrad::optim::Adam;
use eigengrad::Error;
use flate2::{write::GzEncoder, Compression};
use proptest::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

const CASES: u32 = 200;

/// A unique path in this process's own temp directory.
fn temp_file(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("eigengrad-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{tag}-{}", COUNTER.fetch_add(1, Ordering::Relaxed)))
}

/// A corruption: cut the file to `keep` of its length (when `truncate`), then XOR the bytes
/// at the given relative positions with non-zero masks.
#[derive(Clone, Debug)]
struct Damage {
    truncate: Option<f64>,
    flips: Vec<(f64, u8)>,
}

fn damage() -> impl Strategy<Value = Damage> {
    (
        prop::option::of(0.0..1.0f64),
        prop::collection::vec((0.0..1.0f64, 1..=255u8), 0..4),
    )
        .prop_map(|(truncate, flips)| Damage { truncate, flips })
}

impl Damage {
    fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        if let Some(keep) = self.truncate {
            out.truncate((keep * bytes.len() as f64) as usize);
        }
        let len = out.len();
        for &(at, mask) in &self.flips {
            if len > 0 {
                out[((at * len as f64) as usize).min(len - 1)] ^= mask;
            }
        }
        out
    }
}

/// An IDX file of unsigned bytes: magic 00 00 08 ndim, big-endian dims, data.
fn idx_bytes(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Raw IDX images: the reader never panics; it succeeds exactly when the header is intact
    /// and the length unchanged (IDX has no checksum, so a flipped data byte loads as that
    /// byte), and then returns the damaged file's pixels.
    #[test]
    fn idx_images_survive_damage(
        n in 1..5usize, rows in 1..5usize, cols in 1..5usize, seed in any::<u64>(), d in damage()
    ) {
        let data: Vec<u8> = (0..n * rows * cols).map(|i| (seed >> (i % 57)) as u8 ^ i as u8).collect();
        let clean = idx_bytes(&[n, rows, cols], &data);
        let damaged = d.apply(&clean);
        let path = temp_file("images");
        std::fs::write(&path, &damaged).unwrap();
        let header = 16;
        let intact = damaged.len() == clean.len() && damaged[..header] == clean[..header];
        match read_idx_images(&path) {
            Ok((pixels, n2, r2, c2)) => {
                prop_assert!(intact, "a damaged header or length was accepted");
                prop_assert_eq!((n2, r2, c2), (n, rows, cols));
                let expected: Vec<f32> = damaged[header..].iter().map(|&b| b as f32 / 255.0).collect();
                prop_assert_eq!(pixels, expected);
            }
            Err(e) => {
                prop_assert!(!intact, "an intact file was refused: {}", e);
                prop_assert!(matches!(e, Error::BadFile { .. }), "{}", e);
            }
        }
        std::fs::remove_file(&path).unwrap();
    }

    /// Gzip-compressed IDX labels: gzip's CRC-32 and length catch damage to the stream, so
    /// every case is an error or the clean labels.
    #[test]
    fn gzip_idx_labels_survive_damage(n in 1..40usize, seed in any::<u64>(), d in damage()) {
        let labels: Vec<u8> = (0..n).map(|i| ((seed >> (i % 60)) % 10) as u8).collect();
        let clean = gzip(&idx_bytes(&[n], &labels));
        let damaged = d.apply(&clean);
        let path = temp_file("labels.gz");
        std::fs::write(&path, &damaged).unwrap();
        match read_idx_labels(&path) {
            Ok(read) => prop_assert_eq!(read, labels),
            Err(e) => prop_assert!(matches!(e, Error::BadFile { .. }), "{}", e),
        }
        std::fs::remove_file(&path).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// A damaged checkpoint loads exactly the saved model or is refused as `BadFile`,
    /// leaving the target model untouched.
    #[test]
    fn checkpoints_survive_damage(seed in 0..1000u64, d in damage()) {
        let (source, saved) = checkpoint_model(seed, seed % 1000);
        let clean_path = temp_file("clean.safetensors");
        checkpoint::save(&source, &clean_path).unwrap();
        let clean = std::fs::read(&clean_path).unwrap();
        let path = temp_file("damaged.safetensors");
        std::fs::write(&path, d.apply(&clean)).unwrap();

        let (mut target, _) = checkpoint_model(seed + 1, (seed + 1) % 1000);
        let before = saved_contents(&target, &saved);
        match checkpoint::load(&mut target, &path) {
            Ok(()) => prop_assert_eq!(saved_contents(&target, &saved), saved_contents(&source, &saved)),
            Err(e) => {
                prop_assert!(matches!(e, Error::BadFile { .. }), "{}", e);
                prop_assert_eq!(saved_contents(&target, &saved), before);
            }
        }
        std::fs::remove_file(&clean_path).unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}

/// One step of a random graph: an op and the operands it picks (indices into the values built
/// so far, wrapped; an index past them stands for a value of another graph).
#[derive(Clone, Debug)]
enum Step {
    Input(Vec<usize>),
    Param(Vec<usize>),
    MatMul(usize, usize, bool, bool),
    Unary(usize, u8),
    Add(usize, usize),
    Mul(usize, usize),
    Reduce(usize, bool, bool),
    Transpose(usize),
    Reshape(usize, Vec<usize>),
    SoftmaxXent(usize, usize),
    Spectral(usize, u8),
    Mse(usize, usize),
    Ema(usize, usize, f32),
    MeanAll(usize),
}

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..5usize, 0..4)
}

fn step() -> impl Strategy<Value = Step> {
    let v = 0..24usize;
    prop_oneof![
        shape().prop_map(Step::Input),
        shape().prop_map(Step::Param),
        (v.clone(), v.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(a, b, ta, tb)| Step::MatMul(a, b, ta, tb)),
        (v.clone(), 0..4u8).prop_map(|(a, k)| Step::Unary(a, k)),
        (v.clone(), v.clone()).prop_map(|(a, b)| Step::Add(a, b)),
        (v.clone(), v.clone()).prop_map(|(a, b)| Step::Mul(a, b)),
        (v.clone(), any::<bool>(), any::<bool>()).prop_map(|(a, r, m)| Step::Reduce(a, r, m)),
        v.clone().prop_map(Step::Transpose),
        (v.clone(), shape()).prop_map(|(a, s)| Step::Reshape(a, s)),
        (v.clone(), v.clone()).prop_map(|(a, b)| Step::SoftmaxXent(a, b)),
        (v.clone(), 0..5u8).prop_map(|(a, k)| Step::Spectral(a, k)),
        (v.clone(), v.clone()).prop_map(|(a, b)| Step::Mse(a, b)),
        (v.clone(), v.clone(), -0.5..1.5f32).prop_map(|(a, b, m)| Step::Ema(a, b, m)),
        v.prop_map(Step::MeanAll),
    ]
}

/// Applies `step` to `g`; `values` are those built so far and `foreign` one of another graph.
fn build(
    g: &mut Graph,
    values: &mut Vec<Value>,
    foreign: Value,
    step: &Step,
) -> eigengrad::Result<()> {
    let pick = |i: usize| if i < values.len() { values[i] } else { foreign };
    let made = match step {
        Step::Input(s) => Some(g.input(&format!("in{}", values.len()), s)?),
        Step::Param(s) => {
            Some(g.param(&format!("p{}", values.len()), s, Init::Normal { std: 1.0 })?)
        }
        Step::MatMul(a, b, ta, tb) => Some(g.matmul(pick(*a), pick(*b), *ta, *tb)?),
        Step::Unary(a, k) => {
            let op = [
                UnaryOp::Relu,
                UnaryOp::Tanh,
                UnaryOp::Gelu,
                UnaryOp::Scale(0.5),
            ][*k as usize];
            Some(g.unary(op, pick(*a))?)
        }
        Step::Add(a, b) => Some(g.add(pick(*a), pick(*b))?),
        Step::Mul(a, b) => Some(g.mul(pick(*a), pick(*b))?),
        Step::Reduce(a, rows, max) => {
            let op = if *max { ReduceOp::Max } else { ReduceOp::Sum };
            let axis = if *rows { Axis::Rows } else { Axis::Cols };
            Some(g.reduce(op, axis, pick(*a))?)
        }
        Step::Transpose(a) => Some(g.transpose(pick(*a))?),
        Step::Reshape(a, s) => Some(g.reshape(pick(*a), s)?),
        Step::SoftmaxXent(a, b) => Some(g.softmax_xent(pick(*a), pick(*b))?),
        Step::Spectral(a, k) => {
            let f = [
                SpectralFn::Orthogonal,
                SpectralFn::Clamp { lo: 0.5, hi: 2.0 },
                SpectralFn::Clamp { lo: 2.0, hi: 0.5 },
                SpectralFn::InvSqrt { eps: 1e-3 },
                SpectralFn::TopK { k: 2 },
            ][*k as usize];
            Some(g.spectral_fn(pick(*a), f)?)
        }
        Step::Mse(a, b) => Some(g.mse(pick(*a), pick(*b))?),
        Step::Ema(a, b, m) => {
            g.ema(pick(*a), pick(*b), *m)?;
            None
        }
        Step::MeanAll(a) => Some(g.mean_all(pick(*a))?),
    };
    values.extend(made);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Random shapes and operands (including empty shapes, zero dimensions and values of
    /// another graph): every builder call returns a value or an error, never panics; so do
    /// backward and an optimizer on whatever one-element value the graph ends with.
    #[test]
    fn graph_construction_never_panics(steps in prop::collection::vec(step(), 1..24)) {
        let mut other = Graph::new();
        for k in 0..40 {
            other.input(&format!("o{k}"), &[2, 2]).unwrap();
        }
        let foreign = other.value(39).unwrap();
        let mut g = Graph::new();
        let mut values = Vec::new();
        for s in &steps {
            let nodes = g.nodes().len();
            if build(&mut g, &mut values, foreign, s).is_err() {
                prop_assert_eq!(g.nodes().len(), nodes, "a failed {:?} appended nodes", s);
            }
        }
        if let Some(&loss) = values.iter().rev().find(|&&v| {
            g.try_shape(v).map(|s| s.iter().product::<usize>() == 1).unwrap_or(false)
        }) {
            let _ = Adam::new(1e-3).minimize(&mut g, loss);
        }
    }
}
