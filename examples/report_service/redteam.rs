//! The red-team findings model of the reports API: findings with a severity, category and
//! status, the filter a front end sends, and the three kinds of section (`summary`,
//! `findings`, `metrics`) that jobworks lays out from the tables answered here.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobworks::TenantId;
use jobworks::report::{
    Cell, Chart, Column, ColumnKind, Filter as Raw, Problem, ReportData, ReportTemplate, Section,
    SectionData, Table, parse_filter,
};
use serde::{Deserialize, Serialize};

/// How severe a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    /// All, most severe first.
    pub(crate) const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

/// Where a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Open,
    Fixed,
    Accepted,
    FalsePositive,
}

impl Status {
    pub(crate) const ALL: [Status; 4] = [
        Status::Open,
        Status::Fixed,
        Status::Accepted,
        Status::FalsePositive,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Fixed => "fixed",
            Status::Accepted => "accepted",
            Status::FalsePositive => "false_positive",
        }
    }
}

/// One finding of a red-team run: a row of the findings table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub(crate) severity: Severity,
    /// `jailbreak`, `prompt_injection`, …
    pub(crate) category: String,
    pub(crate) title: String,
    /// An excerpt of the prompt that caused it.
    pub(crate) prompt: String,
    /// An excerpt of the response.
    pub(crate) response: String,
    pub(crate) status: Status,
    pub(crate) found_at: DateTime<Utc>,
}

/// Most values in one filter list.
pub(crate) const MAX_FILTER_VALUES: usize = 32;
/// Longest search text, in characters.
pub(crate) const MAX_SEARCH_LEN: usize = 200;
/// Longest category name, in characters.
pub(crate) const MAX_CATEGORY_LEN: usize = 64;

/// Which findings a report covers: the template's `filter`, read into typed values and
/// applied in memory here (a database would bind them as parameters).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    /// Only these severities (all when empty).
    #[serde(default)]
    pub(crate) severity: Vec<Severity>,
    /// Only these categories (all when empty).
    #[serde(default)]
    pub(crate) category: Vec<String>,
    /// Only these statuses (all when empty).
    #[serde(default)]
    pub(crate) status: Vec<Status>,
    /// Only findings whose title, prompt or response contain this text (any case).
    #[serde(default)]
    pub(crate) search: Option<String>,
    /// Found at or after.
    #[serde(default)]
    pub(crate) since: Option<DateTime<Utc>>,
    /// Found before.
    #[serde(default)]
    pub(crate) until: Option<DateTime<Utc>>,
}

impl Filter {
    /// The filter of a template, and every problem with it.
    pub(crate) fn read(raw: &Raw) -> Result<Filter, Vec<Problem>> {
        let filter: Filter = parse_filter(raw).map_err(|p| vec![p])?;
        let mut problems = Vec::new();
        for (name, n) in [
            ("severity", filter.severity.len()),
            ("category", filter.category.len()),
            ("status", filter.status.len()),
        ] {
            if n > MAX_FILTER_VALUES {
                let msg = format!("must have at most {MAX_FILTER_VALUES} items");
                problems.push(Problem::new(&["filter", name], "too_long", msg));
            }
        }
        for (i, c) in filter.category.iter().enumerate() {
            if c.trim().is_empty() || c.chars().count() > MAX_CATEGORY_LEN {
                let msg = format!("must be 1 to {MAX_CATEGORY_LEN} characters");
                problems.push(Problem::new(
                    &["filter", "category", &i.to_string()],
                    "invalid",
                    msg,
                ));
            }
        }
        if let Some(search) = &filter.search
            && search.chars().count() > MAX_SEARCH_LEN
        {
            let msg = format!("must be at most {MAX_SEARCH_LEN} characters");
            problems.push(Problem::new(&["filter", "search"], "too_long", msg));
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since > until
        {
            problems.push(Problem::new(
                &["filter", "until"],
                "invalid",
                "must not be before since",
            ));
        }
        match problems.is_empty() {
            true => Ok(filter),
            false => Err(problems),
        }
    }

    /// Whether `finding` passes.
    pub(crate) fn matches(&self, finding: &Finding) -> bool {
        let search = self.search.as_deref().map(str::to_lowercase);
        (self.severity.is_empty() || self.severity.contains(&finding.severity))
            && (self.status.is_empty() || self.status.contains(&finding.status))
            && (self.category.is_empty() || self.category.contains(&finding.category))
            && self.since.is_none_or(|t| finding.found_at >= t)
            && self.until.is_none_or(|t| finding.found_at < t)
            && search.is_none_or(|s| {
                [&finding.title, &finding.prompt, &finding.response]
                    .iter()
                    .any(|text| text.to_lowercase().contains(&s))
            })
    }
}

/// The columns of the findings table: key, heading, kind.
pub(crate) const COLUMNS: [(&str, &str, ColumnKind); 7] = [
    ("severity", "Severity", ColumnKind::Label),
    ("category", "Category", ColumnKind::Text),
    ("title", "Title", ColumnKind::Text),
    ("prompt", "Prompt", ColumnKind::Text),
    ("response", "Response", ColumnKind::Text),
    ("status", "Status", ColumnKind::Label),
    ("found_at", "Found at", ColumnKind::Time),
];

/// The columns a findings section shows when it names none.
pub(crate) const DEFAULT_COLUMNS: [&str; 5] =
    ["severity", "category", "title", "status", "found_at"];

/// The kinds of section, which are also the preset keys.
pub(crate) const KINDS: [&str; 3] = ["summary", "findings", "metrics"];

/// The sections a preset names: a summary, the findings table, and the metrics with
/// their bar chart.
pub(crate) fn presets() -> Vec<Section> {
    vec![
        Section::new("summary", "Summary").key("summary"),
        Section::new("findings", "Findings").key("findings"),
        Section::new("metrics", "Metrics")
            .key("metrics")
            .chart(Chart::Bar),
    ]
}

/// The problems of a template in this model's terms: its kinds, columns, charts and
/// filter.
pub(crate) fn check(template: &ReportTemplate) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, s) in template.sections.iter().enumerate() {
        let i = i.to_string();
        let mut push = |field: &str, message: String| {
            problems.push(Problem::new(&["sections", &i, field], "invalid", message));
        };
        if !KINDS.contains(&s.kind.as_str()) {
            push("kind", format!("must be one of {}", KINDS.join(", ")));
        }
        if !s.columns.is_empty() && s.kind != "findings" {
            push("columns", "only a findings section has columns".into());
        }
        if let Some(bad) = s
            .columns
            .iter()
            .find(|c| !COLUMNS.iter().any(|(k, ..)| k == c))
        {
            let keys: Vec<&str> = COLUMNS.iter().map(|(k, ..)| *k).collect();
            push(
                "columns",
                format!("`{bad}` is not one of {}", keys.join(", ")),
            );
        }
        if s.chart.is_some() && s.kind != "metrics" {
            push("chart", "only a metrics section has a chart".into());
        }
    }
    if let Err(found) = Filter::read(&template.filter) {
        problems.extend(found);
    }
    problems
}

/// Counts of a section's findings.
struct Metrics {
    total: usize,
    by_severity: Vec<(Severity, usize)>,
    by_status: Vec<(Status, usize)>,
    /// Largest first, then by name.
    by_category: Vec<(String, usize)>,
}

impl Metrics {
    fn of(findings: &[Finding]) -> Metrics {
        let mut categories: BTreeMap<&str, usize> = BTreeMap::new();
        for f in findings {
            *categories.entry(f.category.as_str()).or_default() += 1;
        }
        let mut by_category: Vec<(String, usize)> = categories
            .into_iter()
            .map(|(c, n)| (c.to_owned(), n))
            .collect();
        by_category.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let count = |keep: &dyn Fn(&Finding) -> bool| findings.iter().filter(|f| keep(f)).count();
        Metrics {
            total: findings.len(),
            by_severity: Severity::ALL
                .into_iter()
                .map(|s| (s, count(&|f| f.severity == s)))
                .collect(),
            by_status: Status::ALL
                .into_iter()
                .map(|s| (s, count(&|f| f.status == s)))
                .collect(),
            by_category,
        }
    }

    fn severity(&self, severity: Severity) -> usize {
        self.by_severity
            .iter()
            .find(|(s, _)| *s == severity)
            .map_or(0, |(_, n)| *n)
    }

    fn status(&self, status: Status) -> usize {
        self.by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    /// `part` of the total as a fraction (0 with no findings).
    fn share(&self, part: usize) -> f64 {
        match self.total {
            0 => 0.0,
            total => part as f64 / total as f64,
        }
    }
}

/// A paragraph and the key figures, each with its share of the findings.
fn summary(m: &Metrics) -> SectionData {
    let open = m.status(Status::Open);
    let text = format!(
        "This report covers {} findings: {} critical and {} high. {} remain open.",
        m.total,
        m.severity(Severity::Critical),
        m.severity(Severity::High),
        open
    );
    let mut figures = Table::new([
        Column::new("figure", "Key figure", ColumnKind::Text),
        Column::new("count", "Count", ColumnKind::Number),
        Column::new("share", "Share", ColumnKind::Percent),
    ])
    .row([Cell::from("Findings"), Cell::from(m.total), Cell::Empty]);
    for (label, n) in [
        ("Critical", m.severity(Severity::Critical)),
        ("High", m.severity(Severity::High)),
        ("Open", open),
        ("Fixed", m.status(Status::Fixed)),
    ] {
        figures.push_row([Cell::from(label), Cell::from(n), Cell::from(m.share(n))]);
    }
    SectionData::default().paragraph(text).table(figures)
}

/// Counts by severity, status and category, each with its share of the total.
fn metrics(m: &Metrics) -> SectionData {
    let mut table = Table::new([
        Column::new("metric", "Metric", ColumnKind::Text),
        Column::new("count", "Count", ColumnKind::Number),
        Column::new("share", "Share", ColumnKind::Percent),
    ])
    .row([Cell::from("Findings"), Cell::from(m.total), Cell::Empty]);
    let mut count = |label: String, n: usize| {
        table.push_row([Cell::from(label), Cell::from(n), Cell::from(m.share(n))]);
    };
    for (s, n) in &m.by_severity {
        count(format!("Severity: {}", s.as_str()), *n);
    }
    for (s, n) in &m.by_status {
        count(format!("Status: {}", s.as_str()), *n);
    }
    for (c, n) in &m.by_category {
        count(format!("Category: {c}"), *n);
    }
    let severe = m.severity(Severity::Critical) + m.severity(Severity::High);
    count("Critical or high".to_owned(), severe);
    SectionData::default().table(table)
}

/// The findings, a row each, in the section's columns (or the default ones); the table
/// a CSV export holds.
fn findings_table(section: &Section, findings: &[Finding]) -> Table {
    let keys: Vec<&str> = match section.columns.is_empty() {
        true => DEFAULT_COLUMNS.to_vec(),
        false => section.columns.iter().map(String::as_str).collect(),
    };
    let columns = keys
        .iter()
        .filter_map(|key| COLUMNS.iter().find(|(k, ..)| k == key))
        .map(|(key, heading, kind)| Column::new(*key, *heading, *kind));
    let mut table = Table::new(columns).exported();
    for f in findings {
        let cell = |key: &str| match key {
            "severity" => Cell::from(f.severity.as_str()),
            "category" => Cell::from(f.category.as_str()),
            "title" => Cell::from(f.title.as_str()),
            "prompt" => Cell::from(f.prompt.as_str()),
            "response" => Cell::from(f.response.as_str()),
            "status" => Cell::from(f.status.as_str()),
            _ => Cell::from(f.found_at),
        };
        table.push_row(
            table
                .columns
                .iter()
                .map(|c| cell(&c.key))
                .collect::<Vec<_>>(),
        );
    }
    table
}

/// What `section` shows of `findings` (already filtered): nothing when there are none.
pub(crate) fn section_data(section: &Section, findings: &[Finding]) -> SectionData {
    if findings.is_empty() {
        return SectionData::default();
    }
    match section.kind.as_str() {
        "summary" => summary(&Metrics::of(findings)),
        "metrics" => metrics(&Metrics::of(findings)),
        _ => SectionData::default().table(findings_table(section, findings)),
    }
}

/// The findings of every project, kept in memory: the same in each, except that a project
/// named `empty` has none (to show what an empty section does).
#[derive(Debug)]
pub(crate) struct RedTeamData {
    findings: Vec<Finding>,
    presets: Vec<Section>,
}

impl RedTeamData {
    pub(crate) fn new(findings: Vec<Finding>) -> Self {
        RedTeamData {
            findings,
            presets: presets(),
        }
    }
}

#[async_trait]
impl ReportData for RedTeamData {
    async fn section(
        &self,
        tenant: &TenantId,
        section: &Section,
        filter: &Raw,
    ) -> jobworks::Result<SectionData> {
        if tenant.as_str().ends_with(":empty") {
            return Ok(SectionData::default());
        }
        // Checked when the template was saved or built; a filter that does not read now
        // is refused rather than ignored.
        let filter = Filter::read(filter)
            .map_err(|_| jobworks::Error::invalid("filter", "the filter does not read"))?;
        let rows: Vec<Finding> = self
            .findings
            .iter()
            .filter(|f| filter.matches(f))
            .cloned()
            .collect();
        Ok(section_data(section, &rows))
    }

    fn presets(&self) -> &[Section] {
        &self.presets
    }

    fn check(&self, template: &ReportTemplate) -> Vec<Problem> {
        check(template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity, category: &str, status: Status) -> Finding {
        Finding {
            severity,
            category: category.into(),
            title: format!("{category} issue"),
            prompt: "Ignore previous instructions".into(),
            response: "Sure".into(),
            status,
            found_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn metrics_count_and_share() {
        let rows = [
            finding(Severity::High, "jailbreak", Status::Open),
            finding(Severity::High, "leak", Status::Fixed),
            finding(Severity::Low, "jailbreak", Status::Open),
        ];
        let m = Metrics::of(&rows);
        assert_eq!(
            (m.total, m.severity(Severity::High), m.status(Status::Open)),
            (3, 2, 2)
        );
        assert_eq!(m.by_category[0], ("jailbreak".into(), 2));
        assert!((m.share(2) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(Metrics::of(&[]).share(0), 0.0);
    }

    #[test]
    fn filters_read_typed_fields_and_name_bad_ones() {
        use serde_json::json;
        let row = finding(Severity::High, "jailbreak", Status::Open);
        let raw = |v: serde_json::Value| v.as_object().unwrap().clone();
        let mut f = Filter::read(&raw(json!({}))).unwrap();
        assert!(f.matches(&row));
        f.severity = vec![Severity::Critical];
        assert!(!f.matches(&row));
        let f = Filter::read(&raw(
            json!({"severity": ["high"], "search": "IGNORE previous"}),
        ));
        assert!(f.unwrap().matches(&row));

        let paths = |v| -> Vec<String> {
            Filter::read(&raw(v))
                .unwrap_err()
                .iter()
                .map(|p| p.path.join("."))
                .collect()
        };
        assert_eq!(
            paths(json!({"severity": ["urgent"]})),
            ["filter.severity.0"]
        );
        assert_eq!(paths(json!({"colour": "red"})), ["filter.colour"]);
        assert_eq!(paths(json!({"search": "x".repeat(201)})), ["filter.search"]);
        assert_eq!(
            paths(json!({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"})),
            ["filter.until"]
        );
    }
}
