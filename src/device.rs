//! Adapter choice, the limits in force, and the device's pipeline cache (see
//! [`crate::pipeline`]) and autotuned kernel variants.
//!
//! A [`Device`] is cheap to clone (it is an `Arc`); tensors and plans keep one so that their
//! buffers stay valid for as long as they live.

use crate::error::{Error, Result};
use crate::pipeline::{KernelId, PipelineCache, Shader};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// The environment variable that picks the backend of `Backend::Auto` (first choice).
const EIGENGRAD_BACKEND_VAR: &str = "EIGENGRAD_BACKEND";

/// wgpu's own backend variable, honoured by `Backend::Auto` when `EIGENGRAD_BACKEND` is unset.
const WGPU_BACKEND_VAR: &str = "WGPU_BACKEND";

/// Which wgpu backend to run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The best adapter of any backend: discrete GPU, then integrated, then others, CPU last.
    /// The environment variable `EIGENGRAD_BACKEND`, else `WGPU_BACKEND`, narrows it to one
    /// backend (see [`Backend::resolve`]).
    #[default]
    Auto,
    /// Vulkan (Linux, Windows, Android; lavapipe on a machine without a GPU).
    Vulkan,
    /// Metal (macOS, iOS).
    Metal,
    /// Direct3D 12 (Windows).
    Dx12,
    /// OpenGL / GLES (Mesa's llvmpipe on Linux without a GPU).
    Gl,
}

impl Backend {
    /// Parses `auto`, `vulkan`, `metal`, `dx12` or `gl` (case-insensitive).
    pub fn parse(name: &str) -> Result<Backend> {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Backend::Auto),
            "vulkan" | "vk" => Ok(Backend::Vulkan),
            "metal" | "mtl" => Ok(Backend::Metal),
            "dx12" | "d3d12" => Ok(Backend::Dx12),
            "gl" | "gles" | "opengl" => Ok(Backend::Gl),
            other => Err(Error::InvalidArgument(format!(
                "unknown backend {other:?}; expected auto, vulkan, metal, dx12 or gl"
            ))),
        }
    }

    /// The backend asked for, with the environment applied to `Auto`.
    ///
    /// An explicit backend always wins. `Auto` takes `EIGENGRAD_BACKEND` when it is set and not
    /// empty (`auto` there keeps the automatic choice), else wgpu's own `WGPU_BACKEND`, else
    /// stays automatic. `WGPU_BACKEND` is a comma-separated list in wgpu; a device opens one
    /// backend, so a list naming two different backends is an error (set `EIGENGRAD_BACKEND`
    /// to choose, or `auto`).
    pub fn resolve(self) -> Result<Backend> {
        let var = |name| std::env::var(name).ok();
        self.resolve_with(
            var(EIGENGRAD_BACKEND_VAR).as_deref(),
            var(WGPU_BACKEND_VAR).as_deref(),
        )
    }

    /// [`Backend::resolve`] with the two variables' values given.
    fn resolve_with(self, eigengrad: Option<&str>, wgpu: Option<&str>) -> Result<Backend> {
        if self != Backend::Auto {
            return Ok(self);
        }
        fn set(value: Option<&str>) -> Option<&str> {
            value.filter(|v| !v.trim().is_empty())
        }
        if let Some(name) = set(eigengrad) {
            return Backend::parse_variable(EIGENGRAD_BACKEND_VAR, name);
        }
        let Some(list) = set(wgpu) else {
            return Ok(Backend::Auto);
        };
        let mut named = Vec::new();
        for name in list.split(',') {
            let backend = Backend::parse_variable(WGPU_BACKEND_VAR, name)?;
            if backend != Backend::Auto && !named.contains(&backend) {
                named.push(backend);
            }
        }
        match named[..] {
            [] => Ok(Backend::Auto),
            [one] => Ok(one),
            _ => Err(Error::InvalidArgument(format!(
                "{WGPU_BACKEND_VAR}={list:?} names more than one backend; eigengrad opens one: \
                 name one there, or set {EIGENGRAD_BACKEND_VAR} (which takes precedence) to \
                 one backend or to auto"
            ))),
        }
    }

    /// [`Backend::parse`] of the value of the environment variable `var`, whose name the
    /// error carries.
    fn parse_variable(var: &str, name: &str) -> Result<Backend> {
        Backend::parse(name).map_err(|e| match e {
            Error::InvalidArgument(message) => Error::InvalidArgument(format!("{var}: {message}")),
            other => other,
        })
    }

    fn wgpu_backends(self) -> wgpu::Backends {
        match self {
            Backend::Auto => wgpu::Backends::all(),
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Backend> {
        Backend::parse(s)
    }
}

/// How to open a [`Device`].
#[derive(Clone, Debug, Default)]
pub struct DeviceOptions {
    /// Which backend; `Auto` honours `EIGENGRAD_BACKEND`, then `WGPU_BACKEND`.
    pub backend: Backend,
    /// Pick this adapter (a case-insensitive substring of its name) when several are present.
    pub adapter_name: Option<String>,
}

/// The limits in force on a device: the adapter's own, not wgpu's small defaults.
#[derive(Clone, Debug)]
pub struct DeviceLimits {
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Largest storage-buffer binding, in bytes: the largest tensor a kernel can read.
    pub max_storage_buffer_binding_size: u64,
    /// Workgroup (shared) memory per workgroup, in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Storage buffers one kernel may bind.
    pub max_storage_buffers_per_shader_stage: u32,
}

/// What [`Device::info`] reports: which adapter runs the kernels and under which limits.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// The adapter's name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// The backend in use.
    pub backend: wgpu::Backend,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: wgpu::DeviceType,
    /// Driver name and version, as the driver reports them.
    pub driver: String,
    /// The limits in force.
    pub limits: DeviceLimits,
    /// Whether GPU timestamp queries are available (pass begin/end and inside encoders).
    pub timestamps: bool,
    /// Whether compiled pipelines are kept in a cache on disk between processes (wgpu's
    /// pipeline cache: Vulkan only).
    pub pipeline_cache: bool,
    /// The smallest and largest subgroup (SIMD group, warp, wave) size where the device has
    /// subgroup operations (wgpu's `SUBGROUP` feature, requested whenever the adapter offers
    /// it: Vulkan, Metal and DX12 on most GPUs, lavapipe), else `None` (wgpu's GL backend).
    /// Kernels that need them are variants the autotuner only tries where they exist.
    pub subgroup_sizes: Option<(u32, u32)>,
}

impl DeviceInfo {
    /// True for software adapters such as lavapipe/llvmpipe, which prefer kernels without
    /// workgroup memory or barriers.
    pub fn is_cpu(&self) -> bool {
        self.device_type == wgpu::DeviceType::Cpu
            || self.name.to_ascii_lowercase().contains("llvmpipe")
    }
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.limits;
        write!(
            f,
            "{} ({:?}, {:?}, driver {}); max buffer {} MiB, max storage binding {} MiB, \
             workgroup memory {} KiB, {} invocations/workgroup, timestamps {}, subgroups {}",
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            l.max_buffer_size >> 20,
            l.max_storage_buffer_binding_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            if self.timestamps { "yes" } else { "no" },
            match self.subgroup_sizes {
                None => "no".to_string(),
                Some((lo, hi)) if lo == hi => format!("of {lo}"),
                Some((lo, hi)) => format!("of {lo}–{hi}"),
            }
        )
    }
}

/// Shared state behind a [`Device`] handle.
struct DeviceShared {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: DeviceInfo,
    /// Shader modules and compute pipelines, each built once per device.
    pipelines: PipelineCache,
    /// The first uncaptured wgpu error of each thread, returned at that thread's next
    /// synchronisation point (wgpu reports an error on the thread whose call raised it).
    uncaptured: Arc<Mutex<HashMap<std::thread::ThreadId, String>>>,
    /// Kernel variants chosen by autotuning, by kernel name (see `kernels::autotune`).
    tuned: Mutex<HashMap<String, String>>,
    /// The driver's compiled pipelines, saved to disk, where the backend has a cache.
    disk_cache: Option<DiskPipelineCache>,
}

/// wgpu's pipeline cache of a device, loaded from and saved to a file named after the
/// adapter (Vulkan: the driver checks its own version inside the data and ignores stale
/// data), in the directory of the autotuning cache.
struct DiskPipelineCache {
    cache: wgpu::PipelineCache,
    /// Where it is saved; `None` when no cache directory is set.
    path: Option<std::path::PathBuf>,
}

impl DiskPipelineCache {
    /// Opens the cache of `adapter` for `device`, with the data saved by an earlier process.
    fn open(device: &wgpu::Device, adapter: &wgpu::AdapterInfo) -> Option<DiskPipelineCache> {
        let key = wgpu::util::pipeline_cache_key(adapter)?;
        let path = crate::kernels::autotune::default_cache_path()
            .and_then(|file| file.parent().map(|dir| dir.join(key)));
        let data = path.as_ref().and_then(|p| std::fs::read(p).ok());
        // SAFETY: the data was written by `get_data` of a cache for this adapter (the file is
        // named after it); the driver validates it, and `fallback` makes wgpu start empty
        // where the driver rejects it.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("eigengrad pipelines"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(DiskPipelineCache { cache, path })
    }

    /// Saves the cache (after a new pipeline); a failure only costs compile time later.
    fn save(&self) {
        let (Some(path), Some(data)) = (&self.path, self.cache.get_data()) else {
            return;
        };
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                crate::atomic_file::write_atomically(path, &data).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            log::warn!("pipeline cache not saved to {}: {e}", path.display());
        }
    }
}

/// An opened GPU device with its queue, limits and pipeline cache.
#[derive(Clone)]
pub struct Device {
    shared: Arc<DeviceShared>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.shared.info.name)
    }
}

/// Rank of an adapter type in automatic choice: lower is preferred.
fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Rank of a backend among adapters of the same type: native compute APIs before GL.
fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    }
}

impl Device {
    /// Opens the default device: `Backend::Auto`, honouring `EIGENGRAD_BACKEND`, then
    /// `WGPU_BACKEND`.
    pub fn new() -> Result<Device> {
        Device::with_options(&DeviceOptions::default())
    }

    /// Opens a device as `options` ask.
    pub fn with_options(options: &DeviceOptions) -> Result<Device> {
        let backend = options.backend.resolve()?;
        // Auto looks at the native compute APIs first and opens GL only when none has an
        // adapter (probing GL starts EGL, which is slow and noisy on headless machines).
        let tiers = match backend {
            Backend::Auto => vec![wgpu::Backends::PRIMARY, wgpu::Backends::GL],
            b => vec![b.wgpu_backends()],
        };
        let mut adapters = Vec::new();
        for backends in tiers {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = backends;
            if backends == wgpu::Backends::GL {
                // A context with compute shaders: GLES 3.1 (desktop GL contexts are 3.3 core,
                // which drivers upgrade to the newest they have; compute needs 4.3).
                desc.backend_options.gl.gles_minor_version = wgpu::Gles3MinorVersion::Version1;
                // wgpu validates indirect dispatches with a compute pipeline of its own, which
                // some GL drivers cannot build ("Parent device is lost" at request_device).
                // Our indirect arguments are written by our kernels, within bounds.
                desc.flags
                    .remove(wgpu::InstanceFlags::VALIDATION_INDIRECT_CALL);
            }
            let instance = wgpu::Instance::new(desc);
            adapters = pollster::block_on(instance.enumerate_adapters(backends));
            if !adapters.is_empty() {
                break;
            }
        }
        if let Some(name) = &options.adapter_name {
            let name = name.to_ascii_lowercase();
            adapters.retain(|a| a.get_info().name.to_ascii_lowercase().contains(&name));
        }
        let found = adapters.len();
        adapters.retain(|a| {
            let compute = wgpu::DownlevelFlags::COMPUTE_SHADERS;
            a.get_downlevel_capabilities().flags.contains(compute)
        });
        adapters.sort_by_key(|a| {
            let info = a.get_info();
            (type_rank(info.device_type), backend_rank(info.backend))
        });
        let Some(adapter) = adapters.into_iter().next() else {
            let for_backend = match backend {
                Backend::Auto => String::new(),
                b => format!(" for backend {b:?}"),
            };
            return Err(Error::NoAdapter {
                backend_hint: if found > 0 {
                    format!(
                        "{for_backend} with compute shaders ({found} adapter(s) lack them: \
                         GL needs OpenGL 4.3 or OpenGL ES 3.1)"
                    )
                } else {
                    for_backend
                },
            });
        };
        Device::from_adapter(adapter)
    }

    fn from_adapter(adapter: wgpu::Adapter) -> Result<Device> {
        let adapter_info = adapter.get_info();
        let limits = adapter.limits();
        let timestamps =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let features = adapter.features()
            & (timestamps | wgpu::Features::PIPELINE_CACHE | wgpu::Features::SUBGROUP);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("eigengrad"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Device(format!("request_device on {}: {e}", adapter_info.name)))?;

        let uncaptured = Arc::new(Mutex::new(HashMap::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("wgpu: {e}");
            let mut slots = sink.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .entry(std::thread::current().id())
                .or_insert_with(|| e.to_string());
        }));

        let info = DeviceInfo {
            name: adapter_info.name.clone(),
            backend: adapter_info.backend,
            device_type: adapter_info.device_type,
            driver: format!("{} {}", adapter_info.driver, adapter_info.driver_info)
                .trim()
                .to_string(),
            limits: DeviceLimits {
                max_buffer_size: limits.max_buffer_size,
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
                max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
                max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
                max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
            },
            timestamps: features.contains(timestamps),
            pipeline_cache: false,
            subgroup_sizes: features.contains(wgpu::Features::SUBGROUP).then_some((
                adapter_info.subgroup_min_size,
                adapter_info.subgroup_max_size,
            )),
        };
        let disk_cache = features
            .contains(wgpu::Features::PIPELINE_CACHE)
            .then(|| DiskPipelineCache::open(&device, &adapter_info))
            .flatten();
        let info = DeviceInfo {
            pipeline_cache: disk_cache.is_some(),
            ..info
        };
        log::info!("eigengrad device: {info}");
        Ok(Device {
            shared: Arc::new(DeviceShared {
                device,
                queue,
                info,
                pipelines: PipelineCache::default(),
                uncaptured,
                tuned: Mutex::new(HashMap::new()),
                disk_cache,
            }),
        })
    }

    /// Adapter name, backend, device type, driver and the limits in force.
    pub fn info(&self) -> &DeviceInfo {
        &self.shared.info
    }

    /// True when both handles refer to the same opened device.
    pub fn same_as(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The underlying wgpu device, for users who add their own kernels.
    pub fn wgpu_device(&self) -> &wgpu::Device {
        &self.shared.device
    }

    /// The underlying wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.shared.queue
    }

    /// How many compute pipelines this device has built so far. Pipelines are built once per
    /// kernel (shader, entry point, override values); a steady training loop must leave this
    /// number unchanged.
    pub fn pipelines_created(&self) -> usize {
        self.shared.pipelines.created()
    }

    /// The cached pipeline of kernel `id`, whose source is `shader`, built on first use (and
    /// saved to the driver's disk cache where the backend has one).
    pub(crate) fn pipeline(&self, shader: &Shader, id: KernelId) -> Arc<wgpu::ComputePipeline> {
        let _gl = self.gl_guard();
        let disk = self.shared.disk_cache.as_ref();
        self.shared.pipelines.get(
            &self.shared.device,
            shader,
            id,
            disk.map(|c| &c.cache),
            || {
                if let Some(c) = disk {
                    c.save();
                }
            },
        )
    }

    /// The group-0 bindings `shader` declares writable ([`Shader::writable_bindings`]), read
    /// once per device.
    pub(crate) fn writable_bindings(&self, shader: &Shader) -> Arc<[u32]> {
        self.shared.pipelines.writable_bindings(shader)
    }

    /// The variant of `kernel` that autotuning chose on this device, if it ran (in memory for
    /// the life of the device; see [`crate::kernels::autotune`]).
    pub fn tuned_variant(&self, kernel: &str) -> Option<String> {
        let tuned = self.shared.tuned.lock().unwrap_or_else(|p| p.into_inner());
        tuned.get(kernel).cloned()
    }

    /// Records `variant` as the autotuned choice of `kernel` on this device; kernels built
    /// afterwards use it (also a way to force a variant, e.g. `("matmul-small", "Skinny")`).
    pub fn set_tuned_variant(&self, kernel: &str, variant: &str) {
        let mut tuned = self.shared.tuned.lock().unwrap_or_else(|p| p.into_inner());
        tuned.insert(kernel.to_string(), variant.to_string());
    }

    /// Waits for all submitted work and returns the first device error this thread raised
    /// since its last check.
    pub fn synchronize(&self) -> Result<()> {
        let _gl = self.gl_guard();
        self.shared
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| Error::Device(format!("poll: {e}")))?;
        self.take_error()
    }

    /// Serialises this thread's use of a GL device against other threads' (see
    /// `gl_lock`); `None` on other backends. Held around every creation, submission, poll,
    /// mapping and release of device resources.
    pub(crate) fn gl_guard(&self) -> crate::gl_lock::GlGuard {
        crate::gl_lock::lock(self.is_gl())
    }

    /// True on wgpu's GL backend.
    pub(crate) fn is_gl(&self) -> bool {
        self.shared.info.backend == wgpu::Backend::Gl
    }

    /// Returns (and clears) the first device error raised by this thread's calls since its
    /// last check, if any. Errors raised by other threads stay theirs.
    pub fn take_error(&self) -> Result<()> {
        let mut slots = self
            .shared
            .uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match slots.remove(&std::thread::current().id()) {
            Some(msg) => Err(Error::Device(msg)),
            None => Ok(()),
        }
    }

    /// Checks that a buffer of `bytes` fits both the buffer and the storage-binding limits.
    pub fn check_buffer_size(&self, what: &str, bytes: u64) -> Result<()> {
        let l = &self.shared.info.limits;
        let too_large = |limit_name, limit| Error::TooLarge {
            what: what.to_string(),
            requested: bytes,
            limit_name,
            limit,
        };
        if bytes > l.max_buffer_size {
            return Err(too_large("max_buffer_size (bytes)", l.max_buffer_size));
        }
        if bytes > l.max_storage_buffer_binding_size {
            return Err(too_large(
                "max_storage_buffer_binding_size (bytes)",
                l.max_storage_buffer_binding_size,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Backend, Error};

    /// `Auto` resolved with the given `EIGENGRAD_BACKEND` and `WGPU_BACKEND` values.
    fn auto(eigengrad: Option<&str>, wgpu: Option<&str>) -> crate::Result<Backend> {
        Backend::Auto.resolve_with(eigengrad, wgpu)
    }

    fn invalid_argument(result: crate::Result<Backend>) -> String {
        match result {
            Err(Error::InvalidArgument(message)) => message,
            other => panic!("expected Error::InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn explicit_backend_ignores_the_environment() {
        for (eigengrad, wgpu) in [(Some("gl"), Some("metal")), (Some("nonsense"), None)] {
            assert_eq!(
                Backend::Vulkan.resolve_with(eigengrad, wgpu).unwrap(),
                Backend::Vulkan
            );
        }
    }

    #[test]
    fn eigengrad_backend_takes_precedence_over_wgpu_backend() {
        assert_eq!(auto(Some("gl"), Some("vulkan")).unwrap(), Backend::Gl);
        assert_eq!(auto(Some("DX12"), None).unwrap(), Backend::Dx12);
        // `auto` there is a choice too: WGPU_BACKEND is not consulted.
        assert_eq!(auto(Some("auto"), Some("metal")).unwrap(), Backend::Auto);
        // Set but empty counts as unset.
        assert_eq!(auto(Some(" "), Some("metal")).unwrap(), Backend::Metal);
    }

    #[test]
    fn wgpu_backend_alone_chooses_with_wgpu_spellings() {
        assert_eq!(auto(None, None).unwrap(), Backend::Auto);
        assert_eq!(auto(None, Some("")).unwrap(), Backend::Auto);
        assert_eq!(auto(None, Some("vk")).unwrap(), Backend::Vulkan);
        assert_eq!(auto(None, Some("Metal")).unwrap(), Backend::Metal);
        assert_eq!(auto(None, Some("d3d12")).unwrap(), Backend::Dx12);
        assert_eq!(auto(None, Some(" gles ")).unwrap(), Backend::Gl);
        // A list that names one backend, however spelt, is that backend.
        assert_eq!(auto(None, Some("gl,opengl,")).unwrap(), Backend::Gl);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let message = invalid_argument(auto(Some("cuda"), Some("vulkan")));
        assert!(message.starts_with("EIGENGRAD_BACKEND:"), "{message}");
        assert!(message.contains("unknown backend"), "{message}");
        let message = invalid_argument(auto(None, Some("vulkan,webgpu")));
        assert!(message.starts_with("WGPU_BACKEND:"), "{message}");
        assert!(message.contains("\"webgpu\""), "{message}");
        let message = invalid_argument(auto(None, Some("vulkan,gl")));
        assert!(message.contains("more than one backend"), "{message}");
        assert!(message.contains("EIGENGRAD_BACKEND"), "{message}");
    }
}
