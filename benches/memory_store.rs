//! Engine throughput and latency on the memory store.
//!
//! ```sh
//! cargo bench --bench memory_store
//! ```
//! Prints submit-to-start percentiles beside criterion's figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jobworks::{Engine, JobContext, JobError, JobType, MemoryStore, NewJob, TenantId, from_fn};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const DRAIN_JOBS: usize = 10_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn noop_engine(concurrency: usize) -> Engine {
    Engine::builder()
        .store(MemoryStore::new())
        .executor(
            "NOOP",
            from_fn(|_ctx: JobContext, _: Value| async { Ok::<_, JobError>(()) }),
        )
        .concurrency(concurrency)
        .build()
        .expect("engine")
}

fn jobs(n: usize) -> Vec<NewJob> {
    let ty = JobType::new("NOOP").expect("valid");
    (0..n).map(|_| NewJob::new(ty.clone(), json!({}))).collect()
}

fn submit(c: &mut Criterion) {
    let rt = runtime();
    let tenant = TenantId::new("bench").expect("valid");
    let mut group = c.benchmark_group("submit");
    for batch in [1usize, 100] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let engine = noop_engine(16);
            b.to_async(&rt).iter(|| {
                let engine = engine.clone();
                let tenant = tenant.clone();
                async move {
                    engine
                        .submit_many(&tenant, jobs(batch))
                        .await
                        .expect("submit")
                }
            });
        });
    }
    group.finish();
}

fn drain(c: &mut Criterion) {
    let rt = runtime();
    let tenant = TenantId::new("bench").expect("valid");
    let mut group = c.benchmark_group("drain");
    group.throughput(Throughput::Elements(DRAIN_JOBS as u64));
    group.sample_size(20);
    group.bench_function("10k_noop_concurrency_16", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let tenant = tenant.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let engine = noop_engine(16);
                    for chunk in jobs(DRAIN_JOBS).chunks(1000) {
                        engine
                            .submit_many(&tenant, chunk.to_vec())
                            .await
                            .expect("submit");
                    }
                    let start = Instant::now();
                    engine.start().expect("start");
                    engine.wait_idle().await;
                    total += start.elapsed();
                    let stats = engine.stats().await.expect("stats");
                    assert_eq!(stats.completed, DRAIN_JOBS as u64);
                    engine.shutdown().await;
                }
                total
            }
        });
    });
    group.finish();
}

/// Submit-to-start with an idle worker: the time from calling `submit` to the executor
/// running, one job at a time.
fn latency(c: &mut Criterion) {
    let rt = runtime();
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let tx = Arc::new(tx);
    let engine = {
        let _guard = rt.enter();
        let engine = Engine::builder()
            .store(MemoryStore::new())
            .executor(
                "PING",
                from_fn(move |_ctx: JobContext, _: Value| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send(Instant::now());
                        Ok::<_, JobError>(())
                    }
                }),
            )
            .concurrency(16)
            .poll_interval(Duration::from_secs(3600))
            .build()
            .expect("engine");
        engine.start().expect("start");
        engine
    };
    let tenant = TenantId::new("bench").expect("valid");
    let ty = JobType::new("PING").expect("valid");
    let mut samples: Vec<Duration> = Vec::new();
    c.bench_function("submit_to_start", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    engine.wait_idle().await;
                    let submitted = Instant::now();
                    engine
                        .submit(&tenant, NewJob::new(ty.clone(), json!({})))
                        .await
                        .expect("submit");
                    let started = rx.recv().await.expect("executor ran");
                    let took = started - submitted;
                    samples.push(took);
                    total += took;
                }
                total
            })
        });
    });
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "submit_to_start over {} jobs: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        pct(50),
        pct(99),
        samples[samples.len() - 1]
    );
    rt.block_on(engine.shutdown());
}

criterion_group!(benches, submit, drain, latency);
criterion_main!(benches);
