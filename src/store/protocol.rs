//! The store protocol, written once above every backend: load → apply a rule → commit a
//! guarded write → on conflict reload and try again (a bounded number of times) → notify.
//!
//! [`JobStoreExt`] is what the engine, the HTTP adapter and tests call; a backend only
//! provides the primitives of [`JobStore`]. Notifications are sent from here and nowhere
//! else (a backend shared between processes forwards the others' changes).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Append, ClaimParams, Claimed, ClaimedJob, Committed, Finish, Inserted, JobStore, Lease,
    LeaseStatus, ListParams, NewRecord, Operator, QueuePatch, QueueSettings, QueueStats, Quota,
    ReapParams, ReapReport, Step, Stored, Taken, Write, rules, rules::ParentMove,
};
use crate::job::{
    Event, EventKind, Job, JobId, JobStatus, NewEvent, QueueName, TenantId, WorkflowId,
};
use crate::workflow::Workflow;
use crate::{Error, Result};

/// How many times a write is tried before the caller is told the store is busy. A
/// conflict means another writer changed the job in between: rare for one attempt's
/// writes (they go one at a time), common only when many tasks write about one job at
/// once, where the pause after each conflict lets them take turns.
const MAX_CONFLICTS: u32 = 64;

/// The longest pause between two tries of one write.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// A pause after the `conflicts`-th conflict in a row: none after the first (the other
/// writer has usually finished), then a random time up to a bound that doubles with each
/// conflict from 250 µs to [`MAX_PAUSE`] ("full jitter"), so writers that keep meeting
/// each other spread out quickly instead of colliding in step.
async fn back_off(conflicts: u32) {
    if conflicts == 0 {
        return tokio::task::yield_now().await;
    }
    let bound = Duration::from_micros(250)
        .saturating_mul(1 << (conflicts - 1).min(16))
        .min(MAX_PAUSE);
    let pause = rand::random_range(Duration::ZERO..=bound);
    tokio::time::sleep(pause).await;
}

/// How many turns [`turn`] keeps.
const TURNS: usize = 64;

/// The turn writers in this process take to read and change a job (shared by the jobs
/// whose ids fall on the same one of [`TURNS`]; held over one change only, never two at
/// once). Turns only spare writers collisions: the guard of each write is what keeps
/// the record right, across processes too.
fn turn(id: JobId) -> &'static tokio::sync::Mutex<()> {
    // The low bits of an id are random.
    turn_at(slot(id))
}

fn turn_at(slot: usize) -> &'static tokio::sync::Mutex<()> {
    static ALL: LazyLock<Vec<tokio::sync::Mutex<()>>> =
        LazyLock::new(|| (0..TURNS).map(|_| tokio::sync::Mutex::new(())).collect());
    &ALL[slot]
}

/// The slot of [`turn`] that job `id` takes.
fn slot(id: JobId) -> usize {
    (id.to_u128() % TURNS as u128) as usize
}

/// The turns of several jobs' slots, taken in slot order, so that two tasks taking
/// turns this way never wait for each other (a task takes them holding no other turn).
async fn turns(
    slots: &std::collections::BTreeSet<usize>,
) -> Vec<tokio::sync::MutexGuard<'static, ()>> {
    let mut guards = Vec::with_capacity(slots.len());
    for &s in slots {
        guards.push(turn_at(s).lock().await);
    }
    guards
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

    /// [`submit`](Self::submit) within tenant quotas ([`JobStore::insert_within`]): a
    /// submit that would leave a tenant over one creates nothing and fails with
    /// [`Error::QuotaExceeded`]. Replays of stored jobs (same idempotency key) are
    /// answered whatever the quota.
    async fn submit_within(&self, jobs: Vec<Job>, quotas: &[Quota]) -> Result<Vec<Inserted>>;

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

    /// [`cancel`](Self::cancel) by an operator, with an `operator` event.
    async fn cancel_as(&self, tenant: &TenantId, id: JobId, by: &Operator) -> Result<Job>;

    /// Queues a failed or cancelled job again with a fresh attempt budget
    /// ([`rules::retry`]). Other statuses are [`Error::InvalidTransition`].
    async fn retry(&self, tenant: &TenantId, id: JobId, by: &Operator) -> Result<Job>;

    /// Makes a queued job that waits for its not-before time due now ([`rules::requeue`]).
    /// Other statuses are [`Error::InvalidTransition`].
    async fn requeue(&self, tenant: &TenantId, id: JobId, by: &Operator) -> Result<Job>;

    /// Deletes a finished job with its timeline and artifact records and returns it as it
    /// was (its artifact bytes are the caller's to delete). A job not finished is
    /// [`Error::Conflict`].
    async fn discard(&self, tenant: &TenantId, id: JobId) -> Result<Job>;

    /// A tenant's workflow, read from its jobs.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`] when the tenant has no job of it.
    async fn workflow(&self, tenant: &TenantId, id: WorkflowId) -> Result<Workflow>;

    /// Cancels every job of a tenant's workflow that is not yet terminal (a running one is
    /// asked to stop), each marked as reached by the workflow's cancel, and returns the
    /// workflow as it is then.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`] as for [`workflow`](Self::workflow).
    async fn cancel_workflow(
        &self,
        tenant: &TenantId,
        id: WorkflowId,
        by: Option<&Operator>,
    ) -> Result<Workflow>;

    /// Job counts by status, across queues and tenants.
    async fn stats(&self) -> Result<QueueStats>;

    /// The settings of queue `name` (the defaults when it has none stored).
    async fn queue(&self, name: &QueueName) -> Result<QueueSettings>;

    /// Changes a queue's settings and wakes idle engines when that may let jobs run
    /// (a resume), on every process sharing the store.
    async fn configure_queue(&self, name: &QueueName, patch: QueuePatch) -> Result<QueueSettings>;
}

#[async_trait]
impl<S: JobStore + ?Sized> JobStoreExt for S {
    async fn submit(&self, jobs: Vec<Job>) -> Result<Vec<Inserted>> {
        submit(self, jobs, &[]).await
    }

    async fn submit_within(&self, jobs: Vec<Job>, quotas: &[Quota]) -> Result<Vec<Inserted>> {
        submit(self, jobs, quotas).await
    }

    async fn take(&self, params: ClaimParams) -> Result<Claimed> {
        let claimed = self.claim(params).await?;
        for c in &claimed.jobs {
            self.notifier().job_changed(c.job.id);
        }
        Ok(claimed)
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<LeaseStatus> {
        let rule = beat(*lease, ttl);
        let (_, status) = change(self, Target::Lease(lease), None, Keep::No, rule).await?;
        Ok(status)
    }

    async fn append(&self, lease: &Lease, append: Append) -> Result<Event> {
        let rule = appending(*lease, append);
        let (_, event) = change(self, Target::Lease(lease), None, Keep::No, rule).await?;
        Ok(event)
    }

    async fn finish(&self, lease: &Lease, outcome: Finish) -> Result<Job> {
        let rule = finishing(*lease, &outcome);
        let (after, ()) = change(self, Target::Lease(lease), None, Keep::Yes, rule).await?;
        Ok(*after.expect("kept").job)
    }

    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        change_owned(self, tenant, id, |s, now| rules::cancel(s, None, now)).await
    }

    async fn cancel_as(&self, tenant: &TenantId, id: JobId, by: &Operator) -> Result<Job> {
        change_owned(self, tenant, id, |s, now| rules::cancel(s, Some(by), now)).await
    }

    async fn retry(&self, tenant: &TenantId, id: JobId, by: &Operator) -> Result<Job> {
        let rule = |s, now| Ok(Step::Write(rules::retry(s, by, now)?));
        change_owned(self, tenant, id, rule).await
    }

    async fn requeue(&self, tenant: &TenantId, id: JobId, by: &Operator) -> Result<Job> {
        change_owned(self, tenant, id, |s, now| rules::requeue(s, by, now)).await
    }

    async fn discard(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let _turn = turn(id).lock().await;
        for conflicts in 0..MAX_CONFLICTS {
            let stored = load_one(self, id, Some(tenant))
                .await?
                .ok_or(Error::NotFound { id })?;
            rules::discardable(&stored)?;
            if let Some(link) = &stored.job.workflow {
                let jobs = workflow_jobs(self, tenant, link.id).await?;
                if let Some(open) = jobs.iter().find(|j| !j.status.is_terminal()) {
                    return Err(Error::Conflict {
                        id,
                        reason: format!(
                            "its workflow {} is not finished (job {} is {})",
                            link.id, open.id, open.status
                        )
                        .into(),
                    });
                }
            }
            if self.remove(tenant, id, stored.job.revision).await? {
                self.notifier().job_changed(id);
                return Ok(*stored.job);
            }
            back_off(conflicts).await;
        }
        Err(Error::Unavailable {
            backend: self.backend(),
            source: format!("job {id} kept changing while it was discarded").into(),
        })
    }

    async fn reap(&self, params: ReapParams) -> Result<ReapReport> {
        let expired = self.load_expired(params.limit).await?;
        let now = self.clock().now();
        let mut writes = Vec::with_capacity(expired.len());
        // A reap its dependents must hear of commits with their writes, one by one.
        let mut followed = Vec::new();
        for stored in expired {
            if let Step::Write(w) = rules::reap(stored, now)? {
                if rules::parent_move(&w).is_some() {
                    followed.push(w.id());
                } else {
                    writes.push(w);
                }
            }
        }
        // What each write will have done, for when it is applied.
        let planned: Vec<(Tell, u64, JobStatus)> = writes
            .iter()
            .map(|w| (Tell::of(w), w.revision, w.job.status))
            .collect();
        let answers = self.commit(writes).await?;
        let mut report = ReapReport::default();
        for ((tell, revision, status), answer) in planned.into_iter().zip(answers) {
            let status = if answer == Committed::Applied {
                tell.send(self);
                status
            } else {
                // Changed meanwhile: decide again on the fresh record.
                let rule = |s: Stored, now| Ok((rules::reap(s, now)?, ()));
                match change(self, Target::Reaped(tell.id), None, Keep::Yes, rule).await {
                    Ok((Some(after), ())) if after.job.revision != revision => after.job.status,
                    Ok(_) | Err(Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                }
            };
            report.count(status);
        }
        for id in followed {
            // Counted only when this reap wrote (the job may have ended meanwhile).
            let rule = |s: Stored, now| {
                let step = rules::reap(s, now)?;
                let wrote = matches!(step, Step::Write(_));
                Ok((step, wrote))
            };
            match change(self, Target::Reaped(id), None, Keep::Yes, rule).await {
                Ok((Some(after), true)) => report.count(after.job.status),
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    async fn workflow(&self, tenant: &TenantId, id: WorkflowId) -> Result<Workflow> {
        let jobs = workflow_jobs(self, tenant, id).await?;
        Workflow::of(&jobs).ok_or(Error::WorkflowNotFound { id })
    }

    async fn cancel_workflow(
        &self,
        tenant: &TenantId,
        id: WorkflowId,
        by: Option<&Operator>,
    ) -> Result<Workflow> {
        let jobs = workflow_jobs(self, tenant, id).await?;
        if jobs.is_empty() {
            return Err(Error::WorkflowNotFound { id });
        }
        // Parents first: their cancels skip most dependents in the same step.
        let mut ids: Vec<JobId> = jobs
            .iter()
            .filter(|j| !j.status.is_terminal())
            .map(|j| j.id)
            .collect();
        ids.sort();
        for job in ids {
            let rule = |s, now| rules::cancel_in_workflow(s, by, now);
            match change_owned(self, tenant, job, rule).await {
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.workflow(tenant, id).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        let mut all = QueueStats::default();
        for counts in self.queue_stats(None).await?.values() {
            all.merge(counts);
        }
        Ok(all)
    }

    async fn queue(&self, name: &QueueName) -> Result<QueueSettings> {
        let queues = self.queues().await?;
        Ok(queues
            .into_iter()
            .find(|q| &q.name == name)
            .map(|q| q.settings)
            .unwrap_or_default())
    }

    async fn configure_queue(&self, name: &QueueName, patch: QueuePatch) -> Result<QueueSettings> {
        patch.validate()?;
        let settings = self.update_queue(name, &patch).await?;
        if patch.may_free_work() {
            self.notifier().work_available();
        }
        Ok(settings)
    }
}

/// The job a change is about, and what the caller is told when it is not there.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// The job this lease is on: gone means the lease is lost.
    Lease(&'a Lease),
    /// A tenant's job: another tenant's is not even read, and answers as missing.
    Owned(&'a TenantId, JobId),
    /// A job the reaper found expired.
    Reaped(JobId),
}

impl Target<'_> {
    fn id(self) -> JobId {
        match self {
            Target::Lease(lease) => lease.job_id,
            Target::Owned(_, id) | Target::Reaped(id) => id,
        }
    }

    fn missing(self) -> Error {
        match self {
            Target::Lease(lease) => Error::LeaseLost { id: lease.job_id },
            Target::Owned(_, id) | Target::Reaped(id) => Error::NotFound { id },
        }
    }
}

/// A rule as the protocol runs it: the record and the time in, what to write and the
/// answer out.
trait Rule<T>: FnMut(Stored, DateTime<Utc>) -> Result<(Step, T)> + Send {}
impl<T, F: FnMut(Stored, DateTime<Utc>) -> Result<(Step, T)> + Send> Rule<T> for F {}

fn beat(lease: Lease, ttl: Duration) -> impl Rule<LeaseStatus> {
    move |s, now| {
        let (w, status) = rules::heartbeat(s, &lease, ttl, now)?;
        Ok((Step::Write(w), status))
    }
}

fn appending(lease: Lease, append: Append) -> impl Rule<Event> {
    move |s, now| {
        let w = rules::append(s, &lease, append.clone(), now)?;
        let event = w.events.last().cloned().expect("an append writes an event");
        Ok((Step::Write(w), event))
    }
}

fn finishing(lease: Lease, outcome: &Finish) -> impl Rule<()> + '_ {
    move |s, now| Ok((Step::Write(rules::finish(s, &lease, outcome, now)?), ()))
}

/// Whether the caller wants the record as it is after the change (it costs a copy).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Yes,
    No,
}

/// [`change`] of a tenant's job by a rule that only says what to write; answers the job
/// as it is afterwards.
async fn change_owned<S: JobStore + ?Sized>(
    store: &S,
    tenant: &TenantId,
    id: JobId,
    mut rule: impl FnMut(Stored, DateTime<Utc>) -> Result<Step> + Send,
) -> Result<Job> {
    let rule = |s, now| Ok((rule(s, now)?, ()));
    let (after, ()) = change(store, Target::Owned(tenant, id), None, Keep::Yes, rule).await?;
    Ok(*after.expect("kept").job)
}

/// The protocol's loop for one job: apply `rule` to its record, commit what it writes,
/// and on a conflict reload and apply it again. Starts from `held` when the caller has a
/// copy (a worker's own, current unless someone else wrote), else from the store.
/// Returns the record as it is afterwards (when asked to keep it) and what the rule said.
async fn change<S, T>(
    store: &S,
    target: Target<'_>,
    held: Option<Stored>,
    keep: Keep,
    mut rule: impl Rule<T>,
) -> Result<(Option<Stored>, T)>
where
    S: JobStore + ?Sized,
    T: Send,
{
    let tenant = match target {
        Target::Owned(tenant, _) => Some(tenant),
        _ => None,
    };
    // Writers in this process that read the job from the store take turns, so that many
    // tasks writing about one job wait for each other rather than collide; an attempt
    // writing from its own copy is in turn with itself already.
    let mut turned = std::collections::BTreeSet::new();
    if held.is_none() {
        turned.insert(slot(target.id()));
    }
    let mut _turns = turns(&turned).await;
    let mut held = held;
    for conflicts in 0..MAX_CONFLICTS {
        let current = match held.take() {
            Some(s) => s,
            None => load_one(store, target.id(), tenant)
                .await?
                .ok_or_else(|| target.missing())?,
        };
        let dependents = dependents_of(&current.job).to_vec();
        // A copy to apply the rule to again once in turn with the dependents (only jobs
        // with dependents pay for it).
        let spare = (!dependents.is_empty()).then(|| current.clone());
        let now = store.clock().now();
        let (write, answer) = match rule(current, now)? {
            (Step::Unchanged(stored), answer) => return Ok((Some(stored), answer)),
            (Step::Write(write), answer) => (write, answer),
        };
        if rules::parent_move(&write).is_some() {
            // The dependents hear of it: take their turns before reading them, then apply
            // the rule again at the time of the turn (a stale copy makes the commit
            // conflict, and the next round reads the job again).
            let needed: std::collections::BTreeSet<usize> = turned
                .iter()
                .copied()
                .chain(std::iter::once(slot(write.id())))
                .chain(dependents.iter().copied().map(slot))
                .collect();
            if !needed.is_subset(&turned) {
                drop(_turns);
                turned = needed;
                _turns = turns(&turned).await;
                held = spare;
                continue;
            }
        }
        let after = (keep == Keep::Yes).then(|| write.clone().into_stored());
        let followers = follow(store, &write, now).await?;
        let applied = if followers.is_empty() {
            let tell = Tell::of(&write);
            let applied = store.commit(vec![write]).await?.pop() == Some(Committed::Applied);
            if applied {
                tell.send(store);
            }
            applied
        } else {
            // The dependents' writes go in one commit with this one; writers of any of
            // those jobs in this process take turns (all of them, in one order).
            let needed: std::collections::BTreeSet<usize> = std::iter::once(write.id())
                .chain(followers.iter().map(Write::id))
                .map(slot)
                .collect();
            if !needed.is_subset(&turned) {
                drop(_turns);
                turned = needed;
                _turns = turns(&turned).await;
                continue; // read again in turn
            }
            let mut group = Vec::with_capacity(followers.len() + 1);
            group.push(write);
            group.extend(followers);
            let tells: Vec<Tell> = group.iter().map(Tell::of).collect();
            let applied = store.commit_all(group).await? == Committed::Applied;
            if applied {
                for tell in tells {
                    tell.send(store);
                }
            }
            applied
        };
        if applied {
            return Ok((after, answer));
        }
        back_off(conflicts).await;
    }
    Err(Error::Unavailable {
        backend: store.backend(),
        source: format!("job {} kept changing while it was written", target.id()).into(),
    })
}

/// The jobs that list `job` as a parent.
fn dependents_of(job: &Job) -> &[JobId] {
    job.workflow
        .as_ref()
        .map_or(&[], |l| l.dependents.as_slice())
}

/// The writes that `write` makes to the jobs that depend on it, and to theirs in turn
/// when it skips or revives them: each dependent's record loaded once, whatever the
/// number of parents it hears from in this step. Empty for a job without dependents and
/// a move they do not hear of.
async fn follow<S: JobStore + ?Sized>(
    store: &S,
    write: &Write,
    now: DateTime<Utc>,
) -> Result<Vec<Write>> {
    let Some(moved) = rules::parent_move(write) else {
        return Ok(Vec::new());
    };
    let tenant = &write.job.tenant;
    let mut writes: Vec<Write> = Vec::new();
    let mut position: HashMap<JobId, usize> = HashMap::new();
    // Parents whose dependents have yet to hear, with their move.
    let mut heard: Vec<(Job, ParentMove)> = vec![(Job::clone(&write.job), moved)];
    while let Some((parent, moved)) = heard.pop() {
        let dependents = dependents_of(&parent).to_vec();
        let missing: Vec<JobId> = dependents
            .iter()
            .copied()
            .filter(|id| !position.contains_key(id) && *id != write.id())
            .collect();
        if !missing.is_empty() {
            for stored in store.load(Some(tenant), &missing).await? {
                position.insert(stored.job.id, writes.len());
                writes.push(stored.write());
            }
        }
        for id in dependents {
            let Some(&at) = position.get(&id) else {
                continue; // gone (purged)
            };
            if let Some(next) = rules::hear(&mut writes[at], &parent, moved, now)? {
                heard.push((Job::clone(&writes[at].job), next));
            }
        }
    }
    writes.retain(|w| w.job.revision != w.revision);
    Ok(writes)
}

/// Who a committed write must wake: the job's watchers when its record changed, idle
/// workers when it became claimable.
struct Tell {
    id: JobId,
    changed: bool,
    claimable: bool,
    freed: bool,
}

impl Tell {
    fn of(write: &Write) -> Tell {
        let changed = write.job.revision != write.revision;
        Tell {
            id: write.id(),
            changed,
            // A job that became queued, or a queued one that changed (made due now).
            claimable: write.job.status == JobStatus::Queued
                && (write.from_status() != JobStatus::Queued || changed),
            freed: write.from_status() == JobStatus::Running
                && write.job.status != JobStatus::Running,
        }
    }

    /// The one place notifications are sent from, after a commit.
    fn send<S: JobStore + ?Sized>(&self, store: &S) {
        if self.changed {
            store.notifier().job_changed(self.id);
        }
        if self.claimable {
            store.notifier().work_available();
        }
        if self.freed {
            store.notifier().slot_freed();
        }
    }
}

/// Every job of a tenant's workflow, newest first (none when it has no such workflow).
async fn workflow_jobs<S: JobStore + ?Sized>(
    store: &S,
    tenant: &TenantId,
    id: WorkflowId,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut before = None;
    loop {
        let params = ListParams::default()
            .workflow(id)
            .limit(1000)
            .before(before);
        let page = store.list(Some(tenant), params).await?;
        jobs.extend(page.jobs);
        match page.next {
            Some(next) => before = Some(next),
            None => return Ok(jobs),
        }
    }
}

/// One record by id, of `tenant` when given.
async fn load_one<S: JobStore + ?Sized>(
    store: &S,
    id: JobId,
    tenant: Option<&TenantId>,
) -> Result<Option<Stored>> {
    Ok(store.load(tenant, &[id]).await?.pop())
}

/// Where a submit inserts new records and finds the jobs holding their keys: the store
/// itself, or (PostgreSQL) a transaction of the host's.
pub(crate) trait Inserter: Send {
    /// The backend's name, for errors.
    fn backend(&self) -> &'static str;

    /// [`JobStore::insert_within`].
    fn insert(
        &mut self,
        records: Vec<NewRecord>,
        quotas: &[Quota],
    ) -> impl Future<Output = Result<Vec<Taken>>> + Send;

    /// The job `id` as this inserter sees it (`None` when it is gone).
    fn holder(&mut self, id: JobId) -> impl Future<Output = Result<Option<Job>>> + Send;

    /// Called once new records were inserted.
    fn inserted(&self) {}
}

/// A store as an [`Inserter`]: its own inserts, its own reads, a local wake-up.
struct Direct<'a, S: ?Sized>(&'a S);

impl<S: JobStore + ?Sized> Inserter for Direct<'_, S> {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }

    async fn insert(&mut self, records: Vec<NewRecord>, quotas: &[Quota]) -> Result<Vec<Taken>> {
        self.0.insert_within(records, quotas).await
    }

    async fn holder(&mut self, id: JobId) -> Result<Option<Job>> {
        Ok(load_one(self.0, id, None).await?.map(|s| *s.job))
    }

    fn inserted(&self) {
        self.0.notifier().work_available();
    }
}

async fn submit<S: JobStore + ?Sized>(
    store: &S,
    jobs: Vec<Job>,
    quotas: &[Quota],
) -> Result<Vec<Inserted>> {
    let now = store.clock().now();
    submit_with(&mut Direct(store), jobs, quotas, now).await
}

/// Submits through `ins` with idempotency keys resolved here: a key taken by the same
/// request is a replay, by another a conflict; a key used twice in one call goes to the
/// first job.
pub(crate) async fn submit_with(
    ins: &mut impl Inserter,
    jobs: Vec<Job>,
    quotas: &[Quota],
    now: DateTime<Utc>,
) -> Result<Vec<Inserted>> {
    if jobs.iter().all(|j| j.idempotency_key.is_none()) {
        // Nothing can be taken: one insert, the records moved into it.
        let records: Vec<NewRecord> = jobs.into_iter().map(|j| queued(j, now)).collect();
        let answers = records
            .iter()
            .map(|r| Inserted {
                job: r.job.clone(),
                created: true,
            })
            .collect();
        if !records.is_empty() {
            let taken = ins.insert(records, quotas).await?;
            if let Some(t) = taken.first() {
                return Err(Error::Backend {
                    backend: ins.backend(),
                    source: format!("reported a key taken by {} for jobs without keys", t.by)
                        .into(),
                });
            }
            ins.inserted();
        }
        return Ok(answers);
    }
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
            let records = pending.iter().map(|&i| fresh[i].clone()).collect();
            ins.insert(records, quotas).await?
        };
        if taken.is_empty() {
            if !pending.is_empty() {
                ins.inserted();
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
            let Some(holder) = ins.holder(t.by).await? else {
                continue; // purged meanwhile: the key is free again
            };
            if !holder.same_request(&fresh[index].job) {
                return Err(Error::AlreadyExists { id: holder.id });
            }
            holders[index] = Some(holder);
        }
    }
    Err(Error::Unavailable {
        backend: ins.backend(),
        source: "idempotency keys kept being taken while submitting".into(),
    })
}

/// A new job's record: queued (or waiting for its parents, in a workflow), revision 1,
/// its first event.
fn queued(mut job: Job, now: DateTime<Utc>) -> NewRecord {
    let first = if job.status == JobStatus::Waiting && !job.parents.is_empty() {
        let n = job.parents.len();
        let message = if n == 1 {
            "waiting for 1 parent".to_owned()
        } else {
            format!("waiting for {n} parents")
        };
        NewEvent::new(EventKind::Waiting, message)
    } else {
        job.status = JobStatus::Queued;
        NewEvent::new(EventKind::Queued, "queued")
    };
    job.revision = 1;
    job.updated_at = now;
    let event = first.into_event(1, now);
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

    async fn with<T: Send>(
        &self,
        store: &dyn JobStore,
        keep: Keep,
        rule: impl Rule<T>,
    ) -> Result<T> {
        let mut record = self.record.lock().await;
        let target = Target::Lease(&self.lease);
        let (after, answer) = change(store, target, record.take(), keep, rule).await?;
        *record = after;
        Ok(answer)
    }

    /// [`JobStoreExt::heartbeat`] from the held copy.
    pub(crate) async fn heartbeat(
        &self,
        store: &dyn JobStore,
        ttl: Duration,
    ) -> Result<LeaseStatus> {
        self.with(store, Keep::Yes, beat(self.lease, ttl)).await
    }

    /// [`JobStoreExt::append`] from the held copy.
    pub(crate) async fn append(&self, store: &dyn JobStore, append: Append) -> Result<Event> {
        self.with(store, Keep::Yes, appending(self.lease, append))
            .await
    }

    /// [`JobStoreExt::finish`] from the held copy: the attempt's last write, so the copy
    /// is not kept.
    pub(crate) async fn finish(&self, store: &dyn JobStore, outcome: &Finish) -> Result<()> {
        self.with(store, Keep::No, finishing(self.lease, outcome))
            .await
    }
}
