//! Numbers out: the aligned summary table (Markdown), CSV and JSON files, number formatting.

use super::DemoResult;
use std::path::Path;

/// A text table: a header and rows, printed aligned to stdout and written as CSV.
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table as aligned text (a Markdown table).
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, w) in width.iter().enumerate() {
                let cell = cells.get(i).map_or("", |c| c.as_str());
                let pad = w - cell.chars().count();
                if i == 0 {
                    s += &format!(" {cell}{} |", " ".repeat(pad));
                } else {
                    s += &format!(" {}{cell} |", " ".repeat(pad));
                }
            }
            s + "\n"
        };
        let mut out = line(&self.header);
        out += "|";
        for (i, w) in width.iter().enumerate().take(cols) {
            out += &if i == 0 {
                format!("{}|", "-".repeat(w + 2))
            } else {
                format!("{}:|", "-".repeat(w + 1))
            };
        }
        out += "\n";
        for row in &self.rows {
            out += &line(row);
        }
        out
    }

    /// Writes the table as CSV.
    pub fn write_csv(&self, path: &Path) -> DemoResult<()> {
        write_csv(path, &self.header, &self.rows)
    }
}

/// Writes rows of cells as CSV (cells holding a comma or quote are quoted).
pub fn write_csv<S: AsRef<str>>(path: &Path, header: &[S], rows: &[Vec<String>]) -> DemoResult<()> {
    let quote = |c: &str| {
        if c.contains([',', '"', '\n']) {
            format!("\"{}\"", c.replace('"', "\"\""))
        } else {
            c.to_string()
        }
    };
    let mut s = header
        .iter()
        .map(|h| quote(h.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    s.push('\n');
    for row in rows {
        s += &row.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",");
        s.push('\n');
    }
    std::fs::write(path, s)?;
    Ok(())
}

/// Writes a JSON document, pretty-printed.
pub fn write_json(path: &Path, value: &serde_json::Value) -> DemoResult<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")?;
    Ok(())
}

/// Formats a float for tables: fixed with `digits` decimals, or "—" when not finite.
pub fn fmt(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "—".to_string()
    }
}
