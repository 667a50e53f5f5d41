//! The engine's upkeep: the reaper that ends expired leases, and retention.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::EngineInner;
use crate::store::JobStoreExt;
use crate::store::{ENGINE_BEAT, EngineBeat, PurgeParams, ReapParams};

/// Reaps expired leases, purges old jobs, makes schedules' ticks and tells the store
/// that this engine is alive, until stopped.
pub(super) async fn maintain(engine: Arc<EngineInner>, stop: CancellationToken) {
    tokio::join!(
        reap(engine.clone(), stop.clone()),
        tick(engine.clone(), stop.clone()),
        beat(engine, stop)
    );
}

/// Beats every [`ENGINE_BEAT`]: the store keeps which engines are alive (what the
/// dashboard's warning that none runs reads).
async fn beat(engine: Arc<EngineInner>, stop: CancellationToken) {
    let mut beat = EngineBeat {
        id: ulid::Ulid::new().to_string(),
        host: host_name(),
        pid: std::process::id(),
        queues: engine
            .config
            .queues
            .iter()
            .map(|(q, _)| q.to_string())
            .collect(),
        started_at: engine.store.clock().now(),
        seen_at: engine.store.clock().now(),
    };
    loop {
        beat.seen_at = engine.store.clock().now();
        if let Err(e) = engine.store.beat(&beat).await {
            warn!(error = %e, "telling the store this engine is alive failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep(ENGINE_BEAT) => {}
        }
    }
}

/// This machine's name, as the kernel or the environment gives it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Makes the due ticks of every schedule just after each second of the store's clock
/// begins (ticks fall on whole seconds).
async fn tick(engine: Arc<EngineInner>, stop: CancellationToken) {
    let engine = super::Engine { inner: engine };
    loop {
        let now = engine.inner.store.clock().now();
        let into_second = u64::from(now.timestamp_subsec_micros());
        let wait = Duration::from_micros(1_000_000 - into_second.min(999_999) + 5_000);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep(wait) => {}
        }
        if let Err(e) = engine.tick_schedules().await {
            warn!(error = %e, "reading the schedules failed");
        }
    }
}

async fn reap(engine: Arc<EngineInner>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep(engine.config.reap_interval) => {}
        }
        loop {
            match engine.store.reap(ReapParams::default()).await {
                Ok(report) if report.total() > 0 => {
                    debug!(?report, "reaped expired leases");
                    if report.total() < ReapParams::default().limit as u64 {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    warn!(error = %e, "reaping failed");
                    break;
                }
            }
        }
        if let Some(keep) = engine.config.retention {
            purge(&engine, keep, &stop).await;
        }
        // The gauges come from the store's counts of open jobs, read here rather than on
        // each scrape.
        match engine.store.open_counts(None).await {
            Ok(stats) => {
                let served: Vec<_> = engine
                    .config
                    .queues
                    .iter()
                    .map(|(q, _)| q.clone())
                    .collect();
                super::observe::depths(&stats, &served);
            }
            Err(e) => warn!(error = %e, "counting the queues failed"),
        }
    }
}

/// Purges the jobs that ended more than `keep` ago, in batches of the store's (each batch
/// one transaction that deletes the jobs, their events and artifact records), until a
/// batch comes back short: a busy store's retention keeps up however fast jobs end.
async fn purge(engine: &EngineInner, keep: Duration, stop: &CancellationToken) {
    let Ok(keep) = chrono::Duration::from_std(keep) else {
        return;
    };
    let params = PurgeParams::before(engine.store.clock().now() - keep);
    while !stop.is_cancelled() {
        match engine.store.purge(params).await {
            Ok(purged) => {
                let short = purged.len() < params.limit;
                for (tenant, id) in purged {
                    if let Err(e) = engine.artifacts.delete_job(&tenant, id).await {
                        warn!(error = %e, job = %id, "could not delete a purged job's artifacts");
                    }
                }
                if short {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, "purging failed");
                return;
            }
        }
    }
}
