//! The PostgreSQL store against the shared conformance suite, the fault test and the
//! wake-up test, each case in a schema of its own. Ignored unless
//! `JOBWORKS_TEST_POSTGRES_URL` is set when they are built; `.ci/run` always sets it, and
//! in CI a build without it fails.

use std::sync::Arc;

use jobworks::PostgresStore;
use jobworks::testing::{fault_test, run_job_store_suite, wake_up_test};

mod pg {
    include!("support/postgres.rs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_store_passes_the_job_store_suite() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    run_job_store_suite(|| schemas.fresh(&url)).await;
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_store_survives_the_fault_test() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    // Three engines share this one store here, so give it the connections of three.
    let store = schemas.fresh_with(&url, |b| b.max_connections(30)).await;
    fault_test(Arc::new(store), 10_000).await;
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_workflows_survive_the_fault_test() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store = schemas.fresh_with(&url, |b| b.max_connections(30)).await;
    jobworks::testing::workflow_fault_test(Arc::new(store), 1000).await;
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_store_with_asynchronous_finishes_passes_the_suites() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let fresh = || schemas.fresh_with(&url, |b| b.durable_finishes(false));
    run_job_store_suite(fresh).await;
    let store = schemas
        .fresh_with(&url, |b| b.durable_finishes(false).max_connections(30))
        .await;
    fault_test(Arc::new(store), 2_000).await;
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_store_loses_no_wake_up() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let latencies = wake_up_test(Arc::new(schemas.fresh(&url).await), 1000).await;
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "postgres submit-to-start: p50 {:?}, p99 {p99:?}",
        latencies[latencies.len() / 2]
    );
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_and_sqlite_reach_the_same_schema_version() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store: PostgresStore = schemas.fresh(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = jobworks::SqliteStore::open(dir.path().join("v.db"))
        .await
        .unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        sqlite.schema_version().await.unwrap()
    );
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_store_passes_the_document_suite() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    jobworks::testing::run_document_store_suite(|| schemas.fresh(&url)).await;
    schemas.drop_all(&url).await;
}

mod foreign {
    include!("support/foreign.rs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_store_never_reads_another_tenants_row() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store = schemas.fresh(&url).await;
    let pool = store.pool().clone();
    foreign::foreign_rows_are_never_read(&store, |id| async move {
        let done = sqlx::query("UPDATE jobworks_jobs SET status = 'bogus' WHERE id = $1")
            .bind(uuid::Uuid::from_u128(id.to_u128()))
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    })
    .await;
    schemas.drop_all(&url).await;
}

/// In CI (`CI` set) the PostgreSQL tests must run, never show as ignored.
#[test]
fn postgres_tests_are_not_ignored_in_ci() {
    let built_with_a_server = cfg!(jobworks_postgres_tests);
    if std::env::var_os("CI").is_some() && !built_with_a_server {
        panic!("CI must set JOBWORKS_TEST_POSTGRES_URL: the PostgreSQL tests would be ignored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_store_agrees_with_the_reference() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store = |clock| schemas.fresh_with(&url, |b| b.clock(clock));
    jobworks::testing::differential_test(store, 200, 30, 1).await;
    schemas.drop_all(&url).await;
}

/// The store's clock is the database server's, whatever this process's says: it is
/// corrected on connect, and a test's offset moves it from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_store_keeps_the_servers_time() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let clock = jobworks::Clock::default();
    let store = schemas.fresh_with(&url, |b| b.clock(clock.clone())).await;
    let server = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>("SELECT clock_timestamp()")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let before = server().await;
    let ours = jobworks::JobStore::clock(&store).now();
    let after = server().await;
    assert!(
        before <= ours + chrono::Duration::milliseconds(50),
        "{before} vs {ours}"
    );
    assert!(
        ours <= after + chrono::Duration::milliseconds(50),
        "{ours} vs {after}"
    );
    clock.advance(std::time::Duration::from_secs(600));
    let moved = jobworks::JobStore::clock(&store).now() - server().await;
    assert!(moved > chrono::Duration::seconds(599), "{moved}");
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_max_running_holds_across_engines() {
    let (url, schemas, first, second) = two_stores().await;
    jobworks::testing::max_running_holds_across_engines(first, second).await;
    schemas.drop_all(&url).await;
}

/// Two stores on one fresh schema, each with its own pool and listener, as two processes
/// would have.
async fn two_stores() -> (
    String,
    pg::Schemas,
    Arc<dyn jobworks::JobStore>,
    Arc<dyn jobworks::JobStore>,
) {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let first = schemas.fresh(&url).await;
    let second = PostgresStore::builder(&url)
        .schema(first.schema())
        .connect()
        .await
        .expect("connect");
    (url, schemas, Arc::new(first), Arc::new(second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_max_running_per_key_holds_across_engines() {
    let (url, schemas, first, second) = two_stores().await;
    jobworks::testing::max_running_per_key_holds_across_engines(first, second).await;
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_rate_limit_holds_across_engines() {
    let (url, schemas, first, second) = two_stores().await;
    jobworks::testing::rate_limit_holds_across_engines(first, second).await;
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_store_passes_the_schedule_suite() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    jobworks::testing::run_schedule_suite(|| schemas.fresh(&url)).await;
    schemas.drop_all(&url).await;
}

/// An engine running `WORK` jobs, which answer their input, on `store` (the memory store
/// when `None`).
fn echo_engine(store: Option<PostgresStore>) -> jobworks::Engine {
    use jobworks::{JobContext, JobError, from_fn};
    let echo = from_fn(|_c: JobContext, v: serde_json::Value| async move { Ok::<_, JobError>(v) });
    let builder = jobworks::Engine::builder().executor("WORK", echo);
    match store {
        Some(store) => builder.store(store),
        None => builder,
    }
    .build()
    .unwrap()
}

/// A schema that an older jobworks left at the previous version, without checksums and
/// holding a queued job, migrates to the latest with the job intact, and the job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_upgrades_from_the_previous_version_with_its_jobs() {
    use jobworks::{JobStatus, JobStore, TenantId};
    use serde_json::json;

    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store = schemas.unmigrated(&url).await;
    let mut conn = store.pool().acquire().await.unwrap();
    let mut scripts: Vec<_> = std::fs::read_dir("migrations/postgres")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    scripts.sort();
    sqlx::raw_sql(
        "CREATE TABLE jobworks_schema (version bigint PRIMARY KEY, name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    for (i, script) in scripts.iter().take(scripts.len() - 1).enumerate() {
        let text = std::fs::read_to_string(script).unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(text))
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO jobworks_schema (version, name) VALUES ($1, 'old')")
            .bind(i as i64 + 1)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let id = jobworks::JobId::new();
    sqlx::query(
        "INSERT INTO jobworks_jobs (id, tenant, job_type, input, status, attempts,
            max_attempts, priority, run_at, created_at, updated_at, revision, event_seq)
         VALUES ($1, 'acme', 'WORK', '{\"n\": 9}', 'queued', 0, 3, 0, now(), now(), now(), 1, 0)",
    )
    .bind(uuid::Uuid::from_u128(id.to_u128()))
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);

    store.migrate().await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), scripts.len() as i64);
    let unrecorded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobworks_schema WHERE checksum IS NULL")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(unrecorded, 0, "every migration's checksum is recorded");
    let tenant = TenantId::new("acme").unwrap();
    let job = store.get(&tenant, id).await.unwrap();
    assert_eq!(
        (job.status, job.input.clone()),
        (JobStatus::Queued, json!({"n": 9}))
    );
    assert!(job.trace.is_none());

    let engine = echo_engine(Some(store));
    engine.start().unwrap();
    let wait = std::time::Duration::from_secs(20);
    let done = engine.wait_until_terminal(&tenant, id, wait).await.unwrap();
    assert_eq!(done.result, Some(json!({"n": 9})));
    engine.shutdown().await;
    schemas.drop_all(&url).await;
}

/// An applied migration that this build changed, or a version it does not know, is
/// refused; one applied without a checksum gets it recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_refuses_a_changed_or_unknown_migration() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store = schemas.fresh(&url).await;
    let tamper = |sql: &'static str| {
        let pool = store.pool().clone();
        async move { sqlx::raw_sql(sql).execute(&pool).await.unwrap() }
    };
    tamper("UPDATE jobworks_schema SET checksum = 'edited' WHERE version = 3").await;
    let e = format!("{:?}", store.migrate().await.unwrap_err());
    assert!(
        e.contains("migration 3") && e.contains("forward-only"),
        "{e}"
    );
    tamper("UPDATE jobworks_schema SET checksum = NULL WHERE version = 3").await;
    store.migrate().await.expect("recorded again");
    tamper("INSERT INTO jobworks_schema (version, name, checksum) VALUES (99, 'future', 'x')")
        .await;
    let e = format!("{:?}", store.migrate().await.unwrap_err());
    assert!(
        e.contains("schema version 99, newer than this build"),
        "{e}"
    );
    schemas.drop_all(&url).await;
}

mod transactional {
    use std::time::Duration;

    use jobworks::{Engine, Error, JobStatus, JobType, NewJob, TenantId};
    use serde_json::json;
    use sqlx::postgres::PgListener;

    use super::pg;

    const WAIT: Duration = Duration::from_secs(20);

    fn tenant() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    fn job(n: u32) -> NewJob {
        NewJob::new(JobType::new("WORK").unwrap(), json!({ "n": n }))
    }

    async fn engine(schemas: &pg::Schemas, url: &str) -> (Engine, String) {
        let store = schemas.fresh(url).await;
        let schema = store.schema().to_owned();
        (super::echo_engine(Some(store)), schema)
    }

    /// The host's own pool, on the default `search_path`.
    async fn host(url: &str) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .unwrap()
    }

    /// A listener for the wake-ups of the store on `schema`.
    async fn wake_ups(url: &str, schema: &str) -> PgListener {
        let mut listener = PgListener::connect(url).await.unwrap();
        listener
            .listen(&format!("jobworks_{schema}"))
            .await
            .unwrap();
        listener
    }

    async fn search_path(conn: &mut sqlx::PgConnection) -> String {
        sqlx::query_scalar("SELECT current_setting('search_path')")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    /// Committed: the job exists from the commit on, its wake-up arrives then, and it
    /// runs. The host's `search_path` is as it was.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(jobworks_postgres_tests),
        ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
    )]
    async fn a_job_submitted_in_a_committed_transaction_runs() {
        let url = pg::url();
        let schemas = pg::Schemas::default();
        let (engine, schema) = engine(&schemas, &url).await;
        let host = host(&url).await;
        let mut listener = wake_ups(&url, &schema).await;

        let mut tx = host.begin().await.unwrap();
        let before = search_path(&mut tx).await;
        let submitted = engine.submit_in(&mut tx, &tenant(), job(1)).await.unwrap();
        assert!(submitted.created);
        assert_eq!(search_path(&mut tx).await, before);
        let id = submitted.job.id;
        assert!(
            matches!(engine.get(&tenant(), id).await, Err(Error::NotFound { .. })),
            "not visible before the commit"
        );
        let early = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
        assert!(early.is_err(), "no wake-up before the commit: {early:?}");
        tx.commit().await.unwrap();
        let woke = tokio::time::timeout(WAIT, listener.recv()).await;
        assert!(woke.is_ok(), "the wake-up arrives at the commit");

        engine.start().unwrap();
        let done = engine
            .wait_until_terminal(&tenant(), id, WAIT)
            .await
            .unwrap();
        assert_eq!(done.status, JobStatus::Completed);
        assert_eq!(done.result, Some(json!({"n": 1})));
        engine.shutdown().await;
        schemas.drop_all(&url).await;
    }

    /// Rolled back: no job, no event, no wake-up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(jobworks_postgres_tests),
        ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
    )]
    async fn a_job_submitted_in_a_rolled_back_transaction_never_was() {
        let url = pg::url();
        let schemas = pg::Schemas::default();
        let (engine, schema) = engine(&schemas, &url).await;
        let host = host(&url).await;
        let mut listener = wake_ups(&url, &schema).await;

        let mut tx = host.begin().await.unwrap();
        let jobs = vec![job(1), job(2)];
        let submitted = engine
            .submit_many_in(&mut tx, &tenant(), jobs)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        for s in &submitted {
            let got = engine.get(&tenant(), s.job.id).await;
            assert!(matches!(got, Err(Error::NotFound { .. })), "{got:?}");
            let events = engine.events(&tenant(), s.job.id, Default::default()).await;
            assert!(events.is_err() || events.unwrap().events.is_empty());
        }
        let woke = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
        assert!(woke.is_err(), "no wake-up: {woke:?}");
        let page = engine.list(&tenant(), Default::default()).await.unwrap();
        assert!(page.jobs.is_empty());
        schemas.drop_all(&url).await;
    }

    /// A key used twice in one transaction is a replay; a key reused with other input
    /// fails that submit alone and leaves the transaction usable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(jobworks_postgres_tests),
        ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
    )]
    async fn idempotency_keys_hold_inside_the_transaction() {
        let url = pg::url();
        let schemas = pg::Schemas::default();
        let (engine, _) = engine(&schemas, &url).await;
        let host = host(&url).await;

        let mut tx = host.begin().await.unwrap();
        let first = engine
            .submit_in(&mut tx, &tenant(), job(1).idempotency_key("order-7"))
            .await
            .unwrap();
        let again = engine
            .submit_in(&mut tx, &tenant(), job(1).idempotency_key("order-7"))
            .await
            .unwrap();
        assert!(first.created && !again.created);
        assert_eq!(again.job.id, first.job.id);
        let other = engine
            .submit_in(&mut tx, &tenant(), job(2).idempotency_key("order-7"))
            .await;
        assert!(
            matches!(other, Err(Error::AlreadyExists { .. })),
            "{other:?}"
        );
        let alive: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(alive, 1, "the transaction is still usable");
        tx.commit().await.unwrap();
        let page = engine.list(&tenant(), Default::default()).await.unwrap();
        assert_eq!(page.jobs.len(), 1);
        assert_eq!(page.jobs[0].id, first.job.id);
        schemas.drop_all(&url).await;
    }

    /// An engine on another store says so.
    #[tokio::test]
    #[cfg_attr(
        not(jobworks_postgres_tests),
        ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
    )]
    async fn submitting_in_a_transaction_needs_a_postgres_store() {
        let url = pg::url();
        let host = host(&url).await;
        let engine = super::echo_engine(None);
        let mut tx = host.begin().await.unwrap();
        let e = engine
            .submit_in(&mut tx, &tenant(), job(1))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
    }
}
