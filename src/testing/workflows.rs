//! Conformance cases for workflows: dependents wait, unblock in the step that completes
//! their last parent, are skipped when a parent fails and revived when it is retried; a
//! finalizer runs last; a workflow's cancel reaches every open job; a job of an
//! unfinished workflow is not discarded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{LONG, kinds, tenant, timeline};
use crate::store::JobStoreExt;
use crate::{
    ClaimParams, Committed, Error, EventKind, Finish, Job, JobId, JobStatus, JobStore, JobType,
    NewJob, NewWorkflow, Operator, WorkflowId, WorkflowJob, WorkflowStatus,
};

fn step(key: &str) -> WorkflowJob {
    WorkflowJob::new(
        key,
        NewJob::new(JobType::new("T").expect("valid"), json!({"key": key})),
    )
}

fn finalizer() -> NewJob {
    NewJob::new(
        JobType::new("T").expect("valid"),
        json!({"key": "finalizer"}),
    )
}

/// Inserts `flow` for tenant `acme` as the engine would, and returns its id and its jobs
/// by key.
pub async fn insert_workflow(
    store: &dyn JobStore,
    tenant_name: &str,
    flow: NewWorkflow,
) -> (WorkflowId, HashMap<String, Job>) {
    flow.validate().expect("a valid workflow");
    let id = WorkflowId::new();
    let t = tenant(tenant_name);
    let jobs = flow.into_jobs(id, |new| Job::new_queued(t.clone(), new, 3));
    let inserted = store.submit(jobs).await.expect("insert the workflow");
    let by_key = inserted
        .into_iter()
        .map(|i| (i.job.workflow.as_ref().expect("linked").key.clone(), i.job))
        .collect();
    (id, by_key)
}

async fn status(store: &dyn JobStore, id: JobId) -> JobStatus {
    store.get(&tenant("acme"), id).await.expect("get").status
}

/// Claims every due job (up to 100).
async fn claim_all(store: &dyn JobStore) -> Vec<crate::ClaimedJob> {
    let params = ClaimParams::default().limit(100).lease_ttl(LONG);
    store.take(params).await.expect("claim").jobs
}

/// Claims the due jobs and finishes the one with `key` with `outcome`, handing the
/// others back; panics when it is not due.
async fn run(store: &dyn JobStore, key: &str, outcome: Finish) -> Job {
    let mut done = None;
    for c in claim_all(store).await {
        let k = c.job.workflow.as_ref().map(|l| l.key.clone());
        if k.as_deref() == Some(key) {
            done = Some(
                store
                    .finish(&c.lease, outcome.clone())
                    .await
                    .expect("finish"),
            );
        } else {
            store
                .finish(&c.lease, Finish::Released)
                .await
                .expect("release");
        }
    }
    done.unwrap_or_else(|| panic!("{key} was not due"))
}

fn ok() -> Finish {
    Finish::Completed {
        result: json!({"ok": true}),
    }
}

fn boom() -> Finish {
    Finish::Failed {
        error: "boom".into(),
    }
}

/// A diamond with a finalizer: only roots are claimable; each job is queued in the step
/// that completes its last parent, with a `waiting` then an `unblocked` event; the
/// finalizer comes last, and the workflow then reads completed.
pub async fn workflow_dependents_wait_then_run(store: &impl JobStore) {
    let t = tenant("acme");
    let flow = NewWorkflow::new()
        .name("diamond")
        .job(step("a"))
        .job(step("b").depends_on(["a"]))
        .job(step("c").depends_on(["a"]))
        .job(step("d").depends_on(["b", "c"]))
        .finalizer(finalizer());
    let (id, jobs) = insert_workflow(store, "acme", flow).await;
    assert_eq!(jobs["a"].status, JobStatus::Queued);
    for key in ["b", "c", "d", "finalizer"] {
        assert_eq!(jobs[key].status, JobStatus::Waiting, "{key}");
    }
    let view = store.workflow(&t, id).await.expect("workflow");
    assert_eq!(
        (view.status, view.name.as_deref()),
        (WorkflowStatus::Running, Some("diamond"))
    );
    assert_eq!(view.jobs.len(), 4);
    assert_eq!(view.jobs[3].depends_on, ["b", "c"]);
    let counts = store.stats().await.expect("stats");
    assert_eq!((counts.waiting, counts.queued), (4, 1));

    let claimed = claim_all(store).await;
    assert_eq!(claimed.len(), 1, "only the root is claimable");
    store
        .finish(&claimed[0].lease, ok())
        .await
        .expect("complete a");
    // The same step queued both children.
    assert_eq!(status(store, jobs["b"].id).await, JobStatus::Queued);
    assert_eq!(status(store, jobs["c"].id).await, JobStatus::Queued);
    assert_eq!(status(store, jobs["d"].id).await, JobStatus::Waiting);
    let b_events = timeline(store, &t, jobs["b"].id).await;
    assert_eq!(kinds(&b_events), [EventKind::Waiting, EventKind::Unblocked]);
    assert_eq!(
        b_events[1].payload.as_ref().expect("payload")["parent_key"],
        "a"
    );

    run(store, "b", ok()).await;
    assert_eq!(
        status(store, jobs["d"].id).await,
        JobStatus::Waiting,
        "d waits for c"
    );
    run(store, "c", ok()).await;
    assert_eq!(status(store, jobs["d"].id).await, JobStatus::Queued);
    assert_eq!(
        status(store, jobs["finalizer"].id).await,
        JobStatus::Waiting
    );
    run(store, "d", ok()).await;
    assert_eq!(status(store, jobs["finalizer"].id).await, JobStatus::Queued);
    run(store, "finalizer", ok()).await;

    let view = store.workflow(&t, id).await.expect("workflow");
    assert_eq!(view.status, WorkflowStatus::Completed);
    let all: Vec<Job> = futures::future::join_all(
        jobs.values()
            .map(|j| async { store.get(&t, j.id).await.expect("get") }),
    )
    .await;
    let by_id: HashMap<JobId, &Job> = all.iter().map(|j| (j.id, j)).collect();
    for job in &all {
        for parent in &job.parents {
            assert!(
                by_id[parent].completed_at <= job.started_at,
                "a job started before its parent completed"
            );
        }
    }
}

/// A failed parent skips its waiting dependents and theirs (cancelled, with an event
/// naming it) in the step that fails it, a dependent that runs anyway is queued, and the
/// finalizer still runs; an operator's retry of the failed parent (before the finalizer
/// was queued) returns what its failure skipped to `waiting`, and the finalizer waits for
/// them again.
pub async fn failed_parents_skip_and_retries_revive(store: &impl JobStore) {
    let t = tenant("acme");
    let flow = NewWorkflow::new()
        .job(step("a"))
        .job(step("b").depends_on(["a"]))
        .job(step("c").depends_on(["b"]))
        .job(step("e").depends_on(["a"]).run_if_parents_fail())
        .finalizer(finalizer());
    let (id, jobs) = insert_workflow(store, "acme", flow).await;
    run(store, "a", boom()).await;
    assert_eq!(status(store, jobs["b"].id).await, JobStatus::Cancelled);
    assert_eq!(
        status(store, jobs["c"].id).await,
        JobStatus::Cancelled,
        "skipped in turn"
    );
    assert_eq!(
        status(store, jobs["e"].id).await,
        JobStatus::Queued,
        "runs anyway"
    );
    assert_eq!(
        status(store, jobs["finalizer"].id).await,
        JobStatus::Waiting
    );
    let b_events = timeline(store, &t, jobs["b"].id).await;
    assert_eq!(kinds(&b_events), [EventKind::Waiting, EventKind::Cancelled]);
    assert!(
        b_events[1].message.contains("\"a\""),
        "{:?}",
        b_events[1].message
    );

    let by = Operator::new("ops");
    let retried = store.retry(&t, jobs["a"].id, &by).await.expect("retry a");
    assert_eq!(retried.status, JobStatus::Queued);
    assert_eq!(
        status(store, jobs["b"].id).await,
        JobStatus::Waiting,
        "revived"
    );
    assert_eq!(
        status(store, jobs["c"].id).await,
        JobStatus::Waiting,
        "revived in turn"
    );
    let c_events = timeline(store, &t, jobs["c"].id).await;
    assert_eq!(
        kinds(&c_events),
        [EventKind::Waiting, EventKind::Cancelled, EventKind::Waiting]
    );
    run(store, "e", ok()).await;
    run(store, "a", ok()).await;
    run(store, "b", ok()).await;
    assert_eq!(
        status(store, jobs["finalizer"].id).await,
        JobStatus::Waiting
    );
    run(store, "c", ok()).await;
    run(store, "finalizer", ok()).await;
    let view = store.workflow(&t, id).await.expect("workflow");
    assert_eq!(view.status, WorkflowStatus::Completed);

    // Without a retry, a failure leaves the workflow failed once all is terminal.
    let flow = NewWorkflow::new()
        .job(step("a"))
        .job(step("b").depends_on(["a"]))
        .finalizer(finalizer());
    let (id, _) = insert_workflow(store, "acme", flow).await;
    run(store, "a", boom()).await;
    run(store, "finalizer", ok()).await;
    let view = store.workflow(&t, id).await.expect("workflow");
    assert_eq!(view.status, WorkflowStatus::Failed);
}

/// The moves the table does not allow are refused on a waiting job (claim, requeue,
/// retry); a cancel of it is allowed and skips its dependents.
pub async fn waiting_jobs_move_only_as_the_table_says(store: &impl JobStore) {
    let t = tenant("acme");
    let by = Operator::new("ops");
    let flow = NewWorkflow::new()
        .job(step("a"))
        .job(step("b").depends_on(["a"]))
        .job(step("c").depends_on(["b"]));
    let (_, jobs) = insert_workflow(store, "acme", flow).await;
    let b = jobs["b"].id;
    let refused = |r: crate::Result<Job>| {
        assert!(
            matches!(
                r,
                Err(Error::InvalidTransition {
                    from: JobStatus::Waiting,
                    ..
                })
            ),
            "{r:?}"
        );
    };
    refused(store.requeue(&t, b, &by).await);
    refused(store.retry(&t, b, &by).await);
    let cancelled = store.cancel(&t, b).await.expect("cancel a waiting job");
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(
        status(store, jobs["c"].id).await,
        JobStatus::Cancelled,
        "skipped"
    );
    let claimed = claim_all(store).await;
    assert_eq!(claimed.len(), 1, "only the root was ever claimable");
    store
        .finish(&claimed[0].lease, ok())
        .await
        .expect("complete a");
    assert_eq!(
        status(store, b).await,
        JobStatus::Cancelled,
        "a cancel is final"
    );
}

/// A workflow's cancel cancels its waiting and queued jobs at once and asks its running
/// ones to stop; it reads `cancelled` once they are all terminal. Another tenant sees no
/// such workflow.
pub async fn workflow_cancel_reaches_every_open_job(store: &impl JobStore) {
    let t = tenant("acme");
    let flow = NewWorkflow::new()
        .job(step("a"))
        .job(step("q"))
        .job(step("b").depends_on(["a"]))
        .finalizer(finalizer());
    let (id, jobs) = insert_workflow(store, "acme", flow).await;
    let other = store.workflow(&tenant("globex"), id).await;
    assert!(
        matches!(other, Err(Error::WorkflowNotFound { .. })),
        "{other:?}"
    );
    let missing = store.cancel_workflow(&tenant("globex"), id, None).await;
    assert!(
        matches!(missing, Err(Error::WorkflowNotFound { .. })),
        "{missing:?}"
    );

    let claimed = claim_all(store).await;
    let a = claimed
        .iter()
        .find(|c| c.job.id == jobs["a"].id)
        .expect("a claimed");
    for c in claimed.iter().filter(|c| c.job.id != jobs["a"].id) {
        store
            .finish(&c.lease, Finish::Released)
            .await
            .expect("release");
    }
    let view = store.cancel_workflow(&t, id, None).await.expect("cancel");
    assert_eq!(view.status, WorkflowStatus::Running, "a still runs");
    for key in ["q", "b", "finalizer"] {
        assert_eq!(
            status(store, jobs[key].id).await,
            JobStatus::Cancelled,
            "{key}"
        );
    }
    let running = store.get(&t, jobs["a"].id).await.expect("a");
    assert!(running.cancel_requested);
    store
        .finish(&a.lease, ok())
        .await
        .expect("a completes anyway");
    let view = store.workflow(&t, id).await.expect("workflow");
    assert_eq!(view.status, WorkflowStatus::Cancelled);
}

/// A finished job of an unfinished workflow is not discarded; once every job is
/// terminal it is.
pub async fn unfinished_workflows_keep_their_jobs(store: &impl JobStore) {
    let t = tenant("acme");
    let flow = NewWorkflow::new()
        .job(step("a"))
        .job(step("b").depends_on(["a"]));
    let (_, jobs) = insert_workflow(store, "acme", flow).await;
    run(store, "a", ok()).await;
    let refused = store.discard(&t, jobs["a"].id).await;
    assert!(
        matches!(refused, Err(Error::Conflict { .. })),
        "{refused:?}"
    );
    run(store, "b", ok()).await;
    store
        .discard(&t, jobs["a"].id)
        .await
        .expect("discard once finished");
}

/// Fifty parents completing at once unblock their one dependent exactly once, and it
/// counts every one of them.
pub async fn concurrent_parents_unblock_once(store: Arc<impl JobStore>) {
    let t = tenant("acme");
    let mut flow = NewWorkflow::new().finalizer(finalizer());
    for i in 0..50 {
        flow = flow.job(step(&format!("p{i}")));
    }
    let (_, jobs) = insert_workflow(&*store, "acme", flow).await;
    let claimed = claim_all(&*store).await;
    assert_eq!(claimed.len(), 50);
    let finishes = claimed.into_iter().map(|c| {
        let store = store.clone();
        tokio::spawn(async move { store.finish(&c.lease, ok()).await.expect("complete") })
    });
    for f in futures::future::join_all(finishes).await {
        f.expect("task");
    }
    let fin = store
        .get(&t, jobs["finalizer"].id)
        .await
        .expect("finalizer");
    assert_eq!(fin.status, JobStatus::Queued);
    assert_eq!(fin.workflow.as_ref().expect("linked").pending, 0);
    let events = timeline(&*store, &t, fin.id).await;
    assert_eq!(kinds(&events), [EventKind::Waiting, EventKind::Unblocked]);
}

/// A workflow job whose lease expires on its last attempt is failed by the reaper, and
/// its dependents are skipped in the same step.
pub async fn reaped_parents_skip_their_dependents(store: &impl JobStore) {
    let mut flow = NewWorkflow::new()
        .job(step("a"))
        .job(step("b").depends_on(["a"]));
    flow.jobs[0].job.max_attempts = Some(1);
    let (_, jobs) = insert_workflow(store, "acme", flow).await;
    let params = ClaimParams::default()
        .limit(10)
        .lease_ttl(Duration::from_millis(20));
    assert_eq!(store.take(params).await.expect("claim").jobs.len(), 1);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let report = store
        .reap(crate::ReapParams::default())
        .await
        .expect("reap");
    assert_eq!(report.failed, 1);
    assert_eq!(status(store, jobs["a"].id).await, JobStatus::Failed);
    assert_eq!(status(store, jobs["b"].id).await, JobStatus::Cancelled);
}

/// [`JobStore::commit_all`] applies every write or none: one stale guard refuses them all.
pub async fn commit_all_is_all_or_none(store: &impl JobStore) {
    let t = tenant("acme");
    let a = super::insert_one(store, super::job("acme", json!({"a": 1}))).await;
    let b = super::insert_one(store, super::job("acme", json!({"b": 1}))).await;
    let load = |id| async move {
        store
            .load(None, &[id])
            .await
            .expect("load")
            .pop()
            .expect("there")
    };
    let now = store.clock().now();
    let stale = load(b.id).await;
    store.cancel(&t, b.id).await.expect("cancel b");
    let write_a = match crate::rules::cancel(load(a.id).await, None, now).expect("rule") {
        crate::Step::Write(w) => w,
        crate::Step::Unchanged(_) => panic!("a cancel writes"),
    };
    let mut write_b = stale.write();
    write_b.job.revision += 1;
    let answer = store
        .commit_all(vec![write_a, write_b])
        .await
        .expect("commit");
    assert_eq!(answer, Committed::Conflict);
    assert_eq!(
        status(store, a.id).await,
        JobStatus::Queued,
        "nothing applied"
    );
}
