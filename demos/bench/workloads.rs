//! The workloads: matmul, eigh, one layer's training step, whitening and an MLP step, each
//! timed on the GPU and on the CPU (reference executor, faer) and pushed as rows.

use crate::cli::Sizes;
use crate::measure::{cpu_ms, mean, mean_sweeps, median, repeat, summarise, Summary};
use crate::report::{ms3, Report, Row};
use crate::BenchResult;
use eigengrad::graph::gpu::{GpuPlan, PlanOptions, StepProfile};
use eigengrad::graph::reference::ReferencePlan;
use eigengrad::graph::{Graph, Init, Plan, Value};
use eigengrad::kernels::autotune::Variant;
use eigengrad::kernels::jacobi::{EighOptions, EighPlan, WarmStart, DEFAULT_COLD_RESTART_EVERY};
use eigengrad::kernels::matmul::{matmul_dispatch, matmul_shape, matmul_variant};
use eigengrad::nn::{
    Activation, EigenLayer, EigenMode, EigenWhiten, GainPlacement, LayerKind, Linear, MlpSpec,
    Mode, Scope, WhitenMode,
};
use eigengrad::optim::{Adam, Sgd};
use eigengrad::profile::{time_pass, PassTimer};
use eigengrad::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;
use std::fmt::Write as _;
use std::time::Instant;

/// Values written at every step, with their data.
type Inputs = Vec<(Value, Vec<f32>)>;

/// A regression graph's start: input `x` and target `t`, both `[batch, width]`, and the
/// Gaussian initialisation N(0, 1/width) its square layers use.
fn regression_graph(batch: usize, width: usize) -> BenchResult<(Graph, Value, Value, Init)> {
    let mut g = Graph::new();
    let x = g.input("x", &[batch, width])?;
    let t = g.input("target", &[batch, width])?;
    let init = Init::Normal {
        std: 1.0 / (width as f32).sqrt(),
    };
    Ok((g, x, t, init))
}

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

/// Everything a workload needs: device, sizes, CPU threads, the GPU pass timer, and the
/// report the rows go to.
pub struct Bench {
    /// The device the GPU rows run on.
    pub device: Device,
    /// The problem sizes of this mode.
    pub sizes: Sizes,
    /// CPU threads the CPU libraries may use.
    pub threads: usize,
    /// GPU timestamps around each pass, where the adapter has them.
    pub timer: Option<PassTimer>,
    /// Where the rows go.
    pub report: Report,
}

impl Bench {
    pub fn matmul(&mut self) -> BenchResult<()> {
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
            self.report.push(Row {
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

    pub fn eigh(&mut self) -> BenchResult<()> {
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
                self.report.push(Row {
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
    pub fn layer(&mut self) -> BenchResult<()> {
        let batch = self.sizes.layer_batch;
        let modes: [(&str, Option<EigenMode>); 4] = [
            ("Linear", None),
            ("Eigen Clamp", Some(EigenMode::Clamp { lo: 0.9, hi: 1.1 })),
            ("Eigen Orthogonal", Some(EigenMode::Orthogonal)),
            ("Eigen Normalize", Some(EigenMode::Normalize)),
        ];
        for &width in &self.sizes.layer_widths.clone() {
            for (name, mode) in modes {
                let (mut g, x, t, init) = regression_graph(batch, width)?;
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

    pub fn whiten(&mut self) -> BenchResult<()> {
        let (batch, features, groups) = self.sizes.whiten.clone();
        for group in groups {
            let (mut g, x, t, init) = regression_graph(batch, features)?;
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

    pub fn mlp(&mut self) -> BenchResult<()> {
        let (widths, batch) = self.sizes.mlp.clone();
        for (name, kind) in [
            ("mlp plain", LayerKind::Plain),
            (
                "mlp Eigen Clamp",
                LayerKind::Eigen(EigenMode::Clamp { lo: 0.9, hi: 1.1 }),
            ),
        ] {
            let spec = MlpSpec {
                widths: widths.clone(),
                activation: Activation::Tanh,
                kind,
                init_scale: 1.0,
                gains: GainPlacement::Logits,
                stack: false,
            };
            let sizes: Vec<String> = widths.iter().map(|w| w.to_string()).collect();
            let size = format!("{}, batch {batch}", sizes.join("-"));
            // The plain network also without fusion and packing: what they save, same run.
            self.classifier_rows(name, &size, &spec, batch, kind == LayerKind::Plain)?;
        }
        Ok(())
    }

    /// The deep narrow networks: `depth` tanh layers of `width` between 784 inputs and 10
    /// classes, plain, with Eigen layers, and with the hidden Eigen layers stacked.
    pub fn deep(&mut self) -> BenchResult<()> {
        let (depth, width, batch) = self.sizes.deep;
        let mut widths = vec![784];
        widths.extend(std::iter::repeat_n(width, depth - 1));
        widths.push(10);
        let size = format!("784 x{} {width}, batch {batch}", depth - 1);
        let eigen = LayerKind::Eigen(EigenMode::DEFAULT_CLAMP);
        for (name, kind, stack) in [
            ("deep plain", LayerKind::Plain, false),
            ("deep Eigen Clamp", eigen, false),
            ("deep Eigen Clamp stacked", eigen, true),
        ] {
            let spec = MlpSpec {
                widths: widths.clone(),
                activation: Activation::Tanh,
                kind,
                init_scale: 1.0,
                gains: GainPlacement::Every,
                stack,
            };
            self.classifier_rows(name, &size, &spec, batch, false)?;
        }
        Ok(())
    }

    /// Times an Adam step of `spec` on random images and labels at `batch` (and, with
    /// `unfused_too`, the same plan without fusion, packing and overlap): rows `name`, `size`.
    fn classifier_rows(
        &mut self,
        name: &str,
        size: &str,
        spec: &MlpSpec,
        batch: usize,
        unfused_too: bool,
    ) -> BenchResult<()> {
        let widths = &spec.widths;
        let classes = *widths.last().expect("widths");
        let mut g = Graph::new();
        let x = g.input("x", &[batch, widths[0]])?;
        let t = g.input("targets", &[batch, classes])?;
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
        let inputs = [(x, xs), (t, ts)];
        let mut runs = vec![PlanOptions::default()];
        if unfused_too {
            runs.push(PlanOptions {
                fuse: false,
                pack_updates: false,
                overlap: false,
            });
        }
        for options in runs {
            self.plan_rows(
                name,
                size,
                &g,
                &[loss],
                &inputs,
                spectral,
                "Adam training step",
                options,
            )?;
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
            self.report.push(Row {
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
