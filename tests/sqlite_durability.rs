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
    assert_eq!(reopened.schema_version().await.unwrap(), 11);
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

/// A database that an older jobworks left at the previous schema version, without
/// checksums, holding a queued job: every migration of `migrations/sqlite` but the last,
/// and the job's row as version 1's columns have it. Answers the latest version.
fn previous_version_database(path: &std::path::Path, id: jobworks::JobId) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE jobworks_schema (version INTEGER PRIMARY KEY NOT NULL,
            name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .unwrap();
    let mut scripts: Vec<_> = std::fs::read_dir("migrations/sqlite")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    scripts.sort();
    for (i, script) in scripts.iter().take(scripts.len() - 1).enumerate() {
        conn.execute_batch(&std::fs::read_to_string(script).unwrap())
            .unwrap();
        conn.execute(
            "INSERT INTO jobworks_schema VALUES (?1, 'old', 0)",
            [i as i64 + 1],
        )
        .unwrap();
    }
    let now = chrono::Utc::now().timestamp_micros();
    conn.execute(
        "INSERT INTO jobworks_jobs (id, tenant, job_type, input, status, attempts,
            max_attempts, priority, run_at, created_at, updated_at, revision, event_seq)
         VALUES (?1, 'acme', 'WORK', '{\"n\":9}', 'queued', 0, 3, 0, ?2, ?2, ?2, 1, 0)",
        rusqlite::params![id.to_u128().to_be_bytes().to_vec(), now],
    )
    .unwrap();
    scripts.len() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_version_upgrades_with_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let id = jobworks::JobId::new();
    let latest = previous_version_database(&path, id);

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), latest);
    let job = store.get(&tenant(), id).await.unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.input, json!({"n": 9}));
    assert_eq!(job.queue.as_str(), "default");
    assert!(job.trace.is_none());
    drop(store);

    // The upgrade recorded a checksum for every migration, the old ones included.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let unrecorded: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM jobworks_schema WHERE checksum IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unrecorded, 0);
    drop(conn);

    // And the job runs on the new version.
    let engine = Engine::builder()
        .store(SqliteStore::open(&path).await.unwrap())
        .executor(
            "WORK",
            from_fn(|_c: JobContext, v: Value| async move { Ok::<_, JobError>(v) }),
        )
        .build()
        .unwrap();
    engine.start().unwrap();
    let done = engine
        .wait_until_terminal(&tenant(), id, WAIT)
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.result, Some(json!({"n": 9})));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_unknown_migration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    SqliteStore::open(&path).await.unwrap();
    let tamper = |sql: &str| {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(sql)
            .unwrap()
    };
    let refusal = |path| async move {
        let e = SqliteStore::open(path).await.unwrap_err();
        format!("{e:?}")
    };

    tamper("UPDATE jobworks_schema SET checksum = 'edited' WHERE version = 3");
    let e = refusal(path.clone()).await;
    assert!(
        e.contains("migration 3") && e.contains("forward-only"),
        "{e}"
    );

    tamper("UPDATE jobworks_schema SET checksum = NULL WHERE version = 3");
    SqliteStore::open(&path).await.expect("recorded again");

    tamper("INSERT INTO jobworks_schema VALUES (99, 'future', 0, 'x')");
    let e = refusal(path.clone()).await;
    assert!(
        e.contains("schema version 99, newer than this build"),
        "{e}"
    );
}
