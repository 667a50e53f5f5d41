//! Conformance cases for inserts, reads, claims and notifications.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::{claim_one, insert_one, job, sample_input, tenant, typed_job};
use crate::store::JobStoreExt;
use crate::{
    ClaimParams, Error, EventKind, EventParams, Finish, JobId, JobStatus, JobStore, JobType,
    ListParams, QueueName, QueueStats,
};

const LONG: Duration = Duration::from_secs(60);

/// What goes in comes out: every field, a `queued` event with seq 1.
pub async fn insert_then_get(store: &impl JobStore) {
    let t = tenant("acme");
    let mut j = job("acme", json!({"deep": {"list": [1, 2.5, "x", null]}}));
    j.priority = 7;
    j.max_attempts = 5;
    j.idempotency_key = Some("key-1".into());
    let stored = insert_one(store, j.clone()).await;
    let got = store.get(&t, j.id).await.expect("get");
    assert_eq!(got, stored);
    assert_eq!(got.id, j.id);
    assert_eq!(got.tenant, j.tenant);
    assert_eq!(got.job_type, j.job_type);
    assert_eq!(got.input, j.input);
    assert_eq!(got.status, JobStatus::Queued);
    assert_eq!((got.attempts, got.max_attempts, got.priority), (0, 5, 7));
    assert_eq!(got.idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(got.result, None);
    assert_eq!(got.error, None);
    assert!(got.artifacts.is_empty());
    // Stores may keep times at millisecond or microsecond precision.
    assert!((got.created_at - j.created_at).num_milliseconds().abs() <= 1);
    assert!((got.run_at - j.run_at).num_milliseconds().abs() <= 1);
    let latest = got.latest_event.expect("a queued event");
    assert_eq!((latest.seq, latest.kind), (1, EventKind::Queued));
    assert!(matches!(
        store.get(&t, JobId::new()).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(got.trace, None);

    // The trace context a job was submitted under reads back, and comes with its claim.
    let cx = crate::TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .and_then(|cx| cx.with_tracestate("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"))
        .expect("a valid context");
    let mut traced = job("acme", json!({}));
    traced.trace = Some(cx.clone());
    traced.priority = 1000;
    insert_one(store, traced.clone()).await;
    assert_eq!(
        store.get(&t, traced.id).await.expect("get").trace,
        Some(cx.clone())
    );
    let claimed = claim_one(store, LONG).await;
    assert_eq!((claimed.job.id, claimed.job.trace), (traced.id, Some(cx)));
}

/// The same key with the same work returns the first job; with other work it conflicts;
/// keys are per tenant.
pub async fn idempotent_insert(store: &impl JobStore) {
    let t = tenant("acme");
    let keyed = |input| {
        let mut j = job("acme", input);
        j.idempotency_key = Some("once".into());
        j
    };
    let first = insert_one(store, keyed(json!({"a": 1}))).await;
    let replay = store
        .submit(vec![keyed(json!({"a": 1}))])
        .await
        .expect("replay");
    assert!(!replay[0].created);
    assert_eq!(replay[0].job.id, first.id);

    match store.submit(vec![keyed(json!({"a": 2}))]).await {
        Err(Error::AlreadyExists { id }) => assert_eq!(id, first.id),
        other => panic!("different input under the same key: {other:?}"),
    }
    let mut other_type = typed_job("acme", "OTHER", json!({"a": 1}));
    other_type.idempotency_key = Some("once".into());
    assert!(matches!(
        store.submit(vec![other_type]).await,
        Err(Error::AlreadyExists { .. })
    ));
    // A failed batch inserts nothing.
    let innocent = job("acme", json!({"innocent": true}));
    let innocent_id = innocent.id;
    assert!(
        store
            .submit(vec![innocent, keyed(json!({"a": 3}))])
            .await
            .is_err()
    );
    assert!(matches!(
        store.get(&t, innocent_id).await,
        Err(Error::NotFound { .. })
    ));

    let mut globex = job("globex", json!({"a": 2}));
    globex.idempotency_key = Some("once".into());
    let g = store.submit(vec![globex]).await.expect("other tenant");
    assert!(g[0].created, "keys are scoped to the tenant");
    let page = store
        .list(Some(&t), ListParams::default())
        .await
        .expect("list");
    assert_eq!(page.jobs.len(), 1, "no second job was created");
}

/// Another tenant's job reads exactly like a missing one for get, events, cancel and list.
pub async fn tenant_isolation(store: &impl JobStore) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let j = insert_one(store, job("acme", sample_input())).await;
    let missing = JobId::new();
    let same = |a: Error, b: Error, id: JobId| {
        assert!(matches!(a, Error::NotFound { id: x } if x == j.id), "{a:?}");
        assert!(matches!(b, Error::NotFound { id: x } if x == id), "{b:?}");
        assert_eq!(
            a.to_string().replace(&j.id.to_string(), "ID"),
            b.to_string().replace(&id.to_string(), "ID")
        );
    };
    same(
        store.get(&globex, j.id).await.unwrap_err(),
        store.get(&globex, missing).await.unwrap_err(),
        missing,
    );
    same(
        store
            .events(&globex, j.id, EventParams::default())
            .await
            .unwrap_err(),
        store
            .events(&globex, missing, EventParams::default())
            .await
            .unwrap_err(),
        missing,
    );
    same(
        store.cancel(&globex, j.id).await.unwrap_err(),
        store.cancel(&globex, missing).await.unwrap_err(),
        missing,
    );
    let listed = store
        .list(Some(&globex), ListParams::default())
        .await
        .expect("list");
    assert!(listed.jobs.is_empty());
    assert_eq!(
        store.get(&acme, j.id).await.expect("owner").status,
        JobStatus::Queued
    );
}

/// Claims go by priority (high first), then not-before time, then id; jobs not yet due
/// wait, and the store says when the next one is due.
pub async fn claim_order(store: &impl JobStore) {
    let now = Utc::now();
    let ms = chrono::Duration::milliseconds;
    let mut expected = Vec::new();
    let mut jobs = Vec::new();
    for (priority, offset) in [(0, -30), (5, -10), (5, -20), (-3, -40), (0, -30), (10, 0)] {
        let mut j = job("acme", json!({"p": priority, "o": offset}));
        j.priority = priority;
        j.run_at = now + ms(offset);
        expected.push((std::cmp::Reverse(priority), j.run_at, j.id));
        jobs.push(j);
    }
    let mut future = job("acme", json!({"future": true}));
    future.priority = 1000;
    future.run_at = now + chrono::Duration::hours(1);
    jobs.push(future.clone());
    store.submit(jobs).await.expect("insert");
    expected.sort();
    let mut order = Vec::new();
    for _ in 0..expected.len() {
        order.push(claim_one(store, LONG).await.job.id);
    }
    let want: Vec<JobId> = expected.iter().map(|k| k.2).collect();
    assert_eq!(order, want);
    let rest = store
        .take(ClaimParams::default().limit(10))
        .await
        .expect("claim");
    assert!(rest.jobs.is_empty(), "a job was claimed before its run_at");
    let next = rest.next_run_at.expect("next_run_at of the scheduled job");
    assert!((next - future.run_at).num_milliseconds().abs() <= 1);
}

/// A claim for some types leaves the others queued.
pub async fn claim_filters_by_type(store: &impl JobStore) {
    let a = insert_one(store, typed_job("acme", "A", json!({}))).await;
    let b = insert_one(store, typed_job("acme", "B", json!({}))).await;
    let only_b = ClaimParams::default()
        .limit(10)
        .types(vec![JobType::new("B").expect("valid")]);
    let claimed = store.take(only_b).await.expect("claim");
    let ids: Vec<_> = claimed.jobs.iter().map(|c| c.job.id).collect();
    assert_eq!(ids, vec![b.id]);
    let rest = store
        .take(ClaimParams::default().limit(10))
        .await
        .expect("claim");
    assert_eq!(rest.jobs.len(), 1);
    assert_eq!(rest.jobs[0].job.id, a.id);

    // The next due time is that of the next job the claim could take.
    let soon = Utc::now() + chrono::Duration::hours(1);
    let later = soon + chrono::Duration::hours(1);
    let mut not_mine = typed_job("acme", "A", json!({}));
    not_mine.run_at = crate::job::truncate(soon);
    let mut mine = typed_job("acme", "B", json!({}));
    mine.run_at = crate::job::truncate(later);
    insert_one(store, not_mine).await;
    insert_one(store, mine.clone()).await;
    let only_b = ClaimParams::default()
        .limit(10)
        .types(vec![JobType::new("B").expect("valid")]);
    let idle = store.take(only_b).await.expect("claim");
    assert!(idle.jobs.is_empty());
    assert_eq!(
        idle.next_run_at,
        Some(mine.run_at),
        "the next B, not the next A"
    );
}

/// 8 concurrent claimers over 2,000 jobs: each job is claimed exactly once.
pub async fn no_double_claim(store: Arc<dyn JobStore>) {
    let batch: Vec<_> = (0..2000).map(|i| job("acme", json!({ "i": i }))).collect();
    for chunk in batch.chunks(500) {
        store.submit(chunk.to_vec()).await.expect("insert");
    }
    let claimers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut empty = 0;
                while empty < 3 {
                    let limit = 1 + (w * 7 + mine.len()) % 16;
                    let claimed = store
                        .take(ClaimParams::default().limit(limit).lease_ttl(LONG))
                        .await
                        .expect("claim");
                    if claimed.jobs.is_empty() {
                        empty += 1;
                        tokio::task::yield_now().await;
                    }
                    mine.extend(claimed.jobs.into_iter().map(|c| c.job.id));
                }
                mine
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for c in claimers {
        for id in c.await.expect("claimer") {
            total += 1;
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(total, 2000);
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.queued, stats.running), (0, 2000));
}

/// Listing is newest first, filtered, and stable while jobs are added between pages.
pub async fn list_pages_are_stable(store: &impl JobStore) {
    let t = tenant("acme");
    let mut ids = Vec::new();
    for i in 0..25 {
        let j = if i % 5 == 0 {
            typed_job("acme", "OTHER", json!({ "i": i }))
        } else {
            job("acme", json!({ "i": i }))
        };
        ids.push(j.id);
        store.submit(vec![j]).await.expect("insert");
    }
    insert_one(store, job("globex", json!({}))).await;
    ids.sort();
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(Some(&t), ListParams::default().limit(10).before(cursor))
            .await
            .expect("list");
        // Submits between pages land before the cursor and never shift later pages.
        insert_one(store, job("acme", json!({"late": true}))).await;
        assert!(page.jobs.len() <= 10);
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "pages repeated or skipped a job");

    let other = store
        .list(
            Some(&t),
            ListParams::default().job_type(JobType::new("OTHER").expect("valid")),
        )
        .await
        .expect("list");
    assert_eq!(other.jobs.len(), 5);
    let c = claim_one(store, LONG).await;
    let running = store
        .list(Some(&t), ListParams::default().status(JobStatus::Running))
        .await
        .expect("list");
    assert_eq!(
        running.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![c.job.id]
    );
}

/// Operator reads: `list(None, …)` pages through every tenant's jobs newest first with
/// the same filters, and `queue_stats` counts one tenant's jobs or everyone's.
pub async fn operator_reads_span_tenants(store: &impl JobStore) {
    let mut ids = Vec::new();
    for (i, name) in ["acme", "globex", "acme", "initech", "globex", "acme"]
        .into_iter()
        .enumerate()
    {
        let j = if i == 4 {
            typed_job(name, "OTHER", json!({ "i": i }))
        } else {
            job(name, json!({ "i": i }))
        };
        ids.push(j.id);
        store.submit(vec![j]).await.expect("insert");
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(None, ListParams::default().limit(4).before(cursor))
            .await
            .expect("list");
        assert!(page.jobs.len() <= 4);
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every tenant's jobs, newest first, each once");
    let other = store
        .list(
            None,
            ListParams::default().job_type(JobType::new("OTHER").expect("valid")),
        )
        .await
        .expect("list");
    assert_eq!(
        other.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[1]]
    );

    let acme = tenant("acme");
    let claimed = claim_one(store, LONG).await;
    let queued_of = |counts: &BTreeMap<QueueName, QueueStats>| {
        counts
            .values()
            .map(|c| (c.queued, c.running))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let all = store.queue_stats(None).await.expect("stats");
    assert_eq!(queued_of(&all), (5, 1));
    let mine = store.queue_stats(Some(&acme)).await.expect("stats");
    let expect_running = u64::from(claimed.job.tenant == acme);
    assert_eq!(queued_of(&mine), (3 - expect_running, expect_running));
    let nobody = store
        .queue_stats(Some(&tenant("umbrella")))
        .await
        .expect("stats");
    assert!(nobody.is_empty(), "a tenant without jobs has no counts");
    // The counts of open jobs agree with the full counts, finished ones left at zero.
    store
        .finish(&claimed.lease, Finish::Completed { result: json!(1) })
        .await
        .expect("finish");
    for who in [None, Some(&acme)] {
        let full = store.queue_stats(who).await.expect("stats");
        let open = store.open_counts(who).await.expect("open counts");
        for (queue, c) in &full {
            let o = open.get(queue).copied().unwrap_or_default();
            assert_eq!(
                (o.waiting, o.queued, o.running),
                (c.waiting, c.queued, c.running)
            );
            assert_eq!((o.completed, o.failed, o.cancelled), (0, 0, 0));
        }
        assert!(open.keys().all(|q| full.contains_key(q)));
    }
}

/// Activity: an engine's beats replace each other and are read back while recent, and
/// finished jobs are counted by minute, per tenant or in all (stores that keep neither
/// answer `None` and are not asked more).
pub async fn activity_is_counted(store: &impl JobStore) {
    let now = store.clock().now();
    let beat = |id: &str| crate::EngineBeat {
        id: id.to_owned(),
        host: "test-host".to_owned(),
        pid: 7,
        queues: vec!["default".to_owned()],
        started_at: now,
        seen_at: store.clock().now(),
    };
    store.beat(&beat("a")).await.expect("beat");
    store.beat(&beat("b")).await.expect("beat");
    store.beat(&beat("a")).await.expect("beat");
    let since = now - chrono::Duration::seconds(30);
    if let Some(alive) = store.engines(since).await.expect("engines") {
        let mut ids: Vec<_> = alive.iter().map(|b| b.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["a", "b"], "one entry per engine");
        assert_eq!(alive[0].host, "test-host");
        let later = store.clock().now() + chrono::Duration::seconds(60);
        assert!(
            store
                .engines(later)
                .await
                .expect("engines")
                .unwrap_or_default()
                .is_empty()
        );
    }

    for i in 0..3 {
        insert_one(store, job("acme", json!({ "i": i }))).await;
    }
    insert_one(store, job("globex", json!({}))).await;
    for outcome in [
        Finish::Completed { result: json!(1) },
        Finish::Completed { result: json!(2) },
        Finish::Failed { error: "x".into() },
    ] {
        let c = claim_one(store, LONG).await;
        store.finish(&c.lease, outcome).await.expect("finish");
    }
    let hour_ago = now - chrono::Duration::hours(1);
    let Some(all) = store
        .finished_by_minute(None, hour_ago)
        .await
        .expect("count")
    else {
        return;
    };
    let sum = |counts: &[crate::MinuteCounts]| {
        counts
            .iter()
            .fold((0, 0), |(c, f), m| (c + m.completed, f + m.failed))
    };
    assert_eq!(sum(&all), (2, 1));
    assert!(
        all.windows(2).all(|w| w[0].minute < w[1].minute),
        "oldest first"
    );
    assert!(
        all.iter().all(|m| m.minute.timestamp() % 60 == 0),
        "whole minutes"
    );
    let umbrella = store
        .finished_by_minute(Some(&tenant("umbrella")), hour_ago)
        .await
        .expect("count")
        .expect("counted");
    assert!(umbrella.is_empty());
    let by_tenant = {
        let acme = store
            .finished_by_minute(Some(&tenant("acme")), hour_ago)
            .await;
        let globex = store
            .finished_by_minute(Some(&tenant("globex")), hour_ago)
            .await;
        let (a, g) = (
            sum(&acme.expect("count").expect("counted")),
            sum(&globex.expect("count").expect("counted")),
        );
        (a.0 + g.0, a.1 + g.1)
    };
    assert_eq!(by_tenant, (2, 1), "the tenants' counts add up to all");
    let future = store.clock().now() + chrono::Duration::minutes(5);
    let none = store.finished_by_minute(None, future).await.expect("count");
    assert!(
        none.expect("counted").is_empty(),
        "only jobs finished since the time given"
    );
}

/// Counts by status follow every transition.
pub async fn stats_count_by_status(store: &impl JobStore) {
    let t = tenant("acme");
    for i in 0..4 {
        insert_one(store, job("acme", json!({ "i": i }))).await;
    }
    let a = claim_one(store, LONG).await;
    store
        .finish(&a.lease, Finish::Completed { result: json!(1) })
        .await
        .expect("finish");
    let b = claim_one(store, LONG).await;
    store
        .finish(&b.lease, Finish::Failed { error: "x".into() })
        .await
        .expect("finish");
    let _running = claim_one(store, LONG).await;
    let page = store
        .list(Some(&t), ListParams::default().status(JobStatus::Queued))
        .await
        .expect("list");
    store.cancel(&t, page.jobs[0].id).await.expect("cancel");
    let s = store.stats().await.expect("stats");
    assert_eq!(
        (s.queued, s.running, s.completed, s.failed, s.cancelled),
        (0, 1, 1, 1, 1)
    );
    assert_eq!(s.terminal(), 3);
}

/// Inserts wake idle workers; changes wake a job's watchers.
pub async fn notifications_fire(store: &impl JobStore) {
    let within = Duration::from_secs(2);
    let mut work = store.notifier().subscribe_work();
    work.borrow_and_update();
    let j = insert_one(store, job("acme", sample_input())).await;
    tokio::time::timeout(within, work.changed())
        .await
        .expect("an insert wakes idle workers")
        .expect("notifier alive");

    let watch = store.notifier().watch_job(j.id);
    let changed = watch.changed();
    tokio::pin!(changed);
    changed.as_mut().enable();
    let c = claim_one(store, LONG).await;
    tokio::time::timeout(within, changed)
        .await
        .expect("a claim wakes the job's watchers");

    let changed = watch.changed();
    tokio::pin!(changed);
    changed.as_mut().enable();
    work.borrow_and_update();
    store
        .finish(
            &c.lease,
            Finish::Retry {
                error: "again".into(),
                run_at: Utc::now(),
            },
        )
        .await
        .expect("retry");
    tokio::time::timeout(within, changed)
        .await
        .expect("a finish wakes the job's watchers");
    tokio::time::timeout(within, work.changed())
        .await
        .expect("a retry wakes idle workers")
        .expect("notifier alive");
}

/// A job's `latest_event` is its newest public event: an internal event after it neither
/// hides it nor takes its place, in reads of one job and of a list.
pub async fn latest_event_is_the_newest_public_one(store: &impl JobStore) {
    let t = tenant("acme");
    let j = insert_one(store, job("acme", sample_input())).await;
    let claimed = claim_one(store, LONG).await;
    let stage = crate::NewEvent::new(EventKind::Stage, "rendering");
    let public = store
        .append(&claimed.lease, crate::Append::event(stage))
        .await
        .expect("append");
    let note = crate::NewEvent::new(EventKind::Custom, "cache warmed").internal();
    store
        .append(&claimed.lease, crate::Append::event(note))
        .await
        .expect("append");
    let got = store.get(&t, j.id).await.expect("get");
    assert_eq!(got.latest_event, Some(public.clone()), "get");
    let listed = store
        .list(Some(&t), ListParams::default())
        .await
        .expect("list");
    assert_eq!(listed.jobs[0].latest_event, Some(public), "list");
}
