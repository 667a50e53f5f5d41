//! Operator actions through the engine: a retried job runs again, a discarded job's
//! bytes are gone, and bulk actions select by filter, respect their cap and can dry-run.

use std::time::Duration;

use jobworks::{
    ArtifactSpec, BulkAction, Engine, Error, EventKind, EventParams, JobContext, JobError,
    JobFilter, JobStatus, JobType, ListParams, NewJob, Operator, TenantId, Tenants, from_fn,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

/// An engine whose `FLAKY` jobs fail for good unless their input says `ok`, after
/// storing an artifact.
fn engine() -> Engine {
    let flaky = from_fn(|ctx: JobContext, input: Value| async move {
        ctx.put_artifact(ArtifactSpec::new("out.txt", "text/plain"), "bytes")
            .await?;
        if input["ok"] == json!(true) {
            Ok(json!("fine"))
        } else {
            Err(JobError::fail("broken input"))
        }
    });
    let engine = Engine::builder().executor("FLAKY", flaky).build().unwrap();
    engine.start().unwrap();
    engine
}

async fn run(engine: &Engine, input: Value) -> jobworks::Job {
    let job = NewJob::new(JobType::new("FLAKY").unwrap(), input);
    let id = engine.submit(&tenant(), job).await.unwrap().job.id;
    engine
        .wait_until_terminal(&tenant(), id, WAIT)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_job_runs_again_and_a_discarded_one_leaves_nothing() {
    let engine = engine();
    let by = Operator::new("ops");
    let failed = run(&engine, json!({})).await;
    assert_eq!(failed.status, JobStatus::Failed);
    engine.retry(&tenant(), failed.id, &by).await.unwrap();
    let again = engine
        .wait_until_terminal(&tenant(), failed.id, WAIT)
        .await
        .unwrap();
    assert_eq!((again.status, again.attempts), (JobStatus::Failed, 1));
    let kinds: Vec<EventKind> = engine
        .events(&tenant(), failed.id, EventParams::default().limit(100))
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.kind)
        .collect();
    let started = kinds.iter().filter(|k| **k == EventKind::Started).count();
    assert_eq!(started, 2, "both attempts stay on the timeline: {kinds:?}");

    let key = jobworks::ArtifactKey::of_record(tenant(), again.id, &again.artifacts[0]).unwrap();
    assert!(engine.artifacts().get(&key, None).await.is_ok());
    engine.discard(&tenant(), again.id, &by).await.unwrap();
    assert!(matches!(
        engine.get(&tenant(), again.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        engine.artifacts().get(&key, None).await.is_err(),
        "a discarded job's bytes are still served"
    );
    assert!(
        engine
            .artifacts()
            .list(&tenant(), again.id)
            .await
            .unwrap()
            .is_empty()
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_select_by_filter_with_a_cap_and_a_dry_run() {
    let engine = engine();
    let by = Operator::new("ops").reason("provider was down");
    let mut failed = Vec::new();
    for _ in 0..5 {
        failed.push(run(&engine, json!({})).await.id);
    }
    let fine = run(&engine, json!({"ok": true})).await;
    assert_eq!(fine.status, JobStatus::Completed);
    let filter = JobFilter::default()
        .status(JobStatus::Failed)
        .error_contains("broken");
    let t = tenant();
    let dry = engine
        .bulk(&t, BulkAction::Retry, &filter, 1000, true, &by)
        .await
        .unwrap();
    assert_eq!((dry.matched, dry.applied), (5, 0));
    let none = filter.clone().error_contains("no such text");
    let dry = engine
        .bulk(&t, BulkAction::Retry, &none, 1000, true, &by)
        .await
        .unwrap();
    assert_eq!(dry.matched, 0);
    let capped = engine
        .bulk(&t, BulkAction::Retry, &filter, 2, false, &by)
        .await
        .unwrap();
    assert_eq!((capped.matched, capped.applied), (2, 2));
    // Newest first: the two latest failures were retried.
    for id in &failed[3..] {
        let events = engine
            .events(&t, *id, EventParams::default())
            .await
            .unwrap();
        let op = events.events.iter().find(|e| e.kind == EventKind::Operator);
        let payload = op
            .and_then(|e| e.payload.clone())
            .expect("an operator event");
        assert_eq!(payload["reason"], "provider was down");
    }
    for id in &failed[3..] {
        engine.wait_until_terminal(&t, *id, WAIT).await.unwrap();
    }
    // Retrying everything: only failed jobs are applied, the completed one is matched.
    let all = engine
        .bulk(
            &t,
            BulkAction::Retry,
            &JobFilter::default(),
            1000,
            true,
            &by,
        )
        .await
        .unwrap();
    assert_eq!(all.matched, 6);
    // Submit-time bounds.
    let hour = chrono::Duration::hours(1);
    let now = chrono::Utc::now();
    for (since, until, matched) in [
        (Some(now - hour), Some(now + hour), 6),
        (Some(now + hour), None, 0),
        (None, Some(now - hour), 0),
        (Some(fine.created_at), None, 1),
        (None, Some(fine.created_at), 6),
    ] {
        let window = JobFilter::default().submitted(since, until);
        let r = engine
            .bulk(&t, BulkAction::Retry, &window, 1000, true, &by)
            .await
            .unwrap();
        assert_eq!(r.matched, matched, "{since:?}..{until:?}");
    }
    let discard = engine
        .bulk(
            &t,
            BulkAction::Discard,
            &JobFilter::default(),
            1000,
            false,
            &by,
        )
        .await
        .unwrap();
    assert_eq!((discard.matched, discard.applied), (6, 6));
    assert!(
        engine
            .list(&t, Default::default())
            .await
            .unwrap()
            .jobs
            .is_empty()
    );
    let bad = engine
        .bulk(&t, BulkAction::Cancel, &filter, 0, true, &by)
        .await;
    assert!(matches!(bad, Err(Error::Invalid { .. })));
    let bad = engine
        .bulk(&t, BulkAction::Cancel, &filter, 10_001, true, &by)
        .await;
    assert!(matches!(bad, Err(Error::Invalid { .. })));
    engine.shutdown().await;
}

/// A counter's labels.
type Labels = Vec<(String, String)>;

/// Every counter increment: name, labels, amount.
#[derive(Default)]
struct Counts(std::sync::Mutex<Vec<(String, Labels, u64)>>);

struct Counted(std::sync::Arc<Counts>, String, Labels);

impl metrics::CounterFn for Counted {
    fn increment(&self, n: u64) {
        let mut all = self.0.0.lock().unwrap();
        all.push((self.1.clone(), self.2.clone(), n));
    }
    fn absolute(&self, _: u64) {}
}

struct Recorder(std::sync::Arc<Counts>);

impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let counted = Counted(self.0.clone(), key.name().to_owned(), labels);
        metrics::Counter::from_arc(std::sync::Arc::new(counted))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_discard_is_counted_by_queue_and_type() {
    let counts = std::sync::Arc::new(Counts::default());
    let recorder = Recorder(counts.clone());
    // This thread's recorder; the test's runtime runs every task on it.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let engine = engine();
    let done = run(&engine, json!({"ok": true})).await;
    let by = Operator::new("ops@example.com");
    engine.discard(&tenant(), done.id, &by).await.unwrap();
    let all = counts.0.lock().unwrap().clone();
    let discarded: Vec<_> = all
        .iter()
        .filter(|(name, _, _)| name == "jobworks_jobs_discarded_total")
        .collect();
    assert_eq!(discarded.len(), 1, "{all:?}");
    let (_, labels, n) = discarded[0];
    assert_eq!(*n, 1);
    let labels: std::collections::BTreeMap<_, _> = labels.iter().cloned().collect();
    assert_eq!(labels["queue"], "default");
    assert_eq!(labels["type"], "FLAKY");
    engine.shutdown().await;
}

/// Operator reads and bulk actions over a set of tenants see exactly those tenants' jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_read_and_act_across_a_set_of_tenants() {
    // Not started: the jobs stay queued.
    let idle = from_fn(|_ctx: JobContext, _input: Value| async move { Ok::<_, JobError>(()) });
    let engine = Engine::builder().executor("FLAKY", idle).build().unwrap();
    let ty = JobType::new("FLAKY").unwrap();
    let names = ["acme", "globex", "initech"];
    let mut ids = Vec::new();
    for i in 0..9 {
        let t = TenantId::new(names[i % 3]).unwrap();
        let id = engine
            .submit(&t, NewJob::new(ty.clone(), json!({ "i": i })))
            .await
            .unwrap()
            .job
            .id;
        ids.push((t, id));
    }
    let two = Tenants::only(["acme", "globex"].map(|n| TenantId::new(n).unwrap()));
    let across = engine.across(&two);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = across
            .list(ListParams::default().limit(2).before(cursor))
            .await
            .unwrap();
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<_> = ids
        .iter()
        .rev()
        .filter(|(t, _)| t.as_str() != "initech")
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(seen, expected, "newest first, both tenants, no one else's");

    let (foreign_tenant, foreign) = &ids[2];
    assert_eq!(foreign_tenant.as_str(), "initech");
    assert!(matches!(
        across.get(*foreign).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        across.get(ids[1].1).await.unwrap().tenant.as_str(),
        "globex"
    );
    let counts: u64 = across
        .queue_stats()
        .await
        .unwrap()
        .values()
        .map(|c| c.queued)
        .sum();
    assert_eq!(counts, 6);

    let by = Operator::new("ops");
    let filter = JobFilter::default().status(JobStatus::Queued);
    let report = across
        .bulk(BulkAction::Cancel, &filter, 100, false, &by)
        .await
        .unwrap();
    assert_eq!((report.matched, report.applied), (6, 6));
    let untouched = engine.get(foreign_tenant, *foreign).await.unwrap();
    assert_eq!(untouched.status, JobStatus::Queued);
    let everyone = engine
        .across(&Tenants::All)
        .list(ListParams::default().status(JobStatus::Queued))
        .await
        .unwrap();
    assert_eq!(
        everyone.jobs.len(),
        3,
        "only initech's jobs are still queued"
    );
}
