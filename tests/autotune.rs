//! Matmul autotuning and its cache: the file round-trips, corrupt or foreign files and
//! unwritable folders are ignored (never an error), a cached choice is used without
//! measuring, and `autotune::variant` follows the tuned choice (matmul's per size class). No
//! test asserts which variant is faster: that depends on the adapter and the machine's load.

use eigengrad::kernels::autotune::{
    adapter_key, set_variant, tune, tune_all, variant, Tunable, TuneCache, TuneSource, Variant,
    CACHE_FILE,
};
use eigengrad::kernels::jacobi::SmallEigh;
use eigengrad::kernels::matmul::{
    matmul_dispatch, matmul_shape, matmul_variant, MatmulClass, MatmulLarge, MatmulMedium,
    MatmulSmall, MatmulVariant,
};
use eigengrad::kernels::reduce::{reduce_lanes, Axis, Reduce};
use eigengrad::kernels::softmax::{softmax_lanes, SoftmaxXent};
use eigengrad::kernels::transpose::{transpose_dispatch, Transpose, TransposeKernel};
use eigengrad::kernels::LanePolicy;
use eigengrad::{Device, Tensor};
use std::path::PathBuf;

/// A fresh, empty folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("eigengrad-autotune-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn cache_file_round_trip_and_corruption() {
    let dir = temp_dir("file");
    let path = dir.join("sub").join(CACHE_FILE);
    // Missing file: empty, no error.
    assert!(TuneCache::load(Some(&path)).is_empty());
    let mut cache = TuneCache::load(Some(&path));
    cache.insert("Adapter A | Vulkan | 1.0", "matmul", "Tiled");
    // Separators in keys are replaced, not written raw.
    cache.insert("Adapter\tB\n | Gl | x", "matmul", "RowBlock");
    cache.save().unwrap();
    let back = TuneCache::load(Some(&path));
    assert_eq!(back.len(), 2);
    assert_eq!(
        back.get("Adapter A | Vulkan | 1.0", "matmul"),
        Some("Tiled")
    );
    assert_eq!(
        back.get("Adapter\tB\n | Gl | x", "matmul"),
        Some("RowBlock")
    );
    assert_eq!(back.get("Adapter C", "matmul"), None);
    assert_eq!(back.get("Adapter A | Vulkan | 1.0", "other"), None);

    // Broken lines are skipped, good ones kept; invalid UTF-8 does not stop the reader.
    let mut text =
        b"# eigengrad autotune v1\nmatmul\tTiled\n\n\t\t\nmatmul\tRowBlock\tGood\n".to_vec();
    text.extend_from_slice(&[0xff, 0xfe, b'\t', 0x80, b'\n']);
    text.extend_from_slice(b"matmul\t\tEmpty variant\na\tb\tc\td\n");
    std::fs::write(&path, &text).unwrap();
    let c = TuneCache::load(Some(&path));
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c.get("Good", "matmul"), Some("RowBlock"));

    // Another version's file, or random bytes: nothing is read from it.
    std::fs::write(&path, "# eigengrad autotune v0\nmatmul\tTiled\tGood\n").unwrap();
    assert!(TuneCache::load(Some(&path)).is_empty());
    std::fs::write(&path, [0u8, 159, 146, 150, 255, 10, 9, 9]).unwrap();
    assert!(TuneCache::load(Some(&path)).is_empty());

    // A folder that cannot be created (its parent is a file): save fails, load is empty.
    let blocked = dir.join("file-not-dir");
    std::fs::write(&blocked, "x").unwrap();
    let unwritable = blocked.join(CACHE_FILE);
    let mut c = TuneCache::load(Some(&unwritable));
    assert!(c.is_empty());
    c.insert("A", "matmul", "Tiled");
    assert!(c.save().is_err());
    // No path: memory only, saving is a no-op.
    assert!(TuneCache::load(None).save().is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cached_choice_is_used_without_measuring() {
    let dev = Device::new().unwrap();
    let dir = temp_dir("cached");
    let path = dir.join(CACHE_FILE);
    // Store the variant the heuristic would NOT pick, to see that the cache decides.
    let stored = match MatmulLarge::default_variant(dev.info()) {
        MatmulVariant::RowBlock => MatmulVariant::Tiled,
        _ => MatmulVariant::RowBlock,
    };
    let mut cache = TuneCache::load(Some(&path));
    cache.insert(&adapter_key(dev.info()), MatmulLarge::KERNEL, stored.name());
    cache.save().unwrap();
    assert_eq!(
        variant::<MatmulLarge>(&dev),
        MatmulLarge::default_variant(dev.info())
    );
    let t = tune::<MatmulLarge>(&dev, Some(&path), false).unwrap();
    assert_eq!((t.variant, t.source), (stored, TuneSource::Disk));
    assert!(t.timings_ms.is_empty());
    assert_eq!(variant::<MatmulLarge>(&dev), stored);
    // Second call: remembered on the device.
    let t = tune::<MatmulLarge>(&dev, Some(&path), false).unwrap();
    assert_eq!((t.variant, t.source), (stored, TuneSource::Memory));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_entry_and_unwritable_cache_measure_and_never_fail() {
    let dir = temp_dir("measure");
    let path = dir.join(CACHE_FILE);
    // A corrupt entry for this adapter: ignored, measured, replaced by a valid one.
    let dev = Device::new().unwrap();
    let key = adapter_key(dev.info());
    std::fs::write(
        &path,
        format!(
            "# eigengrad autotune v1\n{}\tNoSuchVariant\t{key}\n",
            MatmulLarge::KERNEL
        ),
    )
    .unwrap();
    let t = tune::<MatmulLarge>(&dev, Some(&path), false).unwrap();
    assert_eq!(t.source, TuneSource::Measured);
    assert_eq!(t.timings_ms.len(), MatmulVariant::ALL.len());
    for (v, ms) in &t.timings_ms {
        assert!(ms.is_finite() && *ms > 0.0, "{v:?}: {ms} ms");
    }
    let fastest = t
        .timings_ms
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
        .0;
    assert_eq!(t.variant, fastest);
    assert_eq!(variant::<MatmulLarge>(&dev), t.variant);
    assert_eq!(
        TuneCache::load(Some(&path)).get(&key, MatmulLarge::KERNEL),
        Some(t.variant.name())
    );

    // An unwritable cache location on a fresh device: measured, kept in memory, no error.
    let blocked = dir.join("file-not-dir");
    std::fs::write(&blocked, "x").unwrap();
    let dev = Device::new().unwrap();
    let t = tune::<MatmulLarge>(&dev, Some(&blocked.join(CACHE_FILE)), false).unwrap();
    assert_eq!(t.source, TuneSource::Measured);
    assert_eq!(variant::<MatmulLarge>(&dev), t.variant);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_tunable_kernel_is_measured_cached_and_then_read() {
    let dir = temp_dir("all");
    let path = dir.join(CACHE_FILE);
    let dev = Device::new().unwrap();
    let first = tune_all(&dev, Some(&path), false).unwrap();
    let kernels = [
        MatmulSmall::KERNEL,
        MatmulMedium::KERNEL,
        MatmulLarge::KERNEL,
        Transpose::KERNEL,
        Reduce::KERNEL,
        SoftmaxXent::KERNEL,
        SmallEigh::KERNEL,
    ];
    assert_eq!(first.len(), kernels.len());
    let cache = TuneCache::load(Some(&path));
    let key = adapter_key(dev.info());
    for (t, kernel) in first.iter().zip(kernels) {
        assert_eq!(t.source, TuneSource::Measured, "{kernel}");
        assert!(t.timings_ms.len() >= 2, "{kernel}: {t:?}");
        assert!(t
            .timings_ms
            .iter()
            .all(|(_, ms)| ms.is_finite() && *ms > 0.0));
        assert_eq!(cache.get(&key, kernel), Some(t.variant), "{kernel}");
    }
    assert_eq!(variant::<Reduce>(&dev).name(), first[4].variant);
    // Again on this device: remembered; on a new device: read from the file.
    let again = tune_all(&dev, Some(&path), false).unwrap();
    assert!(again.iter().all(|t| t.source == TuneSource::Memory));
    let fresh = Device::new().unwrap();
    let read = tune_all(&fresh, Some(&path), false).unwrap();
    for (r, t) in read.iter().zip(&first) {
        assert_eq!((r.source, r.variant), (TuneSource::Disk, t.variant));
        assert!(r.timings_ms.is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn builders_follow_the_chosen_variant() {
    let dev = Device::new().unwrap();
    let x = Tensor::zeros(&dev, &[40, 24]).unwrap();
    let y = Tensor::zeros(&dev, &[24, 40]).unwrap();
    let c = Tensor::zeros(&dev, &[40, 40]).unwrap();
    let (_, dims) = matmul_shape(&[40, 24], &[24, 40], false, false).unwrap();
    assert_eq!(dims.class(), MatmulClass::Small);
    let entry = |v| match v {
        MatmulVariant::RowBlock => "matmul_rowblock",
        MatmulVariant::Tiled => "matmul_tiled",
        MatmulVariant::Large => "matmul_large",
        MatmulVariant::Skinny => "matmul_skinny",
        MatmulVariant::Subgroup => "matmul_subgroup",
    };
    for v in MatmulVariant::available_on(dev.info()) {
        set_variant::<MatmulSmall>(&dev, v);
        let d = matmul_dispatch(&dev, &dims, x.buffer(), y.buffer(), c.buffer()).unwrap();
        assert_eq!(d.label(), entry(v));
    }
    // Another class's choice does not touch this product.
    set_variant::<MatmulSmall>(&dev, MatmulVariant::Tiled);
    set_variant::<MatmulLarge>(&dev, MatmulVariant::Skinny);
    set_variant::<MatmulMedium>(&dev, MatmulVariant::Skinny);
    let d = matmul_dispatch(&dev, &dims, x.buffer(), y.buffer(), c.buffer()).unwrap();
    assert_eq!(d.label(), "matmul_tiled");
    for &k in TransposeKernel::ALL {
        set_variant::<Transpose>(&dev, k);
        let d = transpose_dispatch(&dev, x.buffer(), y.buffer(), 1, 40, 24).unwrap();
        let entry = match k {
            TransposeKernel::Tiled => "tiled",
            TransposeKernel::Direct => "direct",
        };
        assert_eq!(d.label(), entry);
    }
    // 4096 values per segment: about 8 per lane caps at a workgroup of 256 lanes; the fewest
    // lanes the loop budget allows is one.
    for (policy, lanes) in [(LanePolicy::Spread, 256), (LanePolicy::Fewest, 1)] {
        set_variant::<Reduce>(&dev, policy);
        assert_eq!(reduce_lanes(&dev, Axis::Rows, 3, 4096), lanes, "{policy:?}");
        set_variant::<SoftmaxXent>(&dev, policy);
        assert_eq!(softmax_lanes(&dev, 4096), lanes, "{policy:?}");
    }
    // On CPU adapters no policy may take fewer lanes than llvmpipe's loop budget needs.
    set_variant::<Reduce>(&dev, LanePolicy::Spread);
    let long = reduce_lanes(&dev, Axis::Cols, 1 << 22, 1);
    assert!(
        !dev.info().is_cpu() || (1 << 22) / long <= 1 << 16,
        "{long} lanes"
    );
}

/// Untuned, a CPU adapter (llvmpipe on CI) keeps RowBlock in every size class, and the
/// products of every class run it.
#[test]
fn cpu_adapters_keep_rowblock_in_every_size_class() {
    let dev = Device::new().unwrap();
    if !dev.info().is_cpu() {
        return;
    }
    for default in [
        MatmulSmall::default_variant(dev.info()),
        MatmulMedium::default_variant(dev.info()),
        MatmulLarge::default_variant(dev.info()),
    ] {
        assert_eq!(default, MatmulVariant::RowBlock);
    }
    for (batch, m, n, class) in [
        (1, 256, 512, MatmulClass::Small),
        (1, 1024, 1024, MatmulClass::Medium),
        (1, 2048, 2048, MatmulClass::Large),
        (128, 64, 64, MatmulClass::Medium),
    ] {
        let (_, mut dims) = matmul_shape(&[m, 64], &[64, n], false, false).unwrap();
        dims.batch = batch;
        assert_eq!(dims.class(), class);
        assert_eq!(
            matmul_variant(&dev, &dims),
            MatmulVariant::RowBlock,
            "{dims:?}"
        );
    }
}
