//! f32 square matmul, n = 256, 512, 1024: both GPU kernel variants against nalgebra and faer
//! on the same work. Criterion reports elements/s with 2·n³ elements per iteration, which is
//! FLOP/s; a GFLOPS summary table with GPU/CPU ratios is printed at the end.
//!
//! Run: `cargo bench --bench matmul`.
//!
//! Measured 2026-11-28 on the 2-core development machine (AMD EPYC Zen 5 under KVM), adapter
//! `llvmpipe (LLVM 15.0.6, 256 bits)` (Vulkan, Mesa 22.3.6 lavapipe), GFLOPS (median per
//! call). The machine was shared: load average 6–7 on its 2 cores during the run, so every
//! absolute figure is depressed (the same machine idle: nalgebra ≈ 210, faer ≈ 250 on
//! one thread and ≈ 450 on two) and faer on 2 threads loses to 1 thread; read the ratios.
//!
//! | n | gpu RowBlock | gpu Tiled | nalgebra | faer 1 thread | faer 2 threads | best GPU / nalgebra | best GPU / faer 2 threads |
//! |---|---|---|---|---|---|---|---|
//! | 256 | 3.7 | 1.9 | 141 | 168 | 144 | 0.026 | 0.026 |
//! | 512 | 3.9 | 1.3 | 100 | 167 | 121 | 0.039 | 0.032 |
//! | 1024 | 3.4 | 2.3 | 134 | 151 | 89 | 0.026 | 0.039 |
//!
//! A second run under the same load gave RowBlock 4.3 / 2.9 / 3.9 and Tiled 1.8 / 1.6 / 1.6.
//! Counting process CPU time instead of wall time (a throw-away probe, same day), RowBlock did
//! 6.1–6.6 GFLOP per CPU-second at n = 256 and 4.5–5.4 at n = 1024, i.e. roughly 12 and 10
//! GFLOPS on two idle cores, in line with the 16.5 / 12.2 it reaches idle; Tiled did about 3.
//!
//! GPU timing: each iteration submits one dispatch and waits for it (`run` + `synchronize`),
//! after a warm-up run that compiles the pipeline. That is the cost a caller of one
//! stand-alone matmul pays, including ~0.05–0.15 ms of submit-and-wait overhead on this machine,
//! which is under 5 % of even the fastest case here (n = 256 on lavapipe, ≥ 2 ms). Recording
//! many dispatches into one submission would amortise that overhead; one submit + wait per
//! iteration keeps every sample a whole, finished matmul, with no doubt about what the queue
//! overlapped.

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use eigengrad::kernels::autotune::Variant;
use eigengrad::kernels::matmul::{matmul_dispatch_variant, matmul_shape, MatmulVariant};
use eigengrad::kernels::run;
use eigengrad::{Device, Tensor};
use nalgebra::DMatrix;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [256, 512, 1024];

/// Seconds per iteration of every timed call criterion made, by (implementation, n).
type Records = RefCell<BTreeMap<(&'static str, usize), Vec<f64>>>;

/// Times `iters` calls of `work`, records seconds per call, returns the total.
fn timed(
    records: &Records,
    key: (&'static str, usize),
    iters: u64,
    mut work: impl FnMut(),
) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        work();
    }
    let elapsed = start.elapsed();
    records
        .borrow_mut()
        .entry(key)
        .or_default()
        .push(elapsed.as_secs_f64() / iters as f64);
    elapsed
}

fn random(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..=1.0)).collect()
}

fn gpu_name(v: MatmulVariant) -> &'static str {
    match v {
        MatmulVariant::RowBlock => "gpu RowBlock",
        MatmulVariant::Tiled => "gpu Tiled",
        MatmulVariant::Large => "gpu Large",
        MatmulVariant::Skinny => "gpu Skinny",
        MatmulVariant::Subgroup => "gpu Subgroup",
    }
}

fn bench(c: &mut Criterion, device: &Device, records: &Records) {
    let mut group = c.benchmark_group("matmul_f32");
    group.sampling_mode(SamplingMode::Flat);
    for n in SIZES {
        let (_, dims) = matmul_shape(&[n, n], &[n, n], false, false).expect("square shapes");
        group.throughput(Throughput::Elements(dims.flops()));
        let a = random(1, n * n);
        let b = random(2, n * n);

        let ta = Tensor::from_slice(device, &[n, n], &a).expect("upload a");
        let tb = Tensor::from_slice(device, &[n, n], &b).expect("upload b");
        let tc = Tensor::zeros(device, &[n, n]).expect("allocate c");
        for variant in MatmulVariant::available_on(device.info()) {
            let d = matmul_dispatch_variant(
                device,
                &dims,
                ta.buffer(),
                tb.buffer(),
                tc.buffer(),
                variant,
            )
            .expect("dispatch");
            let step = || {
                run(device, &[&d]).expect("submit");
                device.synchronize().expect("wait");
            };
            step(); // warm-up: the first launch of a pipeline pays for its compilation
            let key = (gpu_name(variant), n);
            group.bench_function(BenchmarkId::new(key.0, n), |bch| {
                bch.iter_custom(|iters| timed(records, key, iters, step))
            });
        }

        let na = DMatrix::from_row_slice(n, n, &a);
        let nb = DMatrix::from_row_slice(n, n, &b);
        let mut nc = DMatrix::<f32>::zeros(n, n);
        group.bench_function(BenchmarkId::new("nalgebra", n), |bch| {
            bch.iter_custom(|iters| {
                timed(records, ("nalgebra", n), iters, || {
                    nc.gemm(1.0, &na, &nb, 0.0)
                })
            })
        });

        let fa = faer::Mat::<f32>::from_fn(n, n, |i, j| a[i * n + j]);
        let fb = faer::Mat::<f32>::from_fn(n, n, |i, j| b[i * n + j]);
        let mut fc = faer::Mat::<f32>::zeros(n, n);
        for (name, par) in [
            ("faer 1 thread", faer::Par::Seq),
            ("faer 2 threads", faer::Par::rayon(2)),
        ] {
            group.bench_function(BenchmarkId::new(name, n), |bch| {
                bch.iter_custom(|iters| {
                    timed(records, (name, n), iters, || {
                        faer::linalg::matmul::matmul(
                            fc.as_mut(),
                            faer::Accum::Replace,
                            fa.as_ref(),
                            fb.as_ref(),
                            1.0f32,
                            par,
                        )
                    })
                })
            });
        }
    }
    group.finish();
}

/// Median GFLOPS of every recorded call (warm-up calls included: every one is a full,
/// already-compiled matmul, so they are valid samples too).
fn gflops(records: &Records, name: &'static str, n: usize) -> f64 {
    let mut t = records
        .borrow()
        .get(&(name, n))
        .cloned()
        .unwrap_or_default();
    if t.is_empty() {
        return f64::NAN;
    }
    t.sort_by(f64::total_cmp);
    2.0 * (n as f64).powi(3) / t[t.len() / 2] / 1e9
}

fn summary(records: &Records, device: &Device) {
    println!(
        "\nmatmul f32, GFLOPS (median per call); adapter: {}",
        device.info().name
    );
    println!(
        "| n | gpu RowBlock | gpu Tiled | nalgebra | faer 1 thread | faer 2 threads | \
         best GPU / nalgebra | best GPU / faer 2 threads |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in SIZES {
        let g = |name| gflops(records, name, n);
        let (rb, tl) = (g("gpu RowBlock"), g("gpu Tiled"));
        let best = rb.max(tl);
        let (na, f1, f2) = (g("nalgebra"), g("faer 1 thread"), g("faer 2 threads"));
        println!(
            "| {n} | {rb:.1} | {tl:.1} | {na:.0} | {f1:.0} | {f2:.0} | {:.3} | {:.3} |",
            best / na,
            best / f2
        );
    }
}

fn main() {
    let device = Device::new().expect("a GPU adapter (on a machine without one: Mesa lavapipe)");
    eprintln!("bench device: {}", device.info());
    let records = Records::default();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench(&mut c, &device, &records);
    c.final_summary();
    summary(&records, &device);
}
