//! The step status (policy in `eigengrad::graph::status`): NaN and Inf in a step's loss,
//! gradients, updates or running statistics halt the updates — on the GPU inside the step's
//! one submission — the same way on both executors; `check_status` names what was found;
//! writing the tensors (loading a checkpoint) clears the status and restarts the
//! eigendecompositions cold, after which training goes on exactly as in a fresh plan given the
//! same tensors.
//!
//! Comparisons of parameters are bit for bit where a halt promises "unchanged". A recovered
//! plan and a fresh plan run the same kernels on the same tensors, so their losses are
//! expected to be equal; 1e-6 relative leaves room only for rounding, far below what any
//! state the reload missed (a NaN or a stale warm start) would change.

mod common;
use common::{device, random};
use eigengrad::graph::checkpoint;
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::reference::ReferencePlan;
use eigengrad::graph::{Graph, Plan, Value};
use eigengrad::nn::{
    scaled_normal, Activation, EigenMode, EigenWhiten, GainPlacement, LayerKind, Linear, MlpSpec,
    Mode, Scope, WhitenMode,
};
use eigengrad::optim::Adam;
use eigengrad::Error;

const BATCH: usize = 12;
const CLASSES: usize = 5;

/// An MLP 7 → 9 → 5 (tanh, softmax cross-entropy, Adam), plain or with Eigen layers.
struct Net {
    graph: Graph,
    x: Value,
    t: Value,
    loss: Value,
}

fn net(kind: LayerKind) -> Net {
    let mut g = Graph::new();
    let x = g.input("x", &[BATCH, 7]).unwrap();
    let t = g.input("targets", &[BATCH, CLASSES]).unwrap();
    let spec = MlpSpec {
        widths: vec![7, 9, CLASSES],
        activation: Activation::Tanh,
        kind,
        init_scale: 1.0,
        gains: GainPlacement::default(),
        stack: false,
    };
    let mlp = spec.build(&mut g, x).unwrap();
    let loss = g.softmax_cross_entropy(mlp.logits, t).unwrap();
    Adam::new(0.05).minimize(&mut g, loss).unwrap();
    Net {
        graph: g,
        x,
        t,
        loss,
    }
}

const PLAIN: LayerKind = LayerKind::Plain;
const EIGEN: LayerKind = LayerKind::Eigen(EigenMode::Orthogonal);

/// Batch `seed`: inputs in [-1, 1], one-hot targets.
fn batch(seed: u64) -> (Vec<f32>, Vec<f32>) {
    let x = random(seed, BATCH * 7, 1.0);
    let mut t = vec![0.0; BATCH * CLASSES];
    for (i, l) in random(seed + 500, BATCH, 1.0).iter().enumerate() {
        t[i * CLASSES + ((l + 1.0) * 2.49) as usize] = 1.0;
    }
    (x, t)
}

/// One training step on batch `seed`, with `edit` applied to the batch first.
fn step_with(plan: &mut dyn Plan, net: &Net, seed: u64, edit: impl Fn(&mut [f32], &mut [f32])) {
    let (mut x, mut t) = batch(seed);
    edit(&mut x, &mut t);
    plan.step(&[(net.x, &x), (net.t, &t)]).unwrap();
}

fn step(plan: &mut dyn Plan, net: &Net, seed: u64) {
    step_with(plan, net, seed, |_, _| {});
}

fn loss(plan: &dyn Plan, net: &Net) -> f32 {
    plan.read(net.loss).unwrap()[0]
}

fn value(plan: &dyn Plan, name: &str) -> Value {
    plan.graph()
        .find(name)
        .unwrap_or_else(|| panic!("no {name}"))
}

/// Every tensor a checkpoint holds, as bits (so that NaN compares equal to itself).
fn saved_bits(plan: &dyn Plan) -> Vec<Vec<u32>> {
    plan.saved_values()
        .into_iter()
        .map(|v| plan.read(v).unwrap().iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// The `what` and `index` of the `NonFinite` error `check_status` must return.
fn non_finite(plan: &dyn Plan) -> (String, u64) {
    match plan.check_status() {
        Err(Error::NonFinite { what, index }) => (what, index),
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

/// Both executors, from the same seed, behind the common interface.
fn plans(net: &Net) -> [(&'static str, Box<dyn Plan>); 2] {
    let gpu = GpuPlan::compile(&device(), &net.graph, &[net.loss], 3).unwrap();
    let cpu = ReferencePlan::<f32>::compile(&net.graph, 3).unwrap();
    [("gpu", Box::new(gpu)), ("reference", Box::new(cpu))]
}

/// NaN weights: the loss reads NaN, `check_status` names the loss and the step, and nothing
/// changes — the weights stay what was written, the optimizer state does not advance, on this
/// step and on every later one.
#[test]
fn nan_weights_give_a_nan_loss_and_halt_every_update() {
    let n = net(PLAIN);
    for (executor, mut plan) in plans(&n) {
        step(&mut *plan, &n, 0);
        plan.check_status().unwrap();
        for v in n.graph.trainable_params() {
            let len = plan.read(v).unwrap().len();
            plan.write(v, &vec![f32::NAN; len]).unwrap();
        }
        let written = saved_bits(&*plan);
        for seed in 1..3 {
            step(&mut *plan, &n, seed);
            let l = loss(&*plan, &n);
            assert!(l.is_nan(), "{executor}: the loss reads {l}, not NaN");
            let (what, _) = non_finite(&*plan);
            assert!(
                what.starts_with(&format!(
                    "the loss {} at step 2",
                    n.graph.try_node(n.loss).unwrap().name
                )),
                "{executor}: {what}"
            );
            assert!(what.contains("the update of layer0.weight"), "{what}");
            assert!(
                saved_bits(&*plan) == written,
                "{executor}: a tensor changed after the halt"
            );
        }
        assert_eq!(
            plan.steps(),
            3,
            "{executor}: halted steps are still counted"
        );
    }
}

/// A NaN in one parameter's optimizer state (a finite loss and finite gradients): the update
/// of that parameter is named, with the element; that element keeps its old values, and the
/// next step changes nothing.
#[test]
fn the_parameter_whose_update_turns_non_finite_is_named() {
    let n = net(PLAIN);
    for (executor, mut plan) in plans(&n) {
        step(&mut *plan, &n, 0);
        let (bias, state) = (
            value(&*plan, "layer1.bias"),
            value(&*plan, "layer1.bias.adam_v"),
        );
        let mut v = plan.read(state).unwrap();
        v[3] = f32::NAN;
        plan.write(state, &v).unwrap();
        let before = plan.read(bias).unwrap();
        step(&mut *plan, &n, 1);
        assert!(loss(&*plan, &n).is_finite(), "{executor}");
        let (what, index) = non_finite(&*plan);
        assert!(
            what.starts_with("the update of layer1.bias at step 2;"),
            "{executor}: {what}"
        );
        assert_eq!(index, 3, "{executor}");
        let after = plan.read(bias).unwrap();
        assert_eq!(after[3].to_bits(), before[3].to_bits(), "{executor}");
        assert!(after.iter().all(|x| x.is_finite()), "{executor}: {after:?}");
        let halted = saved_bits(&*plan);
        step(&mut *plan, &n, 2);
        assert!(
            saved_bits(&*plan) == halted,
            "{executor}: changed while halted"
        );
    }
}

/// Ways a step goes non-finite, each applied after one healthy step to both executors (f32
/// reference, so that overflow happens at the same magnitudes): after every step they agree
/// on whether the status is an error, and it is one by the end exactly where expected. Where
/// the batch is bad, the step is caught before its first update and changes no tensor.
#[test]
fn gpu_and_reference_agree_on_which_steps_are_non_finite() {
    type Edit = fn(&mut dyn Plan, &mut [f32], &mut [f32]);
    // (name, an error expected, the edited step changes nothing, the edit)
    let scenarios: [(&str, bool, bool, Edit); 6] = [
        ("healthy", false, false, |_, _, _| {}),
        ("NaN input", true, true, |_, x, _| x[17] = f32::NAN),
        ("Inf target", true, true, |_, _, t| {
            t[CLASSES * 3] = f32::INFINITY
        }),
        ("NaN first-layer weight", true, false, |plan, _, _| {
            let w = value(plan, "layer0.weight");
            let mut data = plan.read(w).unwrap();
            data[10] = f32::NAN;
            plan.write(w, &data).unwrap();
        }),
        ("negative second moment", true, false, |plan, _, _| {
            let v = value(plan, "layer0.bias.adam_v");
            plan.write(v, &[-1.0; 9]).unwrap();
        }),
        ("huge learning rate", true, false, |plan, _, _| {
            plan.set_learning_rate(3e38).unwrap();
        }),
    ];
    let n = net(PLAIN);
    for (name, expect_error, unchanged, edit) in scenarios {
        let mut outcomes = Vec::new();
        for (executor, mut plan) in plans(&n) {
            step(&mut *plan, &n, 0);
            let mut seen = Vec::new();
            for seed in 1..4 {
                let (mut x, mut t) = batch(seed);
                if seed == 1 {
                    edit(&mut *plan, &mut x, &mut t);
                }
                let before = saved_bits(&*plan);
                plan.step(&[(n.x, &x), (n.t, &t)]).unwrap();
                seen.push(plan.check_status().is_err());
                if seed == 1 && unchanged {
                    let same = saved_bits(&*plan) == before;
                    assert!(same, "{name} on the {executor}: a tensor changed");
                }
            }
            assert_eq!(
                *seen.last().unwrap(),
                expect_error,
                "{name} on the {executor}: {:?}",
                plan.check_status()
            );
            outcomes.push(seen);
        }
        assert_eq!(
            outcomes[0], outcomes[1],
            "{name}: gpu vs reference, per step"
        );
    }
}

/// A forward-only run never updates, so NaN met there leaves the status alone.
#[test]
fn forward_runs_leave_the_status_alone() {
    let n = net(PLAIN);
    for (executor, mut plan) in plans(&n) {
        let (mut x, t) = batch(0);
        x[0] = f32::NAN;
        plan.forward(&[(n.x, &x), (n.t, &t)], &[n.loss]).unwrap();
        assert!(plan.check_status().is_ok(), "{executor}");
    }
}

/// A batch with a NaN reaches a whitening layer: its running statistics keep their last
/// values and the status is an error, on both executors. On the GPU the NaN eigenvectors of
/// that batch are the next batch's warm start, which the status reports; a write restarts the
/// solve cold and clears the status.
#[test]
fn a_nan_batch_spares_the_running_statistics_and_poisons_only_the_warm_start() {
    let mut g = Graph::new();
    let x = g.input("x", &[BATCH, 6]).unwrap();
    let t = g.input("targets", &[BATCH, CLASSES]).unwrap();
    let zca = WhitenMode::Zca { eps: 1e-3 };
    let mut scope = Scope::new(&mut g, Mode::Train);
    let (white, y) = EigenWhiten::new(&mut scope.scope("white"), x, 3, zca, 0.1).unwrap();
    let head = Linear::new(&mut scope.scope("head"), 6, CLASSES, scaled_normal(6, 1.0)).unwrap();
    let logits = head.forward(&mut g, y).unwrap();
    let loss = g.softmax_cross_entropy(logits, t).unwrap();
    Adam::new(0.01).minimize(&mut g, loss).unwrap();
    let gpu = GpuPlan::compile(&device(), &g, &[loss], 3).unwrap();
    let cpu = ReferencePlan::<f32>::compile(&g, 3).unwrap();
    let executors: [(&str, Box<dyn Plan>); 2] =
        [("gpu", Box::new(gpu)), ("reference", Box::new(cpu))];
    let targets = batch(0).1;
    let data = |seed| random(seed, BATCH * 6, 1.0);
    for (executor, mut plan) in executors {
        plan.step(&[(x, &data(1)), (t, &targets)]).unwrap();
        plan.check_status().unwrap();
        let before = saved_bits(&*plan);
        let mut bad = data(2);
        bad[7] = f32::NAN;
        plan.step(&[(x, &bad), (t, &targets)]).unwrap();
        let (what, _) = non_finite(&*plan);
        assert!(what.contains("(the input"), "{executor}: {what}");
        assert!(saved_bits(&*plan) == before, "{executor}: a tensor changed");
        for v in [white.running_mean, white.running_cov] {
            let stats = plan.read(v).unwrap();
            assert!(stats.iter().all(|s| s.is_finite()), "{executor}");
        }
        plan.step(&[(x, &data(3)), (t, &targets)]).unwrap();
        let (what, _) = non_finite(&*plan);
        let expected = match executor {
            "gpu" => "(the warm start",
            _ => "the running statistic white.running_mean at step 2",
        };
        assert!(what.contains(expected), "{executor}: {what}");
        let w = plan.read(head.weight).unwrap();
        plan.write(head.weight, &w).unwrap();
        plan.check_status().unwrap();
        plan.step(&[(x, &data(4)), (t, &targets)]).unwrap();
        plan.check_status().unwrap();
        assert!(plan.read(loss).unwrap()[0].is_finite(), "{executor}");
    }
}

/// Diverges a plan on purpose (NaN written into the last layer's weight, so that the logits
/// are NaN; for Eigen layers the NaN eigenvectors become the next warm start), checks the error, reloads a checkpoint taken
/// before, and trains on: losses and tensors equal those of a fresh plan loaded from the same
/// checkpoint, step after step, and the status stays clear.
fn recovers_like_a_fresh_plan(n: &Net, compile: impl Fn(u64) -> Box<dyn Plan>, what: &str) {
    let path = std::env::temp_dir().join(format!(
        "eigengrad-step-status-{}-{what}.safetensors",
        std::process::id()
    ));
    let mut plan = compile(3);
    for seed in 0..3 {
        step(&mut *plan, n, seed);
    }
    plan.check_status().unwrap();
    checkpoint::save(&*plan, &path).unwrap();
    let w = value(&*plan, "layer1.weight");
    let len = plan.read(w).unwrap().len();
    plan.write(w, &vec![f32::NAN; len]).unwrap();
    for seed in 3..5 {
        step(&mut *plan, n, seed);
    }
    assert!(loss(&*plan, n).is_nan(), "{what}: diverged");
    non_finite(&*plan);

    checkpoint::load(&mut *plan, &path).unwrap();
    plan.check_status().unwrap();
    let mut fresh = compile(99);
    checkpoint::load(&mut *fresh, &path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    for seed in 5..10 {
        step(&mut *plan, n, seed);
        step(&mut *fresh, n, seed);
        let (recovered, reference) = (loss(&*plan, n), loss(&*fresh, n));
        assert!(
            close(recovered, reference),
            "{what}, step {seed}: recovered loss {recovered} vs fresh {reference}"
        );
        plan.check_status().unwrap();
    }
    for v in plan.saved_values() {
        let (a, b) = (plan.read(v).unwrap(), fresh.read(v).unwrap());
        assert!(
            a.iter().zip(&b).all(|(&a, &b)| close(a, b)),
            "{what}: {}",
            n.graph.try_node(v).unwrap().name
        );
    }
}

#[test]
fn a_diverged_plan_recovers_from_a_checkpoint_like_a_fresh_plan() {
    for (kind, what) in [(PLAIN, "plain"), (EIGEN, "eigen")] {
        let n = net(kind);
        let gpu = |seed| -> Box<dyn Plan> {
            Box::new(GpuPlan::compile(&device(), &n.graph, &[n.loss], seed).unwrap())
        };
        recovers_like_a_fresh_plan(&n, gpu, &format!("{what} on the gpu"));
    }
    let n = net(PLAIN);
    let cpu = |seed| -> Box<dyn Plan> {
        Box::new(ReferencePlan::<f32>::compile(&n.graph, seed).unwrap())
    };
    recovers_like_a_fresh_plan(&n, cpu, "plain on the reference");
}

/// The Eigen network: a NaN weight reaches the eigendecomposition and the status names it;
/// restoring only that weight by a write restarts the solve cold (the NaN eigenvectors of that
/// step are not the next warm start) and clears the status.
#[test]
fn a_write_restarts_the_solves_cold() {
    let n = net(EIGEN);
    let mut plan = GpuPlan::compile(&device(), &n.graph, &[n.loss], 3).unwrap();
    step(&mut plan, &n, 0);
    let w = value(&plan, "layer1.weight");
    let good = plan.read(w).unwrap();
    let mut bad = good.clone();
    bad[4] = f32::NAN;
    plan.write(w, &bad).unwrap();
    step(&mut plan, &n, 1);
    let (what, index) = non_finite(&plan);
    assert!(
        what.contains("layer1") && what.contains("the input"),
        "{what}"
    );
    assert_eq!(index, 0);
    // Only the weight is restored, by hand: the eigenvectors of the NaN step must not be the
    // warm start of the next.
    plan.write(w, &good).unwrap();
    plan.check_status().unwrap();
    step(&mut plan, &n, 2);
    plan.check_status().unwrap();
    assert!(loss(&plan, &n).is_finite());
}

/// The packed optimizer — one launch updating every parameter from arenas — names the
/// parameter whose update turns non-finite and the element's index in it, wherever the
/// parameter lies in the arenas.
#[test]
fn packed_updates_name_the_parameter_and_element_that_turn_non_finite() {
    let n = net(PLAIN);
    let dev = device();
    for (k, p) in n.graph.trainable_params().into_iter().enumerate() {
        let mut plan = GpuPlan::compile(&dev, &n.graph, &[n.loss], 3).unwrap();
        let launches = plan.launches();
        let adam = launches.iter().filter(|&&l| l == "adam").count();
        assert_eq!(adam, 1, "{launches:?}");
        step(&mut plan, &n, 0);
        let name = n.graph.try_node(p).unwrap().name.clone();
        let state = value(&plan, &format!("{name}.adam_v"));
        let mut v = plan.read(state).unwrap();
        let index = (3 * k + 2) % v.len();
        v[index] = f32::NAN;
        plan.write(state, &v).unwrap();
        step(&mut plan, &n, 1);
        let (what, at) = non_finite(&plan);
        assert!(
            what.starts_with(&format!("the update of {name} at step 2;")),
            "{what}"
        );
        assert_eq!(at, index as u64, "{name}");
    }
}
