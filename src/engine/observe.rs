//! The engine's metrics and their names, through the `metrics` facade: whatever recorder
//! the host installs receives them (Prometheus through `http::install_prometheus` with
//! the `http` feature, OpenTelemetry through its own bridge), and without one they cost
//! next to nothing.
//!
//! Counters and histograms carry the labels `queue` and `type`; gauges carry `queue`.
//! Every engine sets the gauges from the store's counts, across tenants, at each of its
//! reaper's rounds ([`EngineBuilder::reap_interval`](crate::EngineBuilder::reap_interval),
//! 5 s by default), so engines sharing a store report the same depths.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use metrics::Label;

use crate::job::{Job, QueueName};
use crate::store::{Finish, QueueStats};

/// Jobs an operator discarded.
pub const DISCARDED: &str = "jobworks_jobs_discarded_total";
/// Jobs stored by a submit (a replayed idempotency key is not counted).
pub const SUBMITTED: &str = "jobworks_jobs_submitted_total";
/// Attempts started.
pub const STARTED: &str = "jobworks_jobs_started_total";
/// Jobs completed.
pub const COMPLETED: &str = "jobworks_jobs_completed_total";
/// Jobs failed for good (attempts used up, or a permanent error).
pub const FAILED: &str = "jobworks_jobs_failed_total";
/// Failed attempts that will run again.
pub const RETRIED: &str = "jobworks_jobs_retried_total";
/// Attempts that asked to run again later without spending an attempt.
pub const SNOOZED: &str = "jobworks_jobs_snoozed_total";
/// Attempts that ended cancelled.
pub const CANCELLED: &str = "jobworks_jobs_cancelled_total";
/// Seconds from when a job was due (its submit, unless it was delayed) to its start.
pub const SUBMIT_TO_START: &str = "jobworks_submit_to_start_seconds";
/// Seconds an attempt ran.
pub const RUN_DURATION: &str = "jobworks_run_duration_seconds";
/// Queued jobs, by queue, across tenants.
pub const QUEUE_DEPTH: &str = "jobworks_queue_depth";
/// Running jobs, by queue, across tenants.
pub const RUNNING: &str = "jobworks_jobs_running";
/// Jobs waiting for their parents, by queue, across tenants.
pub const WAITING: &str = "jobworks_jobs_waiting";

/// A job's labels, sharing its names' text rather than copying it (a metric costs one
/// small allocation for its labels even without a recorder).
fn labels(job: &Job) -> Vec<Label> {
    vec![
        Label::new("queue", job.queue.shared()),
        Label::new("type", job.job_type.shared()),
    ]
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6
}

/// Counts jobs a submit stored.
pub(crate) fn submitted<'a>(jobs: impl IntoIterator<Item = &'a Job>) {
    for job in jobs {
        metrics::counter!(SUBMITTED, labels(job)).increment(1);
    }
}

/// Counts an attempt's start and how long its job waited for it.
pub(crate) fn started(job: &Job) {
    let labels = labels(job);
    if let Some(started) = job.started_at {
        let waited = seconds(job.run_at.max(job.created_at), started);
        metrics::histogram!(SUBMIT_TO_START, labels.clone()).record(waited);
    }
    metrics::counter!(STARTED, labels).increment(1);
}

/// Counts an attempt's recorded outcome and how long it ran.
pub(crate) fn ended(job: &Job, outcome: &Finish, now: DateTime<Utc>) {
    let labels = labels(job);
    let counter = match outcome {
        Finish::Completed { .. } => COMPLETED,
        Finish::Failed { .. } => FAILED,
        Finish::Retry { .. } => RETRIED,
        Finish::Snoozed { .. } => SNOOZED,
        Finish::Cancelled => CANCELLED,
        // A hand-back at shutdown: the attempt is given back, not ended.
        Finish::Released => return,
    };
    if let Some(started) = job.started_at {
        metrics::histogram!(RUN_DURATION, labels.clone()).record(seconds(started, now));
    }
    metrics::counter!(counter, labels).increment(1);
}

/// Counts an operator's discard.
pub(crate) fn discarded(job: &Job) {
    metrics::counter!(DISCARDED, labels(job)).increment(1);
}

/// Sets the gauges of every queue from the store's counts; queues that no longer have
/// jobs read zero.
pub(crate) fn depths(stats: &BTreeMap<QueueName, QueueStats>, known: &[QueueName]) {
    let zero = QueueStats::default();
    let names = stats
        .keys()
        .chain(known.iter().filter(|q| !stats.contains_key(*q)));
    for queue in names {
        let counts = stats.get(queue).unwrap_or(&zero);
        let label = [("queue", queue.to_string())];
        metrics::gauge!(QUEUE_DEPTH, &label).set(counts.queued as f64);
        metrics::gauge!(RUNNING, &label).set(counts.running as f64);
        metrics::gauge!(WAITING, &label).set(counts.waiting as f64);
    }
}
