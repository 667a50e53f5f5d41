//! The worker runtime: a dispatcher per served queue that claims jobs into that queue's
//! free executor slots, the task of each job, and graceful shutdown. An attempt itself
//! runs in `attempt`; the reaper and retention in `maintenance`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use super::EngineInner;
use super::attempt::{record, run_job};
use super::maintenance::maintain;
use crate::job::QueueName;
use crate::store::JobStoreExt;
use crate::store::{ClaimParams, ClaimedJob};
use crate::{Error, Result};

/// A job this engine is running.
#[derive(Debug)]
pub(super) struct RunningJob {
    pub(super) cancel: CancellationToken,
    abort: Option<AbortHandle>,
}

/// The tasks of a started engine.
#[derive(Debug)]
pub(super) struct Workers {
    /// Stops claiming.
    stop: CancellationToken,
    /// Ends the grace period: running jobs are handed back.
    hand_back: CancellationToken,
    lanes: Vec<Arc<Lane>>,
    recording: Arc<Semaphore>,
    dispatchers: Vec<JoinHandle<()>>,
    maintenance: JoinHandle<()>,
}

/// One served queue: its executor slots and what runs in them.
#[derive(Debug)]
struct Lane {
    queue: QueueName,
    /// How many of its jobs may run here at once.
    concurrency: usize,
    slots: Arc<Semaphore>,
    /// Jobs running plus slots reserved by claims in flight; fired (`drained`) when it
    /// drops to zero, so that its dispatcher can tell the queue is idle.
    active: AtomicUsize,
    drained: Notify,
}

/// Outcomes that may wait to be recorded, per executor slot. Waiting outcomes are committed
/// together (PostgreSQL's finish batches), so more of them mean fewer commits per job.
const RECORDING_PER_SLOT: usize = 4;

/// Shared between the dispatchers and the job tasks.
#[derive(Debug)]
struct Shared {
    engine: Arc<EngineInner>,
    hand_back: CancellationToken,
    /// Outcomes being recorded, at most `RECORDING_PER_SLOT × concurrency` at once: a job
    /// gives its executor slot back as soon as its executor returns, so the next claim
    /// overlaps the commit.
    recording: Arc<Semaphore>,
    /// Per dispatcher, the work notification after which its last claim found nothing
    /// with its queue idle (`None` while it has work): the engine is idle when all are.
    idle: Mutex<Vec<Option<u64>>>,
}

impl Shared {
    /// Records dispatcher `index`'s idle mark and publishes the engine's: the oldest
    /// mark, once every dispatcher has one.
    fn mark_idle(&self, index: usize, mark: Option<u64>) {
        let mut marks = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if marks[index] == mark {
            return;
        }
        marks[index] = mark;
        let all: Option<u64> = marks
            .iter()
            .copied()
            .try_fold(u64::MAX, |low, m| m.map(|m| low.min(m)));
        self.engine.idle.send_if_modified(|idle| {
            let changed = *idle != all;
            *idle = all;
            changed
        });
    }
}

pub(super) fn start(engine: &Arc<EngineInner>) -> Result<()> {
    let mut workers = engine.workers.lock().unwrap_or_else(|e| e.into_inner());
    if workers.is_some() {
        return Err(Error::invalid("engine", "workers are already running"));
    }
    let stop = CancellationToken::new();
    let hand_back = CancellationToken::new();
    let lanes: Vec<Arc<Lane>> = engine
        .config
        .queues
        .iter()
        .map(|(queue, concurrency)| {
            Arc::new(Lane {
                queue: queue.clone(),
                concurrency: *concurrency,
                slots: Arc::new(Semaphore::new(*concurrency)),
                active: AtomicUsize::new(0),
                drained: Notify::new(),
            })
        })
        .collect();
    let all_slots: usize = lanes.iter().map(|l| l.concurrency).sum();
    let recording = Arc::new(Semaphore::new(RECORDING_PER_SLOT * all_slots));
    let claimers = engine.config.claimers;
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        hand_back: hand_back.clone(),
        recording: recording.clone(),
        idle: Mutex::new(vec![None; lanes.len() * claimers]),
    });
    engine.idle.send_replace(None);
    let mut dispatchers = Vec::with_capacity(lanes.len() * claimers);
    for lane in &lanes {
        for _ in 0..claimers {
            let index = dispatchers.len();
            let run = dispatch(shared.clone(), lane.clone(), index, stop.clone());
            dispatchers.push(tokio::spawn(run));
        }
    }
    let maintenance = tokio::spawn(maintain(engine.clone(), stop.clone()));
    *workers = Some(Workers {
        stop,
        hand_back,
        lanes,
        recording,
        dispatchers,
        maintenance,
    });
    Ok(())
}

impl Workers {
    pub(super) async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        for dispatcher in self.dispatchers {
            let _ = dispatcher.await;
        }
        self.maintenance.abort();
        let all: usize = self.lanes.iter().map(|l| l.concurrency).sum();
        // Every executor has returned once all slots are free; every outcome is recorded
        // once all recording permits are free too.
        let settled = || async {
            for lane in &self.lanes {
                let _slots = lane.slots.acquire_many(lane.concurrency as u32).await;
            }
            let _recorded = self
                .recording
                .acquire_many((all * RECORDING_PER_SLOT) as u32)
                .await;
        };
        if tokio::time::timeout(grace, settled()).await.is_err() {
            self.hand_back.cancel();
            // Handing back is one store call per job; give it a bounded time.
            let _ = tokio::time::timeout(Duration::from_secs(10), settled()).await;
        }
    }

    pub(super) fn abort(self, engine: &EngineInner) {
        for dispatcher in &self.dispatchers {
            dispatcher.abort();
        }
        self.maintenance.abort();
        for (_, job) in engine.running().drain() {
            if let Some(handle) = job.abort {
                handle.abort();
            }
        }
    }
}

/// Claims jobs of `lane`'s queue into its free slots until `stop`; dispatcher `index`
/// of the engine.
async fn dispatch(shared: Arc<Shared>, lane: Arc<Lane>, index: usize, stop: CancellationToken) {
    let engine = &shared.engine;
    let slots = &lane.slots;
    let config = &engine.config;
    let mut work = engine.store.notifier().subscribe_work();
    let mut freed = engine.store.notifier().subscribe_freed();
    let mut failures = 0u32;
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        // Slots tend to free up together (a batch of finishes); let the others land so
        // that one claim fills them all.
        tokio::task::yield_now().await;
        let mut permits = vec![first];
        while permits.len() < config.claim_batch {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        // Mark the notifications seen before claiming, so a submit racing with an empty
        // claim still wakes us.
        let seen = *work.borrow_and_update();
        freed.borrow_and_update();
        // Reserve the slots before claiming, so that no dispatcher of this queue sees it
        // idle while this claim is in flight.
        lane.active.fetch_add(permits.len(), Ordering::AcqRel);
        let params = ClaimParams::default()
            .queue(lane.queue.clone())
            .limit(permits.len())
            .lease_ttl(config.lease_ttl)
            .types(engine.types.clone());
        let claimed = match engine.store.take(params).await {
            Ok(claimed) => {
                failures = 0;
                claimed
            }
            Err(e) => {
                release(&lane, permits.len());
                failures = failures.saturating_add(1);
                let backoff = Duration::from_millis(50 * 2u64.pow(failures.min(7)));
                warn!(error = %e, ?backoff, queue = %lane.queue, "claim failed");
                drop(permits);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = sleep(backoff) => continue,
                }
            }
        };
        let wanted = permits.len();
        let got = claimed.jobs.len();
        let full = claimed.full;
        for job in claimed.jobs {
            let permit = permits.pop().expect("no more jobs than permits");
            spawn_job(&shared, &lane, job, permit);
        }
        drop(permits);
        let idle_now = release(&lane, wanted - got);
        if got > 0 {
            shared.mark_idle(index, None);
        } else if idle_now && !full && !work.has_changed().unwrap_or(false) {
            // Due jobs held back by the queue's limit are work still to do: not idle. Nor
            // is a queue that heard of new work during the claim (a finish that queued a
            // retry or unblocked a workflow's job while the claim looked): the loop
            // claims again.
            shared.mark_idle(index, Some(seen));
        }
        if got == wanted {
            continue;
        }
        let mut nap = config.poll_interval;
        if let Some(at) = claimed.next_run_at {
            let until = (at - engine.store.clock().now())
                .to_std()
                .unwrap_or_default();
            nap = nap.min(until + Duration::from_millis(1));
        }
        // While other jobs still run, claim again once they are done, so that the idle
        // mark (for `wait_idle`) is set then. Already idle, wait for news only: the
        // release above left a wake-up of its own in `drained`.
        let others_done = async {
            if idle_now {
                std::future::pending::<()>().await;
            }
            lane.drained.notified().await;
        };
        // The queue's limit held the claim back: a running job ending anywhere frees room.
        let room_freed = async {
            if !full {
                std::future::pending::<()>().await;
            }
            let _ = freed.changed().await;
        };
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = work.changed() => {}
            _ = room_freed => {}
            _ = others_done => {}
            _ = sleep(nap) => {}
        }
    }
}

/// Gives back `n` reserved slots of `lane`; says whether nothing is active in it any more.
fn release(lane: &Lane, n: usize) -> bool {
    if n == 0 {
        return lane.active.load(Ordering::Acquire) == 0;
    }
    let idle = lane.active.fetch_sub(n, Ordering::AcqRel) == n;
    if idle {
        lane.drained.notify_one();
    }
    idle
}

/// Runs a claimed job in its own task; its slot of `lane` was reserved by the claim.
fn spawn_job(
    shared: &Arc<Shared>,
    lane: &Arc<Lane>,
    claimed: ClaimedJob,
    permit: OwnedSemaphorePermit,
) {
    let id = claimed.job.id;
    let cancel = CancellationToken::new();
    if claimed.job.cancel_requested {
        cancel.cancel();
    }
    shared.engine.running().insert(
        id,
        RunningJob {
            cancel: cancel.clone(),
            abort: None,
        },
    );
    let span = info_span!(
        "job",
        id = %id,
        r#type = %claimed.job.job_type,
        tenant = %claimed.job.tenant,
        attempt = claimed.job.attempts,
        trace_id = tracing::field::Empty,
    );
    if let Some(cx) = &claimed.job.trace {
        span.record("trace_id", cx.trace_id());
        #[cfg(feature = "otel")]
        {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            // Refused only when no OpenTelemetry layer records the span: nothing to join.
            let _ = span.set_parent(cx.to_otel_context());
        }
    }
    let task_shared = shared.clone();
    let lane = lane.clone();
    let handle = tokio::spawn(
        async move {
            let engine = &task_shared.engine;
            let ran = run_job(engine, &task_shared.hand_back, claimed, cancel).await;
            if let Some((ctx, lease, outcome)) = ran {
                let recording = task_shared.recording.clone().acquire_owned().await;
                drop(permit);
                record(&task_shared.engine, &ctx, &lease, outcome).await;
                drop(recording);
            }
            task_shared.engine.running().remove(&id);
            release(&lane, 1);
        }
        .instrument(span),
    );
    if let Some(job) = shared.engine.running().get_mut(&id) {
        job.abort = Some(handle.abort_handle());
    }
}
