//! Queues through the engine: each served queue has its own slots, a stored pause holds
//! on every engine of a store and a resume wakes them at once, and a snoozing executor
//! spends no attempts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use jobworks::{
    Engine, EventKind, EventParams, JobContext, JobError, JobStatus, JobStore, JobType,
    MemoryStore, NewJob, QueueName, TenantId, from_fn,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn queue(name: &str) -> QueueName {
    QueueName::new(name).unwrap()
}

fn job_in(name: &str) -> NewJob {
    NewJob::new(JobType::new("WORK").unwrap(), json!({})).queue(queue(name))
}

/// Counts how many run at once, per queue, and keeps the highest counts.
#[derive(Default)]
struct Overlap {
    now: [AtomicUsize; 2],
    most: [AtomicUsize; 2],
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_queue_runs_in_its_own_slots() {
    let overlap = Arc::new(Overlap::default());
    let seen = overlap.clone();
    let work = from_fn(move |ctx: JobContext, _: Value| {
        let o = seen.clone();
        async move {
            let lane = usize::from(ctx.job().queue.as_str() == "emails");
            let running = o.now[lane].fetch_add(1, Ordering::SeqCst) + 1;
            o.most[lane].fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            o.now[lane].fetch_sub(1, Ordering::SeqCst);
            Ok::<_, JobError>(())
        }
    });
    let engine = Engine::builder()
        .executor("WORK", work)
        .concurrency(1)
        .queue("emails", 3)
        .build()
        .unwrap();
    engine.start().unwrap();
    let mut jobs = Vec::new();
    for i in 0..12 {
        let name = if i % 2 == 0 { "default" } else { "emails" };
        jobs.push(engine.submit(&tenant(), job_in(name)).await.unwrap().job.id);
    }
    for id in jobs {
        let done = engine
            .wait_until_terminal(&tenant(), id, WAIT)
            .await
            .unwrap();
        assert_eq!(done.status, JobStatus::Completed);
    }
    assert_eq!(
        overlap.most[0].load(Ordering::SeqCst),
        1,
        "default ran over its slots"
    );
    let emails = overlap.most[1].load(Ordering::SeqCst);
    assert!(emails > 1 && emails <= 3, "emails ran {emails} at once");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_serves_only_its_queues() {
    let engine = Engine::builder()
        .executor(
            "WORK",
            from_fn(|_: JobContext, _: Value| async { Ok::<_, JobError>(()) }),
        )
        .without_default_queue()
        .queue("reports", 2)
        .build()
        .unwrap();
    engine.start().unwrap();
    let other = engine
        .submit(&tenant(), job_in("default"))
        .await
        .unwrap()
        .job;
    let mine = engine
        .submit(&tenant(), job_in("reports"))
        .await
        .unwrap()
        .job;
    let done = engine
        .wait_until_terminal(&tenant(), mine.id, WAIT)
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    engine.wait_idle().await;
    let untouched = engine.get(&tenant(), other.id).await.unwrap();
    assert_eq!(untouched.status, JobStatus::Queued);
    engine.shutdown().await;

    let none = Engine::builder().without_default_queue().build();
    assert!(none.is_err(), "an engine must serve some queue");
    assert!(Engine::builder().queue("Bad Name", 1).build().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_holds_on_every_engine_and_a_resume_wakes_them_at_once() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let started = Arc::new(AtomicU32::new(0));
    let engine = |store: Arc<dyn JobStore>| {
        let started = started.clone();
        let work = from_fn(move |_: JobContext, _: Value| {
            started.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, JobError>(()) }
        });
        Engine::builder()
            .store(store)
            .executor("WORK", work)
            // No fallback poll to speak of: only a notification can start the job.
            .poll_interval(Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    let (a, b) = (engine(store.clone()), engine(store.clone()));
    a.start().unwrap();
    b.start().unwrap();
    let info = a.pause_queue(&QueueName::default()).await.unwrap();
    assert!(info.settings.paused);
    let job = b.submit(&tenant(), job_in("default")).await.unwrap().job;
    a.wait_idle().await;
    b.wait_idle().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        0,
        "a paused queue's job started"
    );
    let listed = b.queues().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].settings.paused);
    assert_eq!(listed[0].counts.queued, 1);

    // A fresh engine on the same store obeys the stored pause too.
    let c = engine(store.clone());
    c.start().unwrap();
    c.wait_idle().await;
    assert_eq!(started.load(Ordering::SeqCst), 0);

    b.resume_queue(&QueueName::default()).await.unwrap();
    let done = a
        .wait_until_terminal(&tenant(), job.id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        done.status,
        JobStatus::Completed,
        "the resume did not wake the engines"
    );
    for e in [a, b, c] {
        e.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snoozing_executor_spends_no_attempts() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let work = from_fn(move |_: JobContext, _: Value| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                let why = format!("not ready ({n})");
                return Err(JobError::snooze_because(why, Duration::from_millis(20)));
            }
            Ok::<_, JobError>(json!({"calls": n + 1}))
        }
    });
    let engine = Engine::builder().executor("WORK", work).build().unwrap();
    engine.start().unwrap();
    let job = NewJob::new(JobType::new("WORK").unwrap(), json!({})).max_attempts(1);
    let job = engine.submit(&tenant(), job).await.unwrap().job;
    let done = engine
        .wait_until_terminal(&tenant(), job.id, WAIT)
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert_eq!(done.attempts, 1, "snoozes were charged");
    assert_eq!(done.result, Some(json!({"calls": 3})));
    let events = engine
        .events(&tenant(), job.id, EventParams::default().limit(100))
        .await
        .unwrap()
        .events;
    let snoozes: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::Snoozed)
        .map(|e| e.message.as_ref())
        .collect();
    assert_eq!(snoozes, ["not ready (0)", "not ready (1)"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_held_back_by_a_limit_is_not_idle() {
    // Engine `a` holds both slots of a queue limited to two; engine `b`, with nothing of
    // its own running, must not call itself idle while a job only it runs (type `LAST`)
    // waits for a slot.
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let limited = queue("limited");
    let engine = |store: Arc<dyn JobStore>, ty: &str| {
        let work = from_fn(|_: JobContext, ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, JobError>(())
        });
        Engine::builder()
            .store(store)
            .executor(ty, work)
            .without_default_queue()
            .queue("limited", 4)
            .poll_interval(Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    let (a, b) = (engine(store.clone(), "WORK"), engine(store.clone(), "LAST"));
    let patch = jobworks::QueuePatch::default().max_running(Some(2));
    a.configure_queue(&limited, patch).await.unwrap();
    let job = |ty: &str, ms: u64| {
        NewJob::new(JobType::new(ty).unwrap(), json!(ms)).queue(limited.clone())
    };
    let slow = vec![job("WORK", 300), job("WORK", 300)];
    a.submit_many(&tenant(), slow).await.unwrap();
    a.start().unwrap();
    while a.queue_info(&limited).await.unwrap().counts.running < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = b.submit(&tenant(), job("LAST", 1)).await.unwrap().job;
    b.start().unwrap();
    b.wait_idle().await;
    let after = b.get(&tenant(), last.id).await.unwrap();
    assert_eq!(
        after.status,
        JobStatus::Completed,
        "idle while a job waited for a slot"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_queue_starts_jobs_on_its_tokens_without_polling() {
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = starts.clone();
    let work = from_fn(move |_: JobContext, _: Value| {
        seen.lock().unwrap().push(std::time::Instant::now());
        async { Ok::<_, JobError>(()) }
    });
    let engine = Engine::builder()
        .executor("WORK", work)
        // Only the next token's time can wake the engine.
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let rate = jobworks::RateLimit::new(1, Duration::from_millis(200)).burst(1);
    let patch = jobworks::QueuePatch::default().rate(Some(rate));
    engine
        .configure_queue(&QueueName::default(), patch)
        .await
        .unwrap();
    engine.start().unwrap();
    let jobs: Vec<NewJob> = (0..4).map(|_| job_in("default")).collect();
    let ids: Vec<_> = engine.submit_many(&tenant(), jobs).await.unwrap();
    for s in ids {
        let done = engine
            .wait_until_terminal(&tenant(), s.job.id, WAIT)
            .await
            .unwrap();
        assert_eq!(done.status, JobStatus::Completed);
    }
    let starts = starts.lock().unwrap().clone();
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(150),
            "two starts {gap:?} apart under 5/s"
        );
    }
    engine.shutdown().await;
}
