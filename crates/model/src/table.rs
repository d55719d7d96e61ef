//! Text tables for a terminal: the per-endpoint tables of `stats`,
//! `replay` and `diff` are laid out here, once.
//!
//! A [`Table`] takes its columns (header, alignment, width bounds, the
//! spaces before each) and rows of cells, and is shown with `Display`.
//! Each column is as wide as its widest cell or header, at least its
//! [`Column::width`]. Every cell is passed through
//! [`crate::terminal::escape`], since cells hold recorded text.
//! A cell longer than its column's [`Column::max_width`] is shortened in
//! the middle, `…` standing for what was left out: an endpoint keeps its
//! method and the start of its path as well as its last segments, the
//! parts that tell endpoints apart, and the columns after it stay lined
//! up. Only the terminal is shortened: JSON output keeps names whole.

use std::fmt;

use crate::terminal::escape;

/// Where a column's cells sit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Against the left edge (names).
    Left,
    /// Against the right edge (figures).
    Right,
}

/// One column of a [`Table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    header: String,
    align: Align,
    width: usize,
    max_width: Option<usize>,
    gap: usize,
}

impl Column {
    /// A column of left-aligned cells under `header`.
    pub fn left(header: &str) -> Self {
        Column::new(header, Align::Left)
    }

    /// A column of right-aligned cells under `header`.
    pub fn right(header: &str) -> Self {
        Column::new(header, Align::Right)
    }

    fn new(header: &str, align: Align) -> Self {
        Column {
            header: header.to_string(),
            align,
            width: 0,
            max_width: None,
            gap: 1,
        }
    }

    /// At least `width` characters wide, however short its cells.
    pub fn width(mut self, width: usize) -> Self {
        self.width = width;
        self
    }

    /// Cells longer than `max` characters are shortened to `max`, with
    /// `…` in the middle (at least 2).
    pub fn max_width(mut self, max: usize) -> Self {
        self.max_width = Some(max.max(2));
        self
    }

    /// `spaces` before the column (1 unless set; none before the first).
    pub fn gap(mut self, spaces: usize) -> Self {
        self.gap = spaces;
        self
    }
}

/// A table of text: columns and rows, laid out when displayed.
///
/// The header line ends each column at its width; a left-aligned last
/// column is not padded, so no line ends in spaces it does not need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    indent: usize,
}

impl Table {
    /// A table with these columns and no rows yet.
    pub fn new(columns: Vec<Column>) -> Self {
        Table {
            columns,
            rows: Vec::new(),
            indent: 0,
        }
    }

    /// Rows start `spaces` further right than the header, which reads as
    /// a title over them (its first column is that much wider instead).
    pub fn indent_rows(mut self, spaces: usize) -> Self {
        self.indent = spaces;
        self
    }

    /// Adds a row: one cell per column (missing cells are empty, extra
    /// ones dropped). Cells are escaped and shortened here.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut cells = cells.into_iter();
        let row = self
            .columns
            .iter()
            .map(|column| {
                let cell = cells.next();
                let text = escape(cell.as_ref().map_or("", AsRef::as_ref));
                match column.max_width {
                    Some(max) => shorten(&text, max),
                    None => text.into_owned(),
                }
            })
            .collect();
        self.rows.push(row);
    }

    /// The width of each column: its widest cell or header, bounded.
    fn widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let widest = self
                    .rows
                    .iter()
                    .filter_map(|row| row.get(i))
                    .map(|cell| cell.chars().count())
                    .chain([column.header.chars().count(), column.width])
                    .max()
                    .unwrap_or(0);
                column.max_width.map_or(widest, |max| widest.min(max))
            })
            .collect()
    }

    fn line<'a>(
        &self,
        f: &mut fmt::Formatter<'_>,
        widths: &[usize],
        cells: impl Iterator<Item = &'a str>,
        first_extra: usize,
    ) -> fmt::Result {
        let last = self.columns.len().saturating_sub(1);
        for (i, ((column, width), cell)) in self.columns.iter().zip(widths).zip(cells).enumerate() {
            let width = if i == 0 { width + first_extra } else { *width };
            if i > 0 {
                write!(f, "{:1$}", "", column.gap)?;
            }
            match column.align {
                Align::Left if i == last => f.write_str(cell)?,
                Align::Left => write!(f, "{cell:<width$}")?,
                Align::Right => write!(f, "{cell:>width$}")?,
            }
        }
        writeln!(f)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self.widths();
        let headers = self.columns.iter().map(|c| c.header.as_str());
        self.line(f, &widths, headers, self.indent)?;
        for row in &self.rows {
            write!(f, "{:1$}", "", self.indent)?;
            self.line(f, &widths, row.iter().map(String::as_str), 0)?;
        }
        Ok(())
    }
}

/// `text` in at most `max` characters: longer text keeps its start and
/// its end, with `…` between them.
fn shorten(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    let kept = max.saturating_sub(1);
    let head = kept.div_ceil(2);
    let tail = kept - head;
    let mut out: String = text.chars().take(head).collect();
    out.push('…');
    out.extend(text.chars().skip(count - tail));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Table {
        Table::new(vec![
            Column::left("endpoint").max_width(60),
            Column::right("calls").width(7),
            Column::right("p50").width(8).gap(2),
        ])
        .indent_rows(2)
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_at_least() {
        let mut table = endpoints();
        table.row(["GET /", "3", "1.2ms"]);
        table.row(["POST /orders/{id}", "12345678", "850µs"]);
        assert_eq!(
            table.to_string(),
            [
                "endpoint               calls       p50",
                "  GET /                    3     1.2ms",
                "  POST /orders/{id} 12345678     850µs",
                "",
            ]
            .join("\n")
        );
    }

    #[test]
    fn a_100_character_endpoint_is_shortened_and_the_columns_stay_aligned() {
        let long = format!("GET /{}/end", "a".repeat(91));
        assert_eq!(long.chars().count(), 100);
        let mut table = endpoints();
        table.row([long.as_str(), "1", "1ms"]);
        table.row(["GET /short", "22", "10ms"]);
        let text = table.to_string();
        let lines: Vec<&str> = text.lines().collect();
        let shown: String = lines[1].chars().skip(2).take(61).collect();
        let shown = shown.strip_suffix(' ').unwrap_or_default();
        assert_eq!(shown.chars().count(), 60, "{text}");
        assert!(
            shown.starts_with("GET /aaa") && shown.contains('…') && shown.ends_with("aaa/end"),
            "{shown}"
        );
        // Every line is as long, and each figure ends in the same column.
        let ends: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert_eq!(ends, [2 + 60 + 1 + 7 + 2 + 8; 3], "{text}");
        let calls_end = |line: &str| {
            let chars: Vec<char> = line.chars().collect();
            chars[..2 + 60 + 1 + 7].iter().collect::<String>()
        };
        assert!(calls_end(lines[1]).ends_with(" 1"), "{text}");
        assert!(calls_end(lines[2]).ends_with(" 22"), "{text}");
    }

    #[test]
    fn cells_are_escaped_before_they_are_measured() {
        let mut table = Table::new(vec![
            Column::left("endpoint"),
            Column::left("statuses").gap(2),
        ]);
        table.row(["GE\x1bT /a\r\nFORGED", "2xx 1"]);
        assert_eq!(
            table.to_string(),
            "endpoint              statuses\nGE\\x1bT /a\\r\\nFORGED  2xx 1\n"
        );
    }

    #[test]
    fn shortening_keeps_both_ends() {
        assert_eq!(shorten("abcdefghij", 10), "abcdefghij");
        assert_eq!(shorten("abcdefghijk", 10), "abcde…hijk");
        assert_eq!(shorten("abcdefghijk", 2), "a…");
    }
}
