//! Conformance cases for the state machine: every legal move and the refused ones,
//! cancellation, retries and releases, and retention.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::{
    LONG, SHORT, assert_lease_lost, claim_one, insert_one, job, kinds, sample_input, tenant,
    timeline,
};
use crate::store::JobStoreExt;
use crate::{
    Append, ClaimParams, Error, EventKind, EventParams, Finish, JobStatus, JobStore, Lease,
    NewEvent, PurgeParams, ReapParams,
};

/// Walks every legal edge of the state machine and checks status, counters and the
/// event each one records.
pub async fn every_legal_transition(store: &impl JobStore) {
    let t = tenant("acme");
    // queued → running → completed
    let a = insert_one(store, job("acme", sample_input())).await;
    let c = claim_one(store, LONG).await;
    assert_eq!(c.job.status, JobStatus::Running);
    assert_eq!(c.job.attempts, 1);
    assert!(c.job.started_at.is_some());
    let done = store
        .finish(
            &c.lease,
            Finish::Completed {
                result: json!({"ok": true}),
            },
        )
        .await
        .expect("complete");
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.result, Some(json!({"ok": true})));
    assert!(done.completed_at.is_some());
    assert_eq!(
        kinds(&timeline(store, &t, a.id).await),
        [EventKind::Queued, EventKind::Started, EventKind::Succeeded]
    );

    // queued → running → failed
    let b = insert_one(store, job("acme", json!({"b": 1}))).await;
    let c = claim_one(store, LONG).await;
    let failed = store
        .finish(
            &c.lease,
            Finish::Failed {
                error: "boom".into(),
            },
        )
        .await
        .expect("fail");
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("boom"));
    assert_eq!(
        kinds(&timeline(store, &t, b.id).await),
        [EventKind::Queued, EventKind::Started, EventKind::Failed]
    );

    // queued → running → queued (retry) → running → cancelled (honoured)
    let d = insert_one(store, job("acme", json!({"d": 1}))).await;
    let c = claim_one(store, LONG).await;
    let retried = store
        .finish(
            &c.lease,
            Finish::Retry {
                error: "flaky".into(),
                run_at: Utc::now(),
            },
        )
        .await
        .expect("retry");
    assert_eq!(retried.status, JobStatus::Queued);
    assert_eq!(retried.error.as_deref(), Some("flaky"));
    assert_eq!(retried.attempts, 1);
    let c = claim_one(store, LONG).await;
    assert_eq!(c.job.id, d.id);
    assert_eq!(c.job.attempts, 2);
    let asked = store.cancel(&t, d.id).await.expect("cancel running");
    assert_eq!(asked.status, JobStatus::Running);
    assert!(asked.cancel_requested);
    let cancelled = store
        .finish(&c.lease, Finish::Cancelled)
        .await
        .expect("cancelled");
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(
        kinds(&timeline(store, &t, d.id).await),
        [
            EventKind::Queued,
            EventKind::Started,
            EventKind::Retrying,
            EventKind::Started,
            EventKind::CancelRequested,
            EventKind::Cancelled
        ]
    );

    // queued → cancelled
    let e = insert_one(store, job("acme", json!({"e": 1}))).await;
    let cancelled = store.cancel(&t, e.id).await.expect("cancel queued");
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(cancelled.completed_at.is_some());
    assert_eq!(
        kinds(&timeline(store, &t, e.id).await),
        [EventKind::Queued, EventKind::Cancelled]
    );
}

/// Every way to ask for an illegal move is refused with a typed error and changes nothing.
pub async fn illegal_transitions_are_refused(store: &impl JobStore) {
    let t = tenant("acme");
    let mut low = job("acme", json!({"q": 1}));
    low.priority = -5;
    let queued = insert_one(store, low).await;
    // queued → completed / failed / queued: needs a lease it does not have.
    let forged = Lease::new(queued.id, LONG);
    for outcome in [
        Finish::Completed { result: json!(1) },
        Finish::Failed { error: "x".into() },
        Finish::Retry {
            error: "x".into(),
            run_at: Utc::now(),
        },
        Finish::Released,
        Finish::Cancelled,
    ] {
        assert_lease_lost(
            store.finish(&forged, outcome).await,
            "finish of a queued job",
        );
    }
    assert_lease_lost(
        store.heartbeat(&forged, LONG).await,
        "heartbeat of a queued job",
    );

    insert_one(store, job("acme", json!({"first": 1}))).await;
    let c = claim_one(store, LONG).await;
    assert_ne!(c.job.id, queued.id);
    let done = store
        .finish(&c.lease, Finish::Completed { result: json!(1) })
        .await
        .expect("complete");
    // terminal → anything
    for outcome in [
        Finish::Completed { result: json!(2) },
        Finish::Failed {
            error: "late".into(),
        },
        Finish::Retry {
            error: "late".into(),
            run_at: Utc::now(),
        },
        Finish::Released,
        Finish::Cancelled,
    ] {
        assert_lease_lost(
            store.finish(&c.lease, outcome).await,
            "finish of a terminal job",
        );
    }
    assert_lease_lost(
        store
            .append(
                &c.lease,
                Append::event(NewEvent::new(EventKind::Stage, "late")),
            )
            .await,
        "append to a terminal job",
    );
    match store.cancel(&t, done.id).await {
        Err(Error::InvalidTransition { from, to, .. }) => {
            assert_eq!((from, to), (JobStatus::Completed, JobStatus::Cancelled));
        }
        other => panic!("cancel of a completed job: {other:?}"),
    }
    let after = store.get(&t, done.id).await.expect("get");
    assert_eq!(after.status, JobStatus::Completed);
    assert_eq!(after.result, Some(json!(1)));
    assert_eq!(
        after.revision, done.revision,
        "refused writes changed the job"
    );
    let unchanged = store.get(&t, queued.id).await.expect("get");
    assert_eq!(unchanged.status, JobStatus::Queued);
}

/// Cancel: a queued job at once; a running one by request (heartbeats report it), which
/// ends `cancelled` when honoured or `completed` when the work finished first; a lost
/// worker's job with a pending request is cancelled by the reaper.
pub async fn cancel_queued_and_running(store: &impl JobStore) {
    let t = tenant("acme");
    let q = insert_one(store, job("acme", json!({"q": 1}))).await;
    assert_eq!(
        store.cancel(&t, q.id).await.expect("cancel").status,
        JobStatus::Cancelled
    );
    let none = store
        .take(ClaimParams::default().limit(10))
        .await
        .expect("claim");
    assert!(none.jobs.is_empty(), "a cancelled job was claimed");

    let r = insert_one(store, job("acme", json!({"r": 1}))).await;
    let c = claim_one(store, LONG).await;
    assert!(
        !store
            .heartbeat(&c.lease, LONG)
            .await
            .expect("beat")
            .cancel_requested
    );
    store.cancel(&t, r.id).await.expect("cancel running");
    let again = store.cancel(&t, r.id).await.expect("cancel twice");
    assert!(again.cancel_requested);
    assert!(
        store
            .heartbeat(&c.lease, LONG)
            .await
            .expect("beat")
            .cancel_requested
    );
    let finished = store
        .finish(
            &c.lease,
            Finish::Completed {
                result: json!("first"),
            },
        )
        .await
        .expect("finish");
    assert_eq!(
        finished.status,
        JobStatus::Completed,
        "work that finished first completes"
    );

    let f = insert_one(store, job("acme", json!({"f": 1}))).await;
    let c = claim_one(store, LONG).await;
    store.cancel(&t, f.id).await.expect("cancel running");
    let ended = store
        .finish(
            &c.lease,
            Finish::Retry {
                error: "stopped".into(),
                run_at: Utc::now(),
            },
        )
        .await
        .expect("finish");
    assert_eq!(
        ended.status,
        JobStatus::Cancelled,
        "a failed attempt after a cancel request is a cancellation"
    );

    let lost = insert_one(store, job("acme", json!({"lost": 1}))).await;
    claim_one(store, SHORT).await;
    store.cancel(&t, lost.id).await.expect("cancel running");
    store.clock().advance(SHORT + Duration::from_millis(50));
    let report = store.reap(ReapParams::default()).await.expect("reap");
    assert_eq!(report.cancelled, 1, "{report:?}");
    assert_eq!(
        store.get(&t, lost.id).await.expect("get").status,
        JobStatus::Cancelled
    );
}

/// A retry is not claimable before its not-before time; a release hands the job back
/// without charging the attempt.
pub async fn retry_waits_and_release_refunds(store: &impl JobStore) {
    let t = tenant("acme");
    let j = insert_one(store, job("acme", sample_input())).await;
    let c = claim_one(store, LONG).await;
    let later = Utc::now() + chrono::Duration::milliseconds(300);
    store
        .finish(
            &c.lease,
            Finish::Retry {
                error: "later".into(),
                run_at: later,
            },
        )
        .await
        .expect("retry");
    let early = store
        .take(ClaimParams::default().limit(5))
        .await
        .expect("claim");
    assert!(early.jobs.is_empty(), "claimed before its run_at");
    let next = early
        .next_run_at
        .expect("the store says when the retry is due");
    assert!(
        (next - later).num_milliseconds().abs() <= 1,
        "{next} vs {later}"
    );
    store.clock().advance(Duration::from_millis(350));
    let c = claim_one(store, LONG).await;
    assert_eq!(c.job.attempts, 2);
    let released = store
        .finish(&c.lease, Finish::Released)
        .await
        .expect("release");
    assert_eq!(released.status, JobStatus::Queued);
    assert_eq!(
        released.attempts, 1,
        "a release does not charge the attempt"
    );
    let c = claim_one(store, LONG).await;
    assert_eq!(c.job.attempts, 2);
    let retried = store
        .finish(
            &c.lease,
            Finish::Retry {
                error: "x".into(),
                run_at: Utc::now(),
            },
        )
        .await
        .expect("retry");
    assert_eq!(retried.status, JobStatus::Queued);
    let c = claim_one(store, LONG).await;
    assert_eq!(c.job.attempts, 3);
    let last = store
        .finish(
            &c.lease,
            Finish::Retry {
                error: "still".into(),
                run_at: Utc::now(),
            },
        )
        .await
        .expect("retry at the last attempt");
    assert_eq!(
        last.status,
        JobStatus::Failed,
        "no attempts left: a retry fails the job"
    );
    assert_eq!(
        store.get(&t, j.id).await.expect("get").error.as_deref(),
        Some("still")
    );
}

/// Purge deletes terminal jobs that ended before the cut-off, and nothing else.
pub async fn purge_removes_old_terminal_jobs(store: &impl JobStore) {
    let t = tenant("acme");
    let mut keyed = job("acme", json!({"k": 1}));
    keyed.idempotency_key = Some("purge-key".into());
    let done = insert_one(store, keyed.clone()).await;
    let c = claim_one(store, LONG).await;
    store
        .finish(&c.lease, Finish::Completed { result: json!(1) })
        .await
        .expect("finish");
    let queued = insert_one(store, job("acme", json!({"q": 1}))).await;
    let running = insert_one(store, job("acme", json!({"r": 1}))).await;
    let _lease = claim_one(store, LONG).await;

    let none = store
        .purge(PurgeParams::before(Utc::now() - chrono::Duration::hours(1)))
        .await
        .expect("purge");
    assert!(none.is_empty());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let purged = store
        .purge(PurgeParams::before(Utc::now()))
        .await
        .expect("purge");
    assert_eq!(purged, vec![(t.clone(), done.id)]);
    assert!(matches!(
        store.get(&t, done.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.events(&t, done.id, EventParams::default()).await,
        Err(Error::NotFound { .. })
    ));
    store.get(&t, queued.id).await.expect("queued kept");
    store.get(&t, running.id).await.expect("running kept");
    let mut again = keyed;
    again.id = crate::JobId::new();
    let reinserted = store.submit(vec![again]).await.expect("insert");
    assert!(
        reinserted[0].created,
        "a purged job's idempotency key is free again"
    );
}
