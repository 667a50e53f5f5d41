//! The job model: ids, records, timeline events and artifact records.

mod event;
mod id;
mod status;
pub(crate) mod trace;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use event::{Event, EventKind, NewEvent, Visibility};
pub(crate) use id::ulid_type;
pub use id::{JobId, JobType, ParseJobIdError, QueueName, ScheduleId, TenantId, WorkflowId};
pub use status::{InvalidTransition, JobStatus, ParseStatusError};
pub use trace::{MAX_TRACESTATE_LEN, ParseTraceError, TraceContext};

/// The current time at the microsecond precision every store keeps, so that a job reads
/// back exactly as it was written.
pub(crate) fn now() -> DateTime<Utc> {
    truncate(Utc::now())
}

/// `t` at microsecond precision.
pub(crate) fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Lowest priority a job may have.
pub const MIN_PRIORITY: i32 = -1000;
/// Highest priority a job may have; higher runs first.
pub const MAX_PRIORITY: i32 = 1000;
/// Longest `concurrency_key` a job may have, in bytes.
pub const MAX_CONCURRENCY_KEY_LEN: usize = 128;
/// Largest `max_attempts` a job may ask for.
pub const MAX_ATTEMPTS_LIMIT: u32 = 25;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A job as the store holds it.
///
/// Stores build it from their rows; the engine hands it out read-only. `artifacts` and
/// `latest_event` are filled in on reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// The tenant that owns it.
    pub tenant: TenantId,
    /// Its type, which picks the executor.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The queue it waits in.
    #[serde(default)]
    pub queue: QueueName,
    /// Jobs sharing a key count together against their queue's `max_running_per_key`.
    #[serde(default)]
    pub concurrency_key: Option<String>,
    /// The input the executor receives.
    pub input: Value,
    /// Where it is in its life.
    pub status: JobStatus,
    /// The executor's result, once `completed`.
    pub result: Option<Value>,
    /// The last attempt's error: on `failed`, or on `queued` after a failed attempt.
    pub error: Option<String>,
    /// How many times it was claimed.
    pub attempts: u32,
    /// How many claims it may have in all.
    pub max_attempts: u32,
    /// Higher runs first, from [`MIN_PRIORITY`] to [`MAX_PRIORITY`].
    pub priority: i32,
    /// Not claimed before this time.
    pub run_at: DateTime<Utc>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub completed_at: Option<DateTime<Utc>>,
    /// When anything about it last changed.
    pub updated_at: DateTime<Utc>,
    /// The client's idempotency key, if it gave one.
    pub idempotency_key: Option<String>,
    /// The latest progress report of the running attempt.
    pub progress: Option<Progress>,
    /// Whether cancellation was asked for while it ran.
    pub cancel_requested: bool,
    /// Grows by at least one on every change: a cheap version for caches and waits.
    pub revision: u64,
    /// The artifacts its executors stored, oldest first.
    pub artifacts: Vec<Artifact>,
    /// The newest public timeline event (internal ones never leave the engine).
    pub latest_event: Option<Event>,
    /// The jobs of its workflow that must complete before it runs (`[]` outside
    /// workflows; a finalizer lists every other job of its workflow).
    #[serde(default)]
    pub parents: Vec<JobId>,
    /// Its place in a workflow, if it has one.
    #[serde(default)]
    pub workflow: Option<Box<WorkflowLink>>,
    /// The schedule whose tick made it, if one did.
    #[serde(default)]
    pub schedule_id: Option<ScheduleId>,
    /// The tick it was made for (on the second), if a schedule made it.
    #[serde(default)]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The trace context of whoever submitted it: each attempt's `job` span continues it.
    #[serde(default)]
    pub trace: Option<TraceContext>,
}

/// A job's place in a workflow: what the state machine needs to unblock, skip and
/// cancel it, kept with the job's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowLink {
    /// The workflow.
    pub id: WorkflowId,
    /// The workflow's name, if it was given one.
    #[serde(default)]
    pub name: Option<String>,
    /// The job's key in the workflow.
    pub key: String,
    /// The jobs that list this one as a parent.
    #[serde(default)]
    pub dependents: Vec<JobId>,
    /// How many of its parents are not yet terminal.
    #[serde(default)]
    pub pending: u32,
    /// How many of its parents failed or were cancelled.
    #[serde(default)]
    pub failed: u32,
    /// Runs once every parent is terminal, whatever their outcome (a finalizer does).
    #[serde(default)]
    pub run_if_parents_fail: bool,
    /// The workflow's finalizer: its parents are every other job of the workflow.
    #[serde(default)]
    pub finalizer: bool,
    /// Cancelled because a parent failed or was cancelled; a retry of that parent
    /// returns it to `waiting`.
    #[serde(default)]
    pub skipped: bool,
    /// Reached by a cancel of the whole workflow.
    #[serde(default)]
    pub cancelled: bool,
}

impl Job {
    /// A queued job, as [`Engine::submit`](crate::Engine::submit) creates it.
    pub fn new_queued(tenant: TenantId, new: NewJob, default_max_attempts: u32) -> Job {
        Self::new_queued_at(tenant, new, default_max_attempts, now())
    }

    /// A queued job created at `now` (the store's [`Clock`](crate::Clock)).
    pub fn new_queued_at(
        tenant: TenantId,
        new: NewJob,
        default_max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Job {
        let now = truncate(now);
        Job {
            id: JobId::new(),
            tenant,
            job_type: new.job_type,
            queue: new.queue,
            concurrency_key: new.concurrency_key,
            input: new.input,
            status: JobStatus::Queued,
            result: None,
            error: None,
            attempts: 0,
            max_attempts: new.max_attempts.unwrap_or(default_max_attempts),
            priority: new.priority,
            run_at: new.run_at.map_or(now, |at| truncate(at).max(now)),
            created_at: now,
            started_at: None,
            completed_at: None,
            updated_at: now,
            idempotency_key: new.idempotency_key,
            progress: None,
            cancel_requested: false,
            revision: 1,
            artifacts: Vec::new(),
            latest_event: None,
            parents: Vec::new(),
            workflow: None,
            schedule_id: new.tick.map(|(id, _)| id),
            scheduled_for: new.tick.map(|(_, at)| at),
            trace: new.trace,
        }
    }

    /// Whether `other` asks for the same work (type and input): what makes a reused
    /// idempotency key a replay rather than a conflict.
    pub fn same_request(&self, other: &Job) -> bool {
        self.job_type == other.job_type && self.input == other.input
    }
}

/// What a caller submits.
///
/// ```
/// use jobworks::{JobType, NewJob};
/// let job = NewJob::new(JobType::new("EMAIL")?, serde_json::json!({"to": "a@b.c"}))
///     .priority(10)
///     .max_attempts(5)
///     .idempotency_key("signup-42");
/// assert!(job.validate().is_ok());
/// # Ok::<(), jobworks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewJob {
    /// The job's type.
    pub job_type: JobType,
    /// The executor's input; `{}` when there is none.
    pub input: Value,
    /// Higher runs first; 0 by default.
    pub priority: i32,
    /// Not before this time; now by default.
    pub run_at: Option<DateTime<Utc>>,
    /// Overrides the type's retry policy.
    pub max_attempts: Option<u32>,
    /// Makes the submit idempotent per tenant.
    pub idempotency_key: Option<String>,
    /// The queue it waits in (`default` by default).
    pub queue: QueueName,
    /// Jobs sharing a key count together against their queue's `max_running_per_key`.
    pub concurrency_key: Option<String>,
    /// The submitter's trace context: the parent of the job's spans. With the `otel`
    /// feature the engine fills it from the current span when it is left unset.
    pub trace: Option<TraceContext>,
    /// The schedule and tick that made it (set only by the engine's ticks).
    pub(crate) tick: Option<(ScheduleId, DateTime<Utc>)>,
}

impl NewJob {
    /// A job of `job_type` with `input`.
    pub fn new(job_type: JobType, input: Value) -> Self {
        NewJob {
            job_type,
            input,
            priority: 0,
            run_at: None,
            max_attempts: None,
            idempotency_key: None,
            queue: QueueName::default(),
            concurrency_key: None,
            trace: None,
            tick: None,
        }
    }

    /// Sets the priority (−1000…1000, higher first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Delays the job until `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Sets how many attempts the job may have (1…25).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Puts the job in `queue`.
    pub fn queue(mut self, queue: QueueName) -> Self {
        self.queue = queue;
        self
    }

    /// Sets the concurrency key (at most 128 bytes, no control characters).
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }

    /// Continues the trace `cx` (for example a request's `traceparent`).
    pub fn trace(mut self, cx: TraceContext) -> Self {
        self.trace = Some(cx);
        self
    }

    /// Continues `current` (the submitting span's context) when the job names no trace
    /// of its own; a schedule's ticks start traces of their own.
    pub(crate) fn traced(mut self, current: Option<&TraceContext>) -> Self {
        if self.trace.is_none() && self.tick.is_none() {
            self.trace = current.cloned();
        }
        self
    }

    /// Checks the ranges the wire contract promises.
    ///
    /// # Errors
    /// [`Error::Invalid`](crate::Error::Invalid) naming the field.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::Error;
        if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&self.priority) {
            return Err(Error::invalid("priority", "must be between -1000 and 1000"));
        }
        if let Some(n) = self.max_attempts
            && !(1..=MAX_ATTEMPTS_LIMIT).contains(&n)
        {
            return Err(Error::invalid("max_attempts", "must be between 1 and 25"));
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY_LEN
                || key.chars().any(char::is_control))
        {
            return Err(Error::invalid(
                "idempotency_key",
                "must be 1 to 255 bytes without control characters",
            ));
        }
        if let Some(key) = &self.idempotency_key
            && key.starts_with("schedule:")
            && self.tick.is_none()
        {
            return Err(Error::invalid(
                "idempotency_key",
                "keys starting with \"schedule:\" are kept for the ticks of schedules",
            ));
        }
        if let Some(key) = &self.concurrency_key
            && (key.is_empty()
                || key.len() > MAX_CONCURRENCY_KEY_LEN
                || key.chars().any(char::is_control))
        {
            return Err(Error::invalid(
                "concurrency_key",
                "must be 1 to 128 bytes without control characters",
            ));
        }
        Ok(())
    }
}

/// A progress report: how far, and what is happening.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// From 0.0 to 1.0.
    pub fraction: f64,
    /// A short human-readable message.
    pub message: String,
}

/// Whether an artifact is the job's result or a by-product on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactRole {
    /// A by-product (a preview, a log, a partial result).
    Intermediate,
    /// The job's deliverable.
    Final,
}

impl ArtifactRole {
    /// The lowercase name used on the wire and in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactRole::Intermediate => "intermediate",
            ArtifactRole::Final => "final",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<ArtifactRole> {
        [ArtifactRole::Intermediate, ArtifactRole::Final]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// The record of an artifact stored for a job. The bytes live in the
/// [`ArtifactStore`](crate::ArtifactStore); clients get a signed URL, never a storage key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Safe relative name, unique within the job (see [`ArtifactName`](crate::ArtifactName)).
    pub name: String,
    /// What it is, e.g. `report_pdf`.
    pub kind: String,
    /// Intermediate or final.
    pub role: ArtifactRole,
    /// Its MIME type.
    pub content_type: String,
    /// Its size.
    pub size_bytes: u64,
    /// `sha256:<hex>` of its bytes.
    pub checksum: String,
    /// Free metadata from the executor.
    pub metadata: Value,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// The attempt that wrote its bytes, whose folder holds them (0 for records made
    /// before bytes were kept per attempt).
    #[serde(default)]
    pub attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> NewJob {
        NewJob::new(JobType::new("T").unwrap(), Value::Null)
    }

    #[test]
    fn validation_names_the_field() {
        let field = |j: NewJob| match j.validate() {
            Err(crate::Error::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(job().priority(1001)), "priority");
        assert_eq!(field(job().priority(-1001)), "priority");
        assert_eq!(field(job().max_attempts(0)), "max_attempts");
        assert_eq!(field(job().max_attempts(26)), "max_attempts");
        assert_eq!(field(job().idempotency_key("")), "idempotency_key");
        assert_eq!(field(job().idempotency_key("a\nb")), "idempotency_key");
        assert!(
            job()
                .priority(1000)
                .max_attempts(25)
                .idempotency_key("k")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn past_run_at_is_clamped_to_now() {
        let past = Utc::now() - chrono::Duration::hours(1);
        let j = Job::new_queued(TenantId::new("t").unwrap(), job().run_at(past), 3);
        assert!(j.run_at >= j.created_at);
        assert_eq!(j.max_attempts, 3);
    }
}
