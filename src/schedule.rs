//! Schedules: a cron expression in a time zone that makes jobs, each tick exactly once
//! however many engines run.
//!
//! A schedule is stored per tenant. Every engine looks at the stored schedules about
//! once a second and makes the jobs of the ticks that are due, with the tick
//! (`schedule:{id}:{time}`) as the job's idempotency key: when two engines make the same
//! tick, the store keeps one job. Each schedule remembers how far its ticks were made
//! (a cursor, moved by a write guarded by the schedule's revision), so a tick missed by
//! an engine that died is made by the next engine that looks, and the missed-tick policy
//! decides what happens to ticks no engine made in time.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::job::{JobType, NewJob, QueueName, ScheduleId, TenantId};
use crate::{Error, Result};

/// Most schedules a tenant may have.
pub const MAX_SCHEDULES_PER_TENANT: usize = 1000;
/// Longest schedule name, in bytes.
pub const MAX_SCHEDULE_NAME_LEN: usize = 128;
/// Longest cron expression, in bytes.
pub const MAX_CRON_LEN: usize = 256;
/// Largest `catch_up_limit`.
pub const MAX_CATCH_UP: u32 = 100;
/// How late a tick may be made by default and still count as on time
/// ([`EngineBuilder::schedule_grace`](crate::EngineBuilder::schedule_grace)).
pub const DEFAULT_SCHEDULE_GRACE: Duration = Duration::from_secs(10);
/// Most ticks one schedule makes in one look (the newest are kept).
const MAX_TICKS_PER_LOOK: usize = 100;

/// What happens to ticks that no engine made within the grace period (because none ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// They are not made.
    #[default]
    Skip,
    /// One job is made for the newest of them.
    Once,
    /// Jobs are made for the newest `catch_up_limit` of them, oldest first.
    CatchUp,
}

impl Missed {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::Once => "once",
            Missed::CatchUp => "catch_up",
        }
    }
}

/// The job a schedule makes at each tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleJob {
    /// The job's type.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The executor's input.
    #[serde(default = "empty_object")]
    pub input: Value,
    /// The queue it waits in.
    #[serde(default)]
    pub queue: QueueName,
    /// Its priority.
    #[serde(default)]
    pub priority: i32,
    /// Overrides the type's retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl ScheduleJob {
    /// A job of `job_type` with `input`, in the default queue at priority 0.
    pub fn new(job_type: JobType, input: Value) -> Self {
        ScheduleJob {
            job_type,
            input,
            queue: QueueName::default(),
            priority: 0,
            max_attempts: None,
        }
    }

    /// The job of the tick at `at`, keyed by the tick.
    pub(crate) fn for_tick(&self, id: ScheduleId, at: DateTime<Utc>) -> NewJob {
        let mut job = self.template();
        job.run_at = Some(at);
        job.idempotency_key = Some(tick_key(id, at));
        job.tick = Some((id, at));
        job
    }

    fn template(&self) -> NewJob {
        let mut job = NewJob::new(self.job_type.clone(), self.input.clone());
        job.queue = self.queue.clone();
        job.priority = self.priority;
        job.max_attempts = self.max_attempts;
        job
    }
}

/// The idempotency key of a tick: `schedule:{id}:{time}`, which clients cannot use
/// (keys starting with `schedule:` are refused at submit).
pub(crate) fn tick_key(id: ScheduleId, at: DateTime<Utc>) -> String {
    format!("schedule:{id}:{}", at.format("%Y-%m-%dT%H:%M:%SZ"))
}

/// A schedule to create.
///
/// ```
/// use jobworks::{JobType, NewSchedule, ScheduleJob};
/// let nightly = NewSchedule::new(
///     "nightly",
///     "0 3 * * *",
///     ScheduleJob::new(JobType::new("CLEANUP")?, serde_json::json!({})),
/// )
/// .timezone("Europe/Berlin")
/// .catch_up(3);
/// assert!(nightly.validate().is_ok());
/// # Ok::<(), jobworks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewSchedule {
    /// A name for people (1 to 128 bytes).
    pub name: String,
    /// Cron with 5 fields (minute first) or 6 (seconds first).
    pub cron: String,
    /// An IANA time zone (`UTC` by default): the cron expression reads its wall clock.
    pub timezone: String,
    /// The job each tick makes.
    pub job: ScheduleJob,
    /// What happens to ticks no engine made in time.
    pub missed: Missed,
    /// How many missed ticks [`Missed::CatchUp`] makes at most (1 to 100).
    pub catch_up_limit: u32,
    /// Created paused: no ticks until resumed.
    pub paused: bool,
}

impl NewSchedule {
    /// A schedule in UTC that skips missed ticks.
    pub fn new(name: impl Into<String>, cron: impl Into<String>, job: ScheduleJob) -> Self {
        NewSchedule {
            name: name.into(),
            cron: cron.into(),
            timezone: "UTC".into(),
            job,
            missed: Missed::Skip,
            catch_up_limit: 3,
            paused: false,
        }
    }

    /// Reads the cron expression on the wall clock of `timezone` (an IANA name).
    pub fn timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = timezone.into();
        self
    }

    /// Sets the missed-tick policy.
    pub fn missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    /// Makes at most `limit` missed ticks ([`Missed::CatchUp`]).
    pub fn catch_up(mut self, limit: u32) -> Self {
        self.missed = Missed::CatchUp;
        self.catch_up_limit = limit;
        self
    }

    /// Creates it paused.
    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }

    /// Checks every field: the name, the cron expression (which must fire at some
    /// time), the time zone, the catch-up limit and the job's fields.
    ///
    /// # Errors
    /// [`Error::InvalidAt`] with the path to the field (`["cron"]`, `["job", "priority"]`).
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty()
            || self.name.len() > MAX_SCHEDULE_NAME_LEN
            || self.name.chars().any(char::is_control)
        {
            return Err(Error::at(
                &[&"name"],
                "must be 1 to 128 bytes without control characters",
            ));
        }
        let cron = parse_cron(&self.cron)?;
        let tz = parse_timezone(&self.timezone)?;
        if cron
            .find_next_occurrence(&Utc::now().with_timezone(&tz), false)
            .is_err()
        {
            return Err(Error::at(&[&"cron"], "never fires"));
        }
        if !(1..=MAX_CATCH_UP).contains(&self.catch_up_limit) {
            return Err(Error::at(
                &[&"catch_up_limit"],
                format!("must be between 1 and {MAX_CATCH_UP}"),
            ));
        }
        self.job
            .template()
            .validate()
            .map_err(|e| e.within(&[&"job"]))
    }
}

/// Parses a cron expression of 5 fields (minute first) or 6 (seconds first).
fn parse_cron(expr: &str) -> Result<Cron> {
    if expr.len() > MAX_CRON_LEN {
        return Err(Error::at(&[&"cron"], "must be at most 256 bytes"));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| {
            Error::at(
                &[&"cron"],
                format!("not a cron expression of 5 or 6 fields: {e}"),
            )
        })
}

fn parse_timezone(name: &str) -> Result<Tz> {
    Tz::from_str(name).map_err(|_| Error::at(&[&"timezone"], format!("unknown time zone {name:?}")))
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Its id.
    pub id: ScheduleId,
    /// The tenant whose jobs it makes.
    pub tenant: TenantId,
    /// What it is: name, expression, time zone, job, missed-tick policy, paused flag.
    #[serde(flatten)]
    pub spec: NewSchedule,
    /// The tick of the latest job it made.
    pub last_run_at: Option<DateTime<Utc>>,
    /// The next tick it will make (unless paused), filled in by the engine's reads.
    #[serde(skip)]
    pub next_run_at: Option<DateTime<Utc>>,
    /// Every tick up to this time was made or skipped.
    pub cursor: DateTime<Utc>,
    /// Grows by one on every write: what guards the store's writes.
    pub revision: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed (not counting its ticks).
    pub updated_at: DateTime<Utc>,
}

/// The ticks a look at a schedule found due.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Due {
    /// The ticks to make, oldest first.
    pub(crate) ticks: Vec<DateTime<Utc>>,
    /// The newest due tick: the schedule's next cursor.
    pub(crate) cursor: DateTime<Utc>,
}

impl Schedule {
    /// A new schedule of `tenant`, made at `now`: ticks after `now` are its first.
    pub fn new(tenant: TenantId, new: NewSchedule, now: DateTime<Utc>) -> Self {
        let now = crate::job::truncate(now);
        Schedule {
            id: ScheduleId::new(),
            tenant,
            spec: new,
            last_run_at: None,
            next_run_at: None,
            cursor: now,
            revision: 1,
            created_at: now,
            updated_at: now,
        }
    }

    fn parsed(&self) -> Result<(Cron, Tz)> {
        Ok((
            parse_cron(&self.spec.cron)?,
            parse_timezone(&self.spec.timezone)?,
        ))
    }

    /// The first tick after `after`, if the expression fires again.
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (cron, tz) = self.parsed().ok()?;
        let next = cron
            .find_next_occurrence(&after.with_timezone(&tz), false)
            .ok()?;
        Some(next.with_timezone(&Utc))
    }

    /// Fills in [`next_run_at`](Self::next_run_at): the next tick that will be made at
    /// `now` with `grace` (`None` while paused).
    pub(crate) fn with_next_run(mut self, now: DateTime<Utc>, grace: Duration) -> Self {
        let on_time = now - chrono::Duration::from_std(grace).unwrap_or_default();
        self.next_run_at = if self.spec.paused {
            None
        } else {
            self.next_after(self.cursor.max(on_time))
        };
        self
    }

    /// The ticks due at `now`: those after the cursor at most `grace` late, and the
    /// newest missed ones the policy makes. `None` when no tick is due.
    pub(crate) fn due(&self, now: DateTime<Utc>, grace: Duration) -> Option<Due> {
        if self.spec.paused {
            return None;
        }
        let (cron, tz) = self.parsed().ok()?;
        let first = cron
            .find_next_occurrence(&self.cursor.with_timezone(&tz), false)
            .ok()?
            .with_timezone(&Utc);
        if first > now {
            return None;
        }
        let on_time = now - chrono::Duration::from_std(grace).unwrap_or_default();
        let missed_limit = match self.spec.missed {
            Missed::Skip => 0,
            Missed::Once => 1,
            Missed::CatchUp => self.spec.catch_up_limit as usize,
        };
        // Newest first, from now back to the cursor.
        let mut ticks = Vec::new();
        let mut missed = 0;
        let mut at = now.with_timezone(&tz);
        let mut inclusive = true;
        while ticks.len() < MAX_TICKS_PER_LOOK {
            let Ok(tick) = cron.find_previous_occurrence(&at, inclusive) else {
                break;
            };
            let utc = tick.with_timezone(&Utc);
            if utc <= self.cursor {
                break;
            }
            if utc >= on_time {
                ticks.push(utc);
            } else if missed < missed_limit {
                ticks.push(utc);
                missed += 1;
            } else {
                break;
            }
            at = tick;
            inclusive = false;
        }
        // The newest due tick, which every look agrees on, moves the cursor even when
        // the policy made none of them.
        let cursor = cron
            .find_previous_occurrence(&now.with_timezone(&tz), true)
            .map_or(first, |t| t.with_timezone(&Utc));
        ticks.reverse();
        Some(Due { ticks, cursor })
    }
}

/// A change to a schedule: the fields given are replaced.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SchedulePatch {
    /// A new name.
    pub name: Option<String>,
    /// A new cron expression.
    pub cron: Option<String>,
    /// A new time zone.
    pub timezone: Option<String>,
    /// A new job template.
    pub job: Option<ScheduleJob>,
    /// A new missed-tick policy.
    pub missed: Option<Missed>,
    /// A new catch-up limit.
    pub catch_up_limit: Option<u32>,
    /// Pause (`true`) or resume (`false`).
    pub paused: Option<bool>,
}

impl SchedulePatch {
    /// A patch that pauses or resumes.
    pub fn paused(paused: bool) -> Self {
        SchedulePatch {
            paused: Some(paused),
            ..Default::default()
        }
    }

    /// `schedule` with this patch applied at `now`, checked. A resume moves the cursor
    /// to `now`: ticks that fell while it was paused are not made.
    pub(crate) fn apply(&self, schedule: &Schedule, now: DateTime<Utc>) -> Result<Schedule> {
        let mut next = schedule.clone();
        fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *slot = v.clone();
            }
        }
        let spec = &mut next.spec;
        set(&mut spec.name, &self.name);
        set(&mut spec.cron, &self.cron);
        set(&mut spec.timezone, &self.timezone);
        set(&mut spec.job, &self.job);
        set(&mut spec.missed, &self.missed);
        set(&mut spec.catch_up_limit, &self.catch_up_limit);
        set(&mut spec.paused, &self.paused);
        spec.validate()?;
        if schedule.spec.paused && !next.spec.paused {
            next.cursor = next.cursor.max(crate::job::truncate(now));
        }
        next.revision += 1;
        next.updated_at = crate::job::truncate(now).max(schedule.updated_at);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn schedule(cron: &str, tz: &str, cursor: &str) -> Schedule {
        let job = ScheduleJob::new(JobType::new("ECHO").unwrap(), Value::Null);
        let new = NewSchedule::new("s", cron, job).timezone(tz);
        new.validate().unwrap();
        Schedule::new(TenantId::new("acme").unwrap(), new, at(cursor))
    }

    const GRACE: Duration = Duration::from_secs(10);

    #[test]
    fn five_or_six_fields_and_known_zones() {
        let job = ScheduleJob::new(JobType::new("ECHO").unwrap(), Value::Null);
        let check = |cron: &str, tz: &str| match NewSchedule::new("s", cron, job.clone())
            .timezone(tz)
            .validate()
        {
            Ok(()) => None,
            Err(Error::InvalidAt { path, .. }) => Some(path.join(".")),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(check("0 3 * * *", "Europe/Berlin"), None);
        assert_eq!(check("*/5 0 3 * * *", "UTC"), None);
        assert_eq!(check("0 0 3 * * * 2027", "UTC").as_deref(), Some("cron"));
        assert_eq!(check("0 3 * *", "UTC").as_deref(), Some("cron"));
        assert_eq!(check("61 * * * *", "UTC").as_deref(), Some("cron"));
        assert_eq!(check("0 0 30 2 *", "UTC").as_deref(), Some("cron"));
        assert_eq!(
            check("0 3 * * *", "Mars/Olympus").as_deref(),
            Some("timezone")
        );
        let bad = NewSchedule::new(
            "s",
            "* * * * *",
            ScheduleJob {
                priority: 5000,
                ..job
            },
        );
        assert!(
            matches!(bad.validate(), Err(Error::InvalidAt { path, .. }) if path == ["job", "priority"])
        );
    }

    #[test]
    fn nothing_is_due_before_the_next_tick() {
        let s = schedule("0 * * * *", "UTC", "2027-01-01T10:00:00Z");
        assert_eq!(s.due(at("2027-01-01T10:59:59.999Z"), GRACE), None);
        let due = s.due(at("2027-01-01T11:00:00Z"), GRACE).unwrap();
        assert_eq!(due.ticks, [at("2027-01-01T11:00:00Z")]);
        assert_eq!(due.cursor, at("2027-01-01T11:00:00Z"));
        let s = Schedule {
            cursor: due.cursor,
            ..s
        };
        assert_eq!(s.due(at("2027-01-01T11:30:00Z"), GRACE), None);
    }

    #[test]
    fn missed_ticks_follow_the_policy() {
        let s = schedule("0 * * * *", "UTC", "2027-01-01T10:00:00Z");
        let now = at("2027-01-01T15:00:05Z");
        let skip = s.due(now, GRACE).unwrap();
        assert_eq!(skip.ticks, [at("2027-01-01T15:00:00Z")]);
        assert_eq!(skip.cursor, at("2027-01-01T15:00:00Z"));
        let late = s.due(at("2027-01-01T15:30:00Z"), GRACE).unwrap();
        assert!(late.ticks.is_empty());
        assert_eq!(late.cursor, at("2027-01-01T15:00:00Z"));
        let mut once = s.clone();
        once.spec.missed = Missed::Once;
        assert_eq!(
            once.due(at("2027-01-01T15:30:00Z"), GRACE).unwrap().ticks,
            [at("2027-01-01T15:00:00Z")]
        );
        let mut catch_up = s.clone();
        catch_up.spec = catch_up.spec.catch_up(3);
        assert_eq!(
            catch_up.due(now, GRACE).unwrap().ticks,
            [
                at("2027-01-01T12:00:00Z"),
                at("2027-01-01T13:00:00Z"),
                at("2027-01-01T14:00:00Z"),
                at("2027-01-01T15:00:00Z"),
            ]
        );
    }

    #[test]
    fn a_long_outage_makes_a_bounded_number_of_ticks() {
        let s = schedule("* * * * * *", "UTC", "2027-01-01T00:00:00Z");
        let due = s
            .due(at("2027-03-01T00:00:00Z"), Duration::from_secs(3600))
            .unwrap();
        assert_eq!(due.ticks.len(), MAX_TICKS_PER_LOOK);
        assert_eq!(due.ticks.last(), Some(&at("2027-03-01T00:00:00Z")));
        assert_eq!(due.cursor, at("2027-03-01T00:00:00Z"));
    }

    #[test]
    fn wall_clock_times_follow_daylight_saving() {
        // Berlin springs forward on 2027-03-28 (02:00 → 03:00) and falls back on
        // 2027-10-31 (03:00 → 02:00).
        let s = schedule("0 9 * * *", "Europe/Berlin", "2027-03-27T00:00:00Z");
        let first = s.due(at("2027-03-27T08:00:00Z"), GRACE).unwrap();
        assert_eq!(first.ticks, [at("2027-03-27T08:00:00Z")]);
        let s = Schedule {
            cursor: first.cursor,
            ..s
        };
        assert_eq!(s.due(at("2027-03-28T06:59:59Z"), GRACE), None);
        let second = s.due(at("2027-03-28T07:00:00Z"), GRACE).unwrap();
        assert_eq!(second.ticks, [at("2027-03-28T07:00:00Z")]);
    }

    #[test]
    fn paused_schedules_make_nothing_and_resume_from_now() {
        let s = schedule("* * * * * *", "UTC", "2027-01-01T00:00:00Z");
        let paused = SchedulePatch::paused(true)
            .apply(&s, at("2027-01-01T00:00:00Z"))
            .unwrap();
        assert_eq!(paused.revision, 2);
        assert_eq!(paused.due(at("2027-01-01T00:00:05Z"), GRACE), None);
        let resumed = SchedulePatch::paused(false)
            .apply(&paused, at("2027-01-01T01:00:00Z"))
            .unwrap();
        assert_eq!(resumed.cursor, at("2027-01-01T01:00:00Z"));
        let due = resumed.due(at("2027-01-01T01:00:01Z"), GRACE).unwrap();
        assert_eq!(due.ticks, [at("2027-01-01T01:00:01Z")]);
    }

    #[test]
    fn tick_keys_name_the_second() {
        let id = ScheduleId::from_u128(1);
        let key = tick_key(id, at("2027-01-01T01:00:01Z"));
        assert_eq!(key, format!("schedule:{id}:2027-01-01T01:00:01Z"));
    }
}
