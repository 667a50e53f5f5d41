//! Waiting on a job: long polls for a change, for the end, or for new events, woken by
//! the store's change notifications.

use std::time::Duration;

use super::Engine;
use crate::Result;
use crate::job::{Job, JobId, TenantId};
use crate::store::{EventPage, EventParams};

impl Engine {
    /// Waits until the job's revision differs from `seen_revision`, or `timeout` passes,
    /// and returns the job as it is then. Woken by the store's change notification.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) as for [`get`](Self::get).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_for_change(
        &self,
        tenant: &TenantId,
        id: JobId,
        seen_revision: u64,
        timeout: Duration,
    ) -> Result<Job> {
        self.wait_until(tenant, id, timeout, |job| job.revision != seen_revision)
            .await
    }

    /// Waits until the job is terminal or `timeout` passes, and returns it as it is then.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) as for [`get`](Self::get).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_until_terminal(
        &self,
        tenant: &TenantId,
        id: JobId,
        timeout: Duration,
    ) -> Result<Job> {
        self.wait_until(tenant, id, timeout, |job| job.status.is_terminal())
            .await
    }

    async fn wait_until(
        &self,
        tenant: &TenantId,
        id: JobId,
        timeout: Duration,
        done: impl Fn(&Job) -> bool,
    ) -> Result<Job> {
        self.wait_on(id, timeout, || self.get(tenant, id), done)
            .await
    }

    /// Reads with `read` until `done` holds or `timeout` passes, re-reading only when the
    /// store says job `id` changed. The watch is armed before each read, so a change
    /// between the read and the wait is not missed.
    async fn wait_on<T, Fut>(
        &self,
        id: JobId,
        timeout: Duration,
        read: impl Fn() -> Fut,
        done: impl Fn(&T) -> bool,
    ) -> Result<T>
    where
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let watch = self.inner.store.notifier().watch_job(id);
        loop {
            let changed = watch.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let value = read().await?;
            if done(&value) || tokio::time::Instant::now() >= deadline {
                return Ok(value);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return read().await;
            }
        }
    }

    /// Events after `params.after`, waiting up to `timeout` for at least one when there
    /// are none yet (and the job is not terminal).
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) as for [`get`](Self::get).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_for_events(
        &self,
        tenant: &TenantId,
        id: JobId,
        params: EventParams,
        timeout: Duration,
    ) -> Result<EventPage> {
        self.wait_on(
            id,
            timeout,
            || self.events(tenant, id, params),
            |page: &EventPage| !page.events.is_empty() || page.terminal,
        )
        .await
    }
}
