//! PostgreSQL at scale: the store keeps its tables free of dead rows, heartbeats stay
//! HOT, and many engine processes drain one queue. Ignored unless
//! `JOBWORKS_TEST_POSTGRES_URL` is set when they are built; `.ci/run` always sets it.

use std::sync::Arc;
use std::time::Duration;

use jobworks::{Engine, JobContext, JobError, JobType, NewJob, PostgresStore, TenantId, from_fn};
use serde_json::{Value, json};

mod pg {
    include!("support/postgres.rs");
}

mod example {
    include!("support/example.rs");
}

/// An engine of `NOOP` jobs that purges finished jobs at once.
fn noop_engine(store: Arc<PostgresStore>) -> Engine {
    Engine::builder()
        .store(store)
        .retention(Duration::ZERO)
        .reap_interval(Duration::from_millis(100))
        .executor(
            "NOOP",
            from_fn(|_: JobContext, _: Value| async { Ok::<_, JobError>(()) }),
        )
        .build()
        .unwrap()
}

/// `(vacuums, dead rows)` of a table of the store's schema, as the statistics say.
async fn vacuum_stats(store: &PostgresStore, table: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables
         WHERE schemaname = current_schema() AND relname = $1",
    )
    .bind(table)
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// Dead rows do not pile up when autovacuum does not run: the store vacuums its job and
/// event tables itself once their dead rows pass its threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_vacuums_its_tables_when_dead_rows_pile_up() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store = Arc::new(
        schemas
            .fresh_with(&url, |b| b.vacuum_threshold(Some(200)))
            .await,
    );
    // Whatever the server's settings, only the store vacuums these tables here.
    sqlx::raw_sql(
        "ALTER TABLE jobworks_jobs SET (autovacuum_enabled = false);
         ALTER TABLE jobworks_events SET (autovacuum_enabled = false)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let engine = noop_engine(store.clone());
    let ty = JobType::new("NOOP").unwrap();
    let tenant = TenantId::new("acme").unwrap();
    let jobs: Vec<NewJob> = (0..500)
        .map(|_| NewJob::new(ty.clone(), json!({})))
        .collect();
    engine.submit_many(&tenant, jobs).await.unwrap();
    // Each job's claim and finish leave a dead row version, its purge a third.
    engine.start().unwrap();
    // Statistics reach the server within seconds of a session going idle.
    let mut seen = (0, 0);
    for _ in 0..300 {
        seen = (
            vacuum_stats(&store, "jobworks_jobs").await.0,
            vacuum_stats(&store, "jobworks_events").await.0,
        );
        if seen.0 > 0 && seen.1 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.0 > 0 && seen.1 > 0, "vacuums (jobs, events): {seen:?}");
    let (_, dead) = vacuum_stats(&store, "jobworks_jobs").await;
    assert!(dead < 200, "{dead} dead rows left");
    engine.shutdown().await;
    schemas.drop_all(&url).await;
}

/// `(updates, HOT updates)` of the job table, once the statistics count at least `updates`.
async fn updates_of_jobs(store: &PostgresStore, at_least: i64) -> (i64, i64) {
    let mut seen = (0, 0);
    for _ in 0..300 {
        seen = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
             WHERE schemaname = current_schema() AND relname = 'jobworks_jobs'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if seen.0 >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

/// A heartbeat changes no indexed column, so it is a HOT update: no new index entries,
/// and the row's old version is reclaimed without a vacuum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_heartbeats_are_hot_updates() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store = Arc::new(schemas.fresh(&url).await);
    let engine = Engine::builder()
        .store(store.clone())
        .executor(
            "SLOW",
            from_fn(|_: JobContext, _: Value| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok::<_, JobError>(())
            }),
        )
        .heartbeat_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    engine.start().unwrap();
    let tenant = TenantId::new("acme").unwrap();
    let job = NewJob::new(JobType::new("SLOW").unwrap(), json!({}));
    let id = engine.submit(&tenant, job).await.unwrap().job.id;
    engine
        .wait_until_terminal(&tenant, id, Duration::from_secs(10))
        .await
        .unwrap();
    // The claim and the finish change the status (indexed); every other update is a
    // heartbeat (about 30 in the job's 1.5 s; 12 are enough to tell).
    let (updates, hot) = updates_of_jobs(&store, 12).await;
    assert!(
        updates >= 12,
        "{updates} updates: too few heartbeats to tell"
    );
    assert!(hot >= updates - 2, "{hot} of {updates} updates were HOT");
    engine.shutdown().await;
    schemas.drop_all(&url).await;
}

/// A child process, killed if the test ends before it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Four engine processes drain 100,000 jobs from one database: every job is claimed,
/// started and completed exactly once, none is lost, and each process keeps to its
/// documented number of connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn four_engine_processes_drain_100k_jobs_each_once() {
    const JOBS: i64 = 100_000;
    const PROCESSES: i64 = 4;
    const CONNECTIONS: i64 = 3;
    let url = pg::url();
    let schema = format!("jwt_workers_{}", std::process::id());
    let child = std::process::Command::new(example::binary("postgres_workers", "postgres"))
        .args(["--url", &url, "--schema", &schema])
        .args(["--processes", &PROCESSES.to_string()])
        .args(["--jobs", &JOBS.to_string()])
        .args(["--connections", &CONNECTIONS.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the example starts");
    let mut child = KillOnDrop(child);
    // Sample the connections of the schema's stores while the processes run.
    let watcher = PostgresStore::builder(&url)
        .schema("jwt_watcher")
        .max_connections(1)
        .vacuum_threshold(None)
        .connect()
        .await
        .unwrap();
    let mut most = 0i64;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(format!("jobworks:{schema}"))
                .fetch_one(watcher.pool())
                .await
                .unwrap();
        most = most.max(n);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}");
    // The coordinator's store and each worker's: a pool of CONNECTIONS + 1, the listener's
    // connection among them, and while a store connects, the short-lived connection
    // that checks the server answers (the workers connect at the same time).
    assert!(
        most > CONNECTIONS && most <= (PROCESSES + 1) * (CONNECTIONS + 2),
        "{most} connections at most"
    );
    // The database, read here rather than through the example's own check.
    let store = PostgresStore::builder(&url)
        .schema(&schema)
        .connect()
        .await
        .unwrap();
    let (jobs, completed, once): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'completed'),
             count(*) FILTER (WHERE attempts = 1) FROM jobworks_jobs",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((jobs, completed, once), (JOBS, JOBS, JOBS), "{out}");
    let transitions: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT kind, count(*), count(DISTINCT job_id) FROM jobworks_events
         WHERE kind IN ('started', 'succeeded') GROUP BY kind ORDER BY kind",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        transitions,
        [
            ("started".to_owned(), JOBS, JOBS),
            ("succeeded".to_owned(), JOBS, JOBS)
        ]
    );
    // Each worker says how many it ran: together, each job once, and all took part.
    let ran: Vec<i64> = out
        .lines()
        .find_map(|l| l.split_once("per process [")?.1.split_once(']'))
        .map(|(list, _)| list.split(", ").map(|n| n.parse().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(ran.len(), PROCESSES as usize, "{out}");
    assert_eq!(ran.iter().sum::<i64>(), JOBS, "{out}");
    store.drop_schema().await.unwrap();
    watcher.drop_schema().await.unwrap();
}

/// Claims and finishes announce their changes after they commit, many in one
/// notification: a watcher in another process still hears a job start, fail, start again
/// and end, without polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn another_process_hears_claims_finishes_and_retries() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let first = Arc::new(schemas.fresh(&url).await);
    let second = PostgresStore::builder(&url)
        .schema(first.schema())
        .connect()
        .await
        .unwrap();
    let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    // The first attempt fails and is retried at once.
    let engine = |store: Arc<PostgresStore>| {
        let seen = attempts.clone();
        let flaky = from_fn(move |_: JobContext, _: Value| {
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(JobError::retry("first attempt fails"))
                } else {
                    Ok(json!("done"))
                }
            }
        });
        Engine::builder()
            .store(store)
            .executor("FLAKY", flaky)
            .retry_policy(
                jobworks::RetryPolicy::default()
                    .base(Duration::from_millis(1))
                    .cap(Duration::from_millis(1)),
            )
            .poll_interval(Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    let runner = engine(first.clone());
    let watcher = engine(Arc::new(second));
    let tenant = TenantId::new("acme").unwrap();
    let job = NewJob::new(JobType::new("FLAKY").unwrap(), json!({}));
    let id = watcher.submit(&tenant, job).await.unwrap().job.id;
    runner.start().unwrap();
    // The watcher re-reads only when told the job changed (and once at its deadline).
    let asked = std::time::Instant::now();
    let done = watcher
        .wait_until_terminal(&tenant, id, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "heard only at the deadline"
    );
    assert_eq!(done.status, jobworks::JobStatus::Completed);
    assert_eq!(done.attempts, 2);
    runner.shutdown().await;
    schemas.drop_all(&url).await;
}
