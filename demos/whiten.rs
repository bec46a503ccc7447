//! The principal-component layer on activations: the same tanh MLP trained without
//! whitening, with `EigenWhiten` in ZCA mode (decorrelate and rescale each group of
//! pre-activations through the eigendecomposition of its batch covariance), and in PCA mode
//! (project each group onto its top-k principal components). Evaluation graphs are built with
//! `train = false` and use the running statistics copied from the training plan.
//!
//! Writes `curves.png` (training loss, test accuracy), `explained_variance.png` (the
//! per-group spectrum each whitening layer saw at the last step), `metrics.csv`,
//! `explained_variance.csv`, `summary.csv` and `summary.json`.
//!
//! ```text
//! cargo run --release --example whiten
//! cargo run --release --example whiten -- --fashion --train-size 10000 --width 128
//! ```

mod common;

use clap::{Parser, ValueEnum};
use common::cli::{log_line, progress, secs, setup, standardize, CommonArgs, Setup};
use common::plot::{plot_panels, plot_training_curves, Panel, Series, PALETTE};
use common::table::{fmt, write_csv, write_json, Table};
use common::train::{Built, Executor, Trainer};
use common::DemoResult;
use eigengrad::data::Batcher;
use eigengrad::graph::Plan;
use eigengrad::nn::{scaled_normal, EigenWhiten, Linear, Mode, Scope, WhitenMode};
use eigengrad::optim::Adam;
use serde_json::json;
use std::time::Instant;

/// With or without whitening.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Variant {
    /// No whitening layer.
    None,
    /// ZCA whitening of each group of pre-activations.
    Zca,
    /// Projection of each group onto its top-k principal components.
    Pca,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::None => "no whitening",
            Variant::Zca => "ZCA",
            Variant::Pca => "PCA top-k",
        }
    }
}

/// An MLP with and without EigenWhiten layers (ZCA and PCA modes) on the same data.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Hidden layers, each followed by a whitening layer (in the ZCA and PCA variants) and
    /// tanh [default: 8; 2 with --quick].
    #[arg(long)]
    depth: Option<usize>,
    /// Hidden width, a multiple of --group [default: 64; 32 with --quick].
    #[arg(long)]
    width: Option<usize>,
    /// Training epochs [default: 10; 2 with --quick].
    #[arg(long)]
    epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// Gaussian initialisation scale s: weights ~ N(0, s²/fan_in). The default is small
    /// enough that the signal of the plain network fades layer after layer.
    #[arg(long, default_value_t = 0.3)]
    init_scale: f32,
    /// Features per whitening group (at most 64).
    #[arg(long, default_value_t = 16)]
    group: usize,
    /// Components kept per group in the PCA variant [default: group/2].
    #[arg(long)]
    pca_k: Option<u32>,
    /// Added to the covariance eigenvalues before the inverse square root (ZCA).
    #[arg(long, default_value_t = 1e-3)]
    eps: f32,
    /// Weight of each batch in the running mean and covariance used for evaluation.
    #[arg(long, default_value_t = 0.1)]
    momentum: f32,
    /// Variants to train, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["none", "zca", "pca"])]
    variants: Vec<Variant>,
    /// Training images used to measure the training loss after each epoch.
    #[arg(long, default_value_t = 2000)]
    eval_train: usize,
}

/// Numbers of one epoch (epoch 0: at initialisation).
struct EpochRow {
    epoch: usize,
    train_loss: f64,
    test_loss: f64,
    test_accuracy: f64,
    seconds: f64,
}

/// Everything measured for one variant.
struct Run {
    variant: Variant,
    rows: Vec<EpochRow>,
    /// Per whitening layer, per group: explained-variance fractions, largest first.
    explained: Vec<Vec<Vec<f32>>>,
}

impl Run {
    fn last(&self) -> &EpochRow {
        self.rows.last().expect("epoch 0 is always recorded")
    }

    fn seconds_per_epoch(&self) -> f64 {
        let t: Vec<f64> = self.rows.iter().skip(1).map(|r| r.seconds).collect();
        t.iter().sum::<f64>() / t.len().max(1) as f64
    }
}

struct Config {
    depth: usize,
    width: usize,
    epochs: usize,
    pca_k: u32,
}

fn train_variant(args: &Args, cfg: &Config, s: &Setup, variant: Variant) -> DemoResult<Run> {
    let (train, test) = (&s.train, &s.test);
    let mode = match variant {
        Variant::None => None,
        Variant::Zca => Some(WhitenMode::Zca { eps: args.eps }),
        Variant::Pca => Some(WhitenMode::Pca { k: cfg.pca_k }),
    };
    let eval_batch = 500.min(test.n.max(args.eval_train.min(train.n)));
    let classes = train.classes;
    let mut trainer = Trainer::new(
        Executor::Gpu,
        &s.device,
        train.features,
        classes,
        args.batch,
        eval_batch,
        Adam::new(args.lr),
        args.common.seed,
        |g, x, is_train| {
            let mode_of_graph = if is_train { Mode::Train } else { Mode::Eval };
            let mut s = Scope::new(g, mode_of_graph);
            let (mut h, mut whitens, mut tracked) = (x, Vec::new(), Vec::new());
            for i in 0..cfg.depth {
                let fan_in = s.try_shape(h)?[1];

                let layer = Linear::new(
                    &mut s.scope(&format!("layer{i}")),
                    fan_in,
                    cfg.width,
                    scaled_normal(fan_in, args.init_scale),
                )?;
                tracked.push(layer.weight);
                let mut z = layer.forward(&mut s, h)?;
                if let Some(mode) = mode {
                    let (w, y) = EigenWhiten::new(
                        &mut s.scope(&format!("whiten{i}")),
                        z,
                        args.group,
                        mode,
                        args.momentum,
                    )?;
                    whitens.push(w);
                    z = y;
                }
                h = s.tanh(z)?;
            }
            let out = Linear::new(
                &mut s.scope(&format!("layer{}", cfg.depth)),
                cfg.width,
                classes,
                scaled_normal(cfg.width, args.init_scale),
            )?;
            tracked.push(out.weight);
            Ok(Built {
                logits: out.forward(&mut s, h)?,
                tracked,
                net: whitens,
            })
        },
    )?;
    let mut batcher = Batcher::new(train, args.batch, args.common.seed)?;
    let pb = progress(
        (cfg.epochs * batcher.batches_per_epoch()) as u64,
        variant.name(),
    );
    let mut rows = Vec::new();
    let evaluate =
        |trainer: &mut Trainer<Vec<EigenWhiten>>, epoch, seconds| -> DemoResult<EpochRow> {
            let tr = trainer.evaluate(train, args.eval_train)?;
            let te = trainer.evaluate(test, usize::MAX)?;
            Ok(EpochRow {
                epoch,
                train_loss: tr.loss,
                test_loss: te.loss,
                test_accuracy: te.accuracy,
                seconds,
            })
        };
    rows.push(evaluate(&mut trainer, 0, 0.0)?);
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        for batch in batcher.epoch() {
            trainer.step(&batch)?;
            pb.inc(1);
        }
        trainer.last_loss()?; // waits for the epoch's last step
        let seconds = secs(t0);
        trainer.plan.check_status()?;
        let row = evaluate(&mut trainer, epoch, seconds)?;
        log_line(
            &pb,
            &format!(
                "{:>12} epoch {epoch:>3}: train loss {:.4}, test loss {:.4}, test accuracy {:.3} ({:.2} s)",
                variant.name(),
                row.train_loss,
                row.test_loss,
                row.test_accuracy,
                seconds
            ),
        );
        rows.push(row);
    }
    pb.finish_and_clear();
    let explained = trainer
        .net
        .iter()
        .map(|w| w.explained_variance(&trainer.plan))
        .collect::<eigengrad::Result<Vec<_>>>()?;
    Ok(Run {
        variant,
        rows,
        explained,
    })
}

/// Components needed for `fraction` of a group's variance (fractions largest first).
fn components_for(fractions: &[f32], fraction: f32) -> usize {
    let mut acc = 0.0;
    for (k, f) in fractions.iter().enumerate() {
        acc += f;
        if acc >= fraction {
            return k + 1;
        }
    }
    fractions.len()
}

fn main() -> std::process::ExitCode {
    common::cli::finish(run(Args::parse()))
}

fn run(args: Args) -> DemoResult<()> {
    let q = args.common.quick;
    let cfg = Config {
        depth: args.depth.unwrap_or(if q { 2 } else { 8 }),
        width: args.width.unwrap_or(if q { 32 } else { 64 }),
        epochs: args.epochs.unwrap_or(if q { 2 } else { 10 }),
        pca_k: args.pca_k.unwrap_or((args.group / 2).max(1) as u32),
    };
    if cfg.depth == 0 || cfg.epochs == 0 || args.variants.is_empty() {
        return Err("need --depth ≥ 1, --epochs ≥ 1 and at least one variant".into());
    }
    if args.group == 0 || args.group > 64 || !cfg.width.is_multiple_of(args.group) {
        return Err(format!(
            "--group {} must lie in 1..=64 and divide --width {}",
            args.group, cfg.width
        )
        .into());
    }
    let mut s = setup(&args.common, "whiten")?;
    standardize(&mut s.train, &mut s.test)?;
    println!(
        "model: {} hidden tanh layers of width {} (whitening groups of {}, PCA keeps {}), Adam lr {}, batch {}, {} epochs",
        cfg.depth, cfg.width, args.group, cfg.pca_k, args.lr, args.batch, cfg.epochs
    );
    let mut runs = Vec::new();
    for &v in &args.variants {
        runs.push(train_variant(&args, &cfg, &s, v)?);
    }

    // Numbers.
    let mut metrics = Vec::new();
    for r in &runs {
        for e in &r.rows {
            metrics.push(vec![
                r.variant.name().to_string(),
                e.epoch.to_string(),
                format!("{:.6}", e.train_loss),
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
            "epoch",
            "train_loss",
            "test_loss",
            "test_accuracy",
            "seconds",
        ],
        &metrics,
    )?;
    let mut ev_rows = Vec::new();
    for r in &runs {
        for (l, groups) in r.explained.iter().enumerate() {
            for (g, fr) in groups.iter().enumerate() {
                for (k, f) in fr.iter().enumerate() {
                    ev_rows.push(vec![
                        r.variant.name().to_string(),
                        l.to_string(),
                        g.to_string(),
                        (k + 1).to_string(),
                        format!("{f:.6}"),
                    ]);
                }
            }
        }
    }
    write_csv(
        &s.out.join("explained_variance.csv"),
        &["variant", "layer", "group", "component", "fraction"],
        &ev_rows,
    )?;

    // Figures.
    let curve = |f: fn(&EpochRow) -> f64| -> Vec<Series> {
        runs.iter()
            .enumerate()
            .map(|(k, r)| {
                Series::new(
                    r.variant.name(),
                    r.rows.iter().map(|e| (e.epoch as f64, f(e))).collect(),
                    PALETTE[k],
                )
            })
            .collect()
    };
    let setting = format!("{} hidden × {}", cfg.depth, cfg.width);
    plot_training_curves(
        &s.out.join("curves.png"),
        &setting,
        curve(|e| e.train_loss),
        curve(|e| e.test_accuracy),
    )?;
    let shown_layers = cfg.depth.min(4);
    let mut panels = Vec::new();
    for r in runs.iter().filter(|r| !r.explained.is_empty()) {
        for (l, groups) in r.explained.iter().enumerate().take(shown_layers) {
            let series = groups
                .iter()
                .enumerate()
                .map(|(g, fr)| {
                    let mut se = Series::new(
                        &format!("group {}", g + 1),
                        fr.iter()
                            .enumerate()
                            .map(|(k, &f)| ((k + 1) as f64, f as f64))
                            .collect(),
                        PALETTE[g % PALETTE.len()],
                    );
                    se.markers = fr.len() <= 32;
                    se
                })
                .collect();
            panels.push(Panel {
                title: format!(
                    "{}: EigenWhiten {} of {}",
                    r.variant.name(),
                    l + 1,
                    cfg.depth
                ),
                x_label: "component (largest first)".into(),
                y_label: "explained variance (log scale)".into(),
                series,
                log_y: true,
                y_range: None,
            });
        }
    }
    if !panels.is_empty() {
        plot_panels(
            &s.out.join("explained_variance.png"),
            shown_layers,
            (440, 340),
            &panels,
        )?;
    }

    // Summary.
    let mut table = Table::new(&[
        "variant",
        "final test acc",
        "best test acc",
        "final train loss",
        "s/epoch",
        "top-1 share",
        &format!("top-{} share", cfg.pca_k),
        "components for 90%",
    ]);
    for r in &runs {
        let groups: Vec<&Vec<f32>> = r.explained.iter().flatten().collect();
        let mean = |f: &dyn Fn(&Vec<f32>) -> f64| {
            if groups.is_empty() {
                f64::NAN
            } else {
                groups.iter().map(|g| f(g)).sum::<f64>() / groups.len() as f64
            }
        };
        let k = cfg.pca_k as usize;
        table.push(vec![
            r.variant.name().to_string(),
            fmt(r.last().test_accuracy, 3),
            fmt(
                r.rows.iter().map(|e| e.test_accuracy).fold(0.0, f64::max),
                3,
            ),
            fmt(r.last().train_loss, 4),
            fmt(r.seconds_per_epoch(), 2),
            fmt(mean(&|g| g[0] as f64), 3),
            fmt(mean(&|g| g.iter().take(k).map(|&x| x as f64).sum()), 3),
            fmt(mean(&|g| components_for(g, 0.9) as f64), 1),
        ]);
    }
    table.write_csv(&s.out.join("summary.csv"))?;
    write_json(
        &s.out.join("summary.json"),
        &json!({
            "demo": "whiten",
            "adapter": s.device.info().name,
            "backend": format!("{:?}", s.device.info().backend),
            "data": s.data,
            "depth": cfg.depth,
            "width": cfg.width,
            "group": args.group,
            "pca_k": cfg.pca_k,
            "epochs": cfg.epochs,
            "lr": args.lr,
            "init_scale": args.init_scale,
            "variants": runs.iter().map(|r| json!({
                "variant": r.variant.name(),
                "initial_train_loss": r.rows[0].train_loss,
                "final_train_loss": r.last().train_loss,
                "final_test_accuracy": r.last().test_accuracy,
                "best_test_accuracy": r.rows.iter().map(|e| e.test_accuracy).fold(0.0, f64::max),
                "seconds_per_epoch": r.seconds_per_epoch(),
                "explained_variance": r.explained,
            })).collect::<Vec<_>>(),
        }),
    )?;
    println!("\n{}", table.render());
    println!(
        "(shares: mean over the groups of every whitening layer, from the last training step)\n\
         wrote curves.png, explained_variance.png, metrics.csv, explained_variance.csv, summary.csv, summary.json to {}",
        s.out.display()
    );
    Ok(())
}
