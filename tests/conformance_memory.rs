//! The memory store against the shared conformance suite, the fault test and the wake-up
//! test.

use std::sync::Arc;

use jobworks::testing::{fault_test, run_artifact_store_suite, run_job_store_suite, wake_up_test};
use jobworks::{MemoryStore, ObjectStoreArtifacts, UrlSigner};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_job_store_suite() {
    run_job_store_suite(|| async { MemoryStore::new() }).await;
}

#[tokio::test]
async fn in_memory_objects_pass_the_artifact_suite() {
    run_artifact_store_suite(|| async {
        ObjectStoreArtifacts::in_memory("http://127.0.0.1:8080/v1")
    })
    .await;
}

#[tokio::test]
async fn local_files_pass_the_artifact_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    run_artifact_store_suite(|| async {
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("fs");
        ObjectStoreArtifacts::new(Arc::new(fs), UrlSigner::random("http://127.0.0.1:8080/v1"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_survives_the_fault_test() {
    fault_test(Arc::new(MemoryStore::new()), 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_workflows_survive_the_fault_test() {
    jobworks::testing::workflow_fault_test(Arc::new(MemoryStore::new()), 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_loses_no_wake_up() {
    let latencies = wake_up_test(Arc::new(MemoryStore::new()), 1000).await;
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "submit-to-start: p50 {:?}, p99 {p99:?}",
        latencies[latencies.len() / 2]
    );
}

#[tokio::test]
async fn memory_store_passes_the_document_suite() {
    jobworks::testing::run_document_store_suite(|| async { MemoryStore::new() }).await;
}

/// The reference against itself: the test's own consistency (and its cost) on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_agrees_with_the_reference() {
    jobworks::testing::differential_test(
        |clock| async move { MemoryStore::with_clock(clock) },
        200,
        30,
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_max_running_holds_across_engines() {
    let store: std::sync::Arc<dyn jobworks::JobStore> =
        std::sync::Arc::new(jobworks::MemoryStore::new());
    jobworks::testing::max_running_holds_across_engines(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_max_running_per_key_holds_across_engines() {
    let store: std::sync::Arc<dyn jobworks::JobStore> =
        std::sync::Arc::new(jobworks::MemoryStore::new());
    jobworks::testing::max_running_per_key_holds_across_engines(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_rate_limit_holds_across_engines() {
    let store: std::sync::Arc<dyn jobworks::JobStore> =
        std::sync::Arc::new(jobworks::MemoryStore::new());
    jobworks::testing::rate_limit_holds_across_engines(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_schedule_suite() {
    jobworks::testing::run_schedule_suite(|| async { MemoryStore::new() }).await;
}
