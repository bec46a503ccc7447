//! Dropout and layer normalisation: the GPU kernels against their reference twins on awkward
//! sizes, the dropout mask's statistics and determinism, both ops inside training steps on
//! both executors, and what each does in training and in evaluation mode.
//!
//! Tolerances:
//! - dropout multiplies each kept element by the same f32 scale on both sides and draws the
//!   mask from the same integer hash: the GPU result must equal the f32 reference bit for bit;
//! - layer normalisation, against the f64 reference: the row mean is an f32 sum of the n
//!   terms x − x₀ (x₀ the row's first element) and the variance one of (x − mean)², whose
//!   rounding errors are at most about n·u relative to the sums of their magnitudes (u = f32
//!   epsilon). An output y = (x − mean)·rstd then errs by about
//!   n·u·(mean|x − x₀|/σ + |y| + 1) + u·|x₀|/σ — the mean's error relative to σ, the
//!   variance's relative error carried by |y|, and x itself held to u·|x| in f32 — and we
//!   allow twice that. The gradient dx = rstd·(dy − mean(dy) − y·mean(dy∘y)) carries the same
//!   relative error on terms of size rstd·max|dy|·(2 + max|y|²). A wrong kernel is off by
//!   O(1); rows with mean 1000 and spread 1 keep the bound below 1e-2.

mod common;
use common::{device, random, widen, EPS};
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::reference::ReferencePlan;
use eigengrad::graph::{Graph, Init, Op, Plan, Value};
use eigengrad::kernels::{dropout, norm};
use eigengrad::nn::{Activation, Layer, Mode, Scope, Sequential};
use eigengrad::optim::Sgd;
use eigengrad::reference;
use eigengrad::{Error, Tensor};

/// Row counts and widths that miss every power of two and tile, and the degenerate ones.
const NORM_SHAPES: [(usize, usize); 9] = [
    (1, 1),
    (4, 1),
    (1, 7),
    (5, 13),
    (17, 64),
    (3, 257),
    (70, 10),
    (2, 1000),
    (3, 8193),
];

/// Rows of `x` with their own offsets and scales: some far from zero mean (1e3), some with a
/// tiny spread, so the mean and variance are tested where f32 cancels.
fn awkward_rows(seed: u64, rows: usize, cols: usize) -> Vec<f32> {
    let base = random(seed, rows * cols, 1.0);
    base.chunks(cols)
        .enumerate()
        .flat_map(|(r, row)| {
            let (offset, scale) = [(0.0, 1.0), (1000.0, 1.0), (-3.0, 1e-2), (0.5, 30.0)][r % 4];
            row.iter()
                .map(move |&v| offset + scale * v)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// (mean |x − x₀|, |x₀|, σ) of one row in f64, x₀ its first element.
fn row_scale(row: &[f64]) -> (f64, f64, f64) {
    let n = row.len() as f64;
    let mean = row.iter().sum::<f64>() / n;
    let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let spread = row.iter().map(|v| (v - row[0]).abs()).sum::<f64>() / n;
    (spread, row[0].abs(), var.sqrt())
}

#[test]
fn layer_norm_matches_the_reference_on_awkward_shapes() {
    let dev = device();
    let eps = 1e-5f32;
    for (k, &(rows, cols)) in NORM_SHAPES.iter().enumerate() {
        let x = awkward_rows(k as u64, rows, cols);
        let dy = random(100 + k as u64, rows * cols, 1.0);
        let xt = Tensor::from_slice(&dev, &[rows, cols], &x).unwrap();
        let dyt = Tensor::from_slice(&dev, &[rows, cols], &dy).unwrap();
        let y = norm::layer_norm(&xt, eps).unwrap().to_vec().unwrap();
        let dx = norm::layer_norm_backward(&xt, &dyt, eps)
            .unwrap()
            .to_vec()
            .unwrap();
        let (x64, dy64) = (widen(&x), widen(&dy));
        let y_ref = reference::norm::layer_norm(&x64, cols, eps as f64);
        let dx_ref = reference::norm::layer_norm_backward(&x64, &dy64, cols, eps as f64);
        let n = cols as f64;
        let bound = |i: usize, scale: f64| {
            let row = &x64[i / cols * cols..(i / cols + 1) * cols];
            let (spread, first, sigma) = row_scale(row);
            let sigma = (sigma * sigma + eps as f64).sqrt();
            2.0 * ((n + 2.0) * (spread / sigma + 1.0) + first / sigma) * EPS * scale
        };
        let max_y = |i: usize| {
            y_ref[i / cols * cols..(i / cols + 1) * cols]
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()))
        };
        let max_dy = dy64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        common::assert_close_each(&format!("layer_norm {rows}x{cols}"), &y, &y_ref, |i, r| {
            bound(i, 1.0 + r.abs())
        });
        common::assert_close_each(
            &format!("layer_norm_backward {rows}x{cols}"),
            &dx,
            &dx_ref,
            |i, _| {
                let row = &x64[i / cols * cols..(i / cols + 1) * cols];
                let rstd = 1.0 / (row_scale(row).2.powi(2) + eps as f64).sqrt();
                bound(i, rstd * max_dy * (2.0 + max_y(i) * max_y(i)))
            },
        );
    }
}

#[test]
fn layer_norm_rejects_bad_arguments() {
    let dev = device();
    let x = Tensor::from_slice(&dev, &[2, 3], &[1.0; 6]).unwrap();
    for eps in [0.0, -1.0, f32::NAN] {
        assert!(matches!(
            norm::layer_norm(&x, eps),
            Err(Error::InvalidArgument(_))
        ));
    }
    let dy = Tensor::from_slice(&dev, &[3, 2], &[1.0; 6]).unwrap();
    assert!(matches!(
        norm::layer_norm_backward(&x, &dy, 1e-5),
        Err(Error::Shape { .. })
    ));
    let mut g = Graph::new();
    let wide = g.input("x", &[1, norm::MAX_COLS + 1]).unwrap();
    assert!(matches!(
        g.layer_norm(wide, 1e-5),
        Err(Error::TooLarge { .. })
    ));
}

/// Past 65535 workgroups of 64 the grid folds into a second dimension.
const DROPOUT_SIZES: [usize; 6] = [1, 7, 64, 1000, 65_537, 65_535 * 64 + 3];

#[test]
fn dropout_matches_the_reference_bit_for_bit() {
    let dev = device();
    for (k, &n) in DROPOUT_SIZES.iter().enumerate() {
        let x = random(k as u64, n, 2.0);
        let xt = Tensor::from_slice(&dev, &[n], &x).unwrap();
        for (rate, seed, step) in [(0.5, 1u32, 1u64), (0.1, 99, 12_345), (0.9, 7, 1 << 33)] {
            let gpu = dropout::dropout(&xt, rate, seed, step)
                .unwrap()
                .to_vec()
                .unwrap();
            let cpu = reference::dropout::dropout(&x, rate, seed, step);
            let first_diff = gpu
                .iter()
                .zip(&cpu)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(
                first_diff, None,
                "n {n}, rate {rate}, seed {seed}, step {step}"
            );
        }
    }
}

/// The kept fraction is 1 − rate within 5 binomial standard deviations; masks change with the
/// step and the seed and repeat for equal ones; kept elements are scaled by 1/(1 − rate).
#[test]
fn dropout_masks_have_the_rate_and_change_every_step() {
    let n = 200_000;
    for rate in [0.1f32, 0.5, 0.8] {
        let kept = (0..n)
            .filter(|&i| reference::dropout::keeps(rate, 3, 1, i))
            .count() as f64;
        let p = 1.0 - rate as f64;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (kept - n as f64 * p).abs() < 5.0 * sd,
            "rate {rate}: kept {kept} of {n}"
        );
    }
    let mask = |seed, step| -> Vec<bool> {
        (0..1000)
            .map(|i| reference::dropout::keeps(0.5, seed, step, i))
            .collect()
    };
    assert_eq!(mask(3, 1), mask(3, 1));
    assert_ne!(mask(3, 1), mask(3, 2));
    assert_ne!(mask(3, 1), mask(4, 1));
    let y = reference::dropout::dropout(&[1.0f64; 100], 0.75, 3, 1);
    assert!(y.iter().all(|&v| v == 0.0 || v == 4.0) && y.contains(&4.0));
    assert!(reference::dropout::dropout(&[1.0f64; 5], 0.0, 3, 1) == [1.0; 5]);
}

/// A small classifier with every new stage: dense, layer norm, tanh, dropout, dense.
fn regularised() -> Sequential {
    Sequential::new()
        .push(Layer::Linear {
            outputs: 12,
            init_scale: 1.0,
        })
        .push(Layer::LayerNorm { eps: 1e-5 })
        .push(Layer::Activation(Activation::Tanh))
        .push(Layer::Dropout { rate: 0.3 })
        .push(Layer::Linear {
            outputs: 5,
            init_scale: 1.0,
        })
}

/// A graph of `model` on x `[batch, 9]` in `mode`, with an MSE loss against t and SGD
/// (training only).
struct Built {
    graph: Graph,
    x: Value,
    t: Value,
    y: Value,
    loss: Value,
}

fn graph_of(model: &Sequential, batch: usize, mode: Mode) -> Built {
    let mut graph = Graph::new();
    let x = graph.input("x", &[batch, 9]).unwrap();
    let y = model
        .build(&mut Scope::new(&mut graph, mode), x)
        .unwrap()
        .logits;
    let t = graph.input("t", &[batch, 5]).unwrap();
    let loss = graph.mse(y, t).unwrap();
    if mode == Mode::Train {
        let mut sgd = Sgd::new(0.05);
        sgd.momentum = 0.5;
        sgd.minimize(&mut graph, loss).unwrap();
    }
    Built {
        graph,
        x,
        t,
        y,
        loss,
    }
}

/// Five SGD steps through layer norm and dropout on the GPU (f32) and the f64 reference from
/// the same initial weights: the masks are the same on both, so the trajectories agree to
/// f32 rounding (values O(1), sums of ≤ 12 terms, 5 steps: 1e-4 leaves a wide margin; a
/// different mask or a wrong gradient differs by O(0.1) after one step).
#[test]
fn training_steps_with_dropout_and_layer_norm_match_the_reference() {
    let Built {
        graph: g,
        x,
        t,
        loss,
        ..
    } = graph_of(&regularised(), 11, Mode::Train);
    let mut gpu = GpuPlan::compile(&device(), &g, &[loss], 4).unwrap();
    let mut cpu = ReferencePlan::<f64>::compile(&g, 4).unwrap();
    let params = g
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.op, Op::Param { .. }))
        .map(|(i, _)| g.value(i).unwrap())
        .collect::<Vec<_>>();
    for step in 0..5u64 {
        let xs = random(10 + step, 11 * 9, 1.5);
        let ts = random(20 + step, 11 * 5, 1.0);
        gpu.step(&[(x, &xs), (t, &ts)]).unwrap();
        Plan::step(&mut cpu, &[(x, &xs), (t, &ts)]).unwrap();
        let (a, b) = (gpu.read(loss).unwrap()[0], cpu.read(loss).unwrap()[0]);
        assert!((a as f64 - b).abs() < 1e-4, "step {step}: loss {a} vs {b}");
    }
    for p in params {
        let (a, b) = (gpu.read(p).unwrap(), cpu.read(p).unwrap().to_vec());
        let name = &g.nodes()[p.index()].name;
        common::assert_close_each(name, &a, &b, |_, _| 1e-4);
    }
}

/// Evaluation mode has no dropout: the output equals the training graph's output with the
/// dropout rate at 0 (layer norm and the dense layers are the same in both modes), and it
/// does not depend on the step count.
#[test]
fn evaluation_mode_is_dropout_free_and_layer_norm_is_the_same() {
    let dev = device();
    let batch = 6;
    let eval = graph_of(&regularised(), batch, Mode::Eval);
    let mut no_dropout = regularised();
    no_dropout.layers[3] = Layer::Dropout { rate: 0.0 };
    let train0 = graph_of(&no_dropout, batch, Mode::Train);
    let has_dropout = |g: &Graph| g.nodes().iter().any(|n| matches!(n.op, Op::Dropout { .. }));
    assert!(!has_dropout(&eval.graph) && !has_dropout(&train0.graph));
    assert!(has_dropout(
        &graph_of(&regularised(), batch, Mode::Train).graph
    ));
    let (ex, le, tx, lt) = (eval.x, eval.y, train0.x, train0.y);
    let mut eval_plan = GpuPlan::compile(&dev, &eval.graph, &[le], 8).unwrap();
    let mut train_plan = GpuPlan::compile(&dev, &train0.graph, &[lt], 8).unwrap();
    let xs = random(3, batch * 9, 1.0);
    eval_plan.forward(&[(ex, &xs)], &[le]).unwrap();
    train_plan.forward(&[(tx, &xs)], &[lt]).unwrap();
    let (a, b) = (eval_plan.read(le).unwrap(), train_plan.read(lt).unwrap());
    assert_eq!(a, b);
    eval_plan.set_steps(1000);
    eval_plan.forward(&[(ex, &xs)], &[le]).unwrap();
    assert_eq!(eval_plan.read(le).unwrap(), a);
    assert_eq!(
        eval_plan.steps(),
        1000,
        "forward runs leave the step count alone"
    );
}

#[test]
fn graph_builders_check_rates_and_eps() {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 3]).unwrap();
    for rate in [-0.1, 1.0, f32::NAN] {
        assert!(matches!(
            g.dropout(x, rate, 0),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert_eq!(g.dropout(x, 0.0, 0).unwrap(), x, "rate 0 is the identity");
    for eps in [0.0, f32::INFINITY] {
        assert!(matches!(
            g.layer_norm(x, eps),
            Err(Error::InvalidArgument(_))
        ));
    }
    let w = g.param("w", &[3], Init::Zeros).unwrap();
    assert!(g.dropout(w, 0.5, 1).is_ok());
}
