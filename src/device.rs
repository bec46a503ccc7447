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

/// Which wgpu backend to run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The best adapter of any backend: discrete GPU, then integrated, then others, CPU last.
    /// The environment variable `EIGENGRAD_BACKEND` narrows it to one backend.
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

    /// The backend asked for, after `EIGENGRAD_BACKEND` has been applied to `Auto`.
    pub fn resolve(self) -> Result<Backend> {
        match (self, std::env::var("EIGENGRAD_BACKEND")) {
            (Backend::Auto, Ok(name)) => Backend::parse(&name),
            (b, _) => Ok(b),
        }
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
    /// Which backend; `Auto` honours `EIGENGRAD_BACKEND`.
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
             workgroup memory {} KiB, {} invocations/workgroup, timestamps {}",
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            l.max_buffer_size >> 20,
            l.max_storage_buffer_binding_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            if self.timestamps { "yes" } else { "no" }
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
    /// The first uncaptured wgpu error, returned at the next synchronisation point.
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Kernel variants chosen by autotuning, by kernel name (see `kernels::autotune`).
    tuned: Mutex<HashMap<String, String>>,
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
    /// Opens the default device: `Backend::Auto`, honouring `EIGENGRAD_BACKEND`.
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
        adapters.sort_by_key(|a| {
            let info = a.get_info();
            (type_rank(info.device_type), backend_rank(info.backend))
        });
        let Some(adapter) = adapters.into_iter().next() else {
            return Err(Error::NoAdapter {
                backend_hint: match backend {
                    Backend::Auto => String::new(),
                    b => format!(" for backend {b:?}"),
                },
            });
        };
        Device::from_adapter(adapter)
    }

    fn from_adapter(adapter: wgpu::Adapter) -> Result<Device> {
        let adapter_info = adapter.get_info();
        let limits = adapter.limits();
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let features = adapter.features() & wanted;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("eigengrad"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Device(format!("request_device on {}: {e}", adapter_info.name)))?;

        let uncaptured = Arc::new(Mutex::new(None::<String>));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("wgpu: {e}");
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
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
            timestamps: features.contains(wanted),
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

    /// The cached pipeline of kernel `id`, whose source is `shader`, built on first use.
    pub(crate) fn pipeline(&self, shader: &Shader, id: KernelId) -> Arc<wgpu::ComputePipeline> {
        self.shared.pipelines.get(&self.shared.device, shader, id)
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

    /// Waits for all submitted work and returns the first device error since the last check.
    pub fn synchronize(&self) -> Result<()> {
        self.shared
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| Error::Device(format!("poll: {e}")))?;
        self.take_error()
    }

    /// Returns (and clears) the first uncaptured device error, if any.
    pub fn take_error(&self) -> Result<()> {
        let mut slot = self
            .shared
            .uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match slot.take() {
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
