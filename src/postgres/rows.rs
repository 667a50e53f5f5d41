//! Rows to records and back, in as few round trips as the work allows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Uuid;
use sqlx::{PgConnection, Row};

use super::{BACKEND, db};
use crate::Result;
use crate::job::{
    Artifact, ArtifactRole, Event, EventKind, Job, JobId, JobType, NewEvent, TenantId, Visibility,
};
use crate::sql::{corrupt, json_text, parse_json, status};

/// The columns of a job row, in the order [`decode_job`] reads them; JSON comes as text.
macro_rules! job_columns {
    () => {
        "id, tenant, job_type, input::text, status, result::text, error, attempts, max_attempts, \
         priority, run_at, created_at, started_at, completed_at, updated_at, idempotency_key, \
         progress::text, cancel_requested, revision, event_seq, lease_id, lease_expires_at"
    };
}
pub(super) use job_columns;

/// A job row with the bookkeeping the [`Job`] does not show.
#[derive(Debug)]
pub(super) struct JobRow {
    pub(super) job: Job,
    pub(super) event_seq: u64,
    pub(super) lease: Option<(u128, DateTime<Utc>)>,
    /// Whether the job has artifact records (known only where a query asked).
    pub(super) has_artifacts: bool,
}

pub(super) fn uuid(id: JobId) -> Uuid {
    Uuid::from_u128(id.to_u128())
}

pub(super) fn get<'r, T>(row: &'r PgRow, idx: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(idx).map_err(db)
}

fn opt_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>> {
    text.map(|t| parse_json(BACKEND, &t)).transpose()
}

pub(super) fn decode_job(row: &PgRow) -> Result<JobRow> {
    let lease_id: Option<Uuid> = get(row, 20)?;
    let lease_expires: Option<DateTime<Utc>> = get(row, 21)?;
    let job = Job {
        id: JobId::from_u128(get::<Uuid>(row, 0)?.as_u128()),
        tenant: TenantId::new(get::<String>(row, 1)?)?,
        job_type: JobType::new(get::<String>(row, 2)?)?,
        input: parse_json(BACKEND, &get::<String>(row, 3)?)?,
        status: status(BACKEND, &get::<String>(row, 4)?)?,
        result: opt_json(get(row, 5)?)?,
        error: get(row, 6)?,
        attempts: get::<i32>(row, 7)? as u32,
        max_attempts: get::<i32>(row, 8)? as u32,
        priority: get(row, 9)?,
        run_at: get(row, 10)?,
        created_at: get(row, 11)?,
        started_at: get(row, 12)?,
        completed_at: get(row, 13)?,
        updated_at: get(row, 14)?,
        idempotency_key: get(row, 15)?,
        progress: opt_json(get(row, 16)?)?,
        cancel_requested: get(row, 17)?,
        revision: get::<i64>(row, 18)? as u64,
        artifacts: Vec::new(),
        latest_event: None,
    };
    Ok(JobRow {
        job,
        event_seq: get::<i64>(row, 19)? as u64,
        lease: lease_id
            .zip(lease_expires)
            .map(|(id, exp)| (id.as_u128(), exp)),
        has_artifacts: true,
    })
}

/// The columns of an event row, in the order [`decode_event`] reads them.
macro_rules! event_columns {
    () => {
        "job_id, seq, kind, visibility, message, payload::text, artifacts::text, created_at"
    };
}
pub(super) use event_columns;

pub(super) fn decode_event(row: &PgRow) -> Result<(JobId, Event)> {
    let kind: String = get(row, 2)?;
    let visibility: String = get(row, 3)?;
    let event = Event {
        seq: get::<i64>(row, 1)? as u64,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| corrupt(BACKEND, format!("event kind {kind:?}")))?,
        visibility: Visibility::parse(&visibility)
            .ok_or_else(|| corrupt(BACKEND, format!("visibility {visibility:?}")))?,
        message: get::<String>(row, 4)?.into(),
        payload: opt_json(get(row, 5)?)?,
        artifacts: opt_json(get(row, 6)?)?.unwrap_or_default(),
        created_at: get(row, 7)?,
    };
    Ok((JobId::from_u128(get::<Uuid>(row, 0)?.as_u128()), event))
}

fn decode_artifact(row: &PgRow) -> Result<(JobId, Artifact)> {
    let role: String = get(row, 3)?;
    let artifact = Artifact {
        name: get(row, 1)?,
        kind: get(row, 2)?,
        role: ArtifactRole::parse(&role)
            .ok_or_else(|| corrupt(BACKEND, format!("role {role:?}")))?,
        content_type: get(row, 4)?,
        size_bytes: get::<i64>(row, 5)? as u64,
        checksum: get(row, 6)?,
        metadata: parse_json(BACKEND, &get::<String>(row, 7)?)?,
        created_at: get(row, 8)?,
        attempt: u32::try_from(get::<i32>(row, 9)?).unwrap_or(0),
    };
    Ok((JobId::from_u128(get::<Uuid>(row, 0)?.as_u128()), artifact))
}

/// What an optimistic [`write_back`] expects each row to still be: its revision and lease
/// as read, the lease unexpired at `now`.
pub(super) struct Guard {
    pub(super) revisions: Vec<i64>,
    pub(super) leases: Vec<Uuid>,
    pub(super) now: DateTime<Utc>,
}

/// Writes back jobs' changeable fields, appends events and sends a notification, in one
/// statement, and returns the ids of the rows written.
///
/// Without a guard every row is written and `payload` is sent as is (the caller holds the
/// rows' locks). With a guard only rows still as expected are written, only their events
/// appended, and the notification is `payload` followed by their ids.
pub(super) async fn write_back(
    conn: &mut PgConnection,
    rows: &[&JobRow],
    events: &[(JobId, &Event)],
    channel: &str,
    payload: &str,
    guard: Option<&Guard>,
) -> Result<Vec<Uuid>> {
    let mut c = Columns::default();
    for row in rows {
        let job = &row.job;
        c.id.push(uuid(job.id));
        c.status.push(job.status.as_str());
        c.result.push(job.result.as_ref().map(json_text));
        c.error.push(job.error.clone());
        c.attempts.push(job.attempts as i32);
        c.run_at.push(job.run_at);
        c.started_at.push(job.started_at);
        c.completed_at.push(job.completed_at);
        c.updated_at.push(job.updated_at);
        c.progress.push(
            job.progress
                .as_ref()
                .map(|p| serde_json::to_string(p).expect("serialises")),
        );
        c.cancel_requested.push(job.cancel_requested);
        c.revision.push(job.revision as i64);
        c.event_seq.push(row.event_seq as i64);
        c.lease_id
            .push(row.lease.map(|(id, _)| Uuid::from_u128(id)));
        c.lease_expires_at.push(row.lease.map(|(_, exp)| exp));
    }
    let mut e = EventColumns::default();
    for (id, event) in events {
        e.job_id.push(uuid(*id));
        e.seq.push(event.seq as i64);
        e.kind.push(event.kind.as_str());
        e.visibility.push(event.visibility.as_str());
        e.message.push(event.message.to_string());
        e.payload.push(event.payload.as_ref().map(json_text));
        e.artifacts.push(
            (!event.artifacts.is_empty())
                .then(|| serde_json::to_string(&event.artifacts).expect("serialises")),
        );
        e.created_at.push(event.created_at);
    }
    let (revisions, leases, now) = match guard {
        Some(g) => (g.revisions.clone(), g.leases.clone(), g.now),
        None => (
            vec![0; rows.len()],
            vec![Uuid::nil(); rows.len()],
            Utc::now(),
        ),
    };
    let (saved,): (Vec<Uuid>,) = sqlx::query_as(
        "WITH saved AS (
            UPDATE jobworks_jobs j SET status = u.status, result = u.result::jsonb, error = u.error,
                attempts = u.attempts, run_at = u.run_at, started_at = u.started_at,
                completed_at = u.completed_at, updated_at = u.updated_at, progress = u.progress::jsonb,
                cancel_requested = u.cancel_requested, revision = u.revision, event_seq = u.event_seq,
                lease_id = u.lease_id, lease_expires_at = u.lease_expires_at
            FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[],
                        $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::text[], $11::bool[],
                        $12::bigint[], $13::bigint[], $14::uuid[], $15::timestamptz[], $26::bigint[],
                        $27::uuid[])
                AS u(id, status, result, error, attempts, run_at, started_at, completed_at, updated_at,
                     progress, cancel_requested, revision, event_seq, lease_id, lease_expires_at,
                     expected_revision, expected_lease)
            WHERE j.id = u.id AND (NOT $28 OR (j.revision = u.expected_revision
                AND j.lease_id = u.expected_lease AND j.status = 'running' AND j.lease_expires_at > $29))
            RETURNING j.id
        ), appended AS (
            INSERT INTO jobworks_events (job_id, seq, kind, visibility, message, payload, artifacts, created_at)
            SELECT v.job_id, v.seq, v.kind, v.visibility, v.message, v.payload::jsonb, v.artifacts::jsonb, v.created_at
            FROM unnest($16::uuid[], $17::bigint[], $18::text[], $19::text[], $20::text[], $21::text[],
                        $22::text[], $23::timestamptz[])
                AS v(job_id, seq, kind, visibility, message, payload, artifacts, created_at)
            WHERE NOT $28 OR v.job_id IN (SELECT id FROM saved)
            RETURNING 1
        )
        SELECT array(SELECT id FROM saved),
               (SELECT count(*) FROM appended),
               CASE WHEN NOT $28 AND $25 <> '' THEN pg_notify($24, $25)::text END,
               (SELECT pg_notify($24, $25 || string_agg(id::text, ','))::text FROM saved
                WHERE $28 HAVING count(*) > 0)",
    )
    .bind(c.id)
    .bind(c.status)
    .bind(c.result)
    .bind(c.error)
    .bind(c.attempts)
    .bind(c.run_at)
    .bind(c.started_at)
    .bind(c.completed_at)
    .bind(c.updated_at)
    .bind(c.progress)
    .bind(c.cancel_requested)
    .bind(c.revision)
    .bind(c.event_seq)
    .bind(c.lease_id)
    .bind(c.lease_expires_at)
    .bind(e.job_id)
    .bind(e.seq)
    .bind(e.kind)
    .bind(e.visibility)
    .bind(e.message)
    .bind(e.payload)
    .bind(e.artifacts)
    .bind(e.created_at)
    .bind(channel)
    .bind(payload)
    .bind(revisions)
    .bind(leases)
    .bind(guard.is_some())
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    Ok(saved)
}

#[derive(Default)]
struct Columns {
    id: Vec<Uuid>,
    status: Vec<&'static str>,
    result: Vec<Option<String>>,
    error: Vec<Option<String>>,
    attempts: Vec<i32>,
    run_at: Vec<DateTime<Utc>>,
    started_at: Vec<Option<DateTime<Utc>>>,
    completed_at: Vec<Option<DateTime<Utc>>>,
    updated_at: Vec<DateTime<Utc>>,
    progress: Vec<Option<String>>,
    cancel_requested: Vec<bool>,
    revision: Vec<i64>,
    event_seq: Vec<i64>,
    lease_id: Vec<Option<Uuid>>,
    lease_expires_at: Vec<Option<DateTime<Utc>>>,
}

#[derive(Default)]
struct EventColumns {
    job_id: Vec<Uuid>,
    seq: Vec<i64>,
    kind: Vec<&'static str>,
    visibility: Vec<&'static str>,
    message: Vec<String>,
    payload: Vec<Option<String>>,
    artifacts: Vec<Option<String>>,
    created_at: Vec<DateTime<Utc>>,
}

/// Fills in the jobs' artifacts and latest events: two queries for any number of jobs.
pub(super) async fn complete(conn: &mut PgConnection, rows: Vec<JobRow>) -> Result<Vec<Job>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| uuid(r.job.id)).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.event_seq as i64).collect();
    let latest: HashMap<JobId, Event> = sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        " FROM unnest($1::uuid[], $2::bigint[]) AS u(wanted_id, wanted_seq) \
          CROSS JOIN LATERAL (SELECT * FROM jobworks_events w \
            WHERE w.job_id = u.wanted_id AND w.seq <= u.wanted_seq AND w.visibility = 'public' \
            ORDER BY w.seq DESC LIMIT 1) e"
    ))
    .bind(&ids)
    .bind(&seqs)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?
    .iter()
    .map(decode_event)
    .collect::<Result<_>>()?;
    let mut artifacts: HashMap<JobId, Vec<Artifact>> = HashMap::new();
    let found = sqlx::query(
        "SELECT job_id, name, kind, role, content_type, size_bytes, checksum, metadata::text, \
         created_at, attempt FROM jobworks_artifacts WHERE job_id = ANY($1) ORDER BY created_at, name",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for row in &found {
        let (id, artifact) = decode_artifact(row)?;
        artifacts.entry(id).or_default().push(artifact);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut job = row.job;
            job.latest_event = latest.get(&job.id).cloned();
            job.artifacts = artifacts.remove(&job.id).unwrap_or_default();
            job
        })
        .collect())
}

/// Numbers an event for a row, bumping its counters.
pub(super) fn number(row: &mut JobRow, event: NewEvent, now: DateTime<Utc>) -> Event {
    row.event_seq += 1;
    row.job.revision += 1;
    row.job.updated_at = now;
    event.into_event(row.event_seq, now)
}

/// Loads a job row, locking it for the transaction when `for_update`.
pub(super) async fn load(
    conn: &mut PgConnection,
    id: JobId,
    for_update: bool,
) -> Result<Option<JobRow>> {
    let sql = if for_update {
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE id = $1 FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE id = $1"
        )
    };
    let row = sqlx::query(sql)
        .bind(uuid(id))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    row.as_ref().map(decode_job).transpose()
}
