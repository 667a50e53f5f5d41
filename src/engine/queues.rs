//! Queues as operators see and steer them: settings stored in the store, so every engine
//! on it obeys them.

use super::Engine;
use crate::Result;
use crate::job::QueueName;
use crate::store::{JobStoreExt, QueueInfo, QueuePatch};

impl Engine {
    /// Every queue that has a job or stored settings, by name, with its counts.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>> {
        let store = self.store();
        let mut counts = store.queue_stats(None).await?;
        let mut queues: Vec<QueueInfo> = store
            .queues()
            .await?
            .into_iter()
            .map(|q| QueueInfo {
                counts: counts.remove(&q.name).unwrap_or_default(),
                name: q.name,
                settings: q.settings,
            })
            .collect();
        queues.extend(counts.into_iter().map(|(name, counts)| QueueInfo {
            name,
            settings: Default::default(),
            counts,
        }));
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(queues)
    }

    /// One queue with its counts; a queue never used reads as an empty one.
    pub async fn queue_info(&self, name: &QueueName) -> Result<QueueInfo> {
        let store = self.store();
        let settings = store.queue(name).await?;
        let counts = store
            .queue_stats(None)
            .await?
            .remove(name)
            .unwrap_or_default();
        Ok(QueueInfo {
            name: name.clone(),
            settings,
            counts,
        })
    }

    /// Changes a queue's stored settings; idle engines on the store are woken when that
    /// may let jobs run.
    pub async fn configure_queue(&self, name: &QueueName, patch: QueuePatch) -> Result<QueueInfo> {
        self.store().configure_queue(name, patch).await?;
        self.queue_info(name).await
    }

    /// Pauses a queue: no engine on the store claims from it until it is resumed. Submits
    /// are still accepted and running jobs finish. The pause is stored, so it outlives
    /// restarts.
    pub async fn pause_queue(&self, name: &QueueName) -> Result<QueueInfo> {
        self.configure_queue(name, QueuePatch::default().paused(true))
            .await
    }

    /// Resumes a paused queue and wakes idle engines at once.
    pub async fn resume_queue(&self, name: &QueueName) -> Result<QueueInfo> {
        self.configure_queue(name, QueuePatch::default().paused(false))
            .await
    }
}
