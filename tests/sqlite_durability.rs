//! The SQLite store keeps its promises across restarts and between processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobworks::{
    ArtifactSpec, Engine, EventKind, EventParams, JobContext, JobError, JobStatus, JobStore,
    JobType, NewJob, SqliteStore, TenantId, from_fn,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn job(input: Value) -> NewJob {
    NewJob::new(JobType::new("WORK").unwrap(), input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_timelines_and_artifact_records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let exec = from_fn(|ctx: JobContext, _: Value| async move {
        ctx.stage("writing").await?;
        ctx.put_artifact(
            ArtifactSpec::new("out.txt", "text/plain").kind("text"),
            "hello",
        )
        .await?;
        Ok::<_, JobError>(json!({"ok": true}))
    });
    let (id, before_events, before) = {
        let engine = Engine::builder()
            .store(SqliteStore::open(&path).await.unwrap())
            .executor("WORK", exec)
            .build()
            .unwrap();
        engine.start().unwrap();
        let id = engine
            .submit(&tenant(), job(json!({"n": 1})))
            .await
            .unwrap()
            .job
            .id;
        let done = engine
            .wait_until_terminal(&tenant(), id, WAIT)
            .await
            .unwrap();
        assert_eq!(done.status, JobStatus::Completed);
        let events = engine
            .events(&tenant(), id, EventParams::default().include_internal())
            .await
            .unwrap();
        engine.shutdown().await;
        (id, events, done)
    };
    let reopened = SqliteStore::open(&path).await.unwrap();
    let after = reopened.get(&tenant(), id).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(after.artifacts[0].name, "out.txt");
    assert_eq!(after.artifacts[0].size_bytes, 5);
    let events = reopened
        .events(&tenant(), id, EventParams::default().include_internal())
        .await
        .unwrap();
    assert_eq!(events, before_events);
    assert_eq!(reopened.schema_version().await.unwrap(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_running_when_the_process_died_runs_again_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let runs = Arc::new(Mutex::new(Vec::new()));
    let engine_on = |store: SqliteStore, runs: Arc<Mutex<Vec<u32>>>| {
        Engine::builder()
            .store(store)
            .executor(
                "WORK",
                from_fn(move |ctx: JobContext, _: Value| {
                    let runs = runs.clone();
                    async move {
                        runs.lock().unwrap().push(ctx.attempt());
                        if ctx.attempt() == 1 {
                            // The first process dies while this attempt runs.
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, JobError>(ctx.attempt())
                    }
                }),
            )
            .lease_ttl(Duration::from_millis(300))
            .reap_interval(Duration::from_millis(50))
            .build()
            .unwrap()
    };
    let first = engine_on(SqliteStore::open(&path).await.unwrap(), runs.clone());
    first.start().unwrap();
    let id = first
        .submit(&tenant(), job(json!({})))
        .await
        .unwrap()
        .job
        .id;
    while runs.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.abort();
    let store = first.store().clone();
    drop(first);
    assert_eq!(
        store.get(&tenant(), id).await.unwrap().status,
        JobStatus::Running
    );
    drop(store);

    let second = engine_on(SqliteStore::open(&path).await.unwrap(), runs.clone());
    second.start().unwrap();
    let done = second
        .wait_until_terminal(&tenant(), id, WAIT)
        .await
        .unwrap();
    assert_eq!((done.status, done.attempts), (JobStatus::Completed, 2));
    assert_eq!(done.result, Some(json!(2)));
    assert_eq!(*runs.lock().unwrap(), [1, 2]);
    let kinds: Vec<_> = second
        .events(&tenant(), id, EventParams::default().include_internal())
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Queued,
            EventKind::Started,
            EventKind::Retrying,
            EventKind::Started,
            EventKind::Succeeded
        ]
    );
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_file_never_run_a_job_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let executions: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let mut engines = Vec::new();
    for _ in 0..2 {
        let executions = executions.clone();
        let engine = Engine::builder()
            .store(SqliteStore::open(&path).await.unwrap())
            .executor(
                "WORK",
                from_fn(move |_ctx: JobContext, n: u64| {
                    let executions = executions.clone();
                    async move {
                        *executions.lock().unwrap().entry(n).or_default() += 1;
                        Ok::<_, JobError>(n)
                    }
                }),
            )
            .concurrency(8)
            .poll_interval(Duration::from_millis(20))
            .build()
            .unwrap();
        engine.start().unwrap();
        engines.push(engine);
    }
    let total = 2000u64;
    for chunk in (0..total).collect::<Vec<_>>().chunks(250) {
        let jobs = chunk.iter().map(|&n| job(json!(n))).collect();
        engines[(chunk[0] / 250 % 2) as usize]
            .submit_many(&tenant(), jobs)
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = engines[0].stats().await.unwrap();
        if stats.completed == total {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not drained: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for engine in &engines {
        engine.shutdown().await;
    }
    let executions = executions.lock().unwrap();
    assert_eq!(executions.len() as u64, total, "every job ran");
    assert!(executions.values().all(|&n| n == 1), "a job ran twice");
}
