//! The five-minute tour: an engine on embedded defaults (no server: a SQLite file and
//! artifacts on disk), one custom executor that reports stages and writes a final artifact,
//! a job polled to completion, its timeline, the artifact's bytes, and the signed link an
//! HTTP host would hand out for them. Jobs persist: a
//! second run finds the first run's jobs in the data folder.
//!
//! ```sh
//! cargo run --example quickstart               # data in ./jobworks-data
//! cargo run --example quickstart -- /tmp/demo  # data in a folder of your choice
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use jobworks::{
    ArtifactKey, ArtifactSpec, Engine, EventParams, JobContext, JobError, JobType, ListParams,
    NewJob, ObjectStoreArtifacts, SqliteStore, TenantId, UrlSigner, from_fn,
};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct WordCount {
    text: String,
}

async fn count_words(ctx: JobContext, input: WordCount) -> Result<serde_json::Value, JobError> {
    ctx.stage("counting").await?;
    let words = input.text.split_whitespace().count();
    ctx.progress(0.5, "counted").await?;
    ctx.stage("writing report").await?;
    let report = format!(
        "{words} words in {} characters\n",
        input.text.chars().count()
    );
    ctx.put_artifact(
        ArtifactSpec::new("report.txt", "text/plain").kind("word_count"),
        report,
    )
    .await?;
    Ok(json!({ "words": words }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "jobworks-data".into()),
    );
    std::fs::create_dir_all(data.join("artifacts"))?;
    let store = SqliteStore::open(data.join("jobs.db")).await?;
    let files = object_store::local::LocalFileSystem::new_with_prefix(data.join("artifacts"))?;
    // A random key: the URLs printed below stop working when this process exits.
    let artifacts =
        ObjectStoreArtifacts::new(Arc::new(files), UrlSigner::random("http://127.0.0.1:8080"));
    let engine = Engine::builder()
        .store(store)
        .artifacts(artifacts)
        .executor("WORD_COUNT", from_fn(count_words))
        .build()?;
    engine.start()?;

    let tenant = TenantId::new("acme")?;
    let earlier = engine
        .list(&tenant, ListParams::default().limit(1000))
        .await?
        .jobs;
    println!(
        "{} jobs from earlier runs in {}",
        earlier.len(),
        data.display()
    );

    let job = NewJob::new(
        JobType::new("WORD_COUNT")?,
        json!({ "text": "the quick brown fox jumps over the lazy dog" }),
    );
    let submitted = engine.submit(&tenant, job).await?.job;
    println!("submitted {} ({})", submitted.id, submitted.status);

    // Poll as an HTTP client would, but long-polling: each call returns on the next change.
    let mut job = submitted;
    while !job.status.is_terminal() {
        job = engine
            .wait_for_change(&tenant, job.id, job.revision, Duration::from_secs(10))
            .await?;
        let latest = job
            .latest_event
            .as_ref()
            .map(|e| e.message.as_ref())
            .unwrap_or("");
        println!("  {:<9} {latest}", job.status.as_str());
    }
    println!("result: {}", job.result.clone().unwrap_or_default());

    println!("timeline:");
    let params = EventParams::default().include_internal();
    for event in engine.events(&tenant, job.id, params).await?.events {
        println!(
            "  #{} {:<10} {}",
            event.seq,
            event.kind.as_str(),
            event.message
        );
    }

    // The artifact's bytes, read back through the artifact store.
    let record = job
        .artifacts
        .iter()
        .find(|a| a.name == "report.txt")
        .ok_or("the job wrote no report.txt")?;
    let key = ArtifactKey::of_record(tenant.clone(), job.id, record)?;
    let body = engine.artifacts().get(&key, None).await?;
    let bytes: Vec<bytes::Bytes> = body.stream.try_collect().await?;
    print!(
        "report.txt ({} bytes): {}",
        record.size_bytes,
        String::from_utf8_lossy(&bytes.concat())
    );

    // What an HTTP host hands a client instead: a short-lived signed link. Nothing serves
    // links in this process; the `server` example does.
    let url = engine
        .signed_url(&tenant, job.id, "report.txt", None)
        .await?;
    println!(
        "signed link (valid until {}, served only by an HTTP host such as
  `cargo run --example server --features http`):
  {}",
        url.expires_at, url.url
    );

    engine.shutdown().await;
    Ok(())
}
