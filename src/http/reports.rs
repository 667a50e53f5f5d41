//! The reports routes: preflight, build, build status, stored templates.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::ToSchema;

use super::body::{Fields, JsonBody, RouteParam};
use super::etag::tagged_json;
use super::jobs::parse_id;
use super::view::format_time;
use super::{ApiError, ApiState, FieldError, Principal, Scope};
use crate::report::{
    EmptySection, Preset, Problem, REPORT_JOB_TYPE, ReportError, ReportFormat, ReportTemplate,
    Reports, TemplateId,
};
use crate::{ArtifactKey, DEFAULT_URL_TTL, Job, JobStatus, TenantId};

/// The body of preflight and build: exactly one of `preset` or `template_id`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct ReportRequest {
    /// The short form, expanded into a template.
    preset: Option<Preset>,
    /// A stored template of the tenant.
    template_id: Option<String>,
    /// `pdf` (default), `html` or `csv`.
    format: Option<ReportFormat>,
}

/// `POST /reports/preflight`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PreflightView {
    /// The sections with nothing to show; empty when a build would succeed.
    empty_sections: Vec<EmptySection>,
}

/// A report build.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BuildView {
    /// The build's job id.
    id: String,
    /// `queued`, `running`, `completed` or `failed`.
    #[schema(pattern = "^(queued|running|completed|failed)$")]
    status: String,
    /// A fresh one-hour download URL, once completed.
    presigned_url: Option<String>,
    /// When `presigned_url` expires.
    url_expires_at: Option<String>,
    /// The file's size, once completed (0 before).
    file_size_bytes: u64,
    /// Why it failed, once failed.
    error_message: Option<String>,
    /// When it was requested.
    created_at: String,
    /// When it ended.
    completed_at: Option<String>,
}

pub(super) fn reports(state: &ApiState) -> Result<&Reports, ApiError> {
    state.reports.as_ref().ok_or_else(ApiError::internal)
}

pub(super) fn template_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "template_not_found",
        format!("template {id} not found"),
    )
}

pub(super) fn problems(prefix: &str, problems: Vec<Problem>) -> Vec<FieldError> {
    problems
        .into_iter()
        .map(|p| {
            let loc = match p.path.is_empty() {
                true => prefix.to_owned(),
                false => format!("{prefix}.{}", p.path.join(".")),
            };
            FieldError::new(&loc, p.kind, p.message)
        })
        .collect()
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Invalid(p) => ApiError::validation(problems("body", p)),
            ReportError::EmptySections(sections) => {
                let detail = format!("{} sections have nothing to show", sections.len());
                let list = serde_json::to_value(&sections).unwrap_or_default();
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "empty_sections", detail)
                    .with_empty_sections(list)
            }
            ReportError::TemplateNotFound { id } => template_not_found(&id.to_string()),
            ReportError::Engine(e) => ApiError::from(e),
        }
    }
}

/// Deserializes the field `name` of a body into `T`, naming the bad spot on failure.
pub(super) fn typed<T: DeserializeOwned>(f: &mut Fields<'_>, name: &str) -> Option<T> {
    let value = f.value(name)?;
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(t) => Some(t),
        Err(e) => {
            let mut at = vec![name.to_owned()];
            at.extend(crate::error::serde_path(e.path()));
            f.error(&at.join("."), "invalid", e.into_inner().to_string());
            None
        }
    }
}

/// Where a request's template comes from.
pub(super) enum Source {
    /// Given in the body (a preset, expanded, or a full template), and checked.
    Inline(Box<ReportTemplate>),
    /// A stored template of the tenant.
    Stored(TemplateId),
}

/// A checked template, or its problems recorded under `body.{field}`.
fn checked(
    f: &mut Fields<'_>,
    field: &str,
    template: Result<ReportTemplate, Vec<Problem>>,
) -> Option<Source> {
    match template {
        Ok(t) => Some(Source::Inline(Box::new(t))),
        Err(p) => {
            f.absorb(problems(&format!("body.{field}"), p));
            None
        }
    }
}

/// Exactly one of `preset` and `other` (`template_id`, or the full-form `template`).
pub(super) fn source(reports: &Reports, f: &mut Fields<'_>, other: &str) -> Option<Source> {
    match (f.value("preset").is_some(), f.value(other).is_some()) {
        (true, false) => {
            let preset: Preset = typed(f, "preset")?;
            checked(f, "preset", reports.expand(&preset))
        }
        (false, true) if other == "template" => {
            let t: ReportTemplate = typed(f, "template")?;
            checked(f, "template", reports.validate(&t).map(|()| t))
        }
        (false, true) => match f.string(other, 64)?.parse() {
            Ok(id) => Some(Source::Stored(id)),
            Err(_) => {
                f.error(other, "invalid", "not a template id");
                None
            }
        },
        _ => {
            let msg = format!("give exactly one of preset or {other}");
            f.error("preset", "invalid", &msg);
            f.error(other, "invalid", msg);
            None
        }
    }
}

/// The template and format a preflight or build asks for.
async fn resolve(
    reports: &Reports,
    tenant: &TenantId,
    body: &Value,
) -> Result<(ReportTemplate, ReportFormat), ApiError> {
    let mut f = Fields::of(body, "body")?;
    let source = source(reports, &mut f, "template_id");
    let format = if f.value("format").is_some() {
        typed(&mut f, "format")
    } else {
        Some(ReportFormat::Pdf)
    };
    f.finish()?;
    // A field that failed was recorded, so `finish` refused the request.
    let (Some(source), Some(format)) = (source, format) else {
        return Err(ApiError::internal());
    };
    let template = match source {
        Source::Inline(template) => *template,
        Source::Stored(id) => {
            let template = reports.stored(tenant, id).await?.template;
            // Saved templates were checked, but perhaps under older, looser limits.
            reports
                .validate(&template)
                .map_err(|p| ApiError::validation(problems("body.template_id", p)))?;
            template
        }
    };
    Ok((template, format))
}

/// Which sections of a report would be empty.
#[utoipa::path(post, path = "/reports/preflight", tag = "reports",
    request_body = ReportRequest,
    responses(
        (status = 200, description = "The empty sections (none: a build would succeed)", body = PreflightView),
        (status = 404, description = "No such template for this tenant (`template_not_found`)", body = super::ErrorBody),
    ))]
pub(crate) async fn preflight(
    State(state): State<ApiState>,
    principal: Principal,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let reports = reports(&state)?;
    let (template, _) = resolve(reports, &principal.tenant, &body).await?;
    let empty_sections = reports.preflight(&principal.tenant, &template).await?;
    Ok(axum::Json(PreflightView { empty_sections }).into_response())
}

/// Build a report: `202` with the build, or `422 empty_sections`.
#[utoipa::path(post, path = "/reports/build", tag = "reports",
    request_body = ReportRequest,
    responses(
        (status = 202, description = "The build is queued", body = BuildView,
            headers(("Location" = String, description = "Where to poll the build"))),
        (status = 404, description = "No such template for this tenant (`template_not_found`)", body = super::ErrorBody),
        (status = 422, description = "Invalid fields (`validation_error`), or empty sections (`empty_sections`, with the list)", body = super::ErrorBody),
    ))]
pub(crate) async fn build(
    State(state): State<ApiState>,
    principal: Principal,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let reports = reports(&state)?;
    let (template, format) = resolve(reports, &principal.tenant, &body).await?;
    let job = reports
        .build(&state.engine, &principal.tenant, template, format)
        .await?;
    let view = build_view(&state, &job).await?;
    let response = (StatusCode::ACCEPTED, axum::Json(view)).into_response();
    let path = format!("/reports/build/{}", job.id);
    Ok(super::located(response, &original, &uri, &path))
}

async fn build_view(state: &ApiState, job: &Job) -> Result<BuildView, ApiError> {
    let status = match job.status {
        JobStatus::Waiting | JobStatus::Queued => "queued",
        JobStatus::Running => "running",
        JobStatus::Completed => "completed",
        JobStatus::Failed | JobStatus::Cancelled => "failed",
    };
    let mut view = BuildView {
        id: job.id.to_string(),
        status: status.to_owned(),
        presigned_url: None,
        url_expires_at: None,
        file_size_bytes: 0,
        error_message: None,
        created_at: format_time(job.created_at),
        completed_at: job.completed_at.map(format_time),
    };
    match job.status {
        JobStatus::Completed => {
            let artifact = job
                .artifacts
                .iter()
                .rev()
                .find(|a| a.role == crate::ArtifactRole::Final);
            if let Some(a) = artifact {
                let key = ArtifactKey::of_record(job.tenant.clone(), job.id, a)?;
                let url = state
                    .engine
                    .artifacts()
                    .signed_url(&key, &a.content_type, DEFAULT_URL_TTL)
                    .await?;
                view.presigned_url = Some(url.url);
                view.url_expires_at = Some(format_time(url.expires_at));
                view.file_size_bytes = a.size_bytes;
            }
        }
        JobStatus::Cancelled => view.error_message = Some("the build was cancelled".into()),
        JobStatus::Failed => view.error_message = job.error.clone(),
        _ => {}
    }
    Ok(view)
}

/// A report build's status, with a fresh download URL once completed.
#[utoipa::path(get, path = "/reports/build/{id}", tag = "reports",
    params(("id" = String, Path, description = "The build's id")),
    responses(
        (status = 200, description = "The build", body = BuildView),
        (status = 304, description = "Unchanged since the ETag the client has"),
        (status = 404, description = "No such build for this tenant (`job_not_found`)", body = super::ErrorBody),
    ))]
pub(crate) async fn build_status(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let id = parse_id(&id)?;
    let job = state.engine.get(&principal.tenant, id).await?;
    if job.job_type.as_str() != REPORT_JOB_TYPE {
        return Err(crate::Error::NotFound { id }.into());
    }
    let view = build_view(&state, &job).await?;
    let mut response = tagged_json(StatusCode::OK, &view, &headers)?;
    if !job.status.is_terminal() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}
