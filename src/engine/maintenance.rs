//! The engine's upkeep: the reaper that ends expired leases, and retention.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::EngineInner;
use crate::store::JobStoreExt;
use crate::store::{PurgeParams, ReapParams};

/// Reaps expired leases and purges old jobs until stopped.
pub(super) async fn maintain(engine: Arc<EngineInner>, stop: CancellationToken) {
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
            purge(&engine, keep).await;
        }
    }
}

async fn purge(engine: &EngineInner, keep: Duration) {
    let Ok(keep) = chrono::Duration::from_std(keep) else {
        return;
    };
    let params = PurgeParams::before(engine.store.clock().now() - keep);
    match engine.store.purge(params).await {
        Ok(purged) => {
            for (tenant, id) in purged {
                if let Err(e) = engine.artifacts.delete_job(&tenant, id).await {
                    warn!(error = %e, job = %id, "could not delete a purged job's artifacts");
                }
            }
        }
        Err(e) => warn!(error = %e, "purging failed"),
    }
}
