//! The PostgreSQL store against the shared conformance suite, the fault test and the
//! wake-up test, each case in a schema of its own. Skipped (saying so) unless
//! `JOBWORKS_TEST_POSTGRES_URL` is set; `.ci/run` always sets it.

use std::sync::Arc;

use jobworks::PostgresStore;
use jobworks::testing::{fault_test, run_job_store_suite, wake_up_test};

mod pg {
    include!("support/postgres.rs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_job_store_suite() {
    let Some(url) = pg::url() else { return };
    let schemas = pg::Schemas::default();
    run_job_store_suite(|| schemas.fresh(&url)).await;
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_survives_the_fault_test() {
    let Some(url) = pg::url() else { return };
    let schemas = pg::Schemas::default();
    // Three engines share this one store here, so give it the connections of three.
    let store = schemas.fresh_with(&url, |b| b.max_connections(30)).await;
    fault_test(Arc::new(store), 10_000).await;
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_with_asynchronous_finishes_passes_the_suites() {
    let Some(url) = pg::url() else { return };
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
async fn postgres_store_loses_no_wake_up() {
    let Some(url) = pg::url() else { return };
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
async fn postgres_and_sqlite_reach_the_same_schema_version() {
    let Some(url) = pg::url() else { return };
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

#[cfg(feature = "reports")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_template_suite() {
    let Some(url) = pg::url() else { return };
    let schemas = pg::Schemas::default();
    jobworks::testing::run_template_store_suite(|| schemas.fresh(&url)).await;
    schemas.drop_all(&url).await;
}

mod foreign {
    include!("support/foreign.rs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_never_reads_another_tenants_row() {
    let Some(url) = pg::url() else { return };
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
