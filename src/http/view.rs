//! The wire shapes of jobs and events, built from the engine's types.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::{ArtifactKey, DEFAULT_URL_TTL, Engine, Event, Job, Result, Visibility};

/// A time as the wire writes it: RFC 3339 in UTC with milliseconds and a `Z`.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A job as clients see it (`GET /jobs/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobView {
    /// The job's id (ULID).
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub job_type: String,
    /// `waiting`, `queued`, `running`, `completed`, `failed` or `cancelled`.
    #[schema(value_type = StatusName)]
    pub status: String,
    /// The queue it waits in.
    pub queue: String,
    /// The key it shares its queue's per-key concurrency limit with, if any.
    pub concurrency_key: Option<String>,
    /// The workflow it belongs to, if any.
    pub workflow_id: Option<String>,
    /// The ids of the jobs that must complete before it runs (`[]` outside workflows).
    pub parents: Vec<String>,
    /// The schedule whose tick made it, if one did.
    pub schedule_id: Option<String>,
    /// The tick it was made for, if a schedule made it.
    pub scheduled_for: Option<String>,
    /// What was submitted.
    pub input: Value,
    /// The executor's result; only when `completed`.
    pub result: Option<Value>,
    /// The last attempt's error: when `failed`, or `queued` for a retry.
    pub error: Option<String>,
    /// How many times it was started.
    pub attempts: u32,
    /// How many starts it may have.
    pub max_attempts: u32,
    /// Higher runs first.
    pub priority: i32,
    /// The running attempt's latest progress report.
    pub progress: Option<ProgressView>,
    /// When it was submitted.
    pub created_at: String,
    /// Not started before this time.
    pub run_at: String,
    /// When its latest attempt started.
    pub started_at: Option<String>,
    /// When it ended.
    pub completed_at: Option<String>,
    /// When anything about it last changed.
    pub updated_at: String,
    /// What its executor stored, each with a fresh signed URL.
    pub artifacts: Vec<ArtifactView>,
    /// Its newest public timeline event.
    pub latest_event: Option<EventView>,
}

/// A progress report.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProgressView {
    /// From 0.0 to 1.0.
    pub fraction: f64,
    /// What is happening.
    pub message: String,
}

/// An artifact with a signed download URL.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ArtifactView {
    /// Its name within the job.
    pub name: String,
    /// What it is (`report_pdf`, …).
    pub kind: String,
    /// `intermediate` or `final`.
    #[schema(pattern = "^(intermediate|final)$")]
    pub role: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its size.
    pub size_bytes: u64,
    /// Where to download it without credentials, until `url_expires_at`.
    pub url: String,
    /// When `url` stops working.
    pub url_expires_at: String,
    /// Free metadata from the executor.
    pub metadata: Value,
}

/// A timeline event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventView {
    /// Its place in the timeline, from 1 with no gaps: the polling cursor.
    pub seq: u64,
    /// `queued`, `started`, `stage`, `progress`, `retrying`, `succeeded`, `failed`,
    /// `cancelled`, …
    pub kind: String,
    /// What happened, for people.
    pub message: String,
    /// Details (progress, error detail, cost), if any.
    pub payload: Option<Value>,
    /// Names of the artifacts it stored.
    pub artifacts: Vec<String>,
    /// When it happened.
    pub created_at: String,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        EventView {
            seq: e.seq,
            kind: e.kind.as_str().to_owned(),
            message: e.message.to_string(),
            payload: e.payload.clone(),
            artifacts: e.artifacts.clone(),
            created_at: format_time(e.created_at),
        }
    }
}

impl JobView {
    /// The view of `job`, signing a fresh URL for each of its artifacts.
    ///
    /// # Errors
    /// When the artifact store cannot sign.
    pub async fn build(engine: &Engine, job: &Job) -> Result<JobView> {
        let mut artifacts = Vec::with_capacity(job.artifacts.len());
        for a in &job.artifacts {
            let key = ArtifactKey::of_record(job.tenant.clone(), job.id, a)?;
            let signed = engine
                .artifacts()
                .signed_url(&key, &a.content_type, DEFAULT_URL_TTL)
                .await?;
            artifacts.push(ArtifactView {
                name: a.name.clone(),
                kind: a.kind.clone(),
                role: a.role.as_str().to_owned(),
                content_type: a.content_type.clone(),
                size_bytes: a.size_bytes,
                url: signed.url,
                url_expires_at: format_time(signed.expires_at),
                metadata: a.metadata.clone(),
            });
        }
        Ok(JobView {
            id: job.id.to_string(),
            job_type: job.job_type.to_string(),
            status: job.status.to_string(),
            queue: job.queue.to_string(),
            concurrency_key: job.concurrency_key.clone(),
            workflow_id: job.workflow.as_ref().map(|l| l.id.to_string()),
            parents: job.parents.iter().map(ToString::to_string).collect(),
            schedule_id: job.schedule_id.map(|id| id.to_string()),
            scheduled_for: job.scheduled_for.map(format_time),
            input: job.input.clone(),
            result: job.result.clone(),
            error: job.error.clone(),
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            priority: job.priority,
            progress: job.progress.as_ref().map(|p| ProgressView {
                fraction: p.fraction,
                message: p.message.clone(),
            }),
            created_at: format_time(job.created_at),
            run_at: format_time(job.run_at),
            started_at: job.started_at.map(format_time),
            completed_at: job.completed_at.map(format_time),
            updated_at: format_time(job.updated_at),
            artifacts,
            latest_event: job
                .latest_event
                .as_ref()
                .filter(|e| e.visibility == Visibility::Public)
                .map(EventView::from),
        })
    }
}

/// A page of a job's timeline (`GET /jobs/{id}/events`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventsView {
    /// Public events after the cursor, oldest first.
    pub events: Vec<EventView>,
    /// The cursor for the next call: the last seq returned, or `after` when none was.
    pub next_after: u64,
    /// Whether the job is terminal, so no more events will come.
    pub terminal: bool,
}

/// A page of jobs (`GET /jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobListView {
    /// Jobs, newest first.
    pub jobs: Vec<JobView>,
    /// The cursor of the next page, or null on the last one.
    pub next_cursor: Option<String>,
}

/// The answer of `POST /jobs/batch`: the jobs, in the order they were given.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobBatchView {
    /// One job per job of the request, in its order.
    pub jobs: Vec<JobView>,
}

/// The six statuses, as the wire writes them (documentation).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum StatusName {
    Waiting,
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}
