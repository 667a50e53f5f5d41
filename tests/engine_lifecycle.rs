//! The engine and its workers over the memory store: executors, retries, panics,
//! timeouts, cancellation, heartbeats, shutdown and retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use jobworks::{
    ArtifactSpec, Engine, EngineBuilder, Error, EventKind, EventParams, ExecutorOptions,
    JobContext, JobError, JobStatus, JobType, NewJob, RetryPolicy, TenantId, from_fn,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn new_job(ty: &str, input: Value) -> NewJob {
    NewJob::new(JobType::new(ty).unwrap(), input)
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .base(Duration::from_millis(1))
        .cap(Duration::from_millis(5))
}

async fn run(builder: EngineBuilder, ty: &str, input: Value) -> (Engine, jobworks::Job) {
    let engine = builder.build().unwrap();
    engine.start().unwrap();
    let job = engine
        .submit(&tenant(), new_job(ty, input))
        .await
        .unwrap()
        .job;
    let done = engine
        .wait_until_terminal(&tenant(), job.id, WAIT)
        .await
        .unwrap();
    (engine, done)
}

async fn kinds(engine: &Engine, id: jobworks::JobId) -> Vec<EventKind> {
    let page = engine
        .events(
            &tenant(),
            id,
            EventParams::default().limit(1000).include_internal(),
        )
        .await
        .unwrap();
    page.events.iter().map(|e| e.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_reports_stages_progress_events_and_artifacts() {
    let exec = from_fn(|ctx: JobContext, input: Value| async move {
        ctx.stage("rendering").await?;
        ctx.progress(0.5, "half way").await?;
        ctx.event("cost", json!({"tokens": 12})).await?;
        ctx.put_artifact(
            ArtifactSpec::new("draft.txt", "text/plain").intermediate(),
            "draft",
        )
        .await?;
        ctx.put_artifact(
            ArtifactSpec::new("out/final.txt", "text/plain").kind("text"),
            "final",
        )
        .await?;
        Ok::<_, JobError>(input)
    });
    let (engine, job) = run(
        Engine::builder().executor("RENDER", exec),
        "RENDER",
        json!({"x": 1}),
    )
    .await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.result, Some(json!({"x": 1})));
    assert_eq!(job.attempts, 1);
    assert_eq!(job.progress.as_ref().map(|p| p.fraction), Some(0.5));
    let names: Vec<_> = job.artifacts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["draft.txt", "out/final.txt"]);
    assert_eq!(job.artifacts[1].size_bytes, 5);
    assert!(job.artifacts[1].checksum.starts_with("sha256:"));
    assert_eq!(
        kinds(&engine, job.id).await,
        [
            EventKind::Queued,
            EventKind::Started,
            EventKind::Stage,
            EventKind::Progress,
            EventKind::Custom,
            EventKind::Artifact,
            EventKind::Artifact,
            EventKind::Succeeded
        ]
    );
    let url = engine
        .signed_url(&tenant(), job.id, "out/final.txt", None)
        .await
        .unwrap();
    let token = url.url.rsplit('/').next().unwrap();
    let granted = engine.artifacts().verify_token(token).unwrap();
    assert_eq!(granted.key.name.as_str(), "out/final.txt");
    assert_eq!(granted.content_type, "text/plain");
    assert!(matches!(
        engine.signed_url(&tenant(), job.id, "nope.txt", None).await,
        Err(Error::ArtifactNotFound { .. })
    ));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_errors_retry_until_success() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let exec = from_fn(move |ctx: JobContext, _: Value| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            if ctx.attempt() < 3 {
                return Err(JobError::retry(format!("try {}", ctx.attempt())));
            }
            Ok(ctx.attempt())
        }
    });
    let builder = Engine::builder()
        .retry_policy(fast_retries())
        .executor("FLAKY", exec);
    let (engine, job) = run(builder, "FLAKY", json!({})).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.attempts, 3);
    assert_eq!(job.result, Some(json!(3)));
    assert_eq!(job.error, None);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let retries = kinds(&engine, job.id)
        .await
        .into_iter()
        .filter(|k| *k == EventKind::Retrying)
        .count();
    assert_eq!(retries, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_run_out_and_permanent_errors_fail_at_once() {
    let exec = from_fn(|ctx: JobContext, permanent: bool| async move {
        if permanent {
            Err::<(), _>(JobError::fail("bad request"))
        } else {
            Err(JobError::retry(format!("attempt {} failed", ctx.attempt())))
        }
    });
    let engine = Engine::builder()
        .executor_with(
            "FAIL",
            exec,
            ExecutorOptions::default().retry(fast_retries().max_attempts(2)),
        )
        .build()
        .unwrap();
    engine.start().unwrap();
    let t = tenant();
    let exhausted = engine
        .submit(&t, new_job("FAIL", json!(false)))
        .await
        .unwrap()
        .job;
    let permanent = engine
        .submit(&t, new_job("FAIL", json!(true)))
        .await
        .unwrap()
        .job;
    let wrong_input = engine
        .submit(&t, new_job("FAIL", json!({"not": "a bool"})))
        .await
        .unwrap()
        .job;
    let exhausted = engine
        .wait_until_terminal(&t, exhausted.id, WAIT)
        .await
        .unwrap();
    assert_eq!(
        exhausted.max_attempts, 2,
        "the type's policy sets max_attempts"
    );
    assert_eq!(
        (exhausted.status, exhausted.attempts),
        (JobStatus::Failed, 2)
    );
    assert_eq!(exhausted.error.as_deref(), Some("attempt 2 failed"));
    let permanent = engine
        .wait_until_terminal(&t, permanent.id, WAIT)
        .await
        .unwrap();
    assert_eq!(
        (permanent.status, permanent.attempts),
        (JobStatus::Failed, 1)
    );
    let wrong_input = engine
        .wait_until_terminal(&t, wrong_input.id, WAIT)
        .await
        .unwrap();
    assert_eq!(
        (wrong_input.status, wrong_input.attempts),
        (JobStatus::Failed, 1)
    );
    assert_eq!(
        wrong_input.error.as_deref(),
        Some("the input does not fit job type FAIL: invalid type: map, expected a boolean")
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_error_that_retrying_cannot_fix_fails_the_job_at_once() {
    let exec = from_fn(|ctx: JobContext, _: Value| async move {
        ctx.put_artifact(ArtifactSpec::new("../escape.txt", "text/plain"), "x")
            .await?;
        Ok::<_, JobError>(json!("unreachable"))
    });
    let builder = Engine::builder().executor_with(
        "ESCAPE",
        exec,
        ExecutorOptions::default().retry(fast_retries().max_attempts(3)),
    );
    let (engine, done) = run(builder, "ESCAPE", json!({})).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Failed, 1));
    let error = done.error.unwrap();
    assert!(error.contains("artifact name"), "{error}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_failed_attempt_and_the_worker_lives_on() {
    let exec = from_fn(|ctx: JobContext, _: Value| async move {
        if ctx.attempt() == 1 {
            panic!("kaboom");
        }
        Ok::<_, JobError>("recovered")
    });
    let builder = Engine::builder()
        .retry_policy(fast_retries())
        .executor("PANIC", exec)
        .concurrency(1);
    let (engine, job) = run(builder, "PANIC", json!({})).await;
    assert_eq!((job.status, job.attempts), (JobStatus::Completed, 2));
    let events = engine
        .events(&tenant(), job.id, EventParams::default())
        .await
        .unwrap();
    let retry = events
        .events
        .iter()
        .find(|e| e.kind == EventKind::Retrying)
        .unwrap();
    assert!(
        retry.message.contains("executor panicked: kaboom"),
        "{}",
        retry.message
    );
    let next = engine
        .submit(&tenant(), new_job("PANIC", json!({})))
        .await
        .unwrap()
        .job;
    let next = engine
        .wait_until_terminal(&tenant(), next.id, WAIT)
        .await
        .unwrap();
    assert_eq!(next.status, JobStatus::Completed, "the worker survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_time_out() {
    let exec = from_fn(|_ctx: JobContext, _: Value| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, JobError>(())
    });
    let options = ExecutorOptions::default()
        .timeout(Duration::from_millis(50))
        .retry(fast_retries().max_attempts(2));
    let builder = Engine::builder().executor_with("SLOW", exec, options);
    let (_engine, job) = run(builder, "SLOW", json!({})).await;
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 2));
    assert!(job.error.unwrap().starts_with("timed out after"));
}

fn waits_for_cancel() -> impl jobworks::Executor {
    from_fn(|ctx: JobContext, _: Value| async move {
        ctx.stage("waiting").await?;
        ctx.cancelled().await;
        Err::<(), _>(JobError::cancelled())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_signals_its_executor_at_once() {
    let engine = Engine::builder()
        .executor("WAIT", waits_for_cancel())
        // Far beyond the test: the signal must not wait for a heartbeat.
        .heartbeat_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    engine.start().unwrap();
    let t = tenant();
    let job = engine
        .submit(&t, new_job("WAIT", json!({})))
        .await
        .unwrap()
        .job;
    let mut seen = job.revision;
    loop {
        let now = engine
            .wait_for_change(&t, job.id, seen, WAIT)
            .await
            .unwrap();
        if now
            .latest_event
            .as_ref()
            .is_some_and(|e| e.kind == EventKind::Stage)
        {
            break;
        }
        seen = now.revision;
    }
    let asked = engine.cancel(&t, job.id).await.unwrap();
    assert!(asked.cancel_requested);
    let done = engine
        .wait_until_terminal(&t, job.id, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Cancelled);
    assert!(matches!(
        engine.cancel(&t, job.id).await,
        Err(Error::InvalidTransition {
            from: JobStatus::Cancelled,
            ..
        })
    ));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_queued_job_never_runs() {
    let ran = Arc::new(AtomicU32::new(0));
    let counter = ran.clone();
    let exec = from_fn(move |_ctx: JobContext, _: Value| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, JobError>(())
        }
    });
    let engine = Engine::builder().executor("NOOP", exec).build().unwrap();
    let t = tenant();
    let job = engine
        .submit(&t, new_job("NOOP", json!({})))
        .await
        .unwrap()
        .job;
    assert_eq!(
        engine.cancel(&t, job.id).await.unwrap().status,
        JobStatus::Cancelled
    );
    engine.start().unwrap();
    let other = engine
        .submit(&t, new_job("NOOP", json!({"other": 1})))
        .await
        .unwrap()
        .job;
    engine
        .wait_until_terminal(&t, other.id, WAIT)
        .await
        .unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_job_alive() {
    let exec = from_fn(|_ctx: JobContext, _: Value| async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok::<_, JobError>("done")
    });
    let builder = Engine::builder()
        .executor("LONG", exec)
        .lease_ttl(Duration::from_millis(150))
        .heartbeat_interval(Duration::from_millis(40))
        .reap_interval(Duration::from_millis(10));
    let (_engine, job) = run(builder, "LONG", json!({})).await;
    assert_eq!((job.status, job.attempts), (JobStatus::Completed, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_quick_jobs_and_hands_back_the_rest() {
    let exec = from_fn(|ctx: JobContext, ms: u64| async move {
        ctx.stage("working").await?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, JobError>(ms)
    });
    let engine = Engine::builder().executor("WORK", exec).build().unwrap();
    engine.start().unwrap();
    let t = tenant();
    let quick = engine
        .submit(&t, new_job("WORK", json!(100)))
        .await
        .unwrap()
        .job;
    let stuck = engine
        .submit(&t, new_job("WORK", json!(3_600_000)))
        .await
        .unwrap()
        .job;
    for id in [quick.id, stuck.id] {
        let mut job = engine.get(&t, id).await.unwrap();
        while job
            .latest_event
            .as_ref()
            .is_none_or(|e| e.kind != EventKind::Stage)
        {
            job = engine
                .wait_for_change(&t, id, job.revision, WAIT)
                .await
                .unwrap();
        }
    }
    engine.shutdown_within(Duration::from_millis(400)).await;
    let quick = engine.get(&t, quick.id).await.unwrap();
    assert_eq!(
        quick.status,
        JobStatus::Completed,
        "ran to the end within the grace period"
    );
    let stuck = engine.get(&t, stuck.id).await.unwrap();
    assert_eq!(stuck.status, JobStatus::Queued, "handed back");
    assert_eq!(stuck.attempts, 0, "the handed-back attempt is not charged");
    assert_eq!(stuck.latest_event.unwrap().kind, EventKind::Released);
    let late = engine
        .submit(&t, new_job("WORK", json!(1)))
        .await
        .unwrap()
        .job;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        engine.get(&t, late.id).await.unwrap().status,
        JobStatus::Queued,
        "no claims after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_validates_and_is_idempotent() {
    let exec = from_fn(|_ctx: JobContext, v: Value| async move { Ok::<_, JobError>(v) });
    let engine = Engine::builder()
        .executor("ECHO", exec)
        .executor(
            "OTHER",
            from_fn(|_ctx: JobContext, v: Value| async move { Ok::<_, JobError>(v) }),
        )
        .build()
        .unwrap();
    let t = tenant();
    match engine.submit(&t, new_job("NOPE", json!({}))).await {
        Err(Error::UnknownJobType { job_type, known }) => {
            assert_eq!(job_type, "NOPE");
            assert_eq!(known, ["ECHO", "OTHER"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        engine
            .submit(&t, new_job("ECHO", json!({})).max_attempts(30))
            .await,
        Err(Error::Invalid {
            field: "max_attempts",
            ..
        })
    ));
    let first = engine
        .submit(&t, new_job("ECHO", json!({"a": 1})).idempotency_key("k"))
        .await
        .unwrap();
    assert!(first.created);
    let again = engine
        .submit(&t, new_job("ECHO", json!({"a": 1})).idempotency_key("k"))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.job.id, first.job.id);
    assert!(matches!(
        engine
            .submit(&t, new_job("ECHO", json!({"a": 2})).idempotency_key("k"))
            .await,
        Err(Error::AlreadyExists { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_return_on_change_or_timeout() {
    let exec = from_fn(|ctx: JobContext, _: Value| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ctx.stage("one").await?;
        Ok::<_, JobError>(())
    });
    let engine = Engine::builder().executor("W", exec).build().unwrap();
    let t = tenant();
    let job = engine
        .submit(&t, new_job("W", json!({})))
        .await
        .unwrap()
        .job;
    let unchanged = engine
        .wait_for_change(&t, job.id, job.revision, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(
        unchanged.revision, job.revision,
        "nothing changed, the wait ran out"
    );
    let empty = engine
        .wait_for_events(
            &t,
            job.id,
            EventParams::default().after(1),
            Duration::from_millis(50),
        )
        .await
        .unwrap();
    assert!(empty.events.is_empty() && !empty.terminal);
    engine.start().unwrap();
    let started = std::time::Instant::now();
    let page = engine
        .wait_for_events(&t, job.id, EventParams::default().after(1), WAIT)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(page.events[0].kind, EventKind::Started);
    let done = engine.wait_until_terminal(&t, job.id, WAIT).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    let tail = engine
        .wait_for_events(&t, job.id, EventParams::default().after(10), WAIT)
        .await
        .unwrap();
    assert!(
        tail.terminal && tail.events.is_empty(),
        "a finished timeline does not wait"
    );
    assert!(matches!(
        engine
            .wait_until_terminal(&TenantId::new("globex").unwrap(), job.id, WAIT)
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(engine.start().is_err(), "workers already run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_jobs_and_their_artifacts() {
    let exec = from_fn(|ctx: JobContext, _: Value| async move {
        ctx.put_artifact(ArtifactSpec::new("a.txt", "text/plain"), "x")
            .await?;
        Ok::<_, JobError>(())
    });
    let builder = Engine::builder()
        .executor("A", exec)
        .retention(Duration::ZERO)
        .reap_interval(Duration::from_millis(20));
    let (engine, job) = run(builder, "A", json!({})).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.artifacts.len(), 1, "the artifact was recorded");
    // The record goes first, then its bytes; wait for both.
    let mut gone = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let record_gone = matches!(
            engine.get(&tenant(), job.id).await,
            Err(Error::NotFound { .. })
        );
        let bytes_gone = engine
            .artifacts()
            .list(&tenant(), job.id)
            .await
            .unwrap()
            .is_empty();
        if record_gone && bytes_gone {
            gone = true;
            break;
        }
    }
    assert!(gone, "the job or its artifacts were not purged");
}

/// Retention keeps up with a busy store: one round purges batch after batch until a
/// batch comes back short, rather than one batch per round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_every_due_job_in_one_round() {
    let store = Arc::new(CountingStore::default());
    let round = Duration::from_secs(2);
    let engine = Engine::builder()
        .store(store.clone())
        .executor(
            "A",
            from_fn(|_: JobContext, _: Value| async { Ok::<_, JobError>(()) }),
        )
        .retention(Duration::ZERO)
        .reap_interval(round)
        .build()
        .unwrap();
    let ty = JobType::new("A").unwrap();
    let jobs: Vec<NewJob> = (0..2_500)
        .map(|_| NewJob::new(ty.clone(), json!({})))
        .collect();
    engine.submit_many(&tenant(), jobs).await.unwrap();
    engine.start().unwrap();
    // The drain takes a fraction of a round; the first round then purges.
    engine.wait_idle().await;
    let mut left = u64::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stats = engine.stats().await.unwrap();
        left = stats.completed;
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0, "every completed job was purged");
    let purges = store.purges.lock().unwrap().clone();
    let removing: Vec<_> = purges.iter().filter(|p| p.1 > 0).collect();
    assert_eq!(
        removing.iter().map(|p| p.1).sum::<usize>(),
        2_500,
        "{purges:?}"
    );
    let spread = removing.last().unwrap().0 - removing.first().unwrap().0;
    assert!(
        removing.len() >= 3 && spread < round / 2,
        "batches of one round: {purges:?}"
    );
    engine.shutdown().await;
}

/// A memory store that counts claims and keeps when each purge ran and what it removed.
#[derive(Debug, Default)]
struct CountingStore {
    inner: jobworks::MemoryStore,
    claims: std::sync::atomic::AtomicUsize,
    purges: std::sync::Mutex<Vec<(std::time::Instant, usize)>>,
}

#[async_trait::async_trait]
impl jobworks::JobStore for CountingStore {
    fn backend(&self) -> &'static str {
        "counting"
    }
    fn notifier(&self) -> &jobworks::Notifier {
        self.inner.notifier()
    }
    fn clock(&self) -> &jobworks::Clock {
        self.inner.clock()
    }
    async fn insert(
        &self,
        records: Vec<jobworks::NewRecord>,
    ) -> jobworks::Result<Vec<jobworks::Taken>> {
        self.inner.insert(records).await
    }
    async fn load(
        &self,
        tenant: Option<&TenantId>,
        ids: &[jobworks::JobId],
    ) -> jobworks::Result<Vec<jobworks::Stored>> {
        self.inner.load(tenant, ids).await
    }
    async fn load_expired(&self, limit: usize) -> jobworks::Result<Vec<jobworks::Stored>> {
        self.inner.load_expired(limit).await
    }
    async fn commit(
        &self,
        writes: Vec<jobworks::Write>,
    ) -> jobworks::Result<Vec<jobworks::Committed>> {
        self.inner.commit(writes).await
    }
    async fn commit_all(
        &self,
        writes: Vec<jobworks::Write>,
    ) -> jobworks::Result<jobworks::Committed> {
        self.inner.commit_all(writes).await
    }
    async fn get(&self, t: &TenantId, id: jobworks::JobId) -> jobworks::Result<jobworks::Job> {
        self.inner.get(t, id).await
    }
    async fn list(
        &self,
        t: Option<&TenantId>,
        p: jobworks::ListParams,
    ) -> jobworks::Result<jobworks::JobPage> {
        self.inner.list(t, p).await
    }
    async fn events(
        &self,
        t: &TenantId,
        id: jobworks::JobId,
        p: EventParams,
    ) -> jobworks::Result<jobworks::EventPage> {
        self.inner.events(t, id, p).await
    }
    async fn claim(&self, p: jobworks::ClaimParams) -> jobworks::Result<jobworks::Claimed> {
        self.claims.fetch_add(1, Ordering::Relaxed);
        self.inner.claim(p).await
    }
    async fn purge(
        &self,
        p: jobworks::PurgeParams,
    ) -> jobworks::Result<Vec<(TenantId, jobworks::JobId)>> {
        let purged = self.inner.purge(p).await?;
        let at = std::time::Instant::now();
        self.purges.lock().unwrap().push((at, purged.len()));
        Ok(purged)
    }
    async fn remove(
        &self,
        tenant: &jobworks::TenantId,
        id: jobworks::JobId,
        revision: u64,
    ) -> jobworks::Result<bool> {
        self.inner.remove(tenant, id, revision).await
    }
    async fn queue_stats(
        &self,
        t: Option<&TenantId>,
    ) -> jobworks::Result<std::collections::BTreeMap<jobworks::QueueName, jobworks::QueueStats>>
    {
        self.inner.queue_stats(t).await
    }
    async fn queues(&self) -> jobworks::Result<Vec<jobworks::Queue>> {
        self.inner.queues().await
    }
    async fn update_queue(
        &self,
        name: &jobworks::QueueName,
        patch: &jobworks::QueuePatch,
    ) -> jobworks::Result<jobworks::QueueSettings> {
        self.inner.update_queue(name, patch).await
    }
}

/// An idle engine waits for news: it does not claim again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_engine_does_not_spin() {
    let store = Arc::new(CountingStore::default());
    let engine = Engine::builder()
        .store(store.clone())
        .executor(
            "ECHO",
            from_fn(|_c: JobContext, v: Value| async move { Ok::<_, JobError>(v) }),
        )
        .build()
        .unwrap();
    engine.start().unwrap();
    let job = engine
        .submit(&tenant(), new_job("ECHO", json!(1)))
        .await
        .unwrap()
        .job;
    engine
        .wait_until_terminal(&tenant(), job.id, WAIT)
        .await
        .unwrap();
    engine.wait_idle().await;
    let before = store.claims.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_claims = store.claims.load(Ordering::Relaxed) - before;
    assert!(
        idle_claims <= 2,
        "{idle_claims} claims in 300 ms of idleness"
    );
    engine.shutdown().await;
}
