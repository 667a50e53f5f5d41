//! Flow control across engines: a queue's `max_running` holds for every engine sharing a
//! store, and the room a finish frees is taken at once by an idle engine elsewhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::tenant;
use crate::store::JobStoreExt;
use crate::{
    Engine, JobContext, JobError, JobStatus, JobStore, JobType, NewJob, QueueName, QueuePatch,
    from_fn,
};

/// Runs 60 jobs of a queue limited to `max_running = 3` on two engines of 8 slots each,
/// one over each store (two handles on one database, or the same store twice), and
/// checks that never more than three run at once: counted by the executors themselves
/// as they start and end, and sampled from the store's counts meanwhile. The engines
/// only poll once an hour, so a freed slot must wake them.
pub async fn max_running_holds_across_engines(a: Arc<dyn JobStore>, b: Arc<dyn JobStore>) {
    const LIMIT: usize = 3;
    const JOBS: usize = 60;
    let name = QueueName::new("limited").expect("valid");
    a.configure_queue(&name, QueuePatch::default().max_running(Some(LIMIT as u32)))
        .await
        .expect("limit the queue");
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let engine = |store: Arc<dyn JobStore>| {
        let (now, most) = (now.clone(), most.clone());
        let work = from_fn(move |_: JobContext, _: Value| {
            let (now, most) = (now.clone(), most.clone());
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5 + rand::random_range(0..15))).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, JobError>(())
            }
        });
        Engine::builder()
            .store(store)
            .executor("LIMITED", work)
            .without_default_queue()
            .queue("limited", 8)
            .poll_interval(Duration::from_secs(3600))
            .build()
            .expect("engine")
    };
    let engines = [engine(a.clone()), engine(b.clone())];
    let ty = JobType::new("LIMITED").expect("valid");
    let t = tenant("acme");
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|_| NewJob::new(ty.clone(), json!({})).queue(name.clone()))
        .collect();
    let ids: Vec<_> = engines[0]
        .submit_many(&t, jobs)
        .await
        .expect("submit")
        .into_iter()
        .map(|s| s.job.id)
        .collect();
    for e in &engines {
        e.start().expect("start");
    }
    let sampler = {
        let store = b.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let mut most = 0;
            loop {
                let counts = store.queue_stats().await.expect("stats");
                let counted = counts.get(&name).copied().unwrap_or_default();
                most = most.max(counted.running);
                if counted.queued + counted.running == 0 {
                    return most;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for id in ids {
        let done = engines[1]
            .wait_until_terminal(&t, id, Duration::from_secs(60))
            .await
            .expect("the job ends");
        assert_eq!(done.status, JobStatus::Completed);
    }
    let sampled = tokio::time::timeout(Duration::from_secs(10), sampler)
        .await
        .expect("the sampler ends")
        .expect("the sampler ran");
    for e in &engines {
        e.shutdown().await;
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= LIMIT,
        "{most} jobs ran at once under max_running = {LIMIT}"
    );
    assert!(
        sampled <= LIMIT as u64,
        "the store counted {sampled} running"
    );
    assert!(
        most > 1,
        "the limit was never used: at most {most} ran at once"
    );
}
