//! Checkpoints: trainable parameters and optimizer state in the safetensors format, with the
//! step count (Adam's bias correction depends on it) and a CRC-32 of the contents in the
//! header metadata. Loading verifies the checksum and checks every tensor — presence, dtype,
//! shape — before writing any, so a corrupted or mismatched file never half-loads a model.
//!
//! Saving is crash- and concurrency-safe: the bytes go to a uniquely named temporary file in
//! the target's directory, which is flushed to disk and then atomically renamed over the
//! target (the directory is flushed too, on Unix). A crash leaves the old checkpoint or the
//! new one, never a mix; saves to different paths from several threads never touch each
//! other's files; a failed save removes its temporary file.

use super::plan::Plan;
use crate::atomic_file::write_atomically;
use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

const STEP_KEY: &str = "eigengrad.step";
const CHECKSUM_KEY: &str = "eigengrad.crc32";

/// CRC-32 of a checkpoint's contents: the step count as written in the metadata, then every
/// tensor in name order — name, shape, dtype and data — so that a change to any of them is
/// seen on load.
fn checksum<'a>(
    step: &str,
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize], Dtype, &'a [u8])>,
) -> String {
    let mut sorted: Vec<_> = tensors.into_iter().collect();
    sorted.sort_by_key(|t| t.0);
    let mut crc = crc32fast::Hasher::new();
    crc.update(step.as_bytes());
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

/// Writes every trainable parameter and state tensor of `plan` to `path`, atomically (see the
/// module docs): a crash never leaves a truncated checkpoint behind.
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
    let step = plan.steps().to_string();
    let crc = checksum(
        &step,
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
        (CHECKSUM_KEY.to_string(), crc),
    ]);
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::InvalidArgument(format!("serialising checkpoint: {e}")))?;
    write_atomically(path, &bytes)
}

/// Restores `plan`'s parameters, state and step count from `path`. The file's checksum must
/// match its contents, and it must hold exactly the model's tensors with the same names,
/// dtype f32 and shapes; otherwise [`Error::BadFile`] says what differs and nothing is
/// written. Like every [`Plan::write`], loading clears the plan's step status and makes its
/// eigendecompositions start cold: a plan halted on NaN resumes from the checkpoint as a fresh
/// plan would.
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
    let meta = |key: &str| {
        header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(key))
            .ok_or_else(|| bad(format!("no {key} in the metadata")))
    };
    let step_text = meta(STEP_KEY)?;
    let stored = meta(CHECKSUM_KEY)?;
    let tensors = file.tensors();
    let actual = checksum(
        step_text,
        tensors
            .iter()
            .map(|(name, t)| (name.as_str(), t.shape(), t.dtype(), t.data())),
    );
    if *stored != actual {
        return Err(bad(format!(
            "checksum {actual} of the contents differs from the recorded {stored}: the file is \
             corrupted or was modified"
        )));
    }
    let step = step_text
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
