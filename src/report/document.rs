//! A report as blocks of text and tables, before any output format.

use chrono::{DateTime, SecondsFormat, Utc};

use super::data::{Finding, Metrics};
use super::data::{FindingStatus, Severity};
use super::model::{Chart, Column, ReportTemplate, Section, SectionKind};

/// A piece of a report's body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    /// A section heading.
    Heading(String),
    /// A paragraph.
    Paragraph(String),
    /// A table with a header row.
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A horizontal bar chart: a label and a count per bar.
    Bars(Vec<(String, usize)>),
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

fn cell(finding: &Finding, column: Column) -> String {
    match column {
        Column::Severity => finding.severity.as_str().to_owned(),
        Column::Category => finding.category.clone(),
        Column::Title => finding.title.clone(),
        Column::Prompt => finding.prompt.clone(),
        Column::Response => finding.response.clone(),
        Column::Status => finding.status.as_str().to_owned(),
        Column::FoundAt => finding.found_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

/// The rows of a findings table.
pub(crate) fn findings_table(section: &Section, findings: &[Finding]) -> Block {
    let columns = section.columns();
    Block::Table {
        header: columns.iter().map(|c| c.heading().to_owned()).collect(),
        rows: findings
            .iter()
            .map(|f| columns.iter().map(|&c| cell(f, c)).collect())
            .collect(),
    }
}

fn summary(section: &Section, m: &Metrics) -> Vec<Block> {
    let open = m.status(FindingStatus::Open);
    let text = section.text.clone().unwrap_or_else(|| {
        format!(
            "This report covers {} findings: {} critical and {} high. {} remain open.",
            m.total,
            m.severity(Severity::Critical),
            m.severity(Severity::High),
            open
        )
    });
    let figures = vec![
        vec!["Findings".to_owned(), m.total.to_string()],
        vec![
            "Critical".to_owned(),
            m.severity(Severity::Critical).to_string(),
        ],
        vec!["High".to_owned(), m.severity(Severity::High).to_string()],
        vec!["Open".to_owned(), open.to_string()],
        vec!["Open rate".to_owned(), m.rate(open)],
    ];
    vec![
        Block::Paragraph(text),
        Block::Table {
            header: vec!["Key figure".into(), "Value".into()],
            rows: figures,
        },
    ]
}

fn metrics(m: &Metrics) -> Block {
    let mut rows = Vec::new();
    rows.push(vec![
        "Findings".to_owned(),
        m.total.to_string(),
        String::new(),
    ]);
    for (s, n) in &m.by_severity {
        rows.push(vec![
            format!("Severity: {}", s.as_str()),
            n.to_string(),
            m.rate(*n),
        ]);
    }
    for (s, n) in &m.by_status {
        rows.push(vec![
            format!("Status: {}", s.as_str()),
            n.to_string(),
            m.rate(*n),
        ]);
    }
    for (c, n) in &m.by_category {
        rows.push(vec![format!("Category: {c}"), n.to_string(), m.rate(*n)]);
    }
    let fixed = m.status(FindingStatus::Fixed);
    rows.push(vec![
        "Fix rate".to_owned(),
        fixed.to_string(),
        m.rate(fixed),
    ]);
    let severe = m.severity(Severity::Critical) + m.severity(Severity::High);
    rows.push(vec![
        "Critical or high".to_owned(),
        severe.to_string(),
        m.rate(severe),
    ]);
    Block::Table {
        header: vec!["Metric".into(), "Count".into(), "Share".into()],
        rows,
    }
}

/// A bar per row of a metrics table: its label and count.
fn bars_of(table: &Block) -> Block {
    let Block::Table { rows, .. } = table else {
        return Block::Bars(Vec::new());
    };
    Block::Bars(
        rows.iter()
            .filter_map(|row| Some((row.first()?.clone(), row.get(1)?.parse().ok()?)))
            .collect(),
    )
}

/// Lays out `template` over each section's findings (`data[i]` for section `i`).
pub(crate) fn build(
    template: &ReportTemplate,
    data: &[Vec<Finding>],
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
    for (section, findings) in template.sections.iter().zip(data) {
        blocks.push(Block::Heading(section.title.clone()));
        match section.kind {
            SectionKind::Summary => blocks.extend(summary(section, &Metrics::of(findings))),
            SectionKind::Metrics => {
                let table = metrics(&Metrics::of(findings));
                let bars = section.chart.map(|Chart::Bar| bars_of(&table));
                blocks.push(table);
                blocks.extend(bars);
            }
            SectionKind::Findings if findings.is_empty() => {
                blocks.push(Block::Paragraph("No findings match this report.".into()));
            }
            SectionKind::Findings => blocks.push(findings_table(section, findings)),
        }
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
