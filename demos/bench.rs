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

use clap::{Parser, ValueEnum};
use eigengrad::graph::gpu::{GpuPlan, PlanOptions, StepProfile};
use eigengrad::graph::reference::ReferencePlan;
use eigengrad::graph::{Graph, Init, Plan, Value};
use eigengrad::kernels::autotune::{self, default_cache_path, TuneSource, Tuning, Variant};
use eigengrad::kernels::jacobi::{EighOptions, EighPlan, WarmStart, DEFAULT_COLD_RESTART_EVERY};
use eigengrad::kernels::matmul::{
    matmul_dispatch, matmul_shape, matmul_variant, MatmulLarge, MatmulMedium, MatmulSmall,
};
use eigengrad::nn::{
    Activation, EigenLayer, EigenMode, EigenWhiten, GainPlacement, LayerKind, Linear, MlpSpec,
    Mode, Scope, WhitenMode,
};
use eigengrad::optim::{Adam, Sgd};
use eigengrad::profile::{time_pass, PassTimer};
use eigengrad::tensor::read_words;
use eigengrad::{Backend, Device, DeviceOptions, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The workload families, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    Matmul,
    Eigh,
    Layer,
    Whiten,
    Mlp,
}

#[derive(Parser, Debug)]
#[command(about = "GPU against CPU on eigengrad's workloads: one table, CSV and Markdown")]
struct Args {
    /// wgpu backend: auto, vulkan, metal, dx12 or gl (auto honours EIGENGRAD_BACKEND).
    #[arg(long, default_value = "auto")]
    backend: Backend,
    /// Run on the adapter whose name contains this (case-insensitive).
    #[arg(long)]
    adapter: Option<String>,
    /// Smaller sizes: under two minutes on lavapipe.
    #[arg(long)]
    quick: bool,
    /// Tiny sizes, one or two runs each: a check that every workload runs (CI).
    #[arg(long, conflicts_with = "quick")]
    smoke: bool,
    /// Folder for bench.csv and bench.md.
    #[arg(long, default_value = "out/bench")]
    out: PathBuf,
    /// Run only these workloads (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Workload>,
    /// Measure the matmul variants again even if a choice is cached.
    #[arg(long)]
    retune: bool,
    /// Keep the matmul autotuning in memory: neither read nor write the cache file.
    #[arg(long)]
    no_tune_cache: bool,
}

/// Problem sizes of one run.
struct Sizes {
    matmul: Vec<usize>,
    eigh: Vec<(usize, usize)>,
    layer_widths: Vec<usize>,
    layer_batch: usize,
    whiten: (usize, usize, Vec<usize>),
    mlp: (Vec<usize>, usize),
    /// At least this many timed runs (one where a run is slow, see [`repeat`]), at most
    /// `max_runs`, stopping after `budget`.
    min_runs: usize,
    max_runs: usize,
    budget: Duration,
}

impl Sizes {
    fn new(args: &Args) -> Sizes {
        if args.smoke {
            Sizes {
                matmul: vec![64, 100],
                eigh: vec![(64, 16), (4, 40), (2, 70)],
                layer_widths: vec![16, 24],
                layer_batch: 32,
                whiten: (32, 32, vec![16]),
                mlp: (vec![48, 32, 32, 10], 16),
                min_runs: 1,
                max_runs: 2,
                budget: Duration::from_millis(50),
            }
        } else if args.quick {
            Sizes {
                matmul: vec![256, 512, 1024],
                eigh: vec![(256, 32), (64, 64), (4, 128), (1, 256)],
                layer_widths: vec![64, 128, 256],
                layer_batch: 256,
                whiten: (256, 256, vec![16, 64]),
                mlp: (vec![784, 256, 256, 256, 10], 128),
                min_runs: 2,
                max_runs: 5,
                budget: Duration::from_millis(600),
            }
        } else {
            Sizes {
                matmul: vec![256, 512, 1024, 2048, 4096],
                eigh: vec![(4096, 32), (1024, 64), (64, 256), (8, 512)],
                layer_widths: vec![64, 128, 256, 512],
                layer_batch: 256,
                whiten: (256, 512, vec![16, 64]),
                mlp: (vec![784, 512, 512, 512, 10], 256),
                min_runs: 3,
                max_runs: 7,
                budget: Duration::from_secs(4),
            }
        }
    }
}

/// One line of the table.
#[derive(Default)]
struct Row {
    workload: String,
    size: String,
    variant: String,
    gpu_wall_ms: f64,
    gpu_kernel_ms: Option<f64>,
    cpu_ref_ms: f64,
    /// The strongest CPU library's time and its name.
    cpu_best: Option<(f64, String)>,
    dispatches: usize,
    /// Pipeline barriers per step, for compiled plans.
    barriers: Option<usize>,
    /// Host µs to record one step (or kernel) and to submit it.
    host_record_us: f64,
    host_submit_us: f64,
    notes: String,
}

/// Column names of the CSV (the Markdown table uses readable ones in the same order).
const CSV_HEADER: &str = "workload,size,variant,gpu_wall_ms,gpu_kernel_ms,cpu_ref_ms,\
cpu_best_ms,cpu_best_lib,ref_over_gpu,best_over_gpu,dispatches,barriers,host_record_us,\
host_submit_us,record_us_per_dispatch,notes";

impl Row {
    fn ratio_ref(&self) -> f64 {
        self.cpu_ref_ms / self.gpu_wall_ms
    }

    fn ratio_best(&self) -> Option<f64> {
        self.cpu_best.as_ref().map(|b| b.0 / self.gpu_wall_ms)
    }

    fn host_per_dispatch(&self) -> f64 {
        self.host_record_us / self.dispatches.max(1) as f64
    }

    /// The fields in CSV order, numbers in full precision.
    fn csv_fields(&self) -> Vec<String> {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        vec![
            self.workload.clone(),
            self.size.clone(),
            self.variant.clone(),
            format!("{:.6}", self.gpu_wall_ms),
            opt(self.gpu_kernel_ms),
            format!("{:.6}", self.cpu_ref_ms),
            opt(self.cpu_best.as_ref().map(|b| b.0)),
            self.cpu_best
                .as_ref()
                .map(|b| b.1.clone())
                .unwrap_or_default(),
            format!("{:.6}", self.ratio_ref()),
            opt(self.ratio_best()),
            self.dispatches.to_string(),
            self.barriers.map(|b| b.to_string()).unwrap_or_default(),
            format!("{:.3}", self.host_record_us),
            format!("{:.3}", self.host_submit_us),
            format!("{:.3}", self.host_per_dispatch()),
            self.notes.clone(),
        ]
    }

    /// The fields for the printed table, rounded for reading.
    fn display_fields(&self) -> Vec<String> {
        let best = self
            .cpu_best
            .as_ref()
            .map(|(ms, lib)| format!("{} ({lib})", ms3(*ms)))
            .unwrap_or_else(|| "—".into());
        vec![
            self.workload.clone(),
            self.size.clone(),
            self.variant.clone(),
            ms3(self.gpu_wall_ms),
            self.gpu_kernel_ms.map(ms3).unwrap_or_else(|| "—".into()),
            ms3(self.cpu_ref_ms),
            best,
            ratio(self.ratio_ref()),
            self.ratio_best().map(ratio).unwrap_or_else(|| "—".into()),
            self.dispatches.to_string(),
            self.barriers
                .map(|b| b.to_string())
                .unwrap_or_else(|| "—".into()),
            format!("{:.0}", self.host_record_us),
            format!("{:.0}", self.host_submit_us),
            format!("{:.2}", self.host_per_dispatch()),
            self.notes.clone(),
        ]
    }
}

const DISPLAY_HEADER: [&str; 15] = [
    "workload",
    "size",
    "variant",
    "GPU wall ms",
    "GPU kernel ms",
    "CPU ref ms",
    "best CPU ms",
    "ref/GPU",
    "best/GPU",
    "dispatches",
    "barriers",
    "record µs",
    "submit µs",
    "record µs/disp",
    "notes",
];

/// Milliseconds with three significant digits.
fn ms3(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

fn ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

/// Runs `f` at least `min_runs` times and at most `max_runs`, stopping once `budget` has
/// passed — or after fewer than `min_runs` once three budgets have (a workload that takes
/// minutes per run on a software adapter is run once or twice). Returns every result.
fn repeat<T>(sizes: &Sizes, mut f: impl FnMut() -> BenchResult<T>) -> BenchResult<Vec<T>> {
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < sizes.max_runs
        && (out.len() < sizes.min_runs || start.elapsed() < sizes.budget)
        && (out.is_empty() || start.elapsed() < 3 * sizes.budget)
    {
        out.push(f()?);
    }
    Ok(out)
}

/// Median of `xs` (NaN when empty).
fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}

/// Median milliseconds of `f` on the host clock.
fn cpu_ms(sizes: &Sizes, mut f: impl FnMut()) -> BenchResult<f64> {
    let times = repeat(sizes, || {
        let t = Instant::now();
        f();
        Ok(t.elapsed().as_secs_f64() * 1e3)
    })?;
    Ok(median(times))
}

/// Medians over profiles.
struct Summary {
    wall_ms: f64,
    kernel_ms: Option<f64>,
    record_us: f64,
    submit_us: f64,
}

fn summarise(profiles: &[StepProfile]) -> Summary {
    let of = |f: fn(&StepProfile) -> f64| median(profiles.iter().map(f).collect());
    let gpu: Option<Vec<f64>> = profiles.iter().map(|p| p.gpu_ms).collect();
    Summary {
        wall_ms: of(|p| p.wall_ms),
        kernel_ms: gpu.map(median),
        record_us: of(|p| p.host_record_us),
        submit_us: of(|p| p.host_submit_us),
    }
}
/// Values written at every step, with their data.
type Inputs = Vec<(Value, Vec<f32>)>;

/// The training step the layer rows time: MSE of `y` against target `t`, plain SGD (lr 1e-2),
/// and seeded Gaussian data for the input `x` and the target.
fn regression_step(
    g: &mut Graph,
    x: Value,
    y: Value,
    t: Value,
    seed: u64,
) -> BenchResult<(Value, Inputs)> {
    let loss = g.mse(y, t)?;
    Sgd {
        momentum: 0.0,
        ..Sgd::new(1e-2)
    }
    .minimize(g, loss)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let inputs = [x, t]
        .into_iter()
        .map(|v| {
            let n = g.try_shape(v)?.iter().product();
            Ok((v, gaussian(&mut rng, n, 1.0)))
        })
        .collect::<eigengrad::Result<_>>()?;
    Ok((loss, inputs))
}

fn gaussian(rng: &mut StdRng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| std * rng.sample::<f32, _>(StandardNormal))
        .collect()
}

/// Everything a workload needs: device, sizes, CPU threads, the rows so far.
struct Bench {
    device: Device,
    sizes: Sizes,
    threads: usize,
    timer: Option<PassTimer>,
    rows: Vec<Row>,
    /// Where bench.csv and bench.md go (rewritten after every row, so an interrupted run
    /// leaves what it measured).
    out: PathBuf,
    mode: &'static str,
    load_start: String,
    tuning_line: String,
    started: Instant,
}

impl Bench {
    fn push(&mut self, row: Row) -> BenchResult<()> {
        eprintln!(
            "  {:<28} {:<18} {:<10} GPU {:>9} ms  CPU ref {:>9} ms{}",
            row.workload,
            row.size,
            row.variant,
            ms3(row.gpu_wall_ms),
            ms3(row.cpu_ref_ms),
            row.cpu_best
                .as_ref()
                .map(|(ms, lib)| format!("  {lib} {} ms", ms3(*ms)))
                .unwrap_or_default()
        );
        self.rows.push(row);
        self.save(false)
    }

    /// Writes bench.csv and bench.md; `finished: false` marks the Markdown as partial.
    fn save(&self, finished: bool) -> BenchResult<()> {
        let mut csv = format!("{CSV_HEADER}\n");
        for r in &self.rows {
            let fields: Vec<String> = r.csv_fields().iter().map(|f| csv_field(f)).collect();
            csv += &fields.join(",");
            csv.push('\n');
        }
        std::fs::write(self.out.join("bench.csv"), csv)?;
        let info = self.device.info();
        let md = format!(
            "# eigengrad bench ({mode}){partial}\n\n\
             - date: {date} (UTC)\n\
             - adapter: {info}\n\
             - CPU threads: {threads}; load average (1, 5, 15 min) at start {load_start}, \
             {now_or_end} {load}\n\
             - {tuning}\n\
             - timestamps: {ts}\n\
             - wall time of the run: {elapsed:.0} s\n\n\
             GPU wall: from the start of the call until the device finished (median). GPU \
             kernel: the device's own time, first pass begin to last pass end, from timestamp \
             queries. CPU ref: eigengrad's reference (nalgebra, one thread; for layers and MLPs \
             the reference executor on the same graph, f32). Best CPU: faer on every thread \
             (matmul; eigh parallel over the batch). ref/GPU and best/GPU: CPU time over GPU \
             wall time — above 1 the GPU is faster. record µs: CPU time to record one step (or \
             kernel) into a command buffer, also per dispatch; submit µs: CPU time inside \
             queue.submit (on a CPU adapter the device starts on the same cores meanwhile, so \
             this can include contention). Layer and MLP rows: warm = steady state, each solve \
             warm-started from the last step's eigenvectors; cold = every solve from V0 = I.\n\n\
             {table}",
            mode = self.mode,
            partial = if finished {
                ""
            } else {
                " — partial, still running"
            },
            date = utc_date(),
            threads = self.threads,
            load_start = self.load_start,
            now_or_end = if finished { "at end" } else { "now" },
            load = load_average(),
            tuning = self.tuning_line,
            ts = if info.timestamps {
                "yes (GPU kernel column)"
            } else {
                "no (GPU kernel column empty)"
            },
            elapsed = self.started.elapsed().as_secs_f64(),
            table = markdown_table(&self.rows),
        );
        std::fs::write(self.out.join("bench.md"), md)?;
        Ok(())
    }

    fn matmul(&mut self) -> BenchResult<()> {
        let device = self.device.clone();
        let mut rng = StdRng::seed_from_u64(1);
        // Warm-up: the first launch compiles the kernel.
        let (t, out) = (
            Tensor::zeros(&device, &[8, 8])?,
            Tensor::zeros(&device, &[8, 8])?,
        );
        let (_, dims) = matmul_shape(&[8, 8], &[8, 8], false, false)?;
        let d = matmul_dispatch(&device, &dims, t.buffer(), t.buffer(), out.buffer())?;
        time_pass(&device, None, 1, |p| d.record(p))?;
        for &n in &self.sizes.matmul.clone() {
            let (_, dims) = matmul_shape(&[n, n], &[n, n], false, false)?;
            let variant = matmul_variant(&device, &dims);
            let a = gaussian(&mut rng, n * n, 1.0);
            let b = gaussian(&mut rng, n * n, 1.0);
            let (ta, tb) = (
                Tensor::from_slice(&device, &[n, n], &a)?,
                Tensor::from_slice(&device, &[n, n], &b)?,
            );
            let tc = Tensor::zeros(&device, &[n, n])?;
            let d = matmul_dispatch(&device, &dims, ta.buffer(), tb.buffer(), tc.buffer())?;
            let profiles = repeat(&self.sizes, || {
                Ok(time_pass(&device, self.timer.as_ref(), 1, |p| d.record(p))?)
            })?;
            let Summary {
                wall_ms: wall,
                kernel_ms: kernel,
                record_us,
                submit_us,
            } = summarise(&profiles);
            let reference = cpu_ms(&self.sizes, || {
                std::hint::black_box(eigengrad::reference::matmul::matmul::<f32>(&a, &b, &dims));
            })?;
            let fa = faer::Mat::<f32>::from_fn(n, n, |i, j| a[i * n + j]);
            let fb = faer::Mat::<f32>::from_fn(n, n, |i, j| b[i * n + j]);
            let mut fc = faer::Mat::<f32>::zeros(n, n);
            let par = faer::Par::rayon(self.threads);
            let faer_ms = cpu_ms(&self.sizes, || {
                faer::linalg::matmul::matmul(
                    fc.as_mut(),
                    faer::Accum::Replace,
                    fa.as_ref(),
                    fb.as_ref(),
                    1.0f32,
                    par,
                )
            })?;
            let gflops = |ms: f64| dims.flops() as f64 / (ms * 1e6);
            self.push(Row {
                workload: "matmul".into(),
                size: format!("{n}x{n}x{n}"),
                variant: variant.name().into(),
                gpu_wall_ms: wall,
                gpu_kernel_ms: kernel,
                cpu_ref_ms: reference,
                cpu_best: Some((faer_ms, format!("faer {}T", self.threads))),
                dispatches: 1,
                barriers: None,
                host_record_us: record_us,
                host_submit_us: submit_us,
                notes: format!(
                    "GFLOPS: GPU {:.1} (kernel {}), nalgebra 1T {:.0}, faer {:.0}; {:?} product",
                    gflops(wall),
                    kernel
                        .map(|k| format!("{:.1}", gflops(k)))
                        .unwrap_or_else(|| "n/a".into()),
                    gflops(reference),
                    gflops(faer_ms),
                    dims.class()
                ),
            })?;
        }
        Ok(())
    }

    fn eigh(&mut self) -> BenchResult<()> {
        let device = self.device.clone();
        let mut rng = StdRng::seed_from_u64(2);
        faer::set_global_parallelism(faer::Par::Seq);
        // Warm-up on tiny problems: the first launch of each kernel compiles it (tens of ms
        // each on lavapipe); both solver paths, cold and warm-started.
        let sweeps = EighOptions::default().max_sweeps;
        let options = |max_sweeps, warm_start| EighOptions {
            max_sweeps,
            warm_start,
            ..EighOptions::default()
        };
        for n in [8, 66] {
            for warm_start in [WarmStart::Off, WarmStart::Given] {
                let plan = EighPlan::new(&device, 1, n, &options(1, warm_start))?;
                time_pass(&device, None, 0, |p| plan.record(p, 0))?;
            }
        }
        for &(batch, n) in &self.sizes.eigh.clone() {
            // Gram matrices of Gaussian 2n×n blocks (what an Eigen layer decomposes), and a
            // perturbed copy: one small optimizer step later.
            let mut a = Vec::with_capacity(batch * n * n);
            for _ in 0..batch {
                let w = gaussian(&mut rng, 2 * n * n, 1.0 / (2.0 * n as f32).sqrt());
                let wm = nalgebra::DMatrix::from_row_slice(2 * n, n, &w);
                let g = wm.transpose() * wm;
                a.extend((0..n * n).map(|k| g[(k / n, k % n)]));
            }
            let noise = gaussian(&mut rng, batch * n * n, 1e-3);
            let mut moved = a.clone();
            for m in 0..batch {
                for i in 0..n {
                    for j in 0..n {
                        let e = 0.5 * (noise[m * n * n + i * n + j] + noise[m * n * n + j * n + i]);
                        moved[m * n * n + i * n + j] += e;
                    }
                }
            }
            let cold = EighPlan::new(&device, batch, n, &options(sweeps, WarmStart::Off))?;
            cold.input().write(&a)?;
            let run = |plan: &EighPlan| {
                time_pass(
                    &device,
                    self.timer.as_ref(),
                    plan.dispatches_per_run(),
                    |p| plan.record(p, 0),
                )
            };
            let cold_profiles = repeat(&self.sizes, || Ok(run(&cold)?))?;
            let cold_sweeps = mean_sweeps(&device, &cold)?;
            let warm = EighPlan::new(&device, batch, n, &options(sweeps, WarmStart::Given))?;
            warm.input().write(&moved)?;
            let v0 = cold.vectors().to_vec()?;
            warm.warm_start()
                .expect("built with a warm start")
                .write(&v0)?;
            let warm_profiles = repeat(&self.sizes, || Ok(run(&warm)?))?;
            let warm_sweeps = mean_sweeps(&device, &warm)?;

            let reference = cpu_ms(&self.sizes, || {
                std::hint::black_box(eigengrad::reference::eigh::eigh_batched::<f32>(&a, n));
            })?;
            let mats: Vec<faer::Mat<f32>> = a
                .chunks(n * n)
                .map(|m| faer::Mat::from_fn(n, n, |i, j| m[i * n + j]))
                .collect();
            let threads = self.threads;
            let faer_ms = cpu_ms(&self.sizes, || {
                std::thread::scope(|s| {
                    for chunk in mats.chunks(mats.len().div_ceil(threads)) {
                        s.spawn(move || {
                            for m in chunk {
                                let e = m.self_adjoint_eigen(faer::Side::Lower);
                                std::hint::black_box(e.expect("faer eigh"));
                            }
                        });
                    }
                })
            })?;
            for (variant, profiles, sweeps) in [
                ("cold", &cold_profiles, cold_sweeps),
                ("warm", &warm_profiles, warm_sweeps),
            ] {
                let Summary {
                    wall_ms: wall,
                    kernel_ms: kernel,
                    record_us,
                    submit_us,
                } = summarise(profiles);
                self.push(Row {
                    workload: "eigh".into(),
                    size: format!("{batch}x{n}x{n}"),
                    variant: variant.into(),
                    gpu_wall_ms: wall,
                    gpu_kernel_ms: kernel,
                    cpu_ref_ms: reference,
                    cpu_best: Some((faer_ms, format!("faer {threads}T over batch"))),
                    dispatches: profiles[0].dispatches,
                    barriers: None,
                    host_record_us: record_us,
                    host_submit_us: submit_us,
                    notes: format!(
                        "{sweeps:.1} sweeps; per matrix: GPU {} ms, CPU ref {} ms; the CPU \
                         solves are the same for cold and warm",
                        ms3(wall / batch as f64),
                        ms3(reference / batch as f64)
                    ),
                })?;
            }
        }
        Ok(())
    }

    /// A single-layer model: x [batch, width] → layer → mse against a target, SGD 1e-2 (so
    /// the weights move and a warm start sees a realistic change). Returns the row group.
    fn layer(&mut self) -> BenchResult<()> {
        let batch = self.sizes.layer_batch;
        let modes: [(&str, Option<EigenMode>); 4] = [
            ("Linear", None),
            ("Eigen Clamp", Some(EigenMode::Clamp { lo: 0.9, hi: 1.1 })),
            ("Eigen Orthogonal", Some(EigenMode::Orthogonal)),
            ("Eigen Normalize", Some(EigenMode::Normalize)),
        ];
        for &width in &self.sizes.layer_widths.clone() {
            for (name, mode) in modes {
                let mut g = Graph::new();
                let x = g.input("x", &[batch, width])?;
                let t = g.input("target", &[batch, width])?;
                let init = Init::Normal {
                    std: 1.0 / (width as f32).sqrt(),
                };
                let mut s = Scope::new(&mut g, Mode::Train);
                let (y, eigen) = match mode {
                    None => {
                        let l = Linear::new(&mut s.scope("l"), width, width, init)?;
                        (l.forward(&mut s, x)?, None)
                    }
                    Some(m) => {
                        let l = EigenLayer::new(&mut s.scope("l"), width, width, m, init)?;
                        (l.forward(&mut s, x)?, Some(l.spectral))
                    }
                };
                let (loss, inputs) = regression_step(&mut g, x, y, t, width as u64)?;
                self.plan_rows(
                    &format!("layer {name}"),
                    &format!("{width}x{width}, batch {batch}"),
                    &g,
                    &[loss],
                    &inputs,
                    eigen,
                    "fwd+bwd+SGD",
                    PlanOptions::default(),
                )?;
            }
        }
        Ok(())
    }

    fn whiten(&mut self) -> BenchResult<()> {
        let (batch, features, groups) = self.sizes.whiten.clone();
        for group in groups {
            let mut g = Graph::new();
            let x = g.input("x", &[batch, features])?;
            let t = g.input("target", &[batch, features])?;
            let init = Init::Normal {
                std: 1.0 / (features as f32).sqrt(),
            };
            let mut s = Scope::new(&mut g, Mode::Train);
            let h = Linear::new(&mut s.scope("l"), features, features, init)?.forward(&mut s, x)?;
            let mode = WhitenMode::Zca { eps: 1e-3 };
            let (w, y) = EigenWhiten::new(&mut s.scope("white"), h, group, mode, 0.1)?;
            let (loss, inputs) = regression_step(&mut g, x, y, t, group as u64)?;
            self.plan_rows(
                "whiten ZCA",
                &format!("{batch}x{features}, group {group}"),
                &g,
                &[loss],
                &inputs,
                Some(w.spectral),
                "Linear+EigenWhiten fwd+bwd+SGD",
                PlanOptions::default(),
            )?;
        }
        Ok(())
    }

    fn mlp(&mut self) -> BenchResult<()> {
        let (widths, batch) = self.sizes.mlp.clone();
        let classes = *widths.last().expect("widths");
        for (name, kind) in [
            ("mlp plain", LayerKind::Plain),
            (
                "mlp Eigen Clamp",
                LayerKind::Eigen(EigenMode::Clamp { lo: 0.9, hi: 1.1 }),
            ),
        ] {
            let mut g = Graph::new();
            let x = g.input("x", &[batch, widths[0]])?;
            let t = g.input("targets", &[batch, classes])?;
            let spec = MlpSpec {
                widths: widths.clone(),
                activation: Activation::Tanh,
                kind,
                init_scale: 1.0,
                gains: GainPlacement::Logits,
            };
            let net = spec.build(&mut g, x)?;
            let loss = g.softmax_cross_entropy(net.logits, t)?;
            Adam::new(1e-3).minimize(&mut g, loss)?;
            let mut rng = StdRng::seed_from_u64(7);
            let xs: Vec<f32> = (0..batch * widths[0])
                .map(|_| rng.random_range(0.0..1.0))
                .collect();
            let mut ts = vec![0.0; batch * classes];
            for r in 0..batch {
                ts[r * classes + rng.random_range(0..classes)] = 1.0;
            }
            let spectral = net.layers.iter().find_map(|l| match l {
                eigengrad::nn::MlpLayer::Eigen(e) => Some(e.spectral),
                _ => None,
            });
            let sizes: Vec<String> = widths.iter().map(|w| w.to_string()).collect();
            let size = format!("{}, batch {batch}", sizes.join("-"));
            let inputs = [(x, xs), (t, ts)];
            // The plain network also without fusion and packing: what they save, same run.
            let mut runs = vec![PlanOptions::default()];
            if spectral.is_none() {
                runs.push(PlanOptions {
                    fuse: false,
                    pack_updates: false,
                });
            }
            for options in runs {
                self.plan_rows(
                    name,
                    &size,
                    &g,
                    &[loss],
                    &inputs,
                    spectral,
                    "Adam training step",
                    options,
                )?;
            }
        }
        Ok(())
    }

    /// Times a compiled graph on the GPU (warm steady state, and cold restarts of its
    /// eigendecompositions when it has any) and on the reference executor; pushes the rows.
    #[allow(clippy::too_many_arguments)]
    fn plan_rows(
        &mut self,
        workload: &str,
        size: &str,
        g: &Graph,
        outputs: &[Value],
        inputs: &[(Value, Vec<f32>)],
        spectral: Option<Value>,
        what: &str,
        options: PlanOptions,
    ) -> BenchResult<()> {
        let device = self.device.clone();
        let feed: Vec<(Value, &[f32])> = inputs.iter().map(|(v, d)| (*v, d.as_slice())).collect();
        let mut plan = GpuPlan::compile_with(&device, g, outputs, 1, options)?;
        // Warm-up steps: first launches, and the warm start settles.
        for _ in 0..2 {
            plan.step(&feed)?;
        }
        let warm = repeat(&self.sizes, || {
            // Step k + 1 is run k of the solves, cold when k is a multiple of the period.
            if plan.steps() % DEFAULT_COLD_RESTART_EVERY == 0 {
                plan.set_steps(plan.steps() + 1); // keep every timed step warm
            }
            Ok(plan.step_profiled(&feed)?)
        })?;
        let warm_sweeps = spectral
            .map(|s| plan.sweeps(s).map(|v| mean(&v)))
            .transpose()?;
        // Cold: the step count makes the next step restart every solve from V0 = I.
        let cold = match spectral {
            Some(_) => Some(repeat(&self.sizes, || {
                let period = DEFAULT_COLD_RESTART_EVERY;
                plan.set_steps((plan.steps() / period + 1) * period);
                Ok(plan.step_profiled(&feed)?)
            })?),
            None => None,
        };
        let cold_sweeps = spectral
            .map(|s| plan.sweeps(s).map(|v| mean(&v)))
            .transpose()?;
        plan.check_status()?;
        let loss = plan.read(outputs[0])?;
        if !loss.iter().all(|v| v.is_finite()) {
            return Err(format!("{workload} {size}: non-finite loss {loss:?}").into());
        }

        let mut reference = ReferencePlan::<f32>::compile(g, 1)?;
        let cpu = repeat(&self.sizes, || {
            let t = Instant::now();
            reference.step(&feed)?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })?;
        let cpu = median(cpu);
        let stats = plan.stats().clone();
        let variants: Vec<(&str, &Vec<StepProfile>, Option<f32>)> = match &cold {
            Some(c) => vec![("warm", &warm, warm_sweeps), ("cold", c, cold_sweeps)],
            None if options == PlanOptions::default() => vec![("-", &warm, None)],
            None => vec![("unfused", &warm, None)],
        };
        for (variant, profiles, sweeps) in variants {
            let Summary {
                wall_ms: wall,
                kernel_ms: kernel,
                record_us,
                submit_us,
            } = summarise(profiles);
            let mut notes = format!(
                "{what}; passes {}, solves {}",
                profiles[0].passes,
                plan.solves_per_step()
            );
            if let Some(s) = sweeps {
                let _ = write!(notes, "; {s:.1} sweeps");
            }
            let _ = write!(
                notes,
                "; upload {:.0} µs",
                median(profiles.iter().map(|p| p.host_upload_us).collect())
            );
            self.push(Row {
                workload: workload.into(),
                size: size.into(),
                variant: variant.into(),
                gpu_wall_ms: wall,
                gpu_kernel_ms: kernel,
                cpu_ref_ms: cpu,
                cpu_best: None,
                dispatches: stats.dispatches_per_step,
                barriers: Some(stats.barriers_per_step),
                host_record_us: record_us,
                host_submit_us: submit_us,
                notes,
            })?;
        }
        Ok(())
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

fn mean(v: &[u32]) -> f32 {
    v.iter().sum::<u32>() as f32 / v.len().max(1) as f32
}

/// Mean sweeps per matrix of the plan's last run.
fn mean_sweeps(device: &Device, plan: &EighPlan) -> BenchResult<f32> {
    Ok(mean(&read_words(device, plan.sweeps(), plan.batch())?))
}

/// The 1-, 5- and 15-minute load averages, or "n/a" off Linux.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// Today's UTC date as YYYY-MM-DD (civil-from-days, proleptic Gregorian).
fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The rows as an aligned Markdown table.
fn markdown_table(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(Row::display_fields).collect();
    let widths: Vec<usize> = (0..DISPLAY_HEADER.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .chain([DISPLAY_HEADER[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |fields: Vec<String>| {
        let padded: Vec<String> = fields
            .iter()
            .zip(&widths)
            .map(|(f, &w)| format!("{f}{}", " ".repeat(w - f.chars().count())))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(DISPLAY_HEADER.iter().map(|s| s.to_string()).collect());
    out += &line(widths.iter().map(|&w| "-".repeat(w)).collect());
    for r in cells {
        out += &line(r);
    }
    out
}

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
        rows: Vec::new(),
        out: args.out.clone(),
        mode,
        load_start,
        tuning_line,
        started: Instant::now(),
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
    let load_end = load_average();
    let elapsed = bench.started.elapsed().as_secs_f64();
    println!();
    print!("{}", markdown_table(&bench.rows));
    println!(
        "\n{} rows in {elapsed:.0} s; load average at end: {load_end}; ratios are CPU time / \
         GPU wall time (above 1: the GPU is faster)",
        bench.rows.len()
    );
    bench.save(true)?;
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
