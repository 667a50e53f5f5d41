//! The jobs routes: submit, poll, events, cancel, list.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::body::{Fields, JsonBody, QueryFields, RouteParam};
use super::etag::{client_has, tagged_json};
use super::view::{EventView, EventsView, JobBatchView, JobListView, JobView, StatusName};
use super::{ApiError, ApiState, Principal, Scope, located};
use crate::{
    EventParams, Job, JobId, JobStatus, JobType, ListParams, MAX_ATTEMPTS_LIMIT,
    MAX_CONCURRENCY_KEY_LEN, MAX_IDEMPOTENCY_KEY_LEN, MAX_PRIORITY, MIN_PRIORITY, NewJob,
    QueueName,
};

/// Longest `?wait=` of a long poll, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;

/// The body of `POST /jobs` (documentation; the handler reads fields one by one).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct SubmitRequest {
    /// A registered job type.
    #[serde(rename = "type")]
    job_type: String,
    /// The executor's input; `{}` when absent.
    input: Option<Value>,
    /// −1000…1000, higher first; 0 when absent.
    #[schema(minimum = -1000, maximum = 1000)]
    priority: Option<i32>,
    /// Not started before this time (RFC 3339).
    #[schema(format = DateTime)]
    run_at: Option<String>,
    /// 1…25; the type's retry policy when absent.
    #[schema(minimum = 1, maximum = 25)]
    max_attempts: Option<u32>,
    /// Makes the submit idempotent; same as the `Idempotency-Key` header.
    #[schema(max_length = 255)]
    idempotency_key: Option<String>,
    /// The queue it waits in: 1–64 characters of `a-z 0-9 _ . -`; `default` when absent.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9_.-]+$")]
    queue: Option<String>,
    /// Jobs sharing a key count together against their queue's `max_running_per_key`.
    #[schema(min_length = 1, max_length = 128)]
    concurrency_key: Option<String>,
}

/// A job id from the path: a ULID or a UUID, else `400 invalid_id`.
pub(crate) fn parse_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| ApiError::invalid_id(raw))
}

/// A job response: ETag, and `Retry-After` as a polling hint while not terminal.
pub(super) async fn job_response(
    state: &ApiState,
    status: StatusCode,
    job: &Job,
    request: &HeaderMap,
) -> Result<Response, ApiError> {
    let view = JobView::build(&state.engine, job).await?;
    let mut response = tagged_json(status, &view, request)?;
    if !job.status.is_terminal() {
        let hint = if job.status == JobStatus::Running {
            "1"
        } else {
            "2"
        };
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(hint));
    }
    Ok(response)
}

/// The job a submit body asks for, every bad field named.
fn new_job(body: &Value, header_key: Option<&str>, known: &[JobType]) -> Result<NewJob, ApiError> {
    new_job_at(body, "body", header_key, known)
}

/// [`new_job`] of a body found at `prefix` (`body.jobs.3` for a workflow's job).
pub(super) fn new_job_at(
    body: &Value,
    prefix: &str,
    header_key: Option<&str>,
    known: &[JobType],
) -> Result<NewJob, ApiError> {
    let mut f = Fields::of(body, prefix)?;
    let job_type = f.required_string("type", 256);
    let input = f.value("input").cloned();
    let priority = f.int(
        "priority",
        i64::from(MIN_PRIORITY)..=i64::from(MAX_PRIORITY),
    );
    let max_attempts = f.int("max_attempts", 1..=i64::from(MAX_ATTEMPTS_LIMIT));
    let run_at = f
        .string("run_at", 64)
        .and_then(|s| match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                f.error("run_at", "invalid", "must be an RFC 3339 time");
                None
            }
        });
    let queue = f
        .string("queue", 64)
        .and_then(|q| match QueueName::new(&q) {
            Ok(q) => Some(q),
            Err(_) => {
                let msg = "must be 1 to 64 characters of a-z 0-9 _ . -";
                f.error("queue", "invalid", msg);
                None
            }
        });
    let concurrency_key = f.string("concurrency_key", MAX_CONCURRENCY_KEY_LEN);
    if concurrency_key
        .as_deref()
        .is_some_and(|k| k.is_empty() || k.chars().any(char::is_control))
    {
        let msg = "must not be empty or have control characters";
        f.error("concurrency_key", "invalid", msg);
    }
    let body_key = f.string("idempotency_key", MAX_IDEMPOTENCY_KEY_LEN);
    if let (Some(b), Some(h)) = (&body_key, header_key)
        && b != h
    {
        f.error(
            "idempotency_key",
            "conflict",
            "differs from the Idempotency-Key header",
        );
    }
    f.finish()?;
    let Some(job_type) = job_type else {
        return Err(ApiError::internal());
    };
    // A name that cannot be a type is simply not a registered one.
    let job_type = JobType::new(&job_type).map_err(|_| crate::Error::UnknownJobType {
        job_type,
        known: known.iter().map(ToString::to_string).collect(),
    })?;
    let input = input.unwrap_or_else(|| Value::Object(Default::default()));
    let mut job = NewJob::new(job_type, input);
    if let Some(p) = priority {
        job = job.priority(p as i32);
    }
    if let Some(n) = max_attempts {
        job = job.max_attempts(n as u32);
    }
    if let Some(t) = run_at {
        job = job.run_at(t);
    }
    if let Some(key) = body_key.or(header_key.map(str::to_owned)) {
        job = job.idempotency_key(key);
    }
    if let Some(queue) = queue {
        job = job.queue(queue);
    }
    if let Some(key) = concurrency_key {
        job = job.concurrency_key(key);
    }
    Ok(job)
}

/// Submit a job.
#[utoipa::path(post, path = "/jobs", tag = "jobs",
    request_body = SubmitRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the submit idempotent (same as the body field)"),
        super::trace::TraceHeaders,
    ),
    responses(
        (status = 202, description = "Accepted: the job is queued", body = JobView,
            headers(("Location" = String, description = "Where to poll the job"), ("ETag" = String, description = "The body's version"))),
        (status = 200, description = "An earlier job with the same idempotency key, type and input", body = JobView),
        (status = 409, description = "The idempotency key was used for other work (`already_exists`)", body = super::ErrorBody),
        (status = 429, description = "The tenant is at its quota of unfinished jobs (`quota_exceeded`), with `Retry-After`; nothing was created", body = super::ErrorBody),
    ))]
pub(crate) async fn submit(
    State(state): State<ApiState>,
    principal: Principal,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let header_key = match headers.get("idempotency-key").map(HeaderValue::to_str) {
        None => None,
        Some(Ok(k)) => Some(k),
        Some(Err(_)) => {
            return Err(ApiError::field(
                "header.Idempotency-Key",
                "invalid",
                "must be visible ASCII",
            ));
        }
    };
    let mut job = new_job(&body, header_key, state.engine.job_types())?;
    job.trace = super::trace::submitter(&headers);
    let submitted = state.engine.submit(&principal.tenant, job).await?;
    let status = if submitted.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let response = job_response(&state, status, &submitted.job, &HeaderMap::new()).await?;
    let path = format!("/jobs/{}", submitted.job.id);
    Ok(located(response, &original, &uri, &path))
}

/// Most jobs one `POST /jobs/batch` may submit.
pub const MAX_BATCH_JOBS: usize = 1000;

/// The body of `POST /jobs/batch` (documentation; the handler reads fields one by one).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct BatchRequest {
    /// 1 to 1,000 jobs, each the body of `POST /jobs`.
    #[schema(min_items = 1, max_items = 1000)]
    jobs: Vec<SubmitRequest>,
}

/// Submit many jobs at once: all of them or none.
#[utoipa::path(post, path = "/jobs/batch", tag = "jobs", operation_id = "submit_batch",
    request_body = BatchRequest,
    params(
        super::trace::TraceHeaders,
    ),
    responses(
        (status = 202, description = "Accepted: every job is stored, in order (a job whose idempotency key matched an earlier one is that one)", body = JobBatchView),
        (status = 200, description = "Every job was an earlier one with the same idempotency key, type and input", body = JobBatchView),
        (status = 400, description = "An unknown job type (`unknown_job_type`); nothing was created", body = super::ErrorBody),
        (status = 409, description = "An idempotency key was used for other work (`already_exists`); nothing was created", body = super::ErrorBody),
        (status = 422, description = "A bad job (`validation_error`, `loc` from `[\"body\", \"jobs\", i]`) or not 1 to 1,000 jobs; nothing was created", body = super::ErrorBody),
        (status = 429, description = "The tenant's quota would be passed (`quota_exceeded`); nothing was created", body = super::ErrorBody),
    ))]
pub(crate) async fn submit_batch(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let mut f = Fields::of(&body, "body")?;
    f.refuse_others(&["jobs"]);
    let jobs = f.required_list("jobs", MAX_BATCH_JOBS);
    f.finish()?;
    let trace = super::trace::submitter(&headers);
    let known = state.engine.job_types();
    let jobs = jobs
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, body)| {
            let mut job = new_job_at(body, &format!("body.jobs.{i}"), None, known)?;
            job.trace.clone_from(&trace);
            Ok(job)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let submitted = state.engine.submit_many(&principal.tenant, jobs).await?;
    let status = if submitted.iter().any(|s| s.created) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let mut views = Vec::with_capacity(submitted.len());
    for s in &submitted {
        views.push(JobView::build(&state.engine, &s.job).await?);
    }
    Ok((status, axum::Json(JobBatchView { jobs: views })).into_response())
}

/// Poll a job; `?wait=` long-polls for a change.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id: a ULID, or the same value as a UUID"),
        ("wait" = Option<u64>, Query, minimum = 0, maximum = 30, description = "Seconds to wait for a change (0–30)"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag the client has"),
    ),
    responses(
        (status = 200, description = "The job", body = JobView,
            headers(("ETag" = String, description = "The body's version"), ("Retry-After" = Option<u64>, description = "Seconds until a useful next poll, while not terminal"))),
        (status = 304, description = "Unchanged since the ETag the client has"),
        (status = 404, description = "No such job for this tenant (`job_not_found`)", body = super::ErrorBody),
    ))]
pub(crate) async fn get_job(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let id = parse_id(&id)?;
    let mut q = QueryFields::new(query);
    let wait = q.int("wait", 0..=MAX_WAIT_SECS, 0);
    q.finish()?;
    let mut job = state.engine.get(&principal.tenant, id).await?;
    if wait > 0 && !job.status.is_terminal() {
        // Wait only when the client is up to date (or says nothing of what it has).
        let has_current = !headers.contains_key(header::IF_NONE_MATCH)
            || client_has(&headers, &JobView::build(&state.engine, &job).await?)?;
        if has_current {
            job = state
                .engine
                .wait_for_change(
                    &principal.tenant,
                    id,
                    job.revision,
                    Duration::from_secs(wait),
                )
                .await?;
        }
    }
    job_response(&state, StatusCode::OK, &job, &headers).await
}

/// A job's public timeline after a cursor.
#[utoipa::path(get, path = "/jobs/{id}/events", tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id"),
        ("after" = Option<u64>, Query, minimum = 0, description = "Only events with a greater seq (default 0)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 100)"),
        ("wait" = Option<u64>, Query, minimum = 0, maximum = 30, description = "Seconds to wait for at least one new event"),
    ),
    responses(
        (status = 200, description = "Events, oldest first", body = EventsView),
        (status = 404, description = "No such job for this tenant (`job_not_found`)", body = super::ErrorBody),
    ))]
pub(crate) async fn events(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let id = parse_id(&id)?;
    let mut q = QueryFields::new(query);
    let after = q.int("after", 0..=i64::MAX as u64, 0);
    let limit = q.int("limit", 1..=1000, 100);
    let wait = q.int("wait", 0..=MAX_WAIT_SECS, 0);
    q.finish()?;
    let params = EventParams::default().after(after).limit(limit as usize);
    let tenant = &principal.tenant;
    let page = if wait > 0 {
        let timeout = Duration::from_secs(wait);
        state
            .engine
            .wait_for_events(tenant, id, params, timeout)
            .await?
    } else {
        state.engine.events(tenant, id, params).await?
    };
    let view = EventsView {
        next_after: page.events.last().map_or(after, |e| e.seq),
        events: page.events.iter().map(EventView::from).collect(),
        terminal: page.terminal,
    };
    Ok(axum::Json(view).into_response())
}

/// Cancel a job.
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "Cancelled (queued), or asked to stop (running)", body = JobView),
        (status = 404, description = "No such job for this tenant (`job_not_found`)", body = super::ErrorBody),
        (status = 409, description = "The job is already terminal (`conflict`)", body = super::ErrorBody),
    ))]
pub(crate) async fn cancel(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let id = parse_id(&id)?;
    let job = state.engine.cancel(&principal.tenant, id).await?;
    job_response(&state, StatusCode::ACCEPTED, &job, &HeaderMap::new()).await
}

/// The tag of job list cursors.
const JOBS: &str = "jw1:";

/// A page cursor: the last id of a page, tagged with what it pages, so a cursor of one
/// list is refused by another.
pub(super) fn encode_cursor(tag: &str, id: JobId) -> String {
    B64.encode(format!("{tag}{id}"))
}

/// The id in a cursor that [`encode_cursor`] made with `tag`.
pub(super) fn decode_cursor(tag: &str, cursor: &str) -> Option<JobId> {
    let text = String::from_utf8(B64.decode(cursor).ok()?).ok()?;
    text.strip_prefix(tag)?.parse().ok()
}

/// The `cursor` query parameter, decoded: `Ok(None)` when absent.
///
/// # Errors
/// `400 invalid_request` for a cursor this server did not mint.
pub(super) fn cursor_param(q: &QueryFields, tag: &str) -> Result<Option<JobId>, ApiError> {
    match q.string("cursor") {
        None => Ok(None),
        Some(c) => decode_cursor(tag, c)
            .map(Some)
            .ok_or_else(|| ApiError::invalid_request("the cursor was not issued by this server")),
    }
}

/// The tenant's jobs, newest first.
#[utoipa::path(get, path = "/jobs", tag = "jobs",
    params(
        ("status" = Option<StatusName>, Query, description = "Only jobs in this status"),
        ("type" = Option<String>, Query, description = "Only jobs of this type"),
        ("queue" = Option<String>, Query, description = "Only jobs in this queue"),
        ("workflow_id" = Option<String>, Query, description = "Only jobs of this workflow"),
        ("schedule_id" = Option<String>, Query, description = "Only jobs made by this schedule's ticks"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of jobs", body = JobListView)))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let mut q = QueryFields::new(query);
    let limit = q.int("limit", 1..=1000, 50);
    let mut params = ListParams::default().limit(limit as usize);
    if let Some(s) = q.string("status") {
        match s.parse::<JobStatus>() {
            Ok(s) => params = params.status(s),
            Err(_) => {
                let msg = "must be waiting, queued, running, completed, failed or cancelled";
                q.error("status", "invalid", msg);
            }
        }
    }
    if let Some(t) = q.string("type") {
        match JobType::new(t) {
            Ok(t) => params = params.job_type(t),
            Err(_) => q.error("type", "invalid", "not a job type name"),
        }
    }
    if let Some(name) = q.string("queue") {
        match QueueName::new(name) {
            Ok(name) => params = params.queue(name),
            Err(_) => q.error("queue", "invalid", "not a queue name"),
        }
    }
    if let Some(id) = q.string("workflow_id") {
        match id.parse() {
            Ok(id) => params = params.workflow(id),
            Err(_) => q.error("workflow_id", "invalid", "not a workflow id"),
        }
    }
    if let Some(id) = q.string("schedule_id") {
        match id.parse() {
            Ok(id) => params = params.schedule(id),
            Err(_) => q.error("schedule_id", "invalid", "not a schedule id"),
        }
    }
    let before = cursor_param(&q, JOBS);
    q.finish()?;
    params = params.before(before?);
    let page = state.engine.list(&principal.tenant, params).await?;
    let mut jobs = Vec::with_capacity(page.jobs.len());
    for job in &page.jobs {
        jobs.push(JobView::build(&state.engine, job).await?);
    }
    let view = JobListView {
        jobs,
        next_cursor: page.next.map(|id| encode_cursor(JOBS, id)),
    };
    Ok(axum::Json(view).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let id = JobId::new();
        assert_eq!(decode_cursor(JOBS, &encode_cursor(JOBS, id)), Some(id));
        assert_eq!(decode_cursor(JOBS, "abc"), None);
        assert_eq!(decode_cursor(JOBS, &B64.encode(id.to_string())), None);
        assert_eq!(decode_cursor("tp1:", &encode_cursor(JOBS, id)), None);
    }
}
