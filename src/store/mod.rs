//! The [`JobStore`] trait: where jobs, timelines, leases and artifact records live.
//!
//! A store stores; it does not decide. It implements storage primitives (insert, load,
//! a guarded commit, a claim, reads, purge, counts) and the state machine runs above it,
//! once for every backend: [`JobStoreExt`] loads a record, applies one of the [`rules`],
//! commits the write guarded by the revision and lease it read, tries again on a
//! conflict, and notifies. Every write about a running job carries its [`Lease`] and is
//! refused with [`Error::LeaseLost`](crate::Error::LeaseLost) unless that lease is the
//! job's current, unexpired one.

mod activity;
mod documents;
mod notify;
mod params;
mod protocol;
mod queues;
mod record;
pub mod rules;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;
use crate::clock::Clock;
use std::collections::BTreeMap;

use crate::job::{Job, JobId, QueueName, ScheduleId, TenantId};
use crate::schedule::Schedule;

pub use activity::{ENGINE_ALIVE, ENGINE_BEAT, ENGINE_FORGET, EngineBeat, MinuteCounts};
pub(crate) use activity::{forget_before, minute_of};
pub use documents::{DocumentId, DocumentPage, DocumentStore, StoredDocument};
pub use notify::{JobWatch, Notifier};
pub use params::{
    Append, ClaimParams, Claimed, ClaimedJob, EventPage, EventParams, Finish, Inserted, JobPage,
    Lease, LeaseStatus, ListParams, Operator, PurgeParams, QueueStats, ReapParams, ReapReport,
};
pub(crate) use protocol::Held;
pub use protocol::JobStoreExt;
#[cfg(feature = "postgres")]
pub(crate) use protocol::{Inserter, submit_with};
pub use queues::{MAX_QUEUE_LIMIT, Queue, QueueInfo, QueuePatch, QueueSettings, Quota, RateLimit};
pub use record::{Committed, LeaseChange, NewRecord, Step, Stored, Taken, Write};

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

    /// Inserts new jobs with their first event, all or none.
    ///
    /// When a job's idempotency key is already taken in its tenant (by a stored job),
    /// nothing is inserted and the answer lists every such job with the job that holds
    /// the key; the protocol decides whether that is a replay. An empty answer means all
    /// were inserted. Keys are not repeated within one call.
    async fn insert(&self, records: Vec<NewRecord>) -> Result<Vec<Taken>>;

    /// [`insert`](Self::insert) within tenant quotas. When no key is taken and the jobs
    /// would leave a tenant over one of `quotas` ([`Quota::check_all`]), nothing is
    /// inserted and the answer is [`Error::QuotaExceeded`](crate::Error::QuotaExceeded).
    /// The tenant's unfinished jobs are counted in the same step as the insert, so two
    /// submits (on any engine) cannot both pass on one free place.
    ///
    /// Without quotas it is `insert`; a store that does not count them refuses every
    /// call with quotas (the default).
    async fn insert_within(&self, records: Vec<NewRecord>, quotas: &[Quota]) -> Result<Vec<Taken>> {
        if quotas.is_empty() {
            return self.insert(records).await;
        }
        Err(crate::Error::invalid(
            "quota",
            format!(
                "the {} store does not enforce tenant quotas",
                self.backend()
            ),
        ))
    }

    /// The records of these jobs, with artifacts and latest public event, in any order;
    /// missing ones are left out, and so are other tenants' when `tenant` is given (their
    /// rows are not even read: the tenant is part of the lookup).
    async fn load(&self, tenant: Option<&TenantId>, ids: &[JobId]) -> Result<Vec<Stored>>;

    /// Up to `limit` running jobs whose lease expired (at the store's clock), oldest
    /// expiry first.
    async fn load_expired(&self, limit: usize) -> Result<Vec<Stored>>;

    /// Applies guarded writes, each whole or not at all, and answers one [`Committed`] per
    /// write in order.
    ///
    /// A write is applied only while the job's revision is `write.revision` and its lease
    /// id is `write.lease_id`; it then replaces the record with `write.job`, changes the
    /// lease as `write.lease` says, appends `write.events` and upserts
    /// `write.artifacts`. Otherwise (or when the job is gone) it is a conflict. Writes
    /// may share one transaction.
    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Committed>>;

    /// Applies guarded writes about different jobs together: all of them, or none when
    /// any one's guard no longer holds (then the answer is a conflict). A workflow job's
    /// finish and the unblocking of its dependents go through here, so that a crash
    /// between the two cannot strand a dependent.
    async fn commit_all(&self, writes: Vec<Write>) -> Result<Committed>;

    /// Claims up to `params.limit` due jobs, by priority (high first), then not-before
    /// time, then id. No job is handed to two claimers.
    ///
    /// Its meaning is: load the due jobs, apply [`rules::claim`] to each under a fresh
    /// lease of `params.lease_ttl`, commit; a backend may fuse that into one statement
    /// (the differential test holds it to the same records).
    async fn claim(&self, params: ClaimParams) -> Result<Claimed>;

    /// One job of a tenant, with its artifacts and latest event.
    ///
    /// A job of another tenant is [`Error::NotFound`](crate::Error::NotFound), like a
    /// missing one.
    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job>;

    /// A tenant's jobs (every tenant's when `tenant` is `None`: operator reads), newest
    /// first.
    async fn list(&self, tenant: Option<&TenantId>, params: ListParams) -> Result<JobPage>;

    /// A tenant's job's events with `seq > params.after`, oldest first.
    async fn events(&self, tenant: &TenantId, id: JobId, params: EventParams) -> Result<EventPage>;

    /// Deletes terminal jobs completed before `params.completed_before`, with their
    /// events and artifact records, and returns them so their bytes can be deleted.
    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>>;

    /// Deletes a tenant's job with its events and artifact records, only while it still
    /// has `revision` (a guarded delete); `false` when it changed or is gone.
    async fn remove(&self, tenant: &TenantId, id: JobId, revision: u64) -> Result<bool>;

    /// Counts jobs by queue and status, of `tenant` or across tenants when `None` (queues
    /// without jobs left out).
    async fn queue_stats(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>>;

    /// Counts the open jobs (waiting, queued, running) by queue and status, of `tenant`
    /// or of all; the finished counts are left at zero. Unlike
    /// [`queue_stats`](Self::queue_stats) it reads only open jobs, so its cost follows
    /// the backlog, not the history: what gauges and pages that refresh often use. By
    /// default it is `queue_stats` with the finished counts dropped.
    async fn open_counts(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>> {
        let mut all = self.queue_stats(tenant).await?;
        all.retain(|_, c| {
            (c.completed, c.failed, c.cancelled) = (0, 0, 0);
            c.waiting + c.queued + c.running > 0
        });
        Ok(all)
    }

    /// Every queue with stored settings, by name.
    async fn queues(&self) -> Result<Vec<Queue>>;

    /// Changes the settings of queue `name` by `patch` in one step (starting from the
    /// defaults when it has none) and returns them.
    async fn update_queue(&self, name: &QueueName, patch: &QueuePatch) -> Result<QueueSettings>;

    /// Stored schedules by id: one tenant's, or every tenant's when `tenant` is `None`
    /// (each engine's ticks read them all). A store that keeps no schedules answers none
    /// (the default).
    async fn schedules(&self, tenant: Option<&TenantId>) -> Result<Vec<Schedule>> {
        let _ = tenant;
        Ok(Vec::new())
    }

    /// A tenant's schedule; `None` when the tenant has none of that id.
    async fn schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<Option<Schedule>> {
        Ok(self
            .schedules(Some(tenant))
            .await?
            .into_iter()
            .find(|s| s.id == id))
    }

    /// Stores `schedule`, guarded: a new one when `expected` is `None` (and no schedule
    /// has its id), or in place of the stored one of its tenant while that one's revision
    /// is still `expected`. `false` when the guard does not hold.
    ///
    /// A store that keeps no schedules refuses with
    /// [`Error::Unsupported`](crate::Error::Unsupported) (the default).
    async fn put_schedule(&self, schedule: &Schedule, expected: Option<u64>) -> Result<bool> {
        let _ = (schedule, expected);
        Err(crate::Error::Unsupported {
            operation: "schedules",
            backend: self.backend(),
        })
    }

    /// Deletes a tenant's schedule; `false` when the tenant has none of that id.
    async fn delete_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<bool> {
        let _ = (tenant, id);
        Ok(false)
    }

    /// Records that an engine is alive, in place of its earlier beat, and forgets beats
    /// older than [`ENGINE_FORGET`]. A store that keeps no beats ignores it (the
    /// default).
    async fn beat(&self, beat: &EngineBeat) -> Result<()> {
        let _ = beat;
        Ok(())
    }

    /// The engines whose latest beat is at or after `since`, the most recent first;
    /// `None` when the store keeps no beats (the default), so that nobody is told that
    /// no engine runs.
    async fn engines(&self, since: DateTime<Utc>) -> Result<Option<Vec<EngineBeat>>> {
        let _ = since;
        Ok(None)
    }

    /// The jobs of `tenant` (every tenant's when `None`) that completed or failed at or
    /// after `since`, counted by minute, oldest first (minutes without any left out);
    /// `None` when the store cannot count them (the default).
    async fn finished_by_minute(
        &self,
        tenant: Option<&TenantId>,
        since: DateTime<Utc>,
    ) -> Result<Option<Vec<MinuteCounts>>> {
        let _ = (tenant, since);
        Ok(None)
    }
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
    async fn insert(&self, records: Vec<NewRecord>) -> Result<Vec<Taken>> {
        (**self).insert(records).await
    }
    async fn insert_within(&self, records: Vec<NewRecord>, quotas: &[Quota]) -> Result<Vec<Taken>> {
        (**self).insert_within(records, quotas).await
    }
    async fn load(&self, tenant: Option<&TenantId>, ids: &[JobId]) -> Result<Vec<Stored>> {
        (**self).load(tenant, ids).await
    }
    async fn load_expired(&self, limit: usize) -> Result<Vec<Stored>> {
        (**self).load_expired(limit).await
    }
    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Committed>> {
        (**self).commit(writes).await
    }
    async fn commit_all(&self, writes: Vec<Write>) -> Result<Committed> {
        (**self).commit_all(writes).await
    }
    async fn claim(&self, params: ClaimParams) -> Result<Claimed> {
        (**self).claim(params).await
    }
    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        (**self).get(tenant, id).await
    }
    async fn list(&self, tenant: Option<&TenantId>, params: ListParams) -> Result<JobPage> {
        (**self).list(tenant, params).await
    }
    async fn events(&self, tenant: &TenantId, id: JobId, p: EventParams) -> Result<EventPage> {
        (**self).events(tenant, id, p).await
    }
    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
        (**self).purge(params).await
    }
    async fn remove(&self, tenant: &TenantId, id: JobId, revision: u64) -> Result<bool> {
        (**self).remove(tenant, id, revision).await
    }
    async fn queue_stats(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>> {
        (**self).queue_stats(tenant).await
    }
    async fn open_counts(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>> {
        (**self).open_counts(tenant).await
    }
    async fn queues(&self) -> Result<Vec<Queue>> {
        (**self).queues().await
    }
    async fn update_queue(&self, name: &QueueName, patch: &QueuePatch) -> Result<QueueSettings> {
        (**self).update_queue(name, patch).await
    }
    async fn schedules(&self, tenant: Option<&TenantId>) -> Result<Vec<Schedule>> {
        (**self).schedules(tenant).await
    }
    async fn schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<Option<Schedule>> {
        (**self).schedule(tenant, id).await
    }
    async fn put_schedule(&self, schedule: &Schedule, expected: Option<u64>) -> Result<bool> {
        (**self).put_schedule(schedule, expected).await
    }
    async fn delete_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<bool> {
        (**self).delete_schedule(tenant, id).await
    }
    async fn beat(&self, beat: &EngineBeat) -> Result<()> {
        (**self).beat(beat).await
    }
    async fn engines(&self, since: DateTime<Utc>) -> Result<Option<Vec<EngineBeat>>> {
        (**self).engines(since).await
    }
    async fn finished_by_minute(
        &self,
        tenant: Option<&TenantId>,
        since: DateTime<Utc>,
    ) -> Result<Option<Vec<MinuteCounts>>> {
        (**self).finished_by_minute(tenant, since).await
    }
}
