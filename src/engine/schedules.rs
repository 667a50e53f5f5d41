//! Schedules: storing them for a tenant, and making their due ticks' jobs.

use chrono::{DateTime, Utc};
use tracing::{debug, warn};

use super::Engine;
use crate::job::{ScheduleId, TenantId};
use crate::schedule::{
    MAX_SCHEDULES_PER_TENANT, NewSchedule, Schedule, ScheduleJob, SchedulePatch,
};
use crate::{Error, Result};

/// How often a change to a schedule is tried again when a tick wrote it in between.
const PATCH_ATTEMPTS: usize = 10;

impl Engine {
    /// Creates a schedule of the tenant. Its first tick is the first after now.
    ///
    /// # Errors
    /// [`Error::InvalidAt`] for a bad field (`["cron"]`, `["timezone"]`, `["job", "type"]`
    /// for a type without executor), or when the tenant has
    /// [`MAX_SCHEDULES_PER_TENANT`] schedules already.
    ///
    /// # Cancel safety
    /// If dropped, the schedule may or may not have been stored.
    pub async fn create_schedule(&self, tenant: &TenantId, new: NewSchedule) -> Result<Schedule> {
        new.validate()?;
        self.known_template(&new.job)?;
        let store = &self.inner.store;
        if store.schedules(Some(tenant)).await?.len() >= MAX_SCHEDULES_PER_TENANT {
            return Err(Error::at(
                &[],
                format!("a tenant has at most {MAX_SCHEDULES_PER_TENANT} schedules"),
            ));
        }
        let schedule = Schedule::new(tenant.clone(), new, store.clock().now());
        if !store.put_schedule(&schedule, None).await? {
            return Err(Error::Backend {
                backend: store.backend(),
                source: "a fresh schedule id was taken".into(),
            });
        }
        Ok(self.shown(schedule))
    }

    /// The tenant's schedules, by id (oldest first).
    ///
    /// # Errors
    /// Store errors.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn schedules(&self, tenant: &TenantId) -> Result<Vec<Schedule>> {
        let all = self.inner.store.schedules(Some(tenant)).await?;
        Ok(all.into_iter().map(|s| self.shown(s)).collect())
    }

    /// A schedule of the tenant, with its next run.
    ///
    /// # Errors
    /// [`Error::ScheduleNotFound`] when it does not exist or belongs to another tenant.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<Schedule> {
        let found = self.inner.store.schedule(tenant, id).await?;
        found
            .map(|s| self.shown(s))
            .ok_or(Error::ScheduleNotFound { id })
    }

    /// Changes a schedule: the patch's fields replace its own. A resume makes no job for
    /// the ticks that fell while it was paused.
    ///
    /// # Errors
    /// [`Error::ScheduleNotFound`] as for [`schedule`](Self::schedule); [`Error::InvalidAt`]
    /// as for [`create_schedule`](Self::create_schedule).
    ///
    /// # Cancel safety
    /// If dropped, the change may or may not have been stored (whole or not at all).
    pub async fn update_schedule(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        patch: &SchedulePatch,
    ) -> Result<Schedule> {
        if let Some(job) = &patch.job {
            self.known_template(job)?;
        }
        let store = &self.inner.store;
        for _ in 0..PATCH_ATTEMPTS {
            let Some(stored) = store.schedule(tenant, id).await? else {
                return Err(Error::ScheduleNotFound { id });
            };
            let next = patch.apply(&stored, store.clock().now())?;
            if store.put_schedule(&next, Some(stored.revision)).await? {
                return Ok(self.shown(next));
            }
        }
        Err(Error::Unavailable {
            backend: store.backend(),
            source: "the schedule kept changing while it was being updated".into(),
        })
    }

    /// Deletes a schedule; the jobs it made stay.
    ///
    /// # Errors
    /// [`Error::ScheduleNotFound`] as for [`schedule`](Self::schedule).
    ///
    /// # Cancel safety
    /// If dropped, it may or may not have been deleted.
    pub async fn delete_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<()> {
        if self.inner.store.delete_schedule(tenant, id).await? {
            Ok(())
        } else {
            Err(Error::ScheduleNotFound { id })
        }
    }

    /// Makes the jobs of every schedule's due ticks, and answers how many it created.
    ///
    /// A started engine calls this about once a second; a test that moves the store's
    /// [`Clock`](crate::Clock) may call it itself. Engines that call it at the same time
    /// make each tick once between them (the tick is the job's idempotency key), and a
    /// tick is made by whichever engine looks first, so none is lost while any engine
    /// runs. An engine without an executor for a schedule's job type leaves that schedule
    /// to the engines that have one.
    ///
    /// # Errors
    /// Store errors of reading the schedules; a schedule whose tick cannot be made now
    /// (a quota, a store error) is logged and tried again at the next call.
    ///
    /// # Cancel safety
    /// If dropped, some ticks may have been made; the next call makes the rest, once.
    pub async fn tick_schedules(&self) -> Result<usize> {
        // The time first: a tick this look makes fell before it read the schedules, so
        // before any pause it did not see.
        let now = self.inner.store.clock().now();
        let schedules = self.inner.store.schedules(None).await?;
        let mut created = 0;
        for schedule in schedules {
            match self.tick(&schedule, now).await {
                Ok(n) => created += n,
                Err(e) => warn!(error = %e, schedule = %schedule.id, "a schedule's tick failed"),
            }
        }
        Ok(created)
    }

    /// Makes the jobs of `schedule`'s ticks due at `now` and moves its cursor past them.
    async fn tick(&self, schedule: &Schedule, now: DateTime<Utc>) -> Result<usize> {
        let Some(due) = schedule.due(now, self.inner.config.schedule_grace) else {
            return Ok(0);
        };
        let template = &schedule.spec.job;
        if self.known(&template.job_type).is_err() {
            debug!(schedule = %schedule.id, "no executor for the schedule's job type here");
            return Ok(0);
        }
        let mut next = schedule.clone();
        next.cursor = due.cursor;
        let mut created = 0;
        for (i, &at) in due.ticks.iter().enumerate() {
            let job = template.for_tick(schedule.id, at);
            match self.submit(&schedule.tenant, job).await {
                Ok(submitted) => created += usize::from(submitted.created),
                // Made already, before the template changed.
                Err(Error::AlreadyExists { .. }) => {}
                // Nothing made: the next look tries again.
                Err(e) if i == 0 => return Err(e),
                Err(e) => {
                    // The cursor stops before this tick, which the next look tries again.
                    warn!(error = %e, schedule = %schedule.id, tick = %at, "a tick could not be made");
                    next.cursor = due.ticks[i - 1];
                    break;
                }
            }
            next.last_run_at = Some(at);
        }
        next.revision += 1;
        // Refused when another engine or a change came first: the next look starts from
        // what they stored, and the ticks made here are replays there.
        self.inner
            .store
            .put_schedule(&next, Some(schedule.revision))
            .await?;
        Ok(created)
    }

    /// [`Error::InvalidAt`] at `["job", "type"]` unless the template's type has an executor.
    fn known_template(&self, job: &ScheduleJob) -> Result<()> {
        self.known(&job.job_type)
            .map_err(|e| Error::at(&[&"job", &"type"], e.to_string()))
    }

    /// `schedule` with its next run as of now.
    pub(super) fn shown(&self, schedule: Schedule) -> Schedule {
        let now = self.inner.store.clock().now();
        schedule.with_next_run(now, self.inner.config.schedule_grace)
    }
}
