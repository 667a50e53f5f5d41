//! Report templates, presets and filters, and the checks they pass before use.

use serde::{Deserialize, Serialize};

use super::data::{Filter, MAX_FILTER_TEXT, MAX_FILTER_VALUES};
use super::fonts::StandardFont;

/// Smallest body font size, in points.
pub const MIN_FONT_SIZE: f32 = 6.0;
/// Largest body font size, in points.
pub const MAX_FONT_SIZE: f32 = 24.0;
/// Longest title, header, footer or section title, in characters.
pub const MAX_TEXT_LEN: usize = 200;
/// Longest summary text, in characters.
pub const MAX_SUMMARY_LEN: usize = 5000;
/// Most sections in a template.
pub const MAX_SECTIONS: usize = 32;
/// Most columns of a findings table.
pub const MAX_COLUMNS: usize = 12;
/// Largest template, as JSON, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// The look of a report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Style {
    /// The body font; headings use its bold face.
    #[serde(default)]
    pub font: StandardFont,
    /// The body size in points, from 6 to 24.
    #[serde(default = "default_font_size")]
    #[cfg_attr(feature = "http", schema(minimum = 6, maximum = 24))]
    pub font_size: f32,
}

fn default_font_size() -> f32 {
    10.0
}

impl Default for Style {
    fn default() -> Self {
        Style {
            font: StandardFont::Helvetica,
            font_size: default_font_size(),
        }
    }
}

/// Text slots the host's brand fills: a header and footer on every page, and the title
/// on the first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Branding {
    /// On top of every page.
    #[serde(default)]
    pub header: Option<String>,
    /// At the bottom of every page, left of the page number.
    #[serde(default)]
    pub footer: Option<String>,
    /// The big title of the first page (the template's title when absent).
    #[serde(default)]
    pub title: Option<String>,
}

/// What a section shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum SectionKind {
    /// A paragraph and the key figures.
    Summary,
    /// Derived metrics: counts by severity, status and category, and rates.
    Metrics,
    /// A table of findings with chosen columns.
    Findings,
}

/// A column of a findings table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum Column {
    /// Severity.
    Severity,
    /// Category.
    Category,
    /// Title.
    Title,
    /// The prompt excerpt.
    Prompt,
    /// The response excerpt.
    Response,
    /// Status.
    Status,
    /// When it was found.
    FoundAt,
}

impl Column {
    /// The default columns of a findings table.
    pub const DEFAULT: [Column; 5] = [
        Column::Severity,
        Column::Category,
        Column::Title,
        Column::Status,
        Column::FoundAt,
    ];

    /// Its heading.
    pub fn heading(self) -> &'static str {
        match self {
            Column::Severity => "Severity",
            Column::Category => "Category",
            Column::Title => "Title",
            Column::Prompt => "Prompt",
            Column::Response => "Response",
            Column::Status => "Status",
            Column::FoundAt => "Found at",
        }
    }
}

/// A chart drawn under a section's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum Chart {
    /// A horizontal bar per row of the metrics table, its length the row's count: shapes
    /// and grey, legible in print without colour.
    Bar,
}

/// One section of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Section {
    /// The preset key it came from (`summary`, `findings`, `metrics`), or none.
    #[serde(default)]
    pub key: Option<String>,
    /// Its heading.
    pub title: String,
    /// What it shows.
    pub kind: SectionKind,
    /// The columns of a findings table (the default ones when empty).
    #[serde(default)]
    pub columns: Vec<Column>,
    /// The paragraph of a summary (a generated sentence when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A chart under a metrics section's table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<Chart>,
}

impl Section {
    /// A section of `kind` titled `title`.
    pub fn new(kind: SectionKind, title: impl Into<String>) -> Self {
        Section {
            key: None,
            title: title.into(),
            kind,
            columns: Vec::new(),
            text: None,
            chart: None,
        }
    }

    /// The columns a findings table shows.
    pub fn columns(&self) -> &[Column] {
        if self.columns.is_empty() {
            &Column::DEFAULT
        } else {
            &self.columns
        }
    }
}

/// A full report template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct ReportTemplate {
    /// The report's title.
    pub title: String,
    /// Header, footer and title slots.
    #[serde(default)]
    pub branding: Branding,
    /// Font and size.
    #[serde(default)]
    pub style: Style,
    /// The sections, in order.
    pub sections: Vec<Section>,
    /// Which findings it covers.
    #[serde(default)]
    pub filter: Filter,
}

/// The short form a front end posts; [`Preset::expand`] turns it into a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Preset {
    /// The report's title.
    pub title: String,
    /// Section keys, in order: `summary`, `findings`, `metrics`.
    pub sections: Vec<String>,
    /// Header, footer and title slots.
    #[serde(default)]
    pub branding: Branding,
    /// Which findings it covers.
    #[serde(default)]
    pub filter: Filter,
    /// Font and size.
    #[serde(default)]
    pub style: Style,
}

/// The preset section keys.
pub const PRESET_KEYS: [&str; 3] = ["summary", "findings", "metrics"];

impl Preset {
    /// The template this preset stands for: one section per key, titled for people.
    ///
    /// # Errors
    /// The problems of [`validate`](Self::validate).
    pub fn expand(&self) -> Result<ReportTemplate, Vec<Problem>> {
        self.validate()?;
        let sections = self
            .sections
            .iter()
            .map(|key| {
                let (kind, title) = match key.as_str() {
                    "summary" => (SectionKind::Summary, "Summary"),
                    "metrics" => (SectionKind::Metrics, "Metrics"),
                    _ => (SectionKind::Findings, "Findings"),
                };
                let mut section = Section::new(kind, title);
                section.key = Some(key.clone());
                if kind == SectionKind::Metrics {
                    section.chart = Some(Chart::Bar);
                }
                section
            })
            .collect();
        Ok(ReportTemplate {
            title: self.title.clone(),
            branding: self.branding.clone(),
            style: self.style,
            sections,
            filter: self.filter.clone(),
        })
    }

    /// Every problem of the preset, each with the path of its field.
    ///
    /// # Errors
    /// The list of problems, when there is one.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut p = Problems::default();
        p.text(&["title"], &self.title, MAX_TEXT_LEN, true);
        p.count(&["sections"], self.sections.len(), MAX_SECTIONS);
        for (i, key) in self.sections.iter().enumerate() {
            if !PRESET_KEYS.contains(&key.as_str()) {
                let msg = "must be one of summary, findings, metrics";
                p.push(&["sections", &i.to_string()], "invalid", msg);
            }
        }
        check_common(&mut p, &self.branding, &self.style, &self.filter);
        p.finish()
    }
}

impl ReportTemplate {
    /// Every problem of the template, each with the path of its field.
    ///
    /// # Errors
    /// The list of problems, when there is one.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut p = Problems::default();
        p.text(&["title"], &self.title, MAX_TEXT_LEN, true);
        p.count(&["sections"], self.sections.len(), MAX_SECTIONS);
        for (i, s) in self.sections.iter().enumerate() {
            let i = i.to_string();
            p.text(&["sections", &i, "title"], &s.title, MAX_TEXT_LEN, true);
            if let Some(key) = &s.key {
                p.text(&["sections", &i, "key"], key, 64, true);
            }
            if let Some(text) = &s.text {
                p.text(&["sections", &i, "text"], text, MAX_SUMMARY_LEN, false);
            }
            if !s.columns.is_empty() && s.kind != SectionKind::Findings {
                let msg = "only a findings section has columns";
                p.push(&["sections", &i, "columns"], "invalid", msg);
            }
            p.count(&["sections", &i, "columns"], s.columns.len(), MAX_COLUMNS);
            if s.chart.is_some() && s.kind != SectionKind::Metrics {
                let msg = "only a metrics section has a chart";
                p.push(&["sections", &i, "chart"], "invalid", msg);
            }
        }
        check_common(&mut p, &self.branding, &self.style, &self.filter);
        // Only when every part is within its own bound, so this is cheap.
        if p.0.is_empty() {
            let size = serde_json::to_vec(self).map_or(usize::MAX, |json| json.len());
            if size > MAX_TEMPLATE_BYTES {
                let msg = format!("must be at most {MAX_TEMPLATE_BYTES} bytes as JSON");
                p.push(&[], "too_long", &msg);
            }
        }
        p.finish()
    }
}

fn check_common(p: &mut Problems, branding: &Branding, style: &Style, filter: &Filter) {
    for (name, value) in [
        ("header", &branding.header),
        ("footer", &branding.footer),
        ("title", &branding.title),
    ] {
        if let Some(v) = value {
            p.text(&["branding", name], v, MAX_TEXT_LEN, false);
        }
    }
    if !(MIN_FONT_SIZE..=MAX_FONT_SIZE).contains(&style.font_size) {
        let msg = format!("must be between {MIN_FONT_SIZE} and {MAX_FONT_SIZE}");
        p.push(&["style", "font_size"], "out_of_range", &msg);
    }
    p.count(
        &["filter", "severity"],
        filter.severity.len(),
        MAX_FILTER_VALUES,
    );
    p.count(
        &["filter", "status"],
        filter.status.len(),
        MAX_FILTER_VALUES,
    );
    p.count(
        &["filter", "category"],
        filter.category.len(),
        MAX_FILTER_VALUES,
    );
    for (i, c) in filter.category.iter().enumerate() {
        p.text(&["filter", "category", &i.to_string()], c, 64, true);
    }
    if let Some(search) = &filter.search {
        p.text(&["filter", "search"], search, MAX_FILTER_TEXT, false);
    }
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since > until
    {
        p.push(&["filter", "until"], "invalid", "must not be before since");
    }
}

/// A problem with one field of a template, preset or filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The path to the field, such as `["style", "font_size"]`.
    pub path: Vec<String>,
    /// A machine-readable kind: `missing`, `invalid`, `too_long`, `out_of_range`.
    pub kind: &'static str,
    /// What is wrong.
    pub message: String,
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, path: &[&str], kind: &'static str, message: &str) {
        self.0.push(Problem {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            kind,
            message: message.to_owned(),
        });
    }

    fn text(&mut self, path: &[&str], value: &str, max: usize, required: bool) {
        if required && value.trim().is_empty() {
            self.push(path, "missing", "must not be empty");
        } else if value.chars().count() > max {
            self.push(
                path,
                "too_long",
                &format!("must be at most {max} characters"),
            );
        } else if value.chars().any(|c| c.is_control() && c != '\n') {
            self.push(path, "invalid", "must not contain control characters");
        }
    }

    fn count(&mut self, path: &[&str], n: usize, max: usize) {
        if n > max {
            self.push(path, "too_long", &format!("must have at most {max} items"));
        }
    }

    fn finish(self) -> Result<(), Vec<Problem>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn presets_expand_into_keyed_sections() {
        let preset: Preset = serde_json::from_value(json!({
            "title": "Q3", "sections": ["summary", "findings", "metrics"],
            "style": {"font": "Times-Roman", "font_size": 11}
        }))
        .unwrap();
        let t = preset.expand().unwrap();
        let keys: Vec<_> = t
            .sections
            .iter()
            .map(|s| s.key.as_deref().unwrap())
            .collect();
        assert_eq!(keys, PRESET_KEYS);
        assert_eq!(t.sections[1].kind, SectionKind::Findings);
        assert_eq!(t.style.font, StandardFont::TimesRoman);
    }

    #[test]
    fn every_problem_is_named() {
        let preset = Preset {
            title: String::new(),
            sections: vec!["summary".into(), "charts".into()],
            branding: Branding::default(),
            filter: Filter {
                search: Some("x".repeat(201)),
                ..Filter::default()
            },
            style: Style {
                font: StandardFont::Courier,
                font_size: 99.0,
            },
        };
        let paths: Vec<String> = preset
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|p| p.path.join("."))
            .collect();
        assert_eq!(
            paths,
            ["title", "sections.1", "style.font_size", "filter.search"]
        );
    }

    #[test]
    fn unknown_fonts_do_not_parse() {
        assert!(serde_json::from_value::<Style>(json!({"font": "Comic Sans"})).is_err());
        for f in StandardFont::ALL {
            assert_eq!(StandardFont::parse(f.name()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.name());
        }
    }
}
