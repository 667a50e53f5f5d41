//! The store protocol, written once above every backend: load → apply a rule → commit a
//! guarded write → on conflict reload and try again (a bounded number of times) → notify.
//!
//! [`JobStoreExt`] is what the engine, the HTTP adapter and tests call; a backend only
//! provides the primitives of [`JobStore`]. Notifications are sent from here and nowhere
//! else (a backend shared between processes forwards the others' changes).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Append, ClaimParams, Claimed, ClaimedJob, Committed, Finish, Inserted, JobStore, Lease,
    LeaseStatus, NewRecord, ReapParams, ReapReport, Stored, Write, rules,
};
use crate::job::{Event, EventKind, Job, JobId, JobStatus, NewEvent, TenantId};
use crate::{Error, Result};

/// How many times a write is tried before the caller is told the store is busy. A
/// conflict means another writer changed the job in between: rare for one attempt's
/// writes (they go one at a time), common only when many tasks write about one job at
/// once, where the pause after each conflict lets them take turns.
const MAX_CONFLICTS: u32 = 64;

/// A pause of up to `conflicts` milliseconds (at most 20), chosen at random so that
/// writers that keep meeting each other spread out.
async fn back_off(conflicts: u32) {
    if conflicts < 2 {
        return tokio::task::yield_now().await;
    }
    let most = u64::from(conflicts.min(20)) * 1000;
    let pause = rand::random_range(0..=most);
    tokio::time::sleep(Duration::from_micros(pause)).await;
}

/// The state machine's operations on any [`JobStore`]. Implemented for every store.
#[async_trait]
pub trait JobStoreExt: JobStore {
    /// Inserts queued jobs, all or none, each with a `queued` event (seq 1).
    ///
    /// A job whose tenant already has a job with the same idempotency key is not inserted:
    /// when type and input match, the existing job is returned with `created: false`;
    /// otherwise the whole call fails with [`Error::AlreadyExists`] and nothing is stored.
    async fn submit(&self, jobs: Vec<Job>) -> Result<Vec<Inserted>>;

    /// Claims up to `params.limit` due jobs (see [`JobStore::claim`]) and tells their
    /// watchers.
    async fn take(&self, params: ClaimParams) -> Result<Claimed>;

    /// Extends a lease by `ttl` from now and says whether cancellation was requested.
    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<LeaseStatus>;

    /// Appends an event about a running job, updating its progress or artifacts with it.
    async fn append(&self, lease: &Lease, append: Append) -> Result<Event>;

    /// Records the outcome of an attempt and ends the lease.
    async fn finish(&self, lease: &Lease, outcome: Finish) -> Result<Job>;

    /// Cancels a queued job at once, or asks a running one to stop.
    ///
    /// Terminal jobs are [`Error::InvalidTransition`]; another tenant's job is
    /// [`Error::NotFound`].
    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job>;

    /// Ends expired leases: the job is requeued when attempts are left, failed when not,
    /// and cancelled when cancellation had been asked for.
    async fn reap(&self, params: ReapParams) -> Result<ReapReport>;
}

#[async_trait]
impl<S: JobStore + ?Sized> JobStoreExt for S {
    async fn submit(&self, jobs: Vec<Job>) -> Result<Vec<Inserted>> {
        submit(self, jobs).await
    }

    async fn take(&self, params: ClaimParams) -> Result<Claimed> {
        let claimed = self.claim(params).await?;
        for c in &claimed.jobs {
            self.notifier().job_changed(c.job.id);
        }
        Ok(claimed)
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<LeaseStatus> {
        let (_, status) = change(
            self,
            lease.job_id,
            None,
            None,
            lease_lost(lease),
            |s, now| {
                let (w, status) = rules::heartbeat(s, lease, ttl, now)?;
                Ok((Some(w), status))
            },
        )
        .await?;
        Ok(status)
    }

    async fn append(&self, lease: &Lease, append: Append) -> Result<Event> {
        let (_, event) = change(
            self,
            lease.job_id,
            None,
            None,
            lease_lost(lease),
            |s, now| {
                let w = rules::append(s, lease, append.clone(), now)?;
                let event = w.events.last().cloned().expect("an append writes an event");
                Ok((Some(w), event))
            },
        )
        .await?;
        Ok(event)
    }

    async fn finish(&self, lease: &Lease, outcome: Finish) -> Result<Job> {
        let (stored, ()) = change(
            self,
            lease.job_id,
            None,
            None,
            lease_lost(lease),
            |s, now| Ok((Some(rules::finish(s, lease, &outcome, now)?), ())),
        )
        .await?;
        Ok(stored.job)
    }

    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let missing = move || Error::NotFound { id };
        let (stored, ()) = change(self, id, None, Some(tenant), missing, |s, now| {
            Ok((rules::cancel(s, now)?, ()))
        })
        .await?;
        Ok(stored.job)
    }

    async fn reap(&self, params: ReapParams) -> Result<ReapReport> {
        let expired = self.load_expired(params.limit).await?;
        let now = self.clock().now();
        let mut report = ReapReport::default();
        let mut writes = Vec::with_capacity(expired.len());
        let mut before = Vec::with_capacity(expired.len());
        for stored in expired {
            if let Some(w) = rules::reap(&stored, now)? {
                writes.push(w);
                before.push(stored);
            }
        }
        let answers = self.commit(writes.clone()).await?;
        for ((stored, w), answer) in before.into_iter().zip(writes).zip(answers) {
            let after = match answer {
                Committed::Applied => {
                    let after = stored.after(w);
                    notify(self, &stored, &after);
                    after
                }
                // Changed meanwhile: decide again on the fresh record.
                Committed::Conflict => {
                    let id = stored.job.id;
                    let missing = || Error::NotFound { id };
                    let reap = |s: &Stored, now| Ok((rules::reap(s, now)?, ()));
                    let reaped = change(self, id, None, None, missing, reap).await;
                    match reaped {
                        Ok((after, ())) if after.job.revision != stored.job.revision => after,
                        Ok(_) | Err(Error::NotFound { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            if after.job.status != JobStatus::Running {
                report.count(after.job.status);
            }
        }
        Ok(report)
    }
}

/// The protocol's loop for job `id`: apply `rule` to its record, commit what it writes,
/// and on a conflict reload and apply it again. Starts from `held` when the caller has a
/// copy (a worker's own, current unless someone else wrote), else from the store (of
/// `tenant` when given). Returns the record as it is afterwards and what the rule said;
/// `missing` is the error for a job that does not exist.
async fn change<S, T, F>(
    store: &S,
    id: JobId,
    held: Option<Stored>,
    tenant: Option<&TenantId>,
    missing: impl Fn() -> Error + Send,
    mut rule: F,
) -> Result<(Stored, T)>
where
    S: JobStore + ?Sized,
    F: FnMut(&Stored, DateTime<Utc>) -> Result<(Option<Write>, T)> + Send,
    T: Send,
{
    let mut stored = held;
    for conflicts in 0..MAX_CONFLICTS {
        let current = match stored.take() {
            Some(s) => s,
            None => load_one(store, id, tenant).await?.ok_or_else(&missing)?,
        };
        let (write, answer) = rule(&current, store.clock().now())?;
        let Some(write) = write else {
            return Ok((current, answer));
        };
        let mut answers = store.commit(vec![write.clone()]).await?;
        if answers.pop() == Some(Committed::Applied) {
            let after = current.after(write);
            notify(store, &current, &after);
            return Ok((after, answer));
        }
        back_off(conflicts).await;
    }
    Err(Error::Unavailable {
        backend: store.backend(),
        source: format!("job {id} kept changing while it was written").into(),
    })
}

/// One record by id, of `tenant` when given.
async fn load_one<S: JobStore + ?Sized>(
    store: &S,
    id: JobId,
    tenant: Option<&TenantId>,
) -> Result<Option<Stored>> {
    Ok(store.load(tenant, &[id]).await?.pop())
}

fn lease_lost(lease: &Lease) -> impl Fn() -> Error + Send + use<> {
    let id = lease.job_id;
    move || Error::LeaseLost { id }
}

/// Tells watchers of a committed change: the job's watchers when its record changed,
/// idle workers when it became claimable.
fn notify<S: JobStore + ?Sized>(store: &S, before: &Stored, after: &Stored) {
    if after.job.revision != before.job.revision {
        store.notifier().job_changed(after.job.id);
    }
    if after.job.status == JobStatus::Queued && before.job.status != JobStatus::Queued {
        store.notifier().work_available();
    }
}

/// Submits with idempotency keys resolved here: a key taken by the same request is a
/// replay, by another a conflict; a key used twice in one call goes to the first job.
async fn submit<S: JobStore + ?Sized>(store: &S, jobs: Vec<Job>) -> Result<Vec<Inserted>> {
    let now = store.clock().now();
    // Each job's answer is the record at this index of `fresh` (an earlier one of the
    // call when it reuses a key).
    let mut answer_of = Vec::with_capacity(jobs.len());
    let mut fresh: Vec<NewRecord> = Vec::with_capacity(jobs.len());
    let mut first_with_key: HashMap<String, usize> = HashMap::new();
    for job in jobs {
        if let Some(key) = &job.idempotency_key {
            if let Some(&first) = first_with_key.get(key) {
                if !fresh[first].job.same_request(&job) {
                    return Err(Error::AlreadyExists {
                        id: fresh[first].job.id,
                    });
                }
                answer_of.push((first, false));
                continue;
            }
            first_with_key.insert(key.clone(), fresh.len());
        }
        answer_of.push((fresh.len(), true));
        fresh.push(queued(job, now));
    }
    // A key held by a stored job: a replay leaves the call, and the rest is tried again
    // (another submit may take a key in between, so this too is bounded).
    let mut holders: Vec<Option<Job>> = vec![None; fresh.len()];
    for _ in 0..MAX_CONFLICTS {
        let pending: Vec<usize> = (0..fresh.len()).filter(|&i| holders[i].is_none()).collect();
        let taken = if pending.is_empty() {
            Vec::new()
        } else {
            store
                .insert(pending.iter().map(|&i| fresh[i].clone()).collect())
                .await?
        };
        if taken.is_empty() {
            if !pending.is_empty() {
                store.notifier().work_available();
            }
            // Backwards, so a reused key's answer copies its first job before that one
            // is moved into its own answer.
            let mut jobs: Vec<Option<Job>> = fresh.into_iter().map(|r| Some(r.job)).collect();
            let mut answers: Vec<Inserted> = answer_of
                .into_iter()
                .rev()
                .map(|(i, first)| match (&holders[i], first) {
                    (Some(holder), _) => (holder.clone(), false),
                    (None, true) => (jobs[i].take().expect("answered once"), true),
                    (None, false) => (jobs[i].clone().expect("answered after"), false),
                })
                .map(|(job, created)| Inserted { job, created })
                .collect();
            answers.reverse();
            return Ok(answers);
        }
        for t in taken {
            let index = pending[t.index];
            let Some(holder) = load_one(store, t.by, None).await? else {
                continue; // purged meanwhile: the key is free again
            };
            if !holder.job.same_request(&fresh[index].job) {
                return Err(Error::AlreadyExists { id: holder.job.id });
            }
            holders[index] = Some(holder.job);
        }
    }
    Err(Error::Unavailable {
        backend: store.backend(),
        source: "idempotency keys kept being taken while submitting".into(),
    })
}

/// A new job's record: queued, revision 1, its `queued` event.
fn queued(mut job: Job, now: DateTime<Utc>) -> NewRecord {
    job.status = JobStatus::Queued;
    job.revision = 1;
    job.updated_at = now;
    let event = NewEvent::new(EventKind::Queued, "queued").into_event(1, now);
    job.latest_event = Some(event.clone());
    NewRecord { job, event }
}

/// A worker's copy of the record of the job it runs, with the lease it holds.
///
/// It is current unless someone else wrote about the job (a cancel request), which the
/// commit then refuses as a conflict and the protocol reloads: so most of an attempt's
/// writes need no read at all. Each write through it leaves the copy current again.
pub(crate) struct Held {
    lease: Lease,
    record: tokio::sync::Mutex<Option<Stored>>,
}

impl Held {
    pub(crate) fn new(claimed: &ClaimedJob) -> Held {
        Held {
            lease: claimed.lease,
            record: tokio::sync::Mutex::new(Some(claimed.stored())),
        }
    }

    async fn with<T, F>(&self, store: &dyn JobStore, rule: F) -> Result<T>
    where
        F: FnMut(&Stored, DateTime<Utc>) -> Result<(Option<Write>, T)> + Send,
        T: Send,
    {
        let mut record = self.record.lock().await;
        let id = self.lease.job_id;
        let held = record.take();
        let (after, answer) = change(store, id, held, None, lease_lost(&self.lease), rule).await?;
        *record = Some(after);
        Ok(answer)
    }

    /// [`JobStoreExt::heartbeat`] from the held copy.
    pub(crate) async fn heartbeat(
        &self,
        store: &dyn JobStore,
        ttl: Duration,
    ) -> Result<LeaseStatus> {
        let lease = self.lease;
        self.with(store, |s, now| {
            let (w, status) = rules::heartbeat(s, &lease, ttl, now)?;
            Ok((Some(w), status))
        })
        .await
    }

    /// [`JobStoreExt::append`] from the held copy.
    pub(crate) async fn append(&self, store: &dyn JobStore, append: Append) -> Result<Event> {
        let lease = self.lease;
        self.with(store, |s, now| {
            let w = rules::append(s, &lease, append.clone(), now)?;
            let event = w.events.last().cloned().expect("an append writes an event");
            Ok((Some(w), event))
        })
        .await
    }

    /// [`JobStoreExt::finish`] from the held copy; the job's new status.
    pub(crate) async fn finish(&self, store: &dyn JobStore, outcome: &Finish) -> Result<JobStatus> {
        let lease = self.lease;
        self.with(store, |s, now| {
            let w = rules::finish(s, &lease, outcome, now)?;
            let status = w.job.status;
            Ok((Some(w), status))
        })
        .await
    }
}
