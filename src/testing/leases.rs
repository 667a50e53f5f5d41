//! Conformance cases for leases and fencing: a stalled attempt's writes are refused, an
//! expired lease is refused before the reaper runs, and the reaper requeues, then fails;
//! timelines stay gapless under concurrent writers.

use std::time::Duration;

use serde_json::json;

use super::{
    LONG, SHORT, assert_lease_lost, claim_one, insert_one, job, kinds, sample_input, tenant,
    timeline,
};
use crate::store::JobStoreExt;
use crate::{
    Append, ClaimParams, EventKind, EventParams, Finish, JobStatus, JobStore, NewEvent, ReapParams,
};

/// A worker whose lease expired and whose job another worker claimed cannot heartbeat,
/// append or finish any more.
pub async fn zombie_writes_are_fenced(store: &impl JobStore) {
    let t = tenant("acme");
    let j = insert_one(store, job("acme", sample_input())).await;
    let zombie = claim_one(store, SHORT).await;
    store.clock().advance(SHORT + Duration::from_millis(50));
    let report = store.reap(ReapParams::default()).await.expect("reap");
    assert_eq!(report.requeued, 1);
    let live = claim_one(store, LONG).await;
    assert_eq!(live.job.id, j.id);
    assert_ne!(live.lease.lease_id, zombie.lease.lease_id);

    assert_lease_lost(
        store.heartbeat(&zombie.lease, LONG).await,
        "zombie heartbeat",
    );
    assert_lease_lost(
        store
            .append(
                &zombie.lease,
                Append::event(NewEvent::new(EventKind::Stage, "zombie")),
            )
            .await,
        "zombie event",
    );
    assert_lease_lost(
        store
            .finish(
                &zombie.lease,
                Finish::Completed {
                    result: json!("zombie"),
                },
            )
            .await,
        "zombie completion",
    );
    store
        .heartbeat(&live.lease, LONG)
        .await
        .expect("live heartbeat");
    store
        .finish(
            &live.lease,
            Finish::Completed {
                result: json!("live"),
            },
        )
        .await
        .expect("live completion");
    let done = store.get(&t, j.id).await.expect("get");
    assert_eq!(done.result, Some(json!("live")));
    let events = timeline(store, &t, j.id).await;
    assert!(events.iter().all(|e| e.message != "zombie"));
    assert_eq!(events.iter().filter(|e| e.kind.is_terminal()).count(), 1);
}

/// A lease that ran out is refused even before the reaper has requeued its job.
pub async fn expired_lease_is_fenced_before_reaping(store: &impl JobStore) {
    insert_one(store, job("acme", sample_input())).await;
    let c = claim_one(store, Duration::from_millis(50)).await;
    store.clock().advance(Duration::from_millis(100));
    assert_lease_lost(store.heartbeat(&c.lease, LONG).await, "expired heartbeat");
    assert_lease_lost(
        store
            .finish(&c.lease, Finish::Completed { result: json!(1) })
            .await,
        "expired completion",
    );
}

/// The reaper requeues an expired job with the attempt counted, and fails it when no
/// attempts are left.
pub async fn lease_expiry_requeues_then_fails(store: &impl JobStore) {
    let t = tenant("acme");
    let mut j = job("acme", sample_input());
    j.max_attempts = 2;
    let j = insert_one(store, j).await;
    for attempt in 1..=2u32 {
        let c = claim_one(store, SHORT).await;
        assert_eq!(c.job.attempts, attempt);
        store.clock().advance(SHORT + Duration::from_millis(50));
        let report = store.reap(ReapParams::default()).await.expect("reap");
        let after = store.get(&t, j.id).await.expect("get");
        assert_eq!(after.attempts, attempt);
        if attempt == 1 {
            assert_eq!(report.requeued, 1, "{report:?}");
            assert_eq!(after.status, JobStatus::Queued);
            assert!(after.error.is_some());
        } else {
            assert_eq!(report.failed, 1, "{report:?}");
            assert_eq!(after.status, JobStatus::Failed);
            let again = store
                .take(ClaimParams::default().limit(10))
                .await
                .expect("claim");
            assert!(again.jobs.is_empty(), "a failed job was claimed");
        }
    }
    assert_eq!(
        kinds(&timeline(store, &t, j.id).await),
        [
            EventKind::Queued,
            EventKind::Started,
            EventKind::Retrying,
            EventKind::Started,
            EventKind::Failed
        ]
    );
}

/// Gap-free sequence numbers while many writers append to one timeline.
pub async fn gapless_events_under_concurrent_writers(store: &impl JobStore) {
    let t = tenant("acme");
    let j = insert_one(store, job("acme", sample_input())).await;
    let c = claim_one(store, LONG).await;
    let writers = (0..8).map(|w| async move {
        for i in 0..40 {
            let event = NewEvent::new(EventKind::Custom, format!("w{w}-{i}"));
            store
                .append(&c.lease, Append::event(event))
                .await
                .expect("append");
        }
    });
    futures::future::join_all(writers).await;
    let events = timeline(store, &t, j.id).await;
    assert_eq!(events.len(), 2 + 8 * 40);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "gap or duplicate at {i}");
    }
    let page = store
        .events(&t, j.id, EventParams::default().after(100).limit(10))
        .await
        .expect("page");
    assert_eq!(page.events.first().map(|e| e.seq), Some(101));
    assert_eq!(page.events.len(), 10);
}

/// A claim of 500 jobs and a reap of their 500 expired leases each go through in one
/// call (a backend that tells other processes of every changed job must keep its
/// message within bounds, whatever the number of jobs).
pub async fn big_claims_and_reaps_go_through(store: &impl JobStore) {
    let jobs = (0..500).map(|i| job("acme", json!({ "i": i }))).collect();
    store.submit(jobs).await.expect("insert");
    let params = ClaimParams::default().limit(500).lease_ttl(SHORT);
    let claimed = store.take(params).await.expect("a claim of 500");
    assert_eq!(claimed.jobs.len(), 500);
    tokio::time::sleep(SHORT * 3).await;
    let report = store
        .reap(ReapParams::default())
        .await
        .expect("a reap of 500");
    assert_eq!(report.requeued, 500);
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.queued, stats.running), (500, 0));
}
