//! [`Notifier`]: in-process wake-ups for idle workers and long-polling readers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use crate::JobId;

/// Wakes idle workers when work becomes available and readers when a job changes.
///
/// Every store owns one. The store protocol calls [`Notifier::work_available`] after it
/// commits a job that can be claimed (a submit, a retry, a requeue, a resume),
/// [`Notifier::slot_freed`] after a running job ended, and [`Notifier::job_changed`] after
/// any change to a job. A store shared between processes forwards the other
/// processes' changes too (PostgreSQL does so from `LISTEN`).
///
/// Waiting never misses a wake-up: take the receiver or watch *before* reading the state
/// you are waiting on, then wait on it.
#[derive(Debug)]
pub struct Notifier {
    available: watch::Sender<u64>,
    freed: watch::Sender<u64>,
    watched: Mutex<HashMap<JobId, (Arc<Notify>, usize)>>,
    watching: AtomicUsize,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            available: watch::Sender::new(0),
            freed: watch::Sender::new(0),
            watched: Mutex::new(HashMap::new()),
            watching: AtomicUsize::new(0),
        }
    }
}

impl Notifier {
    /// Says that claimable work may exist.
    pub fn work_available(&self) {
        self.available.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every [`work_available`](Self::work_available) made after it was
    /// taken or last marked seen (`borrow_and_update`).
    pub fn subscribe_work(&self) -> watch::Receiver<u64> {
        self.available.subscribe()
    }

    /// Says that a running job ended (finished, or went back to its queue), which frees a
    /// slot of its queue's `max_running`.
    pub fn slot_freed(&self) {
        self.freed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every [`slot_freed`](Self::slot_freed) made after it was taken
    /// or last marked seen: what a claimer whose queue was full waits on.
    pub fn subscribe_freed(&self) -> watch::Receiver<u64> {
        self.freed.subscribe()
    }

    /// Says that job `id` changed. Costs one atomic load when nobody watches any job.
    pub fn job_changed(&self, id: JobId) {
        if self.watching.load(Ordering::Acquire) == 0 {
            return;
        }
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((notify, _)) = watched.get(&id) {
            notify.notify_waiters();
        }
    }

    /// Wakes every watcher of every job, for when changes may have been missed (a
    /// listener that reconnected). Watchers re-read and wait again.
    pub fn all_changed(&self) {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        for (notify, _) in watched.values() {
            notify.notify_waiters();
        }
    }

    /// Starts watching job `id`; the watch ends when the returned value is dropped.
    pub fn watch_job(&self, id: JobId) -> JobWatch<'_> {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let entry = watched
            .entry(id)
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        let notify = entry.0.clone();
        self.watching.fetch_add(1, Ordering::AcqRel);
        JobWatch {
            notifier: self,
            id,
            notify,
        }
    }
}

/// A registration to be told about changes to one job. See [`Notifier::watch_job`].
#[derive(Debug)]
pub struct JobWatch<'a> {
    notifier: &'a Notifier,
    id: JobId,
    notify: Arc<Notify>,
}

impl JobWatch<'_> {
    /// A future that completes on the next change after it was *enabled*.
    ///
    /// Pin it and call `enable()` (or poll it once) before reading the job, then await it.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for JobWatch<'_> {
    fn drop(&mut self) {
        let mut watched = self
            .notifier
            .watched
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = watched.get_mut(&self.id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                watched.remove(&self.id);
            }
        }
        self.notifier.watching.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_change_between_enable_and_await_is_not_lost() {
        let n = Notifier::default();
        let id = JobId::new();
        {
            let watch = n.watch_job(id);
            let changed = watch.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            n.job_changed(id);
            tokio::time::timeout(Duration::from_secs(1), changed)
                .await
                .expect("woken");
        }
        assert!(n.watched.lock().unwrap().is_empty());
        assert_eq!(n.watching.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn work_made_available_before_waiting_is_seen() {
        let n = Notifier::default();
        let mut rx = n.subscribe_work();
        rx.borrow_and_update();
        n.work_available();
        tokio::time::timeout(Duration::from_secs(1), rx.changed())
            .await
            .expect("woken")
            .unwrap();
    }
}
