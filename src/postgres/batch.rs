//! Group commit for finishes: one statement records every outcome that is waiting.
//!
//! A busy engine finishes many jobs at once. The batcher reads their rows, applies the
//! rules every backend shares, and writes rows and events back with one statement that
//! only touches rows still exactly as read (same revision, same unexpired lease). A row
//! that changed meanwhile (a cancel request, say) is done again under a row lock.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::types::Uuid;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use super::rows::{
    Guard, JobRow, complete, decode_job, job_columns, load, number, uuid, write_back,
};
use super::{BACKEND, Shared, db};
use crate::job::{Event, Job, JobId, JobStatus};
use crate::store::{Finish, Lease, apply_plan, plan_finish};
use crate::{Error, Result};

/// Most finishes folded into one statement.
const MAX_BATCH: usize = 128;

pub(super) struct Request {
    pub(super) lease: Lease,
    pub(super) outcome: Finish,
    pub(super) reply: oneshot::Sender<Result<Job>>,
}

/// Records finishes, a batch at a time, until every sender is gone.
pub(super) async fn run(pool: PgPool, shared: Arc<Shared>, mut rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let requests = std::mem::take(&mut batch);
        let replies = match record(&pool, &shared, requests).await {
            Ok(replies) => replies,
            Err((e, waiting)) => {
                tracing::warn!(error = %e, "recording a batch of finishes failed");
                waiting
                    .into_iter()
                    .map(|reply| (reply, Err(shared_error(&e))))
                    .collect()
            }
        };
        for (reply, answer) in replies {
            if let Ok(job) = &answer {
                shared.notifier.job_changed(job.id);
                if job.status == JobStatus::Queued {
                    shared.notifier.work_available();
                }
            }
            let _ = reply.send(answer);
        }
    }
}

/// An error for every waiter of a failed batch (errors are not `Clone`).
fn shared_error(e: &Error) -> Error {
    let source = e.to_string().into();
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

type Reply = oneshot::Sender<Result<Job>>;
type Answers = Vec<(Reply, Result<Job>)>;

/// A finish applied to a row read without a lock, not yet written.
struct Planned {
    reply: Reply,
    request: (Lease, Finish),
    row: JobRow,
    read_revision: u64,
    event: Event,
}

async fn record(
    pool: &PgPool,
    shared: &Shared,
    requests: Vec<Request>,
) -> Result<Answers, (Error, Vec<Reply>)> {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return Err((db(e), requests.into_iter().map(|r| r.reply).collect())),
    };
    let mut answers = Vec::with_capacity(requests.len());
    let mut planned = Vec::with_capacity(requests.len());
    let ids: Vec<Uuid> = requests.iter().map(|r| uuid(r.lease.job_id)).collect();
    let rows = match read(&mut conn, &ids).await {
        Ok(rows) => rows,
        Err(e) => return Err((e, requests.into_iter().map(|r| r.reply).collect())),
    };
    let now = shared.clock.now();
    let mut rows = rows;
    for Request {
        lease,
        outcome,
        reply,
    } in requests
    {
        // Each job is finished once; a second request for it finds no row and fails.
        match rows
            .remove(&lease.job_id)
            .and_then(|row| plan(row, &lease, &outcome, now))
        {
            Some((row, read_revision, event)) => planned.push(Planned {
                reply,
                request: (lease, outcome),
                row,
                read_revision,
                event,
            }),
            None => answers.push((reply, Err(Error::LeaseLost { id: lease.job_id }))),
        }
    }
    let guard = Guard {
        revisions: planned.iter().map(|p| p.read_revision as i64).collect(),
        leases: planned
            .iter()
            .map(|p| Uuid::from_u128(p.request.0.lease_id))
            .collect(),
        now,
    };
    let refs: Vec<&JobRow> = planned.iter().map(|p| &p.row).collect();
    let events: Vec<(JobId, &Event)> = planned.iter().map(|p| (p.row.job.id, &p.event)).collect();
    let prefix = if planned
        .iter()
        .any(|p| p.row.job.status == JobStatus::Queued)
    {
        "w,"
    } else {
        ""
    };
    let written = match write_back(
        &mut conn,
        &refs,
        &events,
        &shared.channel,
        prefix,
        Some(&guard),
    )
    .await
    {
        Ok(written) => written,
        Err(e) => {
            let mut waiting: Vec<Reply> = planned.into_iter().map(|p| p.reply).collect();
            waiting.extend(answers.into_iter().map(|(reply, _)| reply));
            return Err((e, waiting));
        }
    };
    let written: std::collections::HashSet<Uuid> = written.into_iter().collect();
    let mut with_artifacts = Vec::new();
    for p in planned {
        if !written.contains(&uuid(p.row.job.id)) {
            // The row changed since it was read: finish it under its lock.
            let (lease, outcome) = p.request;
            let answer = locked(&mut conn, shared, &lease, &outcome).await;
            answers.push((p.reply, answer));
        } else if p.row.has_artifacts {
            with_artifacts.push(p);
        } else {
            let mut job = p.row.job;
            job.latest_event = Some(p.event);
            answers.push((p.reply, Ok(job)));
        }
    }
    for p in with_artifacts {
        let answer = complete(&mut conn, vec![p.row])
            .await
            .map(|mut jobs| jobs.pop().expect("one row in, one job out"));
        answers.push((p.reply, answer));
    }
    Ok(answers)
}

/// Reads rows, with whether each has artifacts, without locking them.
async fn read(conn: &mut PgConnection, ids: &[Uuid]) -> Result<HashMap<JobId, JobRow>> {
    let found = sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        ", EXISTS (SELECT 1 FROM jobworks_artifacts a WHERE a.job_id = jobworks_jobs.id) \
          FROM jobworks_jobs WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut rows = HashMap::with_capacity(found.len());
    for found in &found {
        let mut row = decode_job(found)?;
        row.has_artifacts = sqlx::Row::try_get(found, 22).map_err(db)?;
        rows.insert(row.job.id, row);
    }
    Ok(rows)
}

/// Applies a finish to a row held by `lease`; `None` when the lease is not current.
fn plan(
    mut row: JobRow,
    lease: &Lease,
    outcome: &Finish,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<(JobRow, u64, Event)> {
    if !lease.is_current(row.job.status, row.lease, now) {
        return None;
    }
    let read_revision = row.job.revision;
    let job = &row.job;
    let plan = plan_finish(
        outcome,
        job.attempts,
        job.max_attempts,
        job.cancel_requested,
    );
    let event = apply_plan(&mut row.job, plan, Some(outcome), now);
    row.lease = None;
    let event = number(&mut row, event, now);
    Some((row, read_revision, event))
}

/// Finishes one job in a transaction that locks its row.
async fn locked(
    conn: &mut PgConnection,
    shared: &Shared,
    lease: &Lease,
    outcome: &Finish,
) -> Result<Job> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db)?;
    let row = load(&mut tx, lease.job_id, true).await?;
    let now = shared.clock.now();
    let (row, _, event) = row
        .and_then(|row| plan(row, lease, outcome, now))
        .ok_or(Error::LeaseLost { id: lease.job_id })?;
    let mut payload = row.job.id.to_string();
    if row.job.status == JobStatus::Queued {
        payload.insert_str(0, "w,");
    }
    write_back(
        &mut tx,
        &[&row],
        &[(row.job.id, &event)],
        &shared.channel,
        &payload,
        None,
    )
    .await?;
    let job = complete(&mut tx, vec![row])
        .await?
        .pop()
        .expect("one row in, one job out");
    tx.commit().await.map_err(db)?;
    Ok(job)
}
