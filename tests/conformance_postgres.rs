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
