//! What a data source answers for a section: paragraphs and typed tables.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};

/// How a column's cells read and line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    /// Free text, left-aligned.
    Text,
    /// A number, right-aligned: whole numbers without decimals, others with up to two.
    Number,
    /// A fraction shown as a percentage with one decimal (`0.667` reads `66.7 %`),
    /// right-aligned.
    Percent,
    /// An instant, as RFC 3339 to the second (`2026-01-01T00:00:00Z`).
    Time,
    /// A short label such as a severity or a status, set in bold so it stands out in grey
    /// print.
    Label,
}

impl ColumnKind {
    /// Whether its cells line up on the right.
    pub(crate) fn is_numeric(self) -> bool {
        matches!(self, ColumnKind::Number | ColumnKind::Percent)
    }
}

/// A column of a [`Table`]: the key a template's `columns` selects it by, the heading a
/// reader sees, and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// What a section's `columns` names it by, such as `found_at`.
    pub key: String,
    /// Its heading, such as `Found at`.
    pub heading: String,
    /// How its cells read.
    pub kind: ColumnKind,
}

impl Column {
    /// A column keyed `key`, headed `heading`, of `kind`.
    pub fn new(key: impl Into<String>, heading: impl Into<String>, kind: ColumnKind) -> Self {
        Column {
            key: key.into(),
            heading: heading.into(),
            kind,
        }
    }
}

/// One value of a table row. Its column's kind decides how a number reads (a number or a
/// percentage); text reads as it is in any column.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Cell {
    /// Nothing.
    #[default]
    Empty,
    /// Text.
    Text(String),
    /// A number (a fraction in a [`ColumnKind::Percent`] column). Not finite reads as empty.
    Number(f64),
    /// An instant.
    Time(DateTime<Utc>),
}

impl Cell {
    /// How the cell reads in a column of `kind`.
    pub(crate) fn display(&self, kind: ColumnKind) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(text) => text.clone(),
            Cell::Number(x) if !x.is_finite() => String::new(),
            Cell::Number(x) if kind == ColumnKind::Percent => format!("{:.1} %", x * 100.0),
            Cell::Number(x) => number(*x),
            Cell::Time(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }

    /// Its number, if it is one.
    pub(crate) fn number(&self) -> Option<f64> {
        match self {
            Cell::Number(x) if x.is_finite() => Some(*x),
            _ => None,
        }
    }
}

/// A whole number without decimals, any other with up to two.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    let text = format!("{x:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

macro_rules! cell_from_number {
    ($($t:ty),*) => {$(
        impl From<$t> for Cell {
            fn from(x: $t) -> Self {
                Cell::Number(x as f64)
            }
        }
    )*};
}
cell_from_number!(f64, f32, i64, i32, u64, u32, usize);

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell::Text(text)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell::Text(text.to_owned())
    }
}

impl From<DateTime<Utc>> for Cell {
    fn from(t: DateTime<Utc>) -> Self {
        Cell::Time(t)
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(value: Option<T>) -> Self {
        value.map_or(Cell::Empty, Into::into)
    }
}

/// A table of a section: typed columns and rows of cells. A row shorter than the columns
/// reads as ending in empty cells; cells past the last column are not shown.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// The columns, in order.
    pub columns: Vec<Column>,
    /// The rows, each a cell per column.
    pub rows: Vec<Vec<Cell>>,
    /// Whether this is the table a CSV export holds: the report's first table so marked,
    /// or its first table when none is.
    pub export: bool,
}

impl Table {
    /// An empty table of `columns`.
    pub fn new(columns: impl IntoIterator<Item = Column>) -> Self {
        Table {
            columns: columns.into_iter().collect(),
            rows: Vec::new(),
            export: false,
        }
    }

    /// Adds a row.
    pub fn push_row<C: Into<Cell>>(&mut self, cells: impl IntoIterator<Item = C>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// With a row added.
    pub fn row<C: Into<Cell>>(mut self, cells: impl IntoIterator<Item = C>) -> Self {
        self.push_row(cells);
        self
    }

    /// Marks it as the table a CSV export holds.
    pub fn exported(mut self) -> Self {
        self.export = true;
        self
    }

    /// The columns named by `keys`, in their order (keys it has no column for are
    /// skipped); all of them when `keys` is empty. Borrowed when that is the table as
    /// it is.
    pub(crate) fn select(&self, keys: &[String]) -> Cow<'_, Table> {
        if keys.is_empty() || self.columns.iter().map(|c| &c.key).eq(keys) {
            return Cow::Borrowed(self);
        }
        let picked: Vec<usize> = keys
            .iter()
            .filter_map(|k| self.columns.iter().position(|c| &c.key == k))
            .collect();
        Cow::Owned(Table {
            columns: picked.iter().map(|&i| self.columns[i].clone()).collect(),
            rows: self
                .rows
                .iter()
                .map(|row| {
                    let cell = |i: usize| row.get(i).cloned().unwrap_or_default();
                    picked.iter().map(|&i| cell(i)).collect()
                })
                .collect(),
            export: self.export,
        })
    }

    /// Every row as text, a cell per column.
    pub(crate) fn display_rows(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| row.get(i).map_or_else(String::new, |v| v.display(c.kind)))
                    .collect()
            })
            .collect()
    }
}

/// What a data source answers for one section: paragraphs, then tables.
///
/// A section with no paragraph and no row is empty: preflight lists it and a build
/// refuses it. A data source answers [`SectionData::default`] when nothing matches.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SectionData {
    /// Paragraphs under the heading (a section's own `text`, when set, stands in their
    /// place).
    pub text: Vec<String>,
    /// Tables, in order.
    pub tables: Vec<Table>,
}

impl SectionData {
    /// With a paragraph added.
    pub fn paragraph(mut self, text: impl Into<String>) -> Self {
        self.text.push(text.into());
        self
    }

    /// With a table added.
    pub fn table(mut self, table: Table) -> Self {
        self.tables.push(table);
        self
    }

    /// Whether it has nothing to show: no paragraph with text and no row.
    pub fn is_empty(&self) -> bool {
        self.text.iter().all(|t| t.trim().is_empty())
            && self.tables.iter().all(|t| t.rows.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_by_their_column() {
        assert_eq!(Cell::from(1500usize).display(ColumnKind::Number), "1500");
        assert_eq!(Cell::from(2.5).display(ColumnKind::Number), "2.5");
        assert_eq!(Cell::from(1.0 / 3.0).display(ColumnKind::Number), "0.33");
        assert_eq!(Cell::from(2.0 / 3.0).display(ColumnKind::Percent), "66.7 %");
        assert_eq!(Cell::from(f64::NAN).display(ColumnKind::Number), "");
        assert_eq!(Cell::from("66.7 %").display(ColumnKind::Number), "66.7 %");
        let t = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        assert_eq!(
            Cell::from(t).display(ColumnKind::Time),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(Cell::from(None::<&str>), Cell::Empty);
    }

    #[test]
    fn a_selection_picks_and_orders_columns() {
        let table = Table::new([
            Column::new("a", "A", ColumnKind::Text),
            Column::new("b", "B", ColumnKind::Number),
        ])
        .row([Cell::from("x"), Cell::from(1)])
        .row([Cell::from("short")]);
        let picked = table.select(&["b".into(), "nope".into(), "a".into()]);
        assert_eq!(picked.columns[0].key, "b");
        assert_eq!(picked.display_rows(), [["1", "x"], ["", "short"]]);
        assert_eq!(*table.select(&[]), table);
    }

    #[test]
    fn empty_means_nothing_to_show() {
        assert!(SectionData::default().is_empty());
        assert!(SectionData::default().paragraph("  ").is_empty());
        let table = Table::new([Column::new("a", "A", ColumnKind::Text)]);
        assert!(SectionData::default().table(table.clone()).is_empty());
        assert!(!SectionData::default().table(table.row(["x"])).is_empty());
    }
}
