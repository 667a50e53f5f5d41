//! Reports (feature `reports`): templates, preflight, and PDF rendering as jobs.
//!
//! A [`ReportTemplate`] (or the short [`Preset`] a front end posts) names a title, branding,
//! a [`Style`] (one of the 14 standard PDF fonts and a size) and ordered [`Section`]s. The
//! host implements [`ReportData`], which answers each section with paragraphs and typed
//! [`Table`]s ([`SectionData`]) under the template's filter, and says which sections its
//! presets name and what its kinds, columns and filters allow. The library lays them out:
//! tables that page with their header repeated, bar charts drawn as vector graphics, a
//! PDF outline with a bookmark per section, and the title, producer and creation date in
//! the document's metadata. [`Reports::preflight`] lists the sections that would be empty;
//! [`Reports::build`] refuses such a report, and otherwise submits a `REPORT_GENERATION`
//! job that [`ReportExecutor`] renders into the job's final artifact.
//!
//! ```
//! use jobworks::report::{render, Cell, Column, ColumnKind, ReportFormat};
//! use jobworks::report::{ReportTemplate, SectionData, Table};
//! let template: ReportTemplate = serde_json::from_value(serde_json::json!({
//!     "title": "Orders this week",
//!     "sections": [{ "title": "By region", "kind": "regions", "chart": "bar" }],
//!     "style": { "font": "Helvetica", "font_size": 10 }
//! }))?;
//! let regions = Table::new([
//!     Column::new("region", "Region", ColumnKind::Label),
//!     Column::new("orders", "Orders", ColumnKind::Number),
//!     Column::new("late", "Late", ColumnKind::Percent),
//! ])
//! .row([Cell::from("North"), Cell::from(1204), Cell::from(0.031)])
//! .row([Cell::from("South"), Cell::from(877), Cell::from(0.054)]);
//! let section = SectionData::default().paragraph("Orders placed, by region.").table(regions);
//! let pdf = render(&template, &[section], ReportFormat::Pdf)?;
//! assert!(pdf.starts_with(b"%PDF-"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod budget;
mod data;
mod document;
mod fonts;
mod layout;
mod model;
mod pdf;
mod source;
mod templates;
mod text;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::executor::{ArtifactSpec, Executor, JobContext, JobError};
use crate::store::DocumentStore;
use crate::{Engine, Job, JobType, NewJob, TenantId};

pub use budget::{BudgetExceeded, RenderBudget};
pub use data::{Cell, Column, ColumnKind, SectionData, Table};
pub use fonts::StandardFont;
pub use model::{
    Branding, Chart, Filter, MAX_COLUMNS, MAX_FONT_SIZE, MAX_KEY_LEN, MAX_SECTIONS,
    MAX_SUMMARY_LEN, MAX_TEMPLATE_BYTES, MAX_TEXT_LEN, MIN_FONT_SIZE, Preset, Problem,
    ReportTemplate, Section, Style, parse_filter,
};
pub use source::ReportData;
pub use templates::{StoredTemplate, TemplateId, Templates};

/// The job type of report builds.
pub const REPORT_JOB_TYPE: &str = "REPORT_GENERATION";

/// The output format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum ReportFormat {
    /// A PDF file (the default).
    #[default]
    Pdf,
    /// One HTML page.
    Html,
    /// The report's export table as CSV (see [`Table::export`]).
    Csv,
}

impl ReportFormat {
    /// The artifact's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            ReportFormat::Pdf => "report.pdf",
            ReportFormat::Html => "report.html",
            ReportFormat::Csv => "report.csv",
        }
    }

    /// The artifact's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Pdf => "application/pdf",
            ReportFormat::Html => "text/html; charset=utf-8",
            ReportFormat::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The artifact's kind.
    pub fn kind(self) -> &'static str {
        match self {
            ReportFormat::Pdf => "report_pdf",
            ReportFormat::Html => "report_html",
            ReportFormat::Csv => "report_csv",
        }
    }
}

/// A section with nothing to show, as preflight lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct EmptySection {
    /// The preset key of the section, if it has one.
    pub key: Option<String>,
    /// Its title, for clients to show when there is no key.
    pub title: String,
}

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The template or preset is invalid.
    #[error("invalid report template ({} problems)", .0.len())]
    Invalid(Vec<Problem>),
    /// Some sections have nothing to show.
    #[error("{} sections are empty", .0.len())]
    EmptySections(Vec<EmptySection>),
    /// No such stored template for the tenant.
    #[error("template {id} not found")]
    TemplateNotFound {
        /// The id asked for.
        id: TemplateId,
    },
    /// The store, the data source or the engine failed.
    #[error(transparent)]
    Engine(#[from] crate::Error),
}

/// The job type's attempts: a build whose render cannot succeed (or takes the process
/// down) is not tried again and again.
pub const REPORT_MAX_ATTEMPTS: u32 = 2;

/// Renders `template` over what the data source answered for each section (`data[i]`
/// for section `i`) within the default [`RenderBudget`].
///
/// # Errors
/// The limit of the budget that the report would pass.
pub fn render(
    template: &ReportTemplate,
    data: &[SectionData],
    format: ReportFormat,
) -> Result<Vec<u8>, BudgetExceeded> {
    render_within(template, data, format, RenderBudget::default())
}

/// Renders `template` over each section's data within `budget`: layout stops at the
/// first page past the limit, and output at the first byte past it.
///
/// # Errors
/// The limit of the budget that the report would pass.
pub fn render_within(
    template: &ReportTemplate,
    data: &[SectionData],
    format: ReportFormat,
    budget: RenderBudget,
) -> Result<Vec<u8>, BudgetExceeded> {
    let mut meter = budget::Meter::start(budget);
    let text = match format {
        ReportFormat::Pdf => {
            let doc = document::build(template, data, crate::job::now());
            return pdf::render(&doc, &template.style, meter);
        }
        ReportFormat::Html => {
            let doc = document::build(template, data, crate::job::now());
            text::html(&doc, template.style.font.name(), template.style.font_size)
        }
        ReportFormat::Csv => text::csv(document::export_table(template, data).as_deref()),
    };
    meter.bytes(text.len())?;
    Ok(text)
}

/// What the data source answers for each section, in the template's order.
async fn resolve(
    data: &dyn ReportData,
    tenant: &TenantId,
    template: &ReportTemplate,
) -> crate::Result<Vec<SectionData>> {
    let mut out = Vec::with_capacity(template.sections.len());
    for section in &template.sections {
        out.push(data.section(tenant, section, &template.filter).await?);
    }
    Ok(out)
}

/// `template`'s problems: the library's bounds, then the data source's terms (only once
/// the bounds hold, so the data source reads bounded input).
fn validate(data: &dyn ReportData, template: &ReportTemplate) -> Result<(), Vec<Problem>> {
    template.validate()?;
    let problems = data.check(template);
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems),
    }
}

/// The report service: templates, preflight and builds over the host's data.
#[derive(Debug, Clone)]
pub struct Reports {
    data: Arc<dyn ReportData>,
    templates: Templates,
    budget: RenderBudget,
}

/// What a build job carries as input.
#[derive(Debug, Serialize, Deserialize)]
struct BuildInput {
    template: ReportTemplate,
    format: ReportFormat,
}

impl Reports {
    /// Reports over `data`, keeping templates as documents of `documents` (usually the
    /// job store).
    pub fn new(data: impl ReportData, documents: impl DocumentStore) -> Self {
        Reports {
            data: Arc::new(data),
            templates: Templates::new(documents),
            budget: RenderBudget::default(),
        }
    }

    /// What one render may produce and take (the default is [`RenderBudget::default`]).
    pub fn budget(mut self, budget: RenderBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The executor to register for [`REPORT_JOB_TYPE`].
    pub fn executor(&self) -> ReportExecutor {
        ReportExecutor {
            data: self.data.clone(),
            budget: self.budget,
        }
    }

    /// The stored templates.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// A stored template of the tenant.
    ///
    /// # Errors
    /// [`ReportError::TemplateNotFound`] when the tenant has none with that id.
    pub async fn stored(
        &self,
        tenant: &TenantId,
        id: TemplateId,
    ) -> Result<StoredTemplate, ReportError> {
        self.templates
            .get(tenant, id)
            .await?
            .ok_or(ReportError::TemplateNotFound { id })
    }

    /// The template `preset` stands for, over the data source's
    /// [`presets`](ReportData::presets), checked as [`validate`](Self::validate) does.
    ///
    /// # Errors
    /// Every problem, each with the path of its field.
    pub fn expand(&self, preset: &Preset) -> Result<ReportTemplate, Vec<Problem>> {
        let template = preset.expand(self.data.presets())?;
        validate(&*self.data, &template)?;
        Ok(template)
    }

    /// Every problem of `template`: the library's bounds
    /// ([`ReportTemplate::validate`]) and then the data source's
    /// [`check`](ReportData::check).
    ///
    /// # Errors
    /// Every problem, each with the path of its field.
    pub fn validate(&self, template: &ReportTemplate) -> Result<(), Vec<Problem>> {
        validate(&*self.data, template)
    }

    /// The sections of `template` that have nothing to show for `tenant`.
    ///
    /// # Errors
    /// [`ReportError::Invalid`] for an invalid template; data source failures.
    pub async fn preflight(
        &self,
        tenant: &TenantId,
        template: &ReportTemplate,
    ) -> Result<Vec<EmptySection>, ReportError> {
        self.validate(template).map_err(ReportError::Invalid)?;
        let data = resolve(&*self.data, tenant, template).await?;
        Ok(template
            .sections
            .iter()
            .zip(&data)
            .filter(|(_, data)| data.is_empty())
            .map(|(s, _)| EmptySection {
                key: s.key.clone(),
                title: s.title.clone(),
            })
            .collect())
    }

    /// Checks `template` as preflight does and, when no section is empty, submits a
    /// build job of [`REPORT_MAX_ATTEMPTS`] attempts.
    ///
    /// # Errors
    /// [`ReportError::EmptySections`] listing the empty sections; [`ReportError::Invalid`];
    /// engine errors (an engine without [`ReportExecutor`] registered answers
    /// [`Error::UnknownJobType`](crate::Error::UnknownJobType)).
    pub async fn build(
        &self,
        engine: &Engine,
        tenant: &TenantId,
        template: ReportTemplate,
        format: ReportFormat,
    ) -> Result<Job, ReportError> {
        let empty = self.preflight(tenant, &template).await?;
        if !empty.is_empty() {
            return Err(ReportError::EmptySections(empty));
        }
        let input = serde_json::to_value(BuildInput { template, format })
            .map_err(|e| crate::Error::invalid("template", e.to_string()))?;
        let job_type = JobType::new(REPORT_JOB_TYPE)?;
        let job = NewJob::new(job_type, input).max_attempts(REPORT_MAX_ATTEMPTS);
        Ok(engine.submit(tenant, job).await?.job)
    }
}

/// Renders report builds: resolves the data, renders, and stores the final artifact.
#[derive(Debug, Clone)]
pub struct ReportExecutor {
    data: Arc<dyn ReportData>,
    budget: RenderBudget,
}

#[async_trait]
impl Executor for ReportExecutor {
    async fn execute(&self, ctx: JobContext) -> Result<Value, JobError> {
        let BuildInput { template, format } = ctx.input()?;
        // Builds come through `Reports::build`, but a job can be submitted by hand too.
        if let Err(problems) = validate(&*self.data, &template) {
            let first = problems
                .first()
                .map(|p| format!("{}: {}", p.path.join("."), p.message));
            return Err(JobError::fail(format!(
                "invalid report template ({})",
                first.unwrap_or_default()
            )));
        }
        ctx.stage("resolving data").await?;
        let data = resolve(&*self.data, ctx.tenant(), &template)
            .await
            .map_err(|e| JobError::retry(format!("the data source failed: {e}")))?;
        ctx.stage("rendering").await?;
        let budget = self.budget;
        let render = move || render_within(&template, &data, format, budget);
        let bytes = tokio::task::spawn_blocking(render)
            .await
            .map_err(|_| JobError::fail("rendering failed"))?
            .map_err(JobError::fail)?;
        ctx.stage("storing").await?;
        let size = bytes.len();
        let spec = ArtifactSpec::new(format.file_name(), format.content_type()).kind(format.kind());
        ctx.put_artifact(spec, bytes).await?;
        Ok(json!({ "file_size_bytes": size, "format": format }))
    }
}
