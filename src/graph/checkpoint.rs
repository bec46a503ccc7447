//! Checkpoints: trainable parameters and optimizer state in the safetensors format, with the
//! step count (Adam's bias correction depends on it) in the header metadata. Loading checks
//! every tensor — presence, dtype, shape — before writing any, so a bad file never
//! half-loads a model.

use super::plan::Plan;
use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

const STEP_KEY: &str = "eigengrad.step";

/// Writes every trainable parameter and state tensor of `plan` to `path` (via a temporary
/// file renamed into place, so a crash never leaves a truncated checkpoint behind).
pub fn save(plan: &(impl Plan + ?Sized), path: &Path) -> Result<()> {
    let graph = plan.graph();
    let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for v in plan.saved_values() {
        let values = plan.read(v)?;
        let node = graph.node(v);
        data.push((
            node.name.clone(),
            bytemuck::cast_slice(&values).to_vec(),
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
    let meta = HashMap::from([(STEP_KEY.to_string(), plan.steps().to_string())]);
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::InvalidArgument(format!("serialising checkpoint: {e}")))?;
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Restores `plan`'s parameters, state and step count from `path`. The file must hold
/// exactly the model's tensors with the same names, dtype f32 and shapes; otherwise
/// [`Error::BadFile`] says what differs and nothing is written. Like every
/// [`Plan::write`], loading clears the plan's step status and makes its eigendecompositions
/// start cold: a plan halted on NaN resumes from the checkpoint as a fresh plan would.
pub fn load(plan: &mut (impl Plan + ?Sized), path: &Path) -> Result<()> {
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
    let step = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STEP_KEY))
        .ok_or_else(|| bad(format!("no {STEP_KEY} in the metadata")))?
        .parse::<u64>()
        .map_err(|e| bad(format!("bad step count: {e}")))?;
    let saved = plan.saved_values();
    if file.len() != saved.len() {
        return Err(bad(format!(
            "holds {} tensors, the model has {}",
            file.len(),
            saved.len()
        )));
    }
    let mut staged = Vec::with_capacity(saved.len());
    for v in saved {
        let node = plan.graph().node(v);
        let t = file
            .tensor(&node.name)
            .map_err(|_| bad(format!("missing tensor {}", node.name)))?;
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
        staged.push((v, values));
    }
    for (v, values) in staged {
        plan.write(v, &values)?;
    }
    plan.set_steps(step);
    Ok(())
}
