//! Tensors and the device: upload/download round trips, every bad input the constructors can
//! meet, what the device reports, and a kernel that needs one of its optional features.

mod common;
use common::*;
use eigengrad::{Backend, Device, DeviceOptions, Error, Tensor};

#[test]
fn round_trip_is_exact() {
    let dev = device();
    for n in [1usize, 7, 31, 127, 4099] {
        let x = random(n as u64, n, 1e3);
        let t = Tensor::from_slice(&dev, &[n], &x).unwrap();
        assert_eq!(t.shape(), &[n]);
        assert_eq!(t.to_vec().unwrap(), x);
    }
    let z = Tensor::zeros(&dev, &[3, 5]).unwrap();
    assert_eq!(z.to_vec().unwrap(), vec![0.0; 15]);
    let data: Vec<f32> = (0..15).map(|i| i as f32).collect();
    z.write(&data).unwrap();
    assert_eq!(z.reshape(&[5, 3]).unwrap().to_vec().unwrap(), data);
}

#[test]
fn length_mismatch_is_a_shape_error() {
    let dev = device();
    let err = Tensor::from_slice(&dev, &[2, 3], &[1.0; 5]).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let t = Tensor::zeros(&dev, &[2, 3]).unwrap();
    assert!(matches!(t.write(&[0.0; 7]), Err(Error::Shape { .. })));
    assert!(matches!(t.reshape(&[4, 2]), Err(Error::Shape { .. })));
}

#[test]
fn empty_shapes_are_rejected() {
    let dev = device();
    for shape in [&[][..], &[0][..], &[3, 0, 2][..]] {
        let err = Tensor::zeros(&dev, shape).unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{shape:?}: {err}");
        assert!(matches!(
            Tensor::from_slice(&dev, shape, &[]),
            Err(Error::Empty { .. })
        ));
    }
}

#[test]
fn oversized_tensor_names_the_limit() {
    let dev = device();
    let limit = dev.info().limits.max_storage_buffer_binding_size;
    let elems = (limit / 4 + 1) as usize;
    let err = Tensor::zeros(&dev, &[elems]).unwrap_err();
    match &err {
        Error::TooLarge {
            limit_name,
            limit: l,
            ..
        } => {
            assert!(limit_name.contains("max_"), "{err}");
            assert!(*l <= limit.max(dev.info().limits.max_buffer_size));
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    // An element count that overflows usize is also TooLarge, not a panic.
    assert!(matches!(
        Tensor::zeros(&dev, &[usize::MAX, 4]),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn device_reports_adapter_and_limits() {
    let info = device().info().clone();
    assert!(!info.name.is_empty());
    assert!(info.limits.max_storage_buffer_binding_size >= 128 << 20);
    assert!(info.limits.max_compute_invocations_per_workgroup >= 256);
    assert!(format!("{info}").contains(&info.name));
}

#[test]
fn unknown_backend_name_is_an_error() {
    assert!(matches!(
        Backend::parse("cuda"),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!("VULKAN".parse::<Backend>().unwrap(), Backend::Vulkan);
    assert_eq!(Backend::parse("gl").unwrap(), Backend::Gl);
}

#[test]
fn missing_backend_is_no_adapter_with_install_hint() {
    // No machine has a Metal adapter together with the Linux CI driver set, and no adapter is
    // named like this: the request must fail cleanly with the install hint.
    let opts = DeviceOptions {
        backend: Backend::Vulkan,
        adapter_name: Some("no-such-adapter-xyz".into()),
    };
    let err = Device::with_options(&opts).unwrap_err();
    assert!(matches!(err, Error::NoAdapter { .. }), "{err}");
    assert!(err.to_string().contains("mesa-vulkan-drivers"));
}

/// A kernel whose shader declares subgroup operations runs where the device has them (each
/// invocation counts its subgroup's lanes, which lie in the range the device reports) and is
/// an `InvalidArgument` error, not a failed pipeline, where it does not. CI states which to
/// expect per adapter (`EIGENGRAD_EXPECT_SUBGROUPS`: 1 for lavapipe on Vulkan, 0 for GL).
#[test]
fn a_subgroup_kernel_runs_only_where_the_device_has_subgroups() {
    use eigengrad::kernels::run;
    use eigengrad::pipeline::{Kernel, Shader};
    const PROBE: Shader = Shader {
        name: "subgroup_probe",
        subgroups: true,
        source: "
            struct Params { n: u32 }
            @group(0) @binding(0) var<uniform> p: Params;
            @group(0) @binding(1) var<storage, read_write> out: array<f32>;
            @compute @workgroup_size(64)
            fn lanes(@builtin(local_invocation_index) i: u32) {
                let count = subgroupAdd(1.0);
                if (i < p.n) { out[i] = count; }
            }
        ",
    };
    eigengrad::wgsl_params! {
        struct ProbeParams { n: u32 }
    }
    const LANES: Kernel<ProbeParams> = Kernel::new(&PROBE, "lanes", [64, 1, 1]);

    let dev = device();
    let sizes = dev.info().subgroup_sizes;
    if let Ok(expected) = std::env::var("EIGENGRAD_EXPECT_SUBGROUPS") {
        assert_eq!(sizes.is_some(), expected == "1", "{}", dev.info());
    }
    let out = Tensor::zeros(&dev, &[64]).unwrap();
    let launch = LANES.dispatch(&dev, &ProbeParams { n: 64 }, &[out.buffer()], [1, 1, 1]);
    match (sizes, launch) {
        (Some((least, most)), Ok(d)) => {
            run(&dev, &[&d]).unwrap();
            for count in out.to_vec().unwrap() {
                assert!((least as f32..=most as f32).contains(&count), "{count}");
            }
        }
        (None, Err(Error::InvalidArgument(why))) => assert!(why.contains("subgroup"), "{why}"),
        (sizes, other) => panic!("subgroups {sizes:?}: {other:?}"),
    }
}
