//! The workflow fault test: many small workflows run by engines that are aborted at
//! random, as crashes would stop them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::tenant;
use crate::{
    Engine, EventKind, EventParams, Job, JobContext, JobError, JobStatus, JobStore, JobStoreExt,
    JobType, ListParams, NewJob, NewWorkflow, WorkflowJob, from_fn,
};

/// An engine whose executor checks, when a job starts, that every parent completed
/// (counting the jobs that find one that did not), fails 2 % of jobs for good and 5 % for
/// a retry.
fn engine(store: Arc<dyn JobStore>, early: Arc<AtomicUsize>) -> Engine {
    let executor = from_fn(move |ctx: JobContext, _input: Value| {
        let early = early.clone();
        async move {
            let finalizer = ctx.job().workflow.as_ref().is_some_and(|l| l.finalizer);
            let parents = ctx.parents().await?;
            let unfinished = |p: &crate::ParentOutcome| {
                if finalizer {
                    !p.status.is_terminal()
                } else {
                    p.status != JobStatus::Completed
                }
            };
            if parents.len() != ctx.job().parents.len() || parents.iter().any(unfinished) {
                early.fetch_add(1, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_micros(rand::random_range(0..3000))).await;
            let roll = rand::random::<f64>();
            if roll < 0.02 && !finalizer {
                return Err(JobError::fail("broken for good"));
            }
            if roll < 0.07 {
                return Err(JobError::retry("flaky"));
            }
            Ok::<_, JobError>(json!({ "attempt": ctx.attempt() }))
        }
    });
    super::engine::chaotic(Engine::builder().store(store), "STEP", executor)
}

/// Runs `workflows` workflows of five jobs (a diamond and a finalizer) on three engines,
/// aborting one at random every 20–80 ms, and checks that every job ended exactly once
/// (one terminal event, at the end of a gapless timeline), that no job started before
/// all its parents completed (for the finalizer: before all were terminal), that a
/// parent's failure skipped what depends on it, and that no job is left waiting.
///
/// # Panics
/// When an invariant is broken.
pub async fn workflow_fault_test(store: Arc<dyn JobStore>, workflows: usize) {
    let t = tenant("chaos");
    let ty = JobType::new("STEP").expect("valid");
    let early = Arc::new(AtomicUsize::new(0));
    let submitter = engine(store.clone(), early.clone());
    let step = |key: &str| WorkflowJob::new(key, NewJob::new(ty.clone(), json!({"key": key})));
    let mut ids = Vec::with_capacity(workflows);
    for _ in 0..workflows {
        let flow = NewWorkflow::new()
            .job(step("a"))
            .job(step("b").depends_on(["a"]))
            .job(step("c").depends_on(["a"]))
            .job(step("d").depends_on(["b", "c"]))
            .finalizer(NewJob::new(ty.clone(), json!({"key": "finalizer"})));
        let submitted = submitter.submit_workflow(&t, flow).await.expect("submit");
        ids.push(submitted.id);
    }
    let jobs = workflows as u64 * 5;

    let mut engines: Vec<Engine> = (0..3)
        .map(|_| engine(store.clone(), early.clone()))
        .collect();
    for e in &engines {
        e.start().expect("start");
    }
    let started = Instant::now();
    let mut kills = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(rand::random_range(20..80))).await;
        let stats = match store.stats().await {
            Ok(stats) => stats,
            Err(e) if e.is_transient() => continue,
            Err(e) => panic!("stats: {e:?}"),
        };
        if stats.terminal() == jobs {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let reaped = store.reap(crate::ReapParams::default()).await;
            panic!("workflows did not finish: {stats:?}; a reap now: {reaped:?}");
        }
        let victim = rand::random_range(0..engines.len());
        engines[victim].abort();
        kills += 1;
        engines[victim] = engine(store.clone(), early.clone());
        engines[victim].start().expect("start");
    }
    for e in &engines {
        e.shutdown_within(Duration::from_secs(5)).await;
    }
    eprintln!(
        "workflow fault test: {workflows} workflows ({jobs} jobs) in {:?} with {kills} kills",
        started.elapsed()
    );
    assert!(kills > 0, "the chaos loop never killed a worker");
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        (stats.waiting, stats.queued, stats.running),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(
        early.load(Ordering::SeqCst),
        0,
        "a job started before its parents ended"
    );

    let mut skipped = 0;
    for id in ids {
        let page = store
            .list(Some(&t), ListParams::default().workflow(id).limit(10))
            .await
            .expect("list");
        assert_eq!(page.jobs.len(), 5, "workflow {id} lost a job");
        let by_id: HashMap<_, &Job> = page.jobs.iter().map(|j| (j.id, j)).collect();
        let mut ended = HashMap::new();
        let mut first_start = HashMap::new();
        for job in &page.jobs {
            let events = store
                .events(
                    &t,
                    job.id,
                    EventParams::default().limit(1000).include_internal(),
                )
                .await
                .expect("events")
                .events;
            for (i, e) in events.iter().enumerate() {
                assert_eq!(e.seq, i as u64 + 1, "job {}: timeline gap at {i}", job.id);
            }
            let terminal: Vec<_> = events.iter().filter(|e| e.kind.is_terminal()).collect();
            assert_eq!(terminal.len(), 1, "job {}: {terminal:?}", job.id);
            assert_eq!(
                terminal[0].seq,
                events.len() as u64,
                "job {}: events after the end",
                job.id
            );
            ended.insert(job.id, terminal[0].created_at);
            if let Some(start) = events.iter().find(|e| e.kind == EventKind::Started) {
                first_start.insert(job.id, start.created_at);
            }
        }
        for job in &page.jobs {
            let link = job.workflow.as_ref().expect("linked");
            let parents_ok = job
                .parents
                .iter()
                .all(|p| by_id[p].status == JobStatus::Completed);
            if let Some(start) = first_start.get(&job.id) {
                for p in &job.parents {
                    assert!(
                        ended[p] <= *start,
                        "job {} started before its parent {p} ended",
                        job.id
                    );
                }
            }
            if !link.run_if_parents_fail && !parents_ok {
                assert_eq!(
                    job.status,
                    JobStatus::Cancelled,
                    "job {} ran after a failure",
                    job.id
                );
                assert!(link.skipped && !first_start.contains_key(&job.id));
                skipped += 1;
            } else {
                assert!(
                    first_start.contains_key(&job.id),
                    "job {} never ran",
                    job.id
                );
            }
        }
    }
    eprintln!("workflow fault test: {skipped} jobs skipped after a parent's failure");
}
