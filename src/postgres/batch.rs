//! Group commit of guarded writes: every write waiting when a statement starts goes into
//! it.
//!
//! A busy engine finishes many jobs at once. The batcher folds the waiting writes into
//! one statement that only touches rows still exactly as their writers read them (same
//! revision, same lease); each write is applied whole or answered as a conflict.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::db::Db;
use super::rows::{save, uuid};
use super::{BACKEND, Shared};
use crate::store::{Committed, Write};
use crate::{Error, Result};

/// Most writes folded into one statement.
const MAX_BATCH: usize = 128;

pub(super) struct Request {
    pub(super) writes: Vec<Write>,
    pub(super) reply: oneshot::Sender<Result<Vec<Committed>>>,
}

/// Commits writes, a batch at a time, until every sender is gone.
pub(super) async fn run(db: Db, shared: Arc<Shared>, mut rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let requests = std::mem::take(&mut batch);
        let writes: Vec<&Write> = requests.iter().flat_map(|r| &r.writes).collect();
        match commit(&db, &shared, &writes).await {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                for request in requests {
                    let mine = answers.by_ref().take(request.writes.len()).collect();
                    let _ = request.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "committing a batch of writes failed");
                for request in requests {
                    let _ = request.reply.send(Err(shared_error(&e)));
                }
            }
        }
    }
}

/// Commits `writes` in as few statements as their jobs allow: one statement takes at most
/// one write per job (two about one job would match the same row), so a job written
/// twice in a batch gets a second statement, where its later write meets the first's
/// revision and is a conflict unless it expected it. A write with the same guard (job,
/// revision, lease) as an earlier one in the batch is a conflict without a statement:
/// whether the earlier one applied or not, that guard no longer holds.
///
/// Behind a transaction-mode pooler all the statements are one transaction; otherwise
/// each is its own. The changes are announced once all are committed.
async fn commit(db: &Db, shared: &Shared, writes: &[&Write]) -> Result<Vec<Committed>> {
    let mut conn = db.conn().await?;
    let mut saves = Vec::new();
    let mut answers = vec![Committed::Conflict; writes.len()];
    let mut guards = HashSet::with_capacity(writes.len());
    let mut left: Vec<usize> = (0..writes.len())
        .filter(|&i| guards.insert((writes[i].id(), writes[i].revision, writes[i].lease_id)))
        .collect();
    while !left.is_empty() {
        let mut seen = HashSet::with_capacity(left.len());
        let (now, later): (Vec<usize>, Vec<usize>) =
            left.into_iter().partition(|&i| seen.insert(writes[i].id()));
        let round: Vec<&Write> = now.iter().map(|&i| writes[i]).collect();
        let saved = save(&mut conn, &round, shared, false).await?;
        for i in now {
            if saved.ids.contains(&uuid(writes[i].id())) {
                answers[i] = Committed::Applied;
            }
        }
        saves.push(saved);
        left = later;
    }
    conn.done().await?;
    for saved in saves {
        saved.announce(shared);
    }
    Ok(answers)
}

/// An error for every waiter of a failed batch (errors are not `Clone`).
fn shared_error(e: &Error) -> Error {
    let source = match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
    .into();
    match e {
        Error::Unavailable { .. } => Error::Unavailable {
            backend: BACKEND,
            source,
        },
        _ => Error::Backend {
            backend: BACKEND,
            source,
        },
    }
}
