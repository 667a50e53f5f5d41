//! The rules every backend applies, so they agree: what finishing, reaping, claiming and
//! cancelling do to a job and which event records it. A backend loads the job, applies a
//! rule, and writes the job and the event back in one atomic step.

use chrono::{DateTime, Utc};

use super::Finish;
use crate::job::{EventKind, Job, JobStatus, NewEvent};
use crate::{Error, Result};

/// The store-side effect of finishing an attempt: the new status, error and event. Shared
/// by every backend so they agree on the rules (retry with no attempts left fails, etc.).
///
/// `attempts`/`max_attempts` are the job's counters before the change; `cancel_requested`
/// turns any non-success outcome into a cancellation.
pub fn plan_finish(
    outcome: &Finish,
    attempts: u32,
    max_attempts: u32,
    cancel_requested: bool,
) -> FinishPlan {
    let exhausted = attempts >= max_attempts;
    match outcome {
        Finish::Completed { .. } => FinishPlan {
            status: JobStatus::Completed,
            event: NewEvent::new(EventKind::Succeeded, "completed"),
            error: None,
            attempts,
        },
        Finish::Failed { .. } | Finish::Retry { .. } | Finish::Cancelled if cancel_requested => {
            FinishPlan {
                status: JobStatus::Cancelled,
                event: NewEvent::new(EventKind::Cancelled, "cancelled while running"),
                error: None,
                attempts,
            }
        }
        Finish::Cancelled => FinishPlan {
            status: JobStatus::Cancelled,
            event: NewEvent::new(EventKind::Cancelled, "cancelled"),
            error: None,
            attempts,
        },
        Finish::Failed { error } => FinishPlan {
            status: JobStatus::Failed,
            event: NewEvent::new(EventKind::Failed, error.clone()),
            error: Some(error.clone()),
            attempts,
        },
        Finish::Retry { error, .. } if exhausted => FinishPlan {
            status: JobStatus::Failed,
            event: NewEvent::new(EventKind::Failed, error.clone())
                .with_payload(serde_json::json!({"attempts_exhausted": true})),
            error: Some(error.clone()),
            attempts,
        },
        Finish::Retry { error, run_at } => FinishPlan {
            status: JobStatus::Queued,
            event: NewEvent::new(EventKind::Retrying, error.clone()).with_payload(
                serde_json::json!({"attempt": attempts, "run_at": run_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}),
            ),
            error: Some(error.clone()),
            attempts,
        },
        Finish::Released => FinishPlan {
            status: JobStatus::Queued,
            event: NewEvent::new(EventKind::Released, "handed back by a worker shutting down"),
            error: None,
            attempts: attempts.saturating_sub(1),
        },
    }
}

/// What [`plan_finish`] decided.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishPlan {
    /// The job's new status.
    pub status: JobStatus,
    /// The event that records it.
    pub event: NewEvent,
    /// The job's new `error` field.
    pub error: Option<String>,
    /// The job's new attempt count.
    pub attempts: u32,
}

/// The reaper's decision for a job whose lease expired; shared by every backend.
pub fn plan_reap(attempts: u32, max_attempts: u32, cancel_requested: bool) -> FinishPlan {
    let (status, event, error) = if cancel_requested {
        (
            JobStatus::Cancelled,
            NewEvent::new(EventKind::Cancelled, "cancelled after its worker was lost"),
            None,
        )
    } else if attempts >= max_attempts {
        let msg = "lease expired and no attempts are left";
        (
            JobStatus::Failed,
            NewEvent::new(EventKind::Failed, msg),
            Some(msg.to_owned()),
        )
    } else {
        let msg = "lease expired; the job will run again";
        (
            JobStatus::Queued,
            NewEvent::new(EventKind::Retrying, msg),
            Some(msg.to_owned()),
        )
    };
    FinishPlan {
        status,
        event,
        error,
        attempts,
    }
}

/// Applies a finish or reap plan to a running job's fields and returns the event to
/// append. `outcome` carries the result and the retry time; the reaper passes `None`.
pub fn apply_plan(
    job: &mut Job,
    plan: FinishPlan,
    outcome: Option<&Finish>,
    now: DateTime<Utc>,
) -> NewEvent {
    debug_assert!(JobStatus::can_transition(job.status, plan.status));
    job.status = plan.status;
    job.error = plan.error;
    job.attempts = plan.attempts;
    match outcome {
        Some(Finish::Completed { result }) => job.result = Some(result.clone()),
        Some(Finish::Retry { run_at, .. }) if plan.status == JobStatus::Queued => {
            job.run_at = crate::job::truncate(*run_at).max(now);
        }
        _ if plan.status == JobStatus::Queued => job.run_at = now,
        _ => {}
    }
    if plan.status.is_terminal() {
        job.completed_at = Some(now);
    }
    job.updated_at = now;
    plan.event
}

/// Marks a queued job claimed: running, one more attempt, started now. Returns the
/// `started` event.
pub fn start_attempt(job: &mut Job, now: DateTime<Utc>) -> NewEvent {
    debug_assert!(JobStatus::can_transition(job.status, JobStatus::Running));
    job.status = JobStatus::Running;
    job.attempts += 1;
    job.started_at = Some(now);
    job.progress = None;
    job.updated_at = now;
    NewEvent::new(EventKind::Started, started_message(job.attempts))
}

/// The `started` event's message; the job record holds the same number.
fn started_message(attempt: u32) -> std::borrow::Cow<'static, str> {
    match attempt {
        1 => "attempt 1".into(),
        n => format!("attempt {n}").into(),
    }
}

/// Cancels a job's fields: a queued job becomes cancelled, a running one is asked to stop.
/// Returns the event to append, or `None` when a running job was already asked.
///
/// # Errors
/// [`Error::InvalidTransition`] for a terminal job.
pub fn cancel_plan(job: &mut Job, now: DateTime<Utc>) -> Result<Option<NewEvent>> {
    match job.status {
        JobStatus::Queued => {
            job.status = JobStatus::Cancelled;
            job.completed_at = Some(now);
            job.updated_at = now;
            Ok(Some(NewEvent::new(EventKind::Cancelled, "cancelled")))
        }
        JobStatus::Running if !job.cancel_requested => {
            job.cancel_requested = true;
            job.updated_at = now;
            Ok(Some(NewEvent::new(
                EventKind::CancelRequested,
                "cancellation requested",
            )))
        }
        JobStatus::Running => Ok(None),
        from => Err(Error::InvalidTransition {
            id: job.id,
            from,
            to: JobStatus::Cancelled,
        }),
    }
}
