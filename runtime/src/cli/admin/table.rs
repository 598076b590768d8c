//! Plain-text tables and the small formatting helpers of the admin CLI's human
//! output. Columns are left-aligned and padded to their widest cell (counted in
//! characters); cells are cut to [`MAX_CELL`] characters so a long error or
//! output does not push the table off the screen (`--json` has everything).

use chrono::{DateTime, Utc};

/// The widest a cell may be, in characters: a full sha256 (64 hex digits),
/// which admins copy into tasks, fits.
pub const MAX_CELL: usize = 64;

/// A table: a header row and data rows.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    /// Add a row (missing cells are empty, extra cells dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.into_iter().map(|c| cut(&one_line(&c))).collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as text, one line per row, header first, no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = width - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Newlines and tabs as spaces: one row stays one line.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// At most [`MAX_CELL`] characters, an ellipsis marking the cut.
pub fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_CELL {
        return text.to_string();
    }
    let mut short: String = text.chars().take(MAX_CELL - 1).collect();
    short.push('…');
    short
}

/// A time as `2026-11-28 07:02:40Z`, or `-`.
pub fn time(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string()).unwrap_or_else(|| "-".into())
}

/// An optional value, or `-`.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).filter(|v| !v.is_empty()).unwrap_or_else(|| "-".into())
}

/// Milliseconds as a short duration: `850ms`, `3s`, `5m`, `1h 30m`.
pub fn millis(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let mut table = Table::new(&["NAME", "STATE"]);
        table.row(vec!["scan-office".into(), "waiting".into()]);
        table.row(vec!["x".into(), "finished".into()]);
        assert_eq!(
            table.render(),
            "NAME         STATE\nscan-office  waiting\nx            finished\n"
        );
    }

    #[test]
    fn long_and_multiline_cells_stay_on_one_short_line() {
        let mut table = Table::new(&["ERROR"]);
        table.row(vec![format!("first\nsecond {}", "x".repeat(100))]);
        let rendered = table.render();
        let line = rendered.lines().nth(1).unwrap();
        assert!(line.starts_with("first second x"), "{line}");
        assert_eq!(line.chars().count(), MAX_CELL);
        assert!(line.ends_with('…'));
    }

    #[test]
    fn missing_cells_are_empty_and_widths_count_characters() {
        let mut table = Table::new(&["A", "B", "C"]);
        table.row(vec!["é".into()]);
        table.row(vec!["ab".into(), "c".into(), "d".into()]);
        assert_eq!(table.render(), "A   B  C\né\nab  c  d\n");
    }

    #[test]
    fn helpers() {
        assert_eq!(millis(850), "850ms");
        assert_eq!(millis(300_000), "5m");
        assert_eq!(millis(5_400_000), "1h 30m");
        assert_eq!(or_dash(None::<String>), "-");
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(or_dash(Some(3)), "3");
        assert_eq!(time(None), "-");
    }
}
