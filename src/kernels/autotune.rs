//! Per-adapter choice of kernel variants: one mechanism for every kernel that can run more
//! than one way.
//!
//! A kernel family with interchangeable variants implements [`Tunable`]: the name its choice
//! is stored under, its [`Variant`] type, the default for an adapter that has not been
//! measured (a rule on the adapter's type), and a trial — one launch of each variant on a
//! representative problem. [`variant`] returns the choice for a device: what [`tune`] measured
//! on this device if it ran, else the default. [`tune`] times every variant once per adapter
//! and keeps the fastest, in memory on the [`Device`] (so kernels built afterwards use it) and
//! in a small text file, so the next process on the same adapter and driver reads it instead
//! of measuring. [`tune_all`] does so for every tunable kernel of the crate: matmul, one
//! choice per size class ([`MatmulSmall`](super::matmul::MatmulSmall),
//! [`MatmulMedium`](super::matmul::MatmulMedium), [`MatmulLarge`](super::matmul::MatmulLarge)),
//! transpose ([`Transpose`](super::transpose::Transpose)),
//! reductions ([`Reduce`](super::reduce::Reduce)), softmax cross-entropy
//! ([`SoftmaxXent`](super::softmax::SoftmaxXent)) and the eigensolver's one-workgroup path
//! ([`SmallEigh`](super::jacobi::SmallEigh), whose trial is a whole solve). Tune before
//! compiling plans: dispatches
//! built earlier keep the variant they were built with.
//!
//! The file is `autotune-v1.txt` in the first of `$EIGENGRAD_CACHE_DIR`,
//! `$XDG_CACHE_HOME/eigengrad` and `$HOME/.cache/eigengrad` that is set. Its first line is
//! `# eigengrad autotune v1`; each other line is `kernel<TAB>variant<TAB>adapter`. Lines that
//! do not parse are ignored, and a missing, unreadable, corrupt or unwritable file is never
//! an error: tuning measures again and logs why it could not save.

use super::Dispatch;
use crate::device::{Device, DeviceInfo};
use crate::error::Result;
use crate::profile::{time_pass, PassTimer};
use std::collections::BTreeMap;
use std::fmt;
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

/// One way of running a kernel; the variants of a kernel compute the same result.
pub trait Variant: Copy + PartialEq + fmt::Debug + 'static {
    /// Every variant.
    const ALL: &'static [Self];

    /// The variant's stable name, as the cache file stores it.
    fn name(self) -> &'static str;

    /// The variant called `name` (as [`Variant::name`] writes it), if any.
    fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }

    /// Whether the variant can run on a device with `info` (all of them unless a variant
    /// needs an optional feature, such as subgroup operations).
    fn available(self, _info: &DeviceInfo) -> bool {
        true
    }

    /// The variants that can run on a device with `info`, in the order of [`Variant::ALL`]:
    /// the ones [`tune`] measures.
    fn available_on(info: &DeviceInfo) -> Vec<Self> {
        Self::ALL
            .iter()
            .copied()
            .filter(|v| v.available(info))
            .collect()
    }
}

/// A kernel family whose [`Variant`] is chosen per adapter, by measurement where [`tune`] ran
/// and by [`Tunable::default_variant`] elsewhere.
pub trait Tunable {
    /// The variants.
    type Variant: Variant;

    /// The name choices are stored under (on the device and in the cache file).
    const KERNEL: &'static str;

    /// The variant for an adapter where none was measured.
    fn default_variant(info: &DeviceInfo) -> Self::Variant;

    /// What one trial records: one [`Dispatch`] for most kernels, a whole solve for the
    /// eigensolver.
    type Trial: Trial;

    /// One trial of each variant of [`Variant::available_on`] the device, in that order, on
    /// one representative problem: what [`tune`] times.
    fn trials(device: &Device) -> Result<Vec<Self::Trial>>;
}

/// Work that [`tune`] times: recorded into one compute pass.
pub trait Trial {
    /// Records the work.
    fn record(&self, pass: &mut wgpu::ComputePass<'_>);

    /// Dispatches [`Trial::record`] makes (reported with the timing).
    fn dispatches(&self) -> usize;
}

impl Trial for Dispatch {
    fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        Dispatch::record(self, pass);
    }

    fn dispatches(&self) -> usize {
        1
    }
}

/// The variant of kernel `K` on `device`: the one [`tune`] chose there, if it ran on this
/// device (or [`set_variant`] forced one) and the device can run it, else
/// [`Tunable::default_variant`].
pub fn variant<K: Tunable>(device: &Device) -> K::Variant {
    runnable::<K>(device, device.tuned_variant(K::KERNEL).as_deref())
        .unwrap_or_else(|| K::default_variant(device.info()))
}

/// The variant of `K` called `name`, if there is one and `device` can run it.
fn runnable<K: Tunable>(device: &Device, name: Option<&str>) -> Option<K::Variant> {
    name.and_then(K::Variant::parse)
        .filter(|v| v.available(device.info()))
}

/// Makes `v` the variant of kernel `K` on `device` (for kernels built afterwards), as if
/// measured: a way to force a variant.
pub fn set_variant<K: Tunable>(device: &Device, v: K::Variant) {
    device.set_tuned_variant(K::KERNEL, v.name());
}

/// What [`tune`] chose, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning<V> {
    /// The variant [`variant`] now returns on this device.
    pub variant: V,
    /// Whether it was already tuned in this process, read from the cache file, or measured.
    pub source: TuneSource,
    /// Milliseconds of one trial launch per variant (device time from timestamp queries where
    /// the adapter has them, else wall time); empty unless measured.
    pub timings_ms: Vec<(V, f64)>,
    /// The cache file consulted, if any.
    pub cache_path: Option<PathBuf>,
}

impl<V: Variant> Tuning<V> {
    /// The same report with variants by name (what [`tune_all`] returns).
    pub fn named(self) -> Tuning<&'static str> {
        Tuning {
            variant: self.variant.name(),
            source: self.source,
            timings_ms: self
                .timings_ms
                .into_iter()
                .map(|(v, ms)| (v.name(), ms))
                .collect(),
            cache_path: self.cache_path,
        }
    }
}

/// Timed runs of each variant while tuning (after one untimed warm-up that compiles it); the
/// fastest run counts, which discards runs slowed by other load.
const TUNE_RUNS: usize = 3;

/// Chooses the variant of kernel `K` for `device` by measurement, once per adapter: the
/// choice is remembered on the device (so [`variant`] returns it from then on) and in the
/// cache file `cache` (`None`: memory only; usually [`default_cache_path`]). With `force` it
/// measures even where a choice is remembered or cached (which it then replaces).
///
/// Errors: only device errors while measuring; cache files are read and written best-effort.
pub fn tune<K: Tunable>(
    device: &Device,
    cache: Option<&Path>,
    force: bool,
) -> Result<Tuning<K::Variant>> {
    let done = |variant: K::Variant, source, timings_ms| {
        set_variant::<K>(device, variant);
        log::info!(
            "{} autotune on {}: {variant:?} ({source:?})",
            K::KERNEL,
            device.info().name
        );
        Ok(Tuning {
            variant,
            source,
            timings_ms,
            cache_path: cache.map(Path::to_path_buf),
        })
    };
    if !force {
        if let Some(v) = runnable::<K>(device, device.tuned_variant(K::KERNEL).as_deref()) {
            return done(v, TuneSource::Memory, Vec::new());
        }
    }
    let key = adapter_key(device.info());
    let mut file = TuneCache::load(cache);
    if !force {
        if let Some(v) = runnable::<K>(device, file.get(&key, K::KERNEL)) {
            return done(v, TuneSource::Disk, Vec::new());
        }
    }
    let timings = measure::<K>(device)?;
    let best = timings
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|t| t.0)
        .unwrap_or_else(|| K::default_variant(device.info()));
    file.insert(&key, K::KERNEL, best.name());
    if let Err(e) = file.save() {
        log::warn!(
            "{} autotune: could not save {}: {e} (the choice is kept in memory)",
            K::KERNEL,
            cache.map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    done(best, TuneSource::Measured, timings)
}

/// [`tune`] for every tunable kernel of the crate, in the order of the module docs.
pub fn tune_all(
    device: &Device,
    cache: Option<&Path>,
    force: bool,
) -> Result<Vec<Tuning<&'static str>>> {
    use super::jacobi::SmallEigh;
    use super::matmul::{MatmulLarge, MatmulMedium, MatmulSmall};
    use super::{reduce::Reduce, softmax::SoftmaxXent, transpose::Transpose};
    Ok(vec![
        tune::<MatmulSmall>(device, cache, force)?.named(),
        tune::<MatmulMedium>(device, cache, force)?.named(),
        tune::<MatmulLarge>(device, cache, force)?.named(),
        tune::<Transpose>(device, cache, force)?.named(),
        tune::<Reduce>(device, cache, force)?.named(),
        tune::<SoftmaxXent>(device, cache, force)?.named(),
        tune::<SmallEigh>(device, cache, force)?.named(),
    ])
}

/// Times the trial of every variant the device can run: the fastest of [`TUNE_RUNS`] runs
/// each, runs of the variants interleaved so that a burst of other load hits them alike.
fn measure<K: Tunable>(device: &Device) -> Result<Vec<(K::Variant, f64)>> {
    let trials = K::trials(device)?;
    let variants = K::Variant::available_on(device.info());
    debug_assert_eq!(trials.len(), variants.len());
    let timer = PassTimer::new(device, 1)?;
    let mut best = vec![f64::INFINITY; trials.len()];
    for run in 0..=TUNE_RUNS {
        for (k, t) in trials.iter().enumerate() {
            let p = time_pass(device, timer.as_ref(), t.dispatches(), |pass| {
                t.record(pass)
            })?;
            if run > 0 {
                best[k] = best[k].min(p.gpu_ms.unwrap_or(p.wall_ms));
            }
        }
    }
    Ok(variants.into_iter().zip(best).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::matmul::{MatmulLarge, MatmulMedium, MatmulSmall, MatmulVariant};
    use crate::kernels::reduce::Reduce;
    use crate::kernels::softmax::SoftmaxXent;
    use crate::kernels::transpose::{Transpose, TransposeKernel};
    use crate::kernels::LanePolicy;

    /// Every variant of `K` survives a round trip through its name; names are distinct.
    fn names_round_trip<K: Tunable>() {
        let names: Vec<&str> = K::Variant::ALL.iter().map(|v| v.name()).collect();
        for (i, &v) in K::Variant::ALL.iter().enumerate() {
            assert_eq!(K::Variant::parse(v.name()), Some(v));
            assert!(!names[..i].contains(&v.name()), "{names:?}");
            assert_eq!(
                clean(v.name()),
                v.name(),
                "a name the cache file would alter"
            );
        }
        assert_eq!(K::Variant::parse("NoSuchVariant"), None);
        assert_eq!(clean(K::KERNEL), K::KERNEL);
    }

    #[test]
    fn variant_names_round_trip() {
        names_round_trip::<MatmulSmall>();
        names_round_trip::<MatmulMedium>();
        names_round_trip::<MatmulLarge>();
        names_round_trip::<Transpose>();
        names_round_trip::<Reduce>();
        names_round_trip::<SoftmaxXent>();
        names_round_trip::<crate::kernels::jacobi::SmallEigh>();
    }

    #[test]
    fn cache_keys_are_normalised_in_memory() {
        let mut cache = TuneCache::load(None);
        assert!(cache.is_empty() && cache.path().is_none());
        cache.insert("Adapter\tA\n", " matmul", "Tiled\r");
        assert_eq!(cache.get("Adapter A", "matmul"), Some("Tiled"));
        assert_eq!(cache.get("Adapter\tA", "matmul\n"), Some("Tiled"));
        cache.insert("Adapter A", "matmul", "RowBlock");
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("Adapter A", "matmul"), Some("RowBlock"));
        assert_eq!(cache.get("Adapter B", "matmul"), None);
        // No file: saving is a no-op, not an error.
        assert!(cache.save().is_ok());
    }

    #[test]
    fn named_reports_keep_order_and_figures() {
        let t = Tuning {
            variant: MatmulVariant::Tiled,
            source: TuneSource::Measured,
            timings_ms: vec![(MatmulVariant::RowBlock, 2.0), (MatmulVariant::Tiled, 1.0)],
            cache_path: None,
        };
        let n = t.named();
        assert_eq!(n.variant, "Tiled");
        assert_eq!(n.timings_ms, vec![("RowBlock", 2.0), ("Tiled", 1.0)]);
        assert_eq!(n.source, TuneSource::Measured);
    }

    /// Untuned, `variant` is the default; forced, it follows; every trial builds one launch
    /// per variant.
    fn follows_the_device<K: Tunable>(device: &Device) {
        assert_eq!(variant::<K>(device), K::default_variant(device.info()));
        let available = K::Variant::available_on(device.info());
        for &v in K::Variant::ALL {
            set_variant::<K>(device, v);
            let expected = if available.contains(&v) {
                v
            } else {
                K::default_variant(device.info())
            };
            assert_eq!(variant::<K>(device), expected, "forced {v:?}");
        }
        assert_eq!(K::trials(device).unwrap().len(), available.len());
    }

    #[test]
    fn the_choice_follows_the_device() {
        // A device of its own: forcing variants must not touch other tests' devices.
        let device = Device::new().unwrap();
        follows_the_device::<MatmulSmall>(&device);
        follows_the_device::<MatmulMedium>(&device);
        follows_the_device::<MatmulLarge>(&device);
        follows_the_device::<Transpose>(&device);
        follows_the_device::<Reduce>(&device);
        follows_the_device::<SoftmaxXent>(&device);
        // A stored name that no variant has is ignored.
        device.set_tuned_variant(Transpose::KERNEL, "NoSuchVariant");
        assert_eq!(
            variant::<Transpose>(&device),
            Transpose::default_variant(device.info())
        );
        // The defaults are the adapter-type rules.
        fn on<T>(cpu: bool, on_cpu: T, elsewhere: T) -> T {
            if cpu {
                on_cpu
            } else {
                elsewhere
            }
        }
        let cpu = device.info().is_cpu();
        for (default, on_gpu) in [
            (
                MatmulSmall::default_variant(device.info()),
                MatmulVariant::Skinny,
            ),
            (
                MatmulMedium::default_variant(device.info()),
                MatmulVariant::Tiled,
            ),
            (
                MatmulLarge::default_variant(device.info()),
                MatmulVariant::Large,
            ),
        ] {
            assert_eq!(default, on(cpu, MatmulVariant::RowBlock, on_gpu));
        }
        assert_eq!(
            Transpose::default_variant(device.info()),
            on(cpu, TransposeKernel::Direct, TransposeKernel::Tiled)
        );
        assert_eq!(
            Reduce::default_variant(device.info()),
            on(cpu, LanePolicy::Fewest, LanePolicy::Spread)
        );
    }
}
