//! PostgreSQL under stress: two engines on separate pools share one queue, and the
//! server drops every connection of an engine in the middle of a drain. Ignored unless
//! `JOBWORKS_TEST_POSTGRES_URL` is set when they are built.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobworks::{
    Engine, EventKind, EventParams, JobContext, JobError, JobStatus, JobStore, JobType, NewJob,
    TenantId, from_fn,
};
use serde_json::json;

mod pg {
    include!("support/postgres.rs");
}

const JOBS: u64 = 2000;

type Executions = Arc<Mutex<HashMap<u64, u32>>>;

fn engine(store: jobworks::PostgresStore, executions: Executions) -> Engine {
    Engine::builder()
        .store(store)
        .executor(
            "WORK",
            from_fn(move |_ctx: JobContext, n: u64| {
                let executions = executions.clone();
                async move {
                    *executions.lock().unwrap().entry(n).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok::<_, JobError>(n)
                }
            }),
        )
        .concurrency(16)
        .lease_ttl(Duration::from_secs(2))
        .reap_interval(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(500))
        .build()
        .unwrap()
}

async fn submit_all(engine: &Engine, tenant: &TenantId) -> Vec<jobworks::JobId> {
    let ty = JobType::new("WORK").unwrap();
    let mut ids = Vec::new();
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(500) {
        let jobs = chunk
            .iter()
            .map(|&n| NewJob::new(ty.clone(), json!(n)))
            .collect();
        ids.extend(
            engine
                .submit_many(tenant, jobs)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.job.id),
        );
    }
    ids
}

async fn wait_for_all(engine: &Engine) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stats = engine.stats().await;
        if let Ok(stats) = stats
            && stats.completed == JOBS
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not drained: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every job completed exactly once: one `succeeded` event, status completed.
async fn assert_completed_once(engine: &Engine, tenant: &TenantId, ids: &[jobworks::JobId]) {
    for &id in ids {
        let job = engine.get(tenant, id).await.unwrap();
        assert_eq!(job.status, JobStatus::Completed, "job {id}");
        let events = engine
            .events(
                tenant,
                id,
                EventParams::default().include_internal().limit(1000),
            )
            .await
            .unwrap()
            .events;
        let done = events
            .iter()
            .filter(|e| e.kind == EventKind::Succeeded)
            .count();
        assert_eq!(done, 1, "job {id} completed {done} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn two_engines_on_two_pools_share_one_queue() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let first = schemas.fresh(&url).await;
    let schema = first.schema().to_owned();
    let second = jobworks::PostgresStore::builder(&url)
        .schema(&schema)
        .connect()
        .await
        .unwrap();
    let executions: Executions = Arc::default();
    let a = engine(first, executions.clone());
    let b = engine(second, executions.clone());
    let tenant = TenantId::new("acme").unwrap();
    a.start().unwrap();
    b.start().unwrap();
    let ids = submit_all(&a, &tenant).await;
    wait_for_all(&a).await;
    a.shutdown().await;
    b.shutdown().await;
    assert_completed_once(&a, &tenant, &ids).await;
    {
        let executions = executions.lock().unwrap();
        assert_eq!(executions.len() as u64, JOBS, "every job ran");
        assert!(executions.values().all(|&n| n == 1), "a job ran twice");
    }
    drop((a, b));
    schemas.drop_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn killed_connections_lose_no_job_and_complete_none_twice() {
    drain_through_killed_connections(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn killed_connections_with_asynchronous_finishes() {
    drain_through_killed_connections(false).await;
}

async fn drain_through_killed_connections(durable_finishes: bool) {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store = schemas
        .fresh_with(&url, |b| b.durable_finishes(durable_finishes))
        .await;
    let schema = store.schema().to_owned();
    let executions: Executions = Arc::default();
    let engine = engine(store, executions.clone());
    let tenant = TenantId::new("acme").unwrap();
    let ids = submit_all(&engine, &tenant).await;
    engine.start().unwrap();

    let admin = jobworks::PostgresStore::builder(&url)
        .schema("public")
        .connect()
        .await
        .unwrap();
    let mut killed = 0;
    for quarter in 1..=3 {
        // Strike at a quarter, half and three quarters of the drain.
        while executions.lock().unwrap().len() < JOBS as usize * quarter / 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let n: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(format!("jobworks:{schema}"))
        .fetch_one(admin.pool())
        .await
        .unwrap();
        killed += n as usize;
        if executions.lock().unwrap().len() as u64 >= JOBS {
            break;
        }
    }
    assert!(killed > 0, "no connection was terminated");
    wait_for_all(&engine).await;
    engine.shutdown().await;
    assert_completed_once(&engine, &tenant, &ids).await;
    {
        let executions = executions.lock().unwrap();
        assert_eq!(executions.len() as u64, JOBS, "every job ran");
        let reruns = executions.values().filter(|&&n| n > 1).count();
        eprintln!(
            "terminated {killed} connections; {reruns} jobs ran again after a lost connection"
        );
    }
    drop(engine);
    drop(admin);
    schemas.drop_all(&url).await;
}

/// sqlx's `begin` is not cancel safe; the store must not let a call dropped in the middle of
/// `BEGIN` leave a pooled connection inside a transaction, where every later write on it
/// would stay uncommitted and invisible to everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn dropped_calls_leave_no_connection_in_a_transaction() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store = schemas.fresh_with(&url, |b| b.max_connections(1)).await;
    let observer = jobworks::PostgresStore::builder(&url)
        .schema(store.schema())
        .connect()
        .await
        .unwrap();
    let engine = engine(store, Executions::default());
    let tenant = TenantId::new("acme").unwrap();
    let ty = JobType::new("WORK").unwrap();
    for call in 0..300u64 {
        let job = engine
            .submit(&tenant, NewJob::new(ty.clone(), json!(call)))
            .await;
        let id = job.unwrap().job.id;
        // Give up on a cancel (a transaction) somewhere between before and after BEGIN.
        let cut = Duration::from_micros(call % 40 * 10);
        let _ = tokio::time::timeout(cut, engine.cancel(&tenant, id)).await;
        let probe = engine
            .submit(&tenant, NewJob::new(ty.clone(), json!(call)))
            .await;
        let probe = probe.unwrap().job.id;
        assert!(
            observer.get(&tenant, probe).await.is_ok(),
            "call {call}: a submit after a dropped cancel was never committed"
        );
    }
    drop((engine, observer));
    schemas.drop_all(&url).await;
}
