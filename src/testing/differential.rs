//! The differential test: random sequences of operations, with clock jumps, against a
//! backend and against [`MemoryStore`], which must agree on every answer, record and
//! timeline.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::clock::Clock;
use crate::job::QueueName;
use crate::job::{Artifact, ArtifactRole, EventKind, Job, JobId, JobType, NewEvent, Progress};
use crate::store::JobStoreExt;
use crate::store::{
    Append, ClaimParams, EventParams, Finish, JobStore, Lease, QueuePatch, ReapParams,
};
use crate::{Error, MemoryStore, Result, TenantId};

/// How long the sequences' leases last; clock jumps are around it.
const TTL: Duration = Duration::from_secs(30);

/// Runs `sequences` random sequences of `steps` operations each (submit into two queues,
/// submit small workflows (cancelled whole now and then), claim from either, heartbeat, append with progress or an artifact record, finish in
/// every way including a snooze, cancel, operator actions (retry, requeue, cancel,
/// discard), reap, pause, resume, `max_running`, `max_running_per_key` and the rate limit
/// of a queue, and clock jumps), by two tenants that take turns in the queues, against
/// the store `new_store` makes and against a fresh [`MemoryStore`] per sequence, both on
/// clocks moved together. After every step the answers must agree
/// and so must the records and timelines of the jobs it touched, and at the end of a
/// sequence those of all its jobs. Timestamps, revisions and lease ids are left out of
/// the comparison; everything else is compared.
///
/// `new_store` is called once, with the clock the store must read; every sequence keeps
/// to its own tenants and job type, so one store serves them all. A failure names the
/// seed of its sequence, which `seed` reproduces as the first one.
pub async fn differential_test<S, F, Fut>(new_store: F, sequences: u64, steps: usize, seed: u64)
where
    S: JobStore,
    F: FnOnce(Clock) -> Fut,
    Fut: Future<Output = S>,
{
    let clock = Clock::default();
    let store = new_store(clock.clone()).await;
    for n in 0..sequences {
        let sequence_seed = seed.wrapping_add(n);
        let mut run = Sequence::new(&store, &clock, sequence_seed, n);
        for step in 0..steps {
            run.step().await.unwrap_or_else(|diff| {
                panic!("differential test, seed {sequence_seed}, step {step}: {diff}")
            });
        }
        run.finish_all().await.unwrap_or_else(|diff| {
            panic!("differential test, seed {sequence_seed}, at the end: {diff}")
        });
    }
}

/// One claim as both stores made it.
#[derive(Debug, Clone, Copy)]
struct Held {
    reference: Lease,
    tested: Lease,
}

struct Sequence<'a, S> {
    reference: MemoryStore,
    reference_clock: Clock,
    tested: &'a S,
    tested_clock: &'a Clock,
    rng: StdRng,
    /// The sequence's two tenants, named after every earlier sequence's (so that where
    /// an earlier sequence left a queue's turn does not matter), and each job's.
    tenants: [TenantId; 2],
    owners: std::collections::HashMap<JobId, TenantId>,
    job_type: JobType,
    /// The sequence's own queue, beside `default`: only it is paused and resumed.
    queue: QueueName,
    jobs: Vec<JobId>,
    /// The jobs of each job's workflow: a change to one may change the others.
    mates: std::collections::HashMap<JobId, std::rc::Rc<Vec<JobId>>>,
    held: Vec<Held>,
    touched: Vec<JobId>,
}

type Diff = String;

/// What an answer is, as compared: the value without timestamps, or the kind of error.
fn outcome<T: std::fmt::Debug>(r: &Result<T>, clean: impl Fn(&T) -> String) -> String {
    match r {
        Ok(v) => format!("ok {}", clean(v)),
        Err(Error::LeaseLost { .. }) => "lease lost".into(),
        Err(Error::NotFound { .. }) => "not found".into(),
        Err(Error::InvalidTransition { from, to, .. }) => format!("cannot go {from} -> {to}"),
        Err(Error::AlreadyExists { .. }) => "already exists".into(),
        Err(e) => format!("error {e}"),
    }
}

/// A job as compared: every field but timestamps and the revision.
fn clean_job(job: &Job) -> String {
    let mut j = job.clone();
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    j.created_at = epoch;
    j.run_at = epoch;
    j.updated_at = epoch;
    j.started_at = j.started_at.map(|_| epoch);
    j.completed_at = j.completed_at.map(|_| epoch);
    j.revision = 0;
    for a in &mut j.artifacts {
        a.created_at = epoch;
    }
    j.artifacts.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(e) = &mut j.latest_event {
        e.created_at = epoch;
    }
    format!("{j:?}")
}

fn clean_events(events: &[crate::Event]) -> String {
    let cleaned: Vec<_> = events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.created_at = DateTime::<Utc>::UNIX_EPOCH;
            e
        })
        .collect();
    format!("{cleaned:?}")
}

impl<'a, S: JobStore> Sequence<'a, S> {
    fn new(tested: &'a S, tested_clock: &'a Clock, seed: u64, n: u64) -> Self {
        // The tested store's clock has moved in earlier sequences; start level with it.
        let reference_clock = Clock::default();
        reference_clock.advance(tested_clock.offset());
        Sequence {
            reference: MemoryStore::with_clock(reference_clock.clone()),
            reference_clock,
            tested,
            tested_clock,
            rng: StdRng::seed_from_u64(seed),
            tenants: ["a", "b"]
                .map(|t| TenantId::new(format!("diff-{n:06}-{seed}-{t}")).expect("a valid tenant")),
            owners: std::collections::HashMap::new(),
            job_type: JobType::new(format!("DIFF{n}")).expect("a valid type"),
            queue: QueueName::new(format!("diff-{n}")).expect("a valid queue"),
            jobs: Vec::new(),
            mates: std::collections::HashMap::new(),
            held: Vec::new(),
            touched: Vec::new(),
        }
    }

    /// The later of the two clocks: what the test hands out as "now".
    fn now(&self) -> DateTime<Utc> {
        self.reference_clock.now().max(self.tested_clock.now())
    }

    /// `Ok` when both stores answered alike, as `clean` writes an answer.
    fn agree<T: std::fmt::Debug>(
        what: &str,
        reference: &Result<T>,
        tested: &Result<T>,
        clean: impl Fn(&T) -> String,
    ) -> std::result::Result<(), Diff> {
        let (reference, tested) = (outcome(reference, &clean), outcome(tested, &clean));
        if reference == tested {
            Ok(())
        } else {
            Err(format!(
                "{what} differs\n  memory: {reference}\n  tested: {tested}"
            ))
        }
    }

    /// The tenant of one of the sequence's jobs.
    fn owner(&self, id: JobId) -> TenantId {
        self.owners[&id].clone()
    }

    fn any_job(&mut self) -> Option<JobId> {
        if self.jobs.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.jobs.len());
        Some(self.jobs[i])
    }

    fn any_held(&mut self) -> Option<Held> {
        if self.held.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.held.len());
        Some(self.held[i])
    }

    async fn step(&mut self) -> std::result::Result<(), Diff> {
        self.touched.clear();
        match self.rng.random_range(0..100) {
            0..16 => self.submit().await?,
            16..20 => self.submit_workflow().await?,
            20..38 => self.claim().await?,
            38..46 => self.heartbeat().await?,
            46..62 => self.append().await?,
            62..80 => self.finish().await?,
            80..84 => self.cancel().await?,
            84..87 => self.operator().await?,
            87..90 => self.reap().await?,
            90..94 => self.pause_or_resume().await?,
            _ => {
                let jump = Duration::from_secs(self.rng.random_range(5..45));
                self.reference_clock.advance(jump);
                self.tested_clock.advance(jump);
            }
        }
        let mut touched = std::mem::take(&mut self.touched);
        let mates: Vec<JobId> = touched
            .iter()
            .filter_map(|id| self.mates.get(id))
            .flat_map(|m| m.iter().copied())
            .collect();
        touched.extend(mates);
        touched.sort();
        touched.dedup();
        for id in touched {
            self.compare(id).await?;
        }
        Ok(())
    }

    async fn submit(&mut self) -> std::result::Result<(), Diff> {
        let now = self.now();
        let mut new = crate::NewJob::new(self.job_type.clone(), json!({"n": self.jobs.len()}))
            .priority(self.rng.random_range(-2..3))
            .max_attempts(self.rng.random_range(1..4));
        if self.rng.random_bool(0.2) {
            new = new.run_at(now + chrono::Duration::seconds(20));
        }
        if self.rng.random_bool(0.2) {
            new = new.idempotency_key(format!("key-{}", self.rng.random_range(0..3)));
        }
        if self.rng.random_bool(0.4) {
            new = new.queue(self.queue.clone());
        }
        if self.rng.random_bool(0.3) {
            new = new.concurrency_key(format!("key-{}", self.rng.random_range(0..2)));
        }
        let tenant = self.tenants[usize::from(self.rng.random_bool(0.3))].clone();
        let job = Job::new_queued_at(tenant.clone(), new, 3, now);
        self.owners.insert(job.id, tenant);
        let r = self.reference.submit(vec![job.clone()]).await;
        let t = self.tested.submit(vec![job.clone()]).await;
        let clean = |v: &Vec<crate::Inserted>| {
            v.iter()
                .map(|i| format!("{} {}", i.created, clean_job(&i.job)))
                .collect::<Vec<_>>()
                .join("; ")
        };
        Self::agree("insert", &r, &t, clean)?;
        if let Ok(inserted) = r {
            for i in inserted.into_iter().filter(|i| i.created) {
                self.owners.insert(i.job.id, i.job.tenant.clone());
                self.jobs.push(i.job.id);
            }
        }
        self.touched.push(job.id);
        Ok(())
    }

    /// Submits a workflow of 2 to 4 jobs, each depending on some of the earlier ones
    /// (some running whatever their parents do), with a finalizer half the time.
    async fn submit_workflow(&mut self) -> std::result::Result<(), Diff> {
        let now = self.now();
        let mut flow = crate::NewWorkflow::new();
        for i in 0..self.rng.random_range(2..5) {
            let new = crate::NewJob::new(self.job_type.clone(), json!({"step": i}))
                .max_attempts(self.rng.random_range(1..3));
            let mut step = crate::WorkflowJob::new(format!("s{i}"), new);
            for parent in 0..i {
                if self.rng.random_bool(0.5) {
                    step = step.depends_on([format!("s{parent}")]);
                }
            }
            if self.rng.random_bool(0.2) {
                step = step.run_if_parents_fail();
            }
            flow = flow.job(step);
        }
        if self.rng.random_bool(0.5) {
            flow = flow.finalizer(crate::NewJob::new(self.job_type.clone(), json!({"fin": 1})));
        }
        flow.validate()
            .map_err(|e| format!("a bad test workflow: {e}"))?;
        let tenant = self.tenants[usize::from(self.rng.random_bool(0.3))].clone();
        let jobs = flow.into_jobs(crate::WorkflowId::new(), |new| {
            Job::new_queued_at(tenant.clone(), new, 3, now)
        });
        let r = self.reference.submit(jobs.clone()).await;
        let t = self.tested.submit(jobs.clone()).await;
        let clean = |v: &Vec<crate::Inserted>| {
            v.iter()
                .map(|i| clean_job(&i.job))
                .collect::<Vec<_>>()
                .join("; ")
        };
        Self::agree("insert workflow", &r, &t, clean)?;
        let ids = std::rc::Rc::new(jobs.iter().map(|j| j.id).collect::<Vec<_>>());
        for id in ids.iter() {
            self.owners.insert(*id, tenant.clone());
            self.jobs.push(*id);
            self.mates.insert(*id, ids.clone());
            self.touched.push(*id);
        }
        Ok(())
    }

    async fn claim(&mut self) -> std::result::Result<(), Diff> {
        let queue = if self.rng.random_bool(0.5) {
            self.queue.clone()
        } else {
            QueueName::default()
        };
        let params = ClaimParams::default()
            .queue(queue)
            .limit(self.rng.random_range(1..4))
            .lease_ttl(TTL)
            .types(vec![self.job_type.clone()]);
        let r = self.reference.take(params.clone()).await;
        let t = self.tested.take(params).await;
        let clean = |c: &crate::Claimed| {
            let jobs: Vec<_> = c.jobs.iter().map(|j| clean_job(&j.job)).collect();
            format!(
                "{jobs:?} next due: {}, full: {}",
                c.next_run_at.is_some(),
                c.full
            )
        };
        Self::agree("claim", &r, &t, clean)?;
        if let (Ok(r), Ok(t)) = (r, t) {
            for (r, t) in r.jobs.iter().zip(&t.jobs) {
                self.held.push(Held {
                    reference: r.lease,
                    tested: t.lease,
                });
                self.touched.push(r.job.id);
            }
        }
        Ok(())
    }

    async fn heartbeat(&mut self) -> std::result::Result<(), Diff> {
        let Some(held) = self.any_held() else {
            return Ok(());
        };
        let r = self.reference.heartbeat(&held.reference, TTL).await;
        let t = self.tested.heartbeat(&held.tested, TTL).await;
        let clean = |s: &crate::LeaseStatus| format!("cancel requested: {}", s.cancel_requested);
        Self::agree("heartbeat", &r, &t, clean)?;
        self.touched.push(held.reference.job_id);
        Ok(())
    }

    async fn append(&mut self) -> std::result::Result<(), Diff> {
        let Some(held) = self.any_held() else {
            return Ok(());
        };
        let n: u32 = self.rng.random_range(0..1000);
        let mut event = NewEvent::new(EventKind::Custom, format!("note {n}"));
        if self.rng.random_bool(0.3) {
            event = event.internal();
        }
        let mut append = Append::event(event);
        if self.rng.random_bool(0.3) {
            append = append.with_progress(Progress {
                fraction: f64::from(n) / 1000.0,
                message: format!("{n} of 1000"),
            });
        }
        if self.rng.random_bool(0.3) {
            let name = format!("out/{}.txt", n % 3);
            append.event.artifacts.push(name.clone());
            append = append.with_artifact(Artifact {
                name,
                kind: "text".into(),
                role: ArtifactRole::Final,
                content_type: "text/plain".into(),
                size_bytes: u64::from(n),
                checksum: format!("sha256:{n:064x}"),
                metadata: json!({"n": n}),
                created_at: self.now(),
                attempt: 1,
            });
        }
        let r = self.reference.append(&held.reference, append.clone()).await;
        let t = self.tested.append(&held.tested, append).await;
        let clean = |e: &crate::Event| clean_events(std::slice::from_ref(e));
        Self::agree("append", &r, &t, clean)?;
        self.touched.push(held.reference.job_id);
        Ok(())
    }

    async fn finish(&mut self) -> std::result::Result<(), Diff> {
        let Some(held) = self.any_held() else {
            return Ok(());
        };
        let later = self.now() + chrono::Duration::seconds(self.rng.random_range(1..30));
        let outcome_of = match self.rng.random_range(0..6) {
            0 => Finish::Completed {
                result: json!({"ok": true}),
            },
            1 => Finish::Failed {
                error: "broke".into(),
            },
            2 => Finish::Retry {
                error: "try again".into(),
                run_at: crate::job::truncate(later),
            },
            3 => Finish::Cancelled,
            4 => Finish::Snoozed {
                reason: "not now".into(),
                run_at: crate::job::truncate(later),
            },
            _ => Finish::Released,
        };
        let r = self
            .reference
            .finish(&held.reference, outcome_of.clone())
            .await;
        let t = self.tested.finish(&held.tested, outcome_of).await;
        Self::agree("finish", &r, &t, clean_job)?;
        self.touched.push(held.reference.job_id);
        Ok(())
    }

    async fn cancel(&mut self) -> std::result::Result<(), Diff> {
        let Some(id) = self.any_job() else {
            return Ok(());
        };
        // Now and then as another tenant, which must read as a missing job.
        let tenant = if self.rng.random_bool(0.1) {
            TenantId::new("someone-else").expect("a valid tenant")
        } else {
            self.owner(id)
        };
        let r = self.reference.cancel(&tenant, id).await;
        let t = self.tested.cancel(&tenant, id).await;
        Self::agree("cancel", &r, &t, clean_job)?;
        self.touched.push(id);
        Ok(())
    }

    async fn operator(&mut self) -> std::result::Result<(), Diff> {
        let Some(id) = self.any_job() else {
            return Ok(());
        };
        let by = crate::Operator::new("diff").reason("test");
        let t = self.owner(id);
        if self.rng.random_bool(0.15)
            && let Some(workflow) = self
                .reference
                .get(&t, id)
                .await
                .ok()
                .and_then(|j| j.workflow)
        {
            let r = self
                .reference
                .cancel_workflow(&t, workflow.id, Some(&by))
                .await;
            let tested = self
                .tested
                .cancel_workflow(&t, workflow.id, Some(&by))
                .await;
            let clean = |w: &crate::Workflow| format!("{:?} {:?}", w.status, w.jobs);
            Self::agree("workflow cancel", &r, &tested, clean)?;
            self.touched.push(id);
            return Ok(());
        }
        let (r, tested) = match self.rng.random_range(0..4) {
            0 => (
                self.reference.retry(&t, id, &by).await,
                self.tested.retry(&t, id, &by).await,
            ),
            1 => (
                self.reference.requeue(&t, id, &by).await,
                self.tested.requeue(&t, id, &by).await,
            ),
            2 => (
                self.reference.cancel_as(&t, id, &by).await,
                self.tested.cancel_as(&t, id, &by).await,
            ),
            _ => (
                self.reference.discard(&t, id).await,
                self.tested.discard(&t, id).await,
            ),
        };
        Self::agree("operator action", &r, &tested, clean_job)?;
        if matches!(&r, Ok(job) if self.reference.get(&t, job.id).await.is_err()) {
            // Discarded: no longer one of the sequence's jobs.
            self.jobs.retain(|j| *j != id);
            self.held.retain(|h| h.reference.job_id != id);
        }
        self.touched.push(id);
        Ok(())
    }

    async fn pause_or_resume(&mut self) -> std::result::Result<(), Diff> {
        let patch = match self.rng.random_range(0..8) {
            6 => QueuePatch::default().max_running_per_key(None),
            7 => QueuePatch::default().max_running_per_key(Some(self.rng.random_range(1..3))),
            0 => QueuePatch::default().paused(true),
            1 => QueuePatch::default().paused(false),
            2 => QueuePatch::default().max_running(None),
            3 => QueuePatch::default().max_running(Some(self.rng.random_range(1..3))),
            4 => QueuePatch::default().rate(None),
            _ => {
                // Starts a whole number of seconds apart, like the clock jumps, so that
                // the two stores (reading the time microseconds apart) agree on when a
                // token is due.
                let (limit, every) = (self.rng.random_range(1..3), self.rng.random_range(5..30));
                let period = Duration::from_secs(u64::from(limit) * every);
                let rate = crate::RateLimit::new(limit, period).burst(self.rng.random_range(1..3));
                QueuePatch::default().rate(Some(rate))
            }
        };
        let r = self
            .reference
            .configure_queue(&self.queue, patch.clone())
            .await;
        let t = self.tested.configure_queue(&self.queue, patch).await;
        Self::agree("queue settings", &r, &t, |s| format!("{s:?}"))
    }

    async fn reap(&mut self) -> std::result::Result<(), Diff> {
        let r = self.reference.reap(ReapParams::default()).await;
        let t = self.tested.reap(ReapParams::default()).await;
        // The tested store is shared by every sequence, but earlier sequences leave no
        // lease behind, so both reap only this sequence's jobs.
        let clean = |v: &crate::ReapReport| format!("{v:?}");
        Self::agree("reap", &r, &t, clean)?;
        self.touched.extend(self.jobs.iter().copied());
        Ok(())
    }

    async fn compare(&self, id: JobId) -> std::result::Result<(), Diff> {
        let tenant = self.owner(id);
        let r = self.reference.get(&tenant, id).await;
        let t = self.tested.get(&tenant, id).await;
        Self::agree("job", &r, &t, clean_job)?;
        let all = EventParams::default().limit(1000).include_internal();
        let r = self.reference.events(&tenant, id, all).await;
        let t = self.tested.events(&tenant, id, all).await;
        let clean = |p: &crate::EventPage| format!("{} {}", p.terminal, clean_events(&p.events));
        Self::agree("timeline", &r, &t, clean)?;
        let public = EventParams::default().limit(1000);
        let r = self.reference.events(&tenant, id, public).await;
        let t = self.tested.events(&tenant, id, public).await;
        Self::agree("public timeline", &r, &t, clean)
    }

    /// Compares every job, then ends them all, so no lease outlives the sequence.
    async fn finish_all(&mut self) -> std::result::Result<(), Diff> {
        for id in self.jobs.clone() {
            self.compare(id).await?;
        }
        for id in self.jobs.clone() {
            let tenant = self.owner(id);
            let _ = self.reference.cancel(&tenant, id).await;
            let _ = self.tested.cancel(&tenant, id).await;
        }
        let past_every_lease = TTL + Duration::from_secs(1);
        self.reference_clock.advance(past_every_lease);
        self.tested_clock.advance(past_every_lease);
        let r = self.reference.reap(ReapParams::default()).await;
        let t = self.tested.reap(ReapParams::default()).await;
        let clean = |v: &crate::ReapReport| format!("{v:?}");
        Self::agree("final reap", &r, &t, clean)?;
        for id in self.jobs.clone() {
            self.compare(id).await?;
            let job = self
                .tested
                .get(&self.owner(id), id)
                .await
                .map_err(|e| e.to_string())?;
            if !job.status.is_terminal() {
                return Err(format!("job {id} is still {} at the end", job.status));
            }
        }
        Ok(())
    }
}
