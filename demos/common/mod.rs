//! Shared by the demos: command-line options, device and data setup, a training loop over a
//! pair of plans (training and evaluation, built by one function so they share parameter
//! names; the evaluation plan shares the training plan's weights), CSV/JSON output, plots and
//! the summary table.
//!
//! Each demo includes this module with `mod common;` and uses part of it.
#![allow(dead_code)] // each demo binary uses a different part of this module

use clap::Args;
use eigengrad::data::{default_dataset, Batch, Dataset, Standardizer, FASHION_MNIST_DIR};
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::{Graph, Plan, Value};
use eigengrad::model::{Evaluation, InferencePlan};
use eigengrad::optim::Adam;
use eigengrad::{Backend, Device, DeviceOptions};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Errors of a demo: library errors, I/O, plotting; printed by `main`.
pub type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The exit of a demo: success, or the error printed (with its Display form) and failure.
pub fn finish(result: DemoResult<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Options every demo takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// wgpu backend: auto, vulkan, metal, dx12 or gl (auto honours EIGENGRAD_BACKEND).
    #[arg(long, default_value = "auto")]
    pub backend: Backend,
    /// Run on the adapter whose name contains this (case-insensitive).
    #[arg(long)]
    pub adapter: Option<String>,
    /// Folder for figures (PNG) and numbers (CSV, JSON) [default: out/<demo>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// An MNIST-format folder (train-images-idx3-ubyte[.gz] etc.) instead of the embedded
    /// 8×8 digits.
    #[arg(long, value_name = "DIR", conflicts_with = "fashion")]
    pub data: Option<PathBuf>,
    /// Fashion-MNIST from /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
    #[arg(long)]
    pub fashion: bool,
    /// Use at most this many training images (a seeded random subset).
    #[arg(long, value_name = "N")]
    pub train_size: Option<usize>,
    /// Use at most this many test images (a seeded random subset).
    #[arg(long, value_name = "N")]
    pub test_size: Option<usize>,
    /// Seed of the initialisation, the batch order and the subsets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A tiny configuration for CI: a few hundred images and small defaults.
    #[arg(long)]
    pub quick: bool,
}

/// What [`setup`] prepares: the device, the data and the output folder.
pub struct Setup {
    /// The device the demo runs on.
    pub device: Device,
    /// Training images.
    pub train: Dataset,
    /// Test images.
    pub test: Dataset,
    /// One line saying which data this is.
    pub data: String,
    /// Where figures and numbers go (created).
    pub out: PathBuf,
}

/// Opens the device (and prints which adapter it is), loads the data, makes the output
/// folder, and registers the embedded font for the figures.
pub fn setup(args: &CommonArgs, demo: &str) -> DemoResult<Setup> {
    register_font()?;
    let device = Device::with_options(&DeviceOptions {
        backend: args.backend,
        adapter_name: args.adapter.clone(),
    })?;
    println!("adapter: {}", device.info());
    let (mut train, mut test, mut data) = if let Some(dir) = &args.data {
        default_dataset(Some(dir))?
    } else if args.fashion {
        let dir = Path::new(FASHION_MNIST_DIR);
        if !dir.is_dir() {
            return Err(format!(
                "--fashion: {FASHION_MNIST_DIR} does not exist (install Debian's \
                 dataset-fashion-mnist, or pass --data DIR)"
            )
            .into());
        }
        default_dataset(Some(dir))?
    } else {
        let (train, test) =
            eigengrad::data::digits()?.split(0.2, eigengrad::data::DIGITS_SPLIT_SEED)?;
        let d = format!(
            "embedded scikit-learn digits, stratified 80/20 split: {} train / {} test images of 8×8, 10 classes",
            train.n, test.n
        );
        (train, test, d)
    };
    let quick_cap = |n: Option<usize>, quick: usize| match (n, args.quick) {
        (Some(n), _) => Some(n),
        (None, true) => Some(quick),
        (None, false) => None,
    };
    if let Some(n) = quick_cap(args.train_size, 512) {
        train = random_subset(&train, n, args.seed)?;
    }
    if let Some(n) = quick_cap(args.test_size, 256) {
        test = random_subset(&test, n, args.seed ^ 1)?;
    }
    if args.train_size.is_some() || args.test_size.is_some() || args.quick {
        write!(data, "; using {} train / {} test images", train.n, test.n)?;
    }
    println!("data: {data}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("out").join(demo));
    std::fs::create_dir_all(&out)?;
    println!("output: {}", out.display());
    Ok(Setup {
        device,
        train,
        test,
        data,
        out,
    })
}

/// At most `n` samples of `data`, drawn without replacement by a seeded shuffle.
pub fn random_subset(data: &Dataset, n: usize, seed: u64) -> DemoResult<Dataset> {
    if n >= data.n {
        return Ok(data.clone());
    }
    let mut idx: Vec<usize> = (0..data.n).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed));
    idx.truncate(n);
    idx.sort_unstable();
    Ok(data.subset(&idx)?)
}

/// Standardises both sets per pixel with statistics of the training set (std floored at 0.1,
/// so near-constant border pixels are not blown up).
pub fn standardize(train: &mut Dataset, test: &mut Dataset) -> DemoResult<()> {
    let s = Standardizer::fit(train, 0.1)?;
    s.apply(train)?;
    s.apply(test)?;
    Ok(())
}

/// What a model builder returns: the logits, the weights whose gradient norms are tracked,
/// and whatever the demo wants to keep of the network (its layers, for introspection).
pub struct Built<T> {
    /// Output logits `[batch, classes]`.
    pub logits: Value,
    /// Weights whose ‖∂L/∂W‖ is tracked, input side first.
    pub tracked: Vec<Value>,
    /// The demo's handle on the network.
    pub net: T,
}

/// A training plan and an evaluation plan built by the same function, so they share
/// parameter (and running-statistic) names: the evaluation plan runs on the training plan's
/// resident buffers.
pub struct Trainer<T> {
    /// The training plan (forward, backward, Adam updates in one submission per step).
    pub plan: GpuPlan,
    /// The training graph's network handle.
    pub net: T,
    x: Value,
    targets: Value,
    loss: Value,
    grads: Vec<Value>,
    eval: InferencePlan,
}

impl<T> Trainer<T> {
    /// Builds both graphs with `build(graph, x, train)`: the training one for batches of
    /// `batch` with Adam appended, the evaluation one (`train = false`) for `eval_batch`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        device: &Device,
        features: usize,
        classes: usize,
        batch: usize,
        eval_batch: usize,
        adam: Adam,
        seed: u64,
        mut build: impl FnMut(&mut Graph, Value, bool) -> eigengrad::Result<Built<T>>,
    ) -> DemoResult<Trainer<T>> {
        let mut g = Graph::new();
        let x = g.input("x", &[batch, features])?;
        let targets = g.input("targets", &[batch, classes])?;
        let built = build(&mut g, x, true)?;
        let loss = g.softmax_cross_entropy(built.logits, targets)?;
        let gradients = adam.minimize(&mut g, loss)?;
        let grads = built
            .tracked
            .iter()
            .map(|&w| {
                gradients
                    .get(w)
                    .ok_or_else(|| format!("weight {} has no gradient", g.node(w).name))
            })
            .collect::<Result<Vec<Value>, String>>()?;
        let mut outputs = vec![loss];
        outputs.extend(&grads);
        let plan = GpuPlan::compile(device, &g, &outputs, seed)?;

        let mut eg = Graph::new();
        let eval_x = eg.input("x", &[eval_batch, features])?;
        let ebuilt = build(&mut eg, eval_x, false)?;
        let eval_plan = GpuPlan::compile_sharing(&eg, &[ebuilt.logits], &plan)?;
        let eval = InferencePlan::wrap(eval_plan, eval_x, ebuilt.logits)?;
        Ok(Trainer {
            plan,
            net: built.net,
            x,
            targets,
            loss,
            grads,
            eval,
        })
    }

    /// One training step on `batch` (does not wait for the device).
    pub fn step(&mut self, batch: &Batch) -> DemoResult<()> {
        self.plan
            .step(&[(self.x, &batch.images), (self.targets, &batch.targets)])?;
        Ok(())
    }

    /// The loss of the last step (waits for it).
    pub fn last_loss(&self) -> DemoResult<f32> {
        Ok(self.plan.read(self.loss)?[0])
    }

    /// ‖∂L/∂W‖_F of every tracked weight at the last step (waits for it).
    pub fn grad_norms(&self) -> DemoResult<Vec<f64>> {
        self.grads
            .iter()
            .map(|&g| {
                let v = self.plan.read(g)?;
                Ok(v.iter()
                    .map(|&x| (x as f64) * (x as f64))
                    .sum::<f64>()
                    .sqrt())
            })
            .collect()
    }

    /// Loss and accuracy on `data` (at most `limit` samples, from the start) with the current
    /// weights, which the evaluation plan shares.
    pub fn evaluate(&mut self, data: &Dataset, limit: usize) -> DemoResult<Evaluation> {
        let n = data.n.min(limit);
        let logits = self.eval.logits(&data.images[..n * data.features])?;
        Ok(Evaluation::of(&logits, &data.labels[..n], data.classes)?)
    }
}

/// A progress bar over `len` units (hidden when stderr is not a terminal).
pub fn progress(len: u64, prefix: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} (eta {eta}) {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// Prints a line to stderr above the progress bar (also when the bar is hidden).
pub fn log_line(pb: &ProgressBar, line: &str) {
    pb.suspend(|| eprintln!("{line}"));
}

/// Seconds since `t`.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// A text table: a header and rows, printed aligned to stdout and written as CSV.
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table as aligned text (a Markdown table).
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, w) in width.iter().enumerate() {
                let cell = cells.get(i).map_or("", |c| c.as_str());
                let pad = w - cell.chars().count();
                if i == 0 {
                    s += &format!(" {cell}{} |", " ".repeat(pad));
                } else {
                    s += &format!(" {}{cell} |", " ".repeat(pad));
                }
            }
            s + "\n"
        };
        let mut out = line(&self.header);
        out += "|";
        for (i, w) in width.iter().enumerate().take(cols) {
            out += &if i == 0 {
                format!("{}|", "-".repeat(w + 2))
            } else {
                format!("{}:|", "-".repeat(w + 1))
            };
        }
        out += "\n";
        for row in &self.rows {
            out += &line(row);
        }
        out
    }

    /// Writes the table as CSV.
    pub fn write_csv(&self, path: &Path) -> DemoResult<()> {
        write_csv(path, &self.header, &self.rows)
    }
}

/// Writes rows of cells as CSV (cells holding a comma or quote are quoted).
pub fn write_csv<S: AsRef<str>>(path: &Path, header: &[S], rows: &[Vec<String>]) -> DemoResult<()> {
    let quote = |c: &str| {
        if c.contains([',', '"', '\n']) {
            format!("\"{}\"", c.replace('"', "\"\""))
        } else {
            c.to_string()
        }
    };
    let mut s = header
        .iter()
        .map(|h| quote(h.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    s.push('\n');
    for row in rows {
        s += &row.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",");
        s.push('\n');
    }
    std::fs::write(path, s)?;
    Ok(())
}

/// Writes a JSON document, pretty-printed.
pub fn write_json(path: &Path, value: &serde_json::Value) -> DemoResult<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")?;
    Ok(())
}

/// Formats a float for tables: fixed with `digits` decimals, or "—" when not finite.
pub fn fmt(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "—".to_string()
    }
}

// ---------------------------------------------------------------------------------------
// Figures

/// The font family registered for the figures (DejaVu Sans, embedded: no system fonts needed).
const FONT: &str = "sans-serif";

/// Registers the embedded DejaVu Sans as the figures' font.
pub fn register_font() -> DemoResult<()> {
    plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "the embedded DejaVu Sans font did not parse")?;
    plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
        .map_err(|_| "the embedded DejaVu Sans Bold font did not parse")?;
    Ok(())
}

/// Colours of the series, in order (the "tab10" palette).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry (empty: not in the legend).
    pub name: String,
    /// (x, y) points; non-finite ones (and, on a log axis, non-positive ones) are skipped.
    pub points: Vec<(f64, f64)>,
    /// Line colour.
    pub color: RGBColor,
    /// Dashed instead of solid.
    pub dashed: bool,
    /// Draw a dot at every point.
    pub markers: bool,
}

impl Series {
    /// A solid line with markers in `color`.
    pub fn new(name: &str, points: Vec<(f64, f64)>, color: RGBColor) -> Series {
        Series {
            name: name.to_string(),
            points,
            color,
            dashed: false,
            markers: true,
        }
    }
}

/// One chart: title, axis labels, lines; y optionally on a log scale.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Base-10 log scale on y.
    pub log_y: bool,
    /// Fixed y range (in data units), else fitted to the data.
    pub y_range: Option<(f64, f64)>,
}
/// The two-panel figure every training demo writes: training loss (log scale) and test
/// accuracy per epoch, one series per variant, titled with the run's `setting`.
pub fn plot_training_curves(
    path: &Path,
    setting: &str,
    loss: Vec<Series>,
    accuracy: Vec<Series>,
) -> DemoResult<()> {
    plot_panels(
        path,
        2,
        (640, 440),
        &[
            Panel {
                title: format!("Training loss ({setting})"),
                x_label: "epoch".into(),
                y_label: "cross-entropy (log scale)".into(),
                series: loss,
                log_y: true,
                y_range: None,
            },
            Panel {
                title: format!("Test accuracy ({setting})"),
                x_label: "epoch".into(),
                y_label: "accuracy".into(),
                series: accuracy,
                log_y: false,
                y_range: Some((0.0, 1.0)),
            },
        ],
    )
}

/// Draws `panels` on a grid of `cols` columns, each `size` pixels, into the PNG `path`.
pub fn plot_panels(path: &Path, cols: usize, size: (u32, u32), panels: &[Panel]) -> DemoResult<()> {
    let cols = cols.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let root =
        BitMapBackend::new(path, (size.0 * cols as u32, size.1 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(area, panel)?;
    }
    root.present()?;
    drop(root);
    recompress(path)
}

/// Rewrites a PNG with the strongest deflate setting and adaptive row filters: plotters
/// writes fast, large files; this halves them.
fn recompress(path: &Path) -> DemoResult<()> {
    let mut reader =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?)).read_info()?;
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels)?;
    let mut encoder = png::Encoder::new(
        std::io::BufWriter::new(std::fs::File::create(path)?),
        info.width,
        info.height,
    );
    encoder.set_color(info.color_type);
    encoder.set_depth(info.bit_depth);
    encoder.set_compression(png::Compression::Best);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels[..info.buffer_size()])?;
    writer.finish()?;
    Ok(())
}

/// (min, max) of `values`, padded by 5%; flat data gets ±`flat` around its value.
fn padded_range(values: impl Iterator<Item = f64>, flat: f64) -> Option<(f64, f64)> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return None;
    }
    if hi - lo <= 1e-9 * lo.abs().max(1.0) {
        return Some((lo - flat, hi + flat));
    }
    let pad = 0.05 * (hi - lo);
    Some((lo - pad, hi + pad))
}

/// Decimals that tell apart ticks about `step` apart.
fn decimals(step: f64) -> usize {
    if step > 0.0 && step.is_finite() {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    } else {
        2
    }
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    p: &Panel,
) -> DemoResult<()> {
    let ty = |y: f64| if p.log_y { y.log10() } else { y };
    let keep = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!p.log_y || y > 0.0);
    // The points in data units (drawn) and on the axis's linear scale (fitted, placed).
    let lines: Vec<(&Series, Vec<(f64, f64)>)> = p
        .series
        .iter()
        .map(|s| (s, s.points.iter().copied().filter(keep).collect()))
        .collect();
    let scaled: Vec<(&Series, Vec<(f64, f64)>)> = lines
        .iter()
        .map(|(s, pts)| (*s, pts.iter().map(|&(x, y)| (x, ty(y))).collect()))
        .collect();
    let all = || scaled.iter().flat_map(|(_, pts)| pts.iter().copied());
    let (x0, x1) = padded_range(all().map(|q| q.0), 0.5).unwrap_or((0.0, 1.0));
    let (y0, y1) = match p.y_range {
        Some((a, b)) => (ty(a), ty(b)),
        None => {
            let flat = all().next().map_or(1.0, |q| q.1.abs().max(1.0) * 0.1);
            let flat = if p.log_y { 0.1 } else { flat };
            padded_range(all().map(|q| q.1), flat).unwrap_or((0.0, 1.0))
        }
    };
    let untransform = |v: f64| if p.log_y { 10f64.powf(v) } else { v };
    let y_axis = YAxis {
        lo: untransform(y0),
        hi: untransform(y1),
        log: p.log_y,
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FONT, 20).into_font().style(FontStyle::Bold))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y_axis.clone())?;
    // Decade ticks get compact labels; evenly spaced ones as many decimals as their spacing.
    let decades = p.log_y && y_axis.hi / y_axis.lo >= 10.0;
    let y_decimals = decimals((y_axis.hi - y_axis.lo) / 8.0);
    let y_fmt = move |v: &f64| {
        if decades {
            number(*v)
        } else {
            format!("{v:.y_decimals$}")
        }
    };
    let x_fmt = |v: &f64| {
        if (v - v.round()).abs() < 1e-9 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225));
    // Whole-number x data (epochs, layers) gets whole-number ticks.
    let integral_x = all().all(|q| (q.0 - q.0.round()).abs() < 1e-9);
    if integral_x && x1 - x0 < 12.0 {
        mesh.x_labels((x1 - x0).ceil() as usize + 1);
    }
    mesh.draw()?;
    let mut legend = false;
    for (s, pts) in &lines {
        let style = ShapeStyle::from(&s.color).stroke_width(2);
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(pts.iter().copied(), 8, 5, style))?
        } else {
            chart.draw_series(LineSeries::new(pts.iter().copied(), style))?
        };
        if !s.name.is_empty() {
            legend = true;
            let c = s.color;
            drawn.label(s.name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
            });
        }
        if s.markers && pts.len() <= 60 {
            chart.draw_series(pts.iter().map(|&q| Circle::new(q, 3, s.color.filled())))?;
        }
    }
    if legend {
        chart
            .configure_series_labels()
            .position(emptiest_corner(&scaled, (x0, x1), (y0, y1)))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 14))
            .draw()?;
    }
    Ok(())
}

/// A y axis on a linear or base-10 log scale, with round tick values on either (1, 2, 5 ×
/// 10^k on a log axis that spans decades, evenly spaced round values on a short one).
#[derive(Clone, Debug)]
struct YAxis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl YAxis {
    fn scale(&self, v: f64) -> f64 {
        if self.log {
            v.max(f64::MIN_POSITIVE).log10()
        } else {
            v
        }
    }
}

impl Ranged for YAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.scale(self.lo), self.scale(self.hi));
        if a == b {
            return (limit.0 + limit.1) / 2;
        }
        let t = (self.scale(*v) - a) / (b - a);
        limit.0 + (t * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        let linear = || RangedCoordf64::from(self.lo..self.hi).key_points(hint.max_num_points());
        if !self.log {
            return linear();
        }
        let max = hint.max_num_points().max(2);
        let (first, last) = (
            self.lo.log10().floor() as i32,
            self.hi.log10().ceil() as i32,
        );
        let in_range = |v: &f64| *v >= self.lo * (1.0 - 1e-9) && *v <= self.hi * (1.0 + 1e-9);
        for mantissas in [
            &[1.0, 2.0, 3.0, 5.0][..],
            &[1.0, 2.0, 5.0],
            &[1.0, 3.0],
            &[1.0],
        ] {
            let ticks: Vec<f64> = (first..=last)
                .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
                .filter(in_range)
                .collect();
            if ticks.len() >= 3 && ticks.len() <= max {
                return ticks;
            }
            if ticks.len() > max && mantissas.len() == 1 {
                let step = ticks.len().div_ceil(max);
                return ticks.into_iter().step_by(step).collect();
            }
        }
        // Less than a decade with too few round values: evenly spaced ones.
        linear()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// A compact label for a positive number: 3 significant digits between 0.01 and 1000,
/// scientific notation outside.
fn number(v: f64) -> String {
    if (0.01..1000.0).contains(&v) {
        let digits = (2 - v.log10().floor() as i32).max(0) as usize;
        let s = format!("{v:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        format!("{v:.0e}")
    }
}

/// Where the legend covers the fewest points of the drawn lines: one of eight places along
/// the edges, each taken as a box of about a third of the width and `rows` legend rows high.
fn emptiest_corner(
    lines: &[(&Series, Vec<(f64, f64)>)],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> SeriesLabelPosition {
    use SeriesLabelPosition as P;
    let rows = lines.iter().filter(|(s, _)| !s.name.is_empty()).count();
    let h = (0.06 * rows as f64 + 0.06).min(0.5);
    let (left, centre, right) = ((0.0, 0.34), (0.33, 0.67), (0.66, 1.0));
    let (top, middle, bottom) = ((1.0 - h, 1.0), (0.5 - h / 2.0, 0.5 + h / 2.0), (0.0, h));
    // In order of preference on ties.
    let places = [
        (P::UpperRight, right, top),
        (P::LowerRight, right, bottom),
        (P::UpperLeft, left, top),
        (P::LowerLeft, left, bottom),
        (P::MiddleRight, right, middle),
        (P::MiddleLeft, left, middle),
        (P::UpperMiddle, centre, top),
        (P::LowerMiddle, centre, bottom),
    ];
    // Points along the drawn segments, not only the data points.
    let points: Vec<(f64, f64)> = lines
        .iter()
        .flat_map(|(_, pts)| {
            pts.windows(2)
                .flat_map(|w| {
                    (0..20).map(move |k| {
                        let t = k as f64 / 20.0;
                        (
                            w[0].0 + t * (w[1].0 - w[0].0),
                            w[0].1 + t * (w[1].1 - w[0].1),
                        )
                    })
                })
                .chain(pts.last().copied())
        })
        .map(|(x, y)| ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0)))
        .collect();
    let inside = |(a, b): (f64, f64), v: f64| v >= a - 0.03 && v <= b + 0.03;
    places
        .into_iter()
        .min_by_key(|&(_, xs, ys)| {
            points
                .iter()
                .filter(|&&(fx, fy)| inside(xs, fx) && inside(ys, fy))
                .count()
        })
        .map_or(P::UpperRight, |p| p.0)
}

/// A blue–white–red colour for `v` in [−1, 1] (clamped): negative blue, positive red.
pub fn diverging(v: f64) -> RGBColor {
    let v = v.clamp(-1.0, 1.0);
    let mix = |a: f64, b: f64, t: f64| (a + (b - a) * t).round() as u8;
    let (end, t) = if v < 0.0 {
        ((33.0, 102.0, 172.0), -v)
    } else {
        ((178.0, 24.0, 43.0), v)
    };
    RGBColor(
        mix(247.0, end.0, t),
        mix(247.0, end.1, t),
        mix(247.0, end.2, t),
    )
}

/// Draws images (each `shape.0 × shape.1`, row-major) as a grid of `cols` tiles with a
/// caption each, into the PNG `path`. Each image is scaled by its own largest |value| and
/// drawn blue (negative) – white – red (positive).
pub fn image_grid(
    path: &Path,
    title: &str,
    images: &[(String, Vec<f32>)],
    shape: (usize, usize),
    cols: usize,
) -> DemoResult<()> {
    let cols = cols.clamp(1, images.len().max(1));
    let rows = images.len().div_ceil(cols).max(1);
    let cell = (150u32 / shape.1.max(1) as u32).max(2);
    let (tile_w, tile_h) = (cell * shape.1 as u32, cell * shape.0 as u32);
    let (pad, caption, header) = (10u32, 22u32, 40u32);
    let width = cols as u32 * (tile_w + pad) + pad;
    let height = header + rows as u32 * (tile_h + caption + pad) + pad;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    root.draw(&Text::new(
        title.to_string(),
        (pad as i32, 10),
        (FONT, 20).into_font().style(FontStyle::Bold),
    ))?;
    for (k, (name, img)) in images.iter().enumerate() {
        let (r, c) = ((k / cols) as u32, (k % cols) as u32);
        let x0 = (pad + c * (tile_w + pad)) as i32;
        let y0 = (header + r * (tile_h + caption + pad)) as i32;
        root.draw(&Text::new(name.clone(), (x0, y0), (FONT, 15)))?;
        let y0 = y0 + caption as i32;
        let scale = img
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            .max(f32::MIN_POSITIVE);
        for (i, &v) in img.iter().enumerate() {
            let (py, px) = ((i / shape.1) as i32, (i % shape.1) as i32);
            let (x, y) = (x0 + px * cell as i32, y0 + py * cell as i32);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32, y + cell as i32)],
                diverging((v / scale) as f64).filled(),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + tile_w as i32, y0 + tile_h as i32)],
            RGBColor(160, 160, 160),
        ))?;
    }
    root.present()?;
    drop(root);
    recompress(path)
}
