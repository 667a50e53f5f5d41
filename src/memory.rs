//! [`MemoryStore`]: the complete in-process backend and the reference semantics.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::clock::Clock;
use crate::job::{Event, Job, JobId, JobStatus, QueueName, ScheduleId, TenantId};
use crate::schedule::Schedule;
use crate::store::{
    ClaimParams, Claimed, ClaimedJob, Committed, DocumentId, DocumentPage, DocumentStore,
    EngineBeat, EventPage, EventParams, JobPage, JobStore, Lease, ListParams, MinuteCounts,
    NewRecord, Notifier, PurgeParams, Queue, QueuePatch, QueueSettings, QueueStats, Quota, Stored,
    StoredDocument, Taken, Write, rules,
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
    schedules: Mutex<BTreeMap<ScheduleId, Schedule>>,
    beats: Mutex<HashMap<String, EngineBeat>>,
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

    fn schedules_mut(&self) -> MutexGuard<'_, BTreeMap<ScheduleId, Schedule>> {
        self.schedules.lock().unwrap_or_else(|e| e.into_inner())
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
    /// The jobs of each queue that has or had any.
    lanes: HashMap<QueueName, Lane>,
    /// Running jobs by lease expiry.
    leases: BTreeSet<(DateTime<Utc>, JobId)>,
    /// Every job by tenant, for listing.
    by_tenant: BTreeSet<(TenantId, JobId)>,
    idempotency: HashMap<(TenantId, String), JobId>,
    /// Stored queue settings.
    queues: BTreeMap<QueueName, QueueSettings>,
    /// The state of each rate-limited queue's bucket ([`rules::RateWindow`]).
    rate_tats: HashMap<QueueName, DateTime<Utc>>,
}

/// One queue's indexes.
#[derive(Debug, Default)]
struct Lane {
    /// Queued jobs that are due, by tenant, in claim order.
    ready: BTreeMap<TenantId, BTreeSet<ReadyKey>>,
    /// The tenant the last claim served last ([`rules::pick`]).
    cursor: Option<TenantId>,
    /// Queued jobs that are not due yet, by not-before time.
    scheduled: BTreeSet<(DateTime<Utc>, JobId)>,
    /// Running jobs by lease expiry.
    leases: BTreeSet<(DateTime<Utc>, JobId)>,
    /// Jobs by status.
    counts: [u64; JobStatus::ALL.len()],
}

#[derive(Debug)]
struct Entry {
    /// The record; its job's `latest_event` is kept current by every write.
    stored: Stored,
    events: Vec<Event>,
}

fn status_index(status: JobStatus) -> usize {
    JobStatus::ALL
        .iter()
        .position(|&s| s == status)
        .expect("ALL lists every status")
}

impl Lane {
    /// How many of its running jobs hold a lease that is unexpired at `now`.
    fn running(&self, now: DateTime<Utc>) -> u64 {
        let expired = self
            .leases
            .range(..=(now, JobId::from_u128(u128::MAX)))
            .count();
        (self.leases.len() - expired) as u64
    }

    /// The first tenant above `after` (or of all) with due jobs.
    fn next_tenant(&self, after: Option<&TenantId>) -> Option<TenantId> {
        use std::ops::Bound::{Excluded, Unbounded};
        let lower = after.map_or(Unbounded, Excluded);
        self.ready
            .range((lower, Unbounded))
            .next()
            .map(|(t, _)| t.clone())
    }

    /// How many jobs with each concurrency key run under a lease unexpired at `now`.
    fn running_by_key<'a>(
        &self,
        jobs: &'a HashMap<JobId, Entry>,
        now: DateTime<Utc>,
    ) -> BTreeMap<&'a str, u64> {
        let mut busy = BTreeMap::new();
        for (_, id) in self.leases.range((now, JobId::from_u128(u128::MAX))..) {
            if let Some(key) = jobs[id].stored.job.concurrency_key.as_deref() {
                *busy.entry(key).or_default() += 1;
            }
        }
        busy
    }

    /// Moves the jobs that became due to `ready`.
    fn promote_due(&mut self, jobs: &HashMap<JobId, Entry>, now: DateTime<Utc>) {
        while let Some(&(run_at, id)) = self.scheduled.first() {
            if run_at > now {
                break;
            }
            self.scheduled.pop_first();
            if let Some(entry) = jobs.get(&id) {
                let job = &entry.stored.job;
                let ready = (Reverse(job.priority), run_at, id);
                self.ready
                    .entry(job.tenant.clone())
                    .or_default()
                    .insert(ready);
            }
        }
    }
}

impl Inner {
    fn owned(&self, tenant: &TenantId, id: JobId) -> Result<&Entry> {
        match self.jobs.get(&id) {
            Some(entry) if entry.stored.job.tenant == *tenant => Ok(entry),
            _ => Err(Error::NotFound { id }),
        }
    }

    /// How many unfinished jobs `tenant` has (in `queue`, or in all).
    fn unfinished(&self, tenant: &TenantId, queue: Option<&QueueName>) -> u64 {
        let from = (tenant.clone(), JobId::from_u128(0));
        let to = (tenant.clone(), JobId::from_u128(u128::MAX));
        let jobs = self
            .by_tenant
            .range(from..=to)
            .map(|(_, id)| &*self.jobs[id].stored.job);
        let open = |j: &&Job| !j.status.is_terminal() && queue.is_none_or(|q| *q == j.queue);
        jobs.filter(open).count() as u64
    }

    /// Drops a record taken out of `jobs` from every index.
    fn forget(&mut self, stored: Stored, now: DateTime<Utc>) {
        self.index(&stored.job.queue, Keys::of(&stored), false, now);
        let job = stored.job;
        self.by_tenant.remove(&(job.tenant.clone(), job.id));
        if let Some(key) = job.idempotency_key {
            self.idempotency.remove(&(job.tenant, key));
        }
    }

    /// Adds or removes the index entries of a record of `queue`.
    fn index(&mut self, queue: &QueueName, keys: Keys, add: bool, now: DateTime<Utc>) {
        let Keys {
            id,
            tenant,
            status,
            priority,
            run_at,
            lease_expiry,
        } = keys;
        let lane = match self.lanes.get_mut(queue) {
            Some(lane) => lane,
            None => self.lanes.entry(queue.clone()).or_default(),
        };
        if status == JobStatus::Queued {
            let ready = (Reverse(priority), run_at, id);
            if add && run_at <= now {
                lane.ready.entry(tenant).or_default().insert(ready);
            } else if add {
                lane.scheduled.insert((run_at, id));
            } else {
                let removed = match lane.ready.get_mut(&tenant) {
                    Some(set) => {
                        let removed = set.remove(&ready);
                        if set.is_empty() {
                            lane.ready.remove(&tenant);
                        }
                        removed
                    }
                    None => false,
                };
                if !removed {
                    lane.scheduled.remove(&(run_at, id));
                }
            }
        }
        let count = &mut lane.counts[status_index(status)];
        *count = if add { *count + 1 } else { *count - 1 };
        if let Some(at) = lease_expiry {
            if add {
                self.leases.insert((at, id));
                lane.leases.insert((at, id));
            } else {
                self.leases.remove(&(at, id));
                lane.leases.remove(&(at, id));
            }
        }
    }

    /// Applies one guarded write.
    /// Whether `write`'s guard holds: the job is there with the revision and lease the
    /// write expects.
    fn holds(&self, write: &Write) -> bool {
        self.jobs.get(&write.id()).is_some_and(|entry| {
            entry.stored.job.revision == write.revision
                && entry.stored.lease.map(|l| l.lease_id) == write.lease_id
        })
    }

    fn commit(&mut self, mut write: Write, now: DateTime<Utc>) -> Committed {
        if !self.holds(&write) {
            return Committed::Conflict;
        }
        let entry = self.jobs.get_mut(&write.id()).expect("held");
        let current = &entry.stored;
        let before = Keys::of(current);
        entry.events.append(&mut write.events);
        entry.stored = write.into_stored();
        let after = Keys::of(&entry.stored);
        let queue = entry.stored.job.queue.clone();
        self.index(&queue, before, false, now);
        self.index(&queue, after, true, now);
        Committed::Applied
    }

    /// Claims a due job in place: [`rules::claim`] applied to its record, which is taken
    /// out of the map for it and put back changed (so it is not copied).
    fn claim(&mut self, id: JobId, lease: Lease, now: DateTime<Utc>) -> Result<ClaimedJob> {
        let Entry { stored, mut events } = self.jobs.remove(&id).expect("indexed jobs exist");
        if !rules::claimable(&stored) {
            let status = stored.job.status;
            self.jobs.insert(id, Entry { stored, events });
            return Err(Error::InvalidTransition {
                id,
                from: status,
                to: JobStatus::Running,
            });
        }
        let before = Keys::of(&stored);
        let mut write = rules::claim(stored, lease, now)?;
        let claimed = ClaimedJob::of(&write, lease);
        events.append(&mut write.events);
        let stored = write.into_stored();
        self.index(&stored.job.queue, before, false, now);
        self.index(&stored.job.queue, Keys::of(&stored), true, now);
        self.jobs.insert(id, Entry { stored, events });
        Ok(claimed)
    }
}

/// What the indexes know of a record.
#[derive(Clone)]
struct Keys {
    id: JobId,
    tenant: TenantId,
    status: JobStatus,
    priority: i32,
    run_at: DateTime<Utc>,
    lease_expiry: Option<DateTime<Utc>>,
}

impl Keys {
    fn of(stored: &Stored) -> Keys {
        let job = &stored.job;
        Keys {
            id: job.id,
            tenant: job.tenant.clone(),
            status: job.status,
            priority: job.priority,
            run_at: job.run_at,
            lease_expiry: stored.lease.map(|l| l.expires_at),
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

    async fn insert(&self, records: Vec<NewRecord>) -> Result<Vec<Taken>> {
        self.insert_within(records, &[]).await
    }

    async fn insert_within(&self, records: Vec<NewRecord>, quotas: &[Quota]) -> Result<Vec<Taken>> {
        let mut inner = self.lock();
        let now = self.clock.now();
        // Every key is checked first, so the call is all or nothing.
        let taken: Vec<Taken> = records
            .iter()
            .enumerate()
            .filter_map(|(index, r)| {
                let key = r.job.idempotency_key.clone()?;
                let by = *inner.idempotency.get(&(r.job.tenant.clone(), key))?;
                Some(Taken { index, by })
            })
            .collect();
        if !taken.is_empty() {
            return Ok(taken);
        }
        // Under the lock: nothing comes between the count and the insert.
        Quota::check_all(quotas, records.iter().map(|r| &r.job), |tenant, queue| {
            Ok(inner.unfinished(tenant, queue))
        })?;
        for NewRecord { job, event } in records {
            let id = job.id;
            if let Some(key) = &job.idempotency_key {
                inner
                    .idempotency
                    .insert((job.tenant.clone(), key.clone()), id);
            }
            inner.by_tenant.insert((job.tenant.clone(), id));
            let stored = Stored {
                job: Box::new(job),
                lease: None,
                next_seq: event.seq + 1,
            };
            inner.index(&stored.job.queue, Keys::of(&stored), true, now);
            // Room for the usual queued, started and terminal events.
            let mut events = Vec::with_capacity(3);
            events.push(event);
            inner.jobs.insert(id, Entry { stored, events });
        }
        Ok(Vec::new())
    }

    async fn load(&self, tenant: Option<&TenantId>, ids: &[JobId]) -> Result<Vec<Stored>> {
        let inner = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| inner.jobs.get(id))
            .filter(|e| tenant.is_none_or(|t| e.stored.job.tenant == *t))
            .map(|e| e.stored.clone())
            .collect())
    }

    async fn load_expired(&self, limit: usize) -> Result<Vec<Stored>> {
        let inner = self.lock();
        let now = self.clock.now();
        Ok(inner
            .leases
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .map(|(_, id)| inner.jobs[id].stored.clone())
            .collect())
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Committed>> {
        let mut inner = self.lock();
        let now = self.clock.now();
        Ok(writes.into_iter().map(|w| inner.commit(w, now)).collect())
    }

    async fn commit_all(&self, writes: Vec<Write>) -> Result<Committed> {
        let mut inner = self.lock();
        let now = self.clock.now();
        let distinct = writes.iter().map(Write::id).collect::<HashSet<_>>().len() == writes.len();
        if !distinct || !writes.iter().all(|w| inner.holds(w)) {
            return Ok(Committed::Conflict);
        }
        for w in writes {
            inner.commit(w, now);
        }
        Ok(Committed::Applied)
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        Ok(Job::clone(&self.lock().owned(tenant, id)?.stored.job))
    }

    async fn list(&self, tenant: Option<&TenantId>, params: ListParams) -> Result<JobPage> {
        let inner = self.lock();
        let limit = params.limit.clamp(1, 1000);
        let before = params.before.unwrap_or(JobId::from_u128(u128::MAX));
        let selected: Vec<JobId> = match tenant {
            Some(tenant) => {
                let low = (tenant.clone(), JobId::from_u128(0));
                let high = (tenant.clone(), before);
                inner
                    .by_tenant
                    .range(low..high)
                    .rev()
                    .map(|(_, id)| *id)
                    .filter(|id| params.matches(&inner.jobs[id].stored.job))
                    .take(limit + 1)
                    .collect()
            }
            // Across tenants: the newest `limit + 1` that match, kept in a bounded heap.
            None => {
                let mut newest = std::collections::BinaryHeap::with_capacity(limit + 2);
                for (id, entry) in &inner.jobs {
                    if *id < before && params.matches(&entry.stored.job) {
                        newest.push(Reverse(*id));
                        if newest.len() > limit + 1 {
                            newest.pop();
                        }
                    }
                }
                let mut ids: Vec<JobId> = newest.into_iter().map(|Reverse(id)| id).collect();
                ids.sort_unstable_by(|a, b| b.cmp(a));
                ids
            }
        };
        let jobs: Vec<Job> = selected[..selected.len().min(limit)]
            .iter()
            .map(|id| Job::clone(&inner.jobs[id].stored.job))
            .collect();
        let next = (selected.len() > limit)
            .then(|| jobs.last().map(|j| j.id))
            .flatten();
        Ok(JobPage { jobs, next })
    }

    async fn events(&self, tenant: &TenantId, id: JobId, params: EventParams) -> Result<EventPage> {
        let inner = self.lock();
        let entry = inner.owned(tenant, id)?;
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
            terminal: entry.stored.job.status.is_terminal(),
        })
    }

    async fn claim(&self, params: ClaimParams) -> Result<Claimed> {
        // The time under the lock: a claim never predates the commit that made a job
        // claimable.
        let mut inner = self.lock();
        let now = self.clock.now();
        let expires_at = rules::lease_until(now, params.lease_ttl)?;
        let settings = inner.queues.get(&params.queue).cloned().unwrap_or_default();
        let Inner {
            jobs,
            lanes,
            rate_tats,
            ..
        } = &mut *inner;
        if settings.paused {
            return Ok(Claimed::default());
        }
        let lane = lanes.get_mut(&params.queue);
        let running = lane.as_ref().map_or(0, |lane| lane.running(now));
        let tat = rate_tats.get(&params.queue).copied();
        let plan = rules::ClaimPlan::new(&settings, running, tat, now, params.limit);
        let Some(lane) = lane else {
            return Ok(Claimed::default());
        };
        lane.promote_due(jobs, now);
        let wanted = |id: &JobId| match &params.types {
            None => true,
            Some(types) => types.contains(&jobs[id].stored.job.job_type),
        };
        let (picked, full) = if plan.take == 0 {
            let due = lane.ready.values().flatten().map(|key| key.2);
            (
                Vec::new(),
                plan.full(due.filter(wanted).take(plan.scan()).count()),
            )
        } else if lane.ready.len() == 1 && settings.max_running_per_key.is_none() {
            // One tenant and no key limit: its first due jobs are the picks.
            let (tenant, due) = lane.ready.iter().next().expect("one tenant");
            let due = due.iter().map(|key| key.2).filter(wanted);
            let (picked, full) = rules::one_tenant(&plan, due.take(plan.per_tenant()).collect());
            if !picked.is_empty() && lane.cursor.as_ref() != Some(tenant) {
                lane.cursor = Some(tenant.clone());
            }
            (picked, full)
        } else {
            let candidates = rules::gather(
                &plan,
                lane.cursor.as_ref(),
                |after| Ok(lane.next_tenant(after)),
                |tenant, n| {
                    let due = lane.ready.get(tenant).into_iter().flatten();
                    Ok(due.map(|key| key.2).filter(wanted).take(n).collect())
                },
            )?;
            let found: Vec<&Job> = candidates.iter().map(|id| &*jobs[id].stored.job).collect();
            let busy = match settings.max_running_per_key {
                Some(_) => lane.running_by_key(jobs, now),
                None => BTreeMap::new(),
            };
            let key_running = |key: &str| busy.get(key).copied().unwrap_or(0);
            let picks = rules::pick(&plan, &found, lane.cursor.as_ref(), key_running);
            if picks.cursor.is_some() {
                lane.cursor = picks.cursor;
            }
            let picked = picks.taken.iter().map(|&i| candidates[i]).collect();
            (picked, picks.full)
        };
        let scheduled = if picked.len() < params.limit {
            lane.scheduled
                .iter()
                .find(|(_, id)| wanted(id))
                .map(|&(at, _)| at)
        } else {
            None
        };
        if let Some(tat) = plan.tat_after(picked.len()) {
            rate_tats.insert(params.queue.clone(), tat);
        }
        let next_run_at = rules::earliest(scheduled, plan.next_token(picked.len()));
        let mut jobs = Vec::with_capacity(picked.len());
        for id in picked {
            let lease = Lease {
                job_id: id,
                lease_id: ulid::Ulid::new().0,
                expires_at,
            };
            jobs.push(inner.claim(id, lease, now)?);
        }
        Ok(Claimed {
            jobs,
            next_run_at,
            full,
        })
    }

    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
        let mut inner = self.lock();
        let now = self.clock.now();
        let doomed: Vec<JobId> = inner
            .jobs
            .values()
            .map(|e| &e.stored.job)
            .filter(|job| {
                job.status.is_terminal()
                    && job
                        .completed_at
                        .is_some_and(|t| t < params.completed_before)
            })
            .take(params.limit)
            .map(|job| job.id)
            .collect();
        let mut purged = Vec::with_capacity(doomed.len());
        for id in doomed {
            let stored = inner.jobs.remove(&id).expect("just found").stored;
            purged.push((stored.job.tenant.clone(), id));
            inner.forget(stored, now);
        }
        Ok(purged)
    }

    async fn remove(&self, tenant: &TenantId, id: JobId, revision: u64) -> Result<bool> {
        let mut inner = self.lock();
        let now = self.clock.now();
        let current = inner.owned(tenant, id).ok().map(|e| e.stored.job.revision);
        if current != Some(revision) {
            return Ok(false);
        }
        let stored = inner.jobs.remove(&id).expect("just found").stored;
        inner.forget(stored, now);
        Ok(true)
    }

    async fn queue_stats(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>> {
        let inner = self.lock();
        let mut all = BTreeMap::new();
        if let Some(tenant) = tenant {
            let low = (tenant.clone(), JobId::from_u128(0));
            let high = (tenant.clone(), JobId::from_u128(u128::MAX));
            for (_, id) in inner.by_tenant.range(low..=high) {
                let job = &inner.jobs[id].stored.job;
                all.entry(job.queue.clone())
                    .or_insert_with(QueueStats::default)
                    .add(job.status, 1);
            }
            return Ok(all);
        }
        for (name, lane) in &inner.lanes {
            let mut stats = QueueStats::default();
            for (status, &n) in JobStatus::ALL.iter().zip(&lane.counts) {
                stats.add(*status, n);
            }
            if stats != QueueStats::default() {
                all.insert(name.clone(), stats);
            }
        }
        Ok(all)
    }

    async fn queues(&self) -> Result<Vec<Queue>> {
        let inner = self.lock();
        Ok(inner
            .queues
            .iter()
            .map(|(name, settings)| Queue {
                name: name.clone(),
                settings: settings.clone(),
            })
            .collect())
    }

    async fn update_queue(&self, name: &QueueName, patch: &QueuePatch) -> Result<QueueSettings> {
        let mut inner = self.lock();
        if patch.rate.is_some() {
            inner.rate_tats.remove(name);
        }
        let settings = inner.queues.entry(name.clone()).or_default();
        patch.apply(settings);
        Ok(settings.clone())
    }

    async fn schedules(&self, tenant: Option<&TenantId>) -> Result<Vec<Schedule>> {
        let all = self.schedules_mut();
        let mine = |s: &&Schedule| tenant.is_none_or(|t| *t == s.tenant);
        Ok(all.values().filter(mine).cloned().collect())
    }

    async fn schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<Option<Schedule>> {
        let all = self.schedules_mut();
        Ok(all.get(&id).filter(|s| &s.tenant == tenant).cloned())
    }

    async fn put_schedule(&self, schedule: &Schedule, expected: Option<u64>) -> Result<bool> {
        let mut all = self.schedules_mut();
        let stored = all.get(&schedule.id);
        let holds = match (stored, expected) {
            (None, None) => true,
            (Some(s), Some(revision)) => s.tenant == schedule.tenant && s.revision == revision,
            _ => false,
        };
        if holds {
            all.insert(schedule.id, schedule.clone());
        }
        Ok(holds)
    }

    async fn delete_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<bool> {
        let mut all = self.schedules_mut();
        let mine = all.get(&id).is_some_and(|s| &s.tenant == tenant);
        if mine {
            all.remove(&id);
        }
        Ok(mine)
    }

    async fn beat(&self, beat: &EngineBeat) -> Result<()> {
        let forget = self.clock.now() - crate::store::forget_before();
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.retain(|_, b| b.seen_at >= forget);
        beats.insert(beat.id.clone(), beat.clone());
        Ok(())
    }

    async fn engines(&self, since: DateTime<Utc>) -> Result<Option<Vec<EngineBeat>>> {
        let beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        let mut alive: Vec<EngineBeat> = beats
            .values()
            .filter(|b| b.seen_at >= since)
            .cloned()
            .collect();
        alive.sort_by_key(|b| std::cmp::Reverse(b.seen_at));
        Ok(Some(alive))
    }

    async fn finished_by_minute(
        &self,
        tenant: Option<&TenantId>,
        since: DateTime<Utc>,
    ) -> Result<Option<Vec<MinuteCounts>>> {
        let inner = self.lock();
        let mut counts = BTreeMap::new();
        for entry in inner.jobs.values() {
            let job = &entry.stored.job;
            let failed = match job.status {
                JobStatus::Completed => false,
                JobStatus::Failed => true,
                _ => continue,
            };
            if tenant.is_some_and(|t| job.tenant != *t) {
                continue;
            }
            if let Some(at) = job.completed_at.filter(|at| *at >= since) {
                let minute = crate::store::minute_of(at);
                let entry = counts.entry(minute).or_insert(MinuteCounts {
                    minute,
                    completed: 0,
                    failed: 0,
                });
                if failed {
                    entry.failed += 1;
                } else {
                    entry.completed += 1;
                }
            }
        }
        Ok(Some(counts.into_values().collect()))
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
