//! Many engine processes on one PostgreSQL database: this process submits the jobs, starts
//! `--processes` copies of itself as workers, waits until they drained the queue, then
//! checks in the database that every job ran exactly once, and prints the throughput.
//!
//! ```sh
//! cargo run --release --example postgres_workers --features postgres -- \
//!     --url postgres://postgres@127.0.0.1:5432/test --processes 4 --jobs 100000
//! ```
//!
//! Flags: `--url URL` (or `JOBWORKS_TEST_POSTGRES_URL`), `--schema NAME`
//! (`jobworks_workers`, dropped and made afresh), `--processes N` (4), `--jobs N`
//! (100,000), `--concurrency N` (slots per process, 16), `--connections N` (each store's
//! pool, 10). A worker alone: `--worker` with the same `--url` and `--schema` runs an
//! engine until no job is queued or running, then prints `ran N jobs`.
//!
//! Each process holds at most `--connections` + 1 connections: its store's pool, which
//! keeps one more than asked for the connection that `LISTEN`s (and, while connecting,
//! one short-lived connection that checks the server answers).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jobworks::{
    Engine, JobContext, JobError, JobStore, JobType, NewJob, PostgresStore, TenantId, from_fn,
};
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
struct Args {
    url: String,
    schema: String,
    processes: usize,
    jobs: usize,
    concurrency: usize,
    connections: u32,
    worker: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: std::env::var("JOBWORKS_TEST_POSTGRES_URL").unwrap_or_default(),
        schema: "jobworks_workers".into(),
        processes: 4,
        jobs: 100_000,
        concurrency: 16,
        connections: 10,
        worker: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--worker" {
            a.worker = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .replace('_', "")
                .parse::<usize>()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--url" => a.url = value.clone(),
            "--schema" => a.schema = value.clone(),
            "--processes" => a.processes = number()?.max(1),
            "--jobs" => a.jobs = number()?,
            "--concurrency" => a.concurrency = number()?.max(1),
            "--connections" => a.connections = u32::try_from(number()?.max(1)).unwrap_or(10),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.url.is_empty() {
        return Err("--url postgres://… (or JOBWORKS_TEST_POSTGRES_URL) is needed".into());
    }
    Ok(a)
}

async fn store(a: &Args) -> Result<Arc<PostgresStore>, BoxError> {
    let store = PostgresStore::builder(&a.url)
        .schema(&a.schema)
        .max_connections(a.connections)
        .connect()
        .await?;
    Ok(Arc::new(store))
}

/// A worker process: an engine on the shared schema until nothing is queued or running.
async fn work(a: &Args) -> Result<(), BoxError> {
    let store = store(a).await?;
    let ran = Arc::new(AtomicU64::new(0));
    let counter = ran.clone();
    let engine = Engine::builder()
        .store(store.clone())
        .executor(
            "NOOP",
            from_fn(move |_: JobContext, _: Value| {
                counter.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, JobError>(()) }
            }),
        )
        .concurrency(a.concurrency)
        .build()?;
    engine.start()?;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let open = store.open_counts(None).await?;
        if open.values().all(|c| c.queued == 0 && c.running == 0) {
            break;
        }
    }
    engine.shutdown().await;
    println!("ran {} jobs", ran.load(Ordering::Relaxed));
    Ok(())
}

/// What the database says about the drained schema: `(jobs, completed, jobs with one
/// attempt, jobs with one started event, jobs with one succeeded event)`.
async fn verify(store: &PostgresStore) -> Result<(i64, i64, i64, i64, i64), BoxError> {
    Ok(sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'completed'),
             count(*) FILTER (WHERE attempts = 1),
             count(*) FILTER (WHERE (SELECT count(*) FROM jobworks_events e
                                     WHERE e.job_id = j.id AND e.kind = 'started') = 1),
             count(*) FILTER (WHERE (SELECT count(*) FROM jobworks_events e
                                     WHERE e.job_id = j.id AND e.kind = 'succeeded') = 1)
         FROM jobworks_jobs j",
    )
    .fetch_one(store.pool())
    .await?)
}

/// Submits the jobs, runs the workers, checks the outcome.
async fn coordinate(a: &Args) -> Result<(), BoxError> {
    let store = store(a).await?;
    store.drop_schema().await?;
    store.migrate().await?;
    let tenant = TenantId::new("workers")?;
    let ty = JobType::new("NOOP")?;
    // An engine only to submit through: it runs no worker.
    let submitter = Engine::builder()
        .store(store.clone())
        .executor(
            "NOOP",
            from_fn(|_: JobContext, _: Value| async { Ok::<_, JobError>(()) }),
        )
        .build()?;
    let mut left = a.jobs;
    while left > 0 {
        let n = left.min(1_000);
        let batch = (0..n).map(|_| NewJob::new(ty.clone(), json!({}))).collect();
        submitter.submit_many(&tenant, batch).await?;
        left -= n;
    }
    println!(
        "{} jobs queued in schema {}; starting {} worker processes of {} slots",
        a.jobs, a.schema, a.processes, a.concurrency
    );
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let children = (0..a.processes)
        .map(|_| {
            Command::new(&exe)
                .args(["--worker", "--url", &a.url, "--schema", &a.schema])
                .args(["--concurrency", &a.concurrency.to_string()])
                .args(["--connections", &a.connections.to_string()])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut ran = Vec::new();
    for child in children {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!("a worker failed ({}): {text}", out.status).into());
        }
        let n: u64 = text
            .trim()
            .strip_prefix("ran ")
            .and_then(|t| t.strip_suffix(" jobs"))
            .and_then(|n| n.parse().ok())
            .ok_or(format!("a worker said {text:?}"))?;
        ran.push(n);
    }
    let took = started.elapsed();
    let (jobs, completed, once, started_once, succeeded_once) = verify(&store).await?;
    println!(
        "drained in {:.2} s: {:.0} jobs/s; per process {:?}, {} in all",
        took.as_secs_f64(),
        a.jobs as f64 / took.as_secs_f64(),
        ran,
        ran.iter().sum::<u64>()
    );
    println!(
        "database: {jobs} jobs, {completed} completed, {once} with one attempt, \
         {started_once} started once, {succeeded_once} succeeded once"
    );
    let all = a.jobs as i64;
    let ok = [jobs, completed, once, started_once, succeeded_once] == [all; 5]
        && ran.iter().sum::<u64>() == a.jobs as u64;
    if !ok {
        return Err("some job was lost or ran more than once".into());
    }
    println!("every job ran exactly once");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let a = args()
        .map_err(|e| format!("{e}\nsee the flags at the top of examples/postgres_workers.rs"))?;
    if a.worker {
        work(&a).await
    } else {
        coordinate(&a).await
    }
}
