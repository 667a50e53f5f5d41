//! The [`JobStore`] trait: where jobs, timelines, leases and artifact records live.
//!
//! A store makes atomic compare-and-set transitions and knows nothing of policy: the engine
//! decides what happens next. Every method is one statement or one transaction in a SQL
//! backend. Every write about a running job carries its [`Lease`] and is refused with
//! [`Error::LeaseLost`](crate::Error::LeaseLost) unless that lease is the job's current,
//! unexpired one.

mod documents;
mod notify;
mod params;
mod rules;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::Result;
use crate::clock::Clock;
use crate::job::{Event, Job, JobId, TenantId};

pub use documents::{DocumentId, DocumentPage, DocumentStore, StoredDocument};
pub use notify::{JobWatch, Notifier};
pub use params::{
    Append, ClaimParams, Claimed, ClaimedJob, EventPage, EventParams, Finish, Inserted, JobPage,
    Lease, LeaseStatus, ListParams, PurgeParams, QueueStats, ReapParams, ReapReport,
};
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
