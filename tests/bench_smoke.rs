//! The `bench` example runs end to end in its `--smoke` configuration and writes a sane
//! table: the CSV parses, every workload family is there, every time is positive and finite,
//! every ratio finite. Nothing here asserts a speed: the numbers depend on the machine.

mod common;
use common::example;
use std::process::Command;

/// Splits one CSV line into fields (double-quoted fields may hold commas and "" quotes).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    assert!(!quoted, "unterminated quote in {line:?}");
    fields.push(field);
    fields
}

#[test]
fn bench_smoke_writes_a_sane_table() {
    let out = std::env::temp_dir().join(format!("eigengrad-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(example("bench"))
        .args(["--smoke", "--no-tune-cache", "--out"])
        .arg(&out)
        .output()
        .expect("the bench starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench --smoke failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("adapter: "), "no adapter line:\n{stdout}");
    assert!(stdout.contains("load average"), "no load line:\n{stdout}");
    assert!(
        stdout.contains("matmul autotune: "),
        "no tuning line:\n{stdout}"
    );

    let csv = std::fs::read_to_string(out.join("bench.csv")).expect("bench.csv");
    let mut lines = csv.lines();
    let header = csv_fields(lines.next().expect("a header"));
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let rows: Vec<Vec<String>> = lines.map(csv_fields).collect();
    assert!(rows.len() >= 10, "only {} rows", rows.len());
    let number = |row: &[String], name: &str| -> Option<f64> {
        let f = &row[col(name)];
        (!f.is_empty()).then(|| {
            f.parse::<f64>()
                .unwrap_or_else(|e| panic!("{name} = {f:?} in {row:?}: {e}"))
        })
    };
    for row in &rows {
        assert_eq!(row.len(), header.len(), "ragged row {row:?}");
        for name in [
            "gpu_wall_ms",
            "cpu_ref_ms",
            "ref_over_gpu",
            "host_record_us",
            "host_submit_us",
            "record_us_per_dispatch",
        ] {
            let v = number(row, name).unwrap_or_else(|| panic!("{name} missing in {row:?}"));
            assert!(v.is_finite() && v > 0.0, "{name} = {v} in {row:?}");
        }
        for name in ["gpu_kernel_ms", "cpu_best_ms", "best_over_gpu"] {
            if let Some(v) = number(row, name) {
                assert!(v.is_finite() && v > 0.0, "{name} = {v} in {row:?}");
            }
        }
        // A ratio is the quotient of the times it names.
        let r = number(row, "cpu_ref_ms").unwrap() / number(row, "gpu_wall_ms").unwrap();
        let stated = number(row, "ref_over_gpu").unwrap();
        assert!((r - stated).abs() <= 1e-3 * r.max(1e-3), "{row:?}");
        assert_eq!(
            number(row, "cpu_best_ms").is_some(),
            !row[col("cpu_best_lib")].is_empty(),
            "{row:?}"
        );
        let dispatches = number(row, "dispatches").unwrap();
        assert!(dispatches >= 1.0 && dispatches.fract() == 0.0, "{row:?}");
    }
    let workloads: Vec<&str> = rows.iter().map(|r| r[col("workload")].as_str()).collect();
    for family in ["matmul", "eigh", "layer ", "whiten", "mlp ", "deep "] {
        assert!(
            workloads.iter().any(|w| w.starts_with(family)),
            "no {family:?} row in {workloads:?}"
        );
    }
    // Cold and warm rows for the eigensolver and every Eigen layer mode.
    for mode in ["Clamp", "Orthogonal", "Normalize"] {
        for variant in ["warm", "cold"] {
            assert!(
                rows.iter()
                    .any(|r| r[col("workload")] == format!("layer Eigen {mode}")
                        && r[col("variant")] == variant),
                "no {variant} row for Eigen {mode}"
            );
        }
    }
    // The deep network's hidden Eigen layers stacked: the same step in fewer launches.
    let dispatches_of = |workload: &str| {
        rows.iter()
            .find(|r| r[col("workload")] == workload && r[col("variant")] == "warm")
            .and_then(|r| number(r, "dispatches"))
            .unwrap_or_else(|| panic!("no warm {workload} row"))
    };
    let (separate, stacked) = (
        dispatches_of("deep Eigen Clamp"),
        dispatches_of("deep Eigen Clamp stacked"),
    );
    assert!(
        stacked < separate,
        "{stacked} launches stacked, {separate} separate"
    );
    let md = std::fs::read_to_string(out.join("bench.md")).expect("bench.md");
    assert!(
        md.contains("| workload") && md.contains("load average"),
        "{md}"
    );
    assert_eq!(
        md.lines().filter(|l| l.starts_with("| ")).count(),
        rows.len() + 2,
        "the Markdown table has a header, a rule and one line per row"
    );
    let _ = std::fs::remove_dir_all(&out);
}
