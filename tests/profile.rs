//! Profiled steps: `GpuPlan::step_profiled` computes exactly what `step` computes, builds no
//! pipeline, and reports figures that are consistent with each other (no assertion on speed:
//! host and device times depend on the machine and its load).

mod common;
use common::random;
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::{Graph, Init, Plan, Value};
use eigengrad::nn::{EigenLayer, EigenMode, Mode, Scope};
use eigengrad::optim::Adam;
use eigengrad::profile::{time_pass, PassTimer};
use eigengrad::Device;

/// x [16, 12] → Eigen Clamp layer 12→8 → tanh → dense 8→3, softmax cross-entropy, Adam: a
/// step with a hoisted eigendecomposition, so it records several passes and copies.
fn model() -> (Graph, Value, Value, Value) {
    let mut g = Graph::new();
    let x = g.input("x", &[16, 12]).unwrap();
    let t = g.input("t", &[16, 3]).unwrap();
    let mode = EigenMode::Clamp { lo: 0.8, hi: 1.2 };
    let mut s = Scope::new(&mut g, Mode::Train);
    let layer =
        EigenLayer::new(&mut s.scope("l0"), 12, 8, mode, Init::Normal { std: 0.3 }).unwrap();
    let h = layer.forward(&mut g, x).unwrap();
    let h = g.tanh(h).unwrap();
    let w = g.param("w1", &[8, 3], Init::Normal { std: 0.3 }).unwrap();
    let logits = g.matmul(h, w, false, false).unwrap();
    let loss = g.softmax_cross_entropy(logits, t).unwrap();
    Adam::new(1e-2).minimize(&mut g, loss).unwrap();
    (g, x, t, loss)
}

#[test]
fn profiled_steps_match_plain_steps_and_report_consistent_figures() {
    // A device of its own: tests running in parallel on a shared one build pipelines too.
    let dev = Device::new().unwrap();
    let (g, x, t, loss) = model();
    let mut plain = GpuPlan::compile(&dev, &g, &[loss], 5).unwrap();
    let mut profiled = GpuPlan::compile(&dev, &g, &[loss], 5).unwrap();
    let xs = random(1, 16 * 12, 1.0);
    let mut ts = vec![0.0; 16 * 3];
    for r in 0..16 {
        ts[r * 3 + r % 3] = 1.0;
    }
    let inputs = [(x, xs.as_slice()), (t, ts.as_slice())];
    let pipelines = dev.pipelines_created();
    for _ in 0..4 {
        plain.step(&inputs).unwrap();
        let p = profiled.step_profiled(&inputs).unwrap();
        assert_eq!(p.dispatches, profiled.stats().dispatches_per_step);
        // One pass for the solve, one before it (the Gram matrix) and one after.
        assert!(p.passes >= 3, "{p:?}");
        for v in [
            p.host_upload_us,
            p.host_record_us,
            p.host_submit_us,
            p.wall_ms,
        ] {
            assert!(v.is_finite() && v > 0.0, "{p:?}");
        }
        // Uploading, recording and submitting happen inside the wall-clock interval.
        let host_ms = (p.host_upload_us + p.host_record_us + p.host_submit_us) / 1e3;
        assert!(host_ms <= p.wall_ms, "{p:?}");
        match (dev.info().timestamps, p.gpu_ms, p.gpu_busy_ms) {
            (true, Some(span), Some(busy)) => {
                assert!(
                    span > 0.0 && busy > 0.0 && busy <= span * (1.0 + 1e-9),
                    "{p:?}"
                );
                // The device's work happens between the start of the step and its end; 5 %
                // and 0.1 ms of slack for the two clocks' granularity.
                assert!(span <= p.wall_ms * 1.05 + 0.1, "{p:?}");
            }
            (false, None, None) => {}
            other => panic!("timestamps {other:?} on {}", dev.info()),
        }
    }
    assert_eq!(
        dev.pipelines_created(),
        pipelines,
        "a step built a pipeline"
    );
    // Bit-identical results: profiling only adds timestamp writes.
    assert_eq!(plain.read(loss).unwrap(), profiled.read(loss).unwrap());
    for v in plain.saved_values() {
        assert_eq!(plain.read(v).unwrap(), profiled.read(v).unwrap());
    }
    // Bad input is an error, as in `step`.
    assert!(profiled.step_profiled(&inputs[..1]).is_err());
}

#[test]
fn time_pass_reports_one_pass() {
    let dev = common::device();
    let n = 64;
    let a = eigengrad::Tensor::from_slice(&dev, &[n, n], &random(2, n * n, 1.0)).unwrap();
    let c = eigengrad::Tensor::zeros(&dev, &[n, n]).unwrap();
    let (_, dims) =
        eigengrad::kernels::matmul::matmul_shape(&[n, n], &[n, n], false, false).unwrap();
    let d = eigengrad::kernels::matmul::matmul_dispatch(
        &dev,
        &dims,
        a.buffer(),
        a.buffer(),
        c.buffer(),
    )
    .unwrap();
    let timer = PassTimer::new(&dev, 1).unwrap();
    assert_eq!(timer.is_some(), dev.info().timestamps);
    for _ in 0..3 {
        let p = time_pass(&dev, timer.as_ref(), 1, |pass| d.record(pass)).unwrap();
        assert_eq!((p.passes, p.dispatches), (1, 1));
        assert!(
            p.wall_ms > 0.0 && p.host_record_us > 0.0 && p.host_submit_us > 0.0,
            "{p:?}"
        );
        assert_eq!(p.gpu_ms.is_some(), dev.info().timestamps);
        if let Some(span) = p.gpu_ms {
            assert!(span > 0.0 && span <= p.wall_ms * 1.05 + 0.1, "{p:?}");
        }
    }
    // No timer for zero passes or more than a query set holds.
    assert!(PassTimer::new(&dev, 0).unwrap().is_none());
    assert!(PassTimer::new(&dev, PassTimer::MAX_PASSES + 1)
        .unwrap()
        .is_none());
}
