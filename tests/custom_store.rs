//! The store of `examples/custom_store.rs` passes the whole conformance suite and agrees
//! with the reference store.

#[allow(dead_code)]
#[path = "../examples/custom_store.rs"]
mod custom_store;

use custom_store::MapStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_store_passes_the_job_store_suite() {
    jobworks::testing::run_job_store_suite(|| async { MapStore::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_store_agrees_with_the_reference() {
    jobworks::testing::differential_test(|clock| async { MapStore::new(clock) }, 200, 30, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_store_survives_the_fault_test() {
    jobworks::testing::fault_test(std::sync::Arc::new(MapStore::default()), 300).await;
}
