//! A soak: millions of no-op jobs through one store while submits keep arriving, finished
//! jobs are purged as it goes, and a high-priority probe job is submitted every 100 ms.
//! Every million jobs it prints one row: throughput, the probe's submit-to-start
//! percentiles, the queue's depth, the size and dead rows of the tables and indexes, the WAL
//! written per job and the autovacuum runs (PostgreSQL), or the file sizes (SQLite).
//!
//! ```sh
//! # PostgreSQL (a schema `jobworks_soak` is dropped and made afresh):
//! cargo run --release --example soak --features postgres -- \
//!     --store postgres://postgres@127.0.0.1:5432/test --jobs 10000000
//! # SQLite (a fresh file):
//! cargo run --release --example soak -- --store sqlite:/tmp/soak.db --jobs 10000000
//! ```
//!
//! Flags: `--store URL` (`sqlite:PATH` or `postgres://…`), `--jobs N` (10,000,000),
//! `--every N` (a row per N jobs, 1,000,000), `--concurrency N` (16), `--keep-secs N`
//! (how long finished jobs are kept before the purge, 10), `--durable-finishes false` (ends
//! of attempts committed without waiting for the disk, PostgreSQL only).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobworks::{Engine, JobContext, JobError, JobStore, JobType, NewJob, TenantId, from_fn};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

/// Submits keep the queue between these depths.
const LOW_WATER: u64 = 9_000;
const BATCH: usize = 1_000;
const PROBE_EVERY: Duration = Duration::from_millis(100);

struct Args {
    store: String,
    jobs: u64,
    every: u64,
    concurrency: usize,
    keep: Duration,
    durable_finishes: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        store: "sqlite:jobworks-soak.db".into(),
        jobs: 10_000_000,
        every: 1_000_000,
        concurrency: 16,
        keep: Duration::from_secs(10),
        durable_finishes: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .replace('_', "")
                .parse::<u64>()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--store" => a.store = value.clone(),
            "--jobs" => a.jobs = number()?,
            "--every" => a.every = number()?.max(1),
            "--concurrency" => a.concurrency = number()?.max(1) as usize,
            "--keep-secs" => a.keep = Duration::from_secs(number()?),
            "--durable-finishes" => a.durable_finishes = value != "false",
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

#[derive(Deserialize)]
struct Probe {
    sent_us: u64,
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What the store's tables look like now, as one row's columns.
enum Storage {
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool, String),
    #[cfg(feature = "sqlite")]
    Sqlite(std::path::PathBuf),
}

/// One reading of the storage: `(name, bytes, live rows, dead rows)` per table or index,
/// the WAL position in bytes, autovacuum runs so far, updates and HOT updates so far.
#[derive(Default)]
struct Reading {
    relations: Vec<(String, i64, i64, i64)>,
    wal: i64,
    vacuums: i64,
    updates: i64,
    hot_updates: i64,
}

impl Storage {
    async fn read(&self) -> Result<Reading, Box<dyn std::error::Error>> {
        match self {
            #[cfg(feature = "postgres")]
            Storage::Postgres(pool, schema) => {
                let relations: Vec<(String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT c.relname::text, pg_relation_size(c.oid),
                         coalesce(t.n_live_tup, 0), coalesce(t.n_dead_tup, 0)
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     LEFT JOIN pg_stat_user_tables t ON t.relid = c.oid
                     WHERE n.nspname = $1 AND c.relkind IN ('r', 'i')
                         AND (c.relname LIKE 'jobworks_jobs%' OR c.relname LIKE 'jobworks_events%')
                     ORDER BY c.relkind DESC, c.relname",
                )
                .bind(schema)
                .fetch_all(pool)
                .await?;
                let (vacuums, updates, hot_updates): (i64, i64, i64) = sqlx::query_as(
                    "SELECT coalesce(sum(autovacuum_count + vacuum_count), 0)::bigint,
                         coalesce(sum(n_tup_upd), 0)::bigint, coalesce(sum(n_tup_hot_upd), 0)::bigint
                     FROM pg_stat_user_tables WHERE schemaname = $1",
                )
                .bind(schema)
                .fetch_one(pool)
                .await?;
                let wal: i64 = sqlx::query_scalar(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
                )
                .fetch_one(pool)
                .await?;
                Ok(Reading {
                    relations,
                    wal,
                    vacuums,
                    updates,
                    hot_updates,
                })
            }
            #[cfg(feature = "sqlite")]
            Storage::Sqlite(path) => {
                let db = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )?;
                let pragma = |name: &str| -> rusqlite::Result<i64> {
                    db.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                };
                let page = pragma("page_size")?;
                let file = pragma("page_count")? * page;
                let free = pragma("freelist_count")? * page;
                let mut wal_path = path.clone().into_os_string();
                wal_path.push("-wal");
                let wal = std::fs::metadata(&wal_path).map_or(0, |m| m.len() as i64);
                Ok(Reading {
                    relations: vec![
                        (format!("file ({} MB free)", mb(free)), file, 0, 0),
                        ("wal file".into(), wal, 0, 0),
                    ],
                    ..Reading::default()
                })
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn mb(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / 1_048_576.0)
}

/// The store named by `--store`, and how to read its storage.
async fn open(a: &Args) -> Result<(Arc<dyn JobStore>, Storage), Box<dyn std::error::Error>> {
    #[cfg(feature = "postgres")]
    if a.store.starts_with("postgres://") || a.store.starts_with("postgresql://") {
        let store = jobworks::PostgresStore::builder(&a.store)
            .schema("jobworks_soak")
            .max_connections(16)
            .durable_finishes(a.durable_finishes)
            .connect()
            .await?;
        store.drop_schema().await?;
        store.migrate().await?;
        let storage = Storage::Postgres(store.pool().clone(), store.schema().to_owned());
        return Ok((Arc::new(store), storage));
    }
    #[cfg(feature = "sqlite")]
    if let Some(path) = a.store.strip_prefix("sqlite:") {
        let path = std::path::PathBuf::from(path);
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
        let store = jobworks::SqliteStore::open(&path).await?;
        return Ok((Arc::new(store), Storage::Sqlite(path)));
    }
    Err(format!("--store {}: not a store this build has", a.store).into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args().map_err(|e| format!("{e}\nsee the flags at the top of examples/soak.rs"))?;
    let (store, storage) = open(&a).await?;
    let started = Arc::new(AtomicU64::new(0));
    let (probes_tx, mut probes) = mpsc::unbounded_channel::<Duration>();
    let (submits_tx, mut submits) = mpsc::unbounded_channel::<Duration>();
    let counter = started.clone();
    let engine = Engine::builder()
        .store(store)
        .executor(
            "NOOP",
            from_fn(move |_ctx: JobContext, _: serde_json::Value| {
                counter.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, JobError>(()) }
            }),
        )
        .executor(
            "PROBE",
            from_fn(move |_ctx: JobContext, probe: Probe| {
                let waited = unix_micros().saturating_sub(probe.sent_us);
                let _ = probes_tx.send(Duration::from_micros(waited));
                async { Ok::<_, JobError>(()) }
            }),
        )
        .concurrency(a.concurrency)
        .retention(a.keep)
        .reap_interval(Duration::from_secs(1))
        .build()?;
    let tenant = TenantId::new("soak")?;
    let noop = JobType::new("NOOP")?;
    let probe = JobType::new("PROBE")?;

    let submitted = Arc::new(AtomicU64::new(0));
    let depths = Arc::new(std::sync::Mutex::new((u64::MAX, 0u64)));
    let submitter = {
        let (engine, tenant, submitted, started, depths) = (
            engine.clone(),
            tenant.clone(),
            submitted.clone(),
            started.clone(),
            depths.clone(),
        );
        let total = a.jobs;
        tokio::spawn(async move {
            while submitted.load(Ordering::Relaxed) < total {
                let depth = submitted.load(Ordering::Relaxed) - started.load(Ordering::Relaxed);
                {
                    let mut d = depths.lock().expect("not poisoned");
                    *d = (d.0.min(depth), d.1.max(depth));
                }
                if depth >= LOW_WATER {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let n = BATCH.min((total - submitted.load(Ordering::Relaxed)) as usize);
                let batch = (0..n)
                    .map(|_| NewJob::new(noop.clone(), json!({})))
                    .collect();
                engine.submit_many(&tenant, batch).await?;
                submitted.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok::<_, jobworks::Error>(())
        })
    };
    let prober = {
        let (engine, tenant) = (engine.clone(), tenant.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PROBE_EVERY);
            loop {
                every.tick().await;
                let job =
                    NewJob::new(probe.clone(), json!({ "sent_us": unix_micros() })).priority(100);
                let sent = Instant::now();
                match engine.submit(&tenant, job).await {
                    Ok(_) => {
                        let _ = submits_tx.send(sent.elapsed());
                    }
                    Err(e) => eprintln!("probe submit failed: {e}"),
                }
            }
        })
    };

    // The submitter puts a few batches in the queue before the engine starts.
    while submitted.load(Ordering::Relaxed) < BATCH as u64 * 5 && a.jobs > BATCH as u64 * 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "{} jobs, a row per {}, concurrency {}, finished jobs kept {} s, store {}",
        a.jobs,
        a.every,
        a.concurrency,
        a.keep.as_secs(),
        a.store.split('@').next_back().unwrap_or_default()
    );
    println!(
        "| jobs (M) | jobs/s | probe p50 ms | probe p99 ms | probe max ms | of which submit p50/p99 ms | depth min–max | WAL B/job | vacuums | HOT % | tables and indexes: MB (dead rows) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    engine.start()?;
    let begin = Instant::now();
    let mut last = storage.read().await?;
    let mut window_start = Instant::now();
    let mut rates = Vec::new();
    let mut all_probes = Vec::new();
    let mut next = a.every.min(a.jobs);
    let (mut done, mut before) = (0, 0);
    while done < a.jobs {
        tokio::time::sleep(Duration::from_millis(20)).await;
        done = started.load(Ordering::Relaxed);
        if done < next {
            continue;
        }
        let took = window_start.elapsed();
        window_start = Instant::now();
        let mut window = Vec::new();
        while let Ok(p) = probes.try_recv() {
            window.push(p);
        }
        window.sort();
        all_probes.extend_from_slice(&window);
        let mut submit_times = Vec::new();
        while let Ok(p) = submits.try_recv() {
            submit_times.push(p);
        }
        submit_times.sort();
        let now = storage.read().await?;
        let jobs = (done - before).max(1);
        before = done;
        let rate = jobs as f64 / took.as_secs_f64();
        rates.push(rate);
        let (low, high) =
            std::mem::replace(&mut *depths.lock().expect("not poisoned"), (u64::MAX, 0));
        let updates = now.updates - last.updates;
        let hot = if updates > 0 {
            format!(
                "{:.0}",
                100.0 * (now.hot_updates - last.hot_updates) as f64 / updates as f64
            )
        } else {
            "–".into()
        };
        let relations: Vec<String> = now
            .relations
            .iter()
            .map(|(name, bytes, _, dead)| {
                let name = name.trim_start_matches("jobworks_");
                if *dead > 0 {
                    format!("{name} {} ({dead})", mb(*bytes))
                } else {
                    format!("{name} {}", mb(*bytes))
                }
            })
            .collect();
        println!(
            "| {:.1} | {:.0} | {} | {} | {} | {}/{} | {}–{} | {} | {} | {} | {} |",
            done as f64 / 1e6,
            rate,
            ms(percentile(&window, 0.5)),
            ms(percentile(&window, 0.99)),
            ms(window.last().copied().unwrap_or_default()),
            ms(percentile(&submit_times, 0.5)),
            ms(percentile(&submit_times, 0.99)),
            if low == u64::MAX { 0 } else { low },
            high,
            if now.wal > 0 {
                ((now.wal - last.wal) / jobs as i64).to_string()
            } else {
                "–".into()
            },
            now.vacuums - last.vacuums,
            hot,
            relations.join(", ")
        );
        last = now;
        next = (next + a.every).min(a.jobs);
    }
    prober.abort();
    submitter.await??;
    all_probes.sort();
    let total = begin.elapsed();
    println!(
        "\n{} jobs in {:.0} s: {:.0} jobs/s; probes: {} p50 {} ms, p99 {} ms, max {} ms",
        done,
        total.as_secs_f64(),
        done as f64 / total.as_secs_f64(),
        all_probes.len(),
        ms(percentile(&all_probes, 0.5)),
        ms(percentile(&all_probes, 0.99)),
        ms(all_probes.last().copied().unwrap_or_default()),
    );
    if let (Some(first), Some(last)) = (rates.first(), rates.last()) {
        println!(
            "last window at {:.0} % of the first's throughput",
            100.0 * last / first
        );
    }
    engine.wait_idle().await;
    let stats = engine.stats().await?;
    println!(
        "left: {} queued, {} running, {} failed",
        stats.queued, stats.running, stats.failed
    );
    engine.shutdown().await;
    Ok(())
}
