//! Conformance cases for queues: claims stay in their queue, a paused queue gives
//! nothing, settings are stored, counts are kept per queue, and a snooze gives its attempt
//! back.

use std::time::Duration;

use chrono::SecondsFormat;
use serde_json::Value;

use super::{LONG, insert_one, job, sample_input, tenant};
use crate::store::JobStoreExt;
use crate::{
    ClaimParams, EventKind, EventParams, Finish, Job, JobStatus, JobStore, ListParams, QueueName,
    QueuePatch,
};

fn queue(name: &str) -> QueueName {
    QueueName::new(name).expect("valid test queue")
}

/// A job of tenant `acme` in `queue`, with a concurrency key.
fn queued_in(name: &str, key: Option<&str>) -> Job {
    let mut j = job("acme", sample_input());
    j.queue = queue(name);
    j.concurrency_key = key.map(str::to_owned);
    j
}

/// A claim takes jobs of its own queue only; the queue and concurrency key are stored
/// and read back, listed by queue, and counted per queue.
pub async fn claims_stay_in_their_queue(store: &impl JobStore) {
    let t = tenant("acme");
    let mail = insert_one(store, queued_in("emails", Some("customer-7"))).await;
    let plain = insert_one(store, job("acme", sample_input())).await;
    let read = store.get(&t, mail.id).await.expect("get");
    assert_eq!(read.queue, queue("emails"));
    assert_eq!(read.concurrency_key.as_deref(), Some("customer-7"));
    assert_eq!(
        store.get(&t, plain.id).await.expect("get").queue,
        QueueName::default()
    );

    let params = |q: &str| {
        ClaimParams::default()
            .limit(10)
            .lease_ttl(LONG)
            .queue(queue(q))
    };
    let from_default = store
        .take(ClaimParams::default().limit(10))
        .await
        .expect("claim");
    let ids: Vec<_> = from_default.jobs.iter().map(|c| c.job.id).collect();
    assert_eq!(
        ids,
        [plain.id],
        "the default queue's claim took another queue's job"
    );
    assert!(
        store
            .take(params("other"))
            .await
            .expect("claim")
            .jobs
            .is_empty()
    );
    let from_mail = store.take(params("emails")).await.expect("claim");
    let ids: Vec<_> = from_mail.jobs.iter().map(|c| c.job.id).collect();
    assert_eq!(ids, [mail.id]);

    // A retry due later is announced to its own queue's claims only.
    let later = store.clock().now() + chrono::Duration::seconds(60);
    let retry = Finish::Retry {
        error: "later".into(),
        run_at: later,
    };
    store
        .finish(&from_mail.jobs[0].lease, retry)
        .await
        .expect("retry");
    let early = store.take(params("emails")).await.expect("claim");
    assert!(early.jobs.is_empty());
    assert!(early.next_run_at.is_some(), "the queue's next due time");
    let other = store
        .take(ClaimParams::default().limit(10))
        .await
        .expect("claim");
    assert_eq!(
        other.next_run_at, None,
        "another queue's retry is not this one's"
    );

    let listed = store
        .list(Some(&t), ListParams::default().queue(queue("emails")))
        .await
        .expect("list");
    let ids: Vec<_> = listed.jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, [mail.id]);
    let counts = store.queue_stats(None).await.expect("stats");
    assert_eq!(counts[&queue("emails")].queued, 1);
    assert_eq!(counts[&QueueName::default()].running, 1);
    let all = store.stats().await.expect("stats");
    assert_eq!((all.queued, all.running), (1, 1));
}

/// A paused queue gives no job to any claim, and says nothing of its next due time,
/// until it is resumed; the pause is stored; a resume wakes idle engines.
pub async fn a_paused_queue_is_not_claimed(store: &impl JobStore) {
    let mail = insert_one(store, queued_in("emails", None)).await;
    insert_one(store, job("acme", sample_input())).await;
    assert_eq!(
        store.queue(&queue("emails")).await.expect("read"),
        Default::default()
    );
    let paused = store
        .configure_queue(&queue("emails"), QueuePatch::default().paused(true))
        .await
        .expect("pause");
    assert!(paused.paused);
    assert!(store.queue(&queue("emails")).await.expect("read").paused);
    let names: Vec<_> = store
        .queues()
        .await
        .expect("queues")
        .into_iter()
        .map(|q| (q.name, q.settings.paused))
        .collect();
    assert_eq!(names, [(queue("emails"), true)]);

    let params = ClaimParams::default().limit(10).queue(queue("emails"));
    let claimed = store.take(params.clone()).await.expect("claim");
    assert!(claimed.jobs.is_empty(), "a paused queue was claimed from");
    assert_eq!(claimed.next_run_at, None);
    let other = store
        .take(ClaimParams::default().limit(10))
        .await
        .expect("claim");
    assert_eq!(other.jobs.len(), 1, "pausing one queue held up another");

    // Patching something else keeps the pause.
    let kept = store
        .configure_queue(&queue("emails"), QueuePatch::default())
        .await
        .expect("patch");
    assert!(kept.paused);

    let mut work = store.notifier().subscribe_work();
    let seen = *work.borrow_and_update();
    let resumed = store
        .configure_queue(&queue("emails"), QueuePatch::default().paused(false))
        .await
        .expect("resume");
    assert!(!resumed.paused);
    assert!(*work.borrow() > seen, "a resume wakes idle engines");
    let claimed = store.take(params).await.expect("claim");
    let ids: Vec<_> = claimed.jobs.iter().map(|c| c.job.id).collect();
    assert_eq!(ids, [mail.id]);
}

/// A snooze puts the job back until its time without charging the attempt, even on the
/// last one, and says so on the timeline.
pub async fn snooze_charges_no_attempt(store: &impl JobStore) {
    let t = tenant("acme");
    let mut only_one = job("acme", sample_input());
    only_one.max_attempts = 1;
    let j = insert_one(store, only_one).await;
    let mut due_times = Vec::new();
    for round in 0..3 {
        let claimed = store
            .take(ClaimParams::default().limit(1).lease_ttl(LONG))
            .await
            .expect("claim");
        assert_eq!(
            claimed.jobs.len(),
            1,
            "round {round}: the snoozed job is due again"
        );
        let c = &claimed.jobs[0];
        assert_eq!(c.job.attempts, 1, "round {round}");
        let run_at = store.clock().now() + chrono::Duration::seconds(30);
        let snooze = Finish::Snoozed {
            reason: "provider busy".into(),
            run_at,
        };
        let after = store.finish(&c.lease, snooze).await.expect("snooze");
        assert_eq!(after.status, JobStatus::Queued);
        assert_eq!(after.attempts, 0, "a snooze charged an attempt");
        assert_eq!(after.run_at, crate::job::truncate(run_at));
        assert_eq!(after.error, None);
        due_times.push(after.run_at.to_rfc3339_opts(SecondsFormat::Millis, true));
        let early = store
            .take(ClaimParams::default().limit(1))
            .await
            .expect("claim");
        assert!(early.jobs.is_empty(), "claimed before the snooze ended");
        assert_eq!(early.next_run_at, Some(after.run_at));
        store.clock().advance(Duration::from_secs(31));
    }
    let events = store
        .events(&t, j.id, EventParams::default().limit(100))
        .await
        .expect("events")
        .events;
    let snoozes: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Snoozed)
        .collect();
    assert_eq!(snoozes.len(), 3);
    assert_eq!(snoozes[0].message, "provider busy");
    let said: Vec<_> = snoozes
        .iter()
        .map(|e| e.payload.as_ref().and_then(|p| p["run_at"].as_str()))
        .map(|at| at.unwrap_or_default().to_owned())
        .collect();
    assert_eq!(said, due_times, "each event says when the job runs again");
}

/// `max_running` caps what claims take, counting jobs under unexpired leases: a full
/// queue gives nothing (and says it is full) until a running job ends or its lease
/// expires; a freed slot is announced; removing the limit frees the rest.
pub async fn max_running_caps_claims(store: &impl JobStore) {
    let limited = queue("limited");
    let bad = store
        .configure_queue(&limited, QueuePatch::default().max_running(Some(0)))
        .await;
    assert!(matches!(bad, Err(crate::Error::Invalid { .. })), "{bad:?}");
    let over = QueuePatch::default().max_running(Some(crate::MAX_QUEUE_LIMIT + 1));
    assert!(store.configure_queue(&limited, over).await.is_err());
    let set = store
        .configure_queue(&limited, QueuePatch::default().max_running(Some(2)))
        .await
        .expect("limit");
    assert_eq!(set.max_running, Some(2));
    for _ in 0..5 {
        insert_one(store, queued_in("limited", None)).await;
    }
    let short = Duration::from_secs(5);
    let params = |ttl| {
        ClaimParams::default()
            .limit(10)
            .lease_ttl(ttl)
            .queue(queue("limited"))
    };
    let first = store.take(params(short)).await.expect("claim");
    assert_eq!(first.jobs.len(), 2, "a claim took more than max_running");
    assert!(first.full);
    let second = store.take(params(LONG)).await.expect("claim");
    assert!(second.jobs.is_empty() && second.full, "{second:?}");

    // A finish frees a slot and says so.
    let mut freed = store.notifier().subscribe_freed();
    let seen = *freed.borrow_and_update();
    let done = Finish::Completed {
        result: serde_json::json!(null),
    };
    store
        .finish(&first.jobs[0].lease, done)
        .await
        .expect("finish");
    assert!(
        *freed.borrow() > seen,
        "a finished job did not announce its slot"
    );
    let third = store.take(params(LONG)).await.expect("claim");
    assert_eq!(third.jobs.len(), 1);

    // An expired lease stops counting, before any reaper ran.
    store.clock().advance(short + Duration::from_secs(1));
    let fourth = store.take(params(LONG)).await.expect("claim");
    assert_eq!(fourth.jobs.len(), 1, "an expired lease still held its slot");
    assert!(fourth.full);

    // Without the limit, the rest go at once; a limit never set asks nothing.
    let unset = store
        .configure_queue(&limited, QueuePatch::default().max_running(None))
        .await
        .expect("unset");
    assert_eq!(unset.max_running, None);
    let rest = store.take(params(LONG)).await.expect("claim");
    assert_eq!(rest.jobs.len(), 1);
    assert!(!rest.full);
    let plain = store
        .take(ClaimParams::default().limit(10))
        .await
        .expect("claim");
    assert!(!plain.full);
}

/// Operator actions as rules: retry (failed or cancelled only, a fresh attempt budget),
/// requeue (a waiting queued job made due), an operator's cancel, and discard (finished
/// jobs only, record and timeline gone, its idempotency key free again); each leaves an
/// `operator` event numbered like any other, naming the actor and reason.
pub async fn operator_actions_follow_the_rules(store: &impl JobStore) {
    let t = tenant("acme");
    let by = crate::Operator::new("ops").reason("redrive");
    let mut keyed = job("acme", sample_input());
    keyed.idempotency_key = Some("once".into());
    keyed.max_attempts = 1;
    let j = insert_one(store, keyed).await;
    let claimed = store
        .take(ClaimParams::default().limit(1).lease_ttl(LONG))
        .await
        .expect("claim");
    let failed = Finish::Failed {
        error: "boom".into(),
    };
    store
        .finish(&claimed.jobs[0].lease, failed)
        .await
        .expect("fail");

    let mut work = store.notifier().subscribe_work();
    let seen = *work.borrow_and_update();
    let retried = store.retry(&t, j.id, &by).await.expect("retry");
    assert_eq!(retried.status, JobStatus::Queued);
    assert_eq!((retried.attempts, retried.error.as_deref()), (0, None));
    assert!(*work.borrow() > seen, "a retry wakes idle engines");
    let events = store
        .events(&t, j.id, EventParams::default().limit(100))
        .await
        .expect("events")
        .events;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let op = events.last().expect("events");
    assert_eq!(op.kind, EventKind::Operator);
    let payload = op.payload.clone().expect("payload");
    assert_eq!(
        payload,
        serde_json::json!({"action": "retry", "actor": "ops", "reason": "redrive"})
    );
    // Queued, running and completed jobs are not retried.
    let refused = store.retry(&t, j.id, &by).await;
    assert!(
        matches!(refused, Err(crate::Error::InvalidTransition { .. })),
        "{refused:?}"
    );
    let again = store
        .take(ClaimParams::default().limit(1).lease_ttl(LONG))
        .await
        .expect("claim");
    assert_eq!(
        again.jobs[0].job.attempts, 1,
        "a retry gives a fresh budget"
    );
    let refused = store.retry(&t, j.id, &by).await;
    assert!(matches!(
        refused,
        Err(crate::Error::InvalidTransition { .. })
    ));
    let refused = store.discard(&t, j.id).await;
    assert!(
        matches!(refused, Err(crate::Error::Conflict { .. })),
        "{refused:?}"
    );
    let done = Finish::Completed {
        result: serde_json::json!(1),
    };
    store
        .finish(&again.jobs[0].lease, done)
        .await
        .expect("complete");
    assert!(store.retry(&t, j.id, &by).await.is_err());

    // Discard: gone for its tenant, not reachable by another, its key free again.
    let other = store.discard(&tenant("globex"), j.id).await;
    assert!(
        matches!(other, Err(crate::Error::NotFound { .. })),
        "{other:?}"
    );
    let gone = store.discard(&t, j.id).await.expect("discard");
    assert_eq!(gone.id, j.id);
    assert!(matches!(
        store.get(&t, j.id).await,
        Err(crate::Error::NotFound { .. })
    ));
    let events = store.events(&t, j.id, EventParams::default()).await;
    assert!(matches!(events, Err(crate::Error::NotFound { .. })));
    let mut reused = job("acme", sample_input());
    reused.idempotency_key = Some("once".into());
    let fresh = store.submit(vec![reused]).await.expect("submit");
    assert!(
        fresh[0].created,
        "a discarded job's idempotency key is free"
    );

    // Requeue: a waiting job is made due now; a due one is left alone; others refused.
    let mut later = job("acme", sample_input());
    later.run_at = store.clock().now() + chrono::Duration::hours(1);
    let waiting = insert_one(store, later).await;
    let seen = *work.borrow_and_update();
    let due = store.requeue(&t, waiting.id, &by).await.expect("requeue");
    assert!(due.run_at <= store.clock().now());
    assert!(*work.borrow() > seen, "a requeue wakes idle engines");
    let unchanged = store.requeue(&t, waiting.id, &by).await.expect("requeue");
    assert_eq!(unchanged.revision, due.revision, "a due job was changed");
    let kinds: Vec<EventKind> = store
        .events(&t, waiting.id, EventParams::default())
        .await
        .expect("events")
        .events
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, [EventKind::Queued, EventKind::Operator]);

    // An operator's cancel says who, then cancels.
    let cancelled = store.cancel_as(&t, waiting.id, &by).await.expect("cancel");
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    let events = store
        .events(&t, waiting.id, EventParams::default())
        .await
        .expect("events")
        .events;
    let tail: Vec<(EventKind, Option<Value>)> = events[2..]
        .iter()
        .map(|e| (e.kind, e.payload.as_ref().map(|p| p["action"].clone())))
        .collect();
    assert_eq!(
        tail,
        [
            (EventKind::Operator, Some(serde_json::json!("cancel"))),
            (EventKind::Cancelled, None)
        ]
    );
    let refused = store.requeue(&t, waiting.id, &by).await;
    assert!(matches!(
        refused,
        Err(crate::Error::InvalidTransition { .. })
    ));
    let back = store
        .retry(&t, waiting.id, &by)
        .await
        .expect("retry a cancelled job");
    assert_eq!(back.status, JobStatus::Queued);
}

/// A rate limit spaces starts out: a full bucket gives its burst, then one start per
/// interval, and a claim the rate stopped says when the next token is due; a new limit
/// starts with a full bucket; bad limits are refused.
pub async fn rate_limits_space_starts(store: &impl JobStore) {
    let rated = queue("rated");
    for bad in [
        crate::RateLimit::new(0, Duration::from_secs(1)),
        crate::RateLimit::new(1, Duration::ZERO),
        crate::RateLimit::new(1, Duration::from_secs(86_401)),
        crate::RateLimit::new(1, Duration::from_secs(1)).burst(0),
    ] {
        let refused = store
            .configure_queue(&rated, QueuePatch::default().rate(Some(bad)))
            .await;
        assert!(
            matches!(refused, Err(crate::Error::Invalid { .. })),
            "{bad:?}"
        );
    }
    // Two per minute: a start every 30 s, two at once from a full bucket.
    let rate = crate::RateLimit::new(2, Duration::from_secs(60));
    let set = store
        .configure_queue(&rated, QueuePatch::default().rate(Some(rate)))
        .await
        .expect("rate");
    assert_eq!(set.rate, Some(rate));
    for _ in 0..7 {
        insert_one(store, queued_in("rated", None)).await;
    }
    let claim = || {
        store.take(
            ClaimParams::default()
                .limit(10)
                .lease_ttl(LONG)
                .queue(queue("rated")),
        )
    };
    let first = claim().await.expect("claim");
    assert_eq!(first.jobs.len(), 2, "a full bucket gives its burst");
    let now = store.clock().now();
    let next = first.next_run_at.expect("the next token's time");
    assert!(
        next > now && next <= now + chrono::Duration::seconds(30),
        "{next} vs {now}"
    );
    assert!(!first.full, "a rate limit is not max_running");
    let early = claim().await.expect("claim");
    assert!(early.jobs.is_empty(), "a start before the next token");
    assert_eq!(early.next_run_at, Some(next));

    store.clock().advance(Duration::from_secs(30));
    assert_eq!(
        claim().await.expect("claim").jobs.len(),
        1,
        "one token per interval"
    );
    store.clock().advance(Duration::from_secs(600));
    assert_eq!(
        claim().await.expect("claim").jobs.len(),
        2,
        "a quiet spell refills only the burst"
    );

    // A new limit starts full; without one the rest go at once.
    let burst = crate::RateLimit::new(1, Duration::from_secs(60)).burst(1);
    store
        .configure_queue(&rated, QueuePatch::default().rate(Some(burst)))
        .await
        .expect("rate");
    assert_eq!(claim().await.expect("claim").jobs.len(), 1);
    assert!(claim().await.expect("claim").jobs.is_empty());
    let unset = store
        .configure_queue(&rated, QueuePatch::default().rate(None))
        .await
        .expect("unset");
    assert_eq!(unset.rate, None);
    let rest = claim().await.expect("claim");
    assert_eq!(rest.jobs.len(), 1);
    assert_eq!(rest.next_run_at, None);
}
