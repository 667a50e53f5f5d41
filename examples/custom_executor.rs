//! A typed executor written as a struct: it retries a flaky upstream with backoff, and it
//! stops promptly when its job is cancelled.
//!
//! ```sh
//! cargo run --example custom_executor
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jobworks::{
    Engine, Executor, ExecutorOptions, JobContext, JobError, JobType, NewJob, RetryPolicy, TenantId,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Transcode {
    /// Seconds of media; each takes 100 ms.
    seconds: u32,
}

#[derive(Serialize)]
struct Transcoded {
    frames: u32,
    attempts_needed: u32,
}

/// Transcodes media from an upstream that fails its first two calls.
#[derive(Debug, Default)]
struct Transcoder {
    upstream_calls: AtomicU32,
}

#[async_trait]
impl Executor for Transcoder {
    async fn execute(&self, ctx: JobContext) -> Result<Value, JobError> {
        let input: Transcode = ctx.input()?;
        if self.upstream_calls.fetch_add(1, Ordering::SeqCst) < 2 {
            // Transient: the engine retries after the type's backoff.
            return Err(JobError::retry("upstream returned 503"));
        }
        for second in 0..input.seconds {
            tokio::select! {
                _ = ctx.cancelled() => return Err(JobError::cancelled()),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            let done = f64::from(second + 1) / f64::from(input.seconds);
            ctx.progress(done, format!("{}s of {}s", second + 1, input.seconds))
                .await?;
        }
        let out = Transcoded {
            frames: input.seconds * 30,
            attempts_needed: ctx.attempt(),
        };
        serde_json::to_value(out).map_err(JobError::fail)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let retry = RetryPolicy::default()
        .max_attempts(5)
        .base(Duration::from_millis(200));
    let engine = Engine::builder()
        .executor_with(
            "TRANSCODE",
            Transcoder::default(),
            ExecutorOptions::default()
                .retry(retry)
                .timeout(Duration::from_secs(30)),
        )
        .build()?;
    engine.start()?;
    let tenant = TenantId::new("acme")?;
    let transcode = JobType::new("TRANSCODE")?;

    let short = engine
        .submit(
            &tenant,
            NewJob::new(transcode.clone(), json!({ "seconds": 3 })),
        )
        .await?
        .job;
    let done = engine
        .wait_until_terminal(&tenant, short.id, Duration::from_secs(30))
        .await?;
    println!(
        "short job: {} after {} attempts, result {}",
        done.status,
        done.attempts,
        done.result.unwrap_or_default()
    );

    let long = engine
        .submit(&tenant, NewJob::new(transcode, json!({ "seconds": 600 })))
        .await?
        .job;
    tokio::time::sleep(Duration::from_millis(350)).await;
    engine.cancel(&tenant, long.id).await?;
    let cancelled = engine
        .wait_until_terminal(&tenant, long.id, Duration::from_secs(5))
        .await?;
    let progress = cancelled.progress.map(|p| p.message).unwrap_or_default();
    println!("long job: {} at {progress}", cancelled.status);

    engine.shutdown().await;
    Ok(())
}
