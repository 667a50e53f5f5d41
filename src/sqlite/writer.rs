//! The write thread: one connection, group commit, a savepoint per write.

use std::sync::mpsc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::{BACKEND, db};
use crate::{Error, Result};

/// Most writes folded into one transaction.
const MAX_GROUP: usize = 512;

/// Answers a write once its transaction committed (or failed to).
type Reply = Box<dyn FnOnce(Result<()>) + Send>;

/// A write waiting for the thread.
trait Op: Send {
    /// Runs inside a savepoint; says whether to keep its changes, and how to answer once
    /// the transaction's fate is known.
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Reply);
    /// Answers without running (the transaction could not start).
    fn fail(self: Box<Self>, error: Error);
}

struct Pending<F, T> {
    f: F,
    reply: oneshot::Sender<Result<T>>,
    /// Whether an answer keeps the changes that made it.
    keep: fn(&Result<T>) -> bool,
}

impl<F, T> Op for Pending<F, T>
where
    F: FnOnce(&Connection) -> Result<T> + Send,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Reply) {
        let out = (self.f)(conn);
        let keep = (self.keep)(&out);
        let reply = self.reply;
        (
            keep,
            Box::new(move |committed: Result<()>| {
                let _ = reply.send(committed.and(out));
            }),
        )
    }

    fn fail(self: Box<Self>, error: Error) {
        let _ = self.reply.send(Err(error));
    }
}

/// The handle to the write thread; dropping it lets the thread finish what is queued and
/// exit.
#[derive(Debug)]
pub(super) struct Writer {
    ops: mpsc::Sender<Box<dyn Op>>,
}

impl Writer {
    pub(super) fn spawn(conn: Connection) -> Result<Writer> {
        let (ops, rx) = mpsc::channel::<Box<dyn Op>>();
        std::thread::Builder::new()
            .name("jobworks-sqlite-writer".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| Error::Unavailable {
                backend: BACKEND,
                source: Box::new(e),
            })?;
        Ok(Writer { ops })
    }

    /// Runs `f` in the next group commit and answers once it is durable per the store's
    /// synchronous mode. If `f` fails, its changes are rolled back and the others' kept.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_keeping(f, Result::is_ok).await
    }

    /// [`write`](Self::write), rolling `f`'s changes back also when `keep` says so of its
    /// answer.
    pub(super) async fn write_keeping<T, F>(&self, f: F, keep: fn(&Result<T>) -> bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.ops
            .send(Box::new(Pending { f, reply, keep }))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn gone() -> Error {
    Error::Unavailable {
        backend: BACKEND,
        source: "the SQLite write thread has stopped".into(),
    }
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Box<dyn Op>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let message = e.to_string();
                for op in batch {
                    op.fail(Error::Unavailable {
                        backend: BACKEND,
                        source: message.clone().into(),
                    });
                }
                continue;
            }
        };
        let mut replies = Vec::with_capacity(batch.len());
        for op in batch {
            let mut savepoint = match tx.savepoint() {
                Ok(sp) => sp,
                Err(e) => {
                    op.fail(db(e));
                    continue;
                }
            };
            let (keep, reply) = op.run(&savepoint);
            let ended = if keep {
                savepoint.commit()
            } else {
                savepoint.rollback().and_then(|()| savepoint.commit())
            };
            match ended {
                Ok(()) => replies.push(reply),
                Err(e) => reply(Err(db(e))),
            }
        }
        let committed = tx.commit().map_err(|e| e.to_string());
        for reply in replies {
            reply(committed.clone().map_err(|message| Error::Unavailable {
                backend: BACKEND,
                source: message.into(),
            }));
        }
    }
}
