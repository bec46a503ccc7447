//! The headline experiment: a deep tanh MLP trained with the same optimizer and budget in
//! several variants — plain dense layers, Eigen layers whose singular values are clamped to a
//! band, Eigen layers whose weights are orthogonal (polar factor), Eigen layers spectrally
//! normalised (W/σ_max) — from Gaussian initialisations of every scale asked for, beside a
//! shallow baseline (a plain network of two weight layers, the same width and budget): the
//! accuracy a deep network should reach. Plain deep nets vanish or saturate; the Eigen layers
//! hold the singular values of every weight, so the gradient reaches the first layer.
//!
//! Writes `curves.png` (training loss and test accuracy per epoch, one row per init scale),
//! `gradnorms.png` (‖∂L/∂W_l‖ per layer at the first and last step, log scale), `spectra.png`
//! (singular values of a few layers over training), and `metrics.csv`, `gradnorms.csv`,
//! `spectra.csv`, `summary.csv`, `summary.json`.
//!
//! ```text
//! cargo run --release --example deep_mlp          # embedded digits, depth 16, width 32
//! cargo run --release --example deep_mlp -- --fashion --depth 32 --width 64 --train-size 20000
//! # the full Fashion-MNIST at depth 64 on the CPU reference executor (no GPU needed)
//! cargo run --release --example deep_mlp -- --fashion --depth 64 --width 64 --batch 128 \
//!     --stack --cosine --lr 5e-4 --executor reference
//! ```

mod common;

use clap::{Parser, ValueEnum};
use common::cli::{log_line, progress, secs, setup, standardize, CommonArgs, Setup};
use common::plot::{plot_panels, training_curve_panels, Panel, Series, PALETTE};
use common::table::{fmt, write_csv, write_json, Table};
use common::train::{Built, Executor, Trainer};
use common::DemoResult;
use eigengrad::data::Batcher;
use eigengrad::graph::{Plan, Schedule};
use eigengrad::nn::{Activation, EigenMode, GainPlacement, LayerKind, MlpLayer, MlpSpec};
use eigengrad::optim::Adam;
use serde_json::json;
use std::time::Instant;

/// The networks compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Variant {
    /// The shallow baseline: plain dense layers, two weight layers (one hidden layer).
    Shallow,
    /// Plain dense layers.
    Plain,
    /// Eigen layers with singular values clamped to [--band-lo, --band-hi].
    Clamp,
    /// Eigen layers with orthogonal weights (every singular value 1).
    Orthogonal,
    /// Eigen layers with spectrally normalised weights (W/σ_max).
    Normalize,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Shallow => "shallow",
            Variant::Plain => "plain",
            Variant::Clamp => "eigen-clamp",
            Variant::Orthogonal => "eigen-orthogonal",
            Variant::Normalize => "eigen-normalize",
        }
    }

    /// A colour per variant, the same in every figure.
    fn color(self) -> plotters::style::RGBColor {
        PALETTE[self as usize]
    }

    fn is_plain(self) -> bool {
        matches!(self, Variant::Plain | Variant::Shallow)
    }
}

/// Deep tanh MLP: plain layers against Eigen layers (clamped, orthogonal or normalised
/// spectra) and a shallow baseline, from one or several initialisation scales.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Weight layers (depth − 1 hidden layers) [default: 16; 4 with --quick].
    #[arg(long)]
    depth: Option<usize>,
    /// Hidden width [default: 32; 16 with --quick].
    #[arg(long)]
    width: Option<usize>,
    /// Training epochs for every variant [default: 10; 2 with --quick].
    #[arg(long)]
    epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Adam learning rate (the same for every variant).
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// Gaussian initialisation scales s, comma-separated: weights ~ N(0, s²/fan_in); every
    /// variant is trained from each (Eigen layers store their raw weights at one scale and
    /// `Clamp` multiplies its by s; `Orthogonal` and `Normalize` do not depend on s).
    #[arg(long, value_delimiter = ',', default_values_t = [0.5, 1.0, 2.0])]
    init_scale: Vec<f32>,
    /// Lower end of the singular-value band of the clamp variant.
    #[arg(long, default_value_t = EigenMode::DEFAULT_CLAMP_LO)]
    band_lo: f32,
    /// Upper end of the singular-value band of the clamp variant.
    #[arg(long, default_value_t = EigenMode::DEFAULT_CLAMP_HI)]
    band_hi: f32,
    /// Variants to train, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["shallow", "plain", "clamp", "orthogonal", "normalize"])]
    variants: Vec<Variant>,
    /// Which Eigen layers carry a learnable gain: none, logits or every.
    #[arg(long, default_value = "every")]
    gains: GainPlacement,
    /// Decay the learning rate along a half cosine to 0 at the last step, after a linear
    /// warmup over the first half epoch (the same for every variant).
    #[arg(long)]
    cosine: bool,
    /// Build the equal hidden Eigen layers as one stack (`MlpSpec::stack`): the same network
    /// with one batched launch per weight op for all of them, from other random draws.
    #[arg(long)]
    stack: bool,
    /// Test accuracy whose first epoch the summary reports.
    #[arg(long, default_value_t = 0.8)]
    target: f64,
    /// Read the Jacobi sweep counts every this many steps (reading waits for the device;
    /// 7 is coprime to the cold restart every 100 steps, so those are sampled fairly).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    sweep_every: u64,
    /// Training images used to measure the training loss after each epoch.
    #[arg(long, default_value_t = 2000)]
    eval_train: usize,
    /// Which executor trains: the GPU plan, or the CPU reference executor (f32, the same
    /// graph), which on a machine without a GPU runs these narrow networks many times faster
    /// than lavapipe (it counts no Jacobi sweeps).
    #[arg(long, value_enum, default_value = "gpu")]
    executor: Executor,
}

/// Numbers of one epoch of one variant (epoch 0: at initialisation).
#[derive(Clone, Debug)]
struct EpochRow {
    epoch: usize,
    train_loss: f64,
    train_accuracy: f64,
    test_loss: f64,
    test_accuracy: f64,
    /// Seconds of training steps this epoch (0 for epoch 0).
    seconds: f64,
}

/// Singular values of one layer at one epoch, largest σ(W) first.
struct Spectrum {
    layer: usize,
    epoch: usize,
    /// σ of the weight the layer applies (W' for an Eigen layer).
    sigma: Vec<f64>,
    /// σ of the raw weight W, direction by direction with `sigma`.
    raw: Vec<f64>,
    /// The layer's gain γ (included in `sigma`; 1 for a layer without one).
    gain: f64,
}

/// Everything measured for one variant.
struct Run {
    variant: Variant,
    init_scale: f32,
    rows: Vec<EpochRow>,
    grad_start: Vec<f64>,
    grad_end: Vec<f64>,
    spectra: Vec<Spectrum>,
    sweeps: Vec<f32>,
    /// (layer, γ) of every layer with a gain, at the end of training.
    gains: Vec<(usize, f32)>,
    failure: Option<String>,
}

impl Run {
    /// "variant s=…", the run's name in logs and legends.
    fn label(&self) -> String {
        format!("{} s={}", self.variant.name(), self.init_scale)
    }

    fn final_row(&self) -> &EpochRow {
        self.rows.last().expect("epoch 0 is always recorded")
    }

    fn best_accuracy(&self) -> f64 {
        self.rows
            .iter()
            .map(|r| r.test_accuracy)
            .fold(0.0, f64::max)
    }

    fn epochs_to(&self, target: f64) -> Option<usize> {
        self.rows
            .iter()
            .find(|r| r.epoch > 0 && r.test_accuracy >= target)
            .map(|r| r.epoch)
    }

    fn seconds_per_epoch(&self) -> f64 {
        let t: Vec<f64> = self.rows.iter().skip(1).map(|r| r.seconds).collect();
        t.iter().sum::<f64>() / t.len().max(1) as f64
    }

    fn mean_sweeps(&self) -> f64 {
        if self.sweeps.is_empty() {
            f64::NAN
        } else {
            self.sweeps.iter().map(|&s| s as f64).sum::<f64>() / self.sweeps.len() as f64
        }
    }

    /// The gain of the last layer (the logits), if it has one.
    fn logits_gain(&self) -> Option<f32> {
        let last = self.grad_start.len().checked_sub(1)?;
        self.gains.iter().find(|(l, _)| *l == last).map(|g| g.1)
    }

    /// The mean gain of the hidden layers that have one.
    fn mean_hidden_gain(&self) -> Option<f32> {
        let last = self.grad_start.len().checked_sub(1)?;
        let hidden: Vec<f32> = self
            .gains
            .iter()
            .filter(|(l, _)| *l != last)
            .map(|g| g.1)
            .collect();
        (!hidden.is_empty()).then(|| hidden.iter().sum::<f32>() / hidden.len() as f32)
    }
}

/// Singular values of layer `l` now: an Eigen layer's σ(W) and σ(W') from its own
/// eigendecomposition on the device (at the last step, W' with its gain), a plain layer's σ(W)
/// by an SVD of its current W on the CPU.
fn layer_spectrum(
    plan: &dyn Plan,
    layers: &[MlpLayer],
    l: usize,
    epoch: usize,
) -> DemoResult<Spectrum> {
    let gain = match &layers[l] {
        MlpLayer::Eigen(e) => e.gain_value(plan)? as f64,
        MlpLayer::Plain(_) => 1.0,
    };
    let (raw, applied): (Vec<f64>, Vec<f64>) = match &layers[l] {
        MlpLayer::Eigen(e) => {
            let (raw, applied) = e.singular_values(plan)?;
            raw.iter()
                .zip(&applied)
                .map(|(&r, &a)| (r as f64, a as f64))
                .unzip()
        }
        MlpLayer::Plain(p) => {
            let shape = plan.graph().try_shape(p.weight)?.to_vec();
            let w = plan.read(p.weight)?;
            let m = nalgebra::DMatrix::<f64>::from_fn(shape[0], shape[1], |i, j| {
                w[i * shape[1] + j] as f64
            });
            let sv: Vec<f64> = m.singular_values().iter().copied().collect();
            (sv.clone(), sv)
        }
    };
    let mut order: Vec<usize> = (0..raw.len()).collect();
    order.sort_by(|&a, &b| raw[b].total_cmp(&raw[a]));
    Ok(Spectrum {
        layer: l,
        epoch,
        sigma: order.iter().map(|&i| applied[i]).collect(),
        raw: order.iter().map(|&i| raw[i]).collect(),
        gain,
    })
}

/// Mean Jacobi sweeps over the Eigen layers of the last step.
fn mean_sweeps(plan: &dyn Plan, layers: &[MlpLayer]) -> DemoResult<Option<f32>> {
    let mut s = Vec::new();
    for l in layers {
        if let MlpLayer::Eigen(e) = l {
            s.push(e.sweeps(plan)?);
        }
    }
    Ok((!s.is_empty()).then(|| s.iter().sum::<f32>() / s.len() as f32))
}

struct Config {
    depth: usize,
    width: usize,
    epochs: usize,
}

/// The layer kind of `variant` and its number of weight layers.
fn architecture(args: &Args, cfg: &Config, variant: Variant) -> (LayerKind, usize) {
    match variant {
        Variant::Shallow => (LayerKind::Plain, 2),
        Variant::Plain => (LayerKind::Plain, cfg.depth),
        Variant::Clamp => (
            LayerKind::Eigen(EigenMode::Clamp {
                lo: args.band_lo,
                hi: args.band_hi,
            }),
            cfg.depth,
        ),
        Variant::Orthogonal => (LayerKind::Eigen(EigenMode::Orthogonal), cfg.depth),
        Variant::Normalize => (LayerKind::Eigen(EigenMode::Normalize), cfg.depth),
    }
}

/// Adam at `--lr`, with the `--cosine` schedule over `cfg.epochs` epochs of `train_n` images.
fn adam(args: &Args, cfg: &Config, train_n: usize) -> Adam {
    let mut adam = Adam::new(args.lr);
    if args.cosine {
        // The batcher drops a last partial batch.
        let steps_per_epoch = (train_n / args.batch) as u64;
        adam.schedule = Schedule::WarmupCosine {
            warmup: steps_per_epoch / 2,
            total: cfg.epochs as u64 * steps_per_epoch,
            floor: 0.0,
        };
    }
    adam
}

fn train_variant(
    args: &Args,
    cfg: &Config,
    s: &Setup,
    variant: Variant,
    init_scale: f32,
    spectra_layers: &[usize],
) -> DemoResult<Run> {
    let (train, test) = (&s.train, &s.test);
    let (kind, depth) = architecture(args, cfg, variant);
    let mut widths = vec![train.features];
    widths.extend(std::iter::repeat_n(cfg.width, depth - 1));
    widths.push(train.classes);
    let spec = MlpSpec {
        widths,
        activation: Activation::Tanh,
        kind,
        init_scale,
        gains: args.gains,
        stack: args.stack,
    };
    // The shallow baseline is there for its accuracy; its layers are not the deep ones.
    let spectra_layers = if variant == Variant::Shallow {
        &[][..]
    } else {
        spectra_layers
    };
    let eval_batch = 500.min(test.n.max(args.eval_train.min(train.n)));
    let mut trainer = Trainer::new(
        args.executor,
        &s.device,
        train.features,
        train.classes,
        args.batch,
        eval_batch,
        adam(args, cfg, train.n),
        args.common.seed,
        |g, x, _train| {
            let net = spec.build(g, x)?;
            Ok(Built {
                logits: net.logits,
                tracked: net.layers.iter().map(|l| l.weight()).collect(),
                net: net.layers,
            })
        },
    )?;
    let mut batcher = Batcher::new(train, args.batch, args.common.seed)?;
    let steps_per_epoch = batcher.batches_per_epoch();
    let mut run = Run {
        variant,
        init_scale,
        rows: Vec::new(),
        grad_start: Vec::new(),
        grad_end: Vec::new(),
        spectra: Vec::new(),
        sweeps: Vec::new(),
        gains: Vec::new(),
        failure: None,
    };
    let pb = progress((cfg.epochs * steps_per_epoch) as u64, &run.label());
    let evaluate = |trainer: &mut Trainer<Vec<MlpLayer>>, epoch, seconds| -> DemoResult<EpochRow> {
        let tr = trainer.evaluate(train, args.eval_train)?;
        let te = trainer.evaluate(test, usize::MAX)?;
        Ok(EpochRow {
            epoch,
            train_loss: tr.loss,
            train_accuracy: tr.accuracy,
            test_loss: te.loss,
            test_accuracy: te.accuracy,
            seconds,
        })
    };
    run.rows.push(evaluate(&mut trainer, 0, 0.0)?);
    // A plain layer's spectrum at initialisation is read before the first step; an Eigen
    // layer's comes from the first step's eigendecomposition, which sees the initial W.
    if variant.is_plain() {
        for &l in spectra_layers {
            run.spectra
                .push(layer_spectrum(trainer.plan.as_ref(), &trainer.net, l, 0)?);
        }
    }
    'epochs: for epoch in 1..=cfg.epochs {
        // Seconds per epoch: wall time of the steps, including the periodic sweep-count
        // reads (each waits for the device), excluding the first-step introspection.
        let t0 = Instant::now();
        let mut introspection = 0.0;
        for batch in batcher.epoch() {
            trainer.step(&batch)?;
            let step = trainer.plan.steps();
            if step == 1 {
                s.device.synchronize()?;
                let t = Instant::now();
                run.grad_start = trainer.grad_norms()?;
                if !variant.is_plain() {
                    for &l in spectra_layers {
                        run.spectra.push(layer_spectrum(
                            trainer.plan.as_ref(),
                            &trainer.net,
                            l,
                            0,
                        )?);
                    }
                }
                introspection += secs(t);
            }
            if args.executor == Executor::Gpu && step % args.sweep_every == 0 {
                if let Some(sw) = mean_sweeps(trainer.plan.as_ref(), &trainer.net)? {
                    run.sweeps.push(sw);
                }
            }
            pb.inc(1);
        }
        let loss = trainer.last_loss()?;
        let seconds = secs(t0) - introspection;
        if let Err(e) = trainer.plan.check_status() {
            run.failure = Some(format!("epoch {epoch}: {e}"));
        } else if !loss.is_finite() {
            run.failure = Some(format!("epoch {epoch}: training loss {loss}"));
        }
        let row = evaluate(&mut trainer, epoch, seconds)?;
        log_line(
            &pb,
            &format!(
                "{:>22} epoch {epoch:>3}: train loss {:.4}, test loss {:.4}, test accuracy {:.3} ({:.2} s)",
                run.label(),
                row.train_loss,
                row.test_loss,
                row.test_accuracy,
                seconds
            ),
        );
        run.rows.push(row);
        for &l in spectra_layers {
            run.spectra.push(layer_spectrum(
                trainer.plan.as_ref(),
                &trainer.net,
                l,
                epoch,
            )?);
        }
        if run.failure.is_some() {
            break 'epochs;
        }
    }
    run.grad_end = trainer.grad_norms()?;
    for (l, layer) in trainer.net.iter().enumerate() {
        if let MlpLayer::Eigen(e) = layer {
            if e.gain.is_some() {
                run.gains.push((l, e.gain_value(trainer.plan.as_ref())?));
            }
        }
    }
    pb.finish_and_clear();
    if let Some(f) = &run.failure {
        eprintln!("{}: stopped: {f}", run.label());
    }
    Ok(run)
}

fn main() -> std::process::ExitCode {
    common::cli::finish(run(Args::parse()))
}

fn run(args: Args) -> DemoResult<()> {
    let q = args.common.quick;
    let cfg = Config {
        depth: args.depth.unwrap_or(if q { 4 } else { 16 }),
        width: args.width.unwrap_or(if q { 16 } else { 32 }),
        epochs: args.epochs.unwrap_or(if q { 2 } else { 10 }),
    };
    if cfg.depth < 2 || cfg.width == 0 || cfg.epochs == 0 || args.variants.is_empty() {
        return Err("need --depth ≥ 2, --width ≥ 1, --epochs ≥ 1 and at least one variant".into());
    }
    if args.init_scale.is_empty() || args.init_scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(format!(
            "--init-scale needs positive scales, got {:?}",
            args.init_scale
        )
        .into());
    }
    let mut s = setup(&args.common, "deep_mlp")?;
    standardize(&mut s.train, &mut s.test)?;
    let scales: Vec<String> = args.init_scale.iter().map(|s| s.to_string()).collect();
    println!(
        "model: tanh MLP, {} weight layers of width {} (init N(0, s²/fan_in), s ∈ {{{}}}), gains on {:?} Eigen layers{}, Adam lr {}{}, batch {}, {} epochs; shallow baseline: 2 weight layers",
        cfg.depth,
        cfg.width,
        scales.join(", "),
        args.gains,
        if args.stack { ", hidden ones stacked" } else { "" },
        args.lr,
        if args.cosine { " (half-epoch warmup, cosine to 0)" } else { "" },
        args.batch,
        cfg.epochs
    );
    let mut spectra_layers = vec![0, cfg.depth / 2, cfg.depth - 2];
    spectra_layers.dedup();

    let mut runs = Vec::new();
    for &scale in &args.init_scale {
        for &v in &args.variants {
            runs.push(train_variant(&args, &cfg, &s, v, scale, &spectra_layers)?);
        }
    }

    // Numbers.
    let mut metrics = Vec::new();
    for r in &runs {
        for e in &r.rows {
            metrics.push(vec![
                r.variant.name().to_string(),
                r.init_scale.to_string(),
                e.epoch.to_string(),
                format!("{:.6}", e.train_loss),
                format!("{:.5}", e.train_accuracy),
                format!("{:.6}", e.test_loss),
                format!("{:.5}", e.test_accuracy),
                format!("{:.4}", e.seconds),
            ]);
        }
    }
    write_csv(
        &s.out.join("metrics.csv"),
        &[
            "variant",
            "init_scale",
            "epoch",
            "train_loss",
            "train_accuracy",
            "test_loss",
            "test_accuracy",
            "seconds",
        ],
        &metrics,
    )?;
    let mut grads = Vec::new();
    for r in &runs {
        for (l, (a, b)) in r.grad_start.iter().zip(&r.grad_end).enumerate() {
            grads.push(vec![
                r.variant.name().to_string(),
                r.init_scale.to_string(),
                l.to_string(),
                format!("{a:.6e}"),
                format!("{b:.6e}"),
            ]);
        }
    }
    write_csv(
        &s.out.join("gradnorms.csv"),
        &["variant", "init_scale", "layer", "first_step", "last_step"],
        &grads,
    )?;
    let mut spec_rows = Vec::new();
    for r in &runs {
        for sp in &r.spectra {
            for (i, (sg, raw)) in sp.sigma.iter().zip(&sp.raw).enumerate() {
                spec_rows.push(vec![
                    r.variant.name().to_string(),
                    r.init_scale.to_string(),
                    sp.layer.to_string(),
                    sp.epoch.to_string(),
                    i.to_string(),
                    format!("{sg:.6e}"),
                    format!("{raw:.6e}"),
                    format!("{:.6e}", sp.gain),
                ]);
            }
        }
    }
    write_csv(
        &s.out.join("spectra.csv"),
        &[
            "variant",
            "init_scale",
            "layer",
            "epoch",
            "index",
            "sigma",
            "sigma_raw",
            "gain",
        ],
        &spec_rows,
    )?;

    // Figures: one row of panels per init scale, one colour per variant.
    let at_scale = |scale: f32| runs.iter().filter(move |r| r.init_scale == scale);
    let setting = |scale: f32| format!("depth {}, width {}, s = {scale}", cfg.depth, cfg.width);
    let curve = |scale: f32, f: fn(&EpochRow) -> f64| -> Vec<Series> {
        at_scale(scale)
            .map(|r| {
                Series::new(
                    r.variant.name(),
                    r.rows.iter().map(|e| (e.epoch as f64, f(e))).collect(),
                    r.variant.color(),
                )
            })
            .collect()
    };
    let mut curve_panels = Vec::new();
    for &scale in &args.init_scale {
        curve_panels.extend(training_curve_panels(
            &setting(scale),
            curve(scale, |e| e.train_loss),
            curve(scale, |e| e.test_accuracy),
        ));
    }
    plot_panels(&s.out.join("curves.png"), 2, (640, 440), &curve_panels)?;
    let grad_series = |scale: f32, f: fn(&Run) -> &Vec<f64>| -> Vec<Series> {
        at_scale(scale)
            .map(|r| {
                Series::new(
                    r.variant.name(),
                    f(r).iter()
                        .enumerate()
                        .map(|(l, &g)| ((l + 1) as f64, g))
                        .collect(),
                    r.variant.color(),
                )
            })
            .collect()
    };
    let mut grad_panels = Vec::new();
    for &scale in &args.init_scale {
        for (when, f) in [
            ("first", (|r: &Run| &r.grad_start) as fn(&Run) -> &Vec<f64>),
            ("last", |r: &Run| &r.grad_end),
        ] {
            grad_panels.push(Panel {
                title: format!("‖∂L/∂W_l‖ at the {when} step, s = {scale}"),
                x_label: "layer l (input side first)".into(),
                y_label: "gradient norm (log scale)".into(),
                series: grad_series(scale, f),
                log_y: true,
                y_range: None,
            });
        }
    }
    plot_panels(&s.out.join("gradnorms.png"), 2, (640, 440), &grad_panels)?;
    let mut panels = Vec::new();
    for r in runs.iter().filter(|r| r.variant != Variant::Shallow) {
        let last = r.rows.last().map_or(0, |e| e.epoch);
        let mut shown = vec![0, last / 3, (2 * last) / 3, last];
        shown.dedup();
        for &l in &spectra_layers {
            let series = shown
                .iter()
                .enumerate()
                .filter_map(|(k, &ep)| {
                    let sp = r
                        .spectra
                        .iter()
                        .find(|sp| sp.layer == l && sp.epoch == ep)?;
                    let pts = sp
                        .sigma
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| ((i + 1) as f64, v))
                        .collect();
                    let mut se = Series::new(&format!("epoch {ep}"), pts, PALETTE[k]);
                    se.markers = false;
                    Some(se)
                })
                .collect();
            panels.push(Panel {
                title: format!(
                    "{}: layer {}, σ({})",
                    r.label(),
                    l + 1,
                    if r.variant.is_plain() { "W" } else { "W'" }
                ),
                x_label: "index (largest first)".into(),
                y_label: "singular value (log scale)".into(),
                series,
                log_y: true,
                y_range: None,
            });
        }
    }
    if !panels.is_empty() {
        plot_panels(
            &s.out.join("spectra.png"),
            spectra_layers.len(),
            (420, 320),
            &panels,
        )?;
    }

    // Summary.
    let mut table = Table::new(&[
        "variant",
        "s",
        "final test acc",
        "best test acc",
        &format!("epochs to {:.0}%", args.target * 100.0),
        "final train loss",
        "logits gain",
        "mean hidden gain",
        "s/epoch",
        "sweeps/step",
        "‖∂L/∂W_1‖ first step",
        "status",
    ]);
    for r in &runs {
        let f = r.final_row();
        table.push(vec![
            r.variant.name().to_string(),
            r.init_scale.to_string(),
            fmt(f.test_accuracy, 3),
            fmt(r.best_accuracy(), 3),
            r.epochs_to(args.target)
                .map_or("—".into(), |e| e.to_string()),
            fmt(f.train_loss, 4),
            r.logits_gain().map_or("—".into(), |g| fmt(g as f64, 3)),
            r.mean_hidden_gain()
                .map_or("—".into(), |g| fmt(g as f64, 3)),
            fmt(r.seconds_per_epoch(), 2),
            fmt(r.mean_sweeps(), 2),
            r.grad_start
                .first()
                .map_or("—".into(), |g| format!("{g:.2e}")),
            r.failure.as_ref().map_or("ok".into(), |_| "stopped".into()),
        ]);
    }
    table.write_csv(&s.out.join("summary.csv"))?;
    let summary = json!({
        "demo": "deep_mlp",
        "adapter": s.device.info().name,
        "backend": format!("{:?}", s.device.info().backend),
        "data": s.data,
        "depth": cfg.depth,
        "width": cfg.width,
        "epochs": cfg.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "init_scales": args.init_scale,
        "band": [args.band_lo, args.band_hi],
        "gains": format!("{:?}", args.gains),
        "target": args.target,
        "runs": runs.iter().map(|r| json!({
            "variant": r.variant.name(),
            "init_scale": r.init_scale,
            "depth": r.grad_start.len(),
            "initial_train_loss": r.rows[0].train_loss,
            "final_train_loss": r.final_row().train_loss,
            "final_test_accuracy": r.final_row().test_accuracy,
            "best_test_accuracy": r.best_accuracy(),
            "epochs_to_target": r.epochs_to(args.target),
            "seconds_per_epoch": r.seconds_per_epoch(),
            "mean_sweeps_per_step": if r.sweeps.is_empty() { None } else { Some(r.mean_sweeps()) },
            "grad_norm_first_step": r.grad_start,
            "grad_norm_last_step": r.grad_end,
            "gains": r.gains.iter().map(|(l, g)| json!({"layer": l, "gain": g})).collect::<Vec<_>>(),
            "failure": r.failure,
        })).collect::<Vec<_>>(),
    });
    write_json(&s.out.join("summary.json"), &summary)?;
    println!("\n{}", table.render());
    println!(
        "wrote curves.png, gradnorms.png, spectra.png, metrics.csv, gradnorms.csv, spectra.csv, summary.csv, summary.json to {}",
        s.out.display()
    );
    Ok(())
}
