//! Rows to records and back.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{BACKEND, db};
use crate::job::{
    Artifact, ArtifactRole, Event, EventKind, Job, JobId, JobStatus, JobType, QueueName,
    ScheduleId, TenantId, Visibility,
};
use crate::sql::{corrupt, from_micros, json_text, micros, parse_json, status};
use crate::store::{Lease, LeaseChange, Stored, Write};
use crate::{Error, Result};

/// The columns of a job row, in the order [`decode_job`] reads them.
macro_rules! job_columns {
    () => {
        "id, tenant, job_type, input, status, result, error, attempts, max_attempts, priority, \
         run_at, created_at, started_at, completed_at, updated_at, idempotency_key, progress, \
         cancel_requested, revision, event_seq, lease_id, lease_expires_at, queue, concurrency_key, \
         parents, workflow, schedule_id, scheduled_for, trace"
    };
}
pub(super) use job_columns;

/// A job row with the bookkeeping the [`Job`] does not show.
#[derive(Debug)]
pub(super) struct JobRow {
    pub(super) job: Job,
    pub(super) event_seq: u64,
    pub(super) lease: Option<(u128, DateTime<Utc>)>,
}

pub(super) fn id_bytes(id: JobId) -> [u8; 16] {
    id.to_u128().to_be_bytes()
}

pub(super) fn u128_from(bytes: &[u8]) -> Result<u128> {
    let arr: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupt(BACKEND, "an id is not 16 bytes"))?;
    Ok(u128::from_be_bytes(arr))
}

pub(super) fn time(us: i64) -> Result<DateTime<Utc>> {
    from_micros(BACKEND, us)
}

fn opt_time(us: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    us.map(time).transpose()
}

fn opt_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>> {
    text.map(|t| parse_json(BACKEND, &t)).transpose()
}

/// Reads the raw columns first (rusqlite's error type), then converts (ours).
pub(super) fn decode_job(row: &Row<'_>) -> Result<JobRow> {
    type Raw = (
        (
            Vec<u8>,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
        ),
        (i64, i64, i64, i64, i64, Option<i64>, Option<i64>, i64),
        (
            Option<String>,
            Option<String>,
            bool,
            i64,
            i64,
            Option<Vec<u8>>,
            Option<i64>,
        ),
    );
    let raw = (|| -> rusqlite::Result<Raw> {
        Ok((
            (
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
            ),
            (
                row.get(7)?,
                row.get(8)?,
                row.get(9)?,
                row.get(10)?,
                row.get(11)?,
                row.get(12)?,
                row.get(13)?,
                row.get(14)?,
            ),
            (
                row.get(15)?,
                row.get(16)?,
                row.get(17)?,
                row.get(18)?,
                row.get(19)?,
                row.get(20)?,
                row.get(21)?,
            ),
        ))
    })()
    .map_err(db)?;
    let (
        (id, tenant, job_type, input, st, result, error),
        (
            attempts,
            max_attempts,
            priority,
            run_at,
            created_at,
            started_at,
            completed_at,
            updated_at,
        ),
        (idempotency_key, progress, cancel_requested, revision, event_seq, lease_id, lease_expires),
    ) = raw;
    let lease = match (lease_id, lease_expires) {
        (Some(lid), Some(exp)) => Some((u128_from(&lid)?, time(exp)?)),
        _ => None,
    };
    let queue: String = row.get(22).map_err(db)?;
    let job = Job {
        id: JobId::from_u128(u128_from(&id)?),
        tenant: TenantId::new(tenant)?,
        job_type: JobType::new(job_type)?,
        queue: QueueName::new(queue)?,
        concurrency_key: row.get(23).map_err(db)?,
        input: parse_json(BACKEND, &input)?,
        status: status(BACKEND, &st)?,
        result: opt_json(result)?,
        error,
        attempts: attempts as u32,
        max_attempts: max_attempts as u32,
        priority: priority as i32,
        run_at: time(run_at)?,
        created_at: time(created_at)?,
        started_at: opt_time(started_at)?,
        completed_at: opt_time(completed_at)?,
        updated_at: time(updated_at)?,
        idempotency_key,
        progress: opt_json(progress)?,
        cancel_requested,
        revision: revision as u64,
        artifacts: Vec::new(),
        latest_event: None,
        parents: opt_json(row.get(24).map_err(db)?)?.unwrap_or_default(),
        workflow: opt_json(row.get(25).map_err(db)?)?,
        schedule_id: row
            .get::<_, Option<Vec<u8>>>(26)
            .map_err(db)?
            .map(|b| u128_from(&b).map(ScheduleId::from_u128))
            .transpose()?,
        scheduled_for: opt_time(row.get(27).map_err(db)?)?,
        trace: opt_json(row.get(28).map_err(db)?)?,
    };
    Ok(JobRow {
        job,
        event_seq: event_seq as u64,
        lease,
    })
}

pub(super) const EVENT_COLUMNS: &str =
    "seq, kind, visibility, message, payload, artifacts, created_at";

pub(super) fn decode_event(row: &Row<'_>) -> Result<Event> {
    type Raw = (
        i64,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
    );
    let (seq, kind, visibility, message, payload, artifacts, created_at): Raw = (|| {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
        ))
    })()
    .map_err(db)?;
    Ok(Event {
        seq: seq as u64,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| corrupt(BACKEND, format!("event kind {kind:?}")))?,
        visibility: Visibility::parse(&visibility)
            .ok_or_else(|| corrupt(BACKEND, format!("visibility {visibility:?}")))?,
        message: message.into(),
        payload: opt_json(payload)?,
        artifacts: opt_json(artifacts)?.unwrap_or_default(),
        created_at: time(created_at)?,
    })
}

fn decode_artifact(row: &Row<'_>) -> Result<Artifact> {
    let role: String = row.get(2).map_err(db)?;
    Ok(Artifact {
        name: row.get(0).map_err(db)?,
        kind: row.get(1).map_err(db)?,
        role: ArtifactRole::parse(&role)
            .ok_or_else(|| corrupt(BACKEND, format!("role {role:?}")))?,
        content_type: row.get(3).map_err(db)?,
        size_bytes: u64::try_from(row.get::<_, i64>(4).map_err(db)?).unwrap_or(0),
        checksum: row.get(5).map_err(db)?,
        metadata: parse_json(BACKEND, &row.get::<_, String>(6).map_err(db)?)?,
        created_at: time(row.get(7).map_err(db)?)?,
        attempt: u32::try_from(row.get::<_, i64>(8).map_err(db)?).unwrap_or(0),
    })
}

/// The job row with `id`, if any.
pub(super) fn load(conn: &Connection, id: JobId) -> Result<Option<JobRow>> {
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE id = ?1"
        ))
        .map_err(db)?;
    let mut rows = stmt.query(params![id_bytes(id)]).map_err(db)?;
    rows.next().map_err(db)?.map(decode_job).transpose()
}

/// The job row with `id` if it belongs to `tenant`: the tenant is part of the lookup, so
/// another tenant's row is never read (nor its input decoded), and costs what a missing
/// one does.
pub(super) fn load_owned(conn: &Connection, tenant: &TenantId, id: JobId) -> Result<JobRow> {
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE id = ?1 AND tenant = ?2"
        ))
        .map_err(db)?;
    let mut rows = stmt
        .query(params![id_bytes(id), tenant.as_str()])
        .map_err(db)?;
    match rows.next().map_err(db)? {
        Some(row) => decode_job(row),
        None => Err(Error::NotFound { id }),
    }
}

/// The status of job `id` if it belongs to `tenant`, without reading the rest of its row.
pub(super) fn owned_status(conn: &Connection, tenant: &TenantId, id: JobId) -> Result<JobStatus> {
    let mut stmt = conn
        .prepare_cached("SELECT status FROM jobworks_jobs WHERE id = ?1 AND tenant = ?2")
        .map_err(db)?;
    let mut rows = stmt
        .query(params![id_bytes(id), tenant.as_str()])
        .map_err(db)?;
    match rows.next().map_err(db)? {
        Some(row) => status(BACKEND, &row.get::<_, String>(0).map_err(db)?),
        None => Err(Error::NotFound { id }),
    }
}

/// Rows of a query that selects [`job_columns!`].
pub(super) fn load_many(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<JobRow>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let mut rows = stmt.query(params).map_err(db)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db)? {
        out.push(decode_job(row)?);
    }
    Ok(out)
}

/// Applies a guarded write: the row's changeable fields, its lease, its new events and
/// artifact records, when the row still has the revision and lease the write expects.
/// `false` (and nothing written) otherwise.
pub(super) fn save(conn: &Connection, w: &Write) -> Result<bool> {
    let job = &w.job;
    let (keep_lease, lease) = match w.lease {
        LeaseChange::Keep => (true, None),
        LeaseChange::Set(lease) => (false, Some(lease)),
        LeaseChange::Clear => (false, None),
    };
    let mut stmt = conn
        .prepare_cached(
            "UPDATE jobworks_jobs SET status = ?2, result = ?3, error = ?4, attempts = ?5, run_at = ?6, \
             started_at = ?7, completed_at = ?8, updated_at = ?9, progress = ?10, cancel_requested = ?11, \
             revision = ?12, event_seq = ?13, \
             lease_id = CASE WHEN ?14 THEN lease_id ELSE ?15 END, \
             lease_expires_at = CASE WHEN ?14 THEN lease_expires_at ELSE ?16 END, \
             workflow = ?19 \
             WHERE id = ?1 AND revision = ?17 AND lease_id IS ?18",
        )
        .map_err(db)?;
    let changed = stmt
        .execute(params![
            id_bytes(job.id),
            job.status.as_str(),
            job.result.as_ref().map(json_text),
            job.error.as_deref(),
            job.attempts,
            micros(job.run_at),
            job.started_at.map(micros),
            job.completed_at.map(micros),
            micros(job.updated_at),
            job.progress
                .as_ref()
                .map(|p| serde_json::to_string(p).expect("serialises")),
            job.cancel_requested,
            job.revision as i64,
            w.last_seq() as i64,
            keep_lease,
            lease.map(|l| l.lease_id.to_be_bytes()),
            lease.map(|l| micros(l.expires_at)),
            w.revision as i64,
            w.lease_id.map(u128::to_be_bytes),
            job.workflow.as_ref().map(json_text),
        ])
        .map_err(db)?;
    if changed == 0 {
        return Ok(false);
    }
    for event in &w.events {
        insert_event(conn, job.id, event)?;
    }
    for artifact in &w.artifacts {
        put_artifact(conn, job.id, artifact)?;
    }
    Ok(true)
}

/// Inserts a numbered event.
pub(super) fn insert_event(conn: &Connection, id: JobId, event: &Event) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO jobworks_events (job_id, seq, kind, visibility, message, payload, artifacts, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(db)?;
    stmt.execute(params![
        id_bytes(id),
        event.seq as i64,
        event.kind.as_str(),
        event.visibility.as_str(),
        &*event.message,
        event.payload.as_ref().map(json_text),
        (!event.artifacts.is_empty())
            .then(|| serde_json::to_string(&event.artifacts).expect("serialises")),
        micros(event.created_at),
    ])
    .map_err(db)?;
    Ok(())
}

/// The record of a row. A row with only its first event has no artifacts and that event
/// as its latest, so `full` may be left off for it.
pub(super) fn stored(conn: &Connection, row: JobRow, full: bool) -> Result<Stored> {
    let next_seq = row.event_seq + 1;
    let lease = row.lease.map(|(lease_id, expires_at)| Lease {
        job_id: row.job.id,
        lease_id,
        expires_at,
    });
    let job = if full { complete(conn, row)? } else { row.job };
    Ok(Stored {
        job: Box::new(job),
        lease,
        next_seq,
    })
}

/// The job with its artifacts and latest event filled in.
pub(super) fn complete(conn: &Connection, row: JobRow) -> Result<Job> {
    let mut job = row.job;
    let id = id_bytes(job.id);
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, kind, visibility, message, payload, artifacts, created_at \
             FROM jobworks_events WHERE job_id = ?1 AND seq <= ?2 AND visibility = 'public' \
             ORDER BY seq DESC LIMIT 1",
        )
        .map_err(db)?;
    job.latest_event = stmt
        .query_row(params![id, row.event_seq as i64], |r| Ok(decode_event(r)))
        .optional()
        .map_err(db)?
        .transpose()?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, kind, role, content_type, size_bytes, checksum, metadata, created_at, \
             attempt FROM jobworks_artifacts WHERE job_id = ?1 ORDER BY created_at, name",
        )
        .map_err(db)?;
    let mut rows = stmt.query(params![id]).map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        job.artifacts.push(decode_artifact(r)?);
    }
    Ok(job)
}

/// Records an artifact, replacing one of the same name.
pub(super) fn put_artifact(conn: &Connection, id: JobId, a: &Artifact) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO jobworks_artifacts \
             (job_id, name, kind, role, content_type, size_bytes, checksum, metadata, created_at, \
             attempt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(db)?;
    stmt.execute(params![
        id_bytes(id),
        a.name,
        a.kind,
        a.role.as_str(),
        a.content_type,
        a.size_bytes as i64,
        a.checksum,
        json_text(&a.metadata),
        micros(a.created_at),
        i64::from(a.attempt),
    ])
    .map_err(db)?;
    Ok(())
}
