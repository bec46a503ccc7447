//! Shaders, typed kernel definitions and the per-device cache of compute pipelines.
//!
//! A [`Kernel`] is one entry point of one [`Shader`], its workgroup size, the values of the
//! WGSL `override` constants it is specialised with, and — as its type parameter — the
//! [`Params`] struct it reads from the uniform at binding 0. Its [`KernelId`] (shader, entry,
//! override values) keys the pipeline cache a [`Device`](crate::Device) owns: one
//! pipeline per distinct kernel and device, built on first use.
//!
//! Variants of a kernel are override values, not edited source text: the same shader module
//! compiles once and each set of override values makes its own pipeline.
//!
//! A `Params` struct is declared with [`wgsl_params!`](crate::wgsl_params), which also lists
//! its fields (name, scalar type, offset, size); `tests/kernel_contracts.rs` parses every
//! shader with naga and checks that list, the workgroup sizes and the overrides against the
//! WGSL, so that the two sides cannot drift apart silently.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A WGSL source compiled into the crate, with a name unique among the crate's shaders (the
/// shader-module cache key).
#[derive(Debug)]
pub struct Shader {
    /// Unique name of the shader.
    pub name: &'static str,
    /// Whether the shader uses subgroup operations (`subgroupShuffle`, `subgroup_size`, …):
    /// it then compiles only on a device with wgpu's `SUBGROUP` feature
    /// ([`DeviceInfo::subgroup_sizes`](crate::device::DeviceInfo::subgroup_sizes)), and a
    /// launch of it elsewhere is an error rather than a failed pipeline.
    pub subgroups: bool,
    /// The WGSL text.
    pub source: &'static str,
}

impl Shader {
    /// The binding numbers of group 0 that the module declares as writable storage
    /// (`var<storage, read_write>`), read from the source text; `tests/kernel_contracts.rs`
    /// checks the scan against naga's parse of every shader.
    pub fn writable_bindings(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (at, _) in self.source.match_indices("@binding(") {
            let rest = &self.source[at + "@binding(".len()..];
            let Some((number, decl)) = rest.split_once(')') else {
                continue;
            };
            let decl = decl.split(';').next().unwrap_or_default();
            let compact: String = decl.chars().filter(|c| !c.is_whitespace()).collect();
            if let (Ok(binding), true) = (
                number.trim().parse::<u32>(),
                compact.starts_with("var<storage,read_write>"),
            ) {
                out.push(binding);
            }
        }
        out
    }
}

/// A WGSL scalar value: of an `override` constant, or of a `const` that Rust mirrors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarValue {
    /// `bool`.
    Bool(bool),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `f32`, stored as its bits so that values compare and hash exactly.
    F32Bits(u32),
}

impl ScalarValue {
    /// An `f32` value.
    pub const fn f32(v: f32) -> ScalarValue {
        ScalarValue::F32Bits(v.to_bits())
    }

    /// The value as wgpu passes pipeline constants (every WGSL scalar converts exactly).
    pub fn as_f64(self) -> f64 {
        match self {
            ScalarValue::Bool(b) => f64::from(u8::from(b)),
            ScalarValue::U32(v) => f64::from(v),
            ScalarValue::I32(v) => f64::from(v),
            ScalarValue::F32Bits(bits) => f64::from(f32::from_bits(bits)),
        }
    }

    /// The WGSL type of the value.
    pub fn scalar_type(self) -> ScalarType {
        match self {
            ScalarValue::Bool(_) => ScalarType::Bool,
            ScalarValue::U32(_) => ScalarType::U32,
            ScalarValue::I32(_) => ScalarType::I32,
            ScalarValue::F32Bits(_) => ScalarType::F32,
        }
    }
}

/// The value of one WGSL `override` constant, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Override {
    /// The constant's WGSL identifier.
    pub name: &'static str,
    /// Its value for this kernel.
    pub value: ScalarValue,
}

impl Override {
    /// A `u32` override.
    pub const fn u32(name: &'static str, value: u32) -> Override {
        Override {
            name,
            value: ScalarValue::U32(value),
        }
    }
}

/// The WGSL scalar types a [`Params`] field may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarType {
    /// `bool` (only for override constants: uniforms cannot hold it).
    Bool,
    /// `u32`.
    U32,
    /// `i32`.
    I32,
    /// `f32`.
    F32,
}

/// A Rust type that stands for a WGSL scalar in a [`Params`] struct.
pub trait WgslScalar: bytemuck::Pod {
    /// The WGSL type.
    const TYPE: ScalarType;
}

impl WgslScalar for u32 {
    const TYPE: ScalarType = ScalarType::U32;
}

impl WgslScalar for i32 {
    const TYPE: ScalarType = ScalarType::I32;
}

impl WgslScalar for f32 {
    const TYPE: ScalarType = ScalarType::F32;
}

/// One field of a [`Params`] struct as the WGSL struct must declare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name (the same on both sides).
    pub name: &'static str,
    /// Scalar type.
    pub ty: ScalarType,
    /// Byte offset in the struct.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

/// A uniform parameter block a kernel reads at `@group(0) @binding(0)`: a `#[repr(C)]`
/// plain-old-data struct whose field list mirrors the WGSL struct. Declare it with
/// [`wgsl_params!`](crate::wgsl_params), or list the fields of an existing struct with
/// [`impl_params!`](crate::impl_params).
pub trait Params: bytemuck::Pod {
    /// The fields in declaration order.
    const FIELDS: &'static [Field];
}

/// The WGSL type of the field that `field` selects (used by [`impl_params!`](crate::impl_params)).
pub const fn field_type<S, T: WgslScalar>(_field: fn(&S) -> &T) -> ScalarType {
    T::TYPE
}

/// The size of the field that `field` selects (used by [`impl_params!`](crate::impl_params)).
pub const fn field_size<S, T: WgslScalar>(_field: fn(&S) -> &T) -> usize {
    std::mem::size_of::<T>()
}

/// Implements [`Params`] for an existing `#[repr(C)]` plain-old-data struct from the names of
/// its fields, in declaration order (their types and offsets are read from the struct).
///
/// ```
/// #[repr(C)]
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// struct Sizes {
///     n: u32,
///     alpha: f32,
/// }
/// eigengrad::impl_params!(Sizes { n, alpha });
/// use eigengrad::pipeline::{Params, ScalarType};
/// assert_eq!(Sizes::FIELDS[1].ty, ScalarType::F32);
/// assert_eq!(Sizes::FIELDS[1].offset, 4);
/// ```
#[macro_export]
macro_rules! impl_params {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl $crate::pipeline::Params for $name {
            const FIELDS: &'static [$crate::pipeline::Field] = &[$(
                $crate::pipeline::Field {
                    name: stringify!($field),
                    ty: $crate::pipeline::field_type(|p: &$name| &p.$field),
                    offset: ::core::mem::offset_of!($name, $field),
                    size: $crate::pipeline::field_size(|p: &$name| &p.$field),
                }
            ),*];
        }
    };
}

/// Declares a [`Params`] struct: `#[repr(C)]`, plain old data, with its field list for the
/// contract test. Fields must be `u32`, `i32` or `f32`.
///
/// ```
/// eigengrad::wgsl_params! {
///     /// Sizes of a launch.
///     pub struct MyParams {
///         /// Element count.
///         pub n: u32,
///         /// A factor.
///         pub alpha: f32,
///     }
/// }
/// use eigengrad::pipeline::Params;
/// assert_eq!(MyParams::FIELDS[1].name, "alpha");
/// assert_eq!(MyParams { n: 3, alpha: 0.5 }.n, 3);
/// ```
#[macro_export]
macro_rules! wgsl_params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),*
        }

        $crate::impl_params!($name { $($field),* });
    };
}

/// What identifies a compiled pipeline: shader, entry point and override values. Two kernels
/// with equal ids share one pipeline on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelId {
    /// [`Shader::name`].
    pub shader: &'static str,
    /// The entry point.
    pub entry: &'static str,
    /// The override constants, in the order the kernel lists them.
    pub overrides: &'static [Override],
}

/// A kernel without its parameter type: what the pipeline cache and the contract test need.
#[derive(Clone, Copy, Debug)]
pub struct KernelSpec {
    /// The shader holding the entry point.
    pub shader: &'static Shader,
    /// The entry point's name.
    pub entry: &'static str,
    /// The workgroup size the entry point declares (Rust sizes its dispatches with it).
    pub workgroup_size: [u32; 3],
    /// Values of WGSL `override` constants this kernel is compiled with.
    pub overrides: &'static [Override],
    /// The fields of the uniform at binding 0.
    pub params: &'static [Field],
    /// The size in bytes of the Rust parameter struct.
    pub params_size: usize,
}

impl KernelSpec {
    /// The pipeline-cache key.
    pub fn id(&self) -> KernelId {
        KernelId {
            shader: self.shader.name,
            entry: self.entry,
            overrides: self.overrides,
        }
    }

    /// Invocations per workgroup.
    pub fn invocations(&self) -> u32 {
        self.workgroup_size.iter().product()
    }
}

/// A typed kernel: one entry point of one shader with its workgroup size and override
/// values, reading parameters of type `P`. Declared as a `const` next to its shader and
/// launched with `Kernel::dispatch` (see [`crate::kernels`]).
pub struct Kernel<P> {
    spec: KernelSpec,
    params: PhantomData<fn(&P)>,
}

impl<P> Clone for Kernel<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Kernel<P> {}

impl<P> std::fmt::Debug for Kernel<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kernel({}::{})", self.spec.shader.name, self.spec.entry)
    }
}

impl<P: Params> Kernel<P> {
    /// `entry` of `shader`, declared in WGSL with `@workgroup_size(x, y, z)`.
    pub const fn new(
        shader: &'static Shader,
        entry: &'static str,
        workgroup_size: [u32; 3],
    ) -> Self {
        Kernel {
            spec: KernelSpec {
                shader,
                entry,
                workgroup_size,
                overrides: &[],
                params: P::FIELDS,
                params_size: std::mem::size_of::<P>(),
            },
            params: PhantomData,
        }
    }

    /// The same kernel compiled with these `override` values: another pipeline.
    pub const fn with_overrides(mut self, overrides: &'static [Override]) -> Self {
        self.spec.overrides = overrides;
        self
    }
}

impl<P> Kernel<P> {
    /// The kernel without its parameter type.
    pub const fn spec(&self) -> KernelSpec {
        self.spec
    }
}

/// A constant that a shader and Rust both declare (status bits, tile sizes, mode ids): the
/// contract test checks that the WGSL `const` has this value.
#[derive(Clone, Copy, Debug)]
pub struct SharedConstant {
    /// The shader declaring it.
    pub shader: &'static Shader,
    /// The WGSL identifier.
    pub name: &'static str,
    /// The value Rust relies on.
    pub value: ScalarValue,
}

impl SharedConstant {
    /// A `u32` constant `name` of `shader`.
    pub const fn u32(shader: &'static Shader, name: &'static str, value: u32) -> SharedConstant {
        SharedConstant {
            shader,
            name,
            value: ScalarValue::U32(value),
        }
    }
}

/// Compiled shader modules and compute pipelines of one device, each built once.
#[derive(Default)]
pub(crate) struct PipelineCache {
    /// Shader modules by shader name.
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    /// Pipelines by kernel id.
    pipelines: Mutex<HashMap<KernelId, Arc<wgpu::ComputePipeline>>>,
    /// The writable bindings of each shader, by shader name.
    writable: Mutex<HashMap<&'static str, Arc<[u32]>>>,
    /// How many pipelines were built.
    created: AtomicUsize,
}

impl PipelineCache {
    /// How many pipelines this cache has built.
    pub(crate) fn created(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }

    /// [`Shader::writable_bindings`] of `shader`, read once.
    pub(crate) fn writable_bindings(&self, shader: &Shader) -> Arc<[u32]> {
        let mut writable = self.writable.lock().unwrap_or_else(|p| p.into_inner());
        writable
            .entry(shader.name)
            .or_insert_with(|| shader.writable_bindings().into())
            .clone()
    }

    /// The pipeline of `id` (whose source is `shader`), built on first use — through the
    /// driver's pipeline cache `disk` where the backend has one, calling `built` after a build
    /// (to save that cache).
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        shader: &Shader,
        id: KernelId,
        disk: Option<&wgpu::PipelineCache>,
        built: impl FnOnce(),
    ) -> Arc<wgpu::ComputePipeline> {
        let mut pipelines = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pipelines.get(&id) {
            return p.clone();
        }
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let module = modules.entry(shader.name).or_insert_with(|| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(shader.source.into()),
            })
        });
        let constants: Vec<(&str, f64)> = id
            .overrides
            .iter()
            .map(|o| (o.name, o.value.as_f64()))
            .collect();
        let pipeline = Arc::new(
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(id.entry),
                layout: None,
                module,
                entry_point: Some(id.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    ..Default::default()
                },
                cache: disk,
            }),
        );
        built();
        self.created.fetch_add(1, Ordering::Relaxed);
        log::debug!("built pipeline {id:?}");
        pipelines.insert(id, pipeline.clone());
        pipeline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::run;
    use crate::tensor::read_words;
    use crate::Device;

    const PROBE: Shader = Shader {
        name: "pipeline_cache_probe",
        subgroups: false,
        source: "
            struct Params { value: u32 }
            @group(0) @binding(0) var<uniform> p: Params;
            @group(0) @binding(1) var<storage, read_write> out: array<u32>;
            override OFFSET: u32;
            override LARGE: bool = false;
            @compute @workgroup_size(1)
            fn write() { out[0] = p.value + OFFSET + select(0u, 1000u, LARGE); }
        ",
    };

    crate::wgsl_params! {
        struct ProbeParams {
            value: u32,
        }
    }

    const BASE: Kernel<ProbeParams> = Kernel::new(&PROBE, "write", [1, 1, 1]);
    const PLUS_7: Kernel<ProbeParams> = BASE.with_overrides(&[Override::u32("OFFSET", 7)]);
    const PLUS_7_AGAIN: Kernel<ProbeParams> = BASE.with_overrides(&[Override::u32("OFFSET", 7)]);
    const PLUS_9: Kernel<ProbeParams> = BASE.with_overrides(&[Override::u32("OFFSET", 9)]);
    const PLUS_1007: Kernel<ProbeParams> = BASE.with_overrides(&[
        Override::u32("OFFSET", 7),
        Override {
            name: "LARGE",
            value: ScalarValue::Bool(true),
        },
    ]);

    #[test]
    fn the_id_is_shader_entry_and_override_values() {
        assert_eq!(PLUS_7.spec().id(), PLUS_7_AGAIN.spec().id());
        assert_ne!(PLUS_7.spec().id(), PLUS_9.spec().id());
        assert_ne!(PLUS_7.spec().id(), PLUS_1007.spec().id());
        assert_ne!(PLUS_7.spec().id(), BASE.spec().id());
        assert_eq!(PLUS_7.spec().invocations(), 1);
        assert_eq!(
            ProbeParams::FIELDS,
            &[Field {
                name: "value",
                ty: ScalarType::U32,
                offset: 0,
                size: 4
            }]
        );
    }

    #[test]
    fn scalar_values_convert_exactly() {
        assert_eq!(ScalarValue::Bool(true).as_f64(), 1.0);
        assert_eq!(ScalarValue::U32(u32::MAX).as_f64(), u32::MAX as f64);
        assert_eq!(ScalarValue::I32(-5).as_f64(), -5.0);
        assert_eq!(ScalarValue::f32(0.1).as_f64(), 0.1f32 as f64);
        assert_eq!(ScalarValue::f32(0.1).scalar_type(), ScalarType::F32);
    }

    /// Runs `kernel` on a fresh one-word buffer with `value` and reads the word back.
    fn launch(device: &Device, kernel: &Kernel<ProbeParams>, value: u32) -> u32 {
        let out = device.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("probe"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let d = kernel
            .dispatch(device, &ProbeParams { value }, &[&out], [1, 1, 1])
            .unwrap();
        run(device, &[&d]).unwrap();
        read_words(device, &out, 1).unwrap()[0]
    }

    #[test]
    fn one_pipeline_per_override_values_and_the_values_reach_the_shader() {
        // A device of its own, so that no other test builds pipelines on it meanwhile.
        let device = Device::new().unwrap();
        let start = device.pipelines_created();
        assert_eq!(launch(&device, &PLUS_7, 5), 12);
        assert_eq!(device.pipelines_created(), start + 1);
        // The same kernel, and an equal one declared separately: the cached pipeline.
        assert_eq!(launch(&device, &PLUS_7, 6), 13);
        assert_eq!(launch(&device, &PLUS_7_AGAIN, 1), 8);
        assert_eq!(device.pipelines_created(), start + 1);
        // Other override values: another pipeline each, from the same shader module.
        assert_eq!(launch(&device, &PLUS_9, 5), 14);
        assert_eq!(device.pipelines_created(), start + 2);
        assert_eq!(launch(&device, &PLUS_1007, 5), 1012);
        assert_eq!(device.pipelines_created(), start + 3);
        assert_eq!(launch(&device, &PLUS_9, 0), 9);
        assert_eq!(device.pipelines_created(), start + 3);
    }
}
