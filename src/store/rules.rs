//! The rules of the state machine, once: what a claim, a heartbeat, an appended event, a
//! finish, a reap and a cancel do to a stored job, as a guarded [`Write`]. Every status
//! change goes through [`JobStatus::transition`].
//!
//! Each rule takes a [`Stored`] record over, with the time, and either refuses (with the
//! error the caller sees) or returns the write. The protocol commits it; a backend that
//! fuses the claim applies [`claim`] itself.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Append, Finish, Lease, LeaseChange, LeaseStatus, Operator, QueueSettings, RateLimit, Step,
    Stored, Write,
};
use crate::job::{EventKind, Job, JobStatus, NewEvent};
use crate::{Error, Result, TenantId};

/// Moves `job` to `to` through the transition table.
///
/// # Errors
/// [`Error::InvalidTransition`] when the table does not allow the move.
pub fn set_status(job: &mut Job, to: JobStatus) -> Result<()> {
    job.status = job
        .status
        .transition(to)
        .map_err(|e| Error::InvalidTransition {
            id: job.id,
            from: e.from,
            to: e.to,
        })?;
    Ok(())
}

/// A lease of `ttl` from `now`, or [`Error::Invalid`] when `ttl` does not fit a time.
pub fn lease_until(now: DateTime<Utc>, ttl: Duration) -> Result<DateTime<Utc>> {
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .ok_or_else(|| Error::invalid("lease_ttl", "too long"))
}

/// Claims a queued job under `lease`: running, one more attempt, started now, progress
/// cleared, a `started` event "attempt N".
///
/// # Errors
/// [`Error::InvalidTransition`] unless the job is queued (check [`claimable`] first when
/// the record must not be lost).
pub fn claim(stored: Stored, lease: Lease, now: DateTime<Utc>) -> Result<Write> {
    let mut w = stored.write();
    let job = &mut *w.job;
    set_status(job, JobStatus::Running)?;
    job.attempts += 1;
    job.started_at = Some(now);
    job.progress = None;
    let message = started_message(job.attempts);
    w.lease = LeaseChange::Set(lease);
    w.push(NewEvent::new(EventKind::Started, message), now);
    Ok(w)
}

/// The `started` event's message, "attempt N": a constant for the attempts a job may
/// have, so claiming allocates no text. A backend that fuses the claim into SQL writes the
/// same text.
pub(crate) fn started_message(attempt: u32) -> Cow<'static, str> {
    const NAMES: [&str; crate::job::MAX_ATTEMPTS_LIMIT as usize] = [
        "attempt 1",
        "attempt 2",
        "attempt 3",
        "attempt 4",
        "attempt 5",
        "attempt 6",
        "attempt 7",
        "attempt 8",
        "attempt 9",
        "attempt 10",
        "attempt 11",
        "attempt 12",
        "attempt 13",
        "attempt 14",
        "attempt 15",
        "attempt 16",
        "attempt 17",
        "attempt 18",
        "attempt 19",
        "attempt 20",
        "attempt 21",
        "attempt 22",
        "attempt 23",
        "attempt 24",
        "attempt 25",
    ];
    match attempt.checked_sub(1).and_then(|i| NAMES.get(i as usize)) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("attempt {attempt}")),
    }
}

/// How many of `wanted` jobs a claim may take from a queue with `settings` while
/// `running` of its jobs hold unexpired leases: none while it is paused, and never so
/// many that more than `max_running` would run. A backend's claim counts `running` and
/// takes the room in one step (one lock, one transaction), so that claims on many
/// engines together keep to the limit.
pub fn claim_room(settings: &QueueSettings, running: u64, wanted: usize) -> usize {
    if settings.paused {
        return 0;
    }
    match settings.max_running {
        None => wanted,
        Some(max) => {
            let free = u64::from(max).saturating_sub(running);
            wanted.min(usize::try_from(free).unwrap_or(usize::MAX))
        }
    }
}

/// Where a queue's rate limit stands at a claim: how many jobs may start now, and how the
/// bucket's state moves with the jobs taken. The state is one time, the "theoretical
/// arrival time" of the generic cell rate algorithm (a token bucket without a counter):
/// starts are spaced [`RateLimit::interval_micros`] apart, and up to `burst` may come
/// at once after a quiet spell. All in whole microseconds, so every backend computes the
/// same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    /// How many may start now.
    pub allowed: usize,
    start: DateTime<Utc>,
    interval: i64,
    tolerance: i64,
}

impl RateWindow {
    /// The window of `rate` at `now`, from the stored state `tat` (none: a full bucket).
    pub fn at(rate: &RateLimit, tat: Option<DateTime<Utc>>, now: DateTime<Utc>) -> RateWindow {
        let interval = rate.interval_micros();
        let tolerance = interval.saturating_mul(i64::from(rate.burst.max(1) - 1));
        let start = tat.map_or(now, |t| t.max(now));
        let ahead = (start - now).num_microseconds().unwrap_or(i64::MAX);
        let allowed = if ahead > tolerance {
            0
        } else {
            let spare = (tolerance - ahead) / interval + 1;
            usize::try_from(spare.min(i64::from(rate.burst))).unwrap_or(0)
        };
        RateWindow {
            allowed,
            start,
            interval,
            tolerance,
        }
    }

    /// The state to store once `taken` jobs started (unchanged when none did).
    pub fn tat_after(&self, taken: usize) -> DateTime<Utc> {
        let spent = self.interval.saturating_mul(taken as i64);
        self.start + chrono::Duration::microseconds(spent)
    }

    /// When the next job may start once `taken` did.
    pub fn next_start(&self, taken: usize) -> DateTime<Utc> {
        self.tat_after(taken) - chrono::Duration::microseconds(self.tolerance)
    }
}

/// What a queue's settings let one claim do: the flow control of the claim, for a backend
/// to apply under its lock or in its write transaction.
///
/// ```
/// use jobworks::{QueueSettings, RateLimit, rules::ClaimPlan};
/// use std::time::Duration;
/// let mut settings = QueueSettings::default();
/// settings.max_running = Some(4);
/// settings.rate = Some(RateLimit::new(2, Duration::from_secs(1)));
/// let now = chrono::Utc::now();
/// // 3 running of at most 4, a full bucket of 2: a claim of 10 takes at most 1,
/// // looking at 2 due jobs to tell whether the limit held one back.
/// let plan = ClaimPlan::new(&settings, 3, None, now, 10);
/// assert_eq!((plan.take, plan.scan()), (1, 2));
/// assert!(plan.full(2) && !plan.full(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPlan {
    /// How many jobs the claim may take.
    pub take: usize,
    /// The room `max_running` leaves ([`claim_room`]).
    room: usize,
    limit: usize,
    window: Option<RateWindow>,
    per_key: Option<u32>,
}

impl ClaimPlan {
    /// The plan of a claim of up to `limit` jobs from a queue with `settings`, while
    /// `running` of its jobs hold unexpired leases and its rate bucket is at `tat`.
    pub fn new(
        settings: &QueueSettings,
        running: u64,
        tat: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> ClaimPlan {
        let room = claim_room(settings, running, limit);
        let window = settings.rate.map(|rate| RateWindow::at(&rate, tat, now));
        ClaimPlan {
            take: window.map_or(room, |w| room.min(w.allowed)),
            room,
            limit,
            window,
            per_key: settings.max_running_per_key,
        }
    }

    /// How many tenants a claim looks at, at most: the first ones in turn after the
    /// tenant served last ([`pick`]).
    pub fn tenants(&self) -> usize {
        self.scan().min(FAIR_TENANTS)
    }

    /// How many of each tenant's due jobs (in [`claim_order`]) a claim looks at: as many
    /// as the claim may take (one more to tell whether `max_running` held one back), and
    /// more under `max_running_per_key`, which may pass over jobs whose key is busy.
    pub fn per_tenant(&self) -> usize {
        match self.per_key {
            None => self.scan(),
            Some(_) => self.scan().saturating_mul(PER_KEY_LOOKAHEAD),
        }
    }

    /// How many due jobs a backend should look at: the room, and one more when the room
    /// is less than the claim asked for, to tell whether the limit held a job back.
    pub fn scan(&self) -> usize {
        if self.room < self.limit {
            self.room + 1
        } else {
            self.room
        }
    }

    /// Whether `max_running` held back a due job, given how many it found (up to
    /// [`scan`](Self::scan)).
    pub fn full(&self, due: usize) -> bool {
        self.room < self.limit && due > self.room
    }

    /// The rate bucket's new state once `taken` jobs were claimed (`None`: unchanged).
    pub fn tat_after(&self, taken: usize) -> Option<DateTime<Utc>> {
        let window = self.window.filter(|_| taken > 0)?;
        Some(window.tat_after(taken))
    }

    /// When to look again once `taken` jobs were claimed, if the rate limit (not the
    /// supply of due jobs, nor the room) is what stopped the claim: its next token.
    pub fn next_token(&self, taken: usize) -> Option<DateTime<Utc>> {
        let w = self.window?;
        (w.allowed < self.room && taken == w.allowed).then(|| w.next_start(taken))
    }
}

/// How many tenants one claim serves at most; the next claim goes on after them.
pub const FAIR_TENANTS: usize = 16;

/// How many times the claim's size a claim looks ahead in a tenant's due jobs when
/// `max_running_per_key` may pass over some.
pub const PER_KEY_LOOKAHEAD: usize = 4;

/// Which of a claim's candidates it takes ([`pick`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Picks {
    /// Indexes into the candidates, in the order they are taken.
    pub taken: Vec<usize>,
    /// The tenant served last, where the next claim's turn starts (`None`: none taken).
    pub cursor: Option<TenantId>,
    /// Whether a limit on running jobs (`max_running`, or `max_running_per_key` while
    /// fewer than the claim could take were taken) held back a due job: the claimer then
    /// waits for a slot ([`Claimed::full`](super::Claimed::full)).
    pub full: bool,
}

/// Gathers a claim's candidates for [`pick`]: the first [`ClaimPlan::tenants`] tenants in
/// turn after `cursor` that have due jobs, each with its first [`ClaimPlan::per_tenant`].
///
/// `next_tenant(after)` answers the first tenant above `after` in byte order (`None`: the
/// first of all) that has queued jobs in the queue, due or not; `due(tenant, n)` answers
/// that tenant's first `n` due jobs (matching the claim) in [`claim_order`]. A backend
/// serves both from an index on (queue, tenant, priority, not-before time, id).
///
/// # Errors
/// What the closures return.
pub fn gather<J>(
    plan: &ClaimPlan,
    cursor: Option<&TenantId>,
    mut next_tenant: impl FnMut(Option<&TenantId>) -> Result<Option<TenantId>>,
    mut due: impl FnMut(&TenantId, usize) -> Result<Vec<J>>,
) -> Result<Vec<J>> {
    let mut candidates = Vec::new();
    let mut tenants = 0;
    let mut probe = cursor.cloned();
    let mut wrapped = cursor.is_none();
    while tenants < plan.tenants() {
        let Some(tenant) = next_tenant(probe.as_ref())? else {
            if wrapped {
                break;
            }
            wrapped = true;
            probe = None;
            continue;
        };
        if wrapped && cursor.is_some_and(|c| tenant > *c) {
            break;
        }
        let found = due(&tenant, plan.per_tenant())?;
        if !found.is_empty() {
            candidates.extend(found);
            tenants += 1;
        }
        probe = Some(tenant);
    }
    Ok(candidates)
}

/// Which due jobs a claim takes, under the queue's limits and in fairness across
/// tenants: the rule every backend's claim applies.
///
/// `candidates` are, for the first [`ClaimPlan::tenants`] tenants in turn after `cursor`
/// (the tenant served last: names above it in byte order, then from the first name) that
/// have due jobs, each tenant's first [`ClaimPlan::per_tenant`] due jobs; `running` says
/// how many jobs with a concurrency key run under an unexpired lease. Then:
///
/// 1. Under `max_running_per_key`, each key's free slots go to its candidates in
///    [`claim_order`]; the rest are passed over.
/// 2. The tenants take turns, in the order above, each taking its next job in
///    [`claim_order`], until the claim has [`ClaimPlan::take`] or no tenant has more.
///
/// So one tenant's backlog never starves another's, priority orders each tenant's
/// jobs, and a claim of `n` takes what `n` claims of one would.
///
/// ```
/// use jobworks::{Job, JobType, NewJob, QueueSettings, TenantId, rules};
/// let now = chrono::Utc::now();
/// let job = |tenant: &str, priority: i32| {
///     let job = NewJob::new(JobType::new("ECHO")?, serde_json::json!({})).priority(priority);
///     Ok::<_, jobworks::Error>(Job::new_queued_at(TenantId::new(tenant)?, job, 3, now))
/// };
/// // Tenant a has three jobs, b one; a was served last.
/// let (a1, a2, a3, b1) = (job("a", 3)?, job("a", 2)?, job("a", 1)?, job("b", 0)?);
/// let candidates = [&a3, &a1, &b1, &a2];
/// let plan = rules::ClaimPlan::new(&QueueSettings::default(), 0, None, now, 3);
/// let picks = rules::pick(&plan, &candidates, Some(&TenantId::new("a")?), |_| 0);
/// // b first, then a's best two in turn
/// assert_eq!(picks.taken, [2, 1, 3]);
/// assert_eq!(picks.cursor, Some(TenantId::new("a")?));
/// # Ok::<(), jobworks::Error>(())
/// ```
pub fn pick(
    plan: &ClaimPlan,
    candidates: &[&Job],
    cursor: Option<&TenantId>,
    running: impl Fn(&str) -> u64,
) -> Picks {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| claim_order(candidates[i]));
    let mut passed_over = false;
    if let Some(max) = plan.per_key {
        let mut used: BTreeMap<&str, u64> = BTreeMap::new();
        order.retain(|&i| {
            let Some(key) = candidates[i].concurrency_key.as_deref() else {
                return true;
            };
            let used = used.entry(key).or_insert_with(|| running(key));
            let free = *used < u64::from(max);
            *used += u64::from(free);
            passed_over |= !free;
            free
        });
    }
    let mut queues: BTreeMap<&TenantId, std::collections::VecDeque<usize>> = BTreeMap::new();
    for i in order {
        queues
            .entry(&candidates[i].tenant)
            .or_default()
            .push_back(i);
    }
    let mut turns: Vec<_> = match cursor {
        Some(c) => {
            let (before, after): (Vec<_>, Vec<_>) = queues.into_iter().partition(|(t, _)| *t <= c);
            after.into_iter().chain(before).collect()
        }
        None => queues.into_iter().collect(),
    };
    let mut picks = Picks::default();
    let mut last = None;
    while picks.taken.len() < plan.take && !turns.is_empty() {
        turns.retain_mut(|(tenant, jobs)| {
            if picks.taken.len() == plan.take {
                return true;
            }
            match jobs.pop_front() {
                Some(i) => {
                    picks.taken.push(i);
                    last = Some(*tenant);
                    true
                }
                None => false,
            }
        });
    }
    picks.cursor = last.cloned();
    picks.full = plan.full(candidates.len()) || (passed_over && picks.taken.len() < plan.take);
    picks
}

/// [`pick`]'s answer when one tenant alone has due jobs and no key limit applies, for a
/// backend to take without gathering: `due`, that tenant's first
/// [`ClaimPlan::per_tenant`] due jobs in [`claim_order`], cut to [`ClaimPlan::take`], and
/// whether a limit held one back. The turn then moves to that tenant when any was taken.
pub fn one_tenant<J>(plan: &ClaimPlan, mut due: Vec<J>) -> (Vec<J>, bool) {
    let full = plan.full(due.len());
    due.truncate(plan.take);
    (due, full)
}

/// [`gather`] and [`pick`] over every due job a claim may take (matching it, in any
/// order), for a store without indexes: the indexes of `due` it takes, where the next
/// turn starts, and whether a limit held a job back. The same answer as a backend that
/// gathers from its index.
pub fn choose(
    plan: &ClaimPlan,
    due: &[&Job],
    cursor: Option<&TenantId>,
    running: impl Fn(&str) -> u64,
) -> Picks {
    if plan.take == 0 {
        return Picks {
            full: plan.full(due.len()),
            ..Picks::default()
        };
    }
    let mut by_tenant: BTreeMap<&TenantId, Vec<usize>> = BTreeMap::new();
    for (i, job) in due.iter().enumerate() {
        by_tenant.entry(&job.tenant).or_default().push(i);
    }
    for jobs in by_tenant.values_mut() {
        jobs.sort_by_key(|&i| claim_order(due[i]));
    }
    let gathered = gather(
        plan,
        cursor,
        |after| {
            let mut above = by_tenant.keys().filter(|t| after.is_none_or(|a| **t > a));
            Ok(above.next().map(|t| (*t).clone()))
        },
        |tenant, n| Ok(by_tenant[tenant].iter().copied().take(n).collect()),
    )
    .unwrap_or_default(); // the closures above never fail
    let candidates: Vec<&Job> = gathered.iter().map(|&i| due[i]).collect();
    let mut picks = pick(plan, &candidates, cursor, running);
    for i in &mut picks.taken {
        *i = gathered[*i];
    }
    picks
}

/// The earlier of two times, either of which may be missing.
pub fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The order claims take due jobs in: priority (high first), then not-before time, then
/// id. Sort candidates by it.
pub fn claim_order(job: &Job) -> (std::cmp::Reverse<i32>, DateTime<Utc>, crate::JobId) {
    (std::cmp::Reverse(job.priority), job.run_at, job.id)
}

/// Whether [`claim`] accepts the record.
pub fn claimable(stored: &Stored) -> bool {
    JobStatus::can_transition(stored.job.status, JobStatus::Running)
}

/// Checks that `lease` is the job's current, unexpired lease.
fn held(stored: &Stored, lease: &Lease, now: DateTime<Utc>) -> Result<()> {
    let current = stored.lease.map(|l| (l.lease_id, l.expires_at));
    if lease.job_id == stored.job.id && lease.is_current(stored.job.status, current, now) {
        Ok(())
    } else {
        Err(Error::LeaseLost { id: lease.job_id })
    }
}

/// Extends `lease` by `ttl` from now. The record does not change, so the write adds no
/// revision; it tells the worker whether cancellation was asked for.
///
/// # Errors
/// [`Error::LeaseLost`] unless `lease` holds the job.
pub fn heartbeat(
    stored: Stored,
    lease: &Lease,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<(Write, LeaseStatus)> {
    held(&stored, lease, now)?;
    let expires_at = lease_until(now, ttl)?;
    let cancel_requested = stored.job.cancel_requested;
    let mut w = stored.write();
    w.lease = LeaseChange::Set(Lease {
        expires_at,
        ..*lease
    });
    let status = LeaseStatus {
        expires_at,
        cancel_requested,
    };
    Ok((w, status))
}

/// Appends an event about a running job, with the progress or artifact it reports.
///
/// # Errors
/// [`Error::LeaseLost`] unless `lease` holds the job.
pub fn append(stored: Stored, lease: &Lease, append: Append, now: DateTime<Utc>) -> Result<Write> {
    held(&stored, lease, now)?;
    let mut w = stored.write();
    if let Some(progress) = append.progress {
        w.job.progress = Some(progress);
    }
    if let Some(artifact) = append.artifact {
        w.put_artifact(artifact);
    }
    w.push(append.event, now);
    Ok(w)
}

/// Records an attempt's outcome and ends its lease. A job whose cancellation was asked
/// for ends `cancelled` unless the attempt succeeded; a retry with no attempts left
/// fails; a release and a snooze give the attempt back.
///
/// # Errors
/// [`Error::LeaseLost`] unless `lease` holds the job.
pub fn finish(
    stored: Stored,
    lease: &Lease,
    outcome: &Finish,
    now: DateTime<Utc>,
) -> Result<Write> {
    held(&stored, lease, now)?;
    let mut w = stored.write();
    let job = &mut *w.job;
    let exhausted = job.attempts >= job.max_attempts;
    let (event, error) = match outcome {
        Finish::Completed { result } => {
            set_status(job, JobStatus::Completed)?;
            job.result = Some(result.clone());
            (NewEvent::new(EventKind::Succeeded, "completed"), None)
        }
        Finish::Failed { .. }
        | Finish::Retry { .. }
        | Finish::Snoozed { .. }
        | Finish::Cancelled
            if job.cancel_requested =>
        {
            set_status(job, JobStatus::Cancelled)?;
            let event = NewEvent::new(EventKind::Cancelled, "cancelled while running");
            (event, None)
        }
        Finish::Cancelled => {
            set_status(job, JobStatus::Cancelled)?;
            (NewEvent::new(EventKind::Cancelled, "cancelled"), None)
        }
        Finish::Failed { error } => {
            set_status(job, JobStatus::Failed)?;
            (NewEvent::new(EventKind::Failed, error.clone()), Some(error))
        }
        Finish::Retry { error, .. } if exhausted => {
            set_status(job, JobStatus::Failed)?;
            let event = NewEvent::new(EventKind::Failed, error.clone())
                .with_payload(serde_json::json!({"attempts_exhausted": true}));
            (event, Some(error))
        }
        Finish::Retry { error, run_at } => {
            set_status(job, JobStatus::Queued)?;
            job.run_at = crate::job::truncate(*run_at).max(now);
            let at = run_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let event = NewEvent::new(EventKind::Retrying, error.clone())
                .with_payload(serde_json::json!({"attempt": job.attempts, "run_at": at}));
            (event, Some(error))
        }
        Finish::Released => {
            set_status(job, JobStatus::Queued)?;
            job.run_at = now;
            job.attempts = job.attempts.saturating_sub(1);
            let event = NewEvent::new(EventKind::Released, "handed back by a worker shutting down");
            (event, None)
        }
        Finish::Snoozed { reason, run_at } => {
            set_status(job, JobStatus::Queued)?;
            job.run_at = crate::job::truncate(*run_at).max(now);
            job.attempts = job.attempts.saturating_sub(1);
            let at = job
                .run_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let event = NewEvent::new(EventKind::Snoozed, reason.clone())
                .with_payload(serde_json::json!({"run_at": at}));
            (event, None)
        }
    };
    job.error = error.cloned();
    end_attempt(&mut w, event, now);
    Ok(w)
}

/// Ends a running job whose lease expired: cancelled when cancellation was asked for,
/// failed when no attempts are left, queued again otherwise. Unchanged when the job is
/// no longer running under an expired lease (another writer got there first).
///
/// # Errors
/// [`Error::InvalidTransition`] only if the table and this rule disagree.
pub fn reap(stored: Stored, now: DateTime<Utc>) -> Result<Step> {
    let expired = stored.lease.is_some_and(|l| l.expires_at <= now);
    if stored.job.status != JobStatus::Running || !expired {
        return Ok(Step::Unchanged(stored));
    }
    let mut w = stored.write();
    let job = &mut *w.job;
    let (to, event, error) = if job.cancel_requested {
        let event = NewEvent::new(EventKind::Cancelled, "cancelled after its worker was lost");
        (JobStatus::Cancelled, event, None)
    } else if job.attempts >= job.max_attempts {
        let msg = "lease expired and no attempts are left";
        (
            JobStatus::Failed,
            NewEvent::new(EventKind::Failed, msg),
            Some(msg),
        )
    } else {
        let msg = "lease expired; the job will run again";
        (
            JobStatus::Queued,
            NewEvent::new(EventKind::Retrying, msg),
            Some(msg),
        )
    };
    set_status(job, to)?;
    if to == JobStatus::Queued {
        job.run_at = now;
    }
    job.error = error.map(str::to_owned);
    end_attempt(&mut w, event, now);
    Ok(Step::Write(w))
}

/// The common end of an attempt: the lease goes, a terminal job is completed now, and
/// `event` records it.
fn end_attempt(w: &mut Write, event: NewEvent, now: DateTime<Utc>) {
    if w.job.status.is_terminal() {
        w.job.completed_at = Some(now);
    }
    w.lease = LeaseChange::Clear;
    w.push(event, now);
}

/// An operator's retry of a failed or cancelled job: queued again now with a fresh attempt
/// budget (attempts back to 0), its result, error and progress cleared; the earlier
/// attempts stay on the timeline, and an `operator` event records who retried it.
///
/// # Errors
/// [`Error::InvalidTransition`] unless the job failed or was cancelled.
pub fn retry(stored: Stored, by: &Operator, now: DateTime<Utc>) -> Result<Write> {
    let from = stored.job.status;
    if !matches!(from, JobStatus::Failed | JobStatus::Cancelled) {
        return Err(Error::InvalidTransition {
            id: stored.job.id,
            from,
            to: JobStatus::Queued,
        });
    }
    let mut w = stored.write();
    let job = &mut *w.job;
    set_status(job, JobStatus::Queued)?;
    job.attempts = 0;
    job.run_at = now;
    job.result = None;
    job.error = None;
    job.progress = None;
    job.completed_at = None;
    job.cancel_requested = false;
    if let Some(link) = job.workflow.as_mut() {
        link.skipped = false;
    }
    let message = format!("retried by {} (was {from})", by.actor);
    w.push(by.event("retry", message), now);
    Ok(w)
}

/// An operator's requeue of a queued job waiting for its not-before time: due now, with
/// an `operator` event. Unchanged when it is already due.
///
/// # Errors
/// [`Error::InvalidTransition`] unless the job is queued.
pub fn requeue(stored: Stored, by: &Operator, now: DateTime<Utc>) -> Result<Step> {
    let from = stored.job.status;
    if from != JobStatus::Queued {
        return Err(Error::InvalidTransition {
            id: stored.job.id,
            from,
            to: JobStatus::Queued,
        });
    }
    if stored.job.run_at <= now {
        return Ok(Step::Unchanged(stored));
    }
    let mut w = stored.write();
    w.job.run_at = now;
    w.push(
        by.event("requeue", format!("made due now by {}", by.actor)),
        now,
    );
    Ok(Step::Write(w))
}

/// Whether an operator may discard the job: only a finished one.
///
/// # Errors
/// [`Error::Conflict`] for a job that has not finished.
pub fn discardable(stored: &Stored) -> Result<()> {
    if stored.job.status.is_terminal() {
        Ok(())
    } else {
        Err(Error::Conflict {
            id: stored.job.id,
            reason: format!(
                "the job is {}; only finished jobs can be discarded",
                stored.job.status
            )
            .into(),
        })
    }
}

/// Cancels a queued job at once, or asks a running one to stop. Unchanged when a running
/// job was already asked. An operator's cancel (`by`) is recorded as an `operator` event
/// before the one that cancels.
///
/// # Errors
/// [`Error::InvalidTransition`] for a terminal job.
pub fn cancel(stored: Stored, by: Option<&Operator>, now: DateTime<Utc>) -> Result<Step> {
    if stored.job.status == JobStatus::Running && stored.job.cancel_requested {
        return Ok(Step::Unchanged(stored));
    }
    let mut w = stored.write();
    if let Some(by) = by
        && !w.job.status.is_terminal()
    {
        w.push(
            by.event("cancel", format!("cancelled by {}", by.actor)),
            now,
        );
    }
    let job = &mut *w.job;
    let event = if job.status == JobStatus::Running {
        job.cancel_requested = true;
        NewEvent::new(EventKind::CancelRequested, "cancellation requested")
    } else {
        set_status(job, JobStatus::Cancelled)?;
        job.completed_at = Some(now);
        NewEvent::new(EventKind::Cancelled, "cancelled")
    };
    w.push(event, now);
    Ok(Step::Write(w))
}

/// What a change to a workflow's job means for the jobs that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentMove {
    /// It reached this terminal status.
    Ended(JobStatus),
    /// It left `failed` or `cancelled` (an operator's retry, or the retry of the parent
    /// whose failure cancelled it).
    Reopened,
}

/// The move `write` makes that the job's dependents must hear of: none for a job without
/// dependents, or one that stays on the same side of terminal.
pub fn parent_move(write: &Write) -> Option<ParentMove> {
    let link = write.job.workflow.as_ref()?;
    if link.dependents.is_empty() {
        return None;
    }
    match (
        write.from_status().is_terminal(),
        write.job.status.is_terminal(),
    ) {
        (false, true) => Some(ParentMove::Ended(write.job.status)),
        (true, false) => Some(ParentMove::Reopened),
        _ => None,
    }
}

/// Tells a dependent that `parent` (as it is after its write) moved: the dependent counts
/// it, and is unblocked (queued once no parent is pending), skipped (cancelled when a
/// parent failed and it does not run anyway) or revived (back to waiting when no failed
/// parent is left) when that decides it. Only a waiting or skipped dependent listens;
/// others are left as they are. Returns the dependent's own move, for its dependents.
///
/// # Errors
/// [`Error::InvalidTransition`] only if the record breaks the state machine.
pub fn hear(
    dependent: &mut Write,
    parent: &Job,
    moved: ParentMove,
    now: DateTime<Utc>,
) -> Result<Option<ParentMove>> {
    let job = &mut *dependent.job;
    let Some(link) = job.workflow.as_mut() else {
        return Ok(None);
    };
    let listening = match job.status {
        JobStatus::Waiting => true,
        JobStatus::Cancelled => link.skipped,
        _ => false,
    };
    if !listening {
        return Ok(None);
    }
    match moved {
        ParentMove::Ended(JobStatus::Completed) => link.pending = link.pending.saturating_sub(1),
        ParentMove::Ended(_) => {
            link.pending = link.pending.saturating_sub(1);
            link.failed += 1;
        }
        ParentMove::Reopened => {
            link.pending += 1;
            link.failed = link.failed.saturating_sub(1);
        }
    }
    let blocked = link.failed > 0 && !link.run_if_parents_fail;
    let pending = link.pending;
    let parent_key = parent.workflow.as_ref().map_or("", |l| l.key.as_str());
    let payload = serde_json::json!({"parent": parent.id, "parent_key": parent_key});
    let (event, answer) = match job.status {
        JobStatus::Waiting if blocked => {
            set_status(job, JobStatus::Cancelled)?;
            job.completed_at = Some(now);
            if let Some(link) = job.workflow.as_mut() {
                link.skipped = true;
            }
            let message = format!("skipped: parent {parent_key:?} {}", parent.status);
            let event = NewEvent::new(EventKind::Cancelled, message).with_payload(payload);
            (Some(event), Some(ParentMove::Ended(JobStatus::Cancelled)))
        }
        JobStatus::Waiting if pending == 0 => {
            set_status(job, JobStatus::Queued)?;
            job.run_at = job.run_at.max(now);
            let message = if parent.status == JobStatus::Completed {
                "parents completed"
            } else {
                "parents finished"
            };
            let event = NewEvent::new(EventKind::Unblocked, message).with_payload(payload);
            (Some(event), None)
        }
        JobStatus::Cancelled if !blocked => {
            set_status(job, JobStatus::Waiting)?;
            job.completed_at = None;
            if let Some(link) = job.workflow.as_mut() {
                link.skipped = false;
            }
            let message = format!("waiting again: parent {parent_key:?} was retried");
            let event = NewEvent::new(EventKind::Waiting, message).with_payload(payload);
            (Some(event), Some(ParentMove::Reopened))
        }
        _ => (None, None),
    };
    match event {
        Some(event) => {
            dependent.push(event, now);
        }
        None => {
            // Counted only: still a change the guard of a concurrent writer must see.
            dependent.job.revision += 1;
            dependent.job.updated_at = now;
        }
    }
    Ok(answer)
}

/// Cancels a job of a workflow being cancelled: [`cancel`] of a job not yet terminal,
/// marked as reached by the workflow's cancel; terminal jobs are left as they are.
///
/// # Errors
/// As [`cancel`].
pub fn cancel_in_workflow(
    stored: Stored,
    by: Option<&Operator>,
    now: DateTime<Utc>,
) -> Result<Step> {
    if stored.job.status.is_terminal() {
        return Ok(Step::Unchanged(stored));
    }
    match cancel(stored, by, now)? {
        Step::Write(mut w) => {
            if let Some(link) = w.job.workflow.as_mut() {
                link.cancelled = true;
            }
            Ok(Step::Write(w))
        }
        unchanged => Ok(unchanged),
    }
}
