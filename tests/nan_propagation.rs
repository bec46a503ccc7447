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

/// `gpu` is NaN exactly where `reference` is, and within 1e-5 of it elsewhere.
fn assert_same_nans(what: &str, gpu: &[f32], reference: &[f32]) {
    assert_eq!(gpu.len(), reference.len(), "{what}");
    for (i, (g, c)) in gpu.iter().zip(reference).enumerate() {
        let same = if c.is_nan() || g.is_nan() {
            c.is_nan() && g.is_nan()
        } else {
            (g - c).abs() <= 1e-5
        };
        assert!(same, "{what}[{i}]: gpu {g} vs reference {c}");
    }
}

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
        let x = g.input("x", &[rows, cols]).unwrap();
        let t = g.input("t", &[rows, cols]).unwrap();
        let b = g.param("b", &[cols], Init::Normal { std: 1.0 }).unwrap();
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
            assert_same_nans(&format!("{act} {name}"), &gv, &cv);
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

/// The same through fused matmul epilogues: h = act(x·w1 + b1), y = h·w2, loss = mse(y, t),
/// which the GPU plan runs as one launch for the first layer and one for dL/dz1 = act′ of
/// dL/dh = dL/dy·w2ᵀ. A NaN in a row of x reaches that row of h through the epilogue's
/// activation (z1 ≪ 0 elsewhere in the row, where ReLU's max would drop it); a NaN in a row
/// of t reaches dL/dz1 through the fused backward rule, also where z1 ≤ 0. Both must be NaN
/// exactly where the reference has them, and the step halted.
#[test]
fn nan_crosses_fused_matmul_epilogues_as_in_the_reference() {
    let (rows, inner, width, outs) = (6, 5, 7, 3);
    let dev = device();
    for act in ["relu", "tanh", "gelu"] {
        let mut g = Graph::new();
        let x = g.input("x", &[rows, inner]).unwrap();
        let t = g.input("t", &[rows, outs]).unwrap();
        let w1 = g
            .param("w1", &[inner, width], Init::Normal { std: 1.0 })
            .unwrap();
        let b1 = g.param("b1", &[width], Init::Constant(-50.0)).unwrap();
        let w2 = g
            .param("w2", &[width, outs], Init::Normal { std: 1.0 })
            .unwrap();
        let xw = g.matmul(x, w1, false, false).unwrap();
        let z1 = g.add(xw, b1).unwrap();
        let h = match act {
            "relu" => g.relu(z1),
            "tanh" => g.tanh(z1),
            _ => g.gelu(z1),
        }
        .unwrap();
        let y = g.matmul(h, w2, false, false).unwrap();
        let loss = g.mse(y, t).unwrap();
        let grads = Sgd::new(0.1).minimize(&mut g, loss).unwrap();
        let dz1 = grads.get(z1).unwrap();
        let watched: [(&str, Value); 3] = [("loss", loss), ("h", h), ("dL/dz1", dz1)];
        let keep: Vec<Value> = watched.iter().map(|w| w.1).collect();
        // The bias of −50 puts most of z1 far below 0; row 1 of x and row 4 of t carry NaN.
        let (mut xs, mut ts) = (random(3, rows * inner, 1.0), random(4, rows * outs, 1.0));
        xs[inner + 2] = f32::NAN;
        ts[4 * outs + 1] = f32::NAN;
        let mut gpu = GpuPlan::compile(&dev, &g, &keep, 5).unwrap();
        let launches = gpu.launches();
        for unfused in [
            "add",
            "relu",
            "tanh_fwd",
            "gelu",
            "relu_backward",
            "tanh_backward",
        ] {
            assert!(!launches.contains(&unfused), "{act}: {launches:?}");
        }
        assert!(!launches.contains(&"gelu_backward"), "{act}: {launches:?}");
        let mut cpu = ReferencePlan::<f32>::compile(&g, 5).unwrap();
        gpu.step(&[(x, &xs), (t, &ts)]).unwrap();
        cpu.step(&[(x, &xs), (t, &ts)]).unwrap();
        for (name, v) in watched {
            let (gv, cv) = (gpu.read(v).unwrap(), cpu.read(v).unwrap().to_vec());
            assert!(cv.iter().any(|c| c.is_nan()), "{act} {name}: no NaN");
            assert_same_nans(&format!("{act} {name} (fused)"), &gv, &cv);
        }
        assert!(
            matches!(gpu.check_status(), Err(Error::NonFinite { .. })),
            "{act}: the NaN loss halts the step"
        );
    }
}
