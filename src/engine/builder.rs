//! [`EngineBuilder`]: stores, executors and policies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::artifact::{ArtifactStore, ObjectStoreArtifacts};
use crate::engine::{Engine, EngineInner, Registration, WorkerConfig};
use crate::executor::Executor;
use crate::job::{JobType, QueueName};
use crate::retry::RetryPolicy;
use crate::store::JobStore;
use crate::{Error, MemoryStore, Result};

/// Per-type options for [`EngineBuilder::executor_with`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ExecutorOptions {
    /// Attempts and backoff; the engine's default policy when `None`.
    pub retry: Option<RetryPolicy>,
    /// An attempt running longer fails (and is retried by the policy).
    pub timeout: Option<Duration>,
}

impl ExecutorOptions {
    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }
    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Builds an [`Engine`]. See [`Engine::builder`].
#[derive(Debug)]
pub struct EngineBuilder {
    store: Option<Arc<dyn JobStore>>,
    /// The same store when it is a PostgreSQL one, for submits in a host's transaction.
    #[cfg(feature = "postgres")]
    postgres: Option<Arc<crate::PostgresStore>>,
    artifacts: Option<Arc<dyn ArtifactStore>>,
    executors: Vec<(String, Arc<dyn Executor>, ExecutorOptions)>,
    retry: RetryPolicy,
    config: WorkerConfig,
    heartbeat: Option<Duration>,
    /// Slots of the `default` queue; `None` when it is not served.
    default_slots: Option<usize>,
    /// Other queues and their slots, by name as given.
    queues: Vec<(String, usize)>,
}

impl std::fmt::Debug for dyn Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Executor")
    }
}

impl EngineBuilder {
    pub(crate) fn new() -> Self {
        EngineBuilder {
            store: None,
            #[cfg(feature = "postgres")]
            postgres: None,
            artifacts: None,
            executors: Vec::new(),
            retry: RetryPolicy::default(),
            config: WorkerConfig::default(),
            heartbeat: None,
            default_slots: Some(16),
            queues: Vec::new(),
        }
    }

    /// The job store; a [`MemoryStore`] by default.
    pub fn store(mut self, store: impl JobStore) -> Self {
        let store = Arc::new(store);
        #[cfg(feature = "postgres")]
        {
            use crate::PostgresStore;
            let any: Arc<dyn std::any::Any + Send + Sync> = store.clone();
            self.postgres = match any.downcast::<PostgresStore>() {
                Ok(pg) => Some(pg),
                Err(any) => any
                    .downcast::<Arc<PostgresStore>>()
                    .ok()
                    .map(|pg| (*pg).clone()),
            };
        }
        self.store = Some(store);
        self
    }

    /// The artifact store; in memory with a random signing key by default.
    pub fn artifacts(mut self, artifacts: impl ArtifactStore) -> Self {
        self.artifacts = Some(Arc::new(artifacts));
        self
    }

    /// Registers `executor` for `job_type` with the default retry policy and no timeout.
    pub fn executor(self, job_type: &str, executor: impl Executor) -> Self {
        self.executor_with(job_type, executor, ExecutorOptions::default())
    }

    /// Registers `executor` for `job_type` with its own options.
    pub fn executor_with(
        mut self,
        job_type: &str,
        executor: impl Executor,
        options: ExecutorOptions,
    ) -> Self {
        self.executors
            .push((job_type.to_owned(), Arc::new(executor), options));
        self
    }

    /// The retry policy of types registered without one (3 attempts by default).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How many jobs of the `default` queue this engine runs at once (16 by default).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.default_slots = Some(n.max(1));
        self
    }

    /// Also serves `queue`, running at most `concurrency` of its jobs at once in this
    /// engine. Each queue is claimed from on its own, so a busy queue never holds up
    /// another; the queue's stored settings (a pause) apply on top, on every engine.
    /// `queue("default", n)` is [`concurrency(n)`](Self::concurrency).
    ///
    /// ```
    /// use jobworks::Engine;
    /// let engine = Engine::builder().concurrency(8).queue("emails", 2).build()?;
    /// # drop(engine);
    /// # Ok::<(), jobworks::Error>(())
    /// ```
    pub fn queue(mut self, queue: &str, concurrency: usize) -> Self {
        if queue == QueueName::DEFAULT {
            return self.concurrency(concurrency);
        }
        self.queues.retain(|(name, _)| name != queue);
        self.queues.push((queue.to_owned(), concurrency.max(1)));
        self
    }

    /// Caps every tenant's unfinished (queued or running) jobs, in all queues or in one
    /// ([`Quota`](crate::Quota)); call it again for more caps. A submit that would go
    /// over one creates nothing and fails with
    /// [`Error::QuotaExceeded`](crate::Error::QuotaExceeded) (over HTTP, `429
    /// quota_exceeded`). The store counts in the insert's own step, so the cap holds
    /// across engines; a store must implement
    /// [`JobStore::insert_within`](crate::JobStore::insert_within) (the built-in ones do).
    ///
    /// ```
    /// use jobworks::{Engine, QueueName, Quota};
    /// let engine = Engine::builder()
    ///     .tenant_quota(Quota::unfinished(10_000))
    ///     .tenant_quota(Quota::unfinished(100).in_queue(QueueName::new("reports")?))
    ///     .build()?;
    /// # drop(engine);
    /// # Ok::<(), jobworks::Error>(())
    /// ```
    pub fn tenant_quota(mut self, quota: crate::Quota) -> Self {
        self.config.quotas.push(quota);
        self
    }

    /// Does not serve the `default` queue: for an engine dedicated to other queues.
    pub fn without_default_queue(mut self) -> Self {
        self.default_slots = None;
        self
    }

    /// How long a claim's lease lasts without a heartbeat (30 s by default). Heartbeats
    /// come every third of it unless [`heartbeat_interval`](Self::heartbeat_interval) says
    /// otherwise.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl.max(Duration::from_millis(10));
        self
    }

    /// How often running jobs extend their lease.
    pub fn heartbeat_interval(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// How often an idle worker looks for work without being woken (30 s by default): a
    /// fallback only, since submits wake idle workers.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// How often expired leases are reaped (5 s by default).
    pub fn reap_interval(mut self, every: Duration) -> Self {
        self.config.reap_interval = every.max(Duration::from_millis(1));
        self
    }

    /// How long a graceful shutdown lets running jobs finish (30 s by default).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Deletes terminal jobs (and their artifacts) this long after they ended; kept
    /// forever by default.
    pub fn retention(mut self, keep: Duration) -> Self {
        self.config.retention = Some(keep);
        self
    }

    /// How late a schedule's tick may be made and still count as on time (10 s by
    /// default): a tick that no engine made within it is missed, and the schedule's
    /// [`Missed`](crate::Missed) policy decides whether it is made.
    pub fn schedule_grace(mut self, grace: Duration) -> Self {
        self.config.schedule_grace = grace.min(Duration::from_secs(24 * 3600));
        self
    }

    /// How many claims may be in flight at once (1 by default). More may help a store whose
    /// claim is a network round trip keep every slot busy; each claim still takes as many
    /// jobs as there are free slots.
    pub fn claimers(mut self, n: usize) -> Self {
        self.config.claimers = n.max(1);
        self
    }

    /// How many jobs one claim may take at most (64 by default).
    pub fn claim_batch(mut self, n: usize) -> Self {
        self.config.claim_batch = n.max(1);
        self
    }

    /// Builds the engine. Call [`Engine::start`] to run workers.
    ///
    /// # Errors
    /// [`Error::Invalid`] when a job type name is invalid or registered twice, when a
    /// queue name is invalid, or when no queue is served.
    pub fn build(self) -> Result<Engine> {
        let mut config = self.config;
        if let Some(n) = self.default_slots {
            config.queues.push((QueueName::default(), n));
        }
        for (name, n) in &self.queues {
            config.queues.push((QueueName::new(name)?, *n));
        }
        if config.queues.is_empty() {
            return Err(Error::invalid("queue", "the engine serves no queue"));
        }
        let mut executors = HashMap::new();
        for (name, executor, options) in self.executors {
            let job_type = JobType::new(&name)?;
            let registration = Registration {
                executor,
                retry: options.retry.unwrap_or_else(|| self.retry.clone()),
                timeout: options.timeout,
            };
            if executors.insert(job_type, registration).is_some() {
                return Err(Error::invalid(
                    "type",
                    format!("{name:?} is registered twice"),
                ));
            }
        }
        config.heartbeat_interval = self
            .heartbeat
            .unwrap_or(config.lease_ttl / 3)
            .max(Duration::from_millis(1));
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let artifacts = self
            .artifacts
            .unwrap_or_else(|| Arc::new(ObjectStoreArtifacts::in_memory("http://127.0.0.1:8080")));
        let mut types: Vec<JobType> = executors.keys().cloned().collect();
        types.sort();
        let inner = EngineInner::new(
            store,
            #[cfg(feature = "postgres")]
            self.postgres,
            artifacts,
            executors,
            types,
            config,
        );
        Ok(Engine {
            inner: Arc::new(inner),
        })
    }
}
