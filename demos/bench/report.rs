//! The table: its rows, bench.csv (full precision) and bench.md (rounded, with the run's
//! adapter, load and autotuning), and the number formats they use.

use crate::BenchResult;
use eigengrad::DeviceInfo;
use std::path::PathBuf;
use std::time::Instant;

/// One line of the table.
#[derive(Default)]
pub struct Row {
    pub workload: String,
    pub size: String,
    pub variant: String,
    pub gpu_wall_ms: f64,
    pub gpu_kernel_ms: Option<f64>,
    pub cpu_ref_ms: f64,
    /// The strongest CPU library's time and its name.
    pub cpu_best: Option<(f64, String)>,
    pub dispatches: usize,
    /// Pipeline barriers per step, for compiled plans.
    pub barriers: Option<usize>,
    /// Host µs to record one step (or kernel) and to submit it.
    pub host_record_us: f64,
    pub host_submit_us: f64,
    pub notes: String,
}

/// Column names of the CSV (the Markdown table uses readable ones in the same order).
const CSV_HEADER: &str = "workload,size,variant,gpu_wall_ms,gpu_kernel_ms,cpu_ref_ms,\
cpu_best_ms,cpu_best_lib,ref_over_gpu,best_over_gpu,dispatches,barriers,host_record_us,\
host_submit_us,record_us_per_dispatch,notes";

impl Row {
    fn ratio_ref(&self) -> f64 {
        self.cpu_ref_ms / self.gpu_wall_ms
    }

    fn ratio_best(&self) -> Option<f64> {
        self.cpu_best.as_ref().map(|b| b.0 / self.gpu_wall_ms)
    }

    fn host_per_dispatch(&self) -> f64 {
        self.host_record_us / self.dispatches.max(1) as f64
    }

    /// The fields in CSV order, numbers in full precision.
    fn csv_fields(&self) -> Vec<String> {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        vec![
            self.workload.clone(),
            self.size.clone(),
            self.variant.clone(),
            format!("{:.6}", self.gpu_wall_ms),
            opt(self.gpu_kernel_ms),
            format!("{:.6}", self.cpu_ref_ms),
            opt(self.cpu_best.as_ref().map(|b| b.0)),
            self.cpu_best
                .as_ref()
                .map(|b| b.1.clone())
                .unwrap_or_default(),
            format!("{:.6}", self.ratio_ref()),
            opt(self.ratio_best()),
            self.dispatches.to_string(),
            self.barriers.map(|b| b.to_string()).unwrap_or_default(),
            format!("{:.3}", self.host_record_us),
            format!("{:.3}", self.host_submit_us),
            format!("{:.3}", self.host_per_dispatch()),
            self.notes.clone(),
        ]
    }

    /// The fields for the printed table, rounded for reading.
    fn display_fields(&self) -> Vec<String> {
        let best = self
            .cpu_best
            .as_ref()
            .map(|(ms, lib)| format!("{} ({lib})", ms3(*ms)))
            .unwrap_or_else(|| "—".into());
        vec![
            self.workload.clone(),
            self.size.clone(),
            self.variant.clone(),
            ms3(self.gpu_wall_ms),
            self.gpu_kernel_ms.map(ms3).unwrap_or_else(|| "—".into()),
            ms3(self.cpu_ref_ms),
            best,
            ratio(self.ratio_ref()),
            self.ratio_best().map(ratio).unwrap_or_else(|| "—".into()),
            self.dispatches.to_string(),
            self.barriers
                .map(|b| b.to_string())
                .unwrap_or_else(|| "—".into()),
            format!("{:.0}", self.host_record_us),
            format!("{:.0}", self.host_submit_us),
            format!("{:.2}", self.host_per_dispatch()),
            self.notes.clone(),
        ]
    }
}

const DISPLAY_HEADER: [&str; 15] = [
    "workload",
    "size",
    "variant",
    "GPU wall ms",
    "GPU kernel ms",
    "CPU ref ms",
    "best CPU ms",
    "ref/GPU",
    "best/GPU",
    "dispatches",
    "barriers",
    "record µs",
    "submit µs",
    "record µs/disp",
    "notes",
];

/// Milliseconds with three significant digits.
pub fn ms3(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

pub fn ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

/// The table being written: its rows and what the header of bench.md says about the run.
pub struct Report {
    /// The rows so far.
    pub rows: Vec<Row>,
    /// Where bench.csv and bench.md go (rewritten after every row, so an interrupted run
    /// leaves what it measured).
    pub out: PathBuf,
    /// The adapter the GPU rows ran on.
    pub adapter: DeviceInfo,
    /// CPU threads the CPU libraries may use.
    pub threads: usize,
    /// "smoke", "quick" or "full".
    pub mode: &'static str,
    /// The load average when the run started.
    pub load_start: String,
    /// What the matmul autotuning chose, and how.
    pub tuning_line: String,
    /// When the run started.
    pub started: Instant,
}

impl Report {
    /// Prints `row` as one progress line, appends it, and rewrites the files.
    pub fn push(&mut self, row: Row) -> BenchResult<()> {
        eprintln!(
            "  {:<28} {:<18} {:<10} GPU {:>9} ms  CPU ref {:>9} ms{}",
            row.workload,
            row.size,
            row.variant,
            ms3(row.gpu_wall_ms),
            ms3(row.cpu_ref_ms),
            row.cpu_best
                .as_ref()
                .map(|(ms, lib)| format!("  {lib} {} ms", ms3(*ms)))
                .unwrap_or_default()
        );
        self.rows.push(row);
        self.save(false)
    }

    /// Writes bench.csv and bench.md; `finished: false` marks the Markdown as partial.
    pub fn save(&self, finished: bool) -> BenchResult<()> {
        let mut csv = format!("{CSV_HEADER}\n");
        for r in &self.rows {
            let fields: Vec<String> = r.csv_fields().iter().map(|f| csv_field(f)).collect();
            csv += &fields.join(",");
            csv.push('\n');
        }
        std::fs::write(self.out.join("bench.csv"), csv)?;
        let info = &self.adapter;
        let md = format!(
            "# eigengrad bench ({mode}){partial}\n\n\
             - date: {date} (UTC)\n\
             - adapter: {info}\n\
             - CPU threads: {threads}; load average (1, 5, 15 min) at start {load_start}, \
             {now_or_end} {load}\n\
             - {tuning}\n\
             - timestamps: {ts}\n\
             - wall time of the run: {elapsed:.0} s\n\n\
             GPU wall: from the start of the call until the device finished (median). GPU \
             kernel: the device's own time, first pass begin to last pass end, from timestamp \
             queries. CPU ref: eigengrad's reference (nalgebra, one thread; for layers and MLPs \
             the reference executor on the same graph, f32). Best CPU: faer on every thread \
             (matmul; eigh parallel over the batch). ref/GPU and best/GPU: CPU time over GPU \
             wall time — above 1 the GPU is faster. record µs: CPU time to record one step (or \
             kernel) into a command buffer, also per dispatch; submit µs: CPU time inside \
             queue.submit (on a CPU adapter the device starts on the same cores meanwhile, so \
             this can include contention). Layer and MLP rows: warm = steady state, each solve \
             warm-started from the last step's eigenvectors; cold = every solve from V0 = I.\n\n\
             {table}",
            mode = self.mode,
            partial = if finished {
                ""
            } else {
                " — partial, still running"
            },
            date = utc_date(),
            threads = self.threads,
            load_start = self.load_start,
            now_or_end = if finished { "at end" } else { "now" },
            load = load_average(),
            tuning = self.tuning_line,
            ts = if info.timestamps {
                "yes (GPU kernel column)"
            } else {
                "no (GPU kernel column empty)"
            },
            elapsed = self.started.elapsed().as_secs_f64(),
            table = markdown_table(&self.rows),
        );
        std::fs::write(self.out.join("bench.md"), md)?;
        Ok(())
    }
}

/// The 1-, 5- and 15-minute load averages, or "n/a" off Linux.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// Today's UTC date as YYYY-MM-DD (civil-from-days, proleptic Gregorian).
fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The rows as an aligned Markdown table.
pub fn markdown_table(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(Row::display_fields).collect();
    let widths: Vec<usize> = (0..DISPLAY_HEADER.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .chain([DISPLAY_HEADER[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |fields: Vec<String>| {
        let padded: Vec<String> = fields
            .iter()
            .zip(&widths)
            .map(|(f, &w)| format!("{f}{}", " ".repeat(w - f.chars().count())))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(DISPLAY_HEADER.iter().map(|s| s.to_string()).collect());
    out += &line(widths.iter().map(|&w| "-".repeat(w)).collect());
    for r in cells {
        out += &line(r);
    }
    out
}
