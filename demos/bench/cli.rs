//! The command line: options, the workload families, and the problem sizes of each mode.

use clap::{Parser, ValueEnum};
use eigengrad::Backend;
use std::path::PathBuf;
use std::time::Duration;

/// The workload families, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    Matmul,
    Eigh,
    Layer,
    Whiten,
    Mlp,
    Deep,
}

#[derive(Parser, Debug)]
#[command(about = "GPU against CPU on eigengrad's workloads: one table, CSV and Markdown")]
pub struct Args {
    /// wgpu backend: auto, vulkan, metal, dx12 or gl (auto honours EIGENGRAD_BACKEND, then WGPU_BACKEND).
    #[arg(long, default_value = "auto")]
    pub backend: Backend,
    /// Run on the adapter whose name contains this (case-insensitive).
    #[arg(long)]
    pub adapter: Option<String>,
    /// Smaller sizes: under two minutes on lavapipe.
    #[arg(long)]
    pub quick: bool,
    /// Tiny sizes, one or two runs each: a check that every workload runs (CI).
    #[arg(long, conflicts_with = "quick")]
    pub smoke: bool,
    /// Folder for bench.csv and bench.md.
    #[arg(long, default_value = "out/bench")]
    pub out: PathBuf,
    /// Run only these workloads (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Workload>,
    /// Measure the matmul variants again even if a choice is cached.
    #[arg(long)]
    pub retune: bool,
    /// Keep the matmul autotuning in memory: neither read nor write the cache file.
    #[arg(long)]
    pub no_tune_cache: bool,
}

/// Problem sizes of one run.
pub struct Sizes {
    pub matmul: Vec<usize>,
    pub eigh: Vec<(usize, usize)>,
    pub layer_widths: Vec<usize>,
    pub layer_batch: usize,
    pub whiten: (usize, usize, Vec<usize>),
    pub mlp: (Vec<usize>, usize),
    /// Weight layers, width and batch of the deep narrow networks.
    pub deep: (usize, usize, usize),
    /// At least this many timed runs (one where a run is slow, see [`repeat`]), at most
    /// `max_runs`, stopping after `budget`.
    pub min_runs: usize,
    pub max_runs: usize,
    pub budget: Duration,
}

impl Sizes {
    pub fn new(args: &Args) -> Sizes {
        if args.smoke {
            Sizes {
                matmul: vec![64, 100],
                eigh: vec![(64, 16), (4, 40), (2, 70)],
                layer_widths: vec![16, 24],
                layer_batch: 32,
                whiten: (32, 32, vec![16]),
                mlp: (vec![48, 32, 32, 10], 16),
                deep: (6, 16, 8),
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
                deep: (16, 64, 128),
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
                deep: (64, 64, 128),
                min_runs: 3,
                max_runs: 7,
                budget: Duration::from_secs(4),
            }
        }
    }
}
