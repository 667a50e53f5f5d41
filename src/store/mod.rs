//! The [`JobStore`] trait: where jobs, timelines, leases and artifact records live.
//!
//! A store makes atomic compare-and-set transitions and knows nothing of policy: the engine
//! decides what happens next. Every method is one statement or one transaction in a SQL
//! backend. Every write about a running job carries its [`Lease`] and is refused with
//! [`Error::LeaseLost`](crate::Error::LeaseLost) unless that lease is the job's current,
//! unexpired one.

mod documents;
mod notify;
mod rules;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::Result;
use crate::clock::Clock;
use crate::job::{Artifact, Event, Job, JobId, JobStatus, JobType, NewEvent, Progress, TenantId};

pub use documents::{DocumentId, DocumentPage, DocumentStore, StoredDocument};
pub use notify::{JobWatch, Notifier};
pub use rules::{FinishPlan, apply_plan, cancel_plan, plan_finish, plan_reap, start_attempt};

/// The storage of jobs. Implemented by [`MemoryStore`](crate::MemoryStore) and the SQL
/// backends; the [`testing`](crate) suite checks an implementation.
#[async_trait]
pub trait JobStore: Send + Sync + Debug + 'static {
    /// The backend's name, for errors and logs (`"memory"`, `"sqlite"`, `"postgres"`).
    fn backend(&self) -> &'static str;

    /// The store's change notifications.
    fn notifier(&self) -> &Notifier;

    /// The clock the store reads the time from (lease expiries, due times, timestamps).
    fn clock(&self) -> &Clock;

    /// Inserts queued jobs, all or none, each with a `queued` event (seq 1).
    ///
    /// A job whose tenant already has a job with the same idempotency key is not inserted:
    /// when type and input match, the existing job is returned with `created: false`;
    /// otherwise the whole call fails with [`Error::AlreadyExists`](crate::Error::AlreadyExists).
    async fn insert(&self, jobs: Vec<Job>) -> Result<Vec<Inserted>>;

    /// One job of a tenant, with its artifacts and latest event.
    ///
    /// A job of another tenant is [`Error::NotFound`](crate::Error::NotFound), like a
    /// missing one.
    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job>;

    /// A tenant's jobs, newest first.
    async fn list(&self, tenant: &TenantId, params: ListParams) -> Result<JobPage>;

    /// A tenant's job's events with `seq > params.after`, oldest first.
    async fn events(&self, tenant: &TenantId, id: JobId, params: EventParams) -> Result<EventPage>;

    /// Claims up to `params.limit` due jobs, by priority (high first), then not-before
    /// time, then id. Each becomes `running` with a fresh lease, one more attempt and a
    /// `started` event. No job is handed to two claimers.
    async fn claim(&self, params: ClaimParams) -> Result<Claimed>;

    /// Extends a lease by `ttl` from now and says whether cancellation was requested.
    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<LeaseStatus>;

    /// Appends an event about a running job, updating its progress or artifacts with it.
    async fn append(&self, lease: &Lease, append: Append) -> Result<Event>;

    /// Records the outcome of an attempt and ends the lease.
    async fn finish(&self, lease: &Lease, outcome: Finish) -> Result<Job>;

    /// Cancels a queued job at once, or asks a running one to stop.
    ///
    /// Terminal jobs are [`Error::InvalidTransition`](crate::Error::InvalidTransition).
    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job>;

    /// Ends expired leases: the job is requeued when attempts are left, failed when not,
    /// and cancelled when cancellation had been asked for.
    async fn reap(&self, params: ReapParams) -> Result<ReapReport>;

    /// Deletes terminal jobs completed before `params.completed_before`, with their
    /// events and artifact records, and returns them so their bytes can be deleted.
    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>>;

    /// Counts jobs by status, across tenants.
    async fn stats(&self) -> Result<QueueStats>;
}

/// Forwards to the store behind the `Arc`, so `Arc<S>` and `Arc<dyn JobStore>` are stores.
#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<T: JobStore + ?Sized> JobStore for Arc<T> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    fn notifier(&self) -> &Notifier {
        (**self).notifier()
    }
    fn clock(&self) -> &Clock {
        (**self).clock()
    }
    async fn insert(&self, jobs: Vec<Job>) -> Result<Vec<Inserted>> {
        (**self).insert(jobs).await
    }
    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        (**self).get(tenant, id).await
    }
    async fn list(&self, tenant: &TenantId, params: ListParams) -> Result<JobPage> {
        (**self).list(tenant, params).await
    }
    async fn events(&self, tenant: &TenantId, id: JobId, p: EventParams) -> Result<EventPage> {
        (**self).events(tenant, id, p).await
    }
    async fn claim(&self, params: ClaimParams) -> Result<Claimed> {
        (**self).claim(params).await
    }
    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<LeaseStatus> {
        (**self).heartbeat(lease, ttl).await
    }
    async fn append(&self, lease: &Lease, append: Append) -> Result<Event> {
        (**self).append(lease, append).await
    }
    async fn finish(&self, lease: &Lease, outcome: Finish) -> Result<Job> {
        (**self).finish(lease, outcome).await
    }
    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        (**self).cancel(tenant, id).await
    }
    async fn reap(&self, params: ReapParams) -> Result<ReapReport> {
        (**self).reap(params).await
    }
    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
        (**self).purge(params).await
    }
    async fn stats(&self) -> Result<QueueStats> {
        (**self).stats().await
    }
}

/// The answer to one job of [`JobStore::insert`].
#[derive(Debug, Clone, PartialEq)]
pub struct Inserted {
    /// The job as stored (the existing one for a replayed idempotency key).
    pub job: Job,
    /// `false` when an idempotency key matched an existing job.
    pub created: bool,
}

/// Filters and paging for [`JobStore::list`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ListParams {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this type.
    pub job_type: Option<JobType>,
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
            limit: 50,
            before: None,
        }
    }
}

impl ListParams {
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

/// A page of [`JobStore::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<Job>,
    /// The cursor for the next page; `None` on the last one.
    pub next: Option<JobId>,
}

/// What [`JobStore::events`] returns.
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

/// A page of [`JobStore::events`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    /// Oldest first.
    pub events: Vec<Event>,
    /// Whether the job is terminal (its timeline will not grow).
    pub terminal: bool,
}

/// What [`JobStore::claim`] looks for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClaimParams {
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
            types: None,
            limit: 1,
            lease_ttl: Duration::from_secs(30),
        }
    }
}

impl ClaimParams {
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
    /// Claims only jobs of these types.
    pub fn types(mut self, types: Vec<JobType>) -> Self {
        self.types = Some(types);
        self
    }
}

/// What [`JobStore::claim`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The claimed jobs, in claim order.
    pub jobs: Vec<ClaimedJob>,
    /// When the next queued (matching) job becomes due, if one is queued and not yet due:
    /// an idle worker sleeps until then.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// A job and the lease its claimer holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The job, now `running`.
    pub job: Job,
    /// The lease on it.
    pub lease: Lease,
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
        Lease {
            job_id,
            lease_id: ulid::Ulid::new().0,
            expires_at: crate::job::now() + ttl,
        }
    }
}

/// What [`JobStore::heartbeat`] tells the worker.
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

/// The outcome of an attempt, for [`JobStore::finish`].
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
}

impl Finish {
    /// The status this outcome asks for.
    pub fn target(&self) -> JobStatus {
        match self {
            Finish::Completed { .. } => JobStatus::Completed,
            Finish::Failed { .. } => JobStatus::Failed,
            Finish::Cancelled => JobStatus::Cancelled,
            Finish::Retry { .. } | Finish::Released => JobStatus::Queued,
        }
    }
}

/// Options of [`JobStore::reap`].
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

/// What [`JobStore::reap`] did.
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

/// Options of [`JobStore::purge`].
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
            JobStatus::Queued => &mut self.queued,
            JobStatus::Running => &mut self.running,
            JobStatus::Completed => &mut self.completed,
            JobStatus::Failed => &mut self.failed,
            JobStatus::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    /// Jobs in terminal states.
    pub fn terminal(&self) -> u64 {
        self.completed + self.failed + self.cancelled
    }
}
