//! The SQLite store against the shared conformance suite, the fault test and the wake-up
//! test, each case on a fresh database file.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jobworks::SqliteStore;
use jobworks::testing::{fault_test, run_job_store_suite, wake_up_test};

async fn fresh(dir: &tempfile::TempDir) -> SqliteStore {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    SqliteStore::open(dir.path().join(format!("case-{n}.db")))
        .await
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_job_store_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    run_job_store_suite(|| fresh(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_survives_the_fault_test() {
    let dir = tempfile::tempdir().expect("temp dir");
    fault_test(Arc::new(fresh(&dir).await), 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_workflows_survive_the_fault_test() {
    let dir = tempfile::tempdir().expect("temp dir");
    jobworks::testing::workflow_fault_test(Arc::new(fresh(&dir).await), 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_loses_no_wake_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let latencies = wake_up_test(Arc::new(fresh(&dir).await), 1000).await;
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "sqlite submit-to-start: p50 {:?}, p99 {p99:?}",
        latencies[latencies.len() / 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_document_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    jobworks::testing::run_document_store_suite(|| fresh(&dir)).await;
}

mod foreign {
    include!("support/foreign.rs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_never_reads_another_tenants_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = fresh(&dir).await;
    let path = store.path().to_owned();
    foreign::foreign_rows_are_never_read(&store, |id| async move {
        let conn = rusqlite::Connection::open(path).unwrap();
        let changed = conn
            .execute(
                "UPDATE jobworks_jobs SET status = 'bogus' WHERE id = ?1",
                [id.to_u128().to_be_bytes()],
            )
            .unwrap();
        assert_eq!(changed, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_agrees_with_the_reference() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("differential.db");
    jobworks::testing::differential_test(
        |clock| async move {
            SqliteStore::builder(path)
                .clock(clock)
                .open()
                .await
                .expect("open")
        },
        200,
        30,
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_max_running_holds_across_engines() {
    let (first, second) = two_handles().await;
    jobworks::testing::max_running_holds_across_engines(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_max_running_per_key_holds_across_engines() {
    let (first, second) = two_handles().await;
    jobworks::testing::max_running_per_key_holds_across_engines(first, second).await;
}

/// Two stores on one database file, as two processes would have.
async fn two_handles() -> (Arc<dyn jobworks::JobStore>, Arc<dyn jobworks::JobStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shared.db");
    let first = SqliteStore::open(&path).await.expect("open");
    let second = SqliteStore::open(&path).await.expect("open again");
    // The directory lives as long as the test process; the file is small.
    std::mem::forget(dir);
    (Arc::new(first), Arc::new(second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rate_limit_holds_across_engines() {
    let (first, second) = two_handles().await;
    jobworks::testing::rate_limit_holds_across_engines(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_schedule_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    jobworks::testing::run_schedule_suite(|| fresh(&dir)).await;
}
