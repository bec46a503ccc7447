//! Real data: a 2-layer MLP on the embedded scikit-learn 8×8 digits, trained on the GPU, must
//! reach ≥ 90% held-out accuracy in a few seconds.

mod common;
use common::device;
use eigengrad::data::{digits, Batcher, DIGITS_SPLIT_SEED};
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::{Graph, Plan};
use eigengrad::nn::{Activation, GainPlacement, LayerKind, MlpSpec};
use eigengrad::optim::Adam;

#[test]
fn two_layer_mlp_learns_digits() {
    let dev = device();
    let (train, test) = digits().unwrap().split(0.2, DIGITS_SPLIT_SEED).unwrap();
    let spec = MlpSpec {
        widths: vec![64, 64, 10],
        activation: Activation::Tanh,
        kind: LayerKind::Plain,
        init_scale: 1.0,
        gains: GainPlacement::Logits,
        stack: false,
    };
    let batch = 64;
    let mut g = Graph::new();
    let x = g.input("x", &[batch, 64]).unwrap();
    let t = g.input("targets", &[batch, 10]).unwrap();
    let net = spec.build(&mut g, x).unwrap();
    let loss = g.softmax_cross_entropy(net.logits, t).unwrap();
    Adam::new(1e-2).minimize(&mut g, loss).unwrap();
    let mut plan = GpuPlan::compile(&dev, &g, &[loss], 0).unwrap();

    let mut eval = Graph::new();
    let ex = eval.input("x", &[test.n, 64]).unwrap();
    let enet = spec.build(&mut eval, ex).unwrap();
    let eval_plan = GpuPlan::compile(&dev, &eval, &[enet.logits], 0).unwrap();

    let mut batches = Batcher::new(&train, batch, 1).unwrap();
    let mut first_loss = None;
    for _epoch in 0..15 {
        for b in batches.epoch() {
            plan.step(&[(x, &b.images), (t, &b.targets)]).unwrap();
        }
        first_loss.get_or_insert(plan.read(loss).unwrap()[0]);
    }
    let last_loss = plan.read(loss).unwrap()[0];
    assert!(
        last_loss < first_loss.unwrap(),
        "loss {first_loss:?} -> {last_loss}"
    );
    assert_eq!(eval_plan.copy_resident_from(&plan).unwrap(), 4);
    let mut eval_plan = eval_plan;
    eval_plan.step(&[(ex, &test.images)]).unwrap();
    let logits = eval_plan.read(enet.logits).unwrap();
    let correct = logits
        .chunks(10)
        .zip(&test.labels)
        .filter(|(row, &label)| {
            let argmax = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            argmax == label as usize
        })
        .count();
    let accuracy = correct as f64 / test.n as f64;
    assert!(accuracy >= 0.9, "held-out accuracy {accuracy:.3}");
}
