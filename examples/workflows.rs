//! Workflows: a small pipeline whose steps pass their results on, with a finalizer that
//! reads every outcome, printed as it runs; then the same pipeline with a step that fails,
//! which skips what depends on it while the finalizer still runs.
//!
//! ```text
//!            ┌─▶ count ───┐
//!   fetch ───┤            ├──▶ report        finalizer: runs once all five ended
//!            └─▶ longest ─┘
//! ```
//!
//! ```sh
//! cargo run --example workflows
//! ```

use std::collections::HashMap;
use std::time::Duration;

use jobworks::{
    Engine, JobContext, JobError, JobStatus, JobType, NewJob, NewWorkflow, TenantId, Workflow,
    WorkflowId, WorkflowJob, from_fn,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Fetch {
    text: String,
    #[serde(default)]
    fail: bool,
}

/// A step that takes a moment, so the graph can be watched.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

async fn fetch(_ctx: JobContext, input: Fetch) -> Result<Value, JobError> {
    pause().await;
    if input.fail {
        return Err(JobError::fail("the source is unreachable"));
    }
    Ok(json!({ "text": input.text }))
}

#[derive(Deserialize)]
struct Fetched {
    text: String,
}

async fn count(ctx: JobContext, _input: Value) -> Result<Value, JobError> {
    let fetched: Fetched = ctx.parent_result("fetch").await?;
    pause().await;
    Ok(json!({ "words": fetched.text.split_whitespace().count() }))
}

async fn longest(ctx: JobContext, _input: Value) -> Result<Value, JobError> {
    let fetched: Fetched = ctx.parent_result("fetch").await?;
    pause().await;
    let word = fetched.text.split_whitespace().max_by_key(|w| w.len());
    Ok(json!({ "word": word }))
}

async fn report(ctx: JobContext, _input: Value) -> Result<Value, JobError> {
    let words: Value = ctx.parent_result("count").await?;
    let longest: Value = ctx.parent_result("longest").await?;
    pause().await;
    Ok(json!({
        "summary": format!("{} words, the longest {}", words["words"], longest["word"])
    }))
}

/// The finalizer: every other job's outcome, by key.
async fn summarize(ctx: JobContext, _input: Value) -> Result<Value, JobError> {
    let outcomes: HashMap<String, String> = ctx
        .parents()
        .await?
        .into_iter()
        .map(|p| (p.key, p.status.to_string()))
        .collect();
    Ok(json!({ "outcomes": outcomes }))
}

fn pipeline(text: &str, fail: bool) -> Result<NewWorkflow, jobworks::Error> {
    let job =
        |ty: &str, input: Value| Ok::<_, jobworks::Error>(NewJob::new(JobType::new(ty)?, input));
    Ok(NewWorkflow::new()
        .name("words")
        .job(WorkflowJob::new(
            "fetch",
            job("FETCH", json!({ "text": text, "fail": fail }))?,
        ))
        .job(WorkflowJob::new("count", job("COUNT", json!({}))?).depends_on(["fetch"]))
        .job(WorkflowJob::new("longest", job("LONGEST", json!({}))?).depends_on(["fetch"]))
        .job(WorkflowJob::new("report", job("REPORT", json!({}))?).depends_on(["count", "longest"]))
        .finalizer(job("SUMMARIZE", json!({}))?))
}

/// One line per job: its key and status.
fn graph(workflow: &Workflow) -> String {
    workflow
        .jobs
        .iter()
        .chain(&workflow.finalizer)
        .map(|n| format!("{}={}", n.key, n.status))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Prints the graph whenever it changes, until every job ended.
async fn watch(
    engine: &Engine,
    tenant: &TenantId,
    id: WorkflowId,
) -> Result<Workflow, jobworks::Error> {
    let mut last = String::new();
    loop {
        let workflow = engine.workflow(tenant, id).await?;
        let now = graph(&workflow);
        if now != last {
            println!("  [{:>9}] {now}", workflow.status.as_str());
            last = now;
        }
        if workflow.is_finished() {
            return Ok(workflow);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder()
        .executor("FETCH", from_fn(fetch))
        .executor("COUNT", from_fn(count))
        .executor("LONGEST", from_fn(longest))
        .executor("REPORT", from_fn(report))
        .executor("SUMMARIZE", from_fn(summarize))
        .build()?;
    engine.start()?;
    let tenant = TenantId::new("acme")?;

    for (title, fail) in [
        ("a pipeline", false),
        ("the same pipeline, its source down", true),
    ] {
        println!("{title}:");
        let text = "workflows pass results from step to step";
        let submitted = engine
            .submit_workflow(&tenant, pipeline(text, fail)?)
            .await?;
        let done = watch(&engine, &tenant, submitted.id).await?;
        for node in done.jobs.iter().chain(&done.finalizer) {
            let job = engine.get(&tenant, node.id).await?;
            let outcome = match job.status {
                JobStatus::Completed => job.result.unwrap_or_default().to_string(),
                _ => job
                    .latest_event
                    .map(|e| e.message.to_string())
                    .unwrap_or_default(),
            };
            println!("  {:<9} {:<9} {outcome}", node.key, node.status);
        }
        println!("  workflow {}: {}\n", done.id, done.status.as_str());
    }
    engine.shutdown().await;
    Ok(())
}
