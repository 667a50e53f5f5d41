//! A complete job store of your own, in one file: the storage primitives of
//! [`JobStore`], and nothing of the state machine or of flow control (jobworks runs those
//! above every store, through the shared `rules`). It keeps everything in one mutex and
//! scans it, fine for a few thousand jobs; a real backend puts the same primitives on its
//! database. Running it checks it against the conformance suite and the differential test:
//!
//! ```sh
//! cargo run --example custom_store --features testing
//! ```

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobworks::rules;
use jobworks::{
    ClaimParams, Claimed, ClaimedJob, Clock, Committed, Error, Event, EventPage, EventParams, Job,
    JobId, JobPage, JobStore, Lease, ListParams, NewRecord, Notifier, PurgeParams, Queue,
    QueueName, QueuePatch, QueueSettings, QueueStats, Quota, Result, Stored, Taken, TenantId,
    Visibility, Write,
};

type Jobs = BTreeMap<JobId, (Stored, Vec<Event>)>;
/// Each queue's settings and the state of its rate bucket.
type Queues = BTreeMap<QueueName, (QueueSettings, Option<DateTime<Utc>>)>;
/// The tenant each queue's last claim served last, where the next claim's turn starts.
type Turns = BTreeMap<QueueName, TenantId>;

/// Jobs in a map, each with its timeline, and the queues' settings.
#[derive(Debug, Default)]
pub(crate) struct MapStore {
    state: Mutex<(Jobs, Queues, Turns)>,
    notifier: Notifier,
    clock: Clock,
}

impl MapStore {
    /// An empty store that reads the time from `clock`.
    pub(crate) fn new(clock: Clock) -> Self {
        MapStore {
            clock,
            ..Self::default()
        }
    }

    fn state(&self) -> MutexGuard<'_, (Jobs, Queues, Turns)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Applies one guarded write: only while the job still has the revision and lease the
/// writer read.
/// Whether the job is still as the writer read it (same revision, same lease).
fn holds(jobs: &Jobs, write: &Write) -> bool {
    jobs.get(&write.id()).is_some_and(|(stored, _)| {
        stored.job.revision == write.revision && stored.lease.map(|l| l.lease_id) == write.lease_id
    })
}

fn apply(jobs: &mut Jobs, mut write: Write) -> Committed {
    if !holds(jobs, &write) {
        return Committed::Conflict;
    }
    let (stored, events) = jobs.get_mut(&write.id()).expect("held");
    events.append(&mut write.events);
    // `job.artifacts` already holds every artifact record: this store keeps them there.
    *stored = write.into_stored();
    Committed::Applied
}

#[async_trait]
impl JobStore for MapStore {
    fn backend(&self) -> &'static str {
        "map"
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
        let jobs = &mut self.state().0;
        let holder = |job: &Job| {
            let key = job.idempotency_key.as_ref()?;
            jobs.values()
                .map(|(s, _)| &*s.job)
                .find(|j| j.tenant == job.tenant && j.idempotency_key.as_ref() == Some(key))
                .map(|j| j.id)
        };
        let taken: Vec<Taken> = records
            .iter()
            .enumerate()
            .filter_map(|(index, r)| holder(&r.job).map(|by| Taken { index, by }))
            .collect();
        if taken.is_empty() {
            // Under the lock, so no other submit comes between the count and the insert.
            Quota::check_all(quotas, records.iter().map(|r| &r.job), |tenant, queue| {
                let mine = jobs
                    .values()
                    .map(|(s, _)| &*s.job)
                    .filter(|j| j.tenant == *tenant);
                let open =
                    mine.filter(|j| !j.status.is_terminal() && queue.is_none_or(|q| *q == j.queue));
                Ok(open.count() as u64)
            })?;
            for (stored, event) in records.into_iter().map(NewRecord::into_parts) {
                jobs.insert(stored.job.id, (stored, vec![event]));
            }
        }
        Ok(taken)
    }

    async fn load(&self, tenant: Option<&TenantId>, ids: &[JobId]) -> Result<Vec<Stored>> {
        let jobs = &self.state().0;
        let found = ids.iter().filter_map(|id| jobs.get(id)).map(|(s, _)| s);
        let theirs = found.filter(|s| tenant.is_none_or(|t| s.job.tenant == *t));
        Ok(theirs.cloned().collect())
    }

    async fn load_expired(&self, limit: usize) -> Result<Vec<Stored>> {
        let now = self.clock.now();
        let jobs = &self.state().0;
        // Only running jobs have a lease.
        let leased = jobs.values().map(|(s, _)| s);
        let mut expired: Vec<&Stored> = leased
            .filter(|s| s.lease.is_some_and(|l| l.expires_at <= now))
            .collect();
        expired.sort_by_key(|s| s.lease.map(|l| l.expires_at));
        Ok(expired.into_iter().take(limit).cloned().collect())
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Committed>> {
        let jobs = &mut self.state().0;
        Ok(writes.into_iter().map(|w| apply(jobs, w)).collect())
    }

    async fn commit_all(&self, writes: Vec<Write>) -> Result<Committed> {
        // Under one lock: every guard is checked before anything changes.
        let jobs = &mut self.state().0;
        let ids: std::collections::HashSet<JobId> = writes.iter().map(Write::id).collect();
        if ids.len() != writes.len() || !writes.iter().all(|w| holds(jobs, w)) {
            return Ok(Committed::Conflict);
        }
        for w in writes {
            apply(jobs, w);
        }
        Ok(Committed::Applied)
    }

    async fn claim(&self, params: ClaimParams) -> Result<Claimed> {
        let now = self.clock.now();
        let expires_at = rules::lease_until(now, params.lease_ttl)?;
        let (mut state, mut unset) = (self.state(), Default::default());
        let (jobs, queues, turns) = &mut *state;
        let (settings, tat) = queues.get_mut(&params.queue).unwrap_or(&mut unset);
        if settings.paused {
            return Ok(Claimed::default());
        }
        // The queue's limits, rate and turns, as the shared rules say: unexpired leases
        // count against the limits.
        let running: Vec<&Job> = jobs
            .values()
            .filter(|(s, _)| {
                s.job.queue == params.queue && s.lease.is_some_and(|l| l.expires_at > now)
            })
            .map(|(s, _)| &*s.job)
            .collect();
        let plan = rules::ClaimPlan::new(settings, running.len() as u64, *tat, now, params.limit);
        let all = jobs.values().map(|(s, _)| &*s.job);
        let due: Vec<&Job> = all.filter(|j| params.wants(j) && j.run_at <= now).collect();
        let with_key = |key: &str| {
            running
                .iter()
                .filter(|j| j.concurrency_key.as_deref() == Some(key))
                .count() as u64
        };
        let picks = rules::choose(&plan, &due, turns.get(&params.queue), with_key);
        let picked: Vec<JobId> = picks.taken.iter().map(|&i| due[i].id).collect();
        let full = picks.full;
        if let Some(last) = picks.cursor {
            turns.insert(params.queue.clone(), last);
        }
        let mut claimed = Vec::with_capacity(picked.len());
        for id in picked {
            let lease = Lease::until(id, expires_at);
            // The claim's meaning: the shared rule, committed like any other write.
            let write = rules::claim(jobs[&id].0.clone(), lease, now)?;
            claimed.push(ClaimedJob::of(&write, lease));
            apply(jobs, write);
        }
        let all = jobs.values().map(|(s, _)| &*s.job);
        let later = all
            .filter(|j| params.wants(j) && j.run_at > now)
            .map(|j| j.run_at);
        let scheduled = later.min().filter(|_| claimed.len() < params.limit);
        *tat = plan.tat_after(claimed.len()).or(*tat);
        Ok(Claimed {
            next_run_at: rules::earliest(scheduled, plan.next_token(claimed.len())),
            full,
            jobs: claimed,
        })
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        match self.state().0.get(&id) {
            Some((s, _)) if s.job.tenant == *tenant => Ok(Job::clone(&s.job)),
            _ => Err(Error::NotFound { id }),
        }
    }

    async fn list(&self, tenant: Option<&TenantId>, params: ListParams) -> Result<JobPage> {
        let limit = params.limit.clamp(1, 1000);
        let state = self.state();
        let matching = state.0.values().rev().map(|(s, _)| &*s.job).filter(|j| {
            tenant.is_none_or(|t| j.tenant == *t)
                && params.before.is_none_or(|b| j.id < b)
                && params.matches(j)
        });
        let page = matching.take(limit + 1).cloned().collect();
        Ok(JobPage::of(page, limit))
    }

    async fn events(&self, tenant: &TenantId, id: JobId, params: EventParams) -> Result<EventPage> {
        let state = self.state();
        let Some((stored, events)) = state.0.get(&id).filter(|(s, _)| s.job.tenant == *tenant)
        else {
            return Err(Error::NotFound { id });
        };
        let shown = |e: &&Event| params.include_internal || e.visibility == Visibility::Public;
        let after = events.iter().filter(|e| e.seq > params.after).filter(shown);
        Ok(EventPage {
            events: after.take(params.limit.clamp(1, 1000)).cloned().collect(),
            terminal: stored.job.status.is_terminal(),
        })
    }

    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
        let jobs = &mut self.state().0;
        let old = |j: &&Job| j.completed_at.is_some_and(|t| t < params.completed_before);
        let ended = jobs
            .values()
            .map(|(s, _)| &*s.job)
            .filter(|j| j.status.is_terminal());
        let doomed: Vec<(TenantId, JobId)> = ended
            .filter(old)
            .take(params.limit)
            .map(|j| (j.tenant.clone(), j.id))
            .collect();
        for (_, id) in &doomed {
            jobs.remove(id);
        }
        Ok(doomed)
    }

    async fn remove(&self, tenant: &TenantId, id: JobId, revision: u64) -> Result<bool> {
        let jobs = &mut self.state().0;
        let current = jobs.get(&id).map(|(s, _)| (&s.job.tenant, s.job.revision));
        let matches = current == Some((tenant, revision));
        if matches {
            jobs.remove(&id);
        }
        Ok(matches)
    }

    async fn queue_stats(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>> {
        let mut all = BTreeMap::<_, QueueStats>::new();
        for (s, _) in self.state().0.values() {
            if tenant.is_some_and(|t| s.job.tenant != *t) {
                continue;
            }
            all.entry(s.job.queue.clone())
                .or_default()
                .add(s.job.status, 1);
        }
        Ok(all)
    }

    async fn queues(&self) -> Result<Vec<Queue>> {
        let queues = self.state().1.clone().into_iter();
        let queue = |(name, (settings, _))| Queue { name, settings };
        Ok(queues.map(queue).collect())
    }

    async fn update_queue(&self, name: &QueueName, patch: &QueuePatch) -> Result<QueueSettings> {
        let queues = &mut self.state().1;
        let (settings, tat) = queues.entry(name.clone()).or_default();
        patch.apply(settings);
        if patch.rate.is_some() {
            *tat = None; // a new rate limit starts with a full bucket
        }
        Ok(settings.clone())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    jobworks::testing::run_job_store_suite(|| async { MapStore::default() }).await;
    println!("MapStore passes the job store suite");
    jobworks::testing::differential_test(|clock| async { MapStore::new(clock) }, 200, 30, 7).await;
    println!("MapStore agrees with the reference store in 200 random sequences");
}
