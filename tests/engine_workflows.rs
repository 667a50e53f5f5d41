//! Workflows through the engine: executors read their parents' results, chains and
//! fan-ins run to completion on each embedded backend, and `wait_idle` waits for the
//! jobs that completions unblock.

use std::sync::Arc;
use std::time::Duration;

use jobworks::{
    Engine, JobContext, JobError, JobStatus, JobStore, JobType, MemoryStore, NewJob, NewWorkflow,
    SqliteStore, TenantId, WorkflowJob, WorkflowStatus, from_fn,
};
use serde_json::{Value, json};

fn engine(store: Arc<dyn JobStore>) -> Engine {
    Engine::builder()
        .store(store)
        .executor(
            "ADD",
            from_fn(|ctx: JobContext, n: u64| async move {
                let mut sum = n;
                for parent in ctx.parents().await? {
                    sum += parent.result.and_then(|r| r.as_u64()).unwrap_or(0);
                }
                Ok::<_, JobError>(sum)
            }),
        )
        .executor(
            "READ",
            from_fn(|ctx: JobContext, key: String| async move {
                let value: u64 = ctx.parent_result(&key).await?;
                Ok::<_, JobError>(value)
            }),
        )
        .concurrency(16)
        .build()
        .expect("engine")
}

fn add(key: &str, n: u64) -> WorkflowJob {
    WorkflowJob::new(key, NewJob::new(JobType::new("ADD").unwrap(), json!(n)))
}

async fn stores() -> Vec<(&'static str, Arc<dyn JobStore>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(dir.path().join("jobs.db"))
        .await
        .expect("open");
    vec![
        ("memory", Arc::new(MemoryStore::new()), None),
        ("sqlite", Arc::new(sqlite), Some(dir)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_passes_results_on_and_wait_idle_waits_for_its_end() {
    let t = TenantId::new("acme").unwrap();
    for (name, store, _dir) in stores().await {
        let engine = engine(store);
        let mut flow = NewWorkflow::new().job(add("j0", 1));
        for i in 1..1000 {
            flow = flow.job(add(&format!("j{i}"), 1).depends_on([format!("j{}", i - 1)]));
        }
        let submitted = engine.submit_workflow(&t, flow).await.expect("submit");
        engine.start().expect("start");
        engine.wait_idle().await;
        let done = engine.workflow(&t, submitted.id).await.expect("read");
        assert_eq!(done.status, WorkflowStatus::Completed, "{name}: {done:?}");
        let last = engine.get(&t, done.jobs[999].id).await.expect("last");
        assert_eq!(
            last.result,
            Some(json!(1000)),
            "{name}: each step added one"
        );
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_reads_every_outcome_and_parent_results_read_by_key() {
    let t = TenantId::new("acme").unwrap();
    for (name, store, _dir) in stores().await {
        let engine = engine(store);
        let mut flow = NewWorkflow::new();
        for i in 0..100 {
            flow = flow.job(add(&format!("p{i}"), i));
        }
        let read = NewJob::new(JobType::new("READ").unwrap(), json!("p7"));
        let reader = WorkflowJob::new("reader", read).depends_on(["p7"]);
        let bad = NewJob::new(JobType::new("READ").unwrap(), json!("missing"));
        let missing = WorkflowJob::new("missing", bad).depends_on(["p1"]);
        flow = flow
            .job(reader)
            .job(missing)
            .finalizer(NewJob::new(JobType::new("ADD").unwrap(), json!(0)));
        let submitted = engine.submit_workflow(&t, flow).await.expect("submit");
        engine.start().expect("start");
        let done = loop {
            let flow = engine.workflow(&t, submitted.id).await.expect("read");
            if flow.status != WorkflowStatus::Running {
                break flow;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(
            done.status,
            WorkflowStatus::Failed,
            "{name}: one step failed"
        );
        let reader = engine.get(&t, done.jobs[100].id).await.expect("reader");
        assert_eq!(reader.result, Some(json!(7)), "{name}");
        let missing = engine.get(&t, done.jobs[101].id).await.expect("missing");
        assert_eq!(missing.status, JobStatus::Failed);
        assert!(
            missing
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("no parent with the key"),
            "{name}: {missing:?}"
        );
        let finalizer = done.finalizer.expect("a finalizer");
        let finalizer = engine.get(&t, finalizer.id).await.expect("finalizer");
        // 0 + 1 + … + 99, plus the reader's 7 and nothing from the failed step.
        assert_eq!(finalizer.result, Some(json!(4950 + 7)), "{name}");
        assert_eq!(finalizer.parents.len(), 102);
        let _: Value = json!(null);
        engine.shutdown().await;
    }
}
