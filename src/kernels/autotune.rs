//! Per-adapter choice of kernel variants by measurement, remembered in memory on the
//! [`Device`](crate::Device) and on disk.
//!
//! A kernel with variants (today: [`matmul`](super::matmul::autotune)) times each variant
//! once on a representative size and keeps the fastest for that adapter. The choice is
//! stored in memory on the device (so kernels built afterwards use it) and in a small text
//! file, so the next process on the same adapter and driver reads it instead of measuring.
//!
//! The file is `autotune-v1.txt` in the first of `$EIGENGRAD_CACHE_DIR`,
//! `$XDG_CACHE_HOME/eigengrad` and `$HOME/.cache/eigengrad` that is set. Its first line is
//! `# eigengrad autotune v1`; each other line is `kernel<TAB>variant<TAB>adapter`. Lines that
//! do not parse are ignored, and a missing, unreadable, corrupt or unwritable file is never
//! an error: tuning measures again and logs why it could not save.

use crate::device::DeviceInfo;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the cache (the version is part of the name and of the header line).
pub const CACHE_FILE: &str = "autotune-v1.txt";

/// First line of a cache file of this version.
const HEADER: &str = "# eigengrad autotune v1";

/// The cache file to use: `$EIGENGRAD_CACHE_DIR/autotune-v1.txt`, else
/// `$XDG_CACHE_HOME/eigengrad/autotune-v1.txt`, else `$HOME/.cache/eigengrad/autotune-v1.txt`;
/// `None` when none of these variables is set (tuning then lives in memory only).
pub fn default_cache_path() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("EIGENGRAD_CACHE_DIR") {
        return Some(PathBuf::from(dir).join(CACHE_FILE));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("eigengrad").join(CACHE_FILE));
    }
    var("HOME").map(|home| {
        PathBuf::from(home)
            .join(".cache")
            .join("eigengrad")
            .join(CACHE_FILE)
    })
}

/// The key a tuned choice is stored under: adapter name, backend and driver (a new driver
/// can change which variant wins), with tabs and line breaks replaced by spaces.
pub fn adapter_key(info: &DeviceInfo) -> String {
    clean(&format!(
        "{} | {:?} | {}",
        info.name, info.backend, info.driver
    ))
}

/// `s` with the file format's separators (tabs, line breaks) replaced by spaces.
fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ").trim().to_string()
}

/// Where an autotuned choice came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneSource {
    /// Already tuned on this device in this process.
    Memory,
    /// Read from the cache file.
    Disk,
    /// Measured now (and saved to the cache file where possible).
    Measured,
}

/// The tuned choices of a cache file: kernel and adapter key → variant name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TuneCache {
    path: Option<PathBuf>,
    entries: BTreeMap<(String, String), String>,
}

impl TuneCache {
    /// Reads the cache at `path`. A missing or unreadable file, one of another version, and
    /// lines that do not parse all count as absent entries, never as errors.
    pub fn load(path: Option<&Path>) -> TuneCache {
        let mut cache = TuneCache {
            path: path.map(Path::to_path_buf),
            entries: BTreeMap::new(),
        };
        let Some(bytes) = path.and_then(|p| std::fs::read(p).ok()) else {
            return cache;
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(HEADER) {
            log::warn!(
                "autotune cache {}: not a v1 cache file, ignored",
                path.map(|p| p.display().to_string()).unwrap_or_default()
            );
            return cache;
        }
        for line in lines {
            let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
            match fields[..] {
                [kernel, variant, adapter]
                    if ![kernel, variant, adapter].iter().any(|f| f.is_empty()) =>
                {
                    cache.insert(adapter, kernel, variant);
                }
                _ => log::debug!("autotune cache: ignoring line {line:?}"),
            }
        }
        cache
    }

    /// The file this cache was read from and saves to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The variant stored for `kernel` on the adapter with key `adapter`.
    pub fn get(&self, adapter: &str, kernel: &str) -> Option<&str> {
        self.entries
            .get(&(clean(kernel), clean(adapter)))
            .map(String::as_str)
    }

    /// Stores `variant` for `kernel` on the adapter with key `adapter` (in memory; see
    /// [`Self::save`]).
    pub fn insert(&mut self, adapter: &str, kernel: &str, variant: &str) {
        self.entries
            .insert((clean(kernel), clean(adapter)), clean(variant));
    }

    /// Number of stored choices.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no choice is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the cache to its file, creating the folder; the file is replaced atomically
    /// (written beside it, then renamed), so a reader never sees half a file. Callers treat
    /// an error as "not cached", never as a failure.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = format!("{HEADER}\n");
        for ((kernel, adapter), variant) in &self.entries {
            text.push_str(&format!("{kernel}\t{variant}\t{adapter}\n"));
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}
