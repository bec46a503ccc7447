//! eigengrad's benchmark: every workload on the GPU and on the CPU in the same process, one
//! table.
//!
//! Workloads: square f32 matmul; batched symmetric eigendecomposition (cold, and warm-started
//! from the eigenvectors of a slightly different batch, as an Eigen layer is from one step to
//! the next); one layer's forward + backward + SGD update — plain `Linear` and `EigenLayer`
//! in each mode, warm and cold; `Linear` + `EigenWhiten`; and a full Adam training step of an
//! MLP 784-512-512-512-10, plain and with Eigen Clamp layers. The GPU runs the compiled
//! `GpuPlan` (one submission per step); the CPU runs the reference executor
//! (`ReferencePlan::<f32>`, nalgebra) on the same graph, and for matmul and eigh also faer,
//! the strongest CPU library at hand, on every core.
//!
//! Times are medians. "GPU wall" runs from the start of the call until the device has
//! finished; "GPU kernel" is the device's own time from timestamp queries (first pass begin
//! to last pass end), where the adapter has them; "host µs" is the CPU time to record and
//! submit one step, which does not depend on the adapter's speed; "dispatches" and "barriers"
//! are the kernel launches of a step and the points where wgpu makes the device drain between
//! them. The plain MLP also runs as "unfused" (no fused epilogues, one optimizer launch per
//! parameter), to show what fusion saves. Ratios are CPU time / GPU wall time: above 1 the
//! GPU is faster.
//!
//! ```text
//! cargo run --release --example bench -- --quick            # under two minutes on lavapipe
//! cargo run --release --example bench -- --out out/bench    # the full sizes
//! cargo run --release --example bench -- --only matmul,eigh --backend vulkan
//! ```
//!
//! Writes `bench.csv` and `bench.md` into `--out` (default `out/bench`).

mod cli;
mod measure;
mod report;
mod workloads;

use clap::Parser;
use cli::{Args, Sizes, Workload};
use eigengrad::kernels::autotune::{self, default_cache_path, TuneSource, Tuning};
use eigengrad::kernels::matmul::{MatmulLarge, MatmulMedium, MatmulSmall};
use eigengrad::profile::PassTimer;
use eigengrad::{Device, DeviceOptions};
use report::{load_average, markdown_table, Report};
use std::process::ExitCode;
use std::time::Instant;
use workloads::Bench;

/// Errors of the bench: library errors, I/O; printed by `main`.
type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn run(args: Args) -> BenchResult<()> {
    let load_start = load_average();
    let device = Device::with_options(&DeviceOptions {
        backend: args.backend,
        adapter_name: args.adapter.clone(),
    })?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mode = if args.smoke {
        "smoke"
    } else if args.quick {
        "quick"
    } else {
        "full"
    };
    println!("adapter: {}", device.info());
    println!("mode: {mode}; CPU threads: {threads}; load average at start: {load_start}");
    std::fs::create_dir_all(&args.out)?;
    let cache = (!args.no_tune_cache).then(default_cache_path).flatten();
    let tunings = [
        autotune::tune::<MatmulSmall>(&device, cache.as_deref(), args.retune)?.named(),
        autotune::tune::<MatmulMedium>(&device, cache.as_deref(), args.retune)?.named(),
        autotune::tune::<MatmulLarge>(&device, cache.as_deref(), args.retune)?.named(),
    ];
    let classes = ["small", "medium", "large"];
    let tuning_line = format!(
        "matmul autotune: {} ({})",
        tunings
            .iter()
            .zip(classes)
            .map(|(t, class)| describe_tuning(class, t))
            .collect::<Vec<_>>()
            .join("; "),
        tunings[0]
            .cache_path
            .as_ref()
            .map(|p| format!("cache {}", p.display()))
            .unwrap_or_else(|| "no cache file".into()),
    );
    println!("{tuning_line}");
    let timer = PassTimer::new(&device, 1)?;
    let mut bench = Bench {
        device: device.clone(),
        sizes: Sizes::new(&args),
        threads,
        timer,
        report: Report {
            rows: Vec::new(),
            out: args.out.clone(),
            adapter: device.info().clone(),
            threads,
            mode,
            load_start,
            tuning_line,
            started: Instant::now(),
        },
    };
    let wanted = |w| args.only.is_empty() || args.only.contains(&w);
    if wanted(Workload::Matmul) {
        eprintln!("matmul");
        bench.matmul()?;
    }
    if wanted(Workload::Eigh) {
        eprintln!("eigh");
        bench.eigh()?;
    }
    if wanted(Workload::Layer) {
        eprintln!("layers");
        bench.layer()?;
    }
    if wanted(Workload::Whiten) {
        eprintln!("whitening");
        bench.whiten()?;
    }
    if wanted(Workload::Mlp) {
        eprintln!("mlp");
        bench.mlp()?;
    }
    if wanted(Workload::Deep) {
        eprintln!("deep");
        bench.deep()?;
    }
    let load_end = load_average();
    let elapsed = bench.report.started.elapsed().as_secs_f64();
    println!();
    print!("{}", markdown_table(&bench.report.rows));
    println!(
        "\n{} rows in {elapsed:.0} s; load average at end: {load_end}; ratios are CPU time / \
         GPU wall time (above 1: the GPU is faster)",
        bench.report.rows.len()
    );
    bench.report.save(true)?;
    println!(
        "wrote {} and {}",
        args.out.join("bench.csv").display(),
        args.out.join("bench.md").display()
    );
    Ok(())
}

fn main() -> ExitCode {
    env_logger::init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One size class's tuning: the variant, where it came from, and the trial times if measured.
fn describe_tuning(class: &str, t: &Tuning<&'static str>) -> String {
    let source = match t.source {
        TuneSource::Measured => "measured",
        TuneSource::Disk => "from the cache",
        TuneSource::Memory => "already tuned",
    };
    let timings: Vec<String> = t
        .timings_ms
        .iter()
        .map(|(v, ms)| format!("{v} {ms:.2} ms"))
        .collect();
    if timings.is_empty() {
        format!("{class} products {} ({source})", t.variant)
    } else {
        format!(
            "{class} products {} ({source}: {})",
            t.variant,
            timings.join(", ")
        )
    }
}
