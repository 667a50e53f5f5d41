//! Report templates, presets and filters, and the checks they pass before use.

use serde::{Deserialize, Serialize};

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

/// A chart drawn under a section's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum Chart {
    /// A horizontal bar per row of the section's first table with a number (or percent)
    /// column, its length that number, labelled by the row's first text or label cell:
    /// shapes and grey, legible in print without colour.
    Bar,
}

/// One section of a template: a heading over what the data source answers for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Section {
    /// The preset key it came from, or none.
    #[serde(default)]
    pub key: Option<String>,
    /// Its heading.
    pub title: String,
    /// What it shows, in the data source's words (such as `summary` or `metrics`): the
    /// data source answers the section by it.
    pub kind: String,
    /// Which columns of its tables to show, by key and in order (all when empty).
    #[serde(default)]
    pub columns: Vec<String>,
    /// Its paragraph, in place of the data source's paragraphs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A chart under its table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<Chart>,
}

impl Section {
    /// A section of `kind` titled `title`.
    pub fn new(kind: impl Into<String>, title: impl Into<String>) -> Self {
        Section {
            key: None,
            title: title.into(),
            kind: kind.into(),
            columns: Vec::new(),
            text: None,
            chart: None,
        }
    }

    /// With the preset key `key`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// With the columns `keys`, in order.
    pub fn columns<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.columns = keys.into_iter().map(Into::into).collect();
        self
    }

    /// With `chart` under its table.
    pub fn chart(mut self, chart: Chart) -> Self {
        self.chart = Some(chart);
        self
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
    /// Which rows it covers, in the data source's terms (an object; the data source
    /// checks it and applies it). Untrusted input, as data, never as query text.
    #[serde(default)]
    #[cfg_attr(feature = "http", schema(value_type = Object))]
    pub filter: Filter,
}

/// A template's filter: a JSON object that the data source reads (with
/// [`parse_filter`], into its own type).
pub type Filter = serde_json::Map<String, serde_json::Value>;

/// Reads `filter` as the data source's own type `T` (a struct with
/// `#[serde(deny_unknown_fields)]`, say).
///
/// # Errors
/// The problem, at the path of the field that does not fit (such as
/// `["filter", "severity", "0"]`).
pub fn parse_filter<T: serde::de::DeserializeOwned>(filter: &Filter) -> Result<T, Problem> {
    let value = serde_json::Value::Object(filter.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = vec!["filter".to_owned()];
        path.extend(crate::error::serde_path(e.path()));
        Problem {
            path,
            kind: "invalid",
            message: e.into_inner().to_string(),
        }
    })
}

/// The short form a front end posts; [`Preset::expand`] turns it into a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Preset {
    /// The report's title.
    pub title: String,
    /// Section keys, in order: each one of the data source's
    /// [`presets`](super::ReportData::presets).
    pub sections: Vec<String>,
    /// Header, footer and title slots.
    #[serde(default)]
    pub branding: Branding,
    /// Which rows it covers, as for a template.
    #[serde(default)]
    #[cfg_attr(feature = "http", schema(value_type = Object))]
    pub filter: Filter,
    /// Font and size.
    #[serde(default)]
    pub style: Style,
}

impl Preset {
    /// The template this preset stands for: for each key, the section of `catalogue`
    /// with that key (a data source's [`presets`](super::ReportData::presets)).
    ///
    /// # Errors
    /// The problems of [`validate`](Self::validate).
    pub fn expand(&self, catalogue: &[Section]) -> Result<ReportTemplate, Vec<Problem>> {
        self.validate(catalogue)?;
        let sections = self
            .sections
            .iter()
            .filter_map(|key| preset(catalogue, key).cloned())
            .collect();
        Ok(ReportTemplate {
            title: self.title.clone(),
            branding: self.branding.clone(),
            style: self.style,
            sections,
            filter: self.filter.clone(),
        })
    }

    /// Every problem of the preset, each with the path of its field: its own bounds, and
    /// keys that `catalogue` does not have.
    ///
    /// # Errors
    /// The list of problems, when there is one.
    pub fn validate(&self, catalogue: &[Section]) -> Result<(), Vec<Problem>> {
        let mut p = Problems::default();
        p.text(&["title"], &self.title, MAX_TEXT_LEN, true);
        p.count(&["sections"], self.sections.len(), MAX_SECTIONS);
        for (i, key) in self.sections.iter().enumerate() {
            if preset(catalogue, key).is_none() {
                let keys: Vec<&str> = catalogue.iter().filter_map(|s| s.key.as_deref()).collect();
                let msg = match keys.is_empty() {
                    true => "this report service has no preset sections".to_owned(),
                    false => format!("must be one of {}", keys.join(", ")),
                };
                p.push(&["sections", &i.to_string()], "invalid", &msg);
            }
        }
        check_common(&mut p, &self.branding, &self.style);
        p.finish()
    }
}

fn preset<'a>(catalogue: &'a [Section], key: &str) -> Option<&'a Section> {
    catalogue.iter().find(|s| s.key.as_deref() == Some(key))
}

/// Longest section key, kind or column key, in characters.
pub const MAX_KEY_LEN: usize = 64;

impl ReportTemplate {
    /// Every problem of the template against the library's own bounds, each with the
    /// path of its field. What its kinds, columns and filter mean is the data source's
    /// to check ([`ReportData::check`](super::ReportData::check);
    /// [`Reports::validate`](super::Reports::validate) runs both).
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
            p.text(&["sections", &i, "kind"], &s.kind, MAX_KEY_LEN, true);
            if let Some(key) = &s.key {
                p.text(&["sections", &i, "key"], key, MAX_KEY_LEN, true);
            }
            if let Some(text) = &s.text {
                p.text(&["sections", &i, "text"], text, MAX_SUMMARY_LEN, false);
            }
            p.count(&["sections", &i, "columns"], s.columns.len(), MAX_COLUMNS);
            for (j, column) in s.columns.iter().enumerate().take(MAX_COLUMNS) {
                let at = ["sections", &i, "columns", &j.to_string()];
                p.text(&at, column, MAX_KEY_LEN, true);
            }
        }
        check_common(&mut p, &self.branding, &self.style);
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

fn check_common(p: &mut Problems, branding: &Branding, style: &Style) {
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

impl Problem {
    /// A problem of the field at `path` (such as `["filter", "search"]`), of `kind`.
    pub fn new(path: &[&str], kind: &'static str, message: impl Into<String>) -> Self {
        Problem {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            kind,
            message: message.into(),
        }
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, path: &[&str], kind: &'static str, message: &str) {
        self.0.push(Problem::new(path, kind, message));
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

    fn catalogue() -> Vec<Section> {
        vec![
            Section::new("summary", "Summary").key("summary"),
            Section::new("rows", "Rows").key("rows"),
        ]
    }

    #[test]
    fn presets_expand_into_the_catalogue_sections() {
        let preset: Preset = serde_json::from_value(json!({
            "title": "Q3", "sections": ["rows", "summary", "rows"],
            "style": {"font": "Times-Roman", "font_size": 11},
            "filter": {"anything": ["the data source reads"]}
        }))
        .unwrap();
        let t = preset.expand(&catalogue()).unwrap();
        let kinds: Vec<_> = t.sections.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["rows", "summary", "rows"]);
        assert_eq!(t.sections[1].key.as_deref(), Some("summary"));
        assert_eq!(t.style.font, StandardFont::TimesRoman);
        assert_eq!(t.filter, preset.filter);
    }

    #[test]
    fn every_problem_is_named() {
        let preset = Preset {
            title: String::new(),
            sections: vec!["summary".into(), "charts".into()],
            branding: Branding::default(),
            filter: Filter::new(),
            style: Style {
                font: StandardFont::Courier,
                font_size: 99.0,
            },
        };
        let problems = preset.validate(&catalogue()).unwrap_err();
        let paths: Vec<String> = problems.iter().map(|p| p.path.join(".")).collect();
        assert_eq!(paths, ["title", "sections.1", "style.font_size"]);
        assert_eq!(problems[1].message, "must be one of summary, rows");
        let none = preset.validate(&[]).unwrap_err();
        assert_eq!(
            none[1].message,
            "this report service has no preset sections"
        );

        let mut t = preset.expand(&[]).unwrap_or_else(|_| ReportTemplate {
            title: "T".into(),
            branding: Branding::default(),
            style: Style::default(),
            sections: vec![Section::new("", "S").columns(["ok", "", &"x".repeat(65)])],
            filter: Filter::new(),
        });
        t.sections
            .push(Section::new("rows", "R").columns(vec!["c"; MAX_COLUMNS + 1]));
        let paths: Vec<String> = t
            .validate()
            .unwrap_err()
            .iter()
            .map(|p| p.path.join("."))
            .collect();
        assert_eq!(
            paths,
            [
                "sections.0.kind",
                "sections.0.columns.1",
                "sections.0.columns.2",
                "sections.1.columns"
            ]
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
