//! A report as blocks of text, tables and charts, before any output format.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::data::{ColumnKind, SectionData, Table};
use super::model::{Chart, ReportTemplate, Section};

/// One bar of a chart: its label, its length, and the value written after it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) shown: String,
}

/// A piece of a report's body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    /// A section heading.
    Heading(String),
    /// A paragraph.
    Paragraph(String),
    /// A table with a header row, each column of a kind, every cell as text.
    Table {
        header: Vec<String>,
        kinds: Vec<ColumnKind>,
        rows: Vec<Vec<String>>,
    },
    /// A horizontal bar chart.
    Bars(Vec<Bar>),
}

/// A whole report, ready for a renderer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    pub(crate) title: String,
    pub(crate) subtitle: String,
    pub(crate) header: Option<String>,
    pub(crate) footer: Option<String>,
    pub(crate) blocks: Vec<Block>,
    /// When it was made: the PDF's creation date.
    pub(crate) created: DateTime<Utc>,
}

/// What a section with nothing to show says.
pub(crate) const NOTHING: &str = "Nothing matches this section.";

fn table(t: &Table) -> Block {
    Block::Table {
        header: t.columns.iter().map(|c| c.heading.clone()).collect(),
        kinds: t.columns.iter().map(|c| c.kind).collect(),
        rows: t.display_rows(),
    }
}

/// The bars of `t`: one per row, its length the first number (or percent) column,
/// labelled by the first text or label column (or the row's number); none when `t` has
/// no number column.
fn bars(t: &Table) -> Option<Vec<Bar>> {
    let value = t.columns.iter().position(|c| c.kind.is_numeric())?;
    let label = t
        .columns
        .iter()
        .position(|c| matches!(c.kind, ColumnKind::Text | ColumnKind::Label));
    let kind = t.columns[value].kind;
    let bars = t
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let cell = row.get(value).cloned().unwrap_or_default();
            let label = match label {
                Some(l) => row
                    .get(l)
                    .map_or_else(String::new, |c| c.display(t.columns[l].kind)),
                None => (i + 1).to_string(),
            };
            Bar {
                label,
                value: cell.number().unwrap_or(0.0).max(0.0),
                shown: cell.display(kind),
            }
        })
        .collect();
    Some(bars)
}

fn section_blocks(section: &Section, data: &SectionData, blocks: &mut Vec<Block>) {
    match &section.text {
        Some(text) => blocks.push(Block::Paragraph(text.clone())),
        None => blocks.extend(data.text.iter().cloned().map(Block::Paragraph)),
    }
    if data.is_empty() && section.text.is_none() {
        blocks.push(Block::Paragraph(NOTHING.into()));
        return;
    }
    let mut chart = section.chart;
    for t in &data.tables {
        let t = t.select(&section.columns);
        blocks.push(table(&t));
        if chart == Some(Chart::Bar)
            && let Some(bars) = bars(&t)
        {
            blocks.push(Block::Bars(bars));
            chart = None;
        }
    }
}

/// The table a CSV export holds: the first one marked [`Table::export`], else the first,
/// each with its section's column selection.
pub(crate) fn export_table<'a>(
    template: &ReportTemplate,
    data: &'a [SectionData],
) -> Option<Cow<'a, Table>> {
    let all = || {
        template
            .sections
            .iter()
            .zip(data)
            .flat_map(|(s, d)| d.tables.iter().map(move |t| (s, t)))
    };
    let (section, t) = all().find(|(_, t)| t.export).or_else(|| all().next())?;
    Some(t.select(&section.columns))
}

/// Lays out `template` over what the data source answered for each section (`data[i]`
/// for section `i`; a section without an answer reads as empty).
pub(crate) fn build(
    template: &ReportTemplate,
    data: &[SectionData],
    now: DateTime<Utc>,
) -> Document {
    let title = template
        .branding
        .title
        .clone()
        .unwrap_or_else(|| template.title.clone());
    let generated = format!("Generated {}", now.format("%Y-%m-%d %H:%M UTC"));
    let subtitle = if title == template.title {
        generated
    } else {
        format!("{} · {generated}", template.title)
    };
    let mut blocks = Vec::new();
    let nothing = SectionData::default();
    for (i, section) in template.sections.iter().enumerate() {
        blocks.push(Block::Heading(section.title.clone()));
        section_blocks(section, data.get(i).unwrap_or(&nothing), &mut blocks);
    }
    Document {
        title,
        subtitle,
        header: template.branding.header.clone(),
        footer: template.branding.footer.clone(),
        blocks,
        created: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Cell, Column};

    fn counts() -> Table {
        Table::new([
            Column::new("metric", "Metric", ColumnKind::Text),
            Column::new("count", "Count", ColumnKind::Number),
            Column::new("share", "Share", ColumnKind::Percent),
        ])
        .row([Cell::from("all"), Cell::from(4), Cell::Empty])
        .row([Cell::from("open"), Cell::from(1), Cell::from(0.25)])
    }

    #[test]
    fn a_chart_follows_the_first_table_with_numbers() {
        let section = Section::new("metrics", "Metrics").chart(Chart::Bar);
        let data = SectionData::default()
            .paragraph("Two figures.")
            .table(counts());
        let mut blocks = Vec::new();
        section_blocks(&section, &data, &mut blocks);
        assert_eq!(blocks[0], Block::Paragraph("Two figures.".into()));
        let Block::Table { rows, kinds, .. } = &blocks[1] else {
            panic!("{blocks:?}")
        };
        assert_eq!(rows[1], ["open", "1", "25.0 %"]);
        assert_eq!(kinds[2], ColumnKind::Percent);
        let Block::Bars(bars) = &blocks[2] else {
            panic!("{blocks:?}")
        };
        let shown: Vec<_> = bars.iter().map(|b| (b.label.as_str(), b.value)).collect();
        assert_eq!(shown, [("all", 4.0), ("open", 1.0)]);

        // A selection without the number column leaves nothing to chart.
        let section = section.columns(["metric"]);
        let mut blocks = Vec::new();
        section_blocks(&section, &data, &mut blocks);
        assert_eq!(blocks.len(), 2);
    }

    #[test]
    fn an_empty_section_says_so_and_its_own_text_wins() {
        let mut blocks = Vec::new();
        let section = Section::new("rows", "Rows");
        section_blocks(&section, &SectionData::default(), &mut blocks);
        assert_eq!(blocks, [Block::Paragraph(NOTHING.into())]);
        let mut blocks = Vec::new();
        let mut own = section.clone();
        own.text = Some("Written by hand.".into());
        section_blocks(
            &own,
            &SectionData::default().paragraph("Generated."),
            &mut blocks,
        );
        assert_eq!(blocks, [Block::Paragraph("Written by hand.".into())]);
    }
}
