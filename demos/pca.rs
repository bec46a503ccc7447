//! Principal components of the training images, computed on the GPU: the covariance matrix
//! by the matmul kernel, its eigendecomposition by the Jacobi solver. Checked against the
//! CPU reference (nalgebra, f64) on the same covariance and on one accumulated in f64.
//!
//! Writes `eigenimages.png` (the mean image and the top principal directions),
//! `explained_variance.png` (per component and cumulative), `eigenvalues.csv`,
//! `summary.csv` and `summary.json`.
//!
//! ```text
//! cargo run --release --example pca                   # embedded 8×8 digits: 64×64 covariance
//! cargo run --release --example pca -- --fashion      # Fashion-MNIST at 14×14: 196×196
//! ```

mod common;

use clap::Parser;
use common::cli::{progress, secs, setup, CommonArgs};
use common::plot::{image_grid, plot_panels, Panel, Series, PALETTE};
use common::table::{fmt, write_csv, write_json, Table};
use common::DemoResult;
use eigengrad::data::Dataset;
use eigengrad::kernels::elementwise::{binary, unary, BinaryOp, UnaryOp};
use eigengrad::kernels::jacobi::{eigh, EighOptions};
use eigengrad::kernels::matmul::matmul;
use eigengrad::Tensor;
use serde_json::json;
use std::time::{Duration, Instant};

/// PCA of the training images on the GPU (Jacobi eigensolver) against the CPU reference.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Resample the images to SIZE×SIZE by area averaging before the PCA [default: the
    /// native size up to 14; 28×28 images give a 784×784 covariance, whose Jacobi solve takes
    /// minutes on a CPU adapter such as lavapipe].
    #[arg(long)]
    size: Option<usize>,
    /// Principal directions drawn in the eigen-image grid.
    #[arg(long, default_value_t = 15)]
    components: usize,
    /// Rows of eigenvalues compared with the reference in the printed table.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Jacobi sweeps after which the solver stops even if not converged.
    #[arg(long, default_value_t = 30)]
    max_sweeps: u32,
}

/// `data`'s images resampled to `size`×`size`: each output pixel is the mean of the input
/// pixels whose centres fall in it.
fn resample(data: &Dataset, size: usize) -> DemoResult<Dataset> {
    let (h, w) = data.shape;
    if size == 0 || size > h.min(w) {
        return Err(format!("--size {size} must lie in 1..={}", h.min(w)).into());
    }
    if (h, w) == (size, size) {
        return Ok(data.clone());
    }
    let cell = |i: usize, n: usize| ((2 * i + 1) * size) / (2 * n);
    let mut count = vec![0f32; size * size];
    for i in 0..h {
        for j in 0..w {
            count[cell(i, h) * size + cell(j, w)] += 1.0;
        }
    }
    let mut images = vec![0f32; data.n * size * size];
    for (src, dst) in data
        .images
        .chunks(h * w)
        .zip(images.chunks_mut(size * size))
    {
        for i in 0..h {
            for j in 0..w {
                dst[cell(i, h) * size + cell(j, w)] += src[i * w + j];
            }
        }
        for (d, c) in dst.iter_mut().zip(&count) {
            *d /= c.max(1.0);
        }
    }
    Ok(Dataset::new(
        format!("{} at {size}×{size}", data.name),
        images,
        data.labels.clone(),
        (size, size),
        data.classes,
    )?)
}

/// The covariance (1/(n−1))·XcᵀXc of the centred images on the GPU, accumulated over row
/// chunks that fit the device's storage-binding limit.
fn gpu_covariance(
    device: &eigengrad::Device,
    centred: &[f32],
    n: usize,
    d: usize,
) -> DemoResult<Tensor> {
    let limit = device.info().limits.max_storage_buffer_binding_size as usize / 2;
    let chunk_rows = (limit / (4 * d)).clamp(1, n);
    let mut acc: Option<Tensor> = None;
    for rows in centred.chunks(chunk_rows * d) {
        let x = Tensor::from_slice(device, &[rows.len() / d, d], rows)?;
        let part = matmul(&x, &x, true, false)?;
        acc = Some(match acc {
            None => part,
            Some(a) => binary(BinaryOp::Add, &a, &part)?,
        });
    }
    let acc = acc.ok_or("no images")?;
    Ok(unary(
        UnaryOp::Scale(1.0 / (n as f32 - 1.0).max(1.0)),
        &acc,
    )?)
}

/// The same covariance accumulated in f64 on the CPU.
fn cpu_covariance(centred: &[f32], n: usize, d: usize) -> Vec<f64> {
    let pb = progress(n as u64, "covariance");
    let mut c = nalgebra::DMatrix::<f64>::zeros(d, d);
    let chunk = 2048;
    for (k, rows) in centred.chunks(chunk * d).enumerate() {
        let m = rows.len() / d;
        let x = nalgebra::DMatrix::<f64>::from_fn(m, d, |i, j| rows[i * d + j] as f64);
        c += x.transpose() * &x;
        pb.set_position(((k + 1) * chunk).min(n) as u64);
    }
    pb.finish_and_clear();
    let s = 1.0 / (n as f64 - 1.0).max(1.0);
    (0..d * d).map(|k| c[(k / d, k % d)] * s).collect()
}

/// Runs `f` with a spinner named `what` on stderr.
fn with_spinner<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    let out = f();
    pb.finish_and_clear();
    out
}

fn main() -> std::process::ExitCode {
    common::cli::finish(run(Args::parse()))
}

fn run(args: Args) -> DemoResult<()> {
    let s = setup(&args.common, "pca")?;
    let native = s.train.shape.0.min(s.train.shape.1);
    let size = args.size.unwrap_or(native.min(14));
    let data = resample(&s.train, size)?;
    let (n, d) = (data.n, data.features);
    if size != native {
        println!(
            "images resampled from {}×{} to {size}×{size}",
            s.train.shape.0, s.train.shape.1
        );
    }
    println!("PCA of {n} training images of {d} pixels: a {d}×{d} covariance");

    let mut mean = vec![0f64; d];
    for row in data.images.chunks(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let centred: Vec<f32> = data
        .images
        .chunks(d)
        .flat_map(|row| row.iter().zip(&mean).map(|(&v, &m)| (v as f64 - m) as f32))
        .collect();

    // GPU: covariance, then the Jacobi eigendecomposition, each timed to completion. The
    // first call of a kernel builds its pipelines; below 256 pixels a second, timed call
    // shows the steady cost (at 784 one solve takes minutes on lavapipe, so it runs once).
    let options = EighOptions {
        max_sweeps: args.max_sweeps,
        ..EighOptions::default()
    };
    let warm = d <= 256;
    let mut first_call = None;
    if warm {
        let t = Instant::now();
        let c = gpu_covariance(&s.device, &centred, n, d)?;
        let e = with_spinner("first GPU pass (builds the pipelines)", || {
            eigh(&c, &options)
        })?;
        e.values.to_vec()?;
        first_call = Some(secs(t));
    }
    let t = Instant::now();
    let cov = gpu_covariance(&s.device, &centred, n, d)?;
    s.device.synchronize()?;
    let t_cov_gpu = secs(t);
    let t = Instant::now();
    let solved = with_spinner(&format!("Jacobi eigh of {d}×{d} on the GPU"), || {
        eigh(&cov, &options)
    })?;
    let values_gpu = solved.values.to_vec()?;
    let vectors_gpu = solved.vectors.to_vec()?;
    let t_eigh_gpu = secs(t);
    let sweeps = solved.sweeps[0];
    let converged = solved.converged[0];

    // CPU reference: the same f32 covariance in f64 (solver error alone), and a covariance
    // accumulated in f64 (solver plus f32 accumulation).
    let cov_gpu: Vec<f64> = cov.to_vec()?.iter().map(|&v| v as f64).collect();
    let t = Instant::now();
    let (values_ref, vectors_ref) = with_spinner("reference eigh (nalgebra, f64)", || {
        eigengrad::reference::eigh::eigh::<f64>(&cov_gpu, d)
    });
    let t_eigh_cpu = secs(t);
    let t = Instant::now();
    let cov64 = cpu_covariance(&centred, n, d);
    let t_cov_cpu = secs(t);
    let (values64, _) = eigengrad::reference::eigh::eigh::<f64>(&cov64, d);

    // Largest first from here on.
    let desc = |v: &[f64]| v.iter().rev().copied().collect::<Vec<f64>>();
    let lam_gpu = desc(&values_gpu.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let lam_ref = desc(&values_ref);
    let lam64 = desc(&values64);
    let lam_max = lam_ref[0].abs().max(f64::MIN_POSITIVE);
    let column = |v: &[f32], j: usize| (0..d).map(|i| v[i * d + j] as f64).collect::<Vec<f64>>();
    let column64 = |v: &[f64], j: usize| (0..d).map(|i| v[i * d + j]).collect::<Vec<f64>>();
    let cosine = |k: usize| {
        // k-th largest: column d−1−k in ascending order.
        let a = column(&vectors_gpu, d - 1 - k);
        let b = column64(&vectors_ref, d - 1 - k);
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot.abs() / na.max(f64::MIN_POSITIVE)
    };
    let max_diff = lam_gpu
        .iter()
        .zip(&lam_ref)
        .enumerate()
        .map(|(k, (a, b))| ((a - b).abs(), k))
        .fold((0.0, 0), |m, x| if x.0 > m.0 { x } else { m });
    // Residual ‖C·V − V·Λ‖_F / ‖C‖_F and orthogonality ‖VᵀV − I‖_F of the GPU result.
    let c = nalgebra::DMatrix::<f64>::from_row_slice(d, d, &cov_gpu);
    let v = nalgebra::DMatrix::<f64>::from_fn(d, d, |i, j| vectors_gpu[i * d + j] as f64);
    let lam = nalgebra::DMatrix::<f64>::from_diagonal(&nalgebra::DVector::from_iterator(
        d,
        values_gpu.iter().map(|&x| x as f64),
    ));
    let residual = (&c * &v - &v * &lam).norm() / c.norm().max(f64::MIN_POSITIVE);
    let orthogonality = (v.transpose() * &v - nalgebra::DMatrix::<f64>::identity(d, d)).norm();

    // Explained variance (negative round-off eigenvalues count as 0).
    let total: f64 = lam_gpu
        .iter()
        .map(|l| l.max(0.0))
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let explained: Vec<f64> = lam_gpu.iter().map(|l| l.max(0.0) / total).collect();
    let cumulative: Vec<f64> = explained
        .iter()
        .scan(0.0, |acc, e| {
            *acc += e;
            Some(*acc)
        })
        .collect();
    let needed = |f: f64| cumulative.iter().position(|&c| c >= f).map_or(d, |k| k + 1);

    // Numbers.
    let rows: Vec<Vec<String>> = (0..d)
        .map(|k| {
            vec![
                (k + 1).to_string(),
                format!("{:.8e}", lam_gpu[k]),
                format!("{:.8e}", lam_ref[k]),
                format!("{:.8e}", lam64[k]),
                format!("{:.6}", explained[k]),
                format!("{:.6}", cumulative[k]),
                format!("{:.6}", cosine(k)),
            ]
        })
        .collect();
    write_csv(
        &s.out.join("eigenvalues.csv"),
        &[
            "component",
            "gpu",
            "reference_same_covariance",
            "reference_f64_covariance",
            "explained",
            "cumulative",
            "abs_cos_gpu_reference",
        ],
        &rows,
    )?;

    // Figures.
    let mut images = vec![(
        "mean".to_string(),
        mean.iter().map(|&m| m as f32).collect::<Vec<f32>>(),
    )];
    for (k, e) in explained.iter().enumerate().take(args.components) {
        images.push((
            format!("PC{} {:.1}%", k + 1, 100.0 * e),
            column(&vectors_gpu, d - 1 - k)
                .iter()
                .map(|&x| x as f32)
                .collect(),
        ));
    }
    image_grid(
        &s.out.join("eigenimages.png"),
        &format!("Mean and top principal directions ({size}×{size}, red +, blue −)"),
        &images,
        (size, size),
        8,
    )?;
    let per: Vec<(f64, f64)> = explained
        .iter()
        .enumerate()
        .map(|(k, &e)| ((k + 1) as f64, e))
        .collect();
    let cum: Vec<(f64, f64)> = cumulative
        .iter()
        .enumerate()
        .map(|(k, &e)| ((k + 1) as f64, e))
        .collect();
    let mut per = Series::new("GPU (Jacobi, f32)", per, PALETTE[0]);
    per.markers = d <= 64;
    let reference: Vec<(f64, f64)> = lam_ref
        .iter()
        .enumerate()
        .map(|(k, &l)| ((k + 1) as f64, l / total))
        .collect();
    let mut reference = Series::new("CPU reference (f64)", reference, PALETTE[3]);
    reference.dashed = true;
    reference.markers = false;
    let mut cum = Series::new("cumulative", cum, PALETTE[1]);
    cum.markers = d <= 64;
    let mut marks = Vec::new();
    for (i, f) in [0.9, 0.95, 0.99].into_iter().enumerate() {
        let k = needed(f) as f64;
        let mut m = Series::new(
            &format!("{:.0}%: {} components", f * 100.0, needed(f)),
            vec![(k, 0.0), (k, f)],
            PALETTE[2 + i],
        );
        m.dashed = true;
        m.markers = false;
        marks.push(m);
    }
    let mut cum_series = vec![cum];
    cum_series.extend(marks);
    plot_panels(
        &s.out.join("explained_variance.png"),
        2,
        (600, 420),
        &[
            Panel {
                title: "Explained variance per component".into(),
                x_label: "component (largest first)".into(),
                y_label: "fraction of variance (log scale)".into(),
                series: vec![per, reference],
                log_y: true,
                y_range: None,
            },
            Panel {
                title: "Cumulative explained variance".into(),
                x_label: "components kept".into(),
                y_label: "fraction of variance".into(),
                series: cum_series,
                log_y: false,
                y_range: Some((0.0, 1.0)),
            },
        ],
    )?;

    // Summary.
    let mut top = Table::new(&[
        "component",
        "λ GPU",
        "λ reference",
        "rel. diff Δλ/λ₁",
        "λ f64 covariance",
        "cosine(v_gpu, v_ref)",
    ]);
    for k in 0..args.top.min(d) {
        top.push(vec![
            (k + 1).to_string(),
            format!("{:.6e}", lam_gpu[k]),
            format!("{:.6e}", lam_ref[k]),
            format!("{:.1e}", (lam_gpu[k] - lam_ref[k]).abs() / lam_max),
            format!("{:.6e}", lam64[k]),
            format!("{:.6}", cosine(k)),
        ]);
    }
    let mut summary = Table::new(&["measure", "value"]);
    let add = |t: &mut Table, a: &str, b: String| t.push(vec![a.to_string(), b]);
    add(&mut summary, "images × pixels", format!("{n} × {d}"));
    if let Some(t) = first_call {
        add(
            &mut summary,
            "first GPU pass, with pipeline builds (ms)",
            fmt(1e3 * t, 1),
        );
    }
    add(
        &mut summary,
        "covariance on the GPU (ms)",
        fmt(1e3 * t_cov_gpu, 1),
    );
    add(
        &mut summary,
        "covariance on the CPU, f64 (ms)",
        fmt(1e3 * t_cov_cpu, 1),
    );
    add(
        &mut summary,
        "Jacobi eigh on the GPU (ms)",
        fmt(1e3 * t_eigh_gpu, 1),
    );
    add(
        &mut summary,
        "reference eigh on the CPU, f64 (ms)",
        fmt(1e3 * t_eigh_cpu, 1),
    );
    add(
        &mut summary,
        "Jacobi sweeps (converged)",
        format!("{sweeps} ({converged})"),
    );
    add(
        &mut summary,
        "max abs(Δλ)/λ₁ against the reference",
        format!(
            "{:.2e} (component {})",
            max_diff.0 / lam_max,
            max_diff.1 + 1
        ),
    );
    add(
        &mut summary,
        "‖CV − VΛ‖_F / ‖C‖_F (GPU)",
        format!("{residual:.2e}"),
    );
    add(
        &mut summary,
        "‖VᵀV − I‖_F (GPU)",
        format!("{orthogonality:.2e}"),
    );
    add(
        &mut summary,
        "components for 90% / 95% / 99% of the variance",
        format!("{} / {} / {}", needed(0.9), needed(0.95), needed(0.99)),
    );
    summary.write_csv(&s.out.join("summary.csv"))?;
    write_json(
        &s.out.join("summary.json"),
        &json!({
            "demo": "pca",
            "adapter": s.device.info().name,
            "backend": format!("{:?}", s.device.info().backend),
            "data": s.data,
            "size": size,
            "images": n,
            "pixels": d,
            "seconds": {
                "first_gpu_pass_with_pipeline_builds": first_call,
                "covariance_gpu": t_cov_gpu,
                "covariance_cpu_f64": t_cov_cpu,
                "eigh_gpu": t_eigh_gpu,
                "eigh_cpu_reference": t_eigh_cpu,
            },
            "sweeps": sweeps,
            "converged": converged,
            "max_abs_eigenvalue_diff_over_lambda1": max_diff.0 / lam_max,
            "residual": residual,
            "orthogonality": orthogonality,
            "components_for": { "0.9": needed(0.9), "0.95": needed(0.95), "0.99": needed(0.99) },
            "top_eigenvalues_gpu": &lam_gpu[..args.top.min(d)],
            "top_eigenvalues_reference": &lam_ref[..args.top.min(d)],
            "explained": explained,
        }),
    )?;
    println!("\nTop eigenvalues of the covariance, GPU against the CPU reference:\n");
    println!("{}", top.render());
    println!("{}", summary.render());
    println!(
        "wrote eigenimages.png, explained_variance.png, eigenvalues.csv, summary.csv, summary.json to {}",
        s.out.display()
    );
    Ok(())
}
