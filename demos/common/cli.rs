//! The command line and the terminal: the options every demo takes, opening the device and
//! loading the data set they name, progress bars, and the exit status.

use super::plot::register_font;
use super::DemoResult;
use clap::Args;
use eigengrad::data::{DataSource, Dataset, Standardizer};
use eigengrad::{Backend, Device, DeviceOptions};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options every demo takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// wgpu backend: auto, vulkan, metal, dx12 or gl (auto honours EIGENGRAD_BACKEND, then WGPU_BACKEND).
    #[arg(long, default_value = "auto")]
    pub backend: Backend,
    /// Run on the adapter whose name contains this (case-insensitive).
    #[arg(long)]
    pub adapter: Option<String>,
    /// Folder for figures (PNG) and numbers (CSV, JSON) [default: out/<demo>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// An MNIST-format folder (train-images-idx3-ubyte[.gz] etc.) instead of the embedded
    /// 8×8 digits (the default).
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
    let source = match (&args.data, args.fashion) {
        (Some(dir), _) => DataSource::MnistDir(dir.clone()),
        (None, true) => DataSource::FashionMnist,
        (None, false) => DataSource::Digits,
    };
    let (mut train, mut test, mut data) = source.load()?;
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
