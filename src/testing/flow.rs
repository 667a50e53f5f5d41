//! Flow control across engines: a queue's `max_running` and `max_running_per_key` hold for
//! every engine sharing a store, and the room a finish frees is taken at once by an idle
//! engine elsewhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::tenant;
use crate::store::JobStoreExt;
use crate::{
    Engine, JobContext, JobError, JobStatus, JobStore, JobType, NewJob, QueueName, QueuePatch,
    from_fn,
};

/// How many jobs run at once: in all, and by concurrency key (the input's `key`), counted
/// by the executors as they start and end, with the most seen.
#[derive(Default)]
struct Overlap {
    now: HashMap<String, usize>,
    most: HashMap<String, usize>,
}

impl Overlap {
    fn change(&mut self, key: &str, up: bool) {
        for k in ["", key] {
            let n = self.now.entry(k.to_owned()).or_default();
            *n = if up { *n + 1 } else { *n - 1 };
            let n = *n;
            let most = self.most.entry(k.to_owned()).or_default();
            *most = (*most).max(n);
        }
    }
}

/// Runs 60 jobs of a queue limited to `max_running = 3` on two engines of 8 slots each,
/// one over each store (two handles on one database, or the same store twice), and
/// checks that never more than three run at once: counted by the executors themselves
/// as they start and end, and sampled from the store's counts meanwhile. The engines
/// only poll once an hour, so a freed slot must wake them.
pub async fn max_running_holds_across_engines(a: Arc<dyn JobStore>, b: Arc<dyn JobStore>) {
    const LIMIT: usize = 3;
    let patch = QueuePatch::default().max_running(Some(LIMIT as u32));
    let (most, sampled) = run_limited(a, b, patch, |_| None).await;
    let most = most[""];
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

/// Runs 60 jobs of a queue limited to `max_running_per_key = 2`, spread over four
/// concurrency keys, on two engines of 8 slots each (as
/// [`max_running_holds_across_engines`]), and checks that never more than two jobs of
/// one key run at once, while jobs of different keys do run side by side.
pub async fn max_running_per_key_holds_across_engines(a: Arc<dyn JobStore>, b: Arc<dyn JobStore>) {
    const PER_KEY: usize = 2;
    let patch = QueuePatch::default().max_running_per_key(Some(PER_KEY as u32));
    let (most, _) = run_limited(a, b, patch, |i| Some(format!("key-{}", i % 4))).await;
    for (key, &n) in &most {
        if !key.is_empty() {
            assert!(
                n <= PER_KEY,
                "{n} jobs of {key} ran at once under max_running_per_key = {PER_KEY}"
            );
        }
    }
    let all = most[""];
    assert!(
        all > PER_KEY,
        "keys did not run side by side: at most {all} ran at once"
    );
}

/// Runs 12 jobs of a queue limited to 10 starts per second without a burst on two
/// engines, one over each store, and checks from the start times the store recorded that
/// starts came at least 80 ms apart (the limit spaces them 100 ms apart, across both
/// engines), and that the engines, which only poll once an hour, woke for each token.
pub async fn rate_limit_holds_across_engines(a: Arc<dyn JobStore>, b: Arc<dyn JobStore>) {
    const JOBS: usize = 12;
    let name = QueueName::new("rated").expect("valid");
    let rate = crate::RateLimit::new(10, Duration::from_secs(1)).burst(1);
    let patch = QueuePatch::default().rate(Some(rate));
    a.configure_queue(&name, patch)
        .await
        .expect("limit the queue");
    let starts = Arc::new(Mutex::new(Vec::new()));
    let engine = |store: Arc<dyn JobStore>| {
        let starts = starts.clone();
        let work = from_fn(move |_: JobContext, _: Value| {
            let starts = starts.clone();
            async move {
                starts
                    .lock()
                    .expect("not poisoned")
                    .push(std::time::Instant::now());
                Ok::<_, JobError>(())
            }
        });
        serving(store, "RATED", work, "rated", 4)
    };
    let engines = [engine(a.clone()), engine(b.clone())];
    let ty = JobType::new("RATED").expect("valid");
    let jobs = (0..JOBS)
        .map(|_| NewJob::new(ty.clone(), json!({})).queue(name.clone()))
        .collect();
    engines[0]
        .submit_many(&tenant("acme"), jobs)
        .await
        .expect("submit");
    for e in &engines {
        e.start().expect("start");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while starts.lock().expect("not poisoned").len() < JOBS {
        assert!(
            std::time::Instant::now() < deadline,
            "the jobs did not all start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for e in &engines {
        e.shutdown().await;
    }
    // The starts as the store recorded them (its clock, at each claim): what the limit
    // spaces. An executor's own clock adds the scheduling delays of a loaded machine.
    let params = crate::ListParams::default().queue(name.clone()).limit(100);
    let page = a.list(Some(&tenant("acme")), params).await.expect("list");
    let mut starts: Vec<_> = page.jobs.iter().filter_map(|j| j.started_at).collect();
    assert_eq!(starts.len(), JOBS);
    starts.sort();
    for pair in starts.windows(2) {
        let gap = (pair[1] - pair[0]).to_std().unwrap_or_default();
        assert!(
            gap >= Duration::from_millis(80),
            "two starts {gap:?} apart under 10 per second"
        );
    }
}

/// An engine on `store` that runs `job_type` with `work` from `queue` only, with `slots`,
/// and polls only once an hour: every wake-up it gets is told.
fn serving(
    store: Arc<dyn JobStore>,
    job_type: &str,
    work: impl crate::Executor,
    queue: &str,
    slots: usize,
) -> Engine {
    Engine::builder()
        .store(store)
        .executor(job_type, work)
        .without_default_queue()
        .queue(queue, slots)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .expect("engine")
}

/// Limits queue `limited` with `patch`, runs 60 jobs (the `i`th with concurrency key
/// `key(i)`) on two engines, one over each store, and answers the most that ran at once
/// by key (`""`: in all) and the most running the store counted.
async fn run_limited(
    a: Arc<dyn JobStore>,
    b: Arc<dyn JobStore>,
    patch: QueuePatch,
    key: fn(usize) -> Option<String>,
) -> (HashMap<String, usize>, u64) {
    const JOBS: usize = 60;
    let name = QueueName::new("limited").expect("valid");
    a.configure_queue(&name, patch)
        .await
        .expect("limit the queue");
    let overlap = Arc::new(Mutex::new(Overlap::default()));
    let started = Arc::new(AtomicUsize::new(0));
    let engine = |store: Arc<dyn JobStore>| {
        let (overlap, started) = (overlap.clone(), started.clone());
        let work = from_fn(move |_: JobContext, input: Value| {
            let (overlap, started) = (overlap.clone(), started.clone());
            async move {
                let key = input["key"].as_str().unwrap_or("-").to_owned();
                overlap.lock().expect("not poisoned").change(&key, true);
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5 + rand::random_range(0..15))).await;
                overlap.lock().expect("not poisoned").change(&key, false);
                Ok::<_, JobError>(())
            }
        });
        serving(store, "LIMITED", work, "limited", 8)
    };
    let engines = [engine(a.clone()), engine(b.clone())];
    let ty = JobType::new("LIMITED").expect("valid");
    let t = tenant("acme");
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|i| {
            let key = key(i);
            let job = NewJob::new(ty.clone(), json!({ "key": key })).queue(name.clone());
            match key {
                Some(key) => job.concurrency_key(key),
                None => job,
            }
        })
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
                let counts = store.queue_stats(None).await.expect("stats");
                let counted = counts.get(&name).copied().unwrap_or_default();
                most = most.max(counted.running);
                if counted.queued + counted.running == 0 {
                    return most;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // Read from the store (not by waiting on one engine's watchers): two SQLite handles
    // on one file, like two processes, do not hear each other's changes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for id in ids {
        loop {
            let job = b.get(&t, id).await.expect("the job");
            if job.status.is_terminal() {
                assert_eq!(job.status, JobStatus::Completed);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "job {id} did not end");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let sampled = tokio::time::timeout(Duration::from_secs(10), sampler)
        .await
        .expect("the sampler ends")
        .expect("the sampler ran");
    for e in &engines {
        e.shutdown().await;
    }
    assert_eq!(started.load(Ordering::SeqCst), JOBS, "each job ran once");
    let most = overlap.lock().expect("not poisoned").most.clone();
    (most, sampled)
}
