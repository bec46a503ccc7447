//! The whole cycle of a model described once: train a few steps on the embedded digits,
//! evaluate through an inference plan that shares the training plan's weights (batches of any
//! size), save the parameters, reload them into a fresh inference plan (identical
//! predictions) and into a fresh training plan (training continues); checkpoint strictness,
//! name reports and mismatches; duplicate names; the learning-rate schedule on the GPU; a plan
//! behind a `Box<dyn Plan>`.

mod common;
use common::device;
use eigengrad::data::{digits, Batcher, Dataset, DIGITS_SPLIT_SEED};
use eigengrad::graph::checkpoint::{self, Contents, LoadOptions};
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::reference::ReferencePlan;
use eigengrad::graph::{Graph, Init, Plan, Value};
use eigengrad::model::{argmax, ClassifierShape, InferencePlan, TrainingPlan};
use eigengrad::nn::{Activation, EigenMode, Layer, Linear, Mode, Module, Scope, Sequential};
use eigengrad::optim::{Adam, Schedule, Sgd};
use eigengrad::Error;
use std::path::PathBuf;

/// 64 → 32 (tanh) → 32 orthogonal Eigen layer with a gain (tanh, layer norm, dropout) → 10 logits.
fn model() -> Sequential {
    Sequential::new()
        .push(Layer::Linear {
            outputs: 32,
            init_scale: 1.0,
        })
        .push(Layer::Activation(Activation::Tanh))
        .push(Layer::Eigen {
            outputs: 32,
            mode: EigenMode::Orthogonal,
            init_scale: 1.0,
            gain: true,
        })
        .push(Layer::Activation(Activation::Tanh))
        .push(Layer::LayerNorm { eps: 1e-5 })
        .push(Layer::Dropout { rate: 0.1 })
        .push(Layer::Linear {
            outputs: 10,
            init_scale: 1.0,
        })
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eigengrad-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn data() -> (Dataset, Dataset) {
    digits().unwrap().split(0.2, DIGITS_SPLIT_SEED).unwrap()
}

const BATCH: usize = 64;

/// `a` and `b` hold the same f32 values bit for bit (and as many).
fn assert_same_bits(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    assert!(
        a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "{what} differ"
    );
}

/// Adam with a warmup and a cosine decay over 60 steps.
fn adam() -> Adam {
    Adam::new(1e-2).with_schedule(Schedule::WarmupCosine {
        warmup: 5,
        total: 60,
        floor: 0.1,
    })
}

/// `epochs` epochs of `training` on `train`.
fn train_for(training: &mut TrainingPlan, train: &Dataset, epochs: usize, seed: u64) {
    let mut batcher = Batcher::new(train, BATCH, seed).unwrap();
    for _ in 0..epochs {
        for batch in batcher.epoch() {
            training.step(&batch).unwrap();
        }
    }
}

#[test]
fn train_evaluate_save_reload_continue() {
    let dev = device();
    let (train, test) = data();
    let model = model();
    let shape = ClassifierShape::of(&train, BATCH);
    let mut training = TrainingPlan::new(&dev, &model, shape, &adam(), 0).unwrap();
    // An inference plan on the training plan's buffers, made before any step: it follows
    // the weights without a copy.
    let mut shared = training.inference(&model, 100).unwrap();
    let untrained = shared.evaluate(&test).unwrap();
    train_for(&mut training, &train, 2, 1);
    let steps = training.plan.steps();
    assert_eq!(steps, 2 * (train.n / BATCH) as u64);
    assert!(training.loss().unwrap().is_finite());

    // 360 test samples in batches of 100: three full ones and one of 60 padded rows.
    let trained = shared.evaluate(&test).unwrap();
    assert_eq!(trained.samples, test.n);
    assert!(
        trained.accuracy > 0.8 && trained.accuracy > untrained.accuracy + 0.3,
        "accuracy {untrained:?} → {trained:?}"
    );
    assert!(trained.loss < untrained.loss);
    assert_eq!(training.plan.steps(), steps, "evaluation runs no step");
    assert_eq!(shared.plan.steps(), 0);

    // Padding changes nothing: the same samples alone, in a batch of their own size, give
    // the same logits to f32 rounding of a product over 32 terms (other batch sizes may take
    // other matmul tilings).
    let logits = shared.logits(&test.images).unwrap();
    let mut exact = training.inference(&model, test.n).unwrap();
    let unpadded = exact.logits(&test.images).unwrap();
    common::assert_close_each(
        "padded vs unpadded",
        &logits,
        &common::widen(&unpadded),
        |_, r| 1e-5 * (1.0 + r.abs()),
    );
    let predictions = shared.predict(&test).unwrap();
    let expected: Vec<usize> = logits.chunks(10).map(argmax).collect();
    assert_eq!(predictions, expected);

    // Save the parameters only, reload into a fresh inference plan with other initial
    // weights: identical predictions, bit for bit (same batch size, same kernels).
    let params = temp_path("params.safetensors");
    checkpoint::save_with(&training.plan, &params, Contents::Parameters).unwrap();
    let mut fresh = InferencePlan::new(&dev, &model, shape.with_batch(100), 99).unwrap();
    assert_ne!(fresh.logits(&test.images).unwrap(), logits);
    let report =
        checkpoint::load_with(&mut fresh.plan, &params, &LoadOptions::parameters()).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    assert_eq!(
        report.loaded.len(),
        2 * 3 + 1 + 2,
        "three layers, the Eigen layer's gain and a layer norm"
    );
    assert_eq!(report.step, None);
    let reloaded = fresh.logits(&test.images).unwrap();
    assert_same_bits(&reloaded, &logits, "reloaded predictions");
    assert_eq!(fresh.predict(&test).unwrap(), predictions);

    // The f64 reference executor loads the same file and agrees to f32 rounding.
    let mut cpu =
        InferencePlan::<ReferencePlan<f64>>::reference(&model, shape.with_batch(100), 5).unwrap();
    checkpoint::load_with(&mut cpu.plan, &params, &LoadOptions::parameters()).unwrap();
    let cpu_logits = cpu.logits(&test.images).unwrap();
    common::assert_close_each(
        "gpu vs reference",
        &logits,
        &common::widen(&cpu_logits),
        |_, r| 1e-3 * (1.0 + r.abs()),
    );

    // Load the parameters into a fresh training plan and continue: the weights arrive, the
    // optimizer starts afresh (step 0), and training goes on improving the test loss.
    let mut resumed = TrainingPlan::new(&dev, &model, shape, &adam(), 7).unwrap();
    checkpoint::load_with(&mut resumed.plan, &params, &LoadOptions::parameters()).unwrap();
    assert_eq!(resumed.plan.steps(), 0);
    let w = resumed.plan.graph().find("layer1.weight").unwrap();
    let w0 = training.plan.graph().find("layer1.weight").unwrap();
    assert_eq!(
        resumed.plan.read(w).unwrap(),
        training.plan.read(w0).unwrap()
    );
    let mut resumed_eval = resumed.inference(&model, 100).unwrap();
    assert_eq!(resumed_eval.logits(&test.images).unwrap(), logits);
    train_for(&mut resumed, &train, 1, 2);
    let continued = resumed_eval.evaluate(&test).unwrap();
    assert!(
        continued.loss.is_finite() && continued.accuracy > 0.8,
        "{continued:?}"
    );

    // A full training-state checkpoint: a training plan resumes where the original is (the
    // next step gives the same loss, up to the Eigen layer's solve, which the original
    // warm-starts from its last eigenvectors and the new plan from the identity: both
    // converge to f32 accuracy, 1e-5 relative leaves a margin), and an inference plan takes
    // its parameters only.
    let full = temp_path("full.safetensors");
    checkpoint::save(&training.plan, &full).unwrap();
    let mut exact_resume = TrainingPlan::new(&dev, &model, shape, &adam(), 11).unwrap();
    let report = checkpoint::load_with(
        &mut exact_resume.plan,
        &full,
        &LoadOptions::training_state(),
    )
    .unwrap();
    assert_eq!(report.step, Some(steps));
    assert_eq!(
        exact_resume.plan.learning_rate(),
        training.plan.learning_rate()
    );
    let batch = Batcher::new(&train, BATCH, 3)
        .unwrap()
        .epoch()
        .next()
        .unwrap();
    training.step(&batch).unwrap();
    exact_resume.step(&batch).unwrap();
    let (a, b) = (training.loss().unwrap(), exact_resume.loss().unwrap());
    assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "loss {a} vs {b}");
    let err =
        checkpoint::load_with(&mut fresh.plan, &full, &LoadOptions::training_state()).unwrap_err();
    assert!(
        matches!(&err, Error::BadFile { detail, .. } if detail.contains("layer0.weight.adam_m")
            && detail.contains("LoadOptions::parameters")),
        "{err}"
    );
    checkpoint::load_with(&mut fresh.plan, &full, &LoadOptions::parameters()).unwrap();
}

/// Strict loads name what differs; non-strict ones load the common tensors and report the
/// others; a shape mismatch is an error in both, and nothing is written; a file without the
/// checksum a plan writes is refused.
#[test]
fn loads_report_missing_unexpected_and_mismatched_tensors() {
    let dev = device();
    let (train, _) = data();
    let shape = ClassifierShape::of(&train, 8);
    let base = model();
    let training = TrainingPlan::new(&dev, &base, shape, &adam(), 0).unwrap();
    let path = temp_path("names.safetensors");
    checkpoint::save_with(&training.plan, &path, Contents::Parameters).unwrap();

    // One more layer norm (its gain and bias are missing from the file) and no dropout.
    let mut wider = base.clone();
    wider.layers.insert(1, Layer::LayerNorm { eps: 1e-5 });
    let mut plan = InferencePlan::new(&dev, &wider, shape, 1).unwrap();
    let err = checkpoint::load_with(&mut plan.plan, &path, &LoadOptions::parameters()).unwrap_err();
    assert!(
        matches!(&err, Error::BadFile { detail, .. } if detail.contains("norm1.gain")),
        "{err}"
    );
    let report = checkpoint::load_with(
        &mut plan.plan,
        &path,
        &LoadOptions::parameters().non_strict(),
    )
    .unwrap();
    // The inserted norm is norm0 now and the original one norm1: both gain/bias names exist
    // in the file except norm1's.
    assert_eq!(report.missing, ["norm1.gain", "norm1.bias"]);
    assert!(report.unexpected.is_empty());
    assert_eq!(report.loaded.len(), 9);

    // One layer fewer: the file's extra tensors are unexpected.
    let mut narrower = base.clone();
    narrower.layers.remove(4); // the layer norm
    let mut plan = InferencePlan::new(&dev, &narrower, shape, 1).unwrap();
    let report = checkpoint::load_with(
        &mut plan.plan,
        &path,
        &LoadOptions::parameters().non_strict(),
    )
    .unwrap();
    assert_eq!(report.unexpected, ["norm0.bias", "norm0.gain"]);
    assert!(report.missing.is_empty());

    // Another width: a shape mismatch names the tensor, strict or not, and writes nothing.
    let mut other = base.clone();
    other.layers[0] = Layer::Linear {
        outputs: 16,
        init_scale: 1.0,
    };
    let mut plan = InferencePlan::new(&dev, &other, shape, 1).unwrap();
    let w = plan.plan.graph().find("layer0.weight").unwrap();
    let before = plan.plan.read(w).unwrap();
    for options in [
        LoadOptions::parameters(),
        LoadOptions::parameters().non_strict(),
    ] {
        let err = checkpoint::load_with(&mut plan.plan, &path, &options).unwrap_err();
        assert!(
            matches!(&err, Error::BadFile { detail, .. } if detail.contains("layer0.weight")
                && detail.contains("[64, 32]") && detail.contains("[64, 16]")),
            "{err}"
        );
    }
    assert_eq!(plan.plan.read(w).unwrap(), before);

    // A file not written by a plan (no checksum in its metadata), here holding a tensor of
    // another dtype: refused.
    let bytes = vec![0u8; 64 * 32 * 8];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![64, 32], &bytes)
        .unwrap();
    let f64_path = temp_path("f64.safetensors");
    safetensors::serialize_to_file(vec![("layer0.weight", view)], None, &f64_path).unwrap();
    let mut plan = InferencePlan::new(&dev, &base, shape, 1).unwrap();
    let err = checkpoint::load_with(
        &mut plan.plan,
        &f64_path,
        &LoadOptions::parameters().non_strict(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::BadFile { detail, .. } if detail.contains("eigengrad.crc32")),
        "{err}"
    );
}

/// Two layers in one scope declare the same names: the graph refuses the second, naming it,
/// before anything is compiled; a model may not share a name between two of its tensors.
#[test]
fn duplicate_names_are_rejected_when_the_graph_is_built() {
    let clash = |s: &mut Scope, x: Value| -> eigengrad::Result<Value> {
        let a = Linear::new(&mut s.scope("fc"), 64, 10, Init::Zeros)?;
        let b = Linear::new(&mut s.scope("fc"), 10, 10, Init::Zeros)?;
        let h = a.forward(s, x)?;
        b.forward(s, h)
    };
    let shape = ClassifierShape {
        batch: 4,
        features: 64,
        classes: 10,
    };
    let err = TrainingPlan::new(&device(), &clash, shape, &Sgd::new(0.1), 0)
        .err()
        .expect("a duplicate name");
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("\"fc.weight\"")),
        "{err}"
    );
    let mut g = Graph::new();
    g.input("x", &[2]).unwrap();
    assert!(matches!(g.input("x", &[3]), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        g.param("x", &[2], Init::Zeros),
        Err(Error::InvalidArgument(_))
    ));
    for bad in ["", "a#1", "a\nb"] {
        assert!(g.param(bad, &[1], Init::Zeros).is_err(), "{bad:?}");
    }
}

/// A model whose output is not `[batch, classes]`, or a plan shared across models that do not
/// declare the same tensors, is a clear error.
#[test]
fn mismatched_models_are_errors() {
    let dev = device();
    let shape = ClassifierShape {
        batch: 4,
        features: 64,
        classes: 10,
    };
    let too_wide = Sequential::new().push(Layer::Linear {
        outputs: 11,
        init_scale: 1.0,
    });
    let err = TrainingPlan::new(&dev, &too_wide, shape, &Sgd::new(0.1), 0)
        .err()
        .expect("a shape error");
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let training = TrainingPlan::new(&dev, &model(), shape, &Sgd::new(0.1), 0).unwrap();
    // Its first layer is 64 wide where the trained one is 32.
    let renamed = Sequential::new()
        .push(Layer::Linear {
            outputs: 64,
            init_scale: 1.0,
        })
        .push(Layer::Linear {
            outputs: 10,
            init_scale: 1.0,
        });
    let err = training.inference(&renamed, 4).err().expect("no sharing");
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("layer0.weight")),
        "{err}"
    );
    let ok = training.inference(&model(), 3);
    assert!(ok.is_ok());
}

/// The optimizer's schedule drives the rate the GPU applies at each step, without
/// recompiling: plain SGD moves w by exactly −rate_t·g_t, so Δw/g recovers the rate.
#[test]
fn the_schedule_sets_the_rate_of_every_gpu_step() {
    let mut g = Graph::new();
    let x = g.input("x", &[4, 3]).unwrap();
    let t = g.input("t", &[4, 1]).unwrap();
    let w = g.param("w", &[3, 1], Init::Constant(0.5)).unwrap();
    let y = g.matmul(x, w, false, false).unwrap();
    let loss = g.mse(y, t).unwrap();
    let schedule = Schedule::Step {
        every: 2,
        gamma: 0.5,
    };
    let mut sgd = Sgd::new(0.2).with_schedule(schedule);
    sgd.momentum = 0.0;
    let grads = sgd.minimize(&mut g, loss).unwrap();
    let dw = grads.get(w).unwrap();
    let mut plan = GpuPlan::compile(&device(), &g, &[loss, dw], 0).unwrap();
    let xs = common::random(1, 12, 1.0);
    let ts = common::random(2, 4, 1.0);
    for step in 1..=5u64 {
        assert_eq!(plan.learning_rate(), schedule.rate(0.2, step));
        let before = plan.read(w).unwrap();
        plan.step(&[(x, &xs), (t, &ts)]).unwrap();
        let (after, grad) = (plan.read(w).unwrap(), plan.read(dw).unwrap());
        let k = grad
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap()
            .0;
        let applied = (before[k] - after[k]) / grad[k];
        let expected = schedule.rate(0.2, step);
        assert!(
            (applied - expected).abs() <= 1e-4 * expected,
            "step {step}: rate {applied} vs {expected}"
        );
    }
}

/// A module written as a closure trains like any other.
#[test]
fn closures_are_modules() {
    let net = |s: &mut Scope, x: Value| -> eigengrad::Result<Value> {
        let l = Linear::new(&mut s.scope("only"), 64, 10, Init::Normal { std: 0.1 })?;
        l.forward(s, x)
    };
    let mut g = Graph::new();
    let x = g.input("x", &[2, 64]).unwrap();
    let y = net.forward(&mut Scope::new(&mut g, Mode::Eval), x).unwrap();
    assert_eq!(g.try_shape(y).unwrap(), [2, 10]);
    assert!(g.find("only.weight").is_some());
}

/// The same description trains alike on both executors: three steps from the same initial
/// weights (dropout masks included) give the same losses on the GPU (f32) and the f64
/// reference, to f32 rounding through two tanh layers, a 32×32 eigendecomposition (solved to
/// f32 accuracy) and a layer norm; 1e-4 relative leaves a wide margin, a wrong op is off by
/// O(0.1).
#[test]
fn training_plans_agree_across_executors() {
    let (train, _) = data();
    let shape = ClassifierShape::of(&train, 16);
    let sgd = Sgd::new(0.05);
    let mut gpu = TrainingPlan::new(&device(), &model(), shape, &sgd, 3).unwrap();
    let mut cpu = TrainingPlan::<ReferencePlan<f64>>::reference(&model(), shape, &sgd, 3).unwrap();
    for batch in Batcher::new(&train, 16, 4).unwrap().epoch().take(3) {
        gpu.step(&batch).unwrap();
        cpu.step(&batch).unwrap();
        let (a, b) = (gpu.loss().unwrap(), cpu.loss().unwrap());
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "loss {a} vs {b}");
    }
}

/// A network whose hidden Eigen layers are one stack goes through the whole model path: it
/// trains, an inference plan on the training plan's buffers reads the stacked weights in
/// place, and a parameters checkpoint (the stack saved as one `[layers, 32, 32]` tensor)
/// reloads into a fresh inference plan with identical logits.
#[test]
fn a_stacked_network_trains_shares_and_reloads() {
    use eigengrad::nn::{GainPlacement, LayerKind, MlpSpec};
    let dev = device();
    let (train, test) = data();
    let spec = MlpSpec {
        widths: vec![64, 32, 32, 32, 32, 10],
        activation: Activation::Tanh,
        kind: LayerKind::Eigen(EigenMode::DEFAULT_CLAMP),
        init_scale: 1.0,
        gains: GainPlacement::Every,
        stack: true,
    };
    let shape = ClassifierShape::of(&train, BATCH);
    let mut training = TrainingPlan::new(&dev, &spec, shape, &adam(), 0).unwrap();
    let stack = training.plan.graph().find("layers1-3.weight").unwrap();
    assert_eq!(training.plan.graph().try_shape(stack).unwrap(), [3, 32, 32]);
    let mut shared = training.inference(&spec, 100).unwrap();
    let untrained = shared.evaluate(&test).unwrap();
    train_for(&mut training, &train, 2, 1);
    let trained = shared.evaluate(&test).unwrap();
    assert!(
        trained.accuracy > 0.8 && trained.loss < untrained.loss,
        "{untrained:?} → {trained:?}"
    );
    let logits = shared.logits(&test.images).unwrap();

    let params = temp_path("stacked.safetensors");
    checkpoint::save_with(&training.plan, &params, Contents::Parameters).unwrap();
    let mut fresh = InferencePlan::new(&dev, &spec, shape.with_batch(100), 99).unwrap();
    let report =
        checkpoint::load_with(&mut fresh.plan, &params, &LoadOptions::parameters()).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    // layer0 and layer4: weight, bias, gain each; the stack: weight, gains, three biases.
    assert_eq!(report.loaded.len(), 2 * 3 + 2 + 3);
    let reloaded = fresh.logits(&test.images).unwrap();
    assert_same_bits(&reloaded, &logits, "reloaded logits");
}

/// A boxed plan is a plan (`impl Plan for Box<P>`, for code that picks its executor at run
/// time): stepped, read and evaluated through the box, it gives bit for bit what the plan it
/// holds gives.
#[test]
fn a_boxed_plan_runs_as_the_plan_it_holds() {
    let (train, test) = data();
    let shape = ClassifierShape::of(&train, 16);
    let sgd = Sgd::new(0.05);
    let reference = || TrainingPlan::<ReferencePlan<f32>>::reference(&model(), shape, &sgd, 3);
    let mut direct = reference().unwrap();
    let held = reference().unwrap();
    let (x, targets, loss) = (held.x, held.targets, held.loss);
    let mut boxed: Box<dyn Plan> = Box::new(held.plan);
    for batch in Batcher::new(&train, 16, 4).unwrap().epoch().take(3) {
        direct.step(&batch).unwrap();
        boxed
            .step(&[(x, &batch.images), (targets, &batch.targets)])
            .unwrap();
        assert_same_bits(
            &boxed.read(loss).unwrap(),
            &[direct.loss().unwrap()],
            "loss",
        );
    }
    assert_eq!(
        (boxed.steps(), boxed.graph().nodes().len()),
        (3, direct.plan.graph().nodes().len())
    );

    let evaluation =
        || InferencePlan::<ReferencePlan<f32>>::reference(&model(), shape.with_batch(50), 5);
    let mut direct = evaluation().unwrap();
    let held = evaluation().unwrap();
    let mut boxed =
        InferencePlan::wrap(Box::new(held.plan) as Box<dyn Plan>, held.x, held.logits).unwrap();
    assert_same_bits(
        &boxed.logits(&test.images).unwrap(),
        &direct.logits(&test.images).unwrap(),
        "logits",
    );
}
