//! `/queues`: queue settings and counts, which every tenant shares (scope `operator`).

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::body::{Fields, JsonBody, RouteParam};
use super::{ApiError, ApiState, Principal, Scope};
use crate::job::QueueName;
use crate::store::{MAX_QUEUE_LIMIT, QueueInfo, QueuePatch, RateLimit};

/// A queue: its stored settings and its jobs, counted over every tenant.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueueView {
    /// Its name.
    pub name: String,
    /// Whether engines are kept from claiming its jobs.
    pub paused: bool,
    /// At most this many of its jobs run at once across all engines (`null`: no limit).
    pub max_running: Option<u32>,
    /// At most this many of its jobs with one concurrency key run at once (`null`: no
    /// limit).
    pub max_running_per_key: Option<u32>,
    /// Its rate limit (`null`: none).
    pub rate: Option<RateView>,
    /// Its jobs by status.
    pub counts: QueueCountsView,
}

/// A token bucket: `limit` starts per `period_ms`, up to `burst` at once.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RateView {
    /// Starts per period.
    pub limit: u32,
    /// The period, in milliseconds.
    pub period_ms: u64,
    /// Most starts at once.
    pub burst: u32,
}

/// How many of a queue's jobs are in each unfinished (and the failed) status.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueueCountsView {
    /// Waiting for parents (workflows).
    pub waiting: u64,
    /// Queued, due or not.
    pub queued: u64,
    /// Running.
    pub running: u64,
    /// Failed (the dead letters).
    pub failed: u64,
}

/// `{ "queues": [...] }`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueueListView {
    /// Every queue with a job or stored settings, by name.
    pub queues: Vec<QueueView>,
}

impl From<&QueueInfo> for QueueView {
    fn from(q: &QueueInfo) -> Self {
        QueueView {
            name: q.name.to_string(),
            paused: q.settings.paused,
            max_running: q.settings.max_running,
            max_running_per_key: q.settings.max_running_per_key,
            rate: q.settings.rate.map(|r| RateView {
                limit: r.limit,
                period_ms: u64::try_from(r.period.as_millis()).unwrap_or(u64::MAX),
                burst: r.burst,
            }),
            counts: QueueCountsView {
                waiting: 0,
                queued: q.counts.queued,
                running: q.counts.running,
                failed: q.counts.failed,
            },
        }
    }
}

/// The queue named in the path: `422` with `loc` `["path", "name"]` when it cannot be one.
fn queue_name(raw: &str) -> Result<QueueName, ApiError> {
    QueueName::new(raw).map_err(|_| {
        ApiError::field(
            "path.name",
            "invalid",
            "must be 1 to 64 characters of a-z 0-9 _ . -",
        )
    })
}

fn queue_response(info: &QueueInfo) -> Response {
    axum::Json(QueueView::from(info)).into_response()
}

/// Applies `patch` to the queue named `raw` for an operator, answering the queue.
async fn configure(
    state: &ApiState,
    principal: &Principal,
    raw: &str,
    patch: QueuePatch,
) -> Result<Response, ApiError> {
    principal.require(Scope::Operator)?;
    let info = state
        .engine
        .configure_queue(&queue_name(raw)?, patch)
        .await?;
    Ok(queue_response(&info))
}

/// Every queue with a job or stored settings.
#[utoipa::path(get, path = "/queues", tag = "queues", operation_id = "list_queues",
    responses(
        (status = 200, description = "The queues, by name", body = QueueListView),
        (status = 403, description = "The credential lacks the `operator` scope", body = super::ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Operator)?;
    let queues = state.engine.queues().await?;
    let view = QueueListView {
        queues: queues.iter().map(QueueView::from).collect(),
    };
    Ok(axum::Json(view).into_response())
}

/// One queue; a name never used reads as an empty queue.
#[utoipa::path(get, path = "/queues/{name}", tag = "queues", operation_id = "get_queue",
    params(("name" = String, Path, description = "The queue's name")),
    responses(
        (status = 200, description = "The queue", body = QueueView),
        (status = 403, description = "The credential lacks the `operator` scope", body = super::ErrorBody),
        (status = 422, description = "Not a queue name", body = super::ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(name): RouteParam,
) -> Result<Response, ApiError> {
    principal.require(Scope::Operator)?;
    let info = state.engine.queue_info(&queue_name(&name)?).await?;
    Ok(queue_response(&info))
}

/// The fields `PATCH /queues/{name}` takes; any other is refused.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // read field by field, for errors that name every bad one
pub(crate) struct QueuePatchRequest {
    /// Pause (`true`) or resume (`false`).
    paused: Option<bool>,
    /// At most this many of the queue's jobs run at once across all engines (1–100,000),
    /// or `null` for no limit.
    #[schema(minimum = 1, maximum = 100000)]
    max_running: Option<u32>,
    /// At most this many of the queue's jobs with one concurrency key run at once across
    /// all engines (1–100,000), or `null` for no limit.
    #[schema(minimum = 1, maximum = 100000)]
    max_running_per_key: Option<u32>,
    /// At most `limit` starts per `period_ms` across all engines, `burst` at once (a new
    /// limit starts with a full bucket), or `null` for none.
    rate: Option<RateRequest>,
}

/// A rate limit as `PATCH` takes it.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // read field by field
pub(crate) struct RateRequest {
    /// Starts per period (1–1,000,000).
    #[schema(minimum = 1, maximum = 1000000)]
    limit: u32,
    /// The period in milliseconds (1–86,400,000).
    #[schema(minimum = 1, maximum = 86400000)]
    period_ms: u64,
    /// Starts at once (1–1,000,000); `limit` when absent.
    #[schema(minimum = 1, maximum = 1000000)]
    burst: Option<u32>,
}

/// The `rate` of a patch body, every bad field recorded in `f`: `Some(None)` for `null`.
fn rate_of(f: &mut Fields<'_>, body: &serde_json::Value) -> Option<Option<RateLimit>> {
    let value = body.get("rate")?;
    if value.is_null() {
        return Some(None);
    }
    let Ok(mut r) = Fields::of(value, "body.rate") else {
        f.error("rate", "type_error", "must be an object or null");
        return None;
    };
    let limit = r.required("limit").and(r.int("limit", 1..=1_000_000));
    let period = r
        .required("period_ms")
        .and(r.int("period_ms", 1..=86_400_000));
    let burst = r.int("burst", 1..=1_000_000);
    r.refuse_others(&["limit", "period_ms", "burst"]);
    let errors = r.into_errors();
    let has_errors = errors.is_some();
    if let Some(errors) = errors {
        f.absorb(errors);
    }
    let (limit, period) = (limit?, period?);
    if has_errors {
        return None;
    }
    let rate = RateLimit::new(limit as u32, Duration::from_millis(period as u64));
    Some(Some(rate.burst(burst.map_or(rate.limit, |b| b as u32))))
}

/// Change a queue's settings; fields left out keep their value.
#[utoipa::path(patch, path = "/queues/{name}", tag = "queues", operation_id = "patch_queue",
    params(("name" = String, Path, description = "The queue's name")),
    request_body = QueuePatchRequest,
    responses(
        (status = 200, description = "The queue with its new settings", body = QueueView),
        (status = 403, description = "The credential lacks the `operator` scope", body = super::ErrorBody),
        (status = 422, description = "Not a queue name, or a bad or unknown field", body = super::ErrorBody),
    ))]
pub(crate) async fn patch(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(name): RouteParam,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    principal.require(Scope::Operator)?;
    let name = queue_name(&name)?;
    let mut f = Fields::of(&body, "body")?;
    let mut patch = QueuePatch::default();
    if let Some(paused) = f.boolean("paused") {
        patch = patch.paused(paused);
    }
    let limit = 1..=i64::from(MAX_QUEUE_LIMIT);
    if let Some(max) = f.nullable_int("max_running", limit.clone()) {
        patch = patch.max_running(max.map(|n| n as u32));
    }
    if let Some(max) = f.nullable_int("max_running_per_key", limit) {
        patch = patch.max_running_per_key(max.map(|n| n as u32));
    }
    if let Some(rate) = rate_of(&mut f, &body) {
        patch = patch.rate(rate);
    }
    f.refuse_others(&["paused", "max_running", "max_running_per_key", "rate"]);
    f.finish()?;
    let info = state.engine.configure_queue(&name, patch).await?;
    Ok(queue_response(&info))
}

/// Pause a queue: no engine claims from it until it is resumed.
#[utoipa::path(post, path = "/queues/{name}/pause", tag = "queues", operation_id = "pause_queue",
    params(("name" = String, Path, description = "The queue's name")),
    responses(
        (status = 200, description = "The queue, paused", body = QueueView),
        (status = 403, description = "The credential lacks the `operator` scope", body = super::ErrorBody),
        (status = 422, description = "Not a queue name", body = super::ErrorBody),
    ))]
pub(crate) async fn pause(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(name): RouteParam,
) -> Result<Response, ApiError> {
    configure(
        &state,
        &principal,
        &name,
        QueuePatch::default().paused(true),
    )
    .await
}

/// Resume a queue; idle engines are woken at once.
#[utoipa::path(post, path = "/queues/{name}/resume", tag = "queues", operation_id = "resume_queue",
    params(("name" = String, Path, description = "The queue's name")),
    responses(
        (status = 200, description = "The queue, resumed", body = QueueView),
        (status = 403, description = "The credential lacks the `operator` scope", body = super::ErrorBody),
        (status = 422, description = "Not a queue name", body = super::ErrorBody),
    ))]
pub(crate) async fn resume(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(name): RouteParam,
) -> Result<Response, ApiError> {
    configure(
        &state,
        &principal,
        &name,
        QueuePatch::default().paused(false),
    )
    .await
}
