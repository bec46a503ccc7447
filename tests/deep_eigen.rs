//! Deep Eigen networks train from any initial scale. On the embedded digits (1,437 train /
//! 360 test images, standardised), a tanh MLP of 16 weight layers of width 32 built from Eigen
//! layers (with the default gains on every layer) reaches the accuracy of a shallow network
//! from a small (s = 0.5) and a large (s = 2) Gaussian initialisation, and the learnable gains
//! move away from their initial 1.
//!
//! The target, 93% held-out accuracy, is about what a plain network of two layers (the shallow
//! baseline) reaches on this split with the same width and budget (94% from s = 0.5, 90% from
//! s = 2, `cargo run --example deep_mlp`); a deep plain network from s = 0.5 stays near 20%.
//! Measured with this budget: `Clamp` (default band) 97.2% from s = 0.5 and from s = 2 —
//! margins of 15 of the 360 test images — with the gains grown to 1.26–1.38 from s = 0.5 and
//! to 1.08–1.26 from s = 2 (the first layer's fell to 0.93). Every mode stores its raw weight
//! at one scale (singular values of root-mean-square 1, [`EigenMode::raw_weight_init`]), since
//! its size would only divide the rate at which training turns the layer; `Clamp`, whose band
//! makes s part of the function, multiplies it by s as a constant
//! ([`EigenMode::raw_weight_scale`]). `Orthogonal`'s polar factor does not depend on the scale
//! at all: one network from both scales, 96.7% (a margin of 13).
//!
//! `Normalize` (W/σ_max) is held to the same target. W/σ_max keeps the ratios of W's singular
//! values and does not depend on W's scale either, so the layer draws its own raw weight
//! whatever s is — nearly orthogonal, singular values within 10% of σ_max and of
//! root-mean-square 1 ([`EigenMode::raw_weight_init`]) — and starts its gain at σ_max/σ_rms of
//! it ([`EigenMode::initial_gain`]), so every layer starts passing the signal's scale on. With
//! gains starting at 1 on a Gaussian W (σ_rms/σ_max ≈ ½) the signal started ~2¹⁵ times too
//! small at depth 16 and it reached 23% / 67% / 71% from s = 0.5 / 1 / 2 in this budget. From
//! s = 0.5 and 2 this test now runs one network: 96.7% (a margin of 13 test images), the gains
//! ending at 1.29–1.45.

mod common;
use common::device;
use eigengrad::data::{digits, Batcher, Dataset, Standardizer, DIGITS_SPLIT_SEED};
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::{Graph, Plan};
use eigengrad::nn::{scaled_normal, Activation, EigenMode, GainPlacement, LayerKind, MlpSpec};
use eigengrad::optim::Adam;

/// Depth, width and budget of every case.
const DEPTH: usize = 16;
const WIDTH: usize = 32;
const BATCH: usize = 64;
const LR: f32 = 2e-3;
const EPOCHS: usize = 10;
const TARGET: f64 = 0.93;
/// Features and classes of the embedded digits.
const FEATURES: usize = 64;
const CLASSES: usize = 10;

/// What one training run ends with.
struct Outcome {
    /// Held-out accuracy after the last epoch.
    accuracy: f64,
    /// Every layer's gain before training, input side first.
    initial_gains: Vec<f32>,
    /// Every layer's gain after the last epoch, input side first.
    gains: Vec<f32>,
}

fn data() -> (Dataset, Dataset) {
    let (mut train, mut test) = digits().unwrap().split(0.2, DIGITS_SPLIT_SEED).unwrap();
    let s = Standardizer::fit(&train, 0.1).unwrap();
    s.apply(&mut train).unwrap();
    s.apply(&mut test).unwrap();
    (train, test)
}

/// Trains a depth-[`DEPTH`] Eigen MLP in `mode` from init scale `scale` (gains on every layer,
/// the default) and evaluates it on `test`.
fn train(mode: EigenMode, scale: f32, train: &Dataset, test: &Dataset) -> Outcome {
    let dev = device();
    let mut widths = vec![train.features];
    widths.extend(std::iter::repeat_n(WIDTH, DEPTH - 1));
    widths.push(train.classes);
    let spec = MlpSpec {
        widths,
        activation: Activation::Tanh,
        kind: LayerKind::Eigen(mode),
        init_scale: scale,
        gains: GainPlacement::default(),
        stack: false,
    };
    let mut g = Graph::new();
    let x = g.input("x", &[BATCH, train.features]).unwrap();
    let t = g.input("targets", &[BATCH, train.classes]).unwrap();
    let net = spec.build(&mut g, x).unwrap();
    let loss = g.softmax_cross_entropy(net.logits, t).unwrap();
    Adam::new(LR).minimize(&mut g, loss).unwrap();
    let gains: Vec<_> = net
        .layers
        .iter()
        .map(|l| l.gain().expect("a gain"))
        .collect();
    let mut plan = GpuPlan::compile(&dev, &g, &[loss], 0).unwrap();
    let read_gains =
        |plan: &GpuPlan| -> Vec<f32> { gains.iter().map(|&v| plan.read(v).unwrap()[0]).collect() };
    let initial_gains = read_gains(&plan);
    let mut batches = Batcher::new(train, BATCH, 1).unwrap();
    for _ in 0..EPOCHS {
        for b in batches.epoch() {
            plan.step(&[(x, &b.images), (t, &b.targets)]).unwrap();
        }
    }
    plan.check_status().unwrap();

    let mut eval = Graph::new();
    let ex = eval.input("x", &[test.n, test.features]).unwrap();
    let enet = spec.build(&mut eval, ex).unwrap();
    let mut eval_plan = GpuPlan::compile(&dev, &eval, &[enet.logits], 0).unwrap();
    eval_plan.copy_resident_from(&plan).unwrap();
    eval_plan.step(&[(ex, &test.images)]).unwrap();
    let logits = eval_plan.read(enet.logits).unwrap();
    let correct = logits
        .chunks(test.classes)
        .zip(&test.labels)
        .filter(|(row, &label)| {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            best == label as usize
        })
        .count();
    Outcome {
        accuracy: correct as f64 / test.n as f64,
        initial_gains,
        gains: read_gains(&plan),
    }
}

/// Asserts the target for `mode` from s = 0.5 and s = 2.
fn reaches_target_from_both_scales(mode: EigenMode) {
    let (tr, te) = data();
    for scale in [0.5, 2.0] {
        let out = train(mode, scale, &tr, &te);
        eprintln!(
            "{mode:?} s = {scale}: accuracy {:.3}, gains {:?}",
            out.accuracy, out.gains
        );
        assert!(
            out.accuracy >= TARGET,
            "{mode:?} from s = {scale}: accuracy {:.3} < {TARGET}",
            out.accuracy
        );
        // The gains start where the mode says: σ_max/σ_rms of the raw weight for Normalize,
        // 1 otherwise.
        let expected: Vec<f32> = (0..out.gains.len())
            .map(|i| {
                let inputs = if i == 0 { FEATURES } else { WIDTH };
                let outputs = if i + 1 == out.gains.len() {
                    CLASSES
                } else {
                    WIDTH
                };
                let raw = mode.raw_weight_init(scaled_normal(inputs, scale), inputs, outputs);
                mode.initial_gain(&raw, inputs, outputs)
            })
            .collect();
        assert_eq!(out.initial_gains, expected, "{mode:?}: initial gains");
        // Adam moves a parameter by at most about lr per step: 230 steps can take a gain
        // 0.46 from where it started. The logits gain, and the gains on average, must have
        // moved by a tenth of that.
        let shifts: Vec<f32> = out
            .gains
            .iter()
            .zip(&out.initial_gains)
            .map(|(g, g0)| (g - g0).abs())
            .collect();
        let logits = *shifts.last().unwrap();
        let mean_shift = shifts.iter().sum::<f32>() / shifts.len() as f32;
        assert!(
            logits > 0.05 && mean_shift > 0.05,
            "{mode:?} from s = {scale}: the gains stayed near 1: {:?}",
            out.gains
        );
    }
}

#[test]
fn clamp_reaches_target_from_small_and_large_init() {
    reaches_target_from_both_scales(EigenMode::DEFAULT_CLAMP);
}

#[test]
fn orthogonal_reaches_target_from_small_and_large_init() {
    reaches_target_from_both_scales(EigenMode::Orthogonal);
}

#[test]
fn normalize_reaches_target_from_small_and_large_init() {
    reaches_target_from_both_scales(EigenMode::Normalize);
}

#[test]
fn gain_placement_parses_and_places() {
    for (text, placement, layers) in [
        ("none", GainPlacement::None, [false, false, false]),
        ("Logits", GainPlacement::Logits, [false, false, true]),
        ("EVERY", GainPlacement::Every, [true, true, true]),
    ] {
        assert_eq!(text.parse::<GainPlacement>().unwrap(), placement);
        let placed: Vec<bool> = (0..3).map(|i| placement.applies_to(i, 3)).collect();
        assert_eq!(placed, layers, "{placement:?}");
    }
    assert_eq!(GainPlacement::default(), GainPlacement::Every);
    assert!(matches!(
        "sometimes".parse::<GainPlacement>(),
        Err(eigengrad::Error::InvalidArgument(_))
    ));
}
