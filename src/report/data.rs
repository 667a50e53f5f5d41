//! A report's rows (findings), the filter that selects them, and the figures derived from
//! them.

use std::collections::BTreeMap;
use std::fmt::Debug;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How severe a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum Severity {
    /// Critical.
    Critical,
    /// High.
    High,
    /// Medium.
    Medium,
    /// Low.
    Low,
    /// Informational.
    Info,
}

impl Severity {
    /// All, most severe first.
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    /// Its lowercase name.
    pub fn as_str(self) -> &'static str {
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
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum FindingStatus {
    /// Not dealt with.
    Open,
    /// Fixed.
    Fixed,
    /// Accepted as a risk.
    Accepted,
    /// Not a real issue.
    FalsePositive,
}

impl FindingStatus {
    /// All of them.
    pub const ALL: [FindingStatus; 4] = [
        FindingStatus::Open,
        FindingStatus::Fixed,
        FindingStatus::Accepted,
        FindingStatus::FalsePositive,
    ];

    /// Its lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Open => "open",
            FindingStatus::Fixed => "fixed",
            FindingStatus::Accepted => "accepted",
            FindingStatus::FalsePositive => "false_positive",
        }
    }
}

/// Most values in one filter list.
pub const MAX_FILTER_VALUES: usize = 32;
/// Longest filter string, in characters.
pub const MAX_FILTER_TEXT: usize = 200;

/// Which findings a report covers. Untrusted input: validated here and handed to the data
/// source as typed values, never as query text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Filter {
    /// Only these severities (all when empty).
    #[serde(default)]
    pub severity: Vec<Severity>,
    /// Only these categories (all when empty).
    #[serde(default)]
    pub category: Vec<String>,
    /// Only these statuses (all when empty).
    #[serde(default)]
    pub status: Vec<FindingStatus>,
    /// Only findings whose title, prompt or response contain this text (any case).
    #[serde(default)]
    pub search: Option<String>,
    /// Found at or after.
    #[serde(default)]
    #[cfg_attr(feature = "http", schema(value_type = Option<String>, format = DateTime))]
    pub since: Option<DateTime<Utc>>,
    /// Found before.
    #[serde(default)]
    #[cfg_attr(feature = "http", schema(value_type = Option<String>, format = DateTime))]
    pub until: Option<DateTime<Utc>>,
}

/// One finding: a row of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// How severe it is.
    pub severity: Severity,
    /// Its category (`jailbreak`, `prompt_injection`, …).
    pub category: String,
    /// A one-line title.
    pub title: String,
    /// An excerpt of the prompt that caused it.
    pub prompt: String,
    /// An excerpt of the response.
    pub response: String,
    /// Where it stands.
    pub status: FindingStatus,
    /// When it was found.
    pub found_at: DateTime<Utc>,
}

impl Filter {
    /// Whether `finding` passes the filter: for data sources that filter in memory.
    pub fn matches(&self, finding: &Finding) -> bool {
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

/// Figures derived from a section's findings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// How many findings.
    pub total: usize,
    /// Counts by severity, most severe first (every severity, zeros included).
    pub by_severity: Vec<(Severity, usize)>,
    /// Counts by status (every status, zeros included).
    pub by_status: Vec<(FindingStatus, usize)>,
    /// Counts by category, largest first, then by name.
    pub by_category: Vec<(String, usize)>,
}

impl Metrics {
    /// The figures of `findings`.
    pub fn of(findings: &[Finding]) -> Metrics {
        let count_by = |f: &dyn Fn(&Finding) -> bool| findings.iter().filter(|x| f(x)).count();
        let mut categories: BTreeMap<&str, usize> = BTreeMap::new();
        for f in findings {
            *categories.entry(f.category.as_str()).or_default() += 1;
        }
        let mut by_category: Vec<(String, usize)> = categories
            .into_iter()
            .map(|(c, n)| (c.to_owned(), n))
            .collect();
        by_category.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Metrics {
            total: findings.len(),
            by_severity: Severity::ALL
                .into_iter()
                .map(|s| (s, count_by(&|f| f.severity == s)))
                .collect(),
            by_status: FindingStatus::ALL
                .into_iter()
                .map(|s| (s, count_by(&|f| f.status == s)))
                .collect(),
            by_category,
        }
    }

    /// How many findings have `severity`.
    pub fn severity(&self, severity: Severity) -> usize {
        self.by_severity
            .iter()
            .find(|(s, _)| *s == severity)
            .map_or(0, |(_, n)| *n)
    }

    /// How many findings have `status`.
    pub fn status(&self, status: FindingStatus) -> usize {
        self.by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    /// `part` of the total as a percentage with one decimal (`"0.0 %"` with no findings).
    pub fn rate(&self, part: usize) -> String {
        if self.total == 0 {
            return "0.0 %".to_owned();
        }
        format!("{:.1} %", part as f64 * 100.0 / self.total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity, category: &str, status: FindingStatus) -> Finding {
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
    fn metrics_count_and_rate() {
        let rows = [
            finding(Severity::High, "jailbreak", FindingStatus::Open),
            finding(Severity::High, "leak", FindingStatus::Fixed),
            finding(Severity::Low, "jailbreak", FindingStatus::Open),
        ];
        let m = Metrics::of(&rows);
        assert_eq!(m.total, 3);
        assert_eq!(m.severity(Severity::High), 2);
        assert_eq!(m.status(FindingStatus::Open), 2);
        assert_eq!(m.by_category[0], ("jailbreak".into(), 2));
        assert_eq!(m.rate(2), "66.7 %");
        assert_eq!(Metrics::of(&[]).rate(0), "0.0 %");
    }

    #[test]
    fn filters_match_typed_fields() {
        let row = finding(Severity::High, "jailbreak", FindingStatus::Open);
        let mut f = Filter::default();
        assert!(f.matches(&row));
        f.severity = vec![Severity::Critical];
        assert!(!f.matches(&row));
        f.severity = vec![Severity::High];
        f.search = Some("IGNORE previous".into());
        assert!(f.matches(&row));
        f.since = Some(row.found_at + chrono::Duration::seconds(1));
        assert!(!f.matches(&row));
    }
}
