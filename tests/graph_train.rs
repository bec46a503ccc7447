//! The GPU executor against the reference executor on whole training steps — fused and packed
//! as compiled by default, and plain — the plan's cost figures, and checkpoints.

mod common;
use common::{device, random};
use eigengrad::graph::checkpoint;
use eigengrad::graph::gpu::{GpuPlan, PlanOptions};
use eigengrad::graph::reference::ReferencePlan;
use eigengrad::graph::{Graph, Init, Op, Plan, Value};
use eigengrad::kernels::elementwise::UnaryOp;
use eigengrad::optim::{Adam, Sgd};
use eigengrad::Error;

struct Mlp {
    graph: Graph,
    x: Value,
    t: Value,
    loss: Value,
    params: Vec<Value>,
}

/// A tanh MLP with softmax cross-entropy: widths[0] inputs, widths.last() classes.
fn mlp(batch: usize, widths: &[usize], optimizer: impl Fn(&mut Graph, Value)) -> Mlp {
    let mut g = Graph::new();
    let x = g.input("x", &[batch, widths[0]]).unwrap();
    let t = g
        .input("targets", &[batch, *widths.last().unwrap()])
        .unwrap();
    let mut h = x;
    let mut params = vec![];
    for (l, w) in widths.windows(2).enumerate() {
        let weight = g
            .param(
                &format!("w{l}"),
                &[w[0], w[1]],
                Init::Normal {
                    std: 1.0 / (w[0] as f32).sqrt(),
                },
            )
            .unwrap();
        let bias = g.param(&format!("b{l}"), &[w[1]], Init::Zeros).unwrap();
        params.extend([weight, bias]);
        let z = g.matmul(h, weight, false, false).unwrap();
        h = g.add(z, bias).unwrap();
        if l + 2 < widths.len() {
            h = g.tanh(h).unwrap();
        }
    }
    let loss = g.softmax_cross_entropy(h, t).unwrap();
    optimizer(&mut g, loss);
    Mlp {
        graph: g,
        x,
        t,
        loss,
        params,
    }
}

fn batch_data(seed: u64, batch: usize, features: usize, classes: usize) -> (Vec<f32>, Vec<f32>) {
    let x = random(seed, batch * features, 1.0);
    let labels = random(seed + 1000, batch, 1.0);
    let mut t = vec![0.0; batch * classes];
    for (i, l) in labels.iter().enumerate() {
        let c = (((l + 1.0) / 2.0) * classes as f32) as usize % classes;
        t[i * classes + c] = 1.0;
    }
    (x, t)
}

/// 20 SGD-momentum steps of a 3-layer MLP, batch 32, on the GPU (f32) and on the f64
/// reference from identical initial weights. f32 rounding (≈6e-8 relative per operation,
/// over sums of ≤ 32 terms) and its growth through 20 steps keeps the GPU within 1e-4 of the
/// f64 trajectory for losses (values ≈ 1) and weights (values ≈ 0.3); a wrong kernel or
/// gradient is off by far more after the first step.
#[test]
fn gpu_matches_reference_over_twenty_steps() {
    let (batch, widths) = (32, [20usize, 16, 16, 4]);
    let mut sgd = Sgd::new(0.1);
    sgd.clip_norm = Some(5.0);
    let m = mlp(batch, &widths, |g, loss| {
        sgd.minimize(g, loss).unwrap();
    });
    let dev = device();
    let mut gpu = GpuPlan::compile(&dev, &m.graph, &[m.loss], 7).unwrap();
    let mut cpu = ReferencePlan::<f64>::compile(&m.graph, 7).unwrap();
    for step in 0..20 {
        let (x, t) = batch_data(step, batch, widths[0], 4);
        gpu.step(&[(m.x, &x), (m.t, &t)]).unwrap();
        let (x64, t64): (Vec<f64>, Vec<f64>) = (
            x.iter().map(|&v| v as f64).collect(),
            t.iter().map(|&v| v as f64).collect(),
        );
        cpu.step(&[(m.x, &x64), (m.t, &t64)]).unwrap();
        let (lg, lc) = (
            gpu.read(m.loss).unwrap()[0] as f64,
            cpu.read(m.loss).unwrap()[0],
        );
        assert!(
            (lg - lc).abs() <= 1e-4,
            "step {step}: loss gpu {lg} vs reference {lc}"
        );
    }
    for &p in &m.params {
        let (wg, wc) = (gpu.read(p).unwrap(), cpu.read(p).unwrap());
        for (i, (a, b)) in wg.iter().zip(wc).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= 1e-4,
                "{} [{i}]: gpu {a} vs reference {b}",
                m.graph.try_node(p).unwrap().name
            );
        }
    }
}

#[test]
fn plan_stats_one_submit_no_readback_no_new_pipelines_pooled_memory() {
    // A device of its own: tests running in parallel on the shared one build pipelines too.
    let dev = eigengrad::Device::new().unwrap();
    let m = mlp(256, &[64, 64, 64, 64, 64, 64, 10], |g, loss| {
        Adam::new(1e-3).minimize(g, loss).unwrap();
    });
    let mut plan = GpuPlan::compile(&dev, &m.graph, &[m.loss], 1).unwrap();
    let s = plan.stats().clone();
    assert_eq!(s.submits_per_step, 1);
    assert_eq!(s.download_bytes_per_step, 0);
    // The plain lowering: one launch per op and per parameter update, values pooled.
    let options = PlanOptions {
        fuse: false,
        pack_updates: false,
        overlap: false,
    };
    let plain = GpuPlan::compile_with(&dev, &m.graph, &[m.loss], 1, options).unwrap();
    let p = plain.stats().clone();
    assert!(p.dispatches_per_step > 50, "{p:?}");
    let ratio = p.peak_bytes as f64 / p.unpooled_bytes as f64;
    assert!(ratio <= 0.6, "pooled/unpooled = {ratio:.2}: {p:?}");
    // Fused and packed: 6 bias adds, 5 tanh and 5 tanh′ in matmul epilogues, 6 bias gradients
    // beside their weight gradients, 12 updates in one launch and their 12 gradients' finite
    // checks in one — 44 launches fewer, and fewer barriers.
    assert_eq!(s.dispatches_per_step + 44, p.dispatches_per_step, "{s:?}");
    assert!(s.barriers_per_step < p.barriers_per_step, "{s:?} vs {p:?}");
    // Without overlap the fused plan needs no more memory than the plain one (64-wide tensors
    // fill the arenas' 256-byte ranges exactly). Overlap gives an input gradient a buffer of
    // its own so that it shares its weight gradient's stretch: one barrier fewer for each of
    // the 4 hidden layers past the last (whose input gradient takes a buffer unused so far
    // anyway), for 4 buffers of 256 × 64 floats (64 KiB each) more.
    let options = PlanOptions {
        overlap: false,
        ..PlanOptions::default()
    };
    let separate = GpuPlan::compile_with(&dev, &m.graph, &[m.loss], 1, options).unwrap();
    // The stretches between barriers: each of the 5 layers past the first computes its weight
    // and bias gradients and its input gradient in two launches side by side.
    let pairs = plan
        .stretches()
        .iter()
        .filter(|s| s.len() == 2 && s.iter().all(|l| l.starts_with("matmul")))
        .count();
    assert_eq!(pairs, 5, "{:?}", plan.stretches());
    let o = separate.stats().clone();
    assert!(o.peak_bytes <= p.peak_bytes, "{o:?} vs {p:?}");
    assert_eq!(
        s.barriers_per_step + 4,
        o.barriers_per_step,
        "{s:?} vs {o:?}"
    );
    assert_eq!(s.peak_bytes, o.peak_bytes + 4 * 65536, "{s:?} vs {o:?}");
    assert_eq!(
        s.upload_bytes_per_step,
        // The inputs, four hyperparameter words and the step's number in its status.
        ((256 * 64 + 256 * 10) * 4 + 16 + 4) as u64
    );
    let before = dev.pipelines_created();
    let (x, t) = batch_data(3, 256, 64, 10);
    for _ in 0..5 {
        plan.step(&[(m.x, &x), (m.t, &t)]).unwrap();
    }
    assert_eq!(
        dev.pipelines_created(),
        before,
        "pipelines were built during steps"
    );
    let loss = plan.read(m.loss).unwrap()[0];
    assert!(loss.is_finite());
    // A value that was not named as an output cannot be read: its buffer is reused.
    let first_matmul = m
        .graph
        .nodes()
        .iter()
        .position(|n| n.op.name() == "MatMul")
        .unwrap();
    let hidden = m.graph.value(first_matmul).unwrap();
    assert!(matches!(plan.read(hidden), Err(Error::InvalidArgument(_))));
}

#[test]
fn learning_rate_changes_without_recompiling() {
    let dev = device();
    let m = mlp(16, &[8, 4], |g, loss| {
        Sgd::new(0.0).minimize(g, loss).unwrap();
    });
    let mut plan = GpuPlan::compile(&dev, &m.graph, &[m.loss], 1).unwrap();
    let (x, t) = batch_data(1, 16, 8, 4);
    let w0 = plan.read(m.params[0]).unwrap();
    plan.step(&[(m.x, &x), (m.t, &t)]).unwrap();
    assert_eq!(
        plan.read(m.params[0]).unwrap(),
        w0,
        "lr 0 must not move the weights"
    );
    plan.set_learning_rate(0.5).unwrap();
    plan.step(&[(m.x, &x), (m.t, &t)]).unwrap();
    assert_ne!(plan.read(m.params[0]).unwrap(), w0);
}

#[test]
fn bad_step_inputs_are_errors() {
    let dev = device();
    let m = mlp(4, &[3, 2], |g, loss| {
        Sgd::new(0.1).minimize(g, loss).unwrap();
    });
    let mut plan = GpuPlan::compile(&dev, &m.graph, &[m.loss], 1).unwrap();
    let x = vec![0.0; 12];
    assert!(
        matches!(plan.step(&[(m.x, &x)]), Err(Error::InvalidArgument(_))),
        "missing input"
    );
    let t = vec![0.0; 7];
    assert!(matches!(
        plan.step(&[(m.x, &x), (m.t, &t)]),
        Err(Error::Shape { .. })
    ));
    let mut g = Graph::new();
    let a = g.input("a", &[2, 3]).unwrap();
    let b = g.input("b", &[2, 3]).unwrap();
    assert!(matches!(
        g.matmul(a, b, false, false),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(g.add(a, g.find("b").unwrap()).map(|_| ()), Ok(())));
}

/// A forward-only run computes what its outputs need and nothing else: the step count stays,
/// no parameter or optimizer state moves, inputs the outputs do not read may be left out, and
/// the loss it reports is the one the next step computes from the same parameters — bit for
/// bit, as the same kernels run on the same data. The same code runs both executors through
/// `Plan` (the reference in f32).
#[test]
fn forward_runs_what_the_outputs_need_and_changes_nothing() {
    let m = mlp(8, &[5, 6, 3], |g, loss| {
        Adam::new(1e-2).minimize(g, loss).unwrap();
    });
    let xent = m.graph.nodes().iter().position(|n| n.op == Op::SoftmaxXent);
    let logits = m
        .graph
        .try_node(m.graph.value(xent.unwrap()).unwrap())
        .unwrap()
        .inputs[0];
    let dev = device();
    let gpu = GpuPlan::compile(&dev, &m.graph, &[m.loss, logits], 3).unwrap();
    let cpu = ReferencePlan::<f32>::compile(&m.graph, 3).unwrap();
    let (x, t) = batch_data(2, 8, 5, 3);
    let both = [(m.x, x.as_slice()), (m.t, t.as_slice())];
    for mut plan in [Box::new(gpu) as Box<dyn Plan>, Box::new(cpu)] {
        plan.step(&both).unwrap();
        let saved = plan.saved_values();
        let before: Vec<Vec<f32>> = saved.iter().map(|&v| plan.read(v).unwrap()).collect();
        plan.forward(&both, &[m.loss]).unwrap();
        let loss = plan.read(m.loss).unwrap();
        assert_eq!(plan.steps(), 1, "a forward run is not a step");
        for (&v, b) in saved.iter().zip(&before) {
            assert_eq!(
                &plan.read(v).unwrap(),
                b,
                "{}",
                m.graph.try_node(v).unwrap().name
            );
        }
        // The logits need x only; the loss needs the targets too.
        plan.forward(&both[..1], &[logits]).unwrap();
        assert_eq!(plan.read(logits).unwrap().len(), 8 * 3);
        assert!(matches!(
            plan.forward(&both[..1], &[m.loss]),
            Err(Error::InvalidArgument(_))
        ));
        plan.step(&both).unwrap();
        assert_eq!(plan.read(m.loss).unwrap(), loss);
        assert_eq!(plan.steps(), 2);
    }
}

/// On the GPU a forward run's outputs must be readable afterwards: a value whose pooled
/// buffer is reused is refused before anything runs.
#[test]
fn forward_outputs_must_be_readable_on_the_gpu() {
    let m = mlp(4, &[3, 2], |g, loss| {
        Sgd::new(0.1).minimize(g, loss).unwrap();
    });
    let mut plan = GpuPlan::compile(&device(), &m.graph, &[m.loss], 1).unwrap();
    let first = m.graph.nodes().iter().position(|n| n.op.name() == "MatMul");
    let hidden = m.graph.value(first.unwrap()).unwrap();
    let x = vec![0.0; 12];
    assert!(matches!(
        plan.forward(&[(m.x, &x)], &[hidden]),
        Err(Error::InvalidArgument(_))
    ));
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("eigengrad-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn checkpoint_round_trip_is_bit_exact_and_bad_files_are_rejected() {
    let dev = device();
    let make = || {
        mlp(8, &[5, 6, 3], |g, loss| {
            Adam::new(1e-2).minimize(g, loss).unwrap();
        })
    };
    let m = make();
    let mut plan = GpuPlan::compile(&dev, &m.graph, &[m.loss], 3).unwrap();
    let (x, t) = batch_data(5, 8, 5, 3);
    for _ in 0..3 {
        plan.step(&[(m.x, &x), (m.t, &t)]).unwrap();
    }
    let path = temp_path("model.safetensors");
    checkpoint::save(&plan, &path).unwrap();

    // A fresh plan with other initial weights, restored: every saved tensor bit-identical,
    // and the next step gives the same loss as continuing the original.
    let mut restored = GpuPlan::compile(&dev, &m.graph, &[m.loss], 99).unwrap();
    checkpoint::load(&mut restored, &path).unwrap();
    assert_eq!(restored.steps(), 3);
    for v in plan.saved_values() {
        let (a, b) = (plan.read(v).unwrap(), restored.read(v).unwrap());
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}",
            m.graph.try_node(v).unwrap().name
        );
    }
    plan.step(&[(m.x, &x), (m.t, &t)]).unwrap();
    restored.step(&[(m.x, &x), (m.t, &t)]).unwrap();
    assert_eq!(plan.read(m.loss).unwrap(), restored.read(m.loss).unwrap());

    // Truncated file.
    let bytes = std::fs::read(&path).unwrap();
    let truncated = temp_path("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let before = restored.read(m.params[0]).unwrap();
    assert!(matches!(
        checkpoint::load(&mut restored, &truncated),
        Err(Error::BadFile { .. })
    ));
    // Garbage.
    let garbage = temp_path("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    assert!(matches!(
        checkpoint::load(&mut restored, &garbage),
        Err(Error::BadFile { .. })
    ));
    // Missing file.
    assert!(matches!(
        checkpoint::load(&mut restored, &temp_path("absent")),
        Err(Error::Io { .. })
    ));
    // A model of another shape: mismatched, and nothing was half-loaded.
    let other = mlp(8, &[5, 7, 3], |g, loss| {
        Adam::new(1e-2).minimize(g, loss).unwrap();
    });
    let mut other_plan = GpuPlan::compile(&dev, &other.graph, &[other.loss], 3).unwrap();
    let other_before = other_plan.read(other.params[0]).unwrap();
    let err = checkpoint::load(&mut other_plan, &path).unwrap_err();
    assert!(matches!(err, Error::BadFile { .. }), "{err}");
    assert_eq!(other_plan.read(other.params[0]).unwrap(), other_before);
    assert_eq!(restored.read(m.params[0]).unwrap(), before);
}

/// A tanh network on `batch` × 4 inputs with exactly `params` trainable tensors: layers of
/// width 5 with biases, and for an odd count a last layer without one; mean squared error
/// against 3 targets. `optimizer` appends the backward pass and the updates.
fn net_with_params(
    params: usize,
    batch: usize,
    activation: UnaryOp,
    optimizer: impl Fn(&mut Graph, Value),
) -> Mlp {
    let mut g = Graph::new();
    let x = g.input("x", &[batch, 4]).unwrap();
    let t = g.input("targets", &[batch, 3]).unwrap();
    let layers = params.div_ceil(2);
    let mut h = x;
    let mut all = Vec::new();
    for l in 0..layers {
        let (fan_in, fan_out) = (
            if l == 0 { 4 } else { 5 },
            if l + 1 == layers { 3 } else { 5 },
        );
        let w = g
            .param(
                &format!("w{l}"),
                &[fan_in, fan_out],
                Init::Normal {
                    std: 1.0 / (fan_in as f32).sqrt(),
                },
            )
            .unwrap();
        all.push(w);
        h = g.matmul(h, w, false, false).unwrap();
        if 2 * l + 1 < params {
            let b = g
                .param(&format!("b{l}"), &[fan_out], Init::Constant(0.1))
                .unwrap();
            all.push(b);
            h = g.add(h, b).unwrap();
        }
        if l + 1 < layers {
            h = g.unary(activation, h).unwrap();
        }
    }
    assert_eq!(all.len(), params);
    let loss = g.mse(h, t).unwrap();
    optimizer(&mut g, loss);
    Mlp {
        graph: g,
        x,
        t,
        loss,
        params: all,
    }
}

/// Runs `steps` steps of `m` on the GPU as `options` compile it and on the f64 reference, and
/// asserts losses and parameters within 1e-4 (the tolerance of the test above: f32 rounding
/// over a few steps of a small network). Returns the GPU plan.
fn agrees_with_reference(m: &Mlp, options: PlanOptions, steps: u64, what: &str) -> GpuPlan {
    let dev = device();
    let mut gpu = GpuPlan::compile_with(&dev, &m.graph, &[m.loss], 7, options).unwrap();
    let mut cpu = ReferencePlan::<f64>::compile(&m.graph, 7).unwrap();
    let (batch, features) = (
        m.graph.try_shape(m.x).unwrap()[0],
        m.graph.try_shape(m.x).unwrap()[1],
    );
    let classes = m.graph.try_shape(m.t).unwrap()[1];
    for step in 0..steps {
        let (x, t) = batch_data(step, batch, features, classes);
        gpu.step(&[(m.x, &x), (m.t, &t)]).unwrap();
        let (x64, t64): (Vec<f64>, Vec<f64>) = (
            x.iter().map(|&v| v as f64).collect(),
            t.iter().map(|&v| v as f64).collect(),
        );
        cpu.step(&[(m.x, &x64), (m.t, &t64)]).unwrap();
        let (lg, lc) = (
            gpu.read(m.loss).unwrap()[0] as f64,
            cpu.read(m.loss).unwrap()[0],
        );
        assert!(
            (lg - lc).abs() <= 1e-4,
            "{what}, step {step}: loss gpu {lg} vs reference {lc}"
        );
    }
    for v in gpu.saved_values() {
        let (wg, wc) = (gpu.read(v).unwrap(), cpu.read(v).unwrap());
        for (i, (a, b)) in wg.iter().zip(wc).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= 1e-4,
                "{what}: {} [{i}]: gpu {a} vs reference {b}",
                m.graph.try_node(v).unwrap().name
            );
        }
    }
    gpu
}

/// How many launches of a step run `entry`.
fn launches_of(plan: &GpuPlan, entry: &str) -> usize {
    plan.launches().iter().filter(|&&l| l == entry).count()
}

#[test]
fn one_optimizer_launch_updates_any_number_of_parameters() {
    type Minimize = fn(&mut Graph, Value);
    let rules: [(&str, &str, Minimize); 6] = [
        ("sgd", "sgd", |g, l| {
            Sgd::new(0.05).minimize(g, l).unwrap();
        }),
        ("adam", "adam", |g, l| {
            Adam::new(0.01).minimize(g, l).unwrap();
        }),
        ("adamw", "adam", |g, l| {
            let mut adam = Adam::new(0.01);
            adam.weight_decay = 0.1;
            adam.minimize(g, l).unwrap();
        }),
        ("sgd clipped", "sgd", |g, l| {
            let mut sgd = Sgd::new(0.05);
            sgd.clip_norm = Some(0.5);
            sgd.minimize(g, l).unwrap();
        }),
        ("adam clipped", "adam", |g, l| {
            let mut adam = Adam::new(0.01);
            adam.clip_norm = Some(0.5);
            adam.minimize(g, l).unwrap();
        }),
        ("adamw clipped", "adam", |g, l| {
            let mut adam = Adam::new(0.01);
            adam.weight_decay = 0.1;
            adam.clip_norm = Some(0.5);
            adam.minimize(g, l).unwrap();
        }),
    ];
    for params in [1, 7, 40] {
        for (name, entry, minimize) in rules {
            let m = net_with_params(params, 6, UnaryOp::Tanh, minimize);
            let what = format!("{name}, {params} parameters");
            let packed = agrees_with_reference(&m, PlanOptions::default(), 3, &what);
            assert_eq!(
                launches_of(&packed, entry),
                1,
                "{what}: {:?}",
                packed.launches()
            );
            let unpacked = PlanOptions {
                pack_updates: false,
                ..PlanOptions::default()
            };
            let plain = agrees_with_reference(&m, unpacked, 3, &format!("{what}, unpacked"));
            assert_eq!(launches_of(&plain, entry), params);
            // The step status checks the loss and, in one launch, the gradient arena.
            assert_eq!(launches_of(&packed, "finite_check_parts"), 1, "{what}");
            assert_eq!(launches_of(&packed, "finite_check"), 1, "{what}");
            assert_eq!(launches_of(&plain, "finite_check"), params + 1, "{what}");
            // Clipping adds one sum of squares over the gradient arena and the scale, however
            // many parameters there are.
            if name.ends_with("clipped") {
                assert_eq!(launches_of(&packed, "sumsq_slot"), 1, "{what}");
                assert_eq!(launches_of(&plain, "sumsq_slot"), params, "{what}");
            }
        }
    }
}

#[test]
fn fused_and_unfused_plans_match_the_reference() {
    for activation in [UnaryOp::Tanh, UnaryOp::Relu, UnaryOp::Gelu] {
        let m = net_with_params(7, 9, activation, |g, l| {
            Adam::new(0.01).minimize(g, l).unwrap();
        });
        let what = format!("{activation:?}");
        let fused = agrees_with_reference(&m, PlanOptions::default(), 5, &what);
        let plain = PlanOptions {
            fuse: false,
            pack_updates: false,
            overlap: false,
        };
        let unfused = agrees_with_reference(&m, plain, 5, &format!("{what}, unfused"));
        // Forward: three hidden layers, each matmul + bias + activation in one launch (the
        // last layer has no bias). Backward: the activation's rule fused into each of the
        // three products that feed one.
        let rule = match activation {
            UnaryOp::Relu => "relu_backward",
            UnaryOp::Tanh => "tanh_backward",
            _ => "gelu_backward",
        };
        assert_eq!(launches_of(&fused, "add"), 0, "{:?}", fused.launches());
        assert_eq!(launches_of(&fused, rule), 0, "{:?}", fused.launches());
        assert_eq!(launches_of(&unfused, rule), 3, "{:?}", unfused.launches());
        let (f, u) = (fused.stats(), unfused.stats());
        // 3 bias adds + 3 activations + 3 backward rules + 3 bias gradients + 6 of the 7
        // updates and 6 of the 7 gradients' finite checks fewer.
        assert_eq!(
            f.dispatches_per_step + 24,
            u.dispatches_per_step,
            "{f:?} vs {u:?}"
        );
        assert!(f.barriers_per_step < u.barriers_per_step, "{f:?} vs {u:?}");
        // Fewer values reach memory (the arenas' alignment can still cost more than that
        // saves on tensors this small).
        assert!(f.unpooled_bytes < u.unpooled_bytes, "{f:?} vs {u:?}");
    }
}

#[test]
fn forward_runs_of_a_fused_plan_compute_what_they_are_asked() {
    // A forward run needs only part of a fused chain: the chain still runs whole.
    let m = net_with_params(4, 5, UnaryOp::Relu, |g, l| {
        Sgd::new(0.1).minimize(g, l).unwrap();
    });
    let dev = device();
    let hidden = m
        .graph
        .nodes()
        .iter()
        .position(|n| n.op.name() == "Relu")
        .and_then(|i| m.graph.value(i))
        .unwrap();
    let outputs = [m.loss, hidden];
    let mut fused = GpuPlan::compile(&dev, &m.graph, &outputs, 3).unwrap();
    let mut cpu = ReferencePlan::<f64>::compile(&m.graph, 3).unwrap();
    let (x, t) = batch_data(11, 5, 4, 3);
    fused.forward(&[(m.x, &x)], &[hidden]).unwrap();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    cpu.forward(&[(m.x, &x64)], &[hidden]).unwrap();
    let (g, c) = (fused.read(hidden).unwrap(), cpu.read(hidden).unwrap());
    for (a, b) in g.iter().zip(c) {
        assert!((*a as f64 - b).abs() <= 1e-5, "{a} vs {b}");
    }
    // A step afterwards is unaffected.
    fused.step(&[(m.x, &x), (m.t, &t)]).unwrap();
    assert!(fused.read(m.loss).unwrap()[0].is_finite());
}

/// Checkpoints work on any plan: saved from the GPU, loaded into the reference executor (and
/// back through `&mut dyn Plan`), every tensor and the step count arrive bit for bit.
#[test]
fn checkpoints_move_between_executors() {
    let m = mlp(8, &[5, 6, 3], |g, loss| {
        Adam::new(1e-2).minimize(g, loss).unwrap();
    });
    let mut gpu = GpuPlan::compile(&device(), &m.graph, &[m.loss], 3).unwrap();
    let (x, t) = batch_data(4, 8, 5, 3);
    gpu.step(&[(m.x, &x), (m.t, &t)]).unwrap();
    let path = temp_path("cross.safetensors");
    checkpoint::save(&gpu, &path).unwrap();
    let mut cpu = ReferencePlan::<f32>::compile(&m.graph, 77).unwrap();
    checkpoint::load(&mut cpu as &mut dyn Plan, &path).unwrap();
    assert_eq!(Plan::steps(&cpu), 1);
    for v in gpu.saved_values() {
        assert_eq!(gpu.read(v).unwrap(), Plan::read(&cpu, v).unwrap());
    }
}

/// A tanh network of `layers` square layers of `width` whose weights and biases are each one
/// stacked parameter (`[layers, width, width]` and `[layers, width]`), every layer selecting
/// its slice; mean squared error, Adam.
fn stacked_net(layers: usize, width: usize, batch: usize) -> Mlp {
    let mut g = Graph::new();
    let x = g.input("x", &[batch, width]).unwrap();
    let t = g.input("targets", &[batch, width]).unwrap();
    let std = 1.0 / (width as f32).sqrt();
    let weights = g
        .param("weights", &[layers, width, width], Init::Normal { std })
        .unwrap();
    let biases = g
        .param("biases", &[layers, width], Init::Constant(0.1))
        .unwrap();
    let mut h = x;
    for l in 0..layers {
        let w = g.select(weights, l).unwrap();
        let b = g.select(biases, l).unwrap();
        let z = g.matmul(h, w, false, false).unwrap();
        let z = g.add(z, b).unwrap();
        h = g.tanh(z).unwrap();
    }
    let loss = g.mse(h, t).unwrap();
    Adam::new(0.01).minimize(&mut g, loss).unwrap();
    Mlp {
        graph: g,
        x,
        t,
        loss,
        params: vec![weights, biases],
    }
}

/// Stacked parameters train on the GPU as on the reference, fused and packed or plain. A slice
/// whose byte offset is a multiple of 256 is read in place, and a computed gradient slot that
/// starts at one is written in place; only the others cost a copy launch each — for the forward
/// selects and for the backward stacks alike.
#[test]
fn stacked_parameters_train_as_the_reference_and_copy_only_unaligned_slices() {
    let unaligned = |layers: usize, bytes: usize| {
        (0..layers)
            .filter(|k| !(k * bytes).is_multiple_of(256))
            .count()
    };
    for (layers, width) in [(3, 8), (3, 5), (1, 1), (5, 16)] {
        let m = stacked_net(layers, width, 7);
        let what = format!("{layers} layers of width {width}");
        let plan = agrees_with_reference(&m, PlanOptions::default(), 4, &what);
        let copies = 2 * (unaligned(layers, width * width * 4) + unaligned(layers, width * 4));
        assert_eq!(
            launches_of(&plan, "copy_range"),
            copies,
            "{what}: {:?}",
            plan.launches()
        );
        let plain = PlanOptions {
            fuse: false,
            pack_updates: false,
            overlap: false,
        };
        agrees_with_reference(&m, plain, 4, &format!("{what}, plain"));
    }
}

/// Slices of slices, through reshapes, read what the reference reads on the GPU: in place
/// where their offset from the stack's start is aligned (a 64-float row of the second matrix
/// starts at 1,024 + 256·k bytes), copied where it is not (matrices of 15 floats, rows of 3).
#[test]
fn slices_of_reshaped_slices_read_the_right_values() {
    let mut g = Graph::new();
    let wide = g
        .param("wide", &[2, 4, 64], Init::Normal { std: 1.0 })
        .unwrap();
    let narrow = g
        .param("narrow", &[3, 5, 3], Init::Normal { std: 1.0 })
        .unwrap();
    let mut outputs = Vec::new();
    for (stack, rows, cols) in [(wide, 4, 64), (narrow, 5, 3)] {
        let matrix = g.select(stack, 1).unwrap();
        let tall = g.reshape(matrix, &[rows, 1, cols]).unwrap();
        for k in 0..rows {
            let row = g.select(tall, k).unwrap();
            outputs.push(g.tanh(row).unwrap());
        }
    }
    let dev = device();
    let mut gpu = GpuPlan::compile(&dev, &g, &outputs, 5).unwrap();
    let mut cpu = ReferencePlan::<f32>::compile(&g, 5).unwrap();
    gpu.forward(&[], &outputs).unwrap();
    cpu.forward(&[], &outputs).unwrap();
    for &v in &outputs {
        let (a, b) = (gpu.read(v).unwrap(), cpu.read(v).unwrap());
        for (x, y) in a.iter().zip(b.iter()) {
            // tanh through the driver: 8ε, as the elementwise tests allow.
            assert!((x - y).abs() <= 8.0 * f32::EPSILON, "{x} vs {y}");
        }
    }
    // The wide matrix and rows are views; of the narrow ones the matrix (at 60 bytes) and
    // the rows but the first (at 12·k bytes from the copied matrix) are copied.
    assert_eq!(
        launches_of(&gpu, "copy_range"),
        1 + 4,
        "{:?}",
        gpu.launches()
    );
}

/// A stack whose inputs depend on one another, and parameters stacked directly: every input
/// whose launch would read the stack's own buffer is copied (one launch may not read and write
/// one buffer), the others are written in place, and training matches the reference. The
/// gradients of the stacked parameters are slices of the stack's gradient.
#[test]
fn stack_inputs_that_read_the_stack_are_copied() {
    let (batch, width) = (4, 64);
    let mut g = Graph::new();
    let x = g.input("x", &[batch, width]).unwrap();
    let t = g.input("targets", &[batch, 3 * width]).unwrap();
    let std = 1.0 / (width as f32).sqrt();
    let w = g.param("w", &[width, width], Init::Normal { std }).unwrap();
    let q = g
        .param("q", &[batch, width], Init::Normal { std: 0.5 })
        .unwrap();
    let a = g.matmul(x, w, false, false).unwrap();
    let b = g.tanh(a).unwrap();
    let s = g.stack(&[a, b, q]).unwrap();
    let flat = g.reshape(s, &[batch, 3 * width]).unwrap();
    let loss = g.mse(flat, t).unwrap();
    Adam::new(0.01).minimize(&mut g, loss).unwrap();
    let m = Mlp {
        graph: g,
        x,
        t,
        loss,
        params: vec![w, q],
    };
    let plan = agrees_with_reference(&m, PlanOptions::default(), 4, "dependent stack inputs");
    // a is written in place; b reads a's slot, q is a parameter: both copied; and q's
    // gradient, a slice of the stack's, is copied into the optimizer's gradient arena.
    assert_eq!(launches_of(&plan, "copy_range"), 3, "{:?}", plan.launches());
    // Unfused, tanh's own launch reads a's slot: b still cannot be written in place.
    let plain = PlanOptions {
        fuse: false,
        pack_updates: false,
        overlap: false,
    };
    agrees_with_reference(&m, plain, 4, "dependent stack inputs, unfused");
}
