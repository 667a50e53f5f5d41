//! Queue settings: stored per queue, shared by every tenant and obeyed by every engine on
//! the store.

use std::time::Duration;

use crate::job::QueueName;

/// A queue's stored settings. A queue without stored settings has the defaults: not
/// paused, no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueSettings {
    /// Not claimed from while set: submits are accepted and running jobs finish.
    pub paused: bool,
    /// At most this many of the queue's jobs run at once, across every engine on the
    /// store (1…[`MAX_QUEUE_LIMIT`]). A job counts while its lease is unexpired, so a
    /// crashed engine's jobs hold their slots until their leases expire.
    pub max_running: Option<u32>,
    /// At most this many of the queue's jobs that share a
    /// [`concurrency_key`](crate::Job::concurrency_key) run at once, across every engine
    /// (1…[`MAX_QUEUE_LIMIT`]); jobs without a key are not limited by it.
    pub max_running_per_key: Option<u32>,
    /// At most `limit` of the queue's jobs start per `period`, across every engine.
    pub rate: Option<RateLimit>,
}

/// The largest `max_running` a queue may have.
pub const MAX_QUEUE_LIMIT: u32 = 100_000;

/// A queue's rate limit: at most `limit` starts per `period`, and at most `burst` at once
/// after a quiet spell (a token bucket of `burst` tokens refilled at `limit` per `period`).
/// The bucket is kept in the store, so the limit is global, not per engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Starts per period (1…1,000,000).
    pub limit: u32,
    /// The period (1 ms…24 h).
    pub period: Duration,
    /// Starts at once (1…1,000,000).
    pub burst: u32,
}

impl RateLimit {
    /// `limit` starts per `period`, with a burst of `limit`.
    pub fn new(limit: u32, period: Duration) -> Self {
        RateLimit {
            limit,
            period,
            burst: limit,
        }
    }

    /// Sets the burst.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// The time between two starts at the steady rate, in microseconds (at least 1).
    pub fn interval_micros(&self) -> i64 {
        let period = i64::try_from(self.period.as_micros()).unwrap_or(i64::MAX);
        (period / i64::from(self.limit.max(1))).max(1)
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// [`Error::Invalid`](crate::Error::Invalid) naming the field.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::Error;
        if !(1..=1_000_000).contains(&self.limit) {
            return Err(Error::invalid(
                "rate.limit",
                "must be between 1 and 1000000",
            ));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(86_400)).contains(&self.period) {
            return Err(Error::invalid(
                "rate.period_ms",
                "must be between 1 and 86400000",
            ));
        }
        if !(1..=1_000_000).contains(&self.burst) {
            return Err(Error::invalid(
                "rate.burst",
                "must be between 1 and 1000000",
            ));
        }
        Ok(())
    }
}

/// A change to a queue's settings: what is left `None` keeps its value.
///
/// ```
/// use jobworks::{QueuePatch, QueueSettings};
/// let mut settings = QueueSettings::default();
/// QueuePatch::default().paused(true).apply(&mut settings);
/// assert!(settings.paused);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuePatch {
    /// Pauses (`true`) or resumes (`false`) the queue.
    pub paused: Option<bool>,
    /// Sets (`Some(Some(n))`) or removes (`Some(None)`) the limit on running jobs.
    pub max_running: Option<Option<u32>>,
    /// Sets or removes the limit on running jobs per concurrency key.
    pub max_running_per_key: Option<Option<u32>>,
    /// Sets or removes the rate limit (its bucket starts full).
    pub rate: Option<Option<RateLimit>>,
}

impl QueuePatch {
    /// Pauses or resumes the queue.
    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = Some(paused);
        self
    }

    /// Limits (or, with `None`, stops limiting) how many of the queue's jobs run at once.
    pub fn max_running(mut self, max: Option<u32>) -> Self {
        self.max_running = Some(max);
        self
    }

    /// Limits (or, with `None`, stops limiting) how many of the queue's jobs with one
    /// concurrency key run at once.
    pub fn max_running_per_key(mut self, max: Option<u32>) -> Self {
        self.max_running_per_key = Some(max);
        self
    }

    /// Limits (or, with `None`, stops limiting) how many of the queue's jobs start per
    /// period.
    pub fn rate(mut self, rate: Option<RateLimit>) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// [`Error::Invalid`](crate::Error::Invalid) naming the field.
    pub fn validate(&self) -> crate::Result<()> {
        if let Some(Some(rate)) = &self.rate {
            rate.validate()?;
        }
        for (field, max) in [
            ("max_running", self.max_running),
            ("max_running_per_key", self.max_running_per_key),
        ] {
            if let Some(Some(n)) = max
                && !(1..=MAX_QUEUE_LIMIT).contains(&n)
            {
                return Err(crate::Error::invalid(field, "must be between 1 and 100000"));
            }
        }
        Ok(())
    }

    /// Applies the change to `settings`.
    pub fn apply(&self, settings: &mut QueueSettings) {
        if let Some(paused) = self.paused {
            settings.paused = paused;
        }
        if let Some(max) = self.max_running {
            settings.max_running = max;
        }
        if let Some(max) = self.max_running_per_key {
            settings.max_running_per_key = max;
        }
        if let Some(rate) = self.rate {
            settings.rate = rate;
        }
    }

    /// Whether the change may let more jobs be claimed (idle engines are then woken): a
    /// resume, or a limit changed or removed.
    pub fn may_free_work(&self) -> bool {
        self.paused == Some(false)
            || self.max_running.is_some()
            || self.max_running_per_key.is_some()
            || self.rate.is_some()
    }
}

/// A cap on one tenant's unfinished (queued or running) jobs, in one queue or in all,
/// checked when jobs are submitted: a submit that would go over it creates nothing
/// ([`Error::QuotaExceeded`](crate::Error::QuotaExceeded)). Every tenant has the same
/// quota; set it with [`EngineBuilder::tenant_quota`](crate::EngineBuilder::tenant_quota).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// At most this many unfinished jobs per tenant.
    pub limit: u64,
    /// The queue it counts in (`None`: every queue).
    pub queue: Option<QueueName>,
}

impl Quota {
    /// At most `limit` unfinished jobs per tenant, in all queues.
    pub fn unfinished(limit: u64) -> Quota {
        Quota { limit, queue: None }
    }

    /// Counts in `queue` only.
    pub fn in_queue(mut self, queue: QueueName) -> Quota {
        self.queue = Some(queue);
        self
    }

    /// Whether it counts `job`.
    pub fn counts(&self, job: &crate::Job) -> bool {
        self.queue.as_ref().is_none_or(|q| *q == job.queue)
    }

    /// Checks that `jobs`, once inserted, leave every tenant within every quota, given
    /// `unfinished(tenant, queue)`: how many unfinished jobs the tenant has stored (in
    /// `queue`, or in all). A backend calls it in the insert's own step, where no other
    /// submit of the tenant can come between the count and the insert.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`](crate::Error::QuotaExceeded) for the first quota broken;
    /// what `unfinished` returns.
    pub fn check_all<'a>(
        quotas: &[Quota],
        jobs: impl IntoIterator<Item = &'a crate::Job> + Clone,
        mut unfinished: impl FnMut(&crate::TenantId, Option<&QueueName>) -> crate::Result<u64>,
    ) -> crate::Result<()> {
        for quota in quotas {
            let mut new: std::collections::BTreeMap<&crate::TenantId, u64> = Default::default();
            for job in jobs.clone().into_iter().filter(|j| quota.counts(j)) {
                *new.entry(&job.tenant).or_default() += 1;
            }
            for (tenant, n) in new {
                let stored = unfinished(tenant, quota.queue.as_ref())?;
                if stored.saturating_add(n) > quota.limit {
                    return Err(crate::Error::QuotaExceeded {
                        tenant: tenant.clone(),
                        limit: quota.limit,
                        queue: quota.queue.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A queue and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// Its name.
    pub name: QueueName,
    /// Its stored settings.
    pub settings: QueueSettings,
}

/// A queue as operators see it: its settings and how many jobs it holds, across tenants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Its name.
    pub name: QueueName,
    /// Its stored settings (the defaults when none are stored).
    pub settings: QueueSettings,
    /// Its jobs by status, summed over every tenant.
    pub counts: super::QueueStats,
}
