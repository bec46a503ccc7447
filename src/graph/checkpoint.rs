//! Checkpoints in the safetensors format, by tensor name: the model's parameters (with model
//! state such as running statistics), or the full training state (with the optimizer state
//! and, in the header metadata, the step count that Adam's bias correction and the
//! learning-rate schedule depend on). Loading checks every tensor — presence, dtype,
//! shape — before writing any, so a bad file never half-loads a model.
//!
//! The header metadata also holds a CRC-32 of the contents, verified on load, so a corrupted
//! file is refused. Saving is crash- and concurrency-safe: the bytes go to a uniquely named
//! temporary file in the target's directory, which is flushed to disk and then atomically
//! renamed over the target (the directory is flushed too, on Unix). A crash leaves the old
//! checkpoint or the new one, never a mix; saves to different paths from several threads never
//! touch each other's files; a failed save removes its temporary file.
//!
//! Names are the graph's (unique by construction). A strict load wants exactly the tensors
//! it loads; a non-strict one loads those the file and the plan share and reports the rest.
//! A parameters checkpoint loads into an inference plan, and so does a training-state one
//! with [`LoadOptions::parameters`] (its optimizer state is recognised and left aside).
//!
//! ```
//! use eigengrad::graph::checkpoint::{self, Contents, LoadOptions};
//! use eigengrad::graph::{reference::ReferencePlan, Graph, Init, Plan};
//! use eigengrad::optim::Sgd;
//! # fn main() -> eigengrad::Result<()> {
//! let model = |g: &mut Graph| -> eigengrad::Result<_> {
//!     let x = g.input("x", &[2, 3])?;
//!     let w = g.param("w", &[3, 1], Init::Normal { std: 1.0 })?;
//!     Ok((x, g.matmul(x, w, false, false)?))
//! };
//! let mut train = Graph::new();
//! let (x, y) = model(&mut train)?;
//! let t = train.input("t", &[2, 1])?;
//! let loss = train.mse(y, t)?;
//! Sgd::new(0.1).minimize(&mut train, loss)?;
//! let mut trainer = ReferencePlan::<f32>::compile(&train, 1)?;
//! Plan::step(&mut trainer, &[(x, &[1.0; 6]), (t, &[0.5, 0.5])])?;
//! let path = std::env::temp_dir().join("eigengrad-doc-checkpoint.safetensors");
//! checkpoint::save_with(&trainer, &path, Contents::Parameters)?;
//!
//! // An inference graph: the same parameter, no optimizer, another batch size.
//! let mut infer = Graph::new();
//! let ix = infer.input("x", &[5, 3])?;
//! let iw = infer.param("w", &[3, 1], Init::Zeros)?;
//! let iy = infer.matmul(ix, iw, false, false)?;
//! let mut inference = ReferencePlan::<f32>::compile(&infer, 2)?;
//! let report = checkpoint::load_with(&mut inference, &path, &LoadOptions::parameters())?;
//! assert_eq!(report.loaded, ["w"]);
//! let w = train.find("w").unwrap();
//! assert_eq!(Plan::read(&inference, iw)?, Plan::read(&trainer, w)?);
//! Plan::forward(&mut inference, &[(ix, &[1.0; 15])], &[iy])?; // with the trained weight
//! # std::fs::remove_file(&path).ok();
//! # Ok(()) }
//! ```

use super::plan::Plan;
use super::Value;
use crate::atomic_file::write_atomically;
use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{HashMap, HashSet};
use std::path::Path;

const STEP_KEY: &str = "eigengrad.step";
/// Metadata key: the names of the file's optimizer-state tensors, one per line.
const OPTIMIZER_STATE_KEY: &str = "eigengrad.optimizer_state";

/// What a checkpoint holds, or what a load restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contents {
    /// The model: trainable parameters and model state (running statistics). What an
    /// inference plan needs.
    Parameters,
    /// Everything training resumes from: the parameters, model state, optimizer state and
    /// the step count.
    TrainingState,
}

/// How [`load_with`] loads a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// What to restore: with [`Contents::Parameters`] the file's optimizer state is left
    /// aside and the step count stays; with [`Contents::TrainingState`] everything is
    /// restored, the step count included.
    pub contents: Contents,
    /// Strict: the file must hold exactly the tensors restored (no missing, no unexpected
    /// name). Non-strict: the tensors both have are loaded and the others reported. Either
    /// way a tensor of the wrong dtype or shape is an error and nothing is written.
    pub strict: bool,
}

impl LoadOptions {
    /// Strict load of the parameters and model state only.
    pub fn parameters() -> LoadOptions {
        LoadOptions {
            contents: Contents::Parameters,
            strict: true,
        }
    }

    /// Strict load of the full training state.
    pub fn training_state() -> LoadOptions {
        LoadOptions {
            contents: Contents::TrainingState,
            strict: true,
        }
    }

    /// The same options, non-strict.
    pub fn non_strict(self) -> LoadOptions {
        LoadOptions {
            strict: false,
            ..self
        }
    }
}

/// What a load did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Tensors written into the plan, in graph order.
    pub loaded: Vec<String>,
    /// Tensors the plan has (of the contents loaded) that the file lacks, in graph order:
    /// they kept their values.
    pub missing: Vec<String>,
    /// Tensors the file has (of the contents loaded) that the plan lacks, sorted.
    pub unexpected: Vec<String>,
    /// The step count the plan was set to (training-state loads only).
    pub step: Option<u64>,
}

const CHECKSUM_KEY: &str = "eigengrad.crc32";

/// CRC-32 of a checkpoint's contents: its metadata texts (the step count and the names of
/// the optimizer state, as written), then every tensor in name order — name, shape, dtype and data — so that a change to any of them is
/// seen on load.
fn checksum<'a>(
    meta: [&str; 2],
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize], Dtype, &'a [u8])>,
) -> String {
    let mut sorted: Vec<_> = tensors.into_iter().collect();
    sorted.sort_by_key(|t| t.0);
    let mut crc = crc32fast::Hasher::new();
    for text in meta {
        crc.update(&(text.len() as u64).to_le_bytes());
        crc.update(text.as_bytes());
    }
    for (name, shape, dtype, data) in sorted {
        crc.update(&(name.len() as u64).to_le_bytes());
        crc.update(name.as_bytes());
        crc.update(&(shape.len() as u64).to_le_bytes());
        for &d in shape {
            crc.update(&(d as u64).to_le_bytes());
        }
        crc.update(format!("{dtype:?}").as_bytes());
        crc.update(&(data.len() as u64).to_le_bytes());
        crc.update(data);
    }
    format!("{:08x}", crc.finalize())
}
/// Writes the full training state of `plan` to `path` (see [`save_with`]).
pub fn save(plan: &(impl Plan + ?Sized), path: &Path) -> Result<()> {
    save_with(plan, path, Contents::TrainingState)
}

/// Writes `contents` of `plan` to `path`, with the step count and the names of the optimizer
/// state in the metadata (via a temporary file renamed into place, so a crash never leaves a
/// truncated checkpoint behind).
pub fn save_with(plan: &(impl Plan + ?Sized), path: &Path, contents: Contents) -> Result<()> {
    let graph = plan.graph();
    let (values, model) = (to_save(plan, contents), plan.model_values());
    let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for &v in &values {
        let tensor = plan.read(v)?;
        let node = graph.node(v);
        data.push((
            node.name.clone(),
            bytemuck::cast_slice(&tensor).to_vec(),
            node.shape.clone(),
        ));
    }
    let views = data
        .iter()
        .map(|(name, bytes, shape)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| Error::InvalidArgument(format!("checkpoint tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let step = plan.steps().to_string();
    let optimizer_state = values
        .iter()
        .filter(|v| !model.contains(v))
        .map(|&v| graph.node(v).name.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let crc = checksum(
        [&step, &optimizer_state],
        data.iter().map(|(name, bytes, shape)| {
            (
                name.as_str(),
                shape.as_slice(),
                Dtype::F32,
                bytes.as_slice(),
            )
        }),
    );
    let meta = HashMap::from([
        (STEP_KEY.to_string(), step),
        (OPTIMIZER_STATE_KEY.to_string(), optimizer_state),
        (CHECKSUM_KEY.to_string(), crc),
    ]);
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::InvalidArgument(format!("serialising checkpoint: {e}")))?;
    write_atomically(path, &bytes)
}

/// Restores the full training state of `plan` from `path`, strictly (see [`load_with`]).
/// Like every [`Plan::write`], loading clears the plan's step status and makes its
/// eigendecompositions start cold: a plan halted on NaN resumes from the checkpoint as a fresh
/// plan would.
pub fn load(plan: &mut (impl Plan + ?Sized), path: &Path) -> Result<()> {
    load_with(plan, path, &LoadOptions::training_state()).map(|_| ())
}

/// Restores what `options` says of `plan` from `path` and reports what it loaded, what was
/// missing and what was unexpected. A file that is not a checkpoint, a strict load whose
/// names differ, a tensor of another dtype or shape, or a non-strict load that matches no
/// tensor at all is [`Error::BadFile`] saying what differs, and nothing is written.
pub fn load_with(
    plan: &mut (impl Plan + ?Sized),
    path: &Path,
    options: &LoadOptions,
) -> Result<LoadReport> {
    let p = path.display().to_string();
    let bad = |detail: String| Error::BadFile {
        path: p.clone(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: p.clone(),
        source,
    })?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("bad header: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let text = |key: &str| meta.get(key).map(String::as_str);
    let stored =
        text(CHECKSUM_KEY).ok_or_else(|| bad(format!("no {CHECKSUM_KEY} in the metadata")))?;
    let tensors = file.tensors();
    let actual = checksum(
        [
            text(STEP_KEY).unwrap_or_default(),
            text(OPTIMIZER_STATE_KEY).unwrap_or_default(),
        ],
        tensors
            .iter()
            .map(|(name, t)| (name.as_str(), t.shape(), t.dtype(), t.data())),
    );
    if stored != actual {
        return Err(bad(format!(
            "checksum {actual} of the contents differs from the recorded {stored}: the file is \
             corrupted or was modified"
        )));
    }
    let training = options.contents == Contents::TrainingState;
    let step = match text(STEP_KEY) {
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|e| bad(format!("bad step count: {e}")))?,
        ),
        None if training => return Err(bad(format!("no {STEP_KEY} in the metadata"))),
        None => None,
    };
    let optimizer_state: HashSet<&str> = text(OPTIMIZER_STATE_KEY)
        .map(|names| names.lines().collect())
        .unwrap_or_default();
    let available: HashSet<String> = file
        .names()
        .into_iter()
        .filter(|name| training || !optimizer_state.contains(name))
        .map(str::to_string)
        .collect();

    let targets = to_save(plan, options.contents);
    let graph = plan.graph();
    let mut report = LoadReport::default();
    let mut staged = Vec::with_capacity(targets.len());
    for v in targets {
        let node = graph.node(v);
        if !available.contains(&node.name) {
            report.missing.push(node.name.clone());
            continue;
        }
        let t = file
            .tensor(&node.name)
            .map_err(|e| bad(format!("tensor {}: {e}", node.name)))?;
        if t.dtype() != Dtype::F32 || t.shape() != node.shape.as_slice() {
            return Err(bad(format!(
                "tensor {} is {:?} {:?}, the model expects F32 {:?}",
                node.name,
                t.dtype(),
                t.shape(),
                node.shape
            )));
        }
        let values: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        report.loaded.push(node.name.clone());
        staged.push((v, values));
    }
    let known: HashSet<&String> = report.loaded.iter().collect();
    report.unexpected = available
        .iter()
        .filter(|n| !known.contains(n))
        .cloned()
        .collect();
    report.unexpected.sort();
    if options.strict && !(report.missing.is_empty() && report.unexpected.is_empty()) {
        let hint = if training && !report.unexpected.is_empty() {
            " (a plan without optimizer state loads the parameters only: LoadOptions::parameters)"
        } else {
            ""
        };
        return Err(bad(format!(
            "the names differ from the model's: missing {:?}, unexpected {:?}{hint}",
            report.missing, report.unexpected
        )));
    }
    if staged.is_empty() {
        return Err(bad(format!(
            "no tensor of the file matches the model (unexpected {:?})",
            report.unexpected
        )));
    }
    for (v, values) in staged {
        plan.write(v, &values)?;
    }
    if let (true, Some(step)) = (training, step) {
        plan.set_steps(step);
        report.step = Some(step);
    }
    Ok(report)
}

/// The values of `plan` that `contents` covers, in graph order.
fn to_save(plan: &(impl Plan + ?Sized), contents: Contents) -> Vec<Value> {
    match contents {
        Contents::Parameters => plan.model_values(),
        Contents::TrainingState => plan.saved_values(),
    }
}
