//! Measuring: repeated runs within a time budget, medians, and sweep counts read back.

use crate::cli::Sizes;
use crate::BenchResult;
use eigengrad::graph::gpu::StepProfile;
use eigengrad::kernels::jacobi::EighPlan;
use eigengrad::tensor::read_words;
use eigengrad::Device;
use std::time::Instant;

/// Runs `f` at least `min_runs` times and at most `max_runs`, stopping once `budget` has
/// passed — or after fewer than `min_runs` once three budgets have (a workload that takes
/// minutes per run on a software adapter is run once or twice). Returns every result.
pub fn repeat<T>(sizes: &Sizes, mut f: impl FnMut() -> BenchResult<T>) -> BenchResult<Vec<T>> {
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
pub fn median(mut xs: Vec<f64>) -> f64 {
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
pub fn cpu_ms(sizes: &Sizes, mut f: impl FnMut()) -> BenchResult<f64> {
    let times = repeat(sizes, || {
        let t = Instant::now();
        f();
        Ok(t.elapsed().as_secs_f64() * 1e3)
    })?;
    Ok(median(times))
}

/// Medians over profiles.
pub struct Summary {
    pub wall_ms: f64,
    pub kernel_ms: Option<f64>,
    pub record_us: f64,
    pub submit_us: f64,
}

pub fn summarise(profiles: &[StepProfile]) -> Summary {
    let of = |f: fn(&StepProfile) -> f64| median(profiles.iter().map(f).collect());
    let gpu: Option<Vec<f64>> = profiles.iter().map(|p| p.gpu_ms).collect();
    Summary {
        wall_ms: of(|p| p.wall_ms),
        kernel_ms: gpu.map(median),
        record_us: of(|p| p.host_record_us),
        submit_us: of(|p| p.host_submit_us),
    }
}

pub fn mean(v: &[u32]) -> f32 {
    v.iter().sum::<u32>() as f32 / v.len().max(1) as f32
}

/// Mean sweeps per matrix of the plan's last run.
pub fn mean_sweeps(device: &Device, plan: &EighPlan) -> BenchResult<f32> {
    Ok(mean(&read_words(device, plan.sweeps(), plan.batch())?))
}
