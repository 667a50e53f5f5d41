//! Operator actions: retry, requeue, cancel and discard, one job at a time or in bulk by
//! a filter (capped, with a dry run). Retry, requeue and cancel leave an `operator` event
//! on the job's timeline; a discard, whose timeline goes with the job, is logged.

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::Engine;
use super::across::Tenants;
use crate::job::{Job, JobId, JobStatus, JobType, QueueName, ScheduleId, TenantId};
use crate::store::{JobStoreExt, ListParams, Operator};
use crate::{Error, Result};

/// The most jobs one bulk action may select.
pub const MAX_BULK: usize = 10_000;

/// What a bulk action does to each job its filter selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkAction {
    /// [`Engine::retry`]: failed and cancelled jobs are queued again.
    Retry,
    /// [`Engine::cancel_as`]: queued jobs are cancelled, running ones asked to stop.
    Cancel,
    /// [`Engine::discard`]: finished jobs are deleted with their timelines and bytes.
    Discard,
}

/// Which of a tenant's jobs a bulk action selects: every condition given must hold (an
/// empty list allows any value).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct JobFilter {
    /// Any of these statuses.
    pub statuses: Vec<JobStatus>,
    /// Any of these types.
    pub types: Vec<JobType>,
    /// Any of these queues.
    pub queues: Vec<QueueName>,
    /// The job's error contains this text.
    pub error: Option<String>,
    /// Submitted at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Submitted at or before this time.
    pub until: Option<DateTime<Utc>>,
    /// Made by this schedule's ticks.
    pub schedule: Option<ScheduleId>,
}

impl JobFilter {
    /// Also selects jobs in `status`.
    pub fn status(mut self, status: JobStatus) -> Self {
        self.statuses.push(status);
        self
    }

    /// Also selects jobs of `job_type`.
    pub fn job_type(mut self, job_type: JobType) -> Self {
        self.types.push(job_type);
        self
    }

    /// Also selects jobs in `queue`.
    pub fn queue(mut self, queue: QueueName) -> Self {
        self.queues.push(queue);
        self
    }

    /// Selects only jobs whose error contains `text`.
    pub fn error_contains(mut self, text: impl Into<String>) -> Self {
        self.error = Some(text.into());
        self
    }

    /// Selects only jobs submitted in `since..=until` (either end open when `None`).
    pub fn submitted(mut self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Self {
        self.since = since;
        self.until = until;
        self
    }

    /// The store's filters that read what this filter selects a page of `limit` at a
    /// time: one status, type and queue each when it names one, and a start after the
    /// newest id the `until` bound allows (ids sort by submit time). The rest is
    /// [`matches`](Self::matches)' to check.
    pub fn list_params(&self, limit: usize) -> ListParams {
        let mut params = ListParams::default().limit(limit);
        if let [status] = self.statuses[..] {
            params = params.status(status);
        }
        if let [job_type] = &self.types[..] {
            params = params.job_type(job_type.clone());
        }
        if let [queue] = &self.queues[..] {
            params = params.queue(queue.clone());
        }
        if let Some(schedule) = self.schedule {
            params = params.schedule(schedule);
        }
        let until = self.until.and_then(|t| {
            let ms = u128::try_from(t.timestamp_millis()).ok()?;
            Some(JobId::from_u128((ms + 1) << 80))
        });
        params.before(until)
    }

    /// Selects only jobs made by `schedule`'s ticks.
    pub fn schedule(mut self, schedule: ScheduleId) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// Whether `job` is selected.
    pub fn matches(&self, job: &Job) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&job.status))
            && (self.types.is_empty() || self.types.contains(&job.job_type))
            && (self.queues.is_empty() || self.queues.contains(&job.queue))
            && self.error.as_ref().is_none_or(|needle| {
                job.error
                    .as_ref()
                    .is_some_and(|e| e.contains(needle.as_str()))
            })
            && self.since.is_none_or(|t| job.created_at >= t)
            && self.until.is_none_or(|t| job.created_at <= t)
            && self.schedule.is_none_or(|s| job.schedule_id == Some(s))
    }
}

/// What a bulk action found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkReport {
    /// Jobs the filter selected (at most the limit).
    pub matched: u64,
    /// Jobs the action changed (0 on a dry run); a selected job the action does not apply
    /// to (retrying a completed one) is matched but not applied.
    pub applied: u64,
}

impl Engine {
    /// Queues a failed or cancelled job again with a fresh attempt budget; its earlier
    /// attempts stay on its timeline, with an `operator` event saying who retried it.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a missing job or another tenant's; [`Error::InvalidTransition`]
    /// for a job neither failed nor cancelled.
    pub async fn retry(&self, tenant: &TenantId, id: JobId, by: &Operator) -> Result<Job> {
        self.store().retry(tenant, id, by).await
    }

    /// Makes a queued job that waits for its not-before time due now.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidTransition`] for a job that is not queued.
    pub async fn requeue(&self, tenant: &TenantId, id: JobId, by: &Operator) -> Result<Job> {
        self.store().requeue(tenant, id, by).await
    }

    /// [`cancel`](Self::cancel) by an operator: an `operator` event records who.
    ///
    /// # Errors
    /// As for [`cancel`](Self::cancel).
    pub async fn cancel_as(&self, tenant: &TenantId, id: JobId, by: &Operator) -> Result<Job> {
        let job = self.store().cancel_as(tenant, id, by).await?;
        self.signal_cancel(&job);
        Ok(job)
    }

    /// Deletes a finished job with its timeline, artifact records and artifact bytes;
    /// afterwards it reads as missing and its signed URLs serve nothing. Since its
    /// timeline goes with it, it is logged and counted (the counter
    /// `jobworks_jobs_discarded_total`, labelled by `queue` and `type`, through the
    /// `metrics` facade: whatever recorder the host installs).
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] for a job that has not finished.
    pub async fn discard(&self, tenant: &TenantId, id: JobId, by: &Operator) -> Result<()> {
        let job = self.store().discard(tenant, id).await?;
        if let Err(e) = self.artifacts().delete_job(tenant, id).await {
            warn!(error = %e, job = %id, "could not delete a discarded job's artifact bytes");
        }
        info!(
            job = %id, tenant = %tenant, status = %job.status, actor = %by.actor,
            reason = by.reason.as_deref().unwrap_or(""), "job discarded"
        );
        super::observe::discarded(&job);
        Ok(())
    }

    /// Applies `action` to up to `limit` (1…[`MAX_BULK`]) of the tenant's jobs that
    /// `filter` selects, newest first; with `dry_run`, only counts them.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a limit out of range; store errors as they come (the jobs
    /// changed before one stay changed).
    pub async fn bulk(
        &self,
        tenant: &TenantId,
        action: BulkAction,
        filter: &JobFilter,
        limit: usize,
        dry_run: bool,
        by: &Operator,
    ) -> Result<BulkReport> {
        let only = Tenants::only([tenant.clone()]);
        self.across(&only)
            .bulk(action, filter, limit, dry_run, by)
            .await
    }

    /// Applies `action` to one job: `false` when it is not one the action applies to (or
    /// no longer is).
    pub(super) async fn apply(
        &self,
        action: BulkAction,
        tenant: &TenantId,
        id: JobId,
        by: &Operator,
    ) -> Result<bool> {
        let done = match action {
            BulkAction::Retry => self.retry(tenant, id, by).await.map(drop),
            BulkAction::Cancel => self.cancel_as(tenant, id, by).await.map(drop),
            BulkAction::Discard => self.discard(tenant, id, by).await,
        };
        match done {
            Ok(()) => Ok(true),
            Err(
                Error::InvalidTransition { .. } | Error::Conflict { .. } | Error::NotFound { .. },
            ) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
