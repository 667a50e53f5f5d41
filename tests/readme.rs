//! The README's promises, kept: its feature table is `Cargo.toml`'s (the one place the
//! features are described; the crate docs render it with `document-features`), and every
//! Rust snippet in it is compiled here, verbatim, between `// README` and `// END` marks.
//! The first one also runs.

#![allow(unused_variables, dead_code, clippy::diverging_sub_expression)]

use std::time::Duration;

use jobworks::{
    JobContext, JobError, JobType, NewJob, NewSchedule, NewWorkflow, QueueName, QueuePatch,
    RateLimit, ScheduleJob, SchedulePatch, TenantId, WorkflowJob, from_fn,
};
use serde_json::{Value, json};

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The code blocks of `markdown` in `lang`, each without its common indentation.
fn blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut current, fence) {
            (None, Some(info)) if info.trim() == lang => current = Some(Vec::new()),
            (Some(lines), Some(_)) => {
                out.push(dedent(lines));
                current = None;
            }
            (Some(lines), None) => lines.push(line),
            (None, _) => {}
        }
    }
    out
}

fn dedent(lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let kept: Vec<&str> = lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect();
    kept.join("\n")
}

/// The regions of this file between `// README` and `// END`, dedented.
fn compiled_snippets() -> Vec<String> {
    let source = include_str!("readme.rs");
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in source.lines() {
        match (line.trim(), &mut current) {
            ("// README", None) => current = Some(Vec::new()),
            ("// END", Some(lines)) => {
                out.push(dedent(lines));
                current = None;
            }
            (_, Some(lines)) => lines.push(line),
            _ => {}
        }
    }
    out
}

#[test]
fn every_rust_snippet_of_the_readme_is_compiled_here() {
    let readme = include_str!("../README.md");
    let compiled = compiled_snippets();
    let snippets = blocks(readme, "rust");
    assert!(snippets.len() >= 7, "the README's snippets were not found");
    for snippet in &snippets {
        assert!(
            compiled.contains(snippet),
            "this README snippet is not compiled in tests/readme.rs (copy it there \
             between // README and // END):\n{snippet}"
        );
    }
    assert_eq!(
        compiled.len(),
        snippets.len(),
        "a compiled snippet left the README"
    );
}

#[test]
fn the_feature_table_is_cargo_tomls() {
    let manifest = include_str!("../Cargo.toml");
    let features = manifest
        .split("\n[features]\n")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [features] table");
    let mut rows = Vec::new();
    let mut doc = None;
    for line in features.lines() {
        if let Some(text) = line.strip_prefix("## ") {
            doc = Some(text);
        } else if let Some((name, _)) = line.split_once(" = ")
            && name != "default"
        {
            let doc = doc
                .take()
                .unwrap_or_else(|| panic!("feature {name} has no ## line"));
            let default = if name == "sqlite" { " (default)" } else { "" };
            rows.push(format!("| `{name}`{default} | {doc} |"));
        }
    }
    let readme = include_str!("../README.md");
    let table = readme
        .split("| feature | what it adds |\n| --- | --- |\n")
        .nth(1)
        .expect("the README's feature table");
    let readme_rows: Vec<&str> = table.lines().take_while(|l| l.starts_with('|')).collect();
    assert_eq!(
        readme_rows, rows,
        "the README's feature table differs from Cargo.toml"
    );
}

#[derive(serde::Deserialize)]
struct Page {
    title: String,
}

async fn send_email(_: JobContext, _: Value) -> Result<Value, JobError> {
    Ok(json!({}))
}

async fn render_report(_: JobContext, _: Value) -> Result<Value, JobError> {
    Ok(json!({}))
}

#[rustfmt::skip]
#[tokio::test]
async fn the_first_snippet_runs() -> Result {
    // README
    use std::time::Duration;
    use jobworks::{Engine, JobContext, JobError, JobType, NewJob, TenantId, from_fn};

    #[derive(serde::Deserialize)]
    struct Resize { width: u32 }

    let engine = Engine::builder()
        .executor("RESIZE", from_fn(|ctx: JobContext, input: Resize| async move {
            ctx.stage("resizing").await?;
            Ok::<_, JobError>(serde_json::json!({ "width": input.width }))
        }))
        .build()?;
    engine.start()?;

    let tenant = TenantId::new("acme")?;
    let job = engine.submit(&tenant, NewJob::new(JobType::new("RESIZE")?, serde_json::json!({"width": 640}))).await?.job;
    let done = engine.wait_until_terminal(&tenant, job.id, Duration::from_secs(30)).await?;
    // END
    assert_eq!(done.result, Some(json!({"width": 640})));
    engine.shutdown().await;
    Ok(())
}

#[rustfmt::skip]
async fn queues(store: jobworks::MemoryStore, tenant: TenantId, report: JobType, input: Value) -> Result {
    use jobworks::Engine;
    let send_email = from_fn(send_email);
    let render_report = from_fn(render_report);
    // README
    let engine = Engine::builder()
        .store(store)
        .executor("EMAIL", send_email)
        .executor("REPORT", render_report)
        .concurrency(16)           // the default queue
        .queue("reports", 2)       // at most two reports at once in this engine
        .build()?;
    engine.submit(&tenant, NewJob::new(report, input).queue(QueueName::new("reports")?)).await?;
    engine.pause_queue(&QueueName::new("reports")?).await?;   // every engine stops claiming
    let limits = QueuePatch::default()
        .max_running(Some(8))                                  // across every engine
        .max_running_per_key(Some(1))                          // one at a time per key
        .rate(Some(RateLimit::new(5, Duration::from_secs(1)))); // 5 starts per second
    engine.configure_queue(&QueueName::new("reports")?, limits).await?;
    // END
    Ok(())
}

#[rustfmt::skip]
async fn workflows(
    engine: jobworks::Engine,
    tenant: TenantId,
    [fetch, parse, score, notify]: [JobType; 4],
    ctx: JobContext,
) -> Result {
    // README
    let step = |key: &str, ty: &JobType| WorkflowJob::new(key, NewJob::new(ty.clone(), json!({})));
    let flow = NewWorkflow::new()
        .job(step("fetch", &fetch))
        .job(step("parse", &parse).depends_on(["fetch"]))
        .job(step("score", &score).depends_on(["fetch"]))
        .finalizer(NewJob::new(notify, json!({})));
    let workflow = engine.submit_workflow(&tenant, flow).await?;
    // in the `parse` executor:
    let page: Page = ctx.parent_result("fetch").await?;
    // END
    Ok(())
}

#[rustfmt::skip]
async fn schedules(engine: jobworks::Engine, tenant: TenantId) -> Result {
    // README
    let job = ScheduleJob::new(JobType::new("CLEANUP")?, json!({"older_than_days": 30}));
    let nightly = NewSchedule::new("nightly cleanup", "0 3 * * *", job)
        .timezone("Europe/Berlin")
        .catch_up(3); // after an outage, make at most the last 3 missed nights
    let schedule = engine.create_schedule(&tenant, nightly).await?;
    engine.update_schedule(&tenant, schedule.id, &SchedulePatch::paused(true)).await?;
    // END
    Ok(())
}

#[rustfmt::skip]
async fn stores() -> Result {
    // README
    let store = jobworks::SqliteStore::open("jobworks-data/jobs.db").await?;
    // or
    let store = jobworks::PostgresStore::builder("postgres://app@db/app").schema("jobs").connect().await?;
    store.migrate().await?;
    let engine = jobworks::Engine::builder().store(store) /* executors … */ .build()?;
    // END
    Ok(())
}

/// Compiled, never run: it names hosts of the reader's network.
#[rustfmt::skip]
async fn pooled() -> Result {
    // README
    let store = jobworks::PostgresStore::builder("postgres://app@pgbouncer:6432/app")
        .transaction_pooler(true)
        .listen_url("postgres://app@db:5432/app")
        .connect()
        .await?;
    // END
    drop(store);
    Ok(())
}

#[rustfmt::skip]
async fn http(engine: jobworks::Engine) -> Result<axum::Router> {
    // README
    use jobworks::http::{JobsApi, Principal, StaticCredentials};
    let auth = StaticCredentials::new()
        .bearer("secret-token", Principal::new(jobworks::TenantId::new("acme")?, "ci"));
    let app = axum::Router::new().nest("/v1", JobsApi::new(engine, auth).router());
    // END
    Ok(app)
}

/// Compiled, never run: it listens on every address.
#[rustfmt::skip]
async fn serving(app: axum::Router) -> Result {
    // README
    let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    jobworks::http::Server::new()                      // every limit below has this default
        .header_read_timeout(Duration::from_secs(30))  // slow headers, and idle keep-alives
        .body_read_timeout(Duration::from_secs(30))    // a body that stalls: 408
        .max_connections_per_client(256)               // refused at accept over this
        .max_connections(10_000)                       // kept under 3/4 of the open-file limit
        .trusted_proxies(["10.0.0.0/8".parse()?])      // whose X-Forwarded-For names the client
        .serve_with_shutdown(listener, app, async { let _ = tokio::signal::ctrl_c().await; })
        .await?;
    // END
    Ok(())
}
