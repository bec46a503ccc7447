//! One device shared by threads and by plans that come and go: a device error belongs to the
//! thread whose call raised it, and a dropped plan gives its device memory back at once.
//! Each test opens a device of its own, so other tests' work does not enter its figures.

use eigengrad::graph::gpu::GpuPlan;
use eigengrad::graph::{Graph, Init};
use eigengrad::nn::{EigenLayer, EigenMode, Mode, Scope};
use eigengrad::optim::Adam;
use eigengrad::{Device, Error, Tensor};
use std::sync::Barrier;

/// Live device buffers and their bytes, from wgpu's internal counters.
fn live_buffers(device: &Device) -> (isize, isize) {
    let hal = device.wgpu_device().get_internal_counters().hal;
    (hal.buffers.read(), hal.buffer_memory.read())
}

/// Thread 1 raises a validation error (a buffer usage wgpu forbids) and waits; thread 2 then
/// runs and reads a kernel on the same device and must not receive it; thread 1 then does.
#[test]
fn a_device_error_stays_with_the_thread_that_raised_it() {
    let device = Device::new().unwrap();
    let raised = Barrier::new(2);
    let checked = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _invalid = device.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("invalid usage"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            raised.wait();
            checked.wait();
            let err = device.synchronize().unwrap_err();
            assert!(matches!(err, Error::Device(_)), "{err}");
            device.synchronize().unwrap();
        });
        s.spawn(|| {
            raised.wait();
            let x = Tensor::from_slice(&device, &[3], &[1.0, -2.0, 3.0]).unwrap();
            let y = eigengrad::kernels::elementwise::unary(
                eigengrad::kernels::elementwise::UnaryOp::Relu,
                &x,
            );
            let read = y.and_then(|y| y.to_vec());
            device.synchronize().unwrap();
            checked.wait();
            assert_eq!(read.unwrap(), vec![1.0, 0.0, 3.0]);
        });
    });
}

/// Compiling and dropping 200 small training plans (with an Eigen layer, whose warm start
/// is written at compile time) leaves the device's live buffers and their bytes where the
/// first one left them: a dropped plan releases its memory without waiting for another
/// submission on the device (wgpu keeps buffers that queued writes reference until then).
#[test]
fn dropped_plans_release_their_memory() {
    let device = Device::new().unwrap();
    let mut g = Graph::new();
    let x = g.input("x", &[4, 6]).unwrap();
    let t = g.input("t", &[4, 3]).unwrap();
    let layer = EigenLayer::new(
        &mut Scope::new(&mut g, Mode::Train).scope("eigen"),
        6,
        3,
        EigenMode::Orthogonal,
        Init::Normal { std: 0.3 },
    )
    .unwrap();
    let y = layer.forward(&mut g, x).unwrap();
    let loss = g.mse(y, t).unwrap();
    Adam::new(1e-2).minimize(&mut g, loss).unwrap();

    let empty = live_buffers(&device);
    {
        let _probe = Tensor::zeros(&device, &[1000]).unwrap();
        let (count, bytes) = live_buffers(&device);
        // Every backend counts buffers; GL's does not count bytes (they stay 0 there).
        assert!(
            count > empty.0
                && (bytes >= empty.1 + 4000 || device.info().backend == wgpu::Backend::Gl),
            "wgpu's counters are off: {empty:?} → {count}, {bytes} with a 4000-byte tensor alive"
        );
    }
    let cycle = |seed| drop(GpuPlan::compile(&device, &g, &[loss], seed).unwrap());
    cycle(0);
    let baseline = live_buffers(&device);
    for seed in 1..200 {
        cycle(seed);
    }
    assert_eq!(
        live_buffers(&device),
        baseline,
        "live (buffers, bytes) after 200 compiled-and-dropped plans vs after the first"
    );
}
