//! One attempt: the executor run with its heartbeat, timeout, cancellation and panics
//! caught, and its outcome recorded.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde_json::Value;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::EngineInner;
use crate::executor::{JobContext, JobError, JobErrorKind};
use crate::store::{ClaimedJob, Finish, Held, Lease};
use crate::{Error, Result};

/// How an attempt ended, before it is recorded.
enum Ended {
    Returned(Result<Value, JobError>),
    Panicked(String),
    TimedOut(Duration),
    LeaseLost,
    HandBack,
}

/// Runs an attempt; what to record of it, unless its lease was lost.
pub(super) async fn run_job(
    engine: &EngineInner,
    hand_back: &CancellationToken,
    claimed: ClaimedJob,
    cancel: CancellationToken,
) -> Option<(JobContext, Lease, Finish)> {
    let config = &engine.config;
    let held = Held::new(&claimed);
    let ClaimedJob { job, mut lease, .. } = claimed;
    let Some(registration) = engine.executors.get(&job.job_type) else {
        // Claims are filtered by type, so only a store bug gets here.
        error!("claimed a job with no executor");
        return None;
    };
    let attempts = (job.attempts, job.max_attempts);
    super::observe::started(&job);
    let ctx = JobContext::new(
        job,
        held,
        engine.store.clone(),
        engine.artifacts.clone(),
        cancel.clone(),
    );
    let execution = AssertUnwindSafe(registration.executor.execute(ctx.clone())).catch_unwind();
    tokio::pin!(execution);
    let deadline = registration.timeout.map(|t| Instant::now() + t);
    let mut next_beat = Instant::now() + config.heartbeat_interval;
    let ended = loop {
        tokio::select! {
            biased;
            result = &mut execution => break match result {
                Ok(result) => Ended::Returned(result),
                Err(panic) => Ended::Panicked(panic_message(&*panic)),
            },
            _ = hand_back.cancelled() => break Ended::HandBack,
            _ = sleep_until(deadline.unwrap_or(next_beat)), if deadline.is_some() => {
                break Ended::TimedOut(registration.timeout.unwrap_or_default());
            }
            _ = sleep_until(next_beat) => {
                match ctx.held().heartbeat(ctx.store(), config.lease_ttl).await {
                    Ok(status) => {
                        lease.expires_at = status.expires_at;
                        if status.cancel_requested {
                            cancel.cancel();
                        }
                        next_beat = Instant::now() + config.heartbeat_interval;
                    }
                    Err(Error::LeaseLost { .. }) => break Ended::LeaseLost,
                    Err(e) => {
                        warn!(error = %e, "heartbeat failed; retrying");
                        next_beat = Instant::now() + config.heartbeat_interval / 4;
                    }
                }
            }
        }
    };
    let retry = (&registration.retry, engine.store.clock().now());
    let outcome = match ended {
        Ended::LeaseLost => {
            cancel.cancel();
            warn!("lease lost; the attempt's result is discarded");
            return None;
        }
        Ended::HandBack => Finish::Released,
        Ended::Returned(Ok(result)) => Finish::Completed { result },
        Ended::Returned(Err(e)) => failure(&e, cancel.is_cancelled(), attempts, retry),
        Ended::Panicked(msg) => failure(
            &JobError::retry(format!("executor panicked: {msg}")),
            false,
            attempts,
            retry,
        ),
        Ended::TimedOut(after) => failure(
            &JobError::retry(format!("timed out after {after:?}")),
            false,
            attempts,
            retry,
        ),
    };
    Some((ctx, lease, outcome))
}

/// Records an attempt's outcome, retrying while the store is unreachable and the lease
/// may still hold. A retry after a commit whose answer was lost finds the lease gone,
/// which is harmless: the outcome was recorded.
pub(super) async fn record(engine: &EngineInner, ctx: &JobContext, lease: &Lease, outcome: Finish) {
    let mut delay = Duration::from_millis(20);
    loop {
        match ctx.held().finish(ctx.store(), &outcome).await {
            Ok(()) => {
                super::observe::ended(ctx.job(), &outcome, engine.store.clock().now());
                return debug!("attempt recorded");
            }
            Err(Error::LeaseLost { .. }) => {
                return warn!("lease lost; the attempt's result is discarded");
            }
            Err(e) if e.is_transient() && engine.store.clock().now() + delay < lease.expires_at => {
                warn!(error = %e, "could not record the attempt; retrying");
                sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                return error!(error = %e, "could not record the attempt; it runs again after the lease expires");
            }
        }
    }
}

/// The store outcome of a failed attempt.
fn failure(
    e: &JobError,
    cancel_requested: bool,
    (attempt, max): (u32, u32),
    (retry, now): (&crate::RetryPolicy, DateTime<Utc>),
) -> Finish {
    let error = e.message().to_owned();
    if cancel_requested {
        return Finish::Cancelled;
    }
    let delay = match e.kind() {
        // A snooze gives its attempt back, so it is open to a job on its last attempt.
        JobErrorKind::Snooze(delay) => {
            let run_at = later(now, delay);
            return Finish::Snoozed {
                reason: error,
                run_at,
            };
        }
        _ if attempt >= max => return Finish::Failed { error },
        JobErrorKind::Retry => retry.backoff(attempt),
        JobErrorKind::RetryAfter(delay) => delay,
        _ => return Finish::Failed { error },
    };
    let run_at = later(now, delay);
    Finish::Retry { error, run_at }
}

/// The longest an executor may put its job off (a retry or a snooze); longer delays are
/// cut to it, so no delay overflows a time.
const MAX_DELAY: Duration = Duration::from_secs(366 * 24 * 3600);

/// `delay` (at most [`MAX_DELAY`]) after `now`.
fn later(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    let delay = chrono::Duration::from_std(delay.min(MAX_DELAY)).unwrap_or_default();
    now.checked_add_signed(delay).unwrap_or(now)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_cut_to_a_year_and_never_overflow() {
        let now = crate::job::now();
        let day = chrono::Duration::days(1);
        assert_eq!(
            later(now, Duration::from_secs(60)),
            now + chrono::Duration::seconds(60)
        );
        assert_eq!(later(now, Duration::MAX), now + day * 366);
        let policy = crate::RetryPolicy::default();
        for e in [
            JobError::retry_after("x", Duration::MAX),
            JobError::snooze(Duration::MAX),
        ] {
            match failure(&e, false, (1, 3), (&policy, now)) {
                Finish::Retry { run_at, .. } | Finish::Snoozed { run_at, .. } => {
                    assert_eq!(run_at, now + day * 366);
                }
                other => panic!("{other:?}"),
            }
        }
        // A snooze on the last attempt is still a snooze: it gives the attempt back.
        let last = failure(
            &JobError::snooze(Duration::ZERO),
            false,
            (3, 3),
            (&policy, now),
        );
        assert!(matches!(last, Finish::Snoozed { .. }), "{last:?}");
        let cancelled = failure(
            &JobError::snooze(Duration::ZERO),
            true,
            (1, 3),
            (&policy, now),
        );
        assert_eq!(cancelled, Finish::Cancelled);
    }
}
