//! The schedule routes: create, list, read, change and delete a tenant's schedules.

use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::body::{Fields, JsonBody, RouteParam};
use super::view::format_time;
use super::{ApiError, ApiState, FieldError, Principal, Scope, located};
use crate::job::{MAX_ATTEMPTS_LIMIT, MAX_PRIORITY, MIN_PRIORITY};
use crate::{
    JobType, MAX_CATCH_UP, MAX_CRON_LEN, MAX_SCHEDULE_NAME_LEN, Missed, NewSchedule, QueueName,
    Schedule, ScheduleId, ScheduleJob, SchedulePatch,
};

/// The job a schedule makes at each tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleJobView {
    /// The job's type.
    #[serde(rename = "type")]
    pub job_type: String,
    /// The executor's input.
    pub input: Value,
    /// The queue it waits in.
    pub queue: String,
    /// Its priority.
    pub priority: i32,
    /// Overrides the type's retry policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ScheduleView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Cron with 5 fields, or 6 with seconds first.
    pub cron: String,
    /// The IANA time zone whose wall clock the expression reads.
    pub timezone: String,
    /// The job each tick makes.
    pub job: ScheduleJobView,
    /// What happens to ticks no engine made in time.
    #[schema(pattern = "^(skip|once|catch_up)$")]
    pub missed: String,
    /// How many missed ticks `catch_up` makes at most.
    pub catch_up_limit: u32,
    /// Paused: no ticks are made.
    pub paused: bool,
    /// The tick of the latest job it made.
    pub last_run_at: Option<String>,
    /// The next tick it will make (`null` while paused).
    pub next_run_at: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// When it was last changed.
    pub updated_at: String,
}

impl ScheduleView {
    /// The view of `schedule`.
    pub fn of(schedule: &Schedule) -> ScheduleView {
        let spec = &schedule.spec;
        let job = &spec.job;
        ScheduleView {
            id: schedule.id.to_string(),
            name: spec.name.clone(),
            cron: spec.cron.clone(),
            timezone: spec.timezone.clone(),
            job: ScheduleJobView {
                job_type: job.job_type.to_string(),
                input: job.input.clone(),
                queue: job.queue.to_string(),
                priority: job.priority,
                max_attempts: job.max_attempts,
            },
            missed: spec.missed.as_str().to_owned(),
            catch_up_limit: spec.catch_up_limit,
            paused: spec.paused,
            last_run_at: schedule.last_run_at.map(format_time),
            next_run_at: schedule.next_run_at.map(format_time),
            created_at: format_time(schedule.created_at),
            updated_at: format_time(schedule.updated_at),
        }
    }
}

/// The tenant's schedules.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScheduleList {
    /// Oldest first.
    schedules: Vec<ScheduleView>,
}

/// The body of `POST /schedules` (documentation; the handler reads fields one by one).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct ScheduleRequest {
    /// A name for people.
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    /// Cron with 5 fields, or 6 with seconds first.
    #[schema(min_length = 1, max_length = 256)]
    cron: String,
    /// An IANA time zone; `UTC` by default.
    timezone: Option<String>,
    /// The job each tick makes.
    job: ScheduleJobRequest,
    /// `skip` (default), `once` or `catch_up`.
    #[schema(pattern = "^(skip|once|catch_up)$")]
    missed: Option<String>,
    /// How many missed ticks `catch_up` makes at most (3 by default).
    #[schema(minimum = 1, maximum = 100)]
    catch_up_limit: Option<u32>,
    /// Created paused.
    paused: Option<bool>,
}

/// The body of `PATCH /schedules/{id}`: the fields to replace (documentation).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct SchedulePatchRequest {
    /// A new name.
    #[schema(min_length = 1, max_length = 128)]
    name: Option<String>,
    /// A new cron expression.
    #[schema(min_length = 1, max_length = 256)]
    cron: Option<String>,
    /// A new time zone.
    timezone: Option<String>,
    /// A new job template.
    job: Option<ScheduleJobRequest>,
    /// A new missed-tick policy.
    #[schema(pattern = "^(skip|once|catch_up)$")]
    missed: Option<String>,
    /// A new catch-up limit.
    #[schema(minimum = 1, maximum = 100)]
    catch_up_limit: Option<u32>,
    /// Pause (`true`) or resume (`false`).
    paused: Option<bool>,
}

/// The job of a schedule in a request (documentation).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct ScheduleJobRequest {
    /// A registered job type.
    #[serde(rename = "type")]
    job_type: String,
    /// The executor's input; `{}` by default.
    input: Option<Value>,
    /// The queue; `default` by default.
    queue: Option<String>,
    /// −1000 to 1000; 0 by default.
    #[schema(minimum = -1000, maximum = 1000)]
    priority: Option<i32>,
    /// 1 to 25; the type's retry policy by default.
    #[schema(minimum = 1, maximum = 25)]
    max_attempts: Option<u32>,
}

const FIELDS: &[&str] = &[
    "name",
    "cron",
    "timezone",
    "job",
    "missed",
    "catch_up_limit",
    "paused",
];

/// The fields of a create or change request that were given, each checked for its
/// shape (the engine checks what they mean: the expression, the zone, the type).
fn read_fields(body: &Value, create: bool, known: &[JobType]) -> Result<SchedulePatch, ApiError> {
    let mut f = Fields::of(body, "body")?;
    f.refuse_others(FIELDS);
    let mut patch = SchedulePatch::default();
    if create {
        patch.name = f.required_string("name", MAX_SCHEDULE_NAME_LEN);
        patch.cron = f.required_string("cron", MAX_CRON_LEN);
    } else {
        patch.name = f.string("name", MAX_SCHEDULE_NAME_LEN);
        patch.cron = f.string("cron", MAX_CRON_LEN);
    }
    patch.timezone = f.string("timezone", 64);
    patch.missed = f.string("missed", 16).and_then(|m| match m.as_str() {
        "skip" => Some(Missed::Skip),
        "once" => Some(Missed::Once),
        "catch_up" => Some(Missed::CatchUp),
        _ => {
            f.error("missed", "invalid", "must be skip, once or catch_up");
            None
        }
    });
    patch.catch_up_limit = f
        .int("catch_up_limit", 1..=i64::from(MAX_CATCH_UP))
        .map(|n| n as u32);
    patch.paused = f.boolean("paused");
    let job = if create {
        f.required("job")
    } else {
        f.value("job")
    };
    if let Some(job) = job {
        match schedule_job(job, known) {
            Ok(job) => patch.job = Some(job),
            Err(errors) => f.absorb(errors),
        }
    }
    f.finish()?;
    Ok(patch)
}

/// The job template at `body.job`.
fn schedule_job(body: &Value, known: &[JobType]) -> Result<ScheduleJob, Vec<FieldError>> {
    let Ok(mut g) = Fields::of(body, "body.job") else {
        return Err(vec![FieldError::new(
            "body.job",
            "type_error",
            "must be a JSON object",
        )]);
    };
    g.refuse_others(&["type", "input", "queue", "priority", "max_attempts"]);
    let job_type = g
        .required_string("type", 128)
        .and_then(|t| match JobType::new(&t) {
            Ok(t) if known.contains(&t) => Some(t),
            _ => {
                let names: Vec<&str> = known.iter().map(JobType::as_str).collect();
                let msg = format!("unknown job type; known: {}", names.join(", "));
                g.error("type", "unknown_job_type", msg);
                None
            }
        });
    let input = g
        .value("input")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let queue = g
        .string("queue", 128)
        .and_then(|q| match QueueName::new(&q) {
            Ok(q) => Some(q),
            Err(_) => {
                g.error("queue", "invalid", "not a queue name");
                None
            }
        });
    let priority = g.int(
        "priority",
        i64::from(MIN_PRIORITY)..=i64::from(MAX_PRIORITY),
    );
    let max_attempts = g.int("max_attempts", 1..=i64::from(MAX_ATTEMPTS_LIMIT));
    if let Some(errors) = g.into_errors() {
        return Err(errors);
    }
    let Some(job_type) = job_type else {
        return Err(Vec::new());
    };
    let mut job = ScheduleJob::new(job_type, input);
    job.queue = queue.unwrap_or_default();
    job.priority = priority.unwrap_or(0) as i32;
    job.max_attempts = max_attempts.map(|n| n as u32);
    Ok(job)
}

fn parse_schedule_id(raw: &str) -> Result<ScheduleId, ApiError> {
    raw.parse().map_err(|_| ApiError::invalid_id(raw))
}

/// Create a schedule.
#[utoipa::path(post, path = "/schedules", tag = "schedules", operation_id = "create_schedule",
    request_body = ScheduleRequest,
    responses(
        (status = 201, description = "Created", body = ScheduleView,
            headers(("Location" = String, description = "Where to read the schedule"))),
        (status = 422, description = "A bad expression, time zone, job type or field (`validation_error`, `loc` at it)", body = super::ErrorBody),
    ))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let fields = read_fields(&body, true, state.engine.job_types())?;
    let (Some(name), Some(cron), Some(job)) = (fields.name, fields.cron, fields.job) else {
        return Err(ApiError::internal());
    };
    let mut new = NewSchedule::new(name, cron, job);
    if let Some(tz) = fields.timezone {
        new = new.timezone(tz);
    }
    new.missed = fields.missed.unwrap_or_default();
    new.catch_up_limit = fields.catch_up_limit.unwrap_or(new.catch_up_limit);
    new.paused = fields.paused.unwrap_or(false);
    let schedule = state.engine.create_schedule(&principal.tenant, new).await?;
    let response = (StatusCode::CREATED, axum::Json(ScheduleView::of(&schedule))).into_response();
    let path = format!("/schedules/{}", schedule.id);
    Ok(located(response, &original, &uri, &path))
}

/// The tenant's schedules.
#[utoipa::path(get, path = "/schedules", tag = "schedules", operation_id = "list_schedules",
    responses((status = 200, description = "Every schedule of the tenant, oldest first", body = ScheduleList)))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let schedules = state.engine.schedules(&principal.tenant).await?;
    let schedules = schedules.iter().map(ScheduleView::of).collect();
    Ok(axum::Json(ScheduleList { schedules }).into_response())
}

/// Read a schedule, with its last and next run.
#[utoipa::path(get, path = "/schedules/{id}", tag = "schedules", operation_id = "get_schedule",
    params(("id" = String, Path, description = "The schedule's id: a ULID, or the same value as a UUID")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 404, description = "No such schedule for this tenant (`schedule_not_found`)", body = super::ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let id = parse_schedule_id(&id)?;
    let schedule = state.engine.schedule(&principal.tenant, id).await?;
    Ok(axum::Json(ScheduleView::of(&schedule)).into_response())
}

/// Change a schedule: pause, resume, or replace its expression, zone, job or policy.
#[utoipa::path(patch, path = "/schedules/{id}", tag = "schedules", operation_id = "update_schedule",
    params(("id" = String, Path, description = "The schedule's id")),
    request_body = SchedulePatchRequest,
    responses(
        (status = 200, description = "The changed schedule", body = ScheduleView),
        (status = 404, description = "No such schedule for this tenant (`schedule_not_found`)", body = super::ErrorBody),
        (status = 422, description = "A bad field (`validation_error`, `loc` at it)", body = super::ErrorBody),
    ))]
pub(crate) async fn update(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let id = parse_schedule_id(&id)?;
    let patch = read_fields(&body, false, state.engine.job_types())?;
    let schedule = state
        .engine
        .update_schedule(&principal.tenant, id, &patch)
        .await?;
    Ok(axum::Json(ScheduleView::of(&schedule)).into_response())
}

/// Delete a schedule (the jobs it made stay).
#[utoipa::path(delete, path = "/schedules/{id}", tag = "schedules", operation_id = "delete_schedule",
    params(("id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such schedule for this tenant (`schedule_not_found`)", body = super::ErrorBody),
    ))]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let id = parse_schedule_id(&id)?;
    state.engine.delete_schedule(&principal.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
