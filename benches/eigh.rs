//! Batched symmetric eigendecomposition (values and vectors), f32: the GPU Jacobi solver cold
//! and warm-started, against nalgebra (sequential), faer on one thread, and faer on two threads
//! splitting the batch. Matrices: uniform symmetric in [-1, 1]; the warm start solves A + δ
//! (‖δ‖_F = 1e-3·‖A‖_F) from the eigenvectors of A. Times exclude building the plan; the GPU
//! figure is record + submit + wait for one whole batch.
//!
//! Run: `cargo bench --bench eigh`. Measured 2026-11-28 on the 2-core development machine
//! (shared with other builds), llvmpipe (LLVM 15.0.6, 256 bits) through Vulkan (lavapipe,
//! Mesa 22.3.6); matrices per second, median of 10 samples:
//!
//! | batch × n | GPU cold | GPU warm | nalgebra | faer 1T | faer 2T | cold/faer2T | warm/faer2T | sweeps cold → warm |
//! |---|---|---|---|---|---|---|---|---|
//! | 4096×32 | 411.8 | 1000.7 | 32224.8 | 15896.0 | 13383.9 | 0.031 | 0.075 | 6.0 → 2.0 |
//! | 1024×64 | 100.5 | 293.8 | 5499.9 | 5050.9 | 4431.7 | 0.023 | 0.066 | 7.0 → 2.0 |
//! | 16×256 | 1.0 | 2.7 | 80.0 | 184.6 | 220.4 | 0.005 | 0.012 | 8.8 → 2.0 |
//! | 2×512 | 0.1 | 0.3 | 11.6 | 26.2 | 25.7 | 0.006 | 0.013 | 9.0 → 2.5 |
//!
//! The machine ran other builds at the same time (load average 5–7 on 2 cores): absolute
//! figures are 2–4× pessimistic, ratios within one row are the signal. Warm starts are 2.4–2.9×
//! faster than cold ones (the prologue's V0ᵀ·A·V0 and the closing Newton–Schulz step cost
//! about two sweeps). The GPU bench's 64×256 and 8×512 are scaled down to 16×256 and 2×512: at 4×
//! the work of the scaled runs (~15 s each), one GPU iteration of those would take about a
//! minute. lavapipe runs compute on the CPU, each workgroup's lanes 8-wide on one thread, with
//! every load and store done lane by lane: it is a correctness target, not a fast one; on a
//! real GPU the same kernels spread the rotations of a round across thousands of lanes.

use criterion::{BenchmarkId, Criterion, Throughput};
use eigengrad::kernels::jacobi::{EighOptions, EighPlan, WarmStart};
use eigengrad::Device;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// (batch, n) cases: the GPU bench's 4096×32, 1024×64, 64×256 → 16×256, 8×512 → 2×512.
const CASES: [(usize, usize); 4] = [(4096, 32), (1024, 64), (16, 256), (2, 512)];
/// Neighbouring orders (batch, n), (batch, n + 1) across the places where the solver changes
/// shape — one workgroup per matrix up to 64, then blocked, with more blocks past 128 — timed
/// on the GPU only: the cost per matrix should grow like n³, without a jump.
const NEIGHBOURS: [(usize, usize); 3] = [(256, 32), (32, 64), (4, 128)];
const TOLERANCE: f32 = 10.0 * f32::EPSILON;
const MAX_SWEEPS: u32 = 15;

/// Seconds per batch of every measured routine, keyed by (routine, batch, n).
type Times = RefCell<HashMap<(&'static str, usize, usize), Vec<f64>>>;

fn median(times: &Times, name: &'static str, batch: usize, n: usize) -> Option<f64> {
    let mut v = times.borrow().get(&(name, batch, n))?.clone();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Some(v[v.len() / 2])
}

fn random_batch(rng: &mut StdRng, batch: usize, n: usize) -> Vec<f32> {
    let mut a = vec![0f32; batch * n * n];
    for m in a.chunks_mut(n * n) {
        for i in 0..n {
            for j in 0..=i {
                let x = rng.random_range(-1.0f32..=1.0);
                m[i * n + j] = x;
                m[j * n + i] = x;
            }
        }
    }
    a
}

/// A + δ per matrix, ‖δ‖_F = 1e-3·‖A‖_F.
fn perturb(rng: &mut StdRng, a: &[f32], n: usize) -> Vec<f32> {
    let mut out = a.to_vec();
    for m in out.chunks_mut(n * n) {
        let d = random_batch(rng, 1, n);
        let norm = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>().sqrt();
        let k = 1e-3 * norm(m) / norm(&d);
        m.iter_mut().zip(&d).for_each(|(x, y)| *x += k * y);
    }
    out
}

/// Cold and warm plans for `batch` random matrices of order n, each solved once; the warm plan
/// starts from the cold solve's eigenvectors and solves A + δ. Returns the plans, A, and the
/// mean sweeps cold and warm.
fn prepared(
    device: &Device,
    rng: &mut StdRng,
    batch: usize,
    n: usize,
) -> (EighPlan, EighPlan, Vec<f32>, (f64, f64)) {
    let a = random_batch(rng, batch, n);
    let b = perturb(rng, &a, n);
    let options = |warm_start| EighOptions {
        tolerance: TOLERANCE,
        max_sweeps: MAX_SWEEPS,
        warm_start,
        ..EighOptions::default()
    };
    let cold = EighPlan::new(device, batch, n, &options(WarmStart::Off)).unwrap();
    let warm = EighPlan::new(device, batch, n, &options(WarmStart::Given)).unwrap();
    cold.input().write(&a).unwrap();
    solve(device, &cold);
    let cold_sweeps = mean_sweeps(device, &cold);
    let mut encoder = device
        .wgpu_device()
        .create_command_encoder(&Default::default());
    let v0 = warm.warm_start().unwrap();
    let bytes = (v0.len() * 4) as u64;
    encoder.copy_buffer_to_buffer(cold.vectors().buffer(), 0, v0.buffer(), 0, bytes);
    device.queue().submit([encoder.finish()]);
    warm.input().write(&b).unwrap();
    solve(device, &warm);
    let warm_sweeps = mean_sweeps(device, &warm);
    (cold, warm, a, (cold_sweeps, warm_sweeps))
}

/// One solve of the plan's current input: record, submit, wait.
fn solve(device: &Device, plan: &EighPlan) {
    let mut encoder = device
        .wgpu_device()
        .create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        plan.record(&mut pass, 0);
    }
    device.queue().submit([encoder.finish()]);
    device.synchronize().expect("eigh bench: device error");
}

fn mean_sweeps(device: &Device, plan: &EighPlan) -> f64 {
    let s = eigengrad::tensor::read_words(device, plan.sweeps(), plan.batch()).unwrap();
    s.iter().map(|&x| x as f64).sum::<f64>() / s.len() as f64
}

fn nalgebra_all(a: &[f32], n: usize) {
    for m in a.chunks(n * n) {
        let e = nalgebra::DMatrix::<f32>::from_row_slice(n, n, m).symmetric_eigen();
        std::hint::black_box(e);
    }
}

fn faer_all(a: &[f32], n: usize) {
    for m in a.chunks(n * n) {
        let e = faer::Mat::<f32>::from_fn(n, n, |i, j| m[i * n + j])
            .self_adjoint_eigen(faer::Side::Lower)
            .expect("faer eigendecomposition");
        std::hint::black_box(e);
    }
}

fn faer_two_threads(a: &[f32], n: usize) {
    let half = (a.len() / (n * n)).div_ceil(2) * n * n;
    std::thread::scope(|s| {
        for part in a.chunks(half) {
            s.spawn(move || faer_all(part, n));
        }
    });
}

/// Times `f` over criterion's iterations and records seconds per batch.
fn timed(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    times: &Times,
    name: &'static str,
    batch: usize,
    n: usize,
    mut f: impl FnMut(),
) {
    c.bench_function(BenchmarkId::new(name, format!("{batch}x{n}")), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            let t = start.elapsed();
            times
                .borrow_mut()
                .entry((name, batch, n))
                .or_default()
                .push(t.as_secs_f64() / iters as f64);
            t
        })
    });
}

fn main() {
    faer::set_global_parallelism(faer::Par::Seq);
    let device = Device::new().expect("a GPU adapter (lavapipe on a CPU-only machine)");
    println!("adapter: {}", device.info());
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut sweeps = HashMap::new();
    let times = Times::default();
    let mut rng = StdRng::seed_from_u64(2026);
    for (batch, n) in CASES {
        let (cold, warm, a, mean) = prepared(&device, &mut rng, batch, n);
        sweeps.insert((batch, n), mean);

        let mut group = criterion.benchmark_group("eigh");
        group.throughput(Throughput::Elements(batch as u64));
        timed(&mut group, &times, "gpu_cold", batch, n, || {
            solve(&device, &cold)
        });
        timed(&mut group, &times, "gpu_warm", batch, n, || {
            solve(&device, &warm)
        });
        timed(&mut group, &times, "nalgebra", batch, n, || {
            nalgebra_all(&a, n)
        });
        timed(&mut group, &times, "faer_1t", batch, n, || faer_all(&a, n));
        timed(&mut group, &times, "faer_2t", batch, n, || {
            faer_two_threads(&a, n)
        });
        group.finish();
    }
    for (batch, n) in NEIGHBOURS.iter().flat_map(|&(b, n)| [(b, n), (b, n + 1)]) {
        let (cold, warm, _, mean) = prepared(&device, &mut rng, batch, n);
        sweeps.insert((batch, n), mean);
        let mut group = criterion.benchmark_group("eigh_neighbours");
        group.throughput(Throughput::Elements(batch as u64));
        timed(&mut group, &times, "gpu_cold", batch, n, || {
            solve(&device, &cold)
        });
        timed(&mut group, &times, "gpu_warm", batch, n, || {
            solve(&device, &warm)
        });
        group.finish();
    }
    criterion.final_summary();

    println!(
        "\nmatrices per second (median), 2026-11-28, {}",
        device.info().name
    );
    println!("| batch × n | GPU cold | GPU warm | nalgebra | faer 1T | faer 2T | cold/faer2T | warm/faer2T | sweeps cold → warm |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (batch, n) in CASES {
        let rate = |name| median(&times, name, batch, n).map(|t| batch as f64 / t);
        let fmt = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:.1}"));
        let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => format!("{:.3}", x / y),
            _ => "–".to_string(),
        };
        let (sc, sw) = sweeps[&(batch, n)];
        println!(
            "| {batch}×{n} | {} | {} | {} | {} | {} | {} | {} | {sc:.1} → {sw:.1} |",
            fmt(rate("gpu_cold")),
            fmt(rate("gpu_warm")),
            fmt(rate("nalgebra")),
            fmt(rate("faer_1t")),
            fmt(rate("faer_2t")),
            ratio(rate("gpu_cold"), rate("faer_2t")),
            ratio(rate("gpu_warm"), rate("faer_2t")),
        );
    }

    println!(
        "\nneighbouring orders: ms per matrix (median), and the step's ratio against n³ growth"
    );
    println!(
        "| batch | n → n + 1 | cold | warm | sweeps cold | cold ratio | warm ratio | (n + 1)³/n³ |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (batch, n) in NEIGHBOURS {
        let ms = |name, n| median(&times, name, batch, n).map(|t| 1e3 * t / batch as f64);
        let (Some(c0), Some(c1), Some(w0), Some(w1)) = (
            ms("gpu_cold", n),
            ms("gpu_cold", n + 1),
            ms("gpu_warm", n),
            ms("gpu_warm", n + 1),
        ) else {
            continue;
        };
        println!(
            "| {batch} | {n} → {} | {c0:.3} → {c1:.3} | {w0:.3} → {w1:.3} | {:.1} → {:.1} | {:.2} | {:.2} | {:.2} |",
            n + 1,
            sweeps[&(batch, n)].0,
            sweeps[&(batch, n + 1)].0,
            c1 / c0,
            w1 / w0,
            ((n + 1) as f64 / n as f64).powi(3),
        );
    }
}
