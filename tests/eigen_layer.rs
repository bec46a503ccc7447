//! The Eigen layers on the GPU: against the reference executor, the spectral guarantees after
//! a forward pass, warm-start sweep counts over training, and non-finite input.

mod common;
use common::{device, random, widen};
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::reference::ReferencePlan;
use eigengrad::graph::{Graph, Init, Plan, Value};
use eigengrad::nn::{scaled_normal, EigenLayer, EigenMode, EigenWhiten, Mode, Scope, WhitenMode};
use eigengrad::optim::Adam;
use eigengrad::Error;
use nalgebra::DMatrix;

fn singular_values(w: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let m = DMatrix::from_row_iterator(rows, cols, w.iter().map(|&v| v as f64));
    m.singular_values().iter().copied().collect()
}

/// One EigenLayer with a sum-of-R∘y loss (R fixed): values to compare and to read.
struct Model {
    graph: Graph,
    x: Value,
    layer: EigenLayer,
    loss: Value,
    grad_w: Value,
}

fn model(batch: usize, inputs: usize, outputs: usize, mode: EigenMode, init: Init) -> Model {
    let mut g = Graph::new();
    let x = g.input("x", &[batch, inputs]).unwrap();
    let layer = EigenLayer::new(
        &mut Scope::new(&mut g, Mode::Train).scope("eigen"),
        inputs,
        outputs,
        mode,
        init,
    )
    .unwrap();
    let y = layer.forward(&mut g, x).unwrap();
    let r = g
        .param(
            "r",
            &[batch, outputs],
            Init::Data(random(5, batch * outputs, 1.0)),
        )
        .unwrap();
    let ry = g.mul(y, r).unwrap();
    let loss = g.mean_all(ry).unwrap();
    let grads = g.backward(loss).unwrap();
    let grad_w = grads.get(layer.linear.weight).unwrap();
    Model {
        graph: g,
        x,
        layer,
        loss,
        grad_w,
    }
}

/// Forward output and the weight gradient on the GPU (f32, Jacobi) against the f64 reference
/// (nalgebra eigendecomposition). The solver's eigenvectors carry an error of order
/// n·ε·‖G‖/gap; the spectral function and its Loewner backward are smooth in G, so H and dW
/// inherit an error of a few n·ε relative: we allow 1e-4 relative to the largest entry,
/// for n ≤ 48.
#[test]
fn gpu_layer_matches_reference_forward_and_gradient() {
    let dev = device();
    let cases = [
        (
            EigenMode::Clamp { lo: 0.9, hi: 1.1 },
            40,
            24,
            scaled_normal(40, 2.0),
        ),
        (
            EigenMode::Clamp { lo: 0.5, hi: 2.0 },
            17,
            31,
            scaled_normal(17, 1.0),
        ),
        (EigenMode::Orthogonal, 24, 24, Init::Identity { gain: 1.0 }),
        (
            EigenMode::Orthogonal,
            48,
            16,
            Init::Orthogonal { gain: 0.5 },
        ),
        // Random init: a simple top singular value, whose eigenvector (the whole gradient
        // through σ_max) the solver resolves to ~ε·‖G‖/gap.
        (EigenMode::Normalize, 40, 24, scaled_normal(40, 2.0)),
        (EigenMode::Normalize, 17, 31, scaled_normal(17, 1.0)),
    ];
    for (mode, inputs, outputs, init) in cases {
        let m = model(8, inputs, outputs, mode, init);
        let mut gpu = GpuPlan::compile(
            &dev,
            &m.graph,
            &[m.loss, m.grad_w, m.layer.effective_weight],
            3,
        )
        .unwrap();
        let mut cpu = ReferencePlan::<f64>::compile(&m.graph, 3).unwrap();
        let x = random(9, 8 * inputs, 1.0);
        gpu.step(&[(m.x, &x)]).unwrap();
        cpu.step(&[(m.x, &x.iter().map(|&v| v as f64).collect::<Vec<_>>())])
            .unwrap();
        gpu.check_status().unwrap();
        for (what, v) in [
            ("W'", m.layer.effective_weight),
            ("dW", m.grad_w),
            ("loss", m.loss),
        ] {
            let (a, b) = (gpu.read(v).unwrap(), cpu.read(v).unwrap());
            let scale = b.iter().fold(1e-6f64, |s, v| s.max(v.abs()));
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let err = (*x as f64 - y).abs() / scale;
                assert!(
                    err <= 1e-4,
                    "{mode:?} {inputs}x{outputs} {what}[{i}]: gpu {x} vs reference {y} ({err:e})"
                );
            }
        }
    }
}

/// After a forward pass the effective weight's singular values obey the mode, to f32 solver
/// accuracy (1e-4 relative covers n·ε·cond for these sizes).
#[test]
fn spectral_guarantees_after_forward() {
    let dev = device();
    for (mode, init) in [
        (
            EigenMode::Clamp { lo: 0.9, hi: 1.1 },
            scaled_normal(32, 3.0),
        ),
        (
            EigenMode::Clamp { lo: 0.95, hi: 1.05 },
            scaled_normal(32, 0.3),
        ),
        (EigenMode::Orthogonal, scaled_normal(32, 1.0)),
        (EigenMode::Normalize, scaled_normal(32, 3.0)),
    ] {
        let m = model(4, 32, 20, mode, init);
        let mut gpu = GpuPlan::compile(&dev, &m.graph, &[m.layer.effective_weight], 1).unwrap();
        gpu.step(&[(m.x, &random(1, 4 * 32, 1.0))]).unwrap();
        let w = gpu.read(m.layer.effective_weight).unwrap();
        let s = singular_values(&w, 32, 20);
        let raw = singular_values(&gpu.read(m.layer.linear.weight).unwrap(), 32, 20);
        let (lo, hi) = match mode {
            EigenMode::Clamp { lo, hi } => (lo as f64, hi as f64),
            EigenMode::Orthogonal => (1.0, 1.0),
            // W/σ_max: every σ ≤ 1 and the largest exactly 1 (checked below).
            EigenMode::Normalize => (0.0, 1.0),
        };
        if mode == EigenMode::Normalize {
            let top = s.iter().fold(0.0f64, |a, &v| a.max(v));
            assert!((top - 1.0).abs() <= 1e-4, "σ_max(W') = {top} (raw {raw:?})");
        }
        for (i, v) in s.iter().enumerate() {
            assert!(
                *v >= lo * (1.0 - 1e-4) && *v <= hi * (1.0 + 1e-4),
                "{mode:?}: σ{i} = {v} (raw {:?})",
                raw
            );
        }
        // The layer's own report agrees with the SVD of W'.
        let (_, eff) = m.layer.singular_values(&gpu).unwrap();
        let mut eff: Vec<f64> = eff.iter().map(|&v| v as f64).collect();
        eff.sort_by(|a, b| b.total_cmp(a));
        for (a, b) in eff.iter().zip(&s) {
            assert!(
                (a - b).abs() <= 1e-4 * b.max(1.0),
                "{mode:?}: reported {a} vs svd {b}"
            );
        }
    }
}

/// Warm start: after the first step, each solve starts from the previous eigenvectors and
/// converges in at most 2 sweeps on average over 50 Adam steps. (Adam moves every weight by
/// about lr per step; at lr 3e-4 on weights of size ~0.2 that is a 0.15% relative change of
/// the Gram matrix. At lr 1e-3 we measured a mean of 2.08: the third sweep then appears on
/// a few steps.)
#[test]
fn warm_start_keeps_sweeps_low_over_training() {
    let dev = device();
    let m = {
        let mut g = Graph::new();
        let x = g.input("x", &[32, 48]).unwrap();
        let t = g.input("t", &[32, 48]).unwrap();
        let layer = EigenLayer::new(
            &mut Scope::new(&mut g, Mode::Train).scope("eigen"),
            48,
            48,
            EigenMode::Clamp { lo: 0.8, hi: 1.25 },
            scaled_normal(48, 1.5),
        )
        .unwrap();
        let y = layer.forward(&mut g, x).unwrap();
        let loss = g.mse(y, t).unwrap();
        Adam::new(3e-4).minimize(&mut g, loss).unwrap();
        (g, x, t, layer)
    };
    let (g, x, t, layer) = m;
    let mut plan = GpuPlan::compile(&dev, &g, &[], 2).unwrap();
    let mut sweeps = vec![];
    for step in 0..50 {
        plan.step(&[
            (x, &random(step, 32 * 48, 1.0)),
            (t, &random(100 + step, 32 * 48, 1.0)),
        ])
        .unwrap();
        sweeps.push(layer.sweeps(&plan).unwrap());
    }
    let later = &sweeps[1..];
    let mean = later.iter().sum::<f32>() / later.len() as f32;
    assert!(
        sweeps[0] >= 3.0,
        "a cold start needs several sweeps: {}",
        sweeps[0]
    );
    assert!(
        mean <= 2.0,
        "mean sweeps after the first step {mean}: {sweeps:?}"
    );
}

/// ZCA whitening: the layer's output has (batch) covariance ≈ I per group.
#[test]
fn zca_whitens_each_group() {
    let dev = device();
    let (batch, features, group) = (256, 32, 16);
    let mut g = Graph::new();
    let x = g.input("x", &[batch, features]).unwrap();
    let (_, y) = EigenWhiten::new(
        &mut Scope::new(&mut g, Mode::Train).scope("white"),
        x,
        group,
        WhitenMode::Zca { eps: 1e-5 },
        0.1,
    )
    .unwrap();
    let mut plan = GpuPlan::compile(&dev, &g, &[y], 1).unwrap();
    // Correlated features: mixtures of a few sources plus noise, with unequal scales.
    let src = random(3, batch * 8, 1.0);
    let noise = random(4, batch * features, 0.3);
    let data: Vec<f32> = (0..batch * features)
        .map(|i| {
            let (r, c) = (i / features, i % features);
            let s = src[r * 8 + c % 8] + 0.5 * src[r * 8 + (c + 3) % 8];
            (1.0 + c as f32 * 0.3) * s + noise[i] + 2.0
        })
        .collect();
    plan.step(&[(x, &data)]).unwrap();
    plan.check_status().unwrap();
    let out = plan.read(y).unwrap();
    let y = DMatrix::from_row_iterator(batch, features, out.iter().map(|&v| v as f64));
    let mean = y.row_mean();
    let yc = DMatrix::from_fn(batch, features, |r, c| y[(r, c)] - mean[c]);
    let cov = yc.transpose() * &yc / batch as f64;
    for gi in 0..features / group {
        for i in 0..group {
            for j in 0..group {
                let expected = if i == j { 1.0 } else { 0.0 };
                let v = cov[(gi * group + i, gi * group + j)];
                // The smallest eigenvalues are the noise variance 0.3²/3 = 0.03 (times the
                // feature scale ≥ 1), so ε = 1e-5 shifts the diagonal by under 1e-3 (λ/(λ+ε));
                // the sampling of 256 rows makes no difference as the batch covariance itself
                // is whitened; f32 solver error adds ~1e-4.
                assert!(
                    (v - expected).abs() <= 1e-2,
                    "group {gi} cov[{i},{j}] = {v}"
                );
            }
        }
    }
}

/// A NaN weight reaches the eigendecomposition: the step's status names the layer.
#[test]
fn non_finite_weight_is_reported_by_the_status() {
    let dev = device();
    let m = model(2, 6, 4, EigenMode::Orthogonal, scaled_normal(6, 1.0));
    let mut plan = GpuPlan::compile(&dev, &m.graph, &[m.loss], 1).unwrap();
    let mut w = plan.read(m.layer.linear.weight).unwrap();
    w[5] = f32::NAN;
    plan.write(m.layer.linear.weight, &w).unwrap();
    plan.step(&[(m.x, &random(1, 12, 1.0))]).unwrap();
    match plan.check_status() {
        Err(Error::NonFinite { what, index }) => {
            assert!(what.contains("eigen.spectral"), "{what}");
            assert_eq!(index, 0);
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

/// All Eigen layers whose Gram matrices have the same order share one batched solve, run
/// ahead of the batch work; the result is unchanged: a 4-layer Eigen MLP (with the default
/// gain on its logits layer) trains 5 steps on the GPU like the f64 reference (tolerance as
/// above, 1e-4 relative).
/// One training step on the GPU (f32, Jacobi) and on the f64 reference with the same
/// inputs; the losses must agree to 1e-4 relative — what f32 eigenvectors through a few Eigen
/// layers of order ≤ 24 allow (a few n·ε relative to the largest eigenvalue per solve).
fn step_both(
    gpu: &mut GpuPlan,
    cpu: &mut ReferencePlan<f64>,
    inputs: &[(Value, &[f32])],
    loss: Value,
    step: u64,
) {
    gpu.step(inputs).unwrap();
    let wide: Vec<(Value, Vec<f64>)> = inputs.iter().map(|(v, d)| (*v, widen(d))).collect();
    let wide: Vec<(Value, &[f64])> = wide.iter().map(|(v, d)| (*v, d.as_slice())).collect();
    cpu.step(&wide).unwrap();
    let (a, b) = (
        gpu.read(loss).unwrap()[0] as f64,
        cpu.read(loss).unwrap()[0],
    );
    assert!(
        (a - b).abs() <= 1e-4 * b.abs().max(1.0),
        "step {step}: loss {a} vs {b}"
    );
}

#[test]
fn equal_size_layers_share_one_batched_solve() {
    use eigengrad::nn::{Activation, GainPlacement, LayerKind, MlpSpec};
    use eigengrad::optim::Sgd;
    let dev = device();
    let spec = MlpSpec {
        widths: vec![16, 16, 16, 16, 4],
        activation: Activation::Tanh,
        kind: LayerKind::Eigen(EigenMode::Clamp { lo: 0.8, hi: 1.2 }),
        init_scale: 1.5,
        gains: GainPlacement::Logits,
        stack: false,
    };
    let mut g = Graph::new();
    let x = g.input("x", &[8, 16]).unwrap();
    let t = g.input("t", &[8, 4]).unwrap();
    let net = spec.build(&mut g, x).unwrap();
    let loss = g.softmax_cross_entropy(net.logits, t).unwrap();
    Sgd::new(0.05).minimize(&mut g, loss).unwrap();
    let mut gpu = GpuPlan::compile(&dev, &g, &[loss], 4).unwrap();
    assert_eq!(
        gpu.solves_per_step(),
        2,
        "three 16×16 Gram matrices in one solve, one 4×4"
    );
    let mut cpu = ReferencePlan::<f64>::compile(&g, 4).unwrap();
    let mut targets = vec![0.0f32; 8 * 4];
    (0..8).for_each(|r| targets[r * 4 + r % 4] = 1.0);
    for step in 0..5 {
        let xs = random(step, 8 * 16, 1.0);
        step_both(&mut gpu, &mut cpu, &[(x, &xs), (t, &targets)], loss, step);
    }
    // Every weight, and the logits layer's gain (on by default), trained alike.
    let gain = net.layers.last().unwrap().gain().expect("a logits gain");
    for v in net.layers.iter().map(|l| l.weight()).chain([gain]) {
        let (a, b) = (gpu.read(v).unwrap(), cpu.read(v).unwrap());
        let scale = b.iter().fold(1e-6f64, |s, v| s.max(v.abs()));
        for (p, q) in a.iter().zip(b) {
            assert!((*p as f64 - q).abs() <= 1e-4 * scale, "weights {p} vs {q}");
        }
    }
}

/// The layers' introspection runs on either executor through `Plan`: after one step on the
/// same data, the reference executor (f32, nalgebra's symmetric eigensolver) reports what the
/// GPU (f32, Jacobi) reports — an Eigen layer's singular values, and a whitening layer's
/// explained variance and principal directions. Both solve f32 matrices of order ≤ 24 to
/// a few n·ε relative to the largest eigenvalue, so values agree to 1e-4 of the largest;
/// the covariance eigenvalues here are (1 + i)² up to sampling, gaps of ≥ 3 next to a top
/// of ≈ 64, so each eigenvector agrees up to sign to ~n·ε·64/3 ≈ 1e-5: we allow 1e-3 on
/// 1 − |cos| of each pair. Only the GPU counts Jacobi sweeps.
#[test]
fn introspection_runs_on_the_reference_executor_too() {
    let dev = device();
    let mode = EigenMode::Clamp { lo: 0.9, hi: 1.1 };
    let m = model(8, 40, 24, mode, scaled_normal(40, 2.0));
    let mut gpu = GpuPlan::compile(&dev, &m.graph, &[m.loss], 3).unwrap();
    let mut cpu = ReferencePlan::<f32>::compile(&m.graph, 3).unwrap();
    let x = random(9, 8 * 40, 1.0);
    for plan in [&mut gpu as &mut dyn Plan, &mut cpu] {
        plan.step(&[(m.x, &x)]).unwrap();
    }
    let (raw_gpu, eff_gpu) = m.layer.singular_values(&gpu).unwrap();
    let (raw_cpu, eff_cpu) = m.layer.singular_values(&cpu).unwrap();
    for (a, b) in [(raw_gpu, raw_cpu), (eff_gpu, eff_cpu)] {
        let top = b.iter().fold(0.0f32, |t, v| t.max(*v));
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!(
                (p - q).abs() <= 1e-4 * top,
                "σ{i}: gpu {p} vs reference {q}"
            );
        }
    }
    assert!(m.layer.sweeps(&gpu).unwrap() >= 1.0);
    assert!(matches!(
        m.layer.sweeps(&cpu),
        Err(Error::InvalidArgument(_))
    ));

    let (batch, features, group) = (64, 16, 8);
    let mut g = Graph::new();
    let xin = g.input("x", &[batch, features]).unwrap();
    let (white, y) = EigenWhiten::new(
        &mut Scope::new(&mut g, Mode::Train).scope("white"),
        xin,
        group,
        WhitenMode::Zca { eps: 1e-5 },
        0.1,
    )
    .unwrap();
    let mut gpu = GpuPlan::compile(&dev, &g, &[y], 1).unwrap();
    let mut cpu = ReferencePlan::<f32>::compile(&g, 1).unwrap();
    let src = random(11, batch * features, 1.0);
    let data: Vec<f32> = (0..batch * features)
        .map(|i| (1 + i % group) as f32 * src[i])
        .collect();
    for plan in [&mut gpu as &mut dyn Plan, &mut cpu] {
        plan.step(&[(xin, &data)]).unwrap();
    }
    let (a, b) = (
        white.explained_variance(&gpu).unwrap(),
        white.explained_variance(&cpu).unwrap(),
    );
    for (ga, gb) in a.iter().zip(&b) {
        for (p, q) in ga.iter().zip(gb) {
            assert!((p - q).abs() <= 1e-4, "explained variance {p} vs {q}");
        }
    }
    let (a, b) = (
        white.principal_directions(&gpu).unwrap(),
        white.principal_directions(&cpu).unwrap(),
    );
    for (k, (va, vb)) in a
        .chunks(group * group)
        .zip(b.chunks(group * group))
        .enumerate()
    {
        for j in 0..group {
            let cos: f32 = (0..group)
                .map(|i| va[i * group + j] * vb[i * group + j])
                .sum();
            assert!(
                1.0 - cos.abs() <= 1e-3,
                "group {k} direction {j}: |cos| = {}",
                cos.abs()
            );
        }
    }
}

/// A forward run of a whitening layer in training mode uses the batch statistics but leaves
/// the running ones alone; a step updates them. Its output matches the next step's to the
/// solver's accuracy (the step's solve is warm-started from the forward run's eigenvectors:
/// both converge to f32 accuracy, 1e-4 relative to the largest output).
#[test]
fn forward_leaves_running_statistics_alone() {
    let dev = device();
    let (batch, features, group) = (32, 8, 4);
    let mut g = Graph::new();
    let x = g.input("x", &[batch, features]).unwrap();
    let (white, y) = EigenWhiten::new(
        &mut Scope::new(&mut g, Mode::Train).scope("white"),
        x,
        group,
        WhitenMode::Shrink { keep: 0.1 },
        0.5,
    )
    .unwrap();
    let mut plan = GpuPlan::compile(&dev, &g, &[y], 1).unwrap();
    let data = random(5, batch * features, 2.0);
    let running = [white.running_mean, white.running_cov];
    let before: Vec<Vec<f32>> = running.iter().map(|&v| plan.read(v).unwrap()).collect();
    plan.forward(&[(x, &data)], &[y]).unwrap();
    let forward = plan.read(y).unwrap();
    for (&v, b) in running.iter().zip(&before) {
        assert_eq!(
            &plan.read(v).unwrap(),
            b,
            "a forward run wrote running statistics"
        );
    }
    assert_eq!(plan.steps(), 0);
    plan.step(&[(x, &data)]).unwrap();
    for (&v, b) in running.iter().zip(&before) {
        assert_ne!(
            &plan.read(v).unwrap(),
            b,
            "a step updates the running statistics"
        );
    }
    let stepped = plan.read(y).unwrap();
    let scale = stepped.iter().fold(1e-6f32, |s, v| s.max(v.abs()));
    for (i, (a, b)) in forward.iter().zip(&stepped).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * scale,
            "y[{i}]: forward {a} vs step {b}"
        );
    }
}

/// The warm start is set per layer: two Eigen layers of the same order, one cold every step
/// and one fed back (the default), get one solve each; the cold one keeps a cold start's sweep
/// count at every step while the other drops to a few, and both train as the reference
/// executor does. Setting it on a value that is not a spectral function, or asking for a
/// caller-given V0 or a cold-restart period of 0, is an error naming the node.
#[test]
fn warm_start_is_set_per_layer() {
    use eigengrad::WarmStart;
    let dev = device();
    let mut g = Graph::new();
    let x = g.input("x", &[16, 24]).unwrap();
    let t = g.input("t", &[16, 24]).unwrap();
    let mode = EigenMode::Clamp { lo: 0.8, hi: 1.25 };
    // Singular values evenly spaced 0.05 apart from 1.525 down to 0.375, the band's edges
    // halfway between two of them: a spectrum that straddles the band, with no σ within
    // 0.025 of a kink and none near 0, so the f32 run follows the f64 one (a Gaussian draw
    // can put a σ next to an edge, where f32 rounding decides which side it is on).
    let init = Init::OrthogonalSpread {
        gain: 1.525,
        spread: 0.754,
    };
    let layer = |g: &mut Graph, name: &str| {
        let mut root = Scope::new(g, Mode::Train);
        EigenLayer::new(&mut root.scope(name), 24, 24, mode, init.clone()).unwrap()
    };
    let cold = layer(&mut g, "cold");
    let warm = layer(&mut g, "warm");
    cold.set_warm_start(&mut g, WarmStart::Off).unwrap();
    assert_eq!(g.warm_start(cold.spectral), WarmStart::Off);
    assert_eq!(g.warm_start(warm.spectral), WarmStart::feedback());
    let h = cold.forward(&mut g, x).unwrap();
    let h = g.tanh(h).unwrap();
    let y = warm.forward(&mut g, h).unwrap();
    let loss = g.mse(y, t).unwrap();

    for (v, bad) in [
        (x, WarmStart::Off),
        (cold.spectral, WarmStart::Given),
        (
            cold.spectral,
            WarmStart::Feedback {
                cold_restart_every: 0,
            },
        ),
    ] {
        match g.set_warm_start(v, bad) {
            Err(Error::InvalidArgument(m)) => {
                let name = g.try_node(v).unwrap().name.clone();
                assert!(m.contains(&name), "{m}");
            }
            other => panic!("{bad:?} on {v:?}: {other:?}"),
        }
    }
    assert_eq!(g.warm_start(cold.spectral), WarmStart::Off, "unchanged");

    Adam::new(1e-3).minimize(&mut g, loss).unwrap();
    let mut gpu = GpuPlan::compile(&dev, &g, &[loss], 3).unwrap();
    assert_eq!(gpu.solves_per_step(), 2, "one solve per warm-start setting");
    let mut cpu = ReferencePlan::<f64>::compile(&g, 3).unwrap();
    let (mut cold_sweeps, mut warm_sweeps) = (vec![], vec![]);
    for step in 0..8 {
        let (xs, ts) = (random(step, 16 * 24, 1.0), random(50 + step, 16 * 24, 1.0));
        step_both(&mut gpu, &mut cpu, &[(x, &xs), (t, &ts)], loss, step);
        cold_sweeps.push(cold.sweeps(&gpu).unwrap());
        warm_sweeps.push(warm.sweeps(&gpu).unwrap());
    }
    eprintln!("sweeps per step: cold {cold_sweeps:?}, fed back {warm_sweeps:?}");
    // A cold 24×24 solve needs 5–7 sweeps; a fed-back one after a small Adam step 1–3.
    assert!(cold_sweeps.iter().all(|&s| s >= 4.0), "{cold_sweeps:?}");
    assert!(warm_sweeps[0] >= 4.0, "step 0 is cold: {warm_sweeps:?}");
    assert!(
        warm_sweeps[1..].iter().all(|&s| s <= 3.0),
        "{warm_sweeps:?}"
    );
}

/// An MLP whose three 16×16 hidden Eigen layers are one stack trains, step for step, like the
/// same MLP of separate layers started from the same values, in every mode — on the GPU
/// (f32, tolerance as above) — and like the f64 reference; the stacked step issues fewer
/// launches (each of the run's per-layer weight ops runs once for the run). Every member
/// reports its own spectrum, gain and sweeps.
#[test]
fn a_stacked_run_trains_like_separate_layers_with_fewer_launches() {
    use eigengrad::nn::{Activation, GainPlacement, LayerKind, MlpSpec};
    let dev = device();
    let (batch, classes) = (8, 5);
    for mode in [
        EigenMode::Orthogonal,
        EigenMode::DEFAULT_CLAMP,
        EigenMode::Normalize,
    ] {
        let build = |stack: bool| {
            let spec = MlpSpec {
                widths: vec![12, 16, 16, 16, 16, classes],
                activation: Activation::Tanh,
                kind: LayerKind::Eigen(mode),
                init_scale: 1.0,
                gains: GainPlacement::Every,
                stack,
            };
            let mut g = Graph::new();
            let x = g.input("x", &[batch, 12]).unwrap();
            let t = g.input("t", &[batch, classes]).unwrap();
            let net = spec.build(&mut g, x).unwrap();
            let loss = g.softmax_cross_entropy(net.logits, t).unwrap();
            Adam::new(0.01).minimize(&mut g, loss).unwrap();
            (g, x, t, loss, net)
        };
        let (gu, xu, tu, lu, nu) = build(false);
        let (gs, xs, ts, ls, ns) = build(true);
        // The compile seed draws the layers' weights. Where a draw puts a singular value
        // within rounding distance of a clamp band's edge after a step, f32 and f64 runs take
        // different sides of the kink and differ by more than rounding: with seed 3 `Clamp`
        // did after one step (1.7073 vs 1.7035), with seed 0 every mode agrees within 5e-6
        // over the five steps. That is the band's kink, not the stacking.
        let mut separate = GpuPlan::compile(&dev, &gu, &[lu], 0).unwrap();
        let mut stacked = GpuPlan::compile(&dev, &gs, &[ls], 0).unwrap();
        let mut reference = ReferencePlan::<f64>::compile(&gs, 0).unwrap();
        // The stack starts from the separate layers' values.
        let read = |plan: &GpuPlan, name: &str| plan.read(gu.find(name).unwrap()).unwrap();
        for node in gs.nodes().iter().filter(|n| n.name.starts_with("layer")) {
            let Some(v) = gs.find(&node.name) else {
                continue;
            };
            if !gs.trainable_params().contains(&v) {
                continue;
            }
            let values: Vec<f32> = match node.name.as_str() {
                "layers1-3.weight" => (1..=3)
                    .flat_map(|l| read(&separate, &format!("layer{l}.weight")))
                    .collect(),
                "layers1-3.gain" => (1..=3)
                    .flat_map(|l| read(&separate, &format!("layer{l}.gain")))
                    .collect(),
                name => match name.strip_prefix("layers1-3.bias") {
                    Some(k) => read(
                        &separate,
                        &format!("layer{}.bias", 1 + k.parse::<usize>().unwrap()),
                    ),
                    None => read(&separate, name),
                },
            };
            stacked.write(v, &values).unwrap();
            reference.write(v, &widen(&values)).unwrap();
        }
        let mut targets = vec![0.0f32; batch * classes];
        (0..batch).for_each(|r| targets[r * classes + r % classes] = 1.0);
        for step in 0..5 {
            let x = random(step + 10, batch * 12, 1.0);
            separate.step(&[(xu, &x), (tu, &targets)]).unwrap();
            step_both(
                &mut stacked,
                &mut reference,
                &[(xs, &x), (ts, &targets)],
                ls,
                step,
            );
            let (a, b) = (stacked.read(ls).unwrap()[0], separate.read(lu).unwrap()[0]);
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "{mode:?}, step {step}: stacked loss {a} vs separate {b}"
            );
        }
        let stacked_weights = stacked.read(gs.find("layers1-3.weight").unwrap()).unwrap();
        let separate_weights: Vec<f32> = (1..=3)
            .flat_map(|l| read(&separate, &format!("layer{l}.weight")))
            .collect();
        for (a, b) in stacked_weights.iter().zip(&separate_weights) {
            assert!((a - b).abs() <= 1e-4, "{mode:?}: weights {a} vs {b}");
        }
        // Introspection per member: the same spectra, gains and sweep counts shape.
        for (s, u) in ns.layers.iter().zip(&nu.layers) {
            let (eigengrad::nn::MlpLayer::Eigen(s), eigengrad::nn::MlpLayer::Eigen(u)) = (s, u)
            else {
                panic!("Eigen layers");
            };
            let ((raw_s, eff_s), (raw_u, eff_u)) = (
                s.singular_values(&stacked).unwrap(),
                u.singular_values(&separate).unwrap(),
            );
            assert_eq!((raw_s.len(), eff_s.len()), (raw_u.len(), eff_u.len()));
            for (a, b) in raw_s.iter().chain(&eff_s).zip(raw_u.iter().chain(&eff_u)) {
                assert!(
                    (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                    "{mode:?}: σ {a} vs {b}"
                );
            }
            let (ga, gb) = (
                s.gain_value(&stacked).unwrap(),
                u.gain_value(&separate).unwrap(),
            );
            assert!(
                (ga - gb).abs() <= 1e-4 * gb.abs().max(1.0),
                "{mode:?}: gains {ga} vs {gb}"
            );
            // Each member's own sweep count, where its separate twin solved the same matrix.
            let (sa, sb) = (s.sweeps(&stacked).unwrap(), u.sweeps(&separate).unwrap());
            assert!(
                sa >= 1.0 && (sa - sb).abs() <= 1.0,
                "{mode:?}: sweeps {sa} vs {sb}"
            );
        }
        let (a, b) = (stacked.launches().len(), separate.launches().len());
        assert!(a + 20 <= b, "{mode:?}: {a} launches stacked, {b} separate");
        eprintln!("{mode:?}: {a} launches stacked, {b} separate");
    }
}
