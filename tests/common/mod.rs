//! Helpers shared by the integration tests: the device, seeded random data, error measures.
#![allow(dead_code)]

use eigengrad::graph::reference::ReferencePlan;
use eigengrad::graph::{Graph, Init, Plan, Value};
use eigengrad::optim::Adam;
use eigengrad::Device;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The device every test runs on (`EIGENGRAD_BACKEND` picks the backend). A missing adapter
/// fails the test: a kernel test that silently skips proves nothing.
pub fn device() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let d = Device::new().expect("a GPU adapter (on CI: Mesa lavapipe)");
            eprintln!("test device: {}", d.info());
            d
        })
        .clone()
}

/// Seeded uniform values in [-scale, scale].
pub fn random(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-scale..=scale)).collect()
}

/// f32 data widened to f64 for the ground-truth reference.
pub fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Largest |gpu − reference| over all elements, with the index where it occurs.
pub fn max_abs_err(gpu: &[f32], reference: &[f64]) -> (f64, usize) {
    assert_eq!(gpu.len(), reference.len(), "lengths differ");
    gpu.iter()
        .zip(reference)
        .enumerate()
        .map(|(i, (&g, &r))| ((g as f64 - r).abs(), i))
        .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a })
}

/// Asserts |gpu_i − ref_i| ≤ tol_i for every element, naming the first failure.
pub fn assert_close_each(
    what: &str,
    gpu: &[f32],
    reference: &[f64],
    tol: impl Fn(usize, f64) -> f64,
) {
    assert_eq!(gpu.len(), reference.len(), "{what}: lengths differ");
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        let t = tol(i, r);
        assert!(
            g.is_finite() && (g as f64 - r).abs() <= t,
            "{what}: element {i}: gpu {g} vs reference {r} (tolerance {t:e})"
        );
    }
}

/// f32 machine epsilon as f64.
pub const EPS: f64 = f32::EPSILON as f64;

/// The crate's cargo features this test was built with, so that an example is built with the
/// same ones (the same library build, and the features the example requires).
fn enabled_features() -> String {
    [
        ("data", cfg!(feature = "data")),
        ("digits", cfg!(feature = "digits")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect::<Vec<_>>()
    .join(",")
}

/// The example binary `name` of the profile and features this test was built with, (re)built
/// first so a lone `cargo test --test <name>` never runs a stale demo (a no-op after
/// `cargo test`).
pub fn example(name: &str) -> PathBuf {
    // target/<profile dir>/deps/<test>-<hash> → target/<profile dir>/examples/<name>
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "--locked",
            "--profile",
            profile,
            "--example",
            name,
            "--no-default-features",
            "--features",
            &enabled_features(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --example {name} failed");
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "no example binary at {}", bin.display());
    bin
}

/// A small model for the checkpoint tests (two parameters plus Adam's state, on the f32
/// reference executor) whose weights depend on `seed`, with `steps` recorded as its step count.
pub fn checkpoint_model(seed: u64, steps: u64) -> (ReferencePlan<f32>, Vec<Value>) {
    let mut g = Graph::new();
    let x = g.input("x", &[4, 3]).unwrap();
    let w = g.param("w", &[3, 5], Init::Normal { std: 1.0 }).unwrap();
    let b = g.param("b", &[5], Init::Normal { std: 1.0 }).unwrap();
    let z = g.matmul(x, w, false, false).unwrap();
    let y = g.add(z, b).unwrap();
    let loss = g.mean_all(y).unwrap();
    Adam::new(1e-2).minimize(&mut g, loss).unwrap();
    let mut plan = ReferencePlan::<f32>::compile(&g, seed).unwrap();
    plan.set_steps(steps);
    let saved = plan.saved_values();
    (plan, saved)
}

/// Every saved tensor, as bits, and the step count.
pub fn saved_contents(plan: &ReferencePlan<f32>, saved: &[Value]) -> (Vec<Vec<u32>>, u64) {
    let tensors = saved
        .iter()
        .map(|&v| plan.read(v).unwrap().iter().map(|x| x.to_bits()).collect())
        .collect();
    (tensors, plan.steps())
}
