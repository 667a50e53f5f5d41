//! Operator actions on the principal's own tenant's jobs (scope `admin`): retry, requeue,
//! discard, and bulk actions by a filter.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::body::{Fields, JsonBody, OptionalJsonBody, RouteParam};
use super::jobs::{job_response, parse_id};
use super::view::{JobView, StatusName};
use super::{ApiError, ApiState, Principal, Scope};
use crate::engine::{BulkAction, JobFilter, MAX_BULK};
use crate::job::{JobId, JobStatus, JobType, QueueName};
use crate::store::Operator;

/// The longest `reason` an operator may give, in characters.
const MAX_REASON: usize = 1000;

/// `{ "reason": "…" }`, optional.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // read field by field, for errors that name every bad one
pub(crate) struct ReasonRequest {
    /// Why, for the job's timeline.
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

/// The operator of a request: its principal, with the reason the body gives.
fn operator(principal: &Principal, body: Option<&Value>) -> Result<Operator, ApiError> {
    let mut by = Operator::new(principal.subject.clone());
    if let Some(body) = body {
        let mut f = Fields::of(body, "body")?;
        let reason = f.string("reason", MAX_REASON);
        f.refuse_others(&["reason"]);
        f.finish()?;
        if let Some(reason) = reason {
            by = by.reason(reason);
        }
    }
    Ok(by)
}

/// The job an admin acts on and who acts (with the body's reason): scope first, then the
/// id, then the body.
fn acting(
    principal: &Principal,
    id: &str,
    body: Option<&Value>,
) -> Result<(JobId, Operator), ApiError> {
    principal.require(Scope::Admin)?;
    let id = parse_id(id)?;
    Ok((id, operator(principal, body)?))
}

/// Retry a failed or cancelled job with a fresh attempt budget.
#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "operator", operation_id = "retry_job",
    params(("id" = String, Path, description = "The job's id")),
    request_body(content = Option<ReasonRequest>, description = "Why (optional)"),
    responses(
        (status = 202, description = "Queued again", body = JobView),
        (status = 403, description = "The credential lacks the `admin` scope", body = super::ErrorBody),
        (status = 404, description = "No such job for this tenant (`job_not_found`)", body = super::ErrorBody),
        (status = 409, description = "The job is neither failed nor cancelled (`conflict`)", body = super::ErrorBody),
    ))]
pub(crate) async fn retry(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let (id, by) = acting(&principal, &id, body.as_ref())?;
    let job = state.engine.retry(&principal.tenant, id, &by).await?;
    job_response(&state, StatusCode::ACCEPTED, &job, &HeaderMap::new()).await
}

/// Make a queued job that waits for its `run_at` due now.
#[utoipa::path(post, path = "/jobs/{id}/requeue", tag = "operator", operation_id = "requeue_job",
    params(("id" = String, Path, description = "The job's id")),
    request_body(content = Option<ReasonRequest>, description = "Why (optional)"),
    responses(
        (status = 202, description = "Due now", body = JobView),
        (status = 403, description = "The credential lacks the `admin` scope", body = super::ErrorBody),
        (status = 404, description = "No such job for this tenant (`job_not_found`)", body = super::ErrorBody),
        (status = 409, description = "The job is not queued (`conflict`)", body = super::ErrorBody),
    ))]
pub(crate) async fn requeue(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let (id, by) = acting(&principal, &id, body.as_ref())?;
    let job = state.engine.requeue(&principal.tenant, id, &by).await?;
    job_response(&state, StatusCode::ACCEPTED, &job, &HeaderMap::new()).await
}

/// Delete a finished job with its timeline and artifact bytes.
#[utoipa::path(delete, path = "/jobs/{id}", tag = "operator", operation_id = "discard_job",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "The credential lacks the `admin` scope", body = super::ErrorBody),
        (status = 404, description = "No such job for this tenant (`job_not_found`)", body = super::ErrorBody),
        (status = 409, description = "The job has not finished (`conflict`)", body = super::ErrorBody),
    ))]
pub(crate) async fn discard(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
) -> Result<Response, ApiError> {
    let (id, by) = acting(&principal, &id, None)?;
    state.engine.discard(&principal.tenant, id, &by).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Which jobs a bulk action selects; every condition given must hold.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // read field by field, for errors that name every bad one
pub(crate) struct BulkFilterRequest {
    /// Any of these statuses.
    status: Option<Vec<StatusName>>,
    /// Any of these job types.
    #[serde(rename = "type")]
    job_type: Option<Vec<String>>,
    /// Any of these queues.
    queue: Option<Vec<String>>,
    /// The job's error contains this text.
    #[schema(max_length = 1000)]
    error: Option<String>,
    /// Submitted at or after this time (RFC 3339).
    #[schema(format = DateTime)]
    since: Option<String>,
    /// Submitted at or before this time (RFC 3339).
    #[schema(format = DateTime)]
    until: Option<String>,
}

/// `POST /jobs/bulk`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // read field by field, for errors that name every bad one
pub(crate) struct BulkRequest {
    /// `retry`, `cancel` or `discard`.
    #[schema(pattern = "^(retry|cancel|discard)$")]
    action: String,
    /// Which jobs; all of the tenant's when absent.
    filter: Option<BulkFilterRequest>,
    /// At most this many jobs (1–10,000, default 1,000).
    #[schema(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// Only count what the filter selects.
    dry_run: Option<bool>,
    /// Why, for the jobs' timelines.
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

/// What a bulk action found and did.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BulkView {
    /// Jobs the filter selected (at most `limit`).
    pub matched: u64,
    /// Jobs the action changed (0 on a dry run).
    pub applied: u64,
}

/// A list of names of one kind, each checked by `parse`.
fn names<T>(
    f: &mut Fields<'_>,
    filter: &Value,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Vec<T> {
    let Some(v) = filter.get(name).filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let Some(items) = v.as_array().filter(|a| a.len() <= 100) else {
        f.error(name, "type_error", "must be a list of at most 100 names");
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str().and_then(&parse) {
            Some(t) => out.push(t),
            None => f.error(name, "invalid", format!("{item} is not one of them")),
        }
    }
    out
}

fn time(f: &mut Fields<'_>, name: &str) -> Option<DateTime<Utc>> {
    let s = f.string(name, 64)?;
    match DateTime::parse_from_rfc3339(&s) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            f.error(name, "invalid", "must be an RFC 3339 time");
            None
        }
    }
}

/// The filter of a bulk body; every bad field is recorded in `outer`.
fn filter_of(outer: &mut Fields<'_>, body: Option<&Value>) -> JobFilter {
    let mut filter = JobFilter::default();
    let Some(value) = body.filter(|v| !v.is_null()) else {
        return filter;
    };
    let Ok(mut f) = Fields::of(value, "body.filter") else {
        outer.error("filter", "type_error", "must be a JSON object");
        return filter;
    };
    filter.statuses = names(&mut f, value, "status", |s| s.parse::<JobStatus>().ok());
    filter.types = names(&mut f, value, "type", |s| JobType::new(s).ok());
    filter.queues = names(&mut f, value, "queue", |s| QueueName::new(s).ok());
    filter.error = f.string("error", MAX_REASON);
    filter.since = time(&mut f, "since");
    filter.until = time(&mut f, "until");
    f.refuse_others(&["status", "type", "queue", "error", "since", "until"]);
    if let Some(errors) = f.into_errors() {
        outer.absorb(errors);
    }
    filter
}

/// Retry, cancel or discard the tenant's jobs that a filter selects, up to a limit; a dry
/// run only counts them.
#[utoipa::path(post, path = "/jobs/bulk", tag = "operator", operation_id = "bulk_jobs",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "What was selected and changed", body = BulkView),
        (status = 403, description = "The credential lacks the `admin` scope", body = super::ErrorBody),
        (status = 422, description = "A bad or unknown field", body = super::ErrorBody),
    ))]
pub(crate) async fn bulk(
    State(state): State<ApiState>,
    principal: Principal,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let mut f = Fields::of(&body, "body")?;
    let action = f
        .required_string("action", 16)
        .and_then(|a| match a.as_str() {
            "retry" => Some(BulkAction::Retry),
            "cancel" => Some(BulkAction::Cancel),
            "discard" => Some(BulkAction::Discard),
            _ => {
                f.error("action", "invalid", "must be retry, cancel or discard");
                None
            }
        });
    let limit = f.int("limit", 1..=MAX_BULK as i64).unwrap_or(1000) as usize;
    let dry_run = f.boolean("dry_run").unwrap_or(false);
    let reason = f.string("reason", MAX_REASON);
    f.refuse_others(&["action", "filter", "limit", "dry_run", "reason"]);
    let filter = filter_of(&mut f, body.get("filter"));
    f.finish()?;
    let action = action.ok_or_else(ApiError::internal)?;
    let mut by = Operator::new(principal.subject.clone());
    if let Some(reason) = reason {
        by = by.reason(reason);
    }
    let report = state
        .engine
        .bulk(&principal.tenant, action, &filter, limit, dry_run, &by)
        .await?;
    let view = BulkView {
        matched: report.matched,
        applied: report.applied,
    };
    Ok(axum::Json(view).into_response())
}
