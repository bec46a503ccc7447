//! The first compile of a pipeline is paid once per machine where the backend has a pipeline
//! cache (Vulkan): building one saves the driver's cache to a file named after the adapter in
//! the cache directory, and a device opened later loads it. GL has none (Mesa keeps its own
//! shader cache there): nothing is written. Its own test binary, since it sets the cache
//! directory for the whole process.

use eigengrad::kernels::elementwise::{unary, UnaryOp};
use eigengrad::{Device, Tensor};

#[test]
fn pipelines_are_cached_on_disk_where_the_backend_allows() {
    let dir = std::env::temp_dir().join(format!("eigengrad-pipeline-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Set before any device exists; this binary has no other test that reads it.
    std::env::set_var("EIGENGRAD_CACHE_DIR", &dir);
    let device = Device::new().unwrap();
    let x = Tensor::from_slice(&device, &[2], &[-1.0, 2.0]).unwrap();
    assert_eq!(
        unary(UnaryOp::Relu, &x).unwrap().to_vec().unwrap(),
        [0.0, 2.0]
    );

    let files: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().unwrap().len(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let backend = device.info().backend;
    assert_eq!(
        device.info().pipeline_cache,
        backend == wgpu::Backend::Vulkan,
        "pipeline cache on {backend:?}"
    );
    if device.info().pipeline_cache {
        assert!(
            matches!(files.as_slice(), [(name, len)] if name.starts_with("wgpu_pipeline_cache_vulkan") && *len > 0),
            "cache directory holds {files:?}"
        );
        // A second device loads the saved data and builds the same pipeline from it.
        let again = Device::new().unwrap();
        let y = Tensor::from_slice(&again, &[2], &[3.0, -4.0]).unwrap();
        assert_eq!(
            unary(UnaryOp::Relu, &y).unwrap().to_vec().unwrap(),
            [3.0, 0.0]
        );
        assert_eq!(again.pipelines_created(), 1);
    } else {
        assert!(files.is_empty(), "{backend:?} wrote {files:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
