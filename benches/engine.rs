//! Engine throughput and latency on every backend: the memory store, SQLite, and
//! PostgreSQL when `JOBWORKS_TEST_POSTGRES_URL` is set.
//!
//! ```sh
//! cargo bench --bench engine --all-features
//! ```
//! Prints submit-to-start percentiles beside criterion's figures.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jobworks::JobStoreExt as _;
use jobworks::{
    Append, ClaimParams, Engine, EventKind, JobContext, JobError, JobStore, JobType, MemoryStore,
    NewEvent, NewJob, NewWorkflow, QueueName, QueuePatch, TenantId, WorkflowJob, from_fn,
};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const DRAIN_JOBS: usize = 10_000;

type StoreFuture = Pin<Box<dyn Future<Output = Arc<dyn JobStore>>>>;

/// A backend under test: its name and how to make a fresh, empty store.
struct Backend {
    name: &'static str,
    fresh: Box<dyn Fn() -> StoreFuture>,
    _dir: Option<tempfile::TempDir>,
}

fn backends() -> Vec<Backend> {
    let mut out = vec![Backend {
        name: "memory",
        fresh: Box::new(|| Box::pin(async { Arc::new(MemoryStore::new()) as Arc<dyn JobStore> })),
        _dir: None,
    }];
    #[cfg(feature = "sqlite")]
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        out.push(Backend {
            name: "sqlite",
            fresh: Box::new(move || {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let file = path.join(format!("bench-{n}.db"));
                Box::pin(async move {
                    Arc::new(jobworks::SqliteStore::open(file).await.expect("open"))
                        as Arc<dyn JobStore>
                })
            }),
            _dir: Some(dir),
        });
    }
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("JOBWORKS_TEST_POSTGRES_URL") {
        for (name, durable) in [("postgres", true), ("postgres_async_finishes", false)] {
            let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let url = url.clone();
            out.push(Backend {
                name,
                fresh: Box::new(move || {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let url = url.clone();
                    Box::pin(async move {
                        // A few names in turn: each store drops what a previous one left.
                        let schema = format!("jobworks_bench_{}_{}", durable as u8, n % 4);
                        let store = jobworks::PostgresStore::builder(&url)
                            .schema(schema)
                            .max_connections(16)
                            .durable_finishes(durable)
                            .connect()
                            .await
                            .expect("connect");
                        store.drop_schema().await.expect("drop old schema");
                        store.migrate().await.expect("migrate");
                        Arc::new(store) as Arc<dyn JobStore>
                    })
                }),
                _dir: None,
            });
        }
    }
    out
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn noop_engine(store: Arc<dyn JobStore>, concurrency: usize) -> Engine {
    Engine::builder()
        .store(store)
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
    for backend in backends() {
        for batch in [1usize, 1000] {
            group.throughput(Throughput::Elements(batch as u64));
            let id = BenchmarkId::new(backend.name, format!("batch_{batch}"));
            // A fresh store per sample, so that the figure is not that of an ever-growing one.
            group.bench_function(id, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let tenant = tenant.clone();
                    let fresh = &backend.fresh;
                    async move {
                        let engine = noop_engine(fresh().await, 16);
                        let start = Instant::now();
                        for _ in 0..iters {
                            engine
                                .submit_many(&tenant, jobs(batch))
                                .await
                                .expect("submit");
                        }
                        start.elapsed()
                    }
                });
            });
        }
    }
    group.finish();
}

/// Submits `jobs` in batches of 1,000, then times `engine` from `start()` until its
/// workers are idle, checks that every job completed, and shuts it down.
async fn drain_once(engine: &Engine, tenant: &TenantId, jobs: Vec<NewJob>) -> Duration {
    let n = jobs.len() as u64;
    for chunk in jobs.chunks(1000) {
        engine
            .submit_many(tenant, chunk.to_vec())
            .await
            .expect("submit");
    }
    let start = Instant::now();
    engine.start().expect("start");
    engine.wait_idle().await;
    let took = start.elapsed();
    let stats = engine.stats().await.expect("stats");
    assert_eq!(stats.completed, n);
    engine.shutdown().await;
    took
}

/// Drains 10,000 no-op jobs at concurrency 16 and at 256 (the figure other Rust queues
/// publish at 256: more slots keep more claims and outcomes in flight).
fn drain(c: &mut Criterion) {
    let rt = runtime();
    let tenant = TenantId::new("bench").expect("valid");
    for concurrency in [16usize, 256] {
        let mut group = c.benchmark_group(format!("drain_10k_noop_concurrency_{concurrency}"));
        group.throughput(Throughput::Elements(DRAIN_JOBS as u64));
        group.sample_size(10);
        for backend in backends() {
            group.bench_function(backend.name, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let tenant = tenant.clone();
                    let fresh = &backend.fresh;
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let engine = noop_engine(fresh().await, concurrency);
                            total += drain_once(&engine, &tenant, jobs(DRAIN_JOBS)).await;
                        }
                        total
                    }
                });
            });
        }
        group.finish();
    }
}

/// The drain of `drain`, in a queue whose `max_running` is the engine's concurrency: the
/// limited claim path (on PostgreSQL, the queue's lock and a count of its running jobs),
/// where the limit binds whenever outcomes are still being recorded, since a job holds its
/// slot until its outcome is committed.
fn drain_limited(c: &mut Criterion) {
    let limit = QueuePatch::default().max_running(Some(16));
    drain_in_queue(c, "drain_10k_noop_max_running_16", limit, |_| None);
}

/// The drain of `drain` with its jobs spread over 100 concurrency keys, without a limit
/// and with `max_running_per_key = 1` (each claim passes over the keys that run).
fn drain_per_key(c: &mut Criterion) {
    let key = |i: usize| Some(format!("key-{}", i % 100));
    drain_in_queue(c, "drain_10k_noop_100_keys", QueuePatch::default(), key);
    let one = QueuePatch::default().max_running_per_key(Some(1));
    drain_in_queue(c, "drain_10k_noop_100_keys_max_running_per_key_1", one, key);
}

/// Drains 10,000 no-op jobs (the `i`th with concurrency key `key(i)`) with 16 workers
/// from queue `limited`, its settings changed by `patch`.
fn drain_in_queue(
    c: &mut Criterion,
    name: &str,
    patch: QueuePatch,
    key: fn(usize) -> Option<String>,
) {
    let rt = runtime();
    let tenant = TenantId::new("bench").expect("valid");
    let queue = QueueName::new("limited").expect("valid");
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(DRAIN_JOBS as u64));
    group.sample_size(10);
    for backend in backends() {
        group.bench_function(backend.name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (tenant, queue, patch) = (tenant.clone(), queue.clone(), patch.clone());
                let fresh = &backend.fresh;
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let store = fresh().await;
                        store
                            .configure_queue(&queue, patch.clone())
                            .await
                            .expect("limit");
                        let engine = Engine::builder()
                            .store(store)
                            .executor(
                                "NOOP",
                                from_fn(|_ctx: JobContext, _: Value| async {
                                    Ok::<_, JobError>(())
                                }),
                            )
                            .without_default_queue()
                            .queue("limited", 16)
                            .build()
                            .expect("engine");
                        let queued = jobs(DRAIN_JOBS).into_iter().enumerate().map(|(i, j)| {
                            let j = j.queue(queue.clone());
                            match key(i) {
                                Some(k) => j.concurrency_key(k),
                                None => j,
                            }
                        });
                        total += drain_once(&engine, &tenant, queued.collect()).await;
                    }
                    total
                }
            });
        });
    }
    group.finish();
}

/// Submit-to-start with an idle worker: from calling `submit` to the executor running,
/// one job at a time.
fn latency(c: &mut Criterion) {
    let rt = runtime();
    let tenant = TenantId::new("bench").expect("valid");
    let ty = JobType::new("PING").expect("valid");
    let mut group = c.benchmark_group("submit_to_start");
    for backend in backends() {
        let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
        let store = rt.block_on((backend.fresh)());
        let engine = {
            let _guard = rt.enter();
            let engine = Engine::builder()
                .store(store)
                .executor(
                    "PING",
                    from_fn(move |_ctx: JobContext, _: Value| {
                        let _ = tx.send(Instant::now());
                        async { Ok::<_, JobError>(()) }
                    }),
                )
                .concurrency(16)
                .poll_interval(Duration::from_secs(3600))
                .build()
                .expect("engine");
            engine.start().expect("start");
            engine
        };
        let mut samples: Vec<Duration> = Vec::new();
        group.bench_function(backend.name, |b| {
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
        rt.block_on(engine.shutdown());
        if samples.is_empty() {
            continue; // filtered out on the command line
        }
        samples.sort();
        let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
        println!(
            "submit_to_start/{}: {} jobs, p50 {:?}, p99 {:?}, max {:?}",
            backend.name,
            samples.len(),
            pct(50),
            pct(99),
            samples[samples.len() - 1]
        );
    }
    group.finish();
}

/// One operator or executor write at a time: cancelling a queued job, and appending an
/// event to a running job's timeline (each a read and a guarded write).
fn operations(c: &mut Criterion) {
    let rt = runtime();
    let tenant = TenantId::new("bench").expect("valid");
    let mut group = c.benchmark_group("operation");
    for backend in backends() {
        group.bench_function(BenchmarkId::new(backend.name, "cancel_queued"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let tenant = tenant.clone();
                let fresh = &backend.fresh;
                async move {
                    let engine = noop_engine(fresh().await, 16);
                    let mut ids = Vec::new();
                    for chunk in jobs(iters as usize).chunks(1000) {
                        let submitted = engine
                            .submit_many(&tenant, chunk.to_vec())
                            .await
                            .expect("submit");
                        ids.extend(submitted.into_iter().map(|s| s.job.id));
                    }
                    let start = Instant::now();
                    for id in ids {
                        engine.cancel(&tenant, id).await.expect("cancel");
                    }
                    start.elapsed()
                }
            });
        });
        group.bench_function(BenchmarkId::new(backend.name, "append_running"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let tenant = tenant.clone();
                let fresh = &backend.fresh;
                async move {
                    let store = fresh().await;
                    let engine = noop_engine(store.clone(), 16);
                    engine.submit_many(&tenant, jobs(1)).await.expect("submit");
                    let params = ClaimParams::default()
                        .limit(1)
                        .lease_ttl(Duration::from_secs(3600));
                    let claimed = store.claim(params).await.expect("claim");
                    let lease = claimed.jobs[0].lease;
                    let start = Instant::now();
                    for i in 0..iters {
                        let event = NewEvent::new(EventKind::Custom, format!("step {i}"));
                        store
                            .append(&lease, Append::event(event))
                            .await
                            .expect("append");
                    }
                    start.elapsed()
                }
            });
        });
        group.bench_function(
            BenchmarkId::new(backend.name, "append_from_executor"),
            |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let tenant = tenant.clone();
                    let fresh = &backend.fresh;
                    async move {
                        // One job whose executor appends `iters` stages and says how long
                        // that took: the path of an executor reporting as it works.
                        let (tx, mut rx) = mpsc::unbounded_channel::<Duration>();
                        let engine = Engine::builder()
                            .store(fresh().await)
                            .executor(
                                "NOOP",
                                from_fn(move |ctx: JobContext, _: Value| {
                                    let tx = tx.clone();
                                    async move {
                                        let start = Instant::now();
                                        for _ in 0..iters {
                                            ctx.stage("step").await.map_err(JobError::from)?;
                                        }
                                        let _ = tx.send(start.elapsed());
                                        Ok::<_, JobError>(())
                                    }
                                }),
                            )
                            .build()
                            .expect("engine");
                        engine.submit_many(&tenant, jobs(1)).await.expect("submit");
                        engine.start().expect("start");
                        let took = rx.recv().await.expect("the executor ran");
                        engine.shutdown().await;
                        took
                    }
                });
            },
        );
    }
    group.finish();
}

/// A workflow of `n` no-op jobs: a chain (each job depends on the one before), or a fan-in
/// (independent jobs and a finalizer that waits for them all).
fn workflow(n: usize, chain: bool) -> NewWorkflow {
    let ty = JobType::new("NOOP").expect("valid");
    let mut flow = NewWorkflow::new();
    for i in 0..n {
        let mut job = WorkflowJob::new(format!("j{i}"), NewJob::new(ty.clone(), json!({})));
        if chain && i > 0 {
            job = job.depends_on([format!("j{}", i - 1)]);
        }
        flow = flow.job(job);
    }
    if !chain {
        flow = flow.finalizer(NewJob::new(ty, json!({})));
    }
    flow
}

/// Workflows of 1,000 jobs, a chain and a fan-in to a finalizer, against as many
/// independent jobs, each timed from `start()` until the workers are idle. A chain runs
/// one job at a time whatever the concurrency, so it is set beside independent jobs at
/// concurrency 1 too.
fn workflows(c: &mut Criterion) {
    const N: usize = 1000;
    let rt = runtime();
    let tenant = TenantId::new("bench").expect("valid");
    let mut group = c.benchmark_group("workflow_1000_noop");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    for backend in backends() {
        for (shape, concurrency) in [
            ("independent", 16),
            ("independent", 1),
            ("chain", 16),
            ("fan_in", 16),
        ] {
            let id = BenchmarkId::new(backend.name, format!("{shape}_concurrency_{concurrency}"));
            group.bench_function(id, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let tenant = tenant.clone();
                    let fresh = &backend.fresh;
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let engine = noop_engine(fresh().await, concurrency);
                            total += match shape {
                                "independent" => drain_once(&engine, &tenant, jobs(N)).await,
                                _ => {
                                    let flow = workflow(N, shape == "chain");
                                    let expected = N + usize::from(shape == "fan_in");
                                    let flow = engine
                                        .submit_workflow(&tenant, flow)
                                        .await
                                        .expect("submit");
                                    let start = Instant::now();
                                    engine.start().expect("start");
                                    engine.wait_idle().await;
                                    let took = start.elapsed();
                                    let done =
                                        engine.workflow(&tenant, flow.id).await.expect("read");
                                    assert_eq!(
                                        done.status,
                                        jobworks::WorkflowStatus::Completed,
                                        "{:?}",
                                        engine.stats().await
                                    );
                                    let stats = engine.stats().await.expect("stats");
                                    assert_eq!(stats.completed, expected as u64);
                                    engine.shutdown().await;
                                    took
                                }
                            };
                        }
                        total
                    }
                });
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    submit,
    drain,
    workflows,
    drain_limited,
    drain_per_key,
    latency,
    operations
);
criterion_main!(benches);
