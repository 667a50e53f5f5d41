//! The stored-template routes of the reports API.

use std::collections::HashMap;

use axum::extract::{OriginalUri, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::body::{Fields, JsonBody, QueryFields, RouteParam};
use super::jobs::{cursor_param, encode_cursor};
use super::reports::{Source, reports, source, template_not_found};
use super::view::format_time;
use super::{ApiError, ApiState, Principal, Scope};
use crate::JobId;
use crate::report::{Preset, ReportTemplate, Reports, StoredTemplate, TemplateId};
use crate::store::DocumentPage;

/// The body of template create and update: a name and exactly one of `preset` or `template`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct TemplateRequest {
    /// The template's name.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// The short form, expanded on save.
    preset: Option<Preset>,
    /// The full form.
    template: Option<ReportTemplate>,
}

/// A stored template.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TemplateView {
    /// Its id.
    id: String,
    /// Its name.
    name: String,
    /// The full form.
    template: ReportTemplate,
    /// When it was created.
    created_at: String,
    /// When it last changed.
    updated_at: String,
}

/// A page of the tenant's templates.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TemplateList {
    /// Newest first.
    templates: Vec<TemplateView>,
    /// The cursor of the next page, if there is one.
    next_cursor: Option<String>,
}

/// The tag of template list cursors.
const TEMPLATES: &str = "tp1:";

impl From<StoredTemplate> for TemplateView {
    fn from(t: StoredTemplate) -> Self {
        TemplateView {
            id: t.id.to_string(),
            name: t.name,
            template: t.template,
            created_at: format_time(t.created_at),
            updated_at: format_time(t.updated_at),
        }
    }
}

fn template_fields(reports: &Reports, body: &Value) -> Result<(String, ReportTemplate), ApiError> {
    let mut f = Fields::of(body, "body")?;
    let name = f.required_string("name", 200);
    let template = source(reports, &mut f, "template");
    f.finish()?;
    match (name, template) {
        (Some(name), Some(Source::Inline(template))) => Ok((name, *template)),
        _ => Err(ApiError::internal()),
    }
}

fn template_id(raw: &str) -> Result<TemplateId, ApiError> {
    raw.parse().map_err(|_| template_not_found(raw))
}

/// Store a template.
#[utoipa::path(post, path = "/reports/templates", tag = "reports", operation_id = "create_template",
    request_body = TemplateRequest,
    responses((status = 201, description = "Stored", body = TemplateView,
        headers(("Location" = String, description = "The template's URL")))))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let (name, template) = template_fields(reports(&state)?, &body)?;
    let stored = StoredTemplate::new(principal.tenant.clone(), name, template);
    let stored = reports(&state)?.templates().create(stored).await?;
    let path = format!("/reports/templates/{}", stored.id);
    let response = (StatusCode::CREATED, axum::Json(TemplateView::from(stored))).into_response();
    Ok(super::located(response, &original, &uri, &path))
}

/// The tenant's templates, newest first.
#[utoipa::path(get, path = "/reports/templates", tag = "reports", operation_id = "list_templates",
    params(
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 100, description = "Page size (default 20; templates are up to 64 KiB each)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of templates, newest first", body = TemplateList)))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    Query(query): Query<HashMap<String, String>>,
) -> Result<axum::Json<TemplateList>, ApiError> {
    principal.require(Scope::Read)?;
    let mut q = QueryFields::new(query);
    let limit = q.int("limit", 1..=100, 20) as usize;
    let before = cursor_param(&q, TEMPLATES);
    q.finish()?;
    let before = before?.map(|id| TemplateId::from_u128(id.to_u128()));
    // One more than asked tells whether there is a next page.
    let page = DocumentPage::default().limit(limit + 1).before(before);
    let mut found = reports(&state)?
        .templates()
        .list(&principal.tenant, page)
        .await?;
    let more = found.len() > limit;
    found.truncate(limit);
    let next_cursor = match found.last() {
        Some(last) if more => Some(encode_cursor(
            TEMPLATES,
            JobId::from_u128(last.id.to_u128()),
        )),
        _ => None,
    };
    Ok(axum::Json(TemplateList {
        templates: found.into_iter().map(TemplateView::from).collect(),
        next_cursor,
    }))
}

/// One template.
#[utoipa::path(get, path = "/reports/templates/{id}", tag = "reports", operation_id = "get_template",
    params(("id" = String, Path, description = "The template's id")),
    responses(
        (status = 200, description = "The template", body = TemplateView),
        (status = 404, description = "No such template for this tenant (`template_not_found`)", body = super::ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
) -> Result<axum::Json<TemplateView>, ApiError> {
    principal.require(Scope::Read)?;
    let stored = reports(&state)?
        .stored(&principal.tenant, template_id(&id)?)
        .await?;
    Ok(axum::Json(stored.into()))
}

/// Replace a template.
#[utoipa::path(put, path = "/reports/templates/{id}", tag = "reports", operation_id = "update_template",
    params(("id" = String, Path, description = "The template's id")),
    request_body = TemplateRequest,
    responses(
        (status = 200, description = "The template as stored now", body = TemplateView),
        (status = 404, description = "No such template for this tenant (`template_not_found`)", body = super::ErrorBody),
    ))]
pub(crate) async fn update(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
    JsonBody(body): JsonBody,
) -> Result<axum::Json<TemplateView>, ApiError> {
    principal.require(Scope::Write)?;
    let id = template_id(&id)?;
    let (name, template) = template_fields(reports(&state)?, &body)?;
    let store = reports(&state)?.templates();
    let stored = store
        .update(&principal.tenant, id, &name, &template)
        .await?;
    stored
        .map(|t| axum::Json(t.into()))
        .ok_or_else(|| template_not_found(&id.to_string()))
}

/// Delete a template.
#[utoipa::path(delete, path = "/reports/templates/{id}", tag = "reports", operation_id = "delete_template",
    params(("id" = String, Path, description = "The template's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such template for this tenant (`template_not_found`)", body = super::ErrorBody),
    ))]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::Write)?;
    let id = template_id(&id)?;
    if reports(&state)?
        .templates()
        .delete(&principal.tenant, id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(template_not_found(&id.to_string()))
    }
}
