//! Heap kept per finished no-op job in the memory store, measured with a counting
//! allocator over 100,000 jobs (budget: 2 KiB each, record, timeline and lease included).

use std::alloc::System;

use jobworks::{Engine, JobContext, JobError, JobType, MemoryStore, NewJob, TenantId, from_fn};
use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const JOBS: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_noop_job_keeps_at_most_2_kib() {
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(
            "NOOP",
            from_fn(|_ctx: JobContext, _: Value| async { Ok::<_, JobError>(()) }),
        )
        .concurrency(16)
        .build()
        .unwrap();
    let tenant = TenantId::new("acme").unwrap();
    let ty = JobType::new("NOOP").unwrap();
    // Warm up so that one-off allocations (runtime, channels) are not counted.
    engine
        .submit(&tenant, NewJob::new(ty.clone(), json!({})))
        .await
        .unwrap();
    engine.start().unwrap();
    engine.wait_idle().await;

    let region = Region::new(GLOBAL);
    for _ in 0..JOBS / 1000 {
        let batch = (0..1000)
            .map(|_| NewJob::new(ty.clone(), json!({})))
            .collect();
        engine.submit_many(&tenant, batch).await.unwrap();
        engine.wait_idle().await;
    }
    let stats = engine.stats().await.unwrap();
    assert_eq!(stats.completed, JOBS as u64 + 1);
    let change = region.change();
    let kept = change.bytes_allocated as isize - change.bytes_deallocated as isize
        + change.bytes_reallocated;
    let per_job = kept as f64 / JOBS as f64;
    eprintln!("heap kept per finished no-op job: {per_job:.0} bytes");
    eprintln!(
        "allocations per job: {:.1} ({:.0} bytes in all)",
        change.allocations as f64 / JOBS as f64,
        change.bytes_allocated as f64 / JOBS as f64
    );
    assert!(per_job <= 2048.0, "{per_job:.0} bytes per job");
    engine.shutdown().await;
}
