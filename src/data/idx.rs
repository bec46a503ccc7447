//! The IDX format of MNIST and Fashion-MNIST: a 4-byte magic `00 00 08 <ndim>` (0x08 =
//! unsigned bytes), `ndim` big-endian u32 dimensions, then the bytes row-major. Files may be
//! gzip-compressed, which is detected from the gzip magic bytes, not from the file name.

use super::Dataset;
use crate::error::{Error, Result};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Number of classes of MNIST and Fashion-MNIST (labels 0..=9).
pub const MNIST_CLASSES: usize = 10;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const IDX_UBYTE: u8 = 0x08;

fn bad_file(path: &Path, detail: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

/// The file's bytes, gunzipped if they start with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len().saturating_mul(2));
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| bad_file(path, format!("gzip data is corrupt or truncated: {e}")))?;
    Ok(out)
}

/// Parses an IDX file of unsigned bytes with `ndim` dimensions: (dimensions, data). The data
/// length must match the dimensions exactly.
fn parse_idx<'a>(path: &Path, bytes: &'a [u8], ndim: u8) -> Result<(Vec<usize>, &'a [u8])> {
    let Some(magic) = bytes.get(..4) else {
        return Err(bad_file(
            path,
            format!("{} bytes, too short for the 4-byte IDX magic", bytes.len()),
        ));
    };
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad_file(
            path,
            format!(
                "not an IDX file: magic {:02x} {:02x} {:02x} {:02x}, expected 00 00 08 {ndim:02x}",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != IDX_UBYTE {
        return Err(bad_file(
            path,
            format!(
                "IDX element type {:#04x}, expected {IDX_UBYTE:#04x} (unsigned byte)",
                magic[2]
            ),
        ));
    }
    if magic[3] != ndim {
        return Err(bad_file(
            path,
            format!(
                "{} dimensions, expected {ndim} ({})",
                magic[3],
                if ndim == 3 {
                    "images: count, rows, cols"
                } else {
                    "labels: count"
                }
            ),
        ));
    }
    let header_len = 4 + 4 * ndim as usize;
    let Some(header) = bytes.get(4..header_len) else {
        return Err(bad_file(
            path,
            format!(
                "truncated header: {} bytes, the {ndim}-dimensional header needs {header_len}",
                bytes.len()
            ),
        ));
    };
    let dims: Vec<usize> = header
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    if let Some(d) = dims.iter().position(|&d| d == 0) {
        return Err(bad_file(path, format!("dimension {d} of {dims:?} is 0")));
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad_file(path, format!("dimensions {dims:?} overflow")))?;
    let data = &bytes[header_len..];
    if data.len() < expected {
        return Err(bad_file(
            path,
            format!(
                "truncated: dimensions {dims:?} need {expected} data bytes, found {}",
                data.len()
            ),
        ));
    }
    if data.len() > expected {
        return Err(bad_file(
            path,
            format!(
                "{} bytes of trailing data after the {expected} that dimensions {dims:?} declare",
                data.len() - expected
            ),
        ));
    }
    Ok((dims, data))
}

/// Reads an IDX image file (`idx3-ubyte`, raw or gzip) as `(pixels, n, rows, cols)`: pixels
/// `[n, rows * cols]` row-major, scaled from 0..=255 to [0, 1].
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<(Vec<f32>, usize, usize, usize)> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    let (dims, data) = parse_idx(path, &bytes, 3)?;
    let pixels = data.iter().map(|&b| f32::from(b) / 255.0).collect();
    Ok((pixels, dims[0], dims[1], dims[2]))
}

/// Reads an IDX label file (`idx1-ubyte`, raw or gzip).
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    let (_, data) = parse_idx(path, &bytes, 1)?;
    Ok(data.to_vec())
}

/// Finds `stem` in `dir`, trying `stem`, `stem.gz`, and the dotted spelling some archives use
/// (`train-images.idx3-ubyte`, also with `.gz`).
fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    let candidates = [
        stem.to_string(),
        format!("{stem}.gz"),
        dotted.clone(),
        format!("{dotted}.gz"),
    ];
    candidates
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Io {
            path: dir.join(stem).display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no such file (looked for {} in {})",
                    candidates.join(", "),
                    dir.display()
                ),
            ),
        })
}

/// Loads one half (`train` or `t10k`) of an MNIST-format directory.
fn load_half(dir: &Path, prefix: &str, name: String) -> Result<(Dataset, PathBuf)> {
    let images_path = find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (images, n, rows, cols) = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != n {
        return Err(bad_file(
            &labels_path,
            format!(
                "{} labels, but {} has {n} images",
                labels.len(),
                images_path.display()
            ),
        ));
    }
    if let Some(i) = labels.iter().position(|&l| l as usize >= MNIST_CLASSES) {
        return Err(bad_file(
            &labels_path,
            format!(
                "label {} at index {i} is not below {MNIST_CLASSES} classes",
                labels[i]
            ),
        ));
    }
    let dataset = Dataset::new(name, images, labels, (rows, cols), MNIST_CLASSES)?;
    Ok((dataset, images_path))
}

/// Loads an MNIST-format directory (MNIST, Fashion-MNIST, e.g. [`super::FASHION_MNIST_DIR`])
/// as (train, test), 10 classes. It needs `train-images-idx3-ubyte`,
/// `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each
/// raw or gzip (`.gz`), also spelt `train-images.idx3-ubyte` etc.
///
/// A missing file is an [`Error::Io`] naming it; a malformed one (wrong magic, wrong number of
/// dimensions, truncated or trailing data, label and image counts that differ, a label ≥ 10,
/// test images of another size than the training images) an [`Error::BadFile`] naming the
/// file and what is wrong.
pub fn load_mnist_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let (train, _) = load_half(dir, "train", format!("{base} train"))?;
    let (test, test_images) = load_half(dir, "t10k", format!("{base} test"))?;
    if test.shape != train.shape {
        return Err(bad_file(
            &test_images,
            format!(
                "images are {}×{}, the training images are {}×{}",
                test.shape.0, test.shape.1, train.shape.0, train.shape.1
            ),
        ));
    }
    Ok((train, test))
}
