//! The contracts between the Rust side of the kernels and their WGSL, checked with naga (the
//! WGSL front end wgpu itself uses), without a GPU:
//! - every shader in `shaders/` parses and validates (the Jacobi files as parts of the shaders
//!   the solver composes from them), and every one has a contract;
//! - every kernel the crate declares (`kernels::contracts`): its entry point exists and is a
//!   compute shader, its workgroup size (with its override values applied, where overrides
//!   set it) is the one Rust sizes dispatches with, its override constants exist with the
//!   type Rust gives them and every override without a default is set, and its Rust parameter
//!   struct matches the WGSL struct at `@group(0) @binding(0)` field by field (name, type,
//!   offset, size) and in total size;
//! - the constants both sides declare (status bits, tile sizes, mode ids, workgroup sizes).
//!
//! A check that accepts a mismatch proves nothing, so the same checker is run on deliberately
//! broken contracts at the end, and must reject each of them.

use eigengrad::kernels::contracts::contracts;
use eigengrad::pipeline::{
    Field, KernelSpec, Override, ScalarType, ScalarValue, Shader, SharedConstant,
};
use naga::proc::Layouter;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, Expression, Literal, Module, ScalarKind, ShaderStage, TypeInner};
use std::collections::HashMap;
use std::path::PathBuf;

/// A parsed, validated module and the layouts of its types.
struct Parsed {
    module: Module,
    layouter: Layouter,
}

/// Parses and validates `source` with naga's default capabilities; the error names `what`
/// and shows naga's diagnostic.
fn parse(what: &str, source: &str) -> Result<Parsed, String> {
    parse_with(what, source, false)
}

/// Parses and validates a shader with the capabilities it declares: subgroup operations only
/// where [`Shader::subgroups`] says it uses them (the device requests them only then).
fn parse_shader(shader: &Shader) -> Result<Parsed, String> {
    parse_with(shader.name, shader.source, shader.subgroups)
}

/// [`parse`], with subgroup operations allowed when `subgroups`.
fn parse_with(what: &str, source: &str, subgroups: bool) -> Result<Parsed, String> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{what}: {}", e.emit_to_string(source)))?;
    let capabilities = if subgroups {
        Capabilities::default() | Capabilities::SUBGROUP
    } else {
        Capabilities::default()
    };
    Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .map_err(|e| format!("{what}: invalid: {e:?}"))?;
    let mut layouter = Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| format!("{what}: layout: {e:?}"))?;
    Ok(Parsed { module, layouter })
}

/// The contract-side name of a naga scalar type, if it is one the contracts use.
fn scalar_type(module: &Module, ty: naga::Handle<naga::Type>) -> Option<ScalarType> {
    match module.types[ty].inner {
        TypeInner::Scalar(s) => match (s.kind, s.width) {
            (ScalarKind::Uint, 4) => Some(ScalarType::U32),
            (ScalarKind::Sint, 4) => Some(ScalarType::I32),
            (ScalarKind::Float, 4) => Some(ScalarType::F32),
            (ScalarKind::Bool, _) => Some(ScalarType::Bool),
            _ => None,
        },
        _ => None,
    }
}

/// Checks `fields` and `size` against the struct of the uniform at group 0, binding 0.
fn check_params(p: &Parsed, fields: &[Field], size: usize) -> Result<(), String> {
    let module = &p.module;
    let global = module
        .global_variables
        .iter()
        .map(|(_, g)| g)
        .find(|g| {
            g.binding
                .as_ref()
                .is_some_and(|b| b.group == 0 && b.binding == 0)
        })
        .ok_or("no variable at @group(0) @binding(0)")?;
    if global.space != AddressSpace::Uniform {
        return Err(format!("binding 0 is in {:?}, not uniform", global.space));
    }
    let TypeInner::Struct { members, span } = &module.types[global.ty].inner else {
        return Err("binding 0 is not a struct".into());
    };
    let wgsl: Vec<String> = members
        .iter()
        .map(|m| m.name.clone().unwrap_or_default())
        .collect();
    let rust: Vec<&str> = fields.iter().map(|f| f.name).collect();
    if wgsl != rust {
        return Err(format!("fields differ: WGSL {wgsl:?}, Rust {rust:?}"));
    }
    for (m, f) in members.iter().zip(fields) {
        let ty = scalar_type(module, m.ty);
        let wgsl_size = p.layouter[m.ty].size as usize;
        if ty != Some(f.ty) || m.offset as usize != f.offset || wgsl_size != f.size {
            return Err(format!(
                "field {}: WGSL {ty:?} at offset {} ({wgsl_size} bytes), Rust {:?} at offset {} \
                 ({} bytes)",
                f.name, m.offset, f.ty, f.offset, f.size
            ));
        }
    }
    if *span as usize != size {
        return Err(format!("struct size: WGSL {span} bytes, Rust {size}"));
    }
    Ok(())
}

/// Checks one kernel against its parsed shader.
fn check_kernel(p: &Parsed, k: &KernelSpec) -> Result<(), String> {
    let module = &p.module;
    let entry = module
        .entry_points
        .iter()
        .find(|e| e.name == k.entry)
        .ok_or_else(|| format!("no entry point {:?}", k.entry))?;
    if entry.stage != ShaderStage::Compute {
        return Err(format!("{:?} is a {:?} entry point", k.entry, entry.stage));
    }
    let workgroup_size = match entry.workgroup_size_overrides {
        None => entry.workgroup_size,
        Some(_) => resolved_workgroup_size(module, k)?,
    };
    if workgroup_size != k.workgroup_size {
        return Err(format!(
            "workgroup size: WGSL {workgroup_size:?}, Rust {:?}",
            k.workgroup_size
        ));
    }
    let overrides: HashMap<&str, &naga::Override> = module
        .overrides
        .iter()
        .filter_map(|(_, o)| Some((o.name.as_deref()?, o)))
        .collect();
    for (i, o) in k.overrides.iter().enumerate() {
        let declared = overrides
            .get(o.name)
            .ok_or_else(|| format!("no override constant {:?}", o.name))?;
        let ty = scalar_type(module, declared.ty);
        if ty != Some(o.value.scalar_type()) {
            return Err(format!(
                "override {}: WGSL {ty:?}, Rust {:?}",
                o.name, o.value
            ));
        }
        if k.overrides[..i]
            .iter()
            .any(|earlier| earlier.name == o.name)
        {
            return Err(format!("override {} given twice", o.name));
        }
    }
    for (name, o) in &overrides {
        if o.init.is_none() && !k.overrides.iter().any(|given| given.name == *name) {
            return Err(format!("override {name} has no default and is not set"));
        }
    }
    check_params(p, k.params, k.params_size)
}

/// The workgroup size of `k`'s entry point once `k`'s override values are applied, as wgpu
/// applies them when it builds the pipeline.
fn resolved_workgroup_size(module: &Module, k: &KernelSpec) -> Result<[u32; 3], String> {
    let info = Validator::new(ValidationFlags::all(), Capabilities::default())
        .validate(module)
        .map_err(|e| format!("invalid: {e:?}"))?;
    let mut constants = naga::back::PipelineConstants::default();
    for o in k.overrides {
        constants.insert(o.name.to_string(), o.value.as_f64());
    }
    let (resolved, _) = naga::back::pipeline_constants::process_overrides(
        module,
        &info,
        Some((ShaderStage::Compute, k.entry)),
        &constants,
    )
    .map_err(|e| format!("applying the overrides {:?}: {e:?}", k.overrides))?;
    let entry = resolved
        .entry_points
        .iter()
        .find(|e| e.name == k.entry)
        .ok_or_else(|| format!("no entry point {:?} once resolved", k.entry))?;
    Ok(entry.workgroup_size)
}

/// Checks that the WGSL `const` of a shared constant has Rust's value.
fn check_constant(p: &Parsed, c: &SharedConstant) -> Result<(), String> {
    let module = &p.module;
    let (_, constant) = module
        .constants
        .iter()
        .find(|(_, k)| k.name.as_deref() == Some(c.name))
        .ok_or_else(|| format!("no const {}", c.name))?;
    let value = match module.global_expressions[constant.init] {
        Expression::Literal(Literal::U32(v)) => ScalarValue::U32(v),
        Expression::Literal(Literal::I32(v)) => ScalarValue::I32(v),
        Expression::Literal(Literal::F32(v)) => ScalarValue::f32(v),
        Expression::Literal(Literal::Bool(v)) => ScalarValue::Bool(v),
        ref other => {
            return Err(format!(
                "const {} is not a scalar literal: {other:?}",
                c.name
            ))
        }
    };
    if value != c.value {
        return Err(format!(
            "const {}: WGSL {value:?}, Rust {:?}",
            c.name, c.value
        ));
    }
    Ok(())
}

/// Parses each distinct shader once, by name.
#[derive(Default)]
struct Shaders(HashMap<&'static str, Parsed>);

impl Shaders {
    fn get(&mut self, shader: &'static Shader) -> Result<&Parsed, String> {
        if !self.0.contains_key(shader.name) {
            let parsed = parse_shader(shader)?;
            self.0.insert(shader.name, parsed);
        }
        Ok(&self.0[shader.name])
    }
}

/// Runs `check` on every item, returning one line per failure.
fn failures<T>(
    items: &[T],
    what: impl Fn(&T) -> String,
    mut check: impl FnMut(&T) -> Result<(), String>,
) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| check(item).err().map(|e| format!("{}: {e}", what(item))))
        .collect()
}

fn assert_none(failures: Vec<String>) {
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn shader_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders")
}

#[test]
fn every_shader_file_parses_validates_and_has_a_contract() {
    let c = contracts();
    let mut files: Vec<PathBuf> = std::fs::read_dir(shader_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "shaders found: {files:?}");
    let mut problems = Vec::new();
    for path in &files {
        let file = path.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        // Every file is compiled: on its own as the source of a kernel, or as a part of the
        // source of a kernel (the Jacobi and matmul shaders, composed from a common file and
        // their own, are checked whole by `kernels_match_their_wgsl`).
        let whole = c.kernels.iter().find(|k| k.shader.source == text);
        let part = c.kernels.iter().any(|k| k.shader.source.contains(&text));
        if let Some(k) = whole {
            if let Err(e) = parse_with(file, &text, k.shader.subgroups) {
                problems.push(e);
            }
        }
        if !part {
            problems.push(format!("{file}: no kernel contract uses this shader"));
        }
    }
    assert_none(problems);
}

#[test]
fn kernels_match_their_wgsl() {
    let c = contracts();
    assert!(c.kernels.len() >= 30, "{} kernels", c.kernels.len());
    let mut shaders = Shaders::default();
    assert_none(failures(
        &c.kernels,
        |k| format!("{}::{}", k.shader.name, k.entry),
        |k| check_kernel(shaders.get(k.shader)?, k),
    ));
}

#[test]
fn shared_constants_match_their_wgsl() {
    let c = contracts();
    let mut shaders = Shaders::default();
    assert_none(failures(
        &c.constants,
        |k| format!("{}::{}", k.shader.name, k.name),
        |k| check_constant(shaders.get(k.shader)?, k),
    ));
    // The Jacobi status bits are distinct single bits.
    let bits: Vec<u32> = c
        .constants
        .iter()
        .filter(|k| k.shader.name == "jacobi_common")
        .map(|k| match k.value {
            ScalarValue::U32(v) => v,
            other => panic!("{}: {other:?}", k.name),
        })
        .collect();
    assert_eq!(bits.len(), 6);
    assert!(bits.iter().all(|b| b.is_power_of_two()), "{bits:?}");
    assert_eq!(bits.iter().fold(0, |acc, b| acc | b).count_ones(), 6);
}

/// What `Shader::writable_bindings` reads from the text (and the barrier count relies on) is
/// what naga parses: the group-0 storage bindings the shader may write.
#[test]
fn writable_bindings_are_read_as_naga_parses_them() {
    let c = contracts();
    let mut shaders = Shaders::default();
    let mut problems = Vec::new();
    for k in &c.kernels {
        let p = match shaders.get(k.shader) {
            Ok(p) => p,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let mut parsed: Vec<u32> = p
            .module
            .global_variables
            .iter()
            .filter_map(|(_, g)| match (g.space, &g.binding) {
                (AddressSpace::Storage { access }, Some(b))
                    if b.group == 0 && access.contains(naga::StorageAccess::STORE) =>
                {
                    Some(b.binding)
                }
                _ => None,
            })
            .collect();
        parsed.sort_unstable();
        let mut scanned = k.shader.writable_bindings();
        scanned.sort_unstable();
        if parsed != scanned {
            problems.push(format!(
                "{}: naga {parsed:?}, text scan {scanned:?}",
                k.shader.name
            ));
        }
    }
    assert_none(problems);
}

#[test]
fn kernels_and_shader_names_are_unique() {
    let c = contracts();
    let mut ids = HashMap::new();
    for k in &c.kernels {
        if let Some(previous) = ids.insert(k.id(), k.entry) {
            panic!(
                "two kernel definitions make the pipeline {:?} ({previous})",
                k.id()
            );
        }
    }
    let mut sources: HashMap<&str, &str> = HashMap::new();
    for s in c.kernels.iter().map(|k| k.shader) {
        let known = sources.entry(s.name).or_insert(s.source);
        assert_eq!(*known, s.source, "two shaders are called {}", s.name);
    }
}

// ---------------------------------------------------------------------------------------------
// The checker itself: a correct contract passes, and each kind of drift is caught.

const PROBE: Shader = Shader {
    name: "probe",
    subgroups: false,
    source: "
        struct Params { n: u32, alpha: f32, shift: i32 }
        @group(0) @binding(0) var<uniform> p: Params;
        @group(0) @binding(1) var<storage, read_write> y: array<f32>;
        const WG: u32 = 64u;
        override MODE: u32;
        override SCALE: f32 = 1.0;
        @compute @workgroup_size(WG, 2)
        fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
            if (gid.x < p.n) { y[gid.x] = p.alpha * SCALE + f32(p.shift + i32(MODE)); }
        }
    ",
};

const fn field(name: &'static str, ty: ScalarType, offset: usize) -> Field {
    Field {
        name,
        ty,
        offset,
        size: 4,
    }
}

const GOOD_FIELDS: &[Field] = &[
    field("n", ScalarType::U32, 0),
    field("alpha", ScalarType::F32, 4),
    field("shift", ScalarType::I32, 8),
];

const GOOD: KernelSpec = KernelSpec {
    shader: &PROBE,
    entry: "main",
    workgroup_size: [64, 2, 1],
    overrides: &[Override::u32("MODE", 3)],
    params: GOOD_FIELDS,
    params_size: 12,
};

const UNKNOWN_OVERRIDE: &[Override] = &[Override::u32("MODE", 0), Override::u32("OTHER", 1)];
const OVERRIDE_TWICE: &[Override] = &[Override::u32("MODE", 0), Override::u32("MODE", 1)];

#[test]
fn checker_accepts_a_true_contract_and_rejects_each_kind_of_drift() {
    let p = parse("probe", PROBE.source).unwrap();
    check_kernel(&p, &GOOD).unwrap();
    let with_scale = [
        Override::u32("MODE", 1),
        Override {
            name: "SCALE",
            value: ScalarValue::f32(2.0),
        },
    ];
    check_kernel(
        &p,
        &KernelSpec {
            overrides: Box::leak(Box::new(with_scale)),
            ..GOOD
        },
    )
    .unwrap();
    let wg = SharedConstant::u32(&PROBE, "WG", 64);
    check_constant(&p, &wg).unwrap();

    let leak = |fields: Vec<Field>| -> &'static [Field] { Box::leak(fields.into_boxed_slice()) };
    let swapped = leak(vec![
        field("alpha", ScalarType::F32, 0),
        field("n", ScalarType::U32, 4),
        field("shift", ScalarType::I32, 8),
    ]);
    let mistyped = leak(vec![
        field("n", ScalarType::U32, 0),
        field("alpha", ScalarType::F32, 4),
        field("shift", ScalarType::U32, 8),
    ]);
    let shifted = leak(vec![
        field("n", ScalarType::U32, 0),
        field("alpha", ScalarType::F32, 8),
        field("shift", ScalarType::I32, 8),
    ]);
    let missing = &GOOD_FIELDS[..2];
    let broken: Vec<(&str, KernelSpec)> = vec![
        (
            "swapped fields",
            KernelSpec {
                params: swapped,
                ..GOOD
            },
        ),
        (
            "wrong field type",
            KernelSpec {
                params: mistyped,
                ..GOOD
            },
        ),
        (
            "wrong offset",
            KernelSpec {
                params: shifted,
                ..GOOD
            },
        ),
        (
            "missing field",
            KernelSpec {
                params: missing,
                params_size: 8,
                ..GOOD
            },
        ),
        (
            "padded struct",
            KernelSpec {
                params_size: 16,
                ..GOOD
            },
        ),
        (
            "workgroup size",
            KernelSpec {
                workgroup_size: [64, 1, 1],
                ..GOOD
            },
        ),
        (
            "unknown entry",
            KernelSpec {
                entry: "nope",
                ..GOOD
            },
        ),
        (
            "required override unset",
            KernelSpec {
                overrides: &[],
                ..GOOD
            },
        ),
        (
            "unknown override",
            KernelSpec {
                overrides: UNKNOWN_OVERRIDE,
                ..GOOD
            },
        ),
        (
            "override type",
            KernelSpec {
                overrides: &[Override {
                    name: "MODE",
                    value: ScalarValue::I32(0),
                }],
                ..GOOD
            },
        ),
        (
            "override twice",
            KernelSpec {
                overrides: OVERRIDE_TWICE,
                ..GOOD
            },
        ),
    ];
    for (what, spec) in &broken {
        assert!(check_kernel(&p, spec).is_err(), "{what} was accepted");
    }
    assert!(check_constant(&p, &SharedConstant::u32(&PROBE, "WG", 32)).is_err());
    assert!(check_constant(&p, &SharedConstant::u32(&PROBE, "NOPE", 1)).is_err());
    assert!(parse("broken", "fn main( {").is_err());
    // A shader that uses subgroup operations without declaring them is rejected: the device
    // requests them only for shaders that say so.
    let subgroup_shader = contracts()
        .kernels
        .into_iter()
        .find(|k| k.shader.subgroups)
        .expect("a kernel with subgroup operations");
    assert!(parse_shader(subgroup_shader.shader).is_ok());
    assert!(parse(subgroup_shader.shader.name, subgroup_shader.shader.source).is_err());
    // A storage buffer at binding 0 is not a uniform parameter block.
    let storage = parse(
        "storage",
        "@group(0) @binding(0) var<storage, read_write> y: array<f32>;
         @compute @workgroup_size(1) fn main() { y[0] = 1.0; }",
    )
    .unwrap();
    assert!(check_params(&storage, GOOD_FIELDS, 12).is_err());

    // A workgroup size set by overrides is checked with the kernel's override values applied.
    const SIZED: Shader = Shader {
        name: "probe_sized",
        subgroups: false,
        source: "
            struct Params { n: u32, alpha: f32, shift: i32 }
            @group(0) @binding(0) var<uniform> p: Params;
            @group(0) @binding(1) var<storage, read_write> y: array<f32>;
            override SIDE: u32;
            override WG: u32 = SIDE * SIDE;
            var<workgroup> tile: array<f32, SIDE * SIDE>;
            @compute @workgroup_size(WG)
            fn main(@builtin(local_invocation_index) lid: u32) {
                tile[lid] = p.alpha;
                workgroupBarrier();
                y[lid] = tile[WG - 1u - lid];
            }
        ",
    };
    let sized = parse("sized", SIZED.source).unwrap();
    let side = |side: u32, workgroup: u32| KernelSpec {
        shader: &SIZED,
        workgroup_size: [workgroup, 1, 1],
        overrides: Box::leak(Box::new([Override::u32("SIDE", side)])),
        ..GOOD
    };
    check_kernel(&sized, &side(8, 64)).unwrap();
    check_kernel(&sized, &side(16, 256)).unwrap();
    assert!(check_kernel(&sized, &side(8, 256)).is_err());
    assert!(check_kernel(&sized, &side(16, 64)).is_err());
}
