//! The [`Engine`]: submit, read, wait, cancel, and run workers.

mod across;
mod attempt;
mod builder;
mod maintenance;
pub mod observe;
mod operator;
mod queues;
mod schedules;
mod wait;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::artifact::{ArtifactKey, ArtifactStore, DEFAULT_URL_TTL, SignedUrl};
use crate::executor::Executor;
use crate::job::{Job, JobId, JobType, NewJob, QueueName, TenantId, TraceContext};
use crate::retry::RetryPolicy;
use crate::store::JobStoreExt;
use crate::store::{EventPage, EventParams, JobPage, JobStore, ListParams, QueueStats};
use crate::{Error, Result};

pub use across::{Across, Tenants};
pub use builder::{EngineBuilder, ExecutorOptions};

pub use operator::{BulkAction, BulkReport, JobFilter, MAX_BULK};

/// The job engine: a cheap, cloneable handle.
///
/// Reads and writes from outside the worker name a tenant; another tenant's job reads
/// exactly like a missing one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> jobworks::Result<()> {
/// use std::time::Duration;
/// use jobworks::{from_fn, Engine, JobContext, JobError, JobType, NewJob, TenantId};
/// let engine = Engine::builder()
///     .executor("DOUBLE", from_fn(|_ctx: JobContext, n: u64| async move { Ok::<_, JobError>(n * 2) }))
///     .build()?;
/// engine.start()?;
/// let tenant = TenantId::new("acme")?;
/// let job = engine.submit(&tenant, NewJob::new(JobType::new("DOUBLE")?, 21.into())).await?.job;
/// let done = engine.wait_until_terminal(&tenant, job.id, Duration::from_secs(5)).await?;
/// assert_eq!(done.result, Some(42.into()));
/// engine.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

/// What [`Engine::submit`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The job.
    pub job: Job,
    /// `false` when an idempotency key matched an existing job, which is returned.
    pub created: bool,
}

#[derive(Debug)]
struct Registration {
    executor: Arc<dyn Executor>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
struct WorkerConfig {
    /// The queues this engine serves, each with how many of its jobs run at once here.
    queues: Vec<(QueueName, usize)>,
    claimers: usize,
    claim_batch: usize,
    lease_ttl: Duration,
    heartbeat_interval: Duration,
    poll_interval: Duration,
    reap_interval: Duration,
    shutdown_grace: Duration,
    retention: Option<Duration>,
    /// Every tenant's caps on unfinished jobs, checked at submit.
    quotas: Vec<crate::Quota>,
    /// How late a schedule's tick may be made and still count as on time.
    schedule_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            queues: Vec::new(),
            claimers: 1,
            claim_batch: 64,
            lease_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            poll_interval: Duration::from_secs(30),
            reap_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            retention: None,
            quotas: Vec::new(),
            schedule_grace: crate::DEFAULT_SCHEDULE_GRACE,
        }
    }
}

#[derive(Debug)]
struct EngineInner {
    store: Arc<dyn JobStore>,
    /// The store again when it is a PostgreSQL one ([`Engine::submit_in`]).
    #[cfg(feature = "postgres")]
    postgres: Option<Arc<crate::PostgresStore>>,
    artifacts: Arc<dyn ArtifactStore>,
    executors: HashMap<JobType, Registration>,
    types: Vec<JobType>,
    config: WorkerConfig,
    /// Jobs this engine runs now, to signal cancellation without waiting for a heartbeat.
    running: Mutex<HashMap<JobId, worker::RunningJob>>,
    workers: Mutex<Option<worker::Workers>>,
    /// `Some(v)` when the workers found nothing to do in a claim made after work
    /// notification `v`; `None` while busy.
    idle: watch::Sender<Option<u64>>,
}

impl EngineInner {
    fn new(
        store: Arc<dyn JobStore>,
        #[cfg(feature = "postgres")] postgres: Option<Arc<crate::PostgresStore>>,
        artifacts: Arc<dyn ArtifactStore>,
        executors: HashMap<JobType, Registration>,
        types: Vec<JobType>,
        config: WorkerConfig,
    ) -> Self {
        EngineInner {
            store,
            #[cfg(feature = "postgres")]
            postgres,
            artifacts,
            executors,
            types,
            config,
            running: Mutex::new(HashMap::new()),
            workers: Mutex::new(None),
            idle: watch::Sender::new(None),
        }
    }

    fn running(&self) -> MutexGuard<'_, HashMap<JobId, worker::RunningJob>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The started workers, taken so that only one caller stops them.
    fn take_workers(&self) -> Option<worker::Workers> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }

    /// The job store.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.inner.store
    }

    /// The artifact store.
    pub fn artifacts(&self) -> &Arc<dyn ArtifactStore> {
        &self.inner.artifacts
    }

    /// The registered job types, sorted.
    pub fn job_types(&self) -> &[JobType] {
        &self.inner.types
    }

    fn checked(&self, new: NewJob) -> Result<NewJob> {
        new.validate()?;
        self.known(&new.job_type)?;
        Ok(new)
    }

    /// [`Error::UnknownJobType`] unless `job_type` has an executor.
    fn known(&self, job_type: &JobType) -> Result<()> {
        if self.inner.executors.contains_key(job_type) {
            Ok(())
        } else {
            Err(Error::UnknownJobType {
                job_type: job_type.to_string(),
                known: self.inner.types.iter().map(ToString::to_string).collect(),
            })
        }
    }

    /// The job `new` of `tenant` as stored, continuing the trace `current` unless it
    /// names its own.
    fn queued(&self, tenant: &TenantId, new: NewJob, current: Option<&TraceContext>) -> Job {
        let new = new.traced(current);
        let attempts = self.inner.executors[&new.job_type].retry.attempts();
        Job::new_queued_at(
            tenant.clone(),
            new,
            attempts,
            self.inner.store.clock().now(),
        )
    }

    /// Submits a job. An idempotency key that matches an earlier job of the tenant with the
    /// same type and input returns that job (`created: false`).
    ///
    /// # Errors
    /// [`Error::UnknownJobType`] for a type without executor, [`Error::Invalid`] for an
    /// out-of-range field, [`Error::AlreadyExists`] for a key reused with other work.
    ///
    /// # Cancel safety
    /// If dropped, the job may or may not have been stored; resubmit with an idempotency
    /// key to find out without creating a second one.
    pub async fn submit(&self, tenant: &TenantId, job: NewJob) -> Result<Submitted> {
        let mut out = self.submit_many(tenant, vec![job]).await?;
        Ok(out.pop().expect("one job in, one out"))
    }

    /// Submits several jobs in one store call: all or none.
    ///
    /// # Errors
    /// As [`submit`](Self::submit), for any of them.
    ///
    /// # Cancel safety
    /// As [`submit`](Self::submit).
    pub async fn submit_many(
        &self,
        tenant: &TenantId,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Submitted>> {
        let jobs = self.prepared(tenant, jobs)?;
        let quotas = &self.inner.config.quotas;
        let inserted = self.inner.store.submit_within(jobs, quotas).await?;
        Ok(submitted(inserted))
    }

    /// Submits a job inside the host's own PostgreSQL transaction: it exists if and only
    /// if that transaction commits, and workers hear of it (`NOTIFY`) at the commit.
    /// Idempotency keys and quotas work as for [`submit`](Self::submit); a key held by a
    /// job of the same transaction is a replay too.
    ///
    /// Pass a transaction begun through sqlx (`&mut *tx` of `pool.begin()`): the submit
    /// runs in a savepoint of it, so a failed submit leaves the rest of the transaction
    /// usable. Its connection may come from any pool on the same database; the store's
    /// schema is used for the submit only. The host's `search_path` is set back before
    /// this returns.
    ///
    /// # Errors
    /// As [`submit`](Self::submit); [`Error::Invalid`] when the engine's store is not a
    /// [`PostgresStore`](crate::PostgresStore).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn submit_in(
        &self,
        conn: &mut sqlx::PgConnection,
        tenant: &TenantId,
        job: NewJob,
    ) -> Result<Submitted> {
        let mut out = self.submit_many_in(conn, tenant, vec![job]).await?;
        Ok(out.pop().expect("one job in, one out"))
    }

    /// [`submit_many`](Self::submit_many) inside the host's PostgreSQL transaction, as
    /// [`submit_in`](Self::submit_in): all or none, and none unless it commits.
    ///
    /// # Errors
    /// As [`submit_in`](Self::submit_in).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn submit_many_in(
        &self,
        conn: &mut sqlx::PgConnection,
        tenant: &TenantId,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Submitted>> {
        let Some(store) = &self.inner.postgres else {
            let msg = "submitting in a transaction needs the engine's store to be a PostgresStore";
            return Err(Error::invalid("store", msg));
        };
        let jobs = self.prepared(tenant, jobs)?;
        let inserted = store
            .submit_in(conn, jobs, &self.inner.config.quotas)
            .await?;
        Ok(submitted(inserted))
    }

    /// `jobs` checked and made into queued jobs of `tenant`, with the submitting span's
    /// trace.
    fn prepared(&self, tenant: &TenantId, jobs: Vec<NewJob>) -> Result<Vec<Job>> {
        let current = crate::job::trace::current();
        jobs.into_iter()
            .map(|new| Ok(self.queued(tenant, self.checked(new)?, current.as_ref())))
            .collect()
    }

    /// Submits a workflow: its jobs and their dependencies in one store call, all or none.
    /// Jobs without parents are queued; the others wait until their parents completed.
    ///
    /// # Errors
    /// [`Error::InvalidAt`] for a bad graph (a cycle, an unknown or duplicate key) or a
    /// job's bad field, with the path to it; [`Error::UnknownJobType`] for a type without
    /// executor; [`Error::QuotaExceeded`] as for [`submit`](Self::submit).
    ///
    /// # Cancel safety
    /// If dropped, the workflow may or may not have been stored (whole or not at all).
    pub async fn submit_workflow(
        &self,
        tenant: &TenantId,
        workflow: crate::NewWorkflow,
    ) -> Result<crate::Workflow> {
        workflow.validate()?;
        let jobs = workflow.jobs.iter().map(|j| &j.job);
        for new in jobs.chain(&workflow.finalizer) {
            self.known(&new.job_type)?;
        }
        let id = crate::WorkflowId::new();
        let current = crate::job::trace::current();
        let jobs = workflow.into_jobs(id, |new| self.queued(tenant, new, current.as_ref()));
        let quotas = &self.inner.config.quotas;
        let inserted = self.inner.store.submit_within(jobs, quotas).await?;
        observe::submitted(inserted.iter().filter(|i| i.created).map(|i| &i.job));
        let jobs: Vec<Job> = inserted.into_iter().map(|i| i.job).collect();
        crate::Workflow::of(&jobs).ok_or(Error::WorkflowNotFound { id })
    }

    /// A workflow of the tenant, with its jobs' statuses.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`] when it does not exist or belongs to another tenant.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn workflow(
        &self,
        tenant: &TenantId,
        id: crate::WorkflowId,
    ) -> Result<crate::Workflow> {
        self.inner.store.workflow(tenant, id).await
    }

    /// Cancels every job of a workflow that is not yet terminal: waiting and queued ones
    /// at once, running ones when their executors honour it. The workflow reads
    /// `cancelled` once all its jobs are terminal.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`] as for [`workflow`](Self::workflow).
    ///
    /// # Cancel safety
    /// If dropped, some of its jobs may be cancelled and others not; cancelling again
    /// finishes the work.
    pub async fn cancel_workflow(
        &self,
        tenant: &TenantId,
        id: crate::WorkflowId,
    ) -> Result<crate::Workflow> {
        let workflow = self.inner.store.cancel_workflow(tenant, id, None).await?;
        for node in workflow.jobs.iter().chain(&workflow.finalizer) {
            if node.status == crate::JobStatus::Running
                && let Some(running) = self.inner.running().get(&node.id)
            {
                running.cancel.cancel();
            }
        }
        Ok(workflow)
    }

    /// A job of the tenant.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist or belongs to another tenant.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        self.inner.store.get(tenant, id).await
    }

    /// The tenant's jobs, newest first.
    ///
    /// # Errors
    /// Store errors.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn list(&self, tenant: &TenantId, params: ListParams) -> Result<JobPage> {
        self.inner.store.list(Some(tenant), params).await
    }

    /// A job's timeline after a cursor.
    ///
    /// # Errors
    /// [`Error::NotFound`] as for [`get`](Self::get).
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn events(
        &self,
        tenant: &TenantId,
        id: JobId,
        params: EventParams,
    ) -> Result<EventPage> {
        self.inner.store.events(tenant, id, params).await
    }

    /// Cancels a queued job at once, or asks a running one to stop: it becomes
    /// `cancelled` when its executor honours the request (or `completed` if it finishes
    /// first).
    ///
    /// # Errors
    /// [`Error::NotFound`] as for [`get`](Self::get); [`Error::InvalidTransition`] when the
    /// job is already terminal.
    ///
    /// # Cancel safety
    /// If dropped, the request may or may not have been recorded; cancelling twice is fine.
    pub async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let job = self.inner.store.cancel(tenant, id).await?;
        self.signal_cancel(&job);
        Ok(job)
    }

    /// Tells this engine's attempt of `job` to stop when its cancellation was asked for.
    fn signal_cancel(&self, job: &Job) {
        if job.cancel_requested
            && let Some(running) = self.inner.running().get(&job.id)
        {
            running.cancel.cancel();
        }
    }

    /// A fresh signed URL for an artifact of a job, valid for `ttl` (one hour when `None`).
    ///
    /// # Errors
    /// [`Error::NotFound`] as for [`get`](Self::get); [`Error::ArtifactNotFound`] when the
    /// job has no artifact of that name.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn signed_url(
        &self,
        tenant: &TenantId,
        id: JobId,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<SignedUrl> {
        let job = self.get(tenant, id).await?;
        self.sign(&job, name, ttl).await
    }

    /// [`signed_url`](Self::signed_url) for a job already read.
    pub(crate) async fn sign(
        &self,
        job: &Job,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<SignedUrl> {
        let artifact = job
            .artifacts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::ArtifactNotFound {
                id: job.id,
                name: name.to_owned(),
            })?;
        let key = ArtifactKey::of_record(job.tenant.clone(), job.id, artifact)?;
        self.inner
            .artifacts
            .signed_url(&key, &artifact.content_type, ttl.unwrap_or(DEFAULT_URL_TTL))
            .await
    }

    /// The engines on this store that are alive (their latest beat at most
    /// [`ENGINE_ALIVE`](crate::ENGINE_ALIVE) old), the most recent first; `None` when
    /// the store keeps no beats. Every started engine beats every
    /// [`ENGINE_BEAT`](crate::ENGINE_BEAT).
    ///
    /// # Errors
    /// Store errors.
    pub async fn engines(&self) -> Result<Option<Vec<crate::EngineBeat>>> {
        let alive = chrono::Duration::seconds(crate::ENGINE_ALIVE.as_secs() as i64);
        let since = self.inner.store.clock().now() - alive;
        self.inner.store.engines(since).await
    }

    /// Job counts by status, across tenants.
    ///
    /// # Errors
    /// Store errors.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn stats(&self) -> Result<QueueStats> {
        self.inner.store.stats().await
    }

    /// Starts this engine's workers and its reaper on the current tokio runtime. They run
    /// until [`shutdown`](Self::shutdown) or [`abort`](Self::abort), even when every handle
    /// to the engine is dropped.
    ///
    /// # Errors
    /// [`Error::Invalid`] when they already run.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(&self) -> Result<()> {
        worker::start(&self.inner)
    }

    /// Waits until this engine's workers are idle: nothing running, and a claim made after
    /// every submit that returned before this call found nothing due (jobs scheduled for
    /// later may remain). Useful in tests and batch tools; never returns if the workers
    /// are not started.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_idle(&self) {
        let target = *self.inner.store.notifier().subscribe_work().borrow();
        let mut idle = self.inner.idle.subscribe();
        let _ = idle
            .wait_for(|idle| idle.is_some_and(|seen| seen >= target))
            .await;
    }

    /// Stops gracefully: no more claims, running jobs get the grace period to finish, then
    /// the rest are handed back to the queue without charging an attempt.
    ///
    /// # Cancel safety
    /// If dropped, the workers still stop; jobs not yet handed back are reaped when their
    /// leases expire.
    pub async fn shutdown(&self) {
        self.shutdown_within(self.inner.config.shutdown_grace).await;
    }

    /// [`shutdown`](Self::shutdown) with another grace period.
    ///
    /// # Cancel safety
    /// As [`shutdown`](Self::shutdown).
    pub async fn shutdown_within(&self, grace: Duration) {
        if let Some(workers) = self.inner.take_workers() {
            workers.shutdown(grace).await;
        }
    }

    /// Stops at once, as a crash would: tasks are aborted mid-job and leases are not handed
    /// back, so those jobs run again once their leases expire. For fault tests.
    pub fn abort(&self) {
        if let Some(workers) = self.inner.take_workers() {
            workers.abort(&self.inner);
        }
    }
}

/// The answers of a submit, counted in the metrics.
fn submitted(inserted: Vec<crate::store::Inserted>) -> Vec<Submitted> {
    observe::submitted(inserted.iter().filter(|i| i.created).map(|i| &i.job));
    inserted
        .into_iter()
        .map(|i| Submitted {
            job: i.job,
            created: i.created,
        })
        .collect()
}
