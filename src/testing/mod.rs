//! The conformance suite every backend passes (feature `testing`).
//!
//! Plain async functions that panic on a broken invariant, generic over any
//! [`JobStore`] or [`ArtifactStore`]. A backend's test file calls
//! [`run_job_store_suite`] and [`run_artifact_store_suite`] with a factory that makes a
//! fresh, empty store per case, and the engine-level [`fault_test`] and [`wake_up_test`].
//!
//! ```no_run
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn my_store_passes_the_suite() {
//!     jobworks::testing::run_job_store_suite(|| async { jobworks::MemoryStore::new() }).await;
//! }
//! ```
//!
//! This module is for tests: its API is not covered by semver guarantees in patch releases.

mod artifacts;
mod differential;
mod documents;
mod engine;
mod fairness;
mod fencing;
mod flow;
mod leases;
mod lifecycle;
mod queries;
mod queues;
mod records;
mod schedules;
mod workflow_faults;
mod workflows;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::store::JobStoreExt;
use crate::{ArtifactStore, ClaimParams, ClaimedJob, Job, JobStore, JobType, NewJob, TenantId};

pub use artifacts::*;
pub use differential::differential_test;
pub use documents::*;
pub use engine::*;
pub use fairness::*;
pub use fencing::*;
pub use flow::*;
pub use leases::*;
pub use lifecycle::*;
pub use queries::*;
pub use queues::*;
pub use records::*;
pub use schedules::*;
pub use workflow_faults::workflow_fault_test;
pub use workflows::*;

/// Runs every job-store case, each on a fresh store from `new_store`.
pub async fn run_job_store_suite<S, F, Fut>(new_store: F)
where
    S: JobStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    macro_rules! cases {
        ($($case:ident),* $(,)?) => {$(
            tracing::info!(case = stringify!($case), "conformance");
            $case(&new_store().await).await;
        )*};
    }
    cases!(
        insert_then_get,
        latest_event_is_the_newest_public_one,
        every_legal_transition,
        illegal_transitions_are_refused,
        zombie_writes_are_fenced,
        expired_lease_is_fenced_before_reaping,
        idempotent_insert,
        tenant_isolation,
        gapless_events_under_concurrent_writers,
        claim_order,
        claim_filters_by_type,
        lease_expiry_requeues_then_fails,
        cancel_queued_and_running,
        retry_waits_and_release_refunds,
        purge_removes_old_terminal_jobs,
        list_pages_are_stable,
        operator_reads_span_tenants,
        activity_is_counted,
        stats_count_by_status,
        notifications_fire,
        progress_and_artifacts_are_recorded,
        internal_events_stay_out_of_public_reads,
        every_change_notifies,
        claims_stay_in_their_queue,
        a_paused_queue_is_not_claimed,
        snooze_charges_no_attempt,
        max_running_caps_claims,
        operator_actions_follow_the_rules,
        rate_limits_space_starts,
        tenants_take_turns,
        max_running_per_key_caps_claims,
        quotas_refuse_at_submit,
        commit_all_is_all_or_none,
        workflow_dependents_wait_then_run,
        failed_parents_skip_and_retries_revive,
        waiting_jobs_move_only_as_the_table_says,
        workflow_cancel_reaches_every_open_job,
        unfinished_workflows_keep_their_jobs,
        reaped_parents_skip_their_dependents,
        big_claims_and_reaps_go_through,
    );
    no_double_claim(Arc::new(new_store().await)).await;
    concurrent_parents_unblock_once(Arc::new(new_store().await)).await;
    zombie_bytes_never_replace_the_live_attempts(Arc::new(new_store().await)).await;
}

/// Runs every artifact-store case, each on a fresh store from `new_store`.
pub async fn run_artifact_store_suite<A, F, Fut>(new_store: F)
where
    A: ArtifactStore,
    F: Fn() -> Fut,
    Fut: Future<Output = A>,
{
    artifact_round_trip(&new_store().await).await;
    artifact_large_stream(&new_store().await).await;
    artifact_names_are_validated(&new_store().await).await;
    signed_urls_are_verified(&new_store().await).await;
}

/// A lease that does not run out during a case.
const LONG: Duration = Duration::from_secs(60);
/// A lease that a case lets run out.
const SHORT: Duration = Duration::from_millis(150);

/// The kinds of `events`, in order.
fn kinds(events: &[crate::Event]) -> Vec<crate::EventKind> {
    events.iter().map(|e| e.kind).collect()
}

/// Every event of a job, internal ones included.
async fn timeline(
    store: &dyn JobStore,
    t: &crate::TenantId,
    id: crate::JobId,
) -> Vec<crate::Event> {
    store
        .events(
            t,
            id,
            crate::EventParams::default().limit(1000).include_internal(),
        )
        .await
        .expect("events")
        .events
}

/// Asserts that `r` is [`Error::LeaseLost`](crate::Error::LeaseLost).
fn assert_lease_lost<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) {
    assert!(
        matches!(r, Err(crate::Error::LeaseLost { .. })),
        "{what}: expected LeaseLost, got {r:?}"
    );
}

/// A tenant id for tests.
pub fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("test tenant names are valid")
}

/// A queued job of type `T` for `tenant` with `input`, as the engine would build it.
/// Adjust its public fields (priority, run_at, …) before inserting.
pub fn job(tenant_name: &str, input: Value) -> Job {
    typed_job(tenant_name, "T", input)
}

/// A queued job of type `ty`.
pub fn typed_job(tenant_name: &str, ty: &str, input: Value) -> Job {
    let new = NewJob::new(JobType::new(ty).expect("valid test type"), input);
    Job::new_queued(tenant(tenant_name), new, 3)
}

/// Claims exactly one job with a lease of `ttl`, panicking when none is due.
pub async fn claim_one(store: &dyn JobStore, ttl: Duration) -> ClaimedJob {
    let mut claimed = store
        .take(ClaimParams::default().limit(1).lease_ttl(ttl))
        .await
        .expect("claim");
    assert_eq!(claimed.jobs.len(), 1, "expected one due job");
    claimed.jobs.pop().expect("one")
}

/// Inserts one job and returns it as stored.
pub async fn insert_one(store: &dyn JobStore, job: Job) -> Job {
    let mut out = store.submit(vec![job]).await.expect("insert");
    assert!(out[0].created);
    out.pop().expect("one").job
}

fn sample_input() -> Value {
    json!({"n": 1, "s": "x"})
}
