//! [`MemoryStore`]: the complete in-process backend and the reference semantics.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::clock::Clock;
use crate::job::{Event, EventKind, Job, JobId, JobStatus, NewEvent, TenantId};
use crate::store::{
    Append, ClaimParams, Claimed, ClaimedJob, DocumentId, DocumentPage, DocumentStore, EventPage,
    EventParams, Finish, FinishPlan, Inserted, JobPage, JobStore, Lease, LeaseStatus, ListParams,
    Notifier, PurgeParams, QueueStats, ReapParams, ReapReport, StoredDocument, apply_plan,
    cancel_plan, plan_finish, plan_reap, start_attempt,
};
use crate::{Error, Result};

/// A store that keeps everything in memory: for tests, demos and single-process hosts that
/// can lose their jobs on restart. It passes the whole conformance suite.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> jobworks::Result<()> {
/// use jobworks::{Engine, MemoryStore};
/// let engine = Engine::builder().store(MemoryStore::new()).build()?;
/// assert_eq!(engine.store().backend(), "memory");
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    notifier: Notifier,
    documents: Mutex<HashMap<DocumentId, StoredDocument>>,
    clock: Clock,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that reads the time from `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        MemoryStore {
            clock,
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is applied in full before the lock is released, so a poisoned
        // lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn documents_mut(&self) -> MutexGuard<'_, HashMap<DocumentId, StoredDocument>> {
        self.documents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Claim order: priority high first, then not-before time, then id.
type ReadyKey = (Reverse<i32>, DateTime<Utc>, JobId);

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<JobId, Entry>,
    /// Queued jobs that are due, in claim order.
    ready: BTreeSet<ReadyKey>,
    /// Queued jobs that are not due yet, by not-before time.
    scheduled: BTreeSet<(DateTime<Utc>, JobId)>,
    /// Running jobs by lease expiry.
    leases: BTreeSet<(DateTime<Utc>, JobId)>,
    /// Every job by tenant, for listing.
    by_tenant: BTreeSet<(TenantId, JobId)>,
    idempotency: HashMap<(TenantId, String), JobId>,
    counts: [u64; 5],
}

#[derive(Debug)]
struct Entry {
    job: Job,
    events: Vec<Event>,
    lease: Option<Lease>,
}

impl Entry {
    fn view(&self) -> Job {
        let mut job = self.job.clone();
        let public = |e: &&Event| e.visibility == crate::Visibility::Public;
        job.latest_event = self.events.iter().rev().find(public).cloned();
        job
    }

    fn push_event(&mut self, event: NewEvent, now: DateTime<Utc>) -> &Event {
        let seq = self.events.len() as u64 + 1;
        self.events.push(event.into_event(seq, now));
        self.job.revision += 1;
        self.job.updated_at = now;
        self.events.last().expect("just pushed")
    }
}

fn status_index(status: JobStatus) -> usize {
    JobStatus::ALL
        .iter()
        .position(|&s| s == status)
        .expect("ALL lists every status")
}

impl Inner {
    fn enqueue_key(&mut self, priority: i32, run_at: DateTime<Utc>, id: JobId, now: DateTime<Utc>) {
        if run_at <= now {
            self.ready.insert((Reverse(priority), run_at, id));
        } else {
            self.scheduled.insert((run_at, id));
        }
    }

    fn dequeue_key(&mut self, priority: i32, run_at: DateTime<Utc>, id: JobId) {
        if !self.ready.remove(&(Reverse(priority), run_at, id)) {
            self.scheduled.remove(&(run_at, id));
        }
    }

    fn promote_due(&mut self, now: DateTime<Utc>) {
        while let Some(&(run_at, id)) = self.scheduled.first() {
            if run_at > now {
                break;
            }
            self.scheduled.pop_first();
            if let Some(entry) = self.jobs.get(&id) {
                self.ready.insert((Reverse(entry.job.priority), run_at, id));
            }
        }
    }

    fn entry_for(&mut self, tenant: &TenantId, id: JobId) -> Result<&mut Entry> {
        match self.jobs.get_mut(&id) {
            Some(entry) if entry.job.tenant == *tenant => Ok(entry),
            _ => Err(Error::NotFound { id }),
        }
    }

    /// The entry of a running job whose current, unexpired lease is `lease`.
    fn leased(&mut self, lease: &Lease, now: DateTime<Utc>) -> Result<&mut Entry> {
        let lost = Error::LeaseLost { id: lease.job_id };
        let entry = self
            .jobs
            .get_mut(&lease.job_id)
            .ok_or(Error::LeaseLost { id: lease.job_id })?;
        let held = entry.lease.map(|l| (l.lease_id, l.expires_at));
        if lease.is_current(entry.job.status, held, now) {
            Ok(entry)
        } else {
            Err(lost)
        }
    }

    /// Applies a finish or reap plan to a running job and its indexes.
    fn apply(&mut self, id: JobId, plan: FinishPlan, outcome: Option<&Finish>, now: DateTime<Utc>) {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return;
        };
        let from = entry.job.status;
        if let Some(lease) = entry.lease.take() {
            self.leases.remove(&(lease.expires_at, id));
        }
        let event = apply_plan(&mut entry.job, plan, outcome, now);
        entry.push_event(event, now);
        let (status, priority, run_at) = (entry.job.status, entry.job.priority, entry.job.run_at);
        self.counts[status_index(from)] -= 1;
        self.counts[status_index(status)] += 1;
        if status == JobStatus::Queued {
            self.enqueue_key(priority, run_at, id, now);
        }
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }

    async fn insert(&self, jobs: Vec<Job>) -> Result<Vec<Inserted>> {
        let now = self.clock.now();
        let mut inner = self.lock();
        // Check every idempotency key first so the call is all or nothing.
        let mut replays = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let existing = job.idempotency_key.as_ref().and_then(|key| {
                inner
                    .idempotency
                    .get(&(job.tenant.clone(), key.clone()))
                    .copied()
            });
            match existing.and_then(|id| inner.jobs.get(&id)) {
                Some(entry) if entry.job.same_request(job) => replays.push(Some(entry.view())),
                Some(entry) => return Err(Error::AlreadyExists { id: entry.job.id }),
                None => replays.push(None),
            }
        }
        let mut out = Vec::with_capacity(jobs.len());
        let mut any_new = false;
        for (mut job, replay) in jobs.into_iter().zip(replays) {
            if let Some(existing) = replay {
                out.push(Inserted {
                    job: existing,
                    created: false,
                });
                continue;
            }
            if let Some(key) = &job.idempotency_key {
                let slot = (job.tenant.clone(), key.clone());
                if let Some(&id) = inner.idempotency.get(&slot) {
                    // The same key twice in one batch: the first one wins.
                    let first = &inner.jobs[&id];
                    if !first.job.same_request(&job) {
                        return Err(Error::AlreadyExists { id });
                    }
                    out.push(Inserted {
                        job: first.view(),
                        created: false,
                    });
                    continue;
                }
                inner.idempotency.insert(slot, job.id);
            }
            job.status = JobStatus::Queued;
            job.revision = 0;
            let mut entry = Entry {
                job,
                // Room for the usual queued, started and terminal events.
                events: Vec::with_capacity(3),
                lease: None,
            };
            entry.push_event(NewEvent::new(EventKind::Queued, "queued"), now);
            let job = &entry.job;
            let id = job.id;
            inner.enqueue_key(job.priority, job.run_at, id, now);
            inner.by_tenant.insert((job.tenant.clone(), id));
            inner.counts[status_index(JobStatus::Queued)] += 1;
            out.push(Inserted {
                job: entry.view(),
                created: true,
            });
            inner.jobs.insert(id, entry);
            any_new = true;
        }
        drop(inner);
        if any_new {
            self.notifier.work_available();
        }
        Ok(out)
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        Ok(self.lock().entry_for(tenant, id)?.view())
    }

    async fn list(&self, tenant: &TenantId, params: ListParams) -> Result<JobPage> {
        let inner = self.lock();
        let limit = params.limit.clamp(1, 1000);
        let low = (tenant.clone(), JobId::from_u128(0));
        let high = (
            tenant.clone(),
            params.before.unwrap_or(JobId::from_u128(u128::MAX)),
        );
        let mut jobs = Vec::with_capacity(limit.min(64));
        let mut next = None;
        for (_, id) in inner.by_tenant.range(low..high).rev() {
            let entry = &inner.jobs[id];
            let job = &entry.job;
            if params.status.is_some_and(|s| s != job.status)
                || params.job_type.as_ref().is_some_and(|t| *t != job.job_type)
            {
                continue;
            }
            if jobs.len() == limit {
                next = jobs.last().map(|j: &Job| j.id);
                break;
            }
            jobs.push(entry.view());
        }
        Ok(JobPage { jobs, next })
    }

    async fn events(&self, tenant: &TenantId, id: JobId, params: EventParams) -> Result<EventPage> {
        let mut inner = self.lock();
        let entry = inner.entry_for(tenant, id)?;
        let start = usize::try_from(params.after)
            .unwrap_or(usize::MAX)
            .min(entry.events.len());
        let events = entry.events[start..]
            .iter()
            .filter(|e| params.include_internal || e.visibility == crate::Visibility::Public)
            .take(params.limit.clamp(1, 1000))
            .cloned()
            .collect();
        Ok(EventPage {
            events,
            terminal: entry.job.status.is_terminal(),
        })
    }

    async fn claim(&self, params: ClaimParams) -> Result<Claimed> {
        let now = self.clock.now();
        let ttl = chrono::Duration::from_std(params.lease_ttl)
            .map_err(|_| Error::invalid("lease_ttl", "too long"))?;
        let mut inner = self.lock();
        inner.promote_due(now);
        let mut picked = Vec::with_capacity(params.limit.min(inner.ready.len()));
        for key in &inner.ready {
            if picked.len() == params.limit {
                break;
            }
            let wanted = match &params.types {
                None => true,
                Some(types) => types.contains(&inner.jobs[&key.2].job.job_type),
            };
            if wanted {
                picked.push(*key);
            }
        }
        let mut jobs = Vec::with_capacity(picked.len());
        for key in picked {
            inner.ready.remove(&key);
            let id = key.2;
            let lease = Lease {
                job_id: id,
                lease_id: ulid::Ulid::new().0,
                expires_at: now + ttl,
            };
            inner.leases.insert((lease.expires_at, id));
            let entry = inner.jobs.get_mut(&id).expect("indexed jobs exist");
            entry.lease = Some(lease);
            let started = start_attempt(&mut entry.job, now);
            entry.push_event(started, now);
            jobs.push(ClaimedJob {
                job: entry.view(),
                lease,
            });
            self.notifier.job_changed(id);
        }
        let claimed = jobs.len() as u64;
        inner.counts[status_index(JobStatus::Queued)] -= claimed;
        inner.counts[status_index(JobStatus::Running)] += claimed;
        let next_run_at = if jobs.len() < params.limit {
            let wanted = |id: &JobId| match &params.types {
                None => true,
                Some(types) => types.contains(&inner.jobs[id].job.job_type),
            };
            inner
                .scheduled
                .iter()
                .find(|(_, id)| wanted(id))
                .map(|&(at, _)| at)
        } else {
            None
        };
        Ok(Claimed { jobs, next_run_at })
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<LeaseStatus> {
        let now = self.clock.now();
        let ttl = chrono::Duration::from_std(ttl).map_err(|_| Error::invalid("ttl", "too long"))?;
        let mut inner = self.lock();
        let entry = inner.leased(lease, now)?;
        let current = entry.lease.as_mut().expect("leased jobs have a lease");
        let old = current.expires_at;
        current.expires_at = now + ttl;
        let status = LeaseStatus {
            expires_at: current.expires_at,
            cancel_requested: entry.job.cancel_requested,
        };
        inner.leases.remove(&(old, lease.job_id));
        inner.leases.insert((status.expires_at, lease.job_id));
        Ok(status)
    }

    async fn append(&self, lease: &Lease, append: Append) -> Result<Event> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let entry = inner.leased(lease, now)?;
        if let Some(progress) = append.progress {
            entry.job.progress = Some(progress);
        }
        if let Some(artifact) = append.artifact {
            let artifacts = &mut entry.job.artifacts;
            artifacts.retain(|a| a.name != artifact.name);
            artifacts.push(artifact);
        }
        let event = entry.push_event(append.event, now).clone();
        drop(inner);
        self.notifier.job_changed(lease.job_id);
        Ok(event)
    }

    async fn finish(&self, lease: &Lease, outcome: Finish) -> Result<Job> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let entry = inner.leased(lease, now)?;
        let job = &entry.job;
        let plan = plan_finish(
            &outcome,
            job.attempts,
            job.max_attempts,
            job.cancel_requested,
        );
        let requeued = plan.status == JobStatus::Queued;
        inner.apply(lease.job_id, plan, Some(&outcome), now);
        let view = inner.jobs[&lease.job_id].view();
        drop(inner);
        self.notifier.job_changed(lease.job_id);
        if requeued {
            self.notifier.work_available();
        }
        Ok(view)
    }

    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let entry = inner.entry_for(tenant, id)?;
        let was_queued = entry.job.status == JobStatus::Queued;
        if let Some(event) = cancel_plan(&mut entry.job, now)? {
            entry.push_event(event, now);
        }
        if was_queued {
            let (priority, run_at) = (entry.job.priority, entry.job.run_at);
            inner.dequeue_key(priority, run_at, id);
            inner.counts[status_index(JobStatus::Queued)] -= 1;
            inner.counts[status_index(JobStatus::Cancelled)] += 1;
        }
        let view = inner.jobs[&id].view();
        drop(inner);
        self.notifier.job_changed(id);
        Ok(view)
    }

    async fn reap(&self, params: ReapParams) -> Result<ReapReport> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let expired: Vec<JobId> = inner
            .leases
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(params.limit)
            .map(|&(_, id)| id)
            .collect();
        let mut report = ReapReport::default();
        for &id in &expired {
            let job = &inner.jobs[&id].job;
            let plan = plan_reap(job.attempts, job.max_attempts, job.cancel_requested);
            report.count(plan.status);
            inner.apply(id, plan, None, now);
        }
        drop(inner);
        for id in expired {
            self.notifier.job_changed(id);
        }
        if report.requeued > 0 {
            self.notifier.work_available();
        }
        Ok(report)
    }

    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
        let mut inner = self.lock();
        let doomed: Vec<JobId> = inner
            .jobs
            .values()
            .filter(|e| {
                e.job.status.is_terminal()
                    && e.job
                        .completed_at
                        .is_some_and(|t| t < params.completed_before)
            })
            .take(params.limit)
            .map(|e| e.job.id)
            .collect();
        let mut purged = Vec::with_capacity(doomed.len());
        for id in doomed {
            let entry = inner.jobs.remove(&id).expect("just found");
            let job = entry.job;
            inner.by_tenant.remove(&(job.tenant.clone(), id));
            if let Some(key) = job.idempotency_key {
                inner.idempotency.remove(&(job.tenant.clone(), key));
            }
            inner.counts[status_index(job.status)] -= 1;
            purged.push((job.tenant, id));
        }
        Ok(purged)
    }

    async fn stats(&self) -> Result<QueueStats> {
        let [queued, running, completed, failed, cancelled] = self.lock().counts;
        Ok(QueueStats {
            queued,
            running,
            completed,
            failed,
            cancelled,
        })
    }
}

#[async_trait]
impl DocumentStore for MemoryStore {
    async fn create_document(&self, document: StoredDocument) -> Result<StoredDocument> {
        self.documents_mut().insert(document.id, document.clone());
        Ok(document)
    }

    async fn document(&self, tenant: &TenantId, id: DocumentId) -> Result<Option<StoredDocument>> {
        let all = self.documents_mut();
        Ok(all.get(&id).filter(|d| &d.tenant == tenant).cloned())
    }

    async fn documents(
        &self,
        tenant: &TenantId,
        page: DocumentPage,
    ) -> Result<Vec<StoredDocument>> {
        let all = self.documents_mut();
        let mut ids: Vec<DocumentId> = all
            .values()
            .filter(|d| &d.tenant == tenant && d.id.to_u128() < page.upper())
            .map(|d| d.id)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids
            .into_iter()
            .take(page.size())
            .map(|id| all[&id].clone())
            .collect())
    }

    async fn update_document(
        &self,
        tenant: &TenantId,
        id: DocumentId,
        name: &str,
        body: &Value,
    ) -> Result<Option<StoredDocument>> {
        let mut all = self.documents_mut();
        let Some(stored) = all.get_mut(&id).filter(|d| &d.tenant == tenant) else {
            return Ok(None);
        };
        stored.name = name.to_owned();
        stored.body = body.clone();
        stored.updated_at = self.clock.now();
        Ok(Some(stored.clone()))
    }

    async fn delete_document(&self, tenant: &TenantId, id: DocumentId) -> Result<bool> {
        let mut all = self.documents_mut();
        if all.get(&id).is_some_and(|d| &d.tenant == tenant) {
            all.remove(&id);
            return Ok(true);
        }
        Ok(false)
    }
}
