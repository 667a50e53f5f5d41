//! A complete job store of your own, in one file: the storage primitives of
//! [`JobStore`], and nothing of the state machine (jobworks runs that above every store).
//!
//! It keeps everything in one `Mutex<BTreeMap>` and scans it, which is fine for a few
//! thousand jobs; a real backend puts the same primitives on its database. Running it
//! checks it against the whole conformance suite and the differential test:
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
    JobId, JobPage, JobStatus, JobStore, Lease, ListParams, NewRecord, Notifier, PurgeParams,
    Queue, QueueName, QueuePatch, QueueSettings, QueueStats, Result, Stored, Taken, TenantId,
    Visibility, Write,
};

/// Each queue's settings and the state of its rate bucket.
type Queues = BTreeMap<QueueName, (QueueSettings, Option<DateTime<Utc>>)>;

/// Jobs in a map, each with its timeline.
#[derive(Debug, Default)]
pub(crate) struct MapStore {
    jobs: Mutex<BTreeMap<JobId, (Stored, Vec<Event>)>>,
    queues: Mutex<Queues>,
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

    fn jobs(&self) -> MutexGuard<'_, BTreeMap<JobId, (Stored, Vec<Event>)>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queues(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Applies one guarded write: only while the job still has the revision and lease the
/// writer read.
fn apply(jobs: &mut BTreeMap<JobId, (Stored, Vec<Event>)>, mut write: Write) -> Committed {
    let Some((stored, events)) = jobs.get_mut(&write.id()) else {
        return Committed::Conflict;
    };
    let lease_id = stored.lease.map(|l| l.lease_id);
    if stored.job.revision != write.revision || lease_id != write.lease_id {
        return Committed::Conflict;
    }
    events.append(&mut write.events);
    // `job.artifacts` already holds every artifact record: this store keeps them there.
    *stored = write.into_stored();
    Committed::Applied
}

/// Whether a claim looks for a job: queued in its queue, of one of its types.
fn wanted(job: &Job, params: &ClaimParams) -> bool {
    job.status == JobStatus::Queued
        && job.queue == params.queue
        && params
            .types
            .as_ref()
            .is_none_or(|t| t.contains(&job.job_type))
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
        let mut jobs = self.jobs();
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
            for NewRecord { job, event } in records {
                let next_seq = event.seq + 1;
                let stored = Stored {
                    job: Box::new(job),
                    lease: None,
                    next_seq,
                };
                jobs.insert(stored.job.id, (stored, vec![event]));
            }
        }
        Ok(taken)
    }

    async fn load(&self, tenant: Option<&TenantId>, ids: &[JobId]) -> Result<Vec<Stored>> {
        let jobs = self.jobs();
        let found = ids.iter().filter_map(|id| jobs.get(id)).map(|(s, _)| s);
        let theirs = found.filter(|s| tenant.is_none_or(|t| s.job.tenant == *t));
        Ok(theirs.cloned().collect())
    }

    async fn load_expired(&self, limit: usize) -> Result<Vec<Stored>> {
        let now = self.clock.now();
        let jobs = self.jobs();
        let mut expired: Vec<&Stored> = jobs
            .values()
            .map(|(s, _)| s)
            .filter(|s| s.job.status == JobStatus::Running)
            .filter(|s| s.lease.is_some_and(|l| l.expires_at <= now))
            .collect();
        expired.sort_by_key(|s| s.lease.map(|l| l.expires_at));
        Ok(expired.into_iter().take(limit).cloned().collect())
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Committed>> {
        let mut jobs = self.jobs();
        Ok(writes.into_iter().map(|w| apply(&mut jobs, w)).collect())
    }

    async fn claim(&self, params: ClaimParams) -> Result<Claimed> {
        let now = self.clock.now();
        let expires_at = rules::lease_until(now, params.lease_ttl)?;
        let (mut queues, mut unset) = (self.queues(), Default::default());
        let (settings, tat) = queues.get_mut(&params.queue).unwrap_or(&mut unset);
        if settings.paused {
            return Ok(Claimed::default());
        }
        let mut jobs = self.jobs();
        // The queue's limits and rate, as the shared rule says: unexpired leases count.
        let running = jobs
            .values()
            .map(|(s, _)| s)
            .filter(|s| s.job.queue == params.queue && s.lease.is_some_and(|l| l.expires_at > now));
        let plan = rules::ClaimPlan::new(settings, running.count() as u64, *tat, now, params.limit);
        let mut due: Vec<&Job> = jobs
            .values()
            .map(|(s, _)| &*s.job)
            .filter(|j| wanted(j, &params) && j.run_at <= now)
            .collect();
        due.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.run_at, j.id));
        let picked: Vec<JobId> = due.iter().take(plan.take).map(|j| j.id).collect();
        let mut claimed = Vec::with_capacity(picked.len());
        for id in picked {
            let lease = Lease::new(id, params.lease_ttl);
            let lease = Lease {
                expires_at,
                ..lease
            };
            // The claim's meaning: the shared rule, committed like any other write.
            let write = rules::claim(jobs[&id].0.clone(), lease, now)?;
            let job = Job::clone(&write.job);
            let next_seq = write.last_seq() + 1;
            apply(&mut jobs, write);
            claimed.push(ClaimedJob {
                job,
                lease,
                next_seq,
            });
        }
        let later = jobs.values().map(|(s, _)| &*s.job);
        let later = later.filter(|j| wanted(j, &params) && j.run_at > now);
        let scheduled = later.map(|j| j.run_at).min();
        let scheduled = scheduled.filter(|_| claimed.len() < params.limit);
        *tat = plan.tat_after(claimed.len()).or(*tat);
        Ok(Claimed {
            next_run_at: rules::earliest(scheduled, plan.next_token(claimed.len())),
            full: plan.full(),
            jobs: claimed,
        })
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let jobs = self.jobs();
        match jobs.get(&id) {
            Some((s, _)) if s.job.tenant == *tenant => Ok(Job::clone(&s.job)),
            _ => Err(Error::NotFound { id }),
        }
    }

    async fn list(&self, tenant: &TenantId, params: ListParams) -> Result<JobPage> {
        let jobs = self.jobs();
        let limit = params.limit.clamp(1, 1000);
        let matching = jobs.values().rev().map(|(s, _)| &*s.job).filter(|j| {
            j.tenant == *tenant
                && params.before.is_none_or(|b| j.id < b)
                && params.status.is_none_or(|st| j.status == st)
                && params.job_type.as_ref().is_none_or(|t| j.job_type == *t)
                && params.queue.as_ref().is_none_or(|q| j.queue == *q)
        });
        let mut page: Vec<Job> = matching.take(limit + 1).cloned().collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = if more {
            page.last().map(|j| j.id)
        } else {
            None
        };
        Ok(JobPage { jobs: page, next })
    }

    async fn events(&self, tenant: &TenantId, id: JobId, params: EventParams) -> Result<EventPage> {
        let jobs = self.jobs();
        let Some((stored, events)) = jobs.get(&id).filter(|(s, _)| s.job.tenant == *tenant) else {
            return Err(Error::NotFound { id });
        };
        let wanted = |e: &&Event| params.include_internal || e.visibility == Visibility::Public;
        let after = events
            .iter()
            .filter(|e| e.seq > params.after)
            .filter(wanted);
        Ok(EventPage {
            events: after.take(params.limit.clamp(1, 1000)).cloned().collect(),
            terminal: stored.job.status.is_terminal(),
        })
    }

    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
        let mut jobs = self.jobs();
        let old = |j: &Job| {
            j.status.is_terminal() && j.completed_at.is_some_and(|t| t < params.completed_before)
        };
        let doomed: Vec<(TenantId, JobId)> = jobs
            .values()
            .map(|(s, _)| &*s.job)
            .filter(|j| old(j))
            .take(params.limit)
            .map(|j| (j.tenant.clone(), j.id))
            .collect();
        for (_, id) in &doomed {
            jobs.remove(id);
        }
        Ok(doomed)
    }

    async fn remove(&self, tenant: &TenantId, id: JobId, revision: u64) -> Result<bool> {
        let mut jobs = self.jobs();
        let current = jobs.get(&id).map(|(s, _)| (&s.job.tenant, s.job.revision));
        let matches = current == Some((tenant, revision));
        if matches {
            jobs.remove(&id);
        }
        Ok(matches)
    }

    async fn queue_stats(&self) -> Result<BTreeMap<QueueName, QueueStats>> {
        let mut all = BTreeMap::<_, QueueStats>::new();
        for (stored, _) in self.jobs().values() {
            let queue = all.entry(stored.job.queue.clone()).or_default();
            queue.add(stored.job.status, 1);
        }
        Ok(all)
    }

    async fn queues(&self) -> Result<Vec<Queue>> {
        let queues = self.queues().clone().into_iter();
        Ok(queues
            .map(|(name, (settings, _))| Queue { name, settings })
            .collect())
    }

    async fn update_queue(&self, name: &QueueName, patch: &QueuePatch) -> Result<QueueSettings> {
        let mut queues = self.queues();
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
