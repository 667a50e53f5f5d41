//! Announcing changes to the other processes: many commits, one `NOTIFY`.
//!
//! A `NOTIFY` in a transaction takes a lock of the whole database at its commit, so
//! claims and finishes that each notified went through that lock one after another:
//! four engine processes drained a queue about a quarter slower than with no
//! notification at all (`BENCHMARKS.md`). Claims and finishes now say what changed after
//! they commit: this process's watchers hear it at once, and a task sends the other
//! processes one notification for everything that changed in the [`LINGER`] after the
//! first change (and while the previous one was being sent). Submits still notify in
//! their transaction, so a job submitted in a host's transaction wakes workers exactly
//! when it commits.
//!
//! Each store tags its notifications (`~` and a random number, a part that older builds
//! ignore), and its listener skips its own.

use std::collections::BTreeSet;
use std::time::Duration;

use super::db::Db;

use tokio::sync::mpsc;
use tracing::warn;

/// Most job ids listed in one notification (a payload holds at most 8000 bytes); with
/// more, it says `*`: every watcher looks again.
const MAX_IDS: usize = 200;

/// How long a notification waits for more changes after the first: the most another
/// process's watchers hear later than this one's.
const LINGER: Duration = Duration::from_millis(2);

/// The changes gathered for the next notification.
#[derive(Debug, Default)]
pub(super) struct Pending {
    work: bool,
    slot: bool,
    all: bool,
    ids: BTreeSet<String>,
}

impl Pending {
    /// Adds a payload in the listener's format (see [`super::dispatch`]).
    pub(super) fn add(&mut self, payload: &str) {
        for part in payload.split(',') {
            match part {
                "" => {}
                "w" => self.work = true,
                "s" => self.slot = true,
                "*" => self.all = true,
                _ if part.starts_with('~') => {}
                id => {
                    if !self.all && self.ids.len() < MAX_IDS {
                        self.ids.insert(id.to_owned());
                    } else {
                        self.all = true;
                        self.ids.clear();
                    }
                }
            }
        }
    }

    /// The payload of one notification: the tag, then the flags, then the ids or `*`.
    pub(super) fn payload(&self, tag: &str) -> String {
        let mut parts = vec![tag];
        if self.work {
            parts.push("w");
        }
        if self.slot {
            parts.push("s");
        }
        if self.all {
            parts.push("*");
        } else {
            parts.extend(self.ids.iter().map(String::as_str));
        }
        parts.join(",")
    }
}

/// Sends one notification for whatever arrived since the last, until the store is
/// dropped. A failed send is tried again (with what arrived meanwhile) until it goes.
pub(super) async fn run(
    store: Db,
    channel: String,
    tag: String,
    mut rx: mpsc::UnboundedReceiver<String>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        // What changes within the next moment goes with the first change.
        tokio::time::sleep(LINGER).await;
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut pending = Pending::default();
        for payload in batch.drain(..) {
            pending.add(&payload);
        }
        loop {
            let payload = pending.payload(&tag);
            let sent = notify(&store, &channel, &payload).await;
            match sent {
                Ok(_) => break,
                Err(e) => {
                    warn!(error = %e, "notifying the other engines failed; trying again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while let Ok(more) = rx.try_recv() {
                        pending.add(&more);
                    }
                }
            }
        }
    }
}

async fn notify(store: &Db, channel: &str, payload: &str) -> crate::Result<()> {
    let mut conn = store.conn().await?;
    store
        .sql()
        .query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(&mut *conn)
        .await
        .map_err(super::db)?;
    conn.done().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_gather_flags_and_ids_and_say_everything_past_the_limit() {
        let mut p = Pending::default();
        p.add("a,b");
        p.add("w,b,c");
        p.add("~other,d");
        assert_eq!(p.payload("~me"), "~me,w,a,b,c,d");
        p.add("s");
        assert_eq!(p.payload("~me"), "~me,w,s,a,b,c,d");
        for i in 0..MAX_IDS {
            p.add(&format!("id{i}"));
        }
        assert_eq!(p.payload("~me"), "~me,w,s,*");
        p.add("late");
        assert_eq!(p.payload("~me"), "~me,w,s,*", "everything stays everything");
        let mut q = Pending::default();
        q.add("*");
        q.add("x");
        assert_eq!(q.payload("~me"), "~me,*");
    }

    #[test]
    fn a_payload_of_listed_ids_fits_a_notification() {
        let mut p = Pending::default();
        for i in 0..MAX_IDS {
            p.add(&format!("{i:08x}-0000-4000-8000-{i:012x}"));
        }
        let payload = p.payload("~0123456789abcdef");
        assert!(payload.len() < 8000, "{}", payload.len());
        assert!(!payload.ends_with('*'));
    }
}
