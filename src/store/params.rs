//! What the [`JobStore`](super::JobStore) methods take and give: filters, pages, claims,
//! leases, appends, outcomes, and counts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::job::{
    Artifact, Event, Job, JobId, JobStatus, JobType, NewEvent, Progress, QueueName, ScheduleId,
    WorkflowId,
};

/// The answer to one job of [`JobStoreExt::submit`](super::JobStoreExt::submit).
#[derive(Debug, Clone, PartialEq)]
pub struct Inserted {
    /// The job as stored (the existing one for a replayed idempotency key).
    pub job: Job,
    /// `false` when an idempotency key matched an existing job.
    pub created: bool,
}

/// Filters and paging for [`JobStore::list`](super::JobStore::list).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ListParams {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this type.
    pub job_type: Option<JobType>,
    /// Only jobs in this queue.
    pub queue: Option<QueueName>,
    /// Only jobs of this workflow.
    pub workflow: Option<WorkflowId>,
    /// Only jobs made by this schedule's ticks.
    pub schedule: Option<ScheduleId>,
    /// At most this many (1…1000).
    pub limit: usize,
    /// Only jobs older than this one: the cursor from the previous page.
    pub before: Option<JobId>,
}

impl Default for ListParams {
    fn default() -> Self {
        ListParams {
            status: None,
            job_type: None,
            queue: None,
            workflow: None,
            schedule: None,
            limit: 50,
            before: None,
        }
    }
}

impl ListParams {
    /// Whether `job` passes the status, type, queue, workflow and schedule filters (the tenant and
    /// the cursor are the store's to apply).
    pub fn matches(&self, job: &Job) -> bool {
        self.status.is_none_or(|s| s == job.status)
            && self.job_type.as_ref().is_none_or(|t| *t == job.job_type)
            && self.queue.as_ref().is_none_or(|q| *q == job.queue)
            && self
                .workflow
                .is_none_or(|w| job.workflow.as_ref().is_some_and(|l| l.id == w))
            && self.schedule.is_none_or(|s| job.schedule_id == Some(s))
    }

    /// Keeps only jobs in `status`.
    pub fn status(mut self, status: JobStatus) -> Self {
        self.status = Some(status);
        self
    }
    /// Keeps only jobs of `job_type`.
    pub fn job_type(mut self, job_type: JobType) -> Self {
        self.job_type = Some(job_type);
        self
    }
    /// Keeps only jobs in `queue`.
    pub fn queue(mut self, queue: QueueName) -> Self {
        self.queue = Some(queue);
        self
    }
    /// Keeps only jobs of `workflow`.
    pub fn workflow(mut self, workflow: WorkflowId) -> Self {
        self.workflow = Some(workflow);
        self
    }
    /// Keeps only jobs made by `schedule`'s ticks.
    pub fn schedule(mut self, schedule: ScheduleId) -> Self {
        self.schedule = Some(schedule);
        self
    }
    /// Sets the page size, clamped to 1…1000.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, 1000);
        self
    }
    /// Continues after a previous page.
    pub fn before(mut self, cursor: Option<JobId>) -> Self {
        self.before = cursor;
        self
    }
}

/// A page of [`JobStore::list`](super::JobStore::list).
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<Job>,
    /// The cursor for the next page; `None` on the last one.
    pub next: Option<JobId>,
}

impl JobPage {
    /// The page of up to `limit` jobs from `jobs`, read in list order with one more than
    /// the page holds when there is one: that extra job only says that a next page exists.
    pub fn of(mut jobs: Vec<Job>, limit: usize) -> JobPage {
        let more = jobs.len() > limit;
        jobs.truncate(limit);
        let next = if more {
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        JobPage { jobs, next }
    }
}

/// What [`JobStore::events`](super::JobStore::events) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventParams {
    /// Only events with a greater sequence number.
    pub after: u64,
    /// At most this many (1…1000).
    pub limit: usize,
    /// Whether internal events are included.
    pub include_internal: bool,
}

impl Default for EventParams {
    fn default() -> Self {
        EventParams {
            after: 0,
            limit: 100,
            include_internal: false,
        }
    }
}

impl EventParams {
    /// Events after `seq`.
    pub fn after(mut self, seq: u64) -> Self {
        self.after = seq;
        self
    }
    /// Sets the page size, clamped to 1…1000.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, 1000);
        self
    }
    /// Includes internal events.
    pub fn include_internal(mut self) -> Self {
        self.include_internal = true;
        self
    }
}

/// A page of [`JobStore::events`](super::JobStore::events).
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    /// Oldest first.
    pub events: Vec<Event>,
    /// Whether the job is terminal (its timeline will not grow).
    pub terminal: bool,
}

/// What [`JobStore::claim`](super::JobStore::claim) looks for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClaimParams {
    /// The queue to claim from (`default` unless set). A paused queue gives nothing.
    pub queue: QueueName,
    /// Only these types; all when `None`.
    pub types: Option<Vec<JobType>>,
    /// At most this many jobs.
    pub limit: usize,
    /// How long the new leases last.
    pub lease_ttl: Duration,
}

impl Default for ClaimParams {
    fn default() -> Self {
        ClaimParams {
            queue: QueueName::default(),
            types: None,
            limit: 1,
            lease_ttl: Duration::from_secs(30),
        }
    }
}

impl ClaimParams {
    /// Whether the claim looks for `job`: queued, in its queue, of one of its types (due
    /// or not).
    pub fn wants(&self, job: &Job) -> bool {
        job.status == JobStatus::Queued
            && job.queue == self.queue
            && self
                .types
                .as_ref()
                .is_none_or(|t| t.contains(&job.job_type))
    }

    /// Claims up to `limit` jobs.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    /// Leases last `ttl`.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }
    /// Claims from `queue`.
    pub fn queue(mut self, queue: QueueName) -> Self {
        self.queue = queue;
        self
    }
    /// Claims only jobs of these types.
    pub fn types(mut self, types: Vec<JobType>) -> Self {
        self.types = Some(types);
        self
    }
}

/// What [`JobStore::claim`](super::JobStore::claim) found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claimed {
    /// The claimed jobs, in claim order.
    pub jobs: Vec<ClaimedJob>,
    /// When the next queued (matching) job becomes due, if one is queued and not yet due:
    /// an idle worker sleeps until then.
    pub next_run_at: Option<DateTime<Utc>>,
    /// Whether a limit on running jobs (the queue's `max_running`, or its
    /// `max_running_per_key` while the claim took fewer than it could) held back a due
    /// job: the claimer then also waits for a running job to end
    /// ([`Notifier::subscribe_freed`](super::Notifier::subscribe_freed)), and an engine
    /// held back so is not idle.
    pub full: bool,
}

/// A job and the lease its claimer holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The job, now `running`.
    pub job: Job,
    /// The lease on it.
    pub lease: Lease,
    /// The sequence number of the job's next event.
    pub next_seq: u64,
}

impl ClaimedJob {
    /// The job a claim's `write` (of [`rules::claim`](super::rules::claim)) hands out
    /// under `lease`.
    pub fn of(write: &super::Write, lease: Lease) -> ClaimedJob {
        ClaimedJob {
            job: Job::clone(&write.job),
            lease,
            next_seq: write.last_seq() + 1,
        }
    }

    /// The claimed record, as a guarded write about it expects to find it.
    pub fn stored(&self) -> super::Stored {
        super::Stored {
            job: Box::new(self.job.clone()),
            lease: Some(self.lease),
            next_seq: self.next_seq,
        }
    }
}

/// A worker's right to write about a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job_id: JobId,
    /// This claim's id; a later claim of the same job has another.
    pub lease_id: u128,
    /// When the lease runs out unless extended.
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// Whether this lease may write about a job in `status` whose current lease is
    /// `held` (its id and expiry): the job runs, the ids match, and it has not expired at
    /// `now`. Every store fences writes with this one rule.
    pub fn is_current(
        &self,
        status: JobStatus,
        held: Option<(u128, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> bool {
        status == JobStatus::Running
            && held.is_some_and(|(id, expires)| id == self.lease_id && expires > now)
    }

    /// A fresh lease on `job_id` for `ttl` from now.
    pub fn new(job_id: JobId, ttl: Duration) -> Lease {
        Self::until(job_id, crate::job::now() + ttl)
    }

    /// A fresh lease on `job_id` that expires at `expires_at`.
    pub fn until(job_id: JobId, expires_at: DateTime<Utc>) -> Lease {
        Lease {
            job_id,
            lease_id: ulid::Ulid::new().0,
            expires_at,
        }
    }
}

/// What [`JobStoreExt::heartbeat`](super::JobStoreExt::heartbeat) tells the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseStatus {
    /// The new expiry.
    pub expires_at: DateTime<Utc>,
    /// Whether someone asked the job to stop.
    pub cancel_requested: bool,
}

/// A timeline entry written by a running job, with the state it updates.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Append {
    /// The event.
    pub event: NewEvent,
    /// Sets the job's progress.
    pub progress: Option<Progress>,
    /// Records an artifact (replacing one of the same name).
    pub artifact: Option<Artifact>,
}

impl Append {
    /// Just an event.
    pub fn event(event: NewEvent) -> Self {
        Append {
            event,
            progress: None,
            artifact: None,
        }
    }
    /// Also sets the job's progress.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }
    /// Also records an artifact.
    pub fn with_artifact(mut self, artifact: Artifact) -> Self {
        self.artifact = Some(artifact);
        self
    }
}

/// The outcome of an attempt, for [`JobStoreExt::finish`](super::JobStoreExt::finish).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Finish {
    /// `completed` with a result; `succeeded` event.
    Completed {
        /// The executor's result.
        result: Value,
    },
    /// `failed`; `failed` event.
    Failed {
        /// Why.
        error: String,
    },
    /// Back to `queued` until `run_at`, with a `retrying` event; `failed` instead when no
    /// attempts are left.
    Retry {
        /// Why the attempt failed.
        error: String,
        /// Not before this time.
        run_at: DateTime<Utc>,
    },
    /// `cancelled`; `cancelled` event.
    Cancelled,
    /// Back to `queued` at once without charging the attempt (graceful shutdown);
    /// `released` event.
    Released,
    /// Back to `queued` until `run_at` without charging the attempt (the executor said
    /// "not now"); `snoozed` event.
    Snoozed {
        /// Why, as the executor said it.
        reason: String,
        /// Not before this time.
        run_at: DateTime<Utc>,
    },
}

/// Who took an operator action, and why: recorded in the job's `operator` event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Operator {
    /// Who acted (the principal's subject over HTTP).
    pub actor: String,
    /// Why, if they said.
    pub reason: Option<String>,
}

impl Operator {
    /// `actor`, giving no reason.
    pub fn new(actor: impl Into<String>) -> Self {
        Operator {
            actor: actor.into(),
            reason: None,
        }
    }

    /// Gives the reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The `operator` event of `action`, with the actor and reason as its payload.
    pub(crate) fn event(&self, action: &str, message: String) -> NewEvent {
        NewEvent::new(crate::job::EventKind::Operator, message).with_payload(
            serde_json::json!({"action": action, "actor": self.actor, "reason": self.reason}),
        )
    }
}

/// Options of [`JobStoreExt::reap`](super::JobStoreExt::reap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReapParams {
    /// At most this many jobs per call.
    pub limit: usize,
}

impl Default for ReapParams {
    fn default() -> Self {
        ReapParams { limit: 1000 }
    }
}

/// What [`JobStoreExt::reap`](super::JobStoreExt::reap) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Put back in the queue.
    pub requeued: u64,
    /// Failed because no attempts were left.
    pub failed: u64,
    /// Cancelled because cancellation had been asked for.
    pub cancelled: u64,
}

impl ReapReport {
    /// Counts one reaped job by the status the reaper gave it.
    pub fn count(&mut self, status: JobStatus) {
        match status {
            JobStatus::Queued => self.requeued += 1,
            JobStatus::Failed => self.failed += 1,
            _ => self.cancelled += 1,
        }
    }

    /// All jobs whose lease was ended.
    pub fn total(&self) -> u64 {
        self.requeued + self.failed + self.cancelled
    }
}

/// Options of [`JobStore::purge`](super::JobStore::purge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeParams {
    /// Terminal jobs completed before this time go.
    pub completed_before: DateTime<Utc>,
    /// At most this many per call.
    pub limit: usize,
}

impl PurgeParams {
    /// Purges up to 1000 jobs completed before `before`.
    pub fn before(before: DateTime<Utc>) -> Self {
        PurgeParams {
            completed_before: before,
            limit: 1000,
        }
    }
}

/// Job counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Waiting for their parents (workflows).
    pub waiting: u64,
    /// Queued, due or not.
    pub queued: u64,
    /// Running.
    pub running: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl QueueStats {
    /// Adds `n` jobs in `status`.
    pub fn add(&mut self, status: JobStatus, n: u64) {
        let slot = match status {
            JobStatus::Waiting => &mut self.waiting,
            JobStatus::Queued => &mut self.queued,
            JobStatus::Running => &mut self.running,
            JobStatus::Completed => &mut self.completed,
            JobStatus::Failed => &mut self.failed,
            JobStatus::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &QueueStats) {
        self.waiting += other.waiting;
        self.queued += other.queued;
        self.running += other.running;
        self.completed += other.completed;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
    }

    /// Jobs in terminal states.
    pub fn terminal(&self) -> u64 {
        self.completed + self.failed + self.cancelled
    }
}
