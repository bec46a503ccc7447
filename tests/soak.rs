//! A long run: 2,000 training steps of a small plan with an Eigen layer (a warm-started
//! eigensolve every step) build no pipeline after compile, keep the device's live buffers and
//! bytes flat, and end with a finite loss. About a minute on lavapipe.

mod common;
use common::random;
use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::{Graph, Init, Plan};
use eigengrad::nn::{EigenLayer, EigenMode, Mode, Scope};
use eigengrad::optim::Adam;
use eigengrad::Device;

const STEPS: usize = 2000;

fn live_buffers(device: &Device) -> (isize, isize) {
    let hal = device.wgpu_device().get_internal_counters().hal;
    (hal.buffers.read(), hal.buffer_memory.read())
}

#[test]
fn two_thousand_steps_build_no_pipeline_and_keep_memory_flat() {
    // A device of its own: other tests build pipelines and buffers on the shared one.
    let device = Device::new().unwrap();
    let (batch, features, hidden, classes) = (16, 8, 8, 4);
    let mut g = Graph::new();
    let x = g.input("x", &[batch, features]).unwrap();
    let t = g.input("t", &[batch, classes]).unwrap();
    let layer = EigenLayer::new(
        &mut Scope::new(&mut g, Mode::Train).scope("eigen"),
        features,
        hidden,
        EigenMode::Clamp { lo: 0.5, hi: 2.0 },
        Init::Orthogonal { gain: 1.0 },
    )
    .unwrap();
    let h = layer.forward(&mut g, x).unwrap();
    let h = g.tanh(h).unwrap();
    let w = g
        .param("out", &[hidden, classes], Init::Normal { std: 0.3 })
        .unwrap();
    let logits = g.matmul(h, w, false, false).unwrap();
    let loss = g.softmax_cross_entropy(logits, t).unwrap();
    Adam::new(1e-2).minimize(&mut g, loss).unwrap();

    let mut plan = GpuPlan::compile(&device, &g, &[loss], 1).unwrap();
    let pipelines = device.pipelines_created();
    let xs = random(1, batch * features, 1.0);
    let mut ts = vec![0.0; batch * classes];
    for r in 0..batch {
        ts[r * classes + r % classes] = 1.0;
    }
    let mut settled = None;
    for step in 0..STEPS {
        plan.step(&[(x, &xs), (t, &ts)]).unwrap();
        // Every 100 steps: wait, check the device and take the memory figure.
        if step % 100 == 99 {
            device.synchronize().unwrap();
            plan.check_status().unwrap();
            let now = live_buffers(&device);
            match settled {
                None => settled = Some(now),
                Some(first) => assert_eq!(now, first, "live (buffers, bytes) at step {step}"),
            }
        }
    }
    assert_eq!(
        device.pipelines_created(),
        pipelines,
        "pipelines built after compile"
    );
    let final_loss = plan.read(loss).unwrap()[0];
    assert!(final_loss.is_finite(), "loss {final_loss}");
}
