//! Cases for schedules: the store's guarded schedule records, jobs that keep their tick,
//! ticks made once by engines racing, and wall-clock times across daylight saving.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Span, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use serde_json::json;

use crate::store::JobStoreExt;
use crate::{
    Engine, Job, JobContext, JobError, JobStore, JobType, ListParams, NewJob, NewSchedule,
    Schedule, ScheduleId, ScheduleJob, TenantId, from_fn,
};

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("valid tenant")
}

fn tick_type() -> JobType {
    JobType::new("TICK").expect("valid type")
}

/// Runs every schedule case, each on a fresh store from `new_store`.
///
/// # Panics
/// When a case finds a broken invariant.
pub async fn run_schedule_suite<S, F, Fut>(new_store: F)
where
    S: JobStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    schedules_are_guarded_per_tenant(&new_store().await).await;
    scheduled_jobs_keep_their_tick(&new_store().await).await;
    engines_make_each_tick_once(Arc::new(new_store().await)).await;
    ticks_follow_daylight_saving(Arc::new(new_store().await)).await;
}

fn schedule_of(tenant: &TenantId, now: DateTime<Utc>) -> Schedule {
    let job = ScheduleJob::new(tick_type(), json!({"n": 1}));
    Schedule::new(tenant.clone(), NewSchedule::new("s", "* * * * *", job), now)
}

/// A schedule is stored once per id, changed only while the revision it was read at
/// holds, and seen, changed and deleted only by its tenant.
pub async fn schedules_are_guarded_per_tenant(store: &dyn JobStore) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let now = store.clock().now();
    let first = schedule_of(&acme, now);
    let other = schedule_of(&globex, now);
    assert!(store.put_schedule(&first, None).await.expect("put"));
    assert!(store.put_schedule(&other, None).await.expect("put"));
    assert!(
        !store.put_schedule(&first, None).await.expect("put"),
        "an id is stored once"
    );
    let read = store.schedule(&acme, first.id).await.expect("read");
    assert_eq!(read.as_ref(), Some(&first));
    assert_eq!(store.schedule(&globex, first.id).await.expect("read"), None);
    let mine = store.schedules(Some(&acme)).await.expect("list");
    assert_eq!(mine, std::slice::from_ref(&first));
    let all = store.schedules(None).await.expect("list all");
    assert_eq!(all.len(), 2);

    let mut next = first.clone();
    next.cursor = now + Span::seconds(60);
    next.last_run_at = Some(now + Span::seconds(60));
    next.revision = 2;
    assert!(
        store
            .put_schedule(&next, Some(1))
            .await
            .expect("guarded put")
    );
    let mut stale = first.clone();
    stale.revision = 2;
    stale.spec.name = "lost".into();
    assert!(
        !store
            .put_schedule(&stale, Some(1))
            .await
            .expect("stale put"),
        "a write guarded by an old revision is refused"
    );
    let mut foreign = next.clone();
    foreign.tenant = globex.clone();
    foreign.revision = 3;
    assert!(
        !store
            .put_schedule(&foreign, Some(2))
            .await
            .expect("foreign put"),
        "another tenant's write is refused"
    );
    assert_eq!(
        store.schedule(&acme, first.id).await.expect("read"),
        Some(next)
    );

    assert!(
        !store
            .delete_schedule(&globex, first.id)
            .await
            .expect("delete")
    );
    assert!(
        store
            .delete_schedule(&acme, first.id)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_schedule(&acme, first.id)
            .await
            .expect("delete")
    );
    assert_eq!(store.schedules(Some(&acme)).await.expect("list"), []);
    assert!(
        !store.put_schedule(&first, Some(2)).await.expect("put"),
        "a deleted schedule is not written back"
    );
}

/// A job made by a tick reads back with its schedule and tick, and the schedule's jobs
/// are listed by schedule.
pub async fn scheduled_jobs_keep_their_tick(store: &dyn JobStore) {
    let t = tenant("acme");
    let now = store.clock().now();
    let (a, b) = (ScheduleId::new(), ScheduleId::new());
    let at = |s: i64| DateTime::from_timestamp(now.timestamp() - s, 0).expect("time");
    let job = |id: ScheduleId, s: i64| {
        let template = ScheduleJob::new(tick_type(), json!({}));
        let new = template.for_tick(id, at(s));
        Job::new_queued_at(t.clone(), new, 3, now)
    };
    let plain = Job::new_queued_at(t.clone(), NewJob::new(tick_type(), json!({})), 3, now);
    let jobs = vec![job(a, 2), job(b, 2), job(a, 1), plain.clone()];
    store.submit(jobs.clone()).await.expect("insert");

    let read = store.get(&t, jobs[0].id).await.expect("get");
    assert_eq!(read.schedule_id, Some(a));
    assert_eq!(read.scheduled_for, Some(at(2)));
    assert_eq!(read.idempotency_key, jobs[0].idempotency_key);
    let plain = store.get(&t, plain.id).await.expect("get");
    assert_eq!((plain.schedule_id, plain.scheduled_for), (None, None));

    let page = store
        .list(Some(&t), ListParams::default().schedule(a))
        .await
        .expect("list");
    let ids: Vec<_> = page.jobs.iter().map(|j| j.id).collect();
    assert_eq!(
        ids,
        [jobs[2].id, jobs[0].id],
        "newest first, only schedule a's"
    );
    let other = store
        .list(Some(&tenant("globex")), ListParams::default().schedule(a))
        .await
        .expect("list");
    assert!(other.jobs.is_empty());

    // The same tick again is a replay of the same job.
    let again = job(a, 2);
    let replay = store.submit(vec![again]).await.expect("replay");
    assert_eq!(replay[0].job.id, jobs[0].id);
    assert!(!replay[0].created);
}

fn ticking_engine(store: Arc<dyn JobStore>) -> Engine {
    let noop = from_fn(|_: JobContext, _: serde_json::Value| async { Ok::<_, JobError>(()) });
    Engine::builder()
        .store(store)
        .executor("TICK", noop)
        .build()
        .expect("engine")
}

/// Every job of `schedule`, oldest tick first.
async fn ticks_of(store: &dyn JobStore, schedule: &Schedule) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut params = ListParams::default().schedule(schedule.id).limit(1000);
    loop {
        let page = store
            .list(Some(&schedule.tenant), params.clone())
            .await
            .expect("list");
        jobs.extend(page.jobs);
        match page.next {
            Some(next) => params = params.before(Some(next)),
            None => break,
        }
    }
    jobs.sort_by_key(|j| j.scheduled_for);
    jobs
}

/// Two engines make the ticks of a one-second schedule while the clock moves through 60
/// seconds, and one of them dies halfway: one job per second, none twice, none
/// missing, none created before its tick.
///
/// # Panics
/// When a tick is made twice, missed, or made early.
pub async fn engines_make_each_tick_once(store: Arc<dyn JobStore>) {
    let (a, b) = (ticking_engine(store.clone()), ticking_engine(store.clone()));
    a.start().expect("start");
    b.start().expect("start");
    let t = tenant("acme");
    let every_second = NewSchedule::new(
        "every second",
        "* * * * * *",
        ScheduleJob::new(tick_type(), json!({})),
    );
    let schedule = a.create_schedule(&t, every_second).await.expect("create");
    let clock = store.clock();
    for step in 0..60 {
        clock.advance(Duration::from_secs(1));
        if step < 30 {
            let (x, y) = tokio::join!(a.tick_schedules(), b.tick_schedules());
            x.expect("tick");
            y.expect("tick");
        } else {
            if step == 30 {
                a.abort();
            }
            b.tick_schedules().await.expect("tick");
        }
    }
    b.shutdown().await;
    let end = clock.now();

    let jobs = ticks_of(store.as_ref(), &schedule).await;
    let ticks: Vec<DateTime<Utc>> = jobs.iter().filter_map(|j| j.scheduled_for).collect();
    assert_eq!(ticks.len(), jobs.len(), "every job names its tick");
    assert!(ticks.len() >= 60, "{} ticks in 60 seconds", ticks.len());
    let first = schedule.cursor.with_nanosecond(0).expect("whole second") + Span::seconds(1);
    for (i, (job, tick)) in jobs.iter().zip(&ticks).enumerate() {
        assert_eq!(
            *tick,
            first + Span::seconds(i as i64),
            "ticks one second apart, once each"
        );
        assert_eq!(job.schedule_id, Some(schedule.id));
        assert!(
            job.created_at >= *tick,
            "a tick's job is never made ahead of time"
        );
    }
    assert!(*ticks.last().expect("ticks") <= end);
    let stored = store
        .schedule(&t, schedule.id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.last_run_at, ticks.last().copied());
}

/// The last Sunday of `month` in `year`: when the European Union changes its clocks.
fn last_sunday(year: i32, month: u32) -> NaiveDate {
    let mut day = NaiveDate::from_ymd_opt(year, month + 1, 1).expect("date") - Span::days(1);
    while day.weekday() != Weekday::Sun {
        day -= Span::days(1);
    }
    day
}

fn utc(day: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(hour, minute, 0).expect("time"))
}

/// Schedules on Berlin's wall clock across both of its daylight-saving changes, with
/// the store's clock moved instead of waiting: a daily 09:00 moves by an hour in UTC, a
/// 02:30 that does not exist runs once at 03:00 and one that happens twice runs once,
/// and an hourly schedule makes every hour once.
///
/// # Panics
/// When a tick falls at the wrong instant, twice, or not at all.
pub async fn ticks_follow_daylight_saving(store: Arc<dyn JobStore>) {
    let engine = Engine::builder()
        .store(store.clone())
        .executor(
            "TICK",
            from_fn(|_: JobContext, _: serde_json::Value| async { Ok::<_, JobError>(()) }),
        )
        .schedule_grace(Duration::from_secs(3600))
        .build()
        .expect("engine");
    let t = tenant("acme");
    let clock = store.clock();
    let year = clock.now().year() + 1;
    for (month, expect_daily, expect_half_past_two) in [
        // Spring: 02:00 CET becomes 03:00 CEST.
        (3, [(-1, 8), (0, 7), (1, 7)], [(0, 1, 0), (1, 0, 30)]),
        // Autumn: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        (10, [(-1, 7), (0, 8), (1, 8)], [(0, 0, 30), (1, 1, 30)]),
    ] {
        let day = last_sunday(year, month);
        let start = utc(day - Span::days(1), 6, 0);
        let ahead = (start - clock.now())
            .to_std()
            .expect("the change lies ahead");
        clock.advance(ahead);
        let job = ScheduleJob::new(tick_type(), json!({}));
        let create = |name: &str, cron: &str| {
            let new = NewSchedule::new(name, cron, job.clone()).timezone("Europe/Berlin");
            engine.create_schedule(&t, new)
        };
        let daily = create("daily", "0 9 * * *").await.expect("create");
        let half_past_two = create("half past two", "30 2 * * *").await.expect("create");
        let hourly = create("hourly", "0 * * * *").await.expect("create");
        let end = utc(day + Span::days(1), 12, 0);
        while clock.now() < end {
            clock.advance(Duration::from_secs(600));
            engine.tick_schedules().await.expect("tick");
        }
        let at = |j: &Job| j.scheduled_for.expect("a tick");
        let daily_ticks: Vec<_> = ticks_of(store.as_ref(), &daily)
            .await
            .iter()
            .map(at)
            .collect();
        let want: Vec<_> = expect_daily
            .iter()
            .map(|&(d, h)| utc(day + Span::days(d), h, 0))
            .collect();
        assert_eq!(daily_ticks, want, "09:00 in Berlin, month {month}");
        let odd: Vec<_> = ticks_of(store.as_ref(), &half_past_two)
            .await
            .iter()
            .map(at)
            .collect();
        let want: Vec<_> = expect_half_past_two
            .iter()
            .map(|&(d, h, m)| utc(day + Span::days(d), h, m))
            .collect();
        assert_eq!(odd, want, "02:30 in Berlin, month {month}");
        let hours: Vec<_> = ticks_of(store.as_ref(), &hourly)
            .await
            .iter()
            .map(at)
            .collect();
        let first = utc(day - Span::days(1), 7, 0);
        let want: Vec<_> = (0..hours.len() as i64)
            .map(|h| first + Span::hours(h))
            .collect();
        assert_eq!(hours, want, "every hour once, month {month}");
        assert!(hours.len() >= 53, "{} hours", hours.len());
        for s in [daily, half_past_two, hourly] {
            engine.delete_schedule(&t, s.id).await.expect("delete");
        }
    }
}
