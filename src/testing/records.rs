//! Conformance cases for what a running attempt records: progress, artifact records,
//! internal events, and the notifications every change sends.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::{claim_one, insert_one, job, sample_input, tenant};
use crate::store::JobStoreExt;
use crate::store::{Append, EventParams, Finish, JobStore, ReapParams};
use crate::{Artifact, ArtifactRole, EventKind, NewEvent, Progress, Visibility};

const LONG: Duration = Duration::from_secs(60);

fn artifact(name: &str, size: u64, attempt: u32) -> Artifact {
    Artifact {
        name: name.to_owned(),
        kind: "report_pdf".to_owned(),
        role: ArtifactRole::Final,
        content_type: "application/pdf".to_owned(),
        size_bytes: size,
        checksum: format!("sha256:{size:064x}"),
        metadata: json!({"pages": size % 7, "nested": {"ok": true}}),
        created_at: crate::job::now(),
        attempt,
    }
}

/// Progress and artifact records read back exactly; a record of the same name replaces
/// the earlier one; both survive completion, and a later attempt still sees the earlier
/// attempt's artifacts.
pub async fn progress_and_artifacts_are_recorded(store: &impl JobStore) {
    let t = tenant("acme");
    let mut j = job("acme", sample_input());
    j.max_attempts = 3;
    let j = insert_one(store, j).await;
    let first = claim_one(store, LONG).await;
    let progress = Progress {
        fraction: 0.25,
        message: "a quarter".into(),
    };
    let event = NewEvent::new(EventKind::Progress, "a quarter");
    store
        .append(
            &first.lease,
            Append::event(event).with_progress(progress.clone()),
        )
        .await
        .expect("progress");
    assert_eq!(
        store.get(&t, j.id).await.expect("get").progress,
        Some(progress)
    );

    let draft = artifact("draft.txt", 10, 1);
    let mut stored = NewEvent::new(EventKind::Artifact, "stored draft.txt");
    stored.artifacts.push(draft.name.clone());
    let recorded = store
        .append(
            &first.lease,
            Append::event(stored).with_artifact(draft.clone()),
        )
        .await
        .expect("artifact");
    assert_eq!(recorded.artifacts, vec![draft.name.clone()]);
    let got = store.get(&t, j.id).await.expect("get");
    assert_eq!(got.artifacts, vec![draft.clone()]);
    store
        .finish(
            &first.lease,
            Finish::Retry {
                error: "again".into(),
                run_at: Utc::now(),
            },
        )
        .await
        .expect("retry");

    let second = claim_one(store, LONG).await;
    assert_eq!(
        second.job.artifacts,
        vec![draft.clone()],
        "earlier attempts' records"
    );
    assert_eq!(
        second.job.progress, None,
        "a new attempt starts without progress"
    );
    let replaced = artifact("draft.txt", 20, 2);
    let report = artifact("out/report.pdf", 30, 2);
    for a in [&replaced, &report] {
        let event = NewEvent::new(EventKind::Artifact, format!("stored {}", a.name));
        store
            .append(&second.lease, Append::event(event).with_artifact(a.clone()))
            .await
            .expect("artifact");
    }
    let done = store
        .finish(&second.lease, Finish::Completed { result: json!(1) })
        .await
        .expect("complete");
    let mut names: Vec<_> = done.artifacts.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["draft.txt", "out/report.pdf"]);
    let got = store.get(&t, j.id).await.expect("get");
    let draft_now = got.artifacts.iter().find(|a| a.name == "draft.txt");
    assert_eq!(
        draft_now,
        Some(&replaced),
        "the same name replaces the record"
    );
    assert!(got.artifacts.contains(&report));
}

/// Internal events take their place in the numbering but never appear in public reads.
pub async fn internal_events_stay_out_of_public_reads(store: &impl JobStore) {
    let t = tenant("acme");
    let j = insert_one(store, job("acme", sample_input())).await;
    let c = claim_one(store, LONG).await;
    for (i, internal) in [false, true, false, true].into_iter().enumerate() {
        let mut event = NewEvent::new(EventKind::Custom, format!("note {i}"));
        if internal {
            event = event.internal();
        }
        store
            .append(&c.lease, Append::event(event))
            .await
            .expect("append");
    }
    let public = store
        .events(&t, j.id, EventParams::default())
        .await
        .expect("events");
    assert!(
        public
            .events
            .iter()
            .all(|e| e.visibility == Visibility::Public)
    );
    let messages: Vec<_> = public.events.iter().map(|e| &*e.message).collect();
    assert_eq!(messages, ["queued", "attempt 1", "note 0", "note 2"]);
    let all = store
        .events(&t, j.id, EventParams::default().include_internal())
        .await
        .expect("events");
    let seqs: Vec<u64> = all.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "one numbering for both");
    let after = store
        .events(&t, j.id, EventParams::default().after(3))
        .await
        .expect("events");
    let seqs: Vec<u64> = after.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [5], "a cursor past an internal event skips it");
}

/// Appends, cancels and reaps wake the job's watchers; a reap that requeues also wakes
/// idle workers.
pub async fn every_change_notifies(store: &impl JobStore) {
    let within = Duration::from_secs(2);
    let short = Duration::from_millis(150);
    macro_rules! wakes {
        ($id:expr, $what:literal, $change:expr) => {{
            let watch = store.notifier().watch_job($id);
            let changed = watch.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let out = $change;
            tokio::time::timeout(within, changed)
                .await
                .expect(concat!($what, " wakes the job's watchers"));
            out
        }};
    }
    let t = tenant("acme");
    let a = insert_one(store, job("acme", sample_input())).await;
    let c = claim_one(store, LONG).await;
    wakes!(a.id, "an append", {
        let event = NewEvent::new(EventKind::Stage, "working");
        store
            .append(&c.lease, Append::event(event))
            .await
            .expect("append")
    });
    wakes!(a.id, "a cancel of a running job", {
        store.cancel(&t, a.id).await.expect("cancel")
    });

    let b = insert_one(store, job("acme", sample_input())).await;
    wakes!(b.id, "a cancel of a queued job", {
        store.cancel(&t, b.id).await.expect("cancel")
    });

    let d = insert_one(store, job("acme", sample_input())).await;
    let stalled = claim_one(store, short).await;
    assert_eq!(stalled.job.id, d.id);
    store.clock().advance(short + Duration::from_millis(50));
    let mut work = store.notifier().subscribe_work();
    work.borrow_and_update();
    let report = wakes!(d.id, "a reap", {
        store.reap(ReapParams::default()).await.expect("reap")
    });
    assert!(report.requeued + report.cancelled + report.failed >= 1);
    if report.requeued > 0 {
        tokio::time::timeout(within, work.changed())
            .await
            .expect("a requeue wakes idle workers")
            .expect("notifier alive");
    }
}
