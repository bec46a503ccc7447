//! A diverged network reads as diverged: NaN entering an activation, forward or backward,
//! reaches the loss and the gradients on the GPU exactly where it does in the reference
//! executor (whose f32 arithmetic propagates NaN as IEEE 754 says), and the step status then
//! halts the step's updates on both, the parameters left as they were.

mod common;
use common::{device, random};
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::reference::ReferencePlan;
use eigengrad::graph::{Graph, Init, Plan, Value};
use eigengrad::optim::Sgd;
use eigengrad::Error;

/// z = x + b, a = act(z), loss = mse(a, t), one SGD step. x carries NaN into the forward
/// pass; t carries NaN into the backward pass only (through dloss/da), once where z ≫ 0 and
/// once where z ≪ 0, where ReLU's rule used to return 0. The loss, a and dL/dz must be NaN on
/// the GPU exactly where they are in the reference, and equal to it within 1e-5 elsewhere
/// (values of order 1 through a handful of f32 operations, ≈ 1e-6 relative); b must be left
/// bit for bit as initialised on both, and `check_status` must name the loss.
#[test]
fn nan_reaches_loss_gradients_and_parameters_as_in_the_reference() {
    let (rows, cols) = (5, 7);
    let dev = device();
    for act in ["relu", "tanh", "gelu"] {
        let mut g = Graph::new();
        let x = g.input("x", &[rows, cols]);
        let t = g.input("t", &[rows, cols]);
        let b = g.param("b", &[cols], Init::Normal { std: 1.0 });
        let z = g.add(x, b).unwrap();
        let a = match act {
            "relu" => g.relu(z),
            "tanh" => g.tanh(z),
            _ => g.gelu(z),
        }
        .unwrap();
        let loss = g.mse(a, t).unwrap();
        let grads = Sgd::new(0.1).minimize(&mut g, loss).unwrap();
        let dz = grads.get(z).unwrap();
        let watched: [(&str, Value); 3] = [("loss", loss), ("a", a), ("dL/dz", dz)];
        let keep: Vec<Value> = watched.iter().map(|w| w.1).collect();

        // NaN in columns 0, 1 (from x) and 3, 6 (from t): the other columns of b stay finite.
        let (mut xs, mut ts) = (random(1, rows * cols, 2.0), random(2, rows * cols, 2.0));
        let at = |r: usize, c: usize| r * cols + c;
        xs[at(0, 1)] = f32::NAN;
        xs[at(1, 0)] = f32::NAN;
        (xs[at(2, 3)], ts[at(2, 3)]) = (100.0, f32::NAN);
        (xs[at(4, 6)], ts[at(4, 6)]) = (-100.0, f32::NAN);
        let mut gpu = GpuPlan::compile(&dev, &g, &keep, 5).unwrap();
        let mut cpu = ReferencePlan::<f32>::compile(&g, 5).unwrap();
        let b_before = (gpu.read(b).unwrap(), cpu.read(b).unwrap().to_vec());
        gpu.step(&[(x, &xs), (t, &ts)]).unwrap();
        cpu.step(&[(x, &xs), (t, &ts)]).unwrap();
        for (name, v) in watched {
            let (gv, cv) = (gpu.read(v).unwrap(), cpu.read(v).unwrap().to_vec());
            assert!(
                cv.iter().any(|c| c.is_nan()),
                "{act} {name}: the case has no NaN"
            );
            for (i, (gi, ci)) in gv.iter().zip(&cv).enumerate() {
                let same = if ci.is_nan() || gi.is_nan() {
                    ci.is_nan() && gi.is_nan()
                } else {
                    (gi - ci).abs() <= 1e-5
                };
                assert!(same, "{act} {name}[{i}]: gpu {gi} vs reference {ci}");
            }
        }
        // The NaN loss halted the update on both executors: b as initialised, bit for bit.
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        assert_eq!(
            bits(&gpu.read(b).unwrap()),
            bits(&b_before.0),
            "{act}: gpu b"
        );
        assert_eq!(
            bits(cpu.read(b).unwrap()),
            bits(&b_before.1),
            "{act}: reference b"
        );
        for (executor, status) in [
            ("gpu", gpu.check_status()),
            ("reference", cpu.check_status()),
        ] {
            match status {
                Err(Error::NonFinite { what, index }) => {
                    assert!(what.contains("loss"), "{act} {executor}: {what}");
                    assert_eq!(index, 0, "{act} {executor}: step");
                }
                other => panic!("{act} {executor}: expected NonFinite, got {other:?}"),
            }
        }
    }
}
