//! Group commit for finishes: one transaction records every outcome that is waiting.
//!
//! A busy engine finishes many jobs at once; doing each in its own transaction spends a
//! handful of round trips per job. The batcher locks all their rows with one query, applies
//! the same rules as every backend, writes rows and events back with one statement, and
//! commits once.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::PgPool;
use sqlx::types::Uuid;
use tokio::sync::{mpsc, oneshot};

use super::rows::{JobRow, complete, decode_job, job_columns, write_back};
use super::{BACKEND, Shared, db};
use crate::job::{Event, Job, JobId, JobStatus};
use crate::store::{Finish, Lease, apply_plan, plan_finish};
use crate::{Error, Result};

/// Most finishes folded into one transaction.
const MAX_BATCH: usize = 128;

pub(super) struct Request {
    pub(super) lease: Lease,
    pub(super) outcome: Finish,
    pub(super) reply: oneshot::Sender<Result<Job>>,
}

/// Records finishes until every sender is gone.
pub(super) async fn run(pool: PgPool, shared: Arc<Shared>, mut rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let requests = std::mem::take(&mut batch);
        if let Err(e) = record(&pool, &shared, requests).await {
            tracing::warn!(error = %e, "recording a batch of finishes failed");
        }
    }
}

/// An error for every waiter of a failed batch (errors are not `Clone`).
fn shared_error(e: &Error) -> Error {
    match e {
        Error::Unavailable { .. } => Error::Unavailable {
            backend: BACKEND,
            source: e.to_string().into(),
        },
        _ => Error::Backend {
            backend: BACKEND,
            source: e.to_string().into(),
        },
    }
}

async fn record(pool: &PgPool, shared: &Shared, requests: Vec<Request>) -> Result<()> {
    let mut waiting = Vec::with_capacity(requests.len());
    let outcome = apply_all(pool, shared, requests, &mut waiting).await;
    match outcome {
        Ok((jobs, requeued)) => {
            for job in jobs.values() {
                shared.notifier.job_changed(job.id);
            }
            if requeued {
                shared.notifier.work_available();
            }
            for (reply, answer) in waiting {
                let _ =
                    reply.send(answer.and_then(|id: JobId| {
                        jobs.get(&id).cloned().ok_or(Error::LeaseLost { id })
                    }));
            }
            Ok(())
        }
        Err(e) => {
            for (reply, _) in waiting {
                let _ = reply.send(Err(shared_error(&e)));
            }
            Err(e)
        }
    }
}

type Waiting = Vec<(oneshot::Sender<Result<Job>>, Result<JobId>)>;

async fn apply_all(
    pool: &PgPool,
    shared: &Shared,
    requests: Vec<Request>,
    waiting: &mut Waiting,
) -> Result<(HashMap<JobId, Job>, bool)> {
    let now = crate::job::now();
    let ids: Vec<Uuid> = requests
        .iter()
        .map(|r| super::rows::uuid(r.lease.job_id))
        .collect();
    let mut tx = pool.begin().await.map_err(db)?;
    let found = sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobworks_jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    ))
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let mut rows: HashMap<JobId, JobRow> = HashMap::with_capacity(found.len());
    for row in &found {
        let row = decode_job(row)?;
        rows.insert(row.job.id, row);
    }
    let mut events: Vec<(JobId, Event)> = Vec::with_capacity(requests.len());
    let mut requeued = false;
    for Request {
        lease,
        outcome,
        reply,
    } in requests
    {
        let id = lease.job_id;
        let current = rows.get_mut(&id).filter(|row| {
            row.job.status == JobStatus::Running
                && row
                    .lease
                    .is_some_and(|(l, exp)| l == lease.lease_id && exp > now)
        });
        let Some(row) = current else {
            waiting.push((reply, Err(Error::LeaseLost { id })));
            continue;
        };
        let job = &row.job;
        let plan = plan_finish(
            &outcome,
            job.attempts,
            job.max_attempts,
            job.cancel_requested,
        );
        let event = apply_plan(&mut row.job, plan, Some(&outcome), now);
        row.lease = None;
        requeued |= row.job.status == JobStatus::Queued;
        events.push((id, super::jobs::number(row, event, now)));
        waiting.push((reply, Ok(id)));
    }
    let changed: Vec<JobId> = events.iter().map(|(id, _)| *id).collect();
    if !changed.is_empty() {
        let refs: Vec<&JobRow> = changed.iter().filter_map(|id| rows.get(id)).collect();
        let event_refs: Vec<(JobId, &Event)> = events.iter().map(|(id, e)| (*id, e)).collect();
        let mut payload: Vec<String> = changed.iter().map(ToString::to_string).collect();
        if requeued {
            payload.insert(0, "w".to_owned());
        }
        write_back(
            &mut tx,
            &refs,
            &event_refs,
            &shared.channel,
            &payload.join(","),
        )
        .await?;
    }
    let done: Vec<JobRow> = changed.iter().filter_map(|id| rows.remove(id)).collect();
    let jobs = complete(&mut tx, done).await?;
    tx.commit().await.map_err(db)?;
    Ok((jobs.into_iter().map(|j| (j.id, j)).collect(), requeued))
}
