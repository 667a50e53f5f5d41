//! The five-minute tour: an engine on embedded defaults (no server), one custom executor
//! that reports stages and writes a final artifact, a job polled to completion, its
//! timeline, and a signed download URL.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use std::time::Duration;

use jobworks::{
    ArtifactSpec, Engine, EventParams, JobContext, JobError, JobType, NewJob, TenantId, from_fn,
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
    let engine = Engine::builder()
        .executor("WORD_COUNT", from_fn(count_words))
        .build()?;
    engine.start()?;

    let tenant = TenantId::new("acme")?;
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
        println!("  status {}", job.status);
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

    let url = engine
        .signed_url(&tenant, job.id, "report.txt", None)
        .await?;
    println!(
        "report.txt (valid until {}):\n  {}",
        url.expires_at, url.url
    );

    engine.shutdown().await;
    Ok(())
}
