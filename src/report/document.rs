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

/// The derived metrics: a label and a count each, the first (the total) without a share.
fn metric_counts(m: &Metrics) -> Vec<(String, usize)> {
    let mut counts = vec![("Findings".to_owned(), m.total)];
    for (s, n) in &m.by_severity {
        counts.push((format!("Severity: {}", s.as_str()), *n));
    }
    for (s, n) in &m.by_status {
        counts.push((format!("Status: {}", s.as_str()), *n));
    }
    for (c, n) in &m.by_category {
        counts.push((format!("Category: {c}"), *n));
    }
    counts.push(("Fix rate".to_owned(), m.status(FindingStatus::Fixed)));
    let severe = m.severity(Severity::Critical) + m.severity(Severity::High);
    counts.push(("Critical or high".to_owned(), severe));
    counts
}

/// The metrics table, and its bar chart when the section asks for one.
fn metrics(section: &Section, m: &Metrics) -> Vec<Block> {
    let counts = metric_counts(m);
    let rows = counts
        .iter()
        .enumerate()
        .map(|(i, (label, n))| {
            let share = if i == 0 { String::new() } else { m.rate(*n) };
            vec![label.clone(), n.to_string(), share]
        })
        .collect();
    let table = Block::Table {
        header: vec!["Metric".into(), "Count".into(), "Share".into()],
        rows,
    };
    match section.chart {
        Some(Chart::Bar) => vec![table, Block::Bars(counts)],
        None => vec![table],
    }
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
            SectionKind::Metrics => blocks.extend(metrics(section, &Metrics::of(findings))),
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
